//! `tokenvault ls`: the namespaces, or the keys in one namespace.

use clap::Args;
use serde::Serialize;

use crate::cli::Global;
use crate::failure::Outcome;
use crate::output;
use crate::secrets::OpenArgs;
use crate::vault::{close, require_namespace};

/// `tokenvault ls`.
#[derive(Debug, Args)]
#[command(
    long_about = "Without NAMESPACE, list the namespaces, one per line (with --long, with \
                  their record counts). With NAMESPACE, list its record keys. Names are \
                  sorted. Listing keys opens every record of the namespace, since names are \
                  stored only inside the sealed records.",
    after_help = "Examples:\n  \
                  tokenvault ls\n  \
                  tokenvault ls --long\n  \
                  tokenvault ls tenant-42 --json"
)]
pub(crate) struct LsArgs {
    /// List the record keys of this namespace instead of the namespaces
    namespace: Option<String>,
    /// Show each namespace's record count
    #[arg(long, short)]
    long: bool,
    /// Leave out namespaces that hold no record
    #[arg(long)]
    non_empty: bool,
    #[command(flatten)]
    open: OpenArgs,
}

#[derive(Serialize)]
struct NamespaceJson {
    name: String,
    records: u64,
}

#[derive(Serialize)]
struct NamespacesJson {
    namespaces: Vec<NamespaceJson>,
}

#[derive(Serialize)]
struct KeysJson<'a> {
    namespace: &'a str,
    keys: &'a [String],
}

/// Runs `tokenvault ls`.
pub(crate) fn run(global: &Global, args: &LsArgs) -> Outcome {
    let vault = global.open(&args.open)?;
    let text = match &args.namespace {
        Some(name) => {
            require_namespace(&vault, name)?;
            let keys = vault.namespace(name)?.keys()?;
            if global.json {
                close(vault)?;
                return output::json(
                    &KeysJson {
                        namespace: name,
                        keys: &keys,
                    },
                    0,
                );
            }
            keys.iter()
                .map(|k| format!("{}\n", output::escaped(k)))
                .collect::<String>()
        }
        None => {
            let mut namespaces = Vec::new();
            for name in vault.namespaces()? {
                let records = vault.namespace(&name)?.record_count()?;
                if records > 0 || !args.non_empty {
                    namespaces.push(NamespaceJson { name, records });
                }
            }
            if global.json {
                close(vault)?;
                return output::json(&NamespacesJson { namespaces }, 0);
            }
            namespaces
                .iter()
                .map(|n| match args.long {
                    true => format!("{}\t{}\n", output::escaped(&n.name), n.records),
                    false => format!("{}\n", output::escaped(&n.name)),
                })
                .collect()
        }
    };
    close(vault)?;
    output::text(&text)
}
