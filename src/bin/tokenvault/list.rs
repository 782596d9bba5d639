//! `tokenvault ls` and `tokenvault rm`: namespaces and the keys in them.

use std::io::{BufRead, IsTerminal, Write};

use clap::Args;
use serde::Serialize;
use tokenvault::Vault;

use crate::cli::Global;
use crate::failure::{Exit, Failure, Outcome};
use crate::output;
use crate::secrets::OpenArgs;
use crate::vault_path::close;

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

/// `tokenvault rm`.
#[derive(Debug, Args)]
#[command(
    long_about = "Remove the record KEY from NAMESPACE. Without KEY, remove the whole \
                  namespace and every record in it: its data key is destroyed first, so what \
                  the storage log still holds of its records can no longer be decrypted. \
                  Removing a namespace asks for confirmation on a terminal; --yes skips the \
                  question (and is required without a terminal).",
    after_help = "Examples:\n  \
                  tokenvault rm tenant-42 api.example.org\n  \
                  tokenvault rm tenant-42 --yes"
)]
pub(crate) struct RmArgs {
    /// The namespace
    namespace: String,
    /// The record to remove; without it, the whole namespace
    key: Option<String>,
    /// Remove a whole namespace without asking
    #[arg(long, short)]
    yes: bool,
    /// Succeed even if the record or namespace does not exist
    #[arg(long, short)]
    force: bool,
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

#[derive(Serialize)]
struct RemovedJson<'a> {
    namespace: &'a str,
    key: Option<&'a str>,
    removed: bool,
}

/// Runs `tokenvault ls`.
pub(crate) fn ls(global: &Global, args: &LsArgs) -> Outcome {
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

/// Runs `tokenvault rm`.
pub(crate) fn rm(global: &Global, args: &RmArgs) -> Outcome {
    if args.key.is_none() && !args.yes {
        confirm(&format!(
            "Remove namespace {} and every record in it? [y/N] ",
            output::quoted(&args.namespace)
        ))?;
    }
    let vault = global.open(&args.open)?;
    let removed = match &args.key {
        Some(key) => vault.namespace(&args.namespace)?.remove(key)?,
        None => vault.remove_namespace(&args.namespace)?,
    };
    close(vault)?;
    if !removed && !args.force {
        let message = match &args.key {
            Some(key) => format!(
                "no record {} in namespace {}",
                output::quoted(key),
                output::quoted(&args.namespace)
            ),
            None => format!("no namespace {}", output::quoted(&args.namespace)),
        };
        return Err(Failure::new(Exit::NotFound, message)
            .hint("list what there is with `tokenvault ls`; --force ignores a missing record"));
    }
    if global.json {
        let json = RemovedJson {
            namespace: &args.namespace,
            key: args.key.as_deref(),
            removed,
        };
        return output::json(&json, 0);
    }
    let text = match (&args.key, removed) {
        (Some(key), true) => format!(
            "removed {} from namespace {}\n",
            output::quoted(key),
            output::quoted(&args.namespace)
        ),
        (None, true) => format!("removed namespace {}\n", output::quoted(&args.namespace)),
        (_, false) => "nothing to remove\n".to_owned(),
    };
    output::text(&text)
}

/// Fails with "not found" unless the vault has namespace `name`.
pub(crate) fn require_namespace(vault: &Vault, name: &str) -> Outcome {
    if vault.namespaces()?.iter().any(|n| n == name) {
        Ok(())
    } else {
        Err(Failure::new(
            Exit::NotFound,
            format!("no namespace {}", output::quoted(name)),
        )
        .hint("list the namespaces with `tokenvault ls`"))
    }
}

/// Asks `question` on the terminal; anything but `y`/`yes` declines. Without a terminal,
/// fails: the caller must pass `--yes`.
fn confirm(question: &str) -> Outcome {
    let declined =
        || Failure::usage("removing a whole namespace needs confirmation").hint("pass --yes");
    if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
        return Err(declined());
    }
    let mut err = std::io::stderr().lock();
    let _ = err
        .write_all(question.as_bytes())
        .and_then(|()| err.flush());
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| Failure::other(format!("cannot read the answer: {e}")))?;
    match answer.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Ok(()),
        _ => Err(Failure::other("not removed").hint("answer y to remove, or pass --yes")),
    }
}
