//! `tokenvault shred`: a new entry-wrapping key, so that no removed namespace's keys open
//! anywhere.

use clap::Args;
use serde::Serialize;

use crate::cli::Global;
use crate::failure::Outcome;
use crate::output;
use crate::progress::Bar;
use crate::secrets::OpenArgs;
use crate::vault::close;

/// `tokenvault shred`.
#[derive(Debug, Args)]
#[command(
    long_about = "Replace the key that seals every namespace entry (a namespace's data keys \
                  live in its entry): a new key is drawn, every entry is re-sealed under it, \
                  and the old key is destroyed. Removing a namespace, or rotating its key, \
                  leaves older copies of its entry in the storage engine's log (and in \
                  backups of the directory) until this runs; afterwards none of them opens. \
                  Reads and writes of other processes are not affected. If the command is \
                  interrupted, running it again finishes it. Shows a progress bar on a \
                  terminal.",
    after_help = "Example:\n  tokenvault rm tenant-42 && tokenvault shred"
)]
pub(crate) struct ShredArgs {
    #[command(flatten)]
    open: OpenArgs,
}

#[derive(Serialize)]
struct ShredJson {
    resealed: u64,
}

/// Runs `tokenvault shred`.
pub(crate) fn run(global: &Global, args: &ShredArgs) -> Outcome {
    let vault = global.open(&args.open)?;
    let bar = Bar::records(global, "re-sealing namespace entries");
    let resealed = vault.shred(|p| bar.update(p))?;
    bar.finish();
    close(vault)?;
    if global.json {
        return output::json(&ShredJson { resealed }, 0);
    }
    output::text(&format!(
        "shredded: {resealed} namespace entr{} re-sealed under a new key; the old key is destroyed\n",
        if resealed == 1 { "y" } else { "ies" }
    ))
}
