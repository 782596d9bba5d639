//! `tokenvault passwd`: change the secret of the keyslots the current secret opens.

use clap::Args;
use tokenvault::KeyslotInfo;

use crate::cli::Global;
use crate::failure::Outcome;
use crate::kdf::KdfArgs;
use crate::keyslot_output::report_change;
use crate::output;
use crate::secrets::{NewSecretArgs, OpenArgs};
use crate::vault::close;

/// `tokenvault passwd`.
#[derive(Debug, Args)]
#[command(
    long_about = "Change the secret of every keyslot that the current secret opens (each \
                  keeps its id; new salt, new wrapping), and print the slots changed. With \
                  --slot ID, change keyslot ID alone (other slots with the same secret keep \
                  it). Only the small header file is rewritten, never the records. Afterwards \
                  the old passphrase or key no longer opens the vault (with --slot: no longer \
                  opens slot ID). Finding the slots costs one key derivation per keyslot of \
                  the secret's kind. The new secret may be a passphrase or a key file; a \
                  prompt asks for a new passphrase twice.",
    after_help = "Examples:\n  \
                  tokenvault passwd                                 # asks for the old and the new passphrase\n  \
                  tokenvault passwd --passphrase-file old.txt --new-passphrase-file new.txt\n  \
                  tokenvault passwd --slot 2 --key-file recovery.key --generate-key-file new.key"
)]
pub(crate) struct PasswdArgs {
    #[command(flatten)]
    open: OpenArgs,
    #[command(flatten)]
    new: NewSecretArgs,
    #[command(flatten)]
    kdf: KdfArgs,
}

/// Runs `tokenvault passwd`.
pub(crate) fn run(global: &Global, args: &PasswdArgs) -> Outcome {
    let (vault, old) = global.open_keeping_key(&args.open, Some(args.kdf.params()))?;
    let new = args.new.new_secret()?;
    // `--slot N` changes slot N alone; else every slot the old secret opens is changed, so
    // that afterwards it opens none.
    let changed = match args.open.slot {
        Some(id) => vault.change_keyslot(id, &old, &new.key).map(|()| vec![id]),
        None => vault.change_passphrase(&old, &new.key),
    };
    let changed = match changed {
        Ok(changed) => changed,
        Err(e) => {
            new.discard();
            return Err(e.into());
        }
    };
    let slots = vault.keyslots()?;
    let changed: Vec<&KeyslotInfo> = slots.iter().filter(|s| changed.contains(&s.id)).collect();
    report_change(global, &new, &changed, "changed the secret of")?;
    if args.open.slot.is_some() {
        // Say so when the old secret still opens the vault through another slot.
        let still = vault.keyslots_opened_by(&old)?;
        if !still.is_empty() {
            let ids: Vec<String> = still.iter().map(u32::to_string).collect();
            output::note(&format!(
                "note: the old secret still opens keyslot(s) {}; `tokenvault passwd` without --slot changes them all",
                ids.join(", ")
            ));
        }
    }
    close(vault)
}
