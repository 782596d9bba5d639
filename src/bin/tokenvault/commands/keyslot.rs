//! `tokenvault keyslot add|rm|ls`: the keyslots, one per secret that opens the vault.

use clap::{Args, Subcommand};
use serde::Serialize;
use tokenvault::{Error, KeyslotInfo, SlotKind};

use crate::cli::Global;
use crate::failure::{Failure, Outcome};
use crate::kdf::KdfArgs;
use crate::keyslot_output::{describe_slot, report_change, SlotJson};
use crate::output;
use crate::secrets::{keyring, NewSecretArgs, OpenArgs};
use crate::vault::close;

/// `tokenvault keyslot ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum KeyslotCommand {
    /// Add a keyslot for another passphrase, key file, recovery key or the OS keyring
    Add(KeyslotAddArgs),
    /// Remove a keyslot: its secret no longer opens the vault
    Rm(KeyslotRmArgs),
    /// List the keyslots, with their Argon2 parameters
    Ls(KeyslotLsArgs),
}

/// `tokenvault keyslot add`.
#[derive(Debug, Args)]
#[command(
    long_about = "Add a keyslot: another passphrase or key file that opens the vault, for \
                  example a recovery key kept offline. Rewrites only the header file. A secret \
                  that already opens a keyslot is refused (exit code 7), which costs one key \
                  derivation per keyslot of its kind.",
    after_help = "Examples:\n  \
                  tokenvault keyslot add --generate-key-file recovery.key\n  \
                  tokenvault keyslot add --new-keyring     # a key in the OS keyring\n  \
                  tokenvault keyslot add --key-file main.key --new-passphrase-env NEW_PASS"
)]
pub(crate) struct KeyslotAddArgs {
    #[command(flatten)]
    open: OpenArgs,
    #[command(flatten)]
    new: NewSecretArgs,
    #[command(flatten)]
    kdf: KdfArgs,
}

/// `tokenvault keyslot rm`.
#[derive(Debug, Args)]
#[command(
    long_about = "Remove keyslot ID: its secret no longer opens this vault, nor any copy of \
                  the vault directory made afterwards. The last keyslot cannot be removed. \
                  Removing a keyring keyslot also deletes its entry from the OS keyring, \
                  unless --keep-keyring-entry is given.",
    after_help = "Example:\n  tokenvault keyslot ls && tokenvault keyslot rm 1"
)]
pub(crate) struct KeyslotRmArgs {
    /// The keyslot to remove (see `tokenvault keyslot ls`)
    id: u32,
    /// For a keyring keyslot: remove the slot but leave its OS keyring entry (for a vault
    /// copied away from the machine whose keyring holds it)
    #[arg(long)]
    keep_keyring_entry: bool,
    #[command(flatten)]
    open: OpenArgs,
}

/// `tokenvault keyslot ls`.
#[derive(Debug, Args)]
#[command(
    long_about = "List the keyslots: id, kind (passphrase, raw key, recovery key or \
                  keyring), for passphrase keyslots the Argon2id parameters, for keyring \
                  keyslots their entry, and which keyslot's secret opened the vault for this \
                  command.",
    after_help = "Example:\n  tokenvault keyslot ls --json"
)]
pub(crate) struct KeyslotLsArgs {
    #[command(flatten)]
    open: OpenArgs,
}

#[derive(Serialize)]
struct SlotsJson {
    keyslots: Vec<SlotJson>,
    /// The keyslot whose secret opened the vault for this command.
    unlocked_keyslot: u32,
}

#[derive(Serialize)]
struct RemovedJson {
    removed: u32,
}

/// Runs `tokenvault keyslot ...`.
pub(crate) fn run(global: &Global, command: &KeyslotCommand) -> Outcome {
    match command {
        KeyslotCommand::Add(args) => add(global, args),
        KeyslotCommand::Rm(args) => rm(global, args),
        KeyslotCommand::Ls(args) => ls(global, args),
    }
}

/// Runs `tokenvault keyslot add`.
fn add(global: &Global, args: &KeyslotAddArgs) -> Outcome {
    let vault = global
        .open_keeping_key(&args.open, Some(args.kdf.params()))?
        .0;
    let new = args.new.new_secret()?;
    let id = match vault.add_keyslot(&new.key) {
        Ok(id) => id,
        Err(e) => {
            new.discard();
            return Err(e.into());
        }
    };
    let slots = vault.keyslots()?;
    let added: Vec<&KeyslotInfo> = slots.iter().filter(|s| s.id == id).collect();
    report_change(global, &new, &added, "added")?;
    close(vault)
}

/// Runs `tokenvault keyslot rm`.
fn rm(global: &Global, args: &KeyslotRmArgs) -> Outcome {
    let vault = global.open(&args.open)?;
    let slots = vault.keyslots()?;
    let entry = slots
        .iter()
        .find(|s| s.id == args.id && s.kind == SlotKind::Keyring)
        .and_then(|s| s.keyring_entry.clone());
    match entry {
        Some(entry) if !args.keep_keyring_entry => {
            match vault.remove_keyring_keyslot(args.id, &keyring()) {
                Ok(()) => {}
                Err(e @ Error::Keyring { .. }) => {
                    close(vault)?;
                    return Err(Failure::other(format!(
                        "removed keyslot {}, but its keyring entry {} remains: {e}",
                        args.id,
                        output::escaped(&entry.to_string())
                    ))
                    .hint(format!(
                        "it opens nothing any more; delete it with `secret-tool clear service \
                         {} username {}` (or the platform's keyring tool)",
                        entry.service, entry.account
                    )));
                }
                Err(e) => return Err(e.into()),
            }
        }
        _ => vault.remove_keyslot(args.id)?,
    }
    close(vault)?;
    if global.json {
        return output::json(&RemovedJson { removed: args.id }, 0);
    }
    output::text(&format!("removed keyslot {}\n", args.id))
}

/// Runs `tokenvault keyslot ls`.
fn ls(global: &Global, args: &KeyslotLsArgs) -> Outcome {
    let vault = global.open(&args.open)?;
    let slots = vault.keyslots()?;
    let unlocked = vault.unlocked_keyslot()?;
    close(vault)?;
    if global.json {
        let keyslots: Vec<SlotJson> = slots.iter().map(SlotJson::from).collect();
        return output::json(
            &SlotsJson {
                keyslots,
                unlocked_keyslot: unlocked,
            },
            0,
        );
    }
    let text: String = slots
        .iter()
        .map(|s| {
            let mark = if s.id == unlocked { " (opened it)" } else { "" };
            format!("{}{mark}\n", describe_slot(s))
        })
        .collect();
    output::text(&text)
}
