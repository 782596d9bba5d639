//! `tokenvault verify`: authenticate every record, and report what is damaged.

use clap::Args;
use serde::Serialize;
use tokenvault::maintenance::{NamespaceReport, VerifyReport};

use crate::cli::Global;
use crate::failure::{Exit, Failure, Outcome};
use crate::output;
use crate::progress::Bar;
use crate::secrets::OpenArgs;
use crate::vault::close;

/// `tokenvault verify`.
#[derive(Debug, Args)]
#[command(
    long_about = "Open and authenticate every record of every namespace, and check each \
                  namespace against its sealed manifest. Prints one line per namespace and one \
                  per damaged record (by key when the record still tells it, else by storage \
                  id). Exits with code 0 when nothing is damaged or missing, and with code 6 \
                  (damaged) otherwise. An \
                  unfinished key rotation is reported but is not damage. Read-only.",
    after_help = "Examples:\n  \
                  tokenvault verify\n  \
                  tokenvault verify --json || echo \"damaged: exit code $?\""
)]
pub(crate) struct VerifyArgs {
    #[command(flatten)]
    open: OpenArgs,
}

#[derive(Serialize)]
struct VerifyJson<'a> {
    clean: bool,
    damaged: bool,
    records_ok: u64,
    records_damaged: u64,
    records_missing: u64,
    damaged_entries: Vec<DamagedJson<'a>>,
    orphans: usize,
    orphan_trees: usize,
    set_aside_trees: usize,
    namespaces: Vec<NamespaceJson<'a>>,
}

#[derive(Serialize)]
struct NamespaceJson<'a> {
    namespace: &'a str,
    ok: u64,
    damaged: Vec<DamagedJson<'a>>,
    missing: u64,
    manifest_damaged: Option<&'static str>,
    rotation_pending: bool,
}

#[derive(Serialize)]
struct DamagedJson<'a> {
    key: Option<&'a str>,
    storage_id: &'a str,
    reason: &'a str,
}

/// Runs `tokenvault verify`.
pub(crate) fn run(global: &Global, args: &VerifyArgs) -> Outcome {
    let vault = global.open(&args.open)?;
    let bar = Bar::records(global, "verifying");
    let report = vault.verify(|p| bar.update(p))?;
    bar.finish();
    close(vault)?;
    let damaged: u64 = report
        .namespaces
        .iter()
        .map(|n| n.damaged.len() as u64)
        .sum();
    let missing: u64 = report.namespaces.iter().map(|n| n.missing).sum();
    let bad_manifests = report
        .namespaces
        .iter()
        .filter(|n| n.manifest_damaged.is_some())
        .count();
    let bad_entries = report.damaged_entries.len();
    let is_damaged = damaged > 0 || missing > 0 || bad_manifests > 0 || bad_entries > 0;
    if global.json {
        output::json(&verify_json(&report, is_damaged, damaged, missing), 0)?;
    } else {
        output::text(&verify_text(&report, is_damaged))?;
    }
    if !is_damaged {
        return Ok(());
    }
    let affected: Vec<String> = report
        .namespaces
        .iter()
        .filter(|n| !n.damaged.is_empty() || n.missing > 0 || n.manifest_damaged.is_some())
        .map(|n| output::quoted(&n.namespace))
        .collect();
    let message = format!(
        "the vault is damaged: {damaged} damaged record(s), {missing} missing, \
         {bad_manifests} damaged manifest(s), {bad_entries} namespace entr{} that do not \
         open, in namespace(s) {}",
        if bad_entries == 1 { "y" } else { "ies" },
        if affected.is_empty() {
            "(unknown: their names are sealed in the damaged entries)".to_owned()
        } else {
            affected.join(", ")
        }
    );
    Err(Failure::new(Exit::Damaged, message).hint(VERIFY_HINT))
}

const VERIFY_HINT: &str = "a record's key is sealed inside it: `tokenvault get NAMESPACE KEY` \
                           tells whether KEY is damaged; remove it and store it again, or \
                           restore the vault directory from a backup";

fn verify_json(
    report: &VerifyReport,
    is_damaged: bool,
    damaged: u64,
    missing: u64,
) -> VerifyJson<'_> {
    VerifyJson {
        clean: report.is_clean(),
        damaged: is_damaged,
        records_ok: report.namespaces.iter().map(|n| n.ok).sum(),
        records_damaged: damaged,
        records_missing: missing,
        damaged_entries: report
            .damaged_entries
            .iter()
            .map(|d| DamagedJson {
                key: None,
                storage_id: &d.storage_id,
                reason: &d.reason,
            })
            .collect(),
        orphans: report.orphans,
        orphan_trees: report.orphan_trees,
        set_aside_trees: report.set_aside_trees,
        namespaces: report.namespaces.iter().map(namespace_json).collect(),
    }
}

fn namespace_json(n: &NamespaceReport) -> NamespaceJson<'_> {
    NamespaceJson {
        namespace: &n.namespace,
        ok: n.ok,
        damaged: n
            .damaged
            .iter()
            .map(|d| DamagedJson {
                key: d.key.as_deref(),
                storage_id: &d.storage_id,
                reason: &d.reason,
            })
            .collect(),
        missing: n.missing,
        manifest_damaged: n.manifest_damaged,
        rotation_pending: n.rotation_pending,
    }
}

fn verify_text(report: &VerifyReport, is_damaged: bool) -> String {
    let mut text = String::new();
    for n in &report.namespaces {
        text.push_str(&format!(
            "{}: {} ok, {} damaged, {} missing",
            output::quoted(&n.namespace),
            n.ok,
            n.damaged.len(),
            n.missing
        ));
        if let Some(why) = n.manifest_damaged {
            text.push_str(&format!(", manifest damaged ({why})"));
        }
        if n.rotation_pending {
            text.push_str(", key rotation unfinished (run `tokenvault rotate`)");
        }
        text.push('\n');
        for d in &n.damaged {
            match &d.key {
                Some(key) => text.push_str(&format!(
                    "  damaged: namespace {}, key {} (storage id {}): {}\n",
                    output::quoted(&n.namespace),
                    output::quoted(key),
                    d.storage_id,
                    output::escaped(&d.reason)
                )),
                None => text.push_str(&format!(
                    "  damaged: namespace {}, key unknown (storage id {}): {}\n",
                    output::quoted(&n.namespace),
                    d.storage_id,
                    output::escaped(&d.reason)
                )),
            }
        }
    }
    for d in &report.damaged_entries {
        text.push_str(&format!(
            "  damaged: namespace entry (storage id {}): {}\n",
            d.storage_id,
            output::escaped(&d.reason)
        ));
    }
    if report.orphans > 0 {
        text.push_str(&format!(
            "{} orphaned namespace storage(s): records of removed namespaces whose removal stopped midway, undecryptable (kept; `tokenvault purge-orphans` removes them)\n",
            report.orphans
        ));
    }
    if report.orphan_trees > 0 {
        text.push_str(&format!(
            "{} orphaned storage tree(s): format-1 trees an upgrade copied but did not drop (kept; `tokenvault purge-orphans` drops them)\n",
            report.orphan_trees
        ));
    }
    if report.set_aside_trees > 0 {
        text.push_str(&format!(
            "{} set-aside storage tree(s): what a namespace's creation found under its id (kept; `tokenvault purge-orphans --set-aside` drops them)\n",
            report.set_aside_trees
        ));
    }
    let ok: u64 = report.namespaces.iter().map(|n| n.ok).sum();
    if !is_damaged {
        let namespaces = report.namespaces.len();
        text.push_str(&format!(
            "ok: every record authenticates ({ok} record{}, {namespaces} namespace{})\n",
            if ok == 1 { "" } else { "s" },
            if namespaces == 1 { "" } else { "s" }
        ));
    }
    text
}
