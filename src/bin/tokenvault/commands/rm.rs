//! `tokenvault rm`: remove a record, or a whole namespace.

use std::io::{BufRead, IsTerminal, Write};

use clap::Args;
use serde::Serialize;

use crate::cli::Global;
use crate::failure::{Exit, Failure, Outcome};
use crate::output;
use crate::secrets::OpenArgs;
use crate::vault::close;

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
struct RemovedJson<'a> {
    namespace: &'a str,
    key: Option<&'a str>,
    removed: bool,
}

/// Runs `tokenvault rm`.
pub(crate) fn run(global: &Global, args: &RmArgs) -> Outcome {
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
