//! `tokenvault purge-orphans`: drop the storage that belongs to no namespace.

use clap::Args;
use serde::Serialize;

use crate::cli::Global;
use crate::failure::Outcome;
use crate::output;
use crate::secrets::OpenArgs;
use crate::vault::close;

/// `tokenvault purge-orphans`.
#[derive(Debug, Args)]
#[command(
    long_about = "Remove the storage that belongs to no namespace: the orphans that \
                  `tokenvault verify` counts. They are the records of removed namespaces \
                  whose removal stopped midway (their keys are gone with their entries: \
                  undecryptable), and format-1 trees that an upgrade copied but did not \
                  drop. tokenvault never removes them by itself. With --set-aside, also drop \
                  the set-aside trees a format-1 vault kept: what a namespace's creation \
                  found under its id.",
    after_help = "Example:\n  tokenvault verify --json && tokenvault purge-orphans"
)]
pub(crate) struct PurgeOrphansArgs {
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

/// Runs `tokenvault purge-orphans`.
pub(crate) fn run(global: &Global, args: &PurgeOrphansArgs) -> Outcome {
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
        let mut text = format!("removed {dropped} orphan(s)\n");
        if args.set_aside {
            text.push_str(&format!(
                "dropped {dropped_set_aside} set-aside storage tree(s)\n"
            ));
        }
        output::text(&text)
    }
}
