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
        let mut text = format!("dropped {dropped} orphaned storage tree(s)\n");
        if args.set_aside {
            text.push_str(&format!(
                "dropped {dropped_set_aside} set-aside storage tree(s)\n"
            ));
        }
        output::text(&text)
    }
}
