//! `tokenvault rotate`, `tokenvault verify` and `tokenvault purge-orphans`: work over the
//! whole storage.

use clap::Args;
use serde::Serialize;
use tokenvault::{NamespaceReport, VerifyReport};

use crate::cli::Global;
use crate::failure::{Exit, Failure, Outcome};
use crate::list::require_namespace;
use crate::output;
use crate::progress::Bar;
use crate::secrets::OpenArgs;
use crate::vault_path::close;

/// `tokenvault rotate`.
#[derive(Debug, Args)]
#[command(
    long_about = "Rotate the data key of each NAMESPACE (or of every namespace with --all): a \
                  new random key becomes active at once, every record is re-sealed under it, \
                  and only then is the old key destroyed. If the command is interrupted, the \
                  next open of the vault finishes the rotation. Shows a progress bar on a \
                  terminal.",
    after_help = "Examples:\n  \
                  tokenvault rotate tenant-42\n  \
                  tokenvault rotate --all --json"
)]
pub(crate) struct RotateArgs {
    /// The namespaces whose data key to rotate
    #[arg(required_unless_present = "all")]
    namespaces: Vec<String>,
    /// Rotate every namespace
    #[arg(long, conflicts_with = "namespaces")]
    all: bool,
    #[command(flatten)]
    open: OpenArgs,
}

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

/// `tokenvault purge-orphans`.
#[derive(Debug, Args)]
#[command(
    long_about = "Drop the storage trees that belong to no namespace of this vault's header: \
                  the orphans that `tokenvault verify` counts. They are left by a namespace \
                  creation or removal that was interrupted (and cannot be decrypted), or they \
                  are namespaces that a newer header lists: if the header file was restored \
                  from a backup, the namespaces created since are orphans to it, and this \
                  command destroys them for good. tokenvault never drops them by itself. \
                  With --set-aside, also drop the set-aside trees: what a namespace's \
                  creation found under its id and kept aside.",
    after_help = "Example:\n  tokenvault verify --json && tokenvault purge-orphans"
)]
pub(crate) struct PurgeArgs {
    /// Also drop the set-aside trees that `tokenvault verify` counts
    #[arg(long)]
    set_aside: bool,
    #[command(flatten)]
    open: OpenArgs,
}

#[derive(Serialize)]
struct PurgedJson {
    dropped: usize,
    dropped_set_aside: usize,
}

#[derive(Serialize)]
struct RotationsJson {
    rotated: Vec<RotatedJson>,
}

#[derive(Serialize)]
struct RotatedJson {
    namespace: String,
    key_id: u32,
    resealed: u64,
}

#[derive(Serialize)]
struct VerifyJson<'a> {
    clean: bool,
    damaged: bool,
    records_ok: u64,
    records_damaged: u64,
    records_missing: u64,
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

/// Runs `tokenvault rotate`.
pub(crate) fn rotate(global: &Global, args: &RotateArgs) -> Outcome {
    let vault = global.open(&args.open)?;
    let names = if args.all {
        vault.namespaces()?
    } else {
        for name in &args.namespaces {
            require_namespace(&vault, name)?;
        }
        args.namespaces.clone()
    };
    let mut rotated = Vec::new();
    for name in names {
        let bar = Bar::records(global, &format!("rotating {}", output::quoted(&name)));
        let report = vault.rotate_namespace_key(&name, |p| bar.update(p))?;
        bar.finish();
        rotated.push(RotatedJson {
            namespace: name,
            key_id: report.key_id,
            resealed: report.resealed,
        });
    }
    close(vault)?;
    if global.json {
        return output::json(&RotationsJson { rotated }, 0);
    }
    let text: String = rotated
        .iter()
        .map(|r| {
            format!(
                "rotated {}: data key {}, {} stored record{} re-sealed (its manifest included)\n",
                output::quoted(&r.namespace),
                r.key_id,
                r.resealed,
                if r.resealed == 1 { "" } else { "s" }
            )
        })
        .collect();
    output::text(&text)
}

/// Runs `tokenvault verify`.
pub(crate) fn verify(global: &Global, args: &VerifyArgs) -> Outcome {
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
    let is_damaged = damaged > 0 || missing > 0 || bad_manifests > 0;
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
         {bad_manifests} damaged manifest(s), in namespace(s) {}",
        affected.join(", ")
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
    if report.orphan_trees > 0 {
        text.push_str(&format!(
            "{} orphaned storage tree(s): from an interrupted namespace change, or namespaces of a newer header (kept; `tokenvault purge-orphans` drops them)\n",
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

/// Runs `tokenvault purge-orphans`.
pub(crate) fn purge(global: &Global, args: &PurgeArgs) -> Outcome {
    let vault = global.open(&args.open)?;
    let dropped = vault.purge_orphans()?;
    let dropped_set_aside = if args.set_aside {
        vault.purge_set_aside()?
    } else {
        0
    };
    close(vault)?;
    if global.json {
        output::json(
            &PurgedJson {
                dropped,
                dropped_set_aside,
            },
            0,
        )
    } else {
        let mut text = format!("dropped {dropped} orphaned storage tree(s)\n");
        if args.set_aside {
            text.push_str(&format!(
                "dropped {dropped_set_aside} set-aside storage tree(s)\n"
            ));
        }
        output::text(&text)
    }
}
