//! `tokenvault init`: create a vault.

use std::path::PathBuf;

use clap::Args;
use serde::Serialize;
use tokenvault::secrecy::ExposeSecret;
use tokenvault::{KeySource, RecoveryKey};

use crate::cli::Global;
use crate::failure::Outcome;
use crate::kdf::KdfArgs;
use crate::keyslot_output::{describe_slot, SlotJson};
use crate::output;
use crate::secrets::UnlockArgs;
use crate::vault::close;

/// `tokenvault init`.
#[derive(Debug, Args)]
#[command(
    long_about = "Create a new, empty vault, with one keyslot for a passphrase or a key file.\n\n\
                  The vault directory is --vault, else $TOKENVAULT_VAULT, else \
                  <config dir>/tokenvault/vault; it is created with mode 0700. An existing \
                  vault is never overwritten (exit code 7). Without a secret flag, the \
                  passphrase is asked for twice on the terminal.",
    after_help = "Examples:\n  \
                  tokenvault init                                   # asks for a passphrase\n  \
                  tokenvault init --generate-key-file vault.key     # a new random key file\n  \
                  tokenvault init --keyring --with-recovery-key     # key in the OS keyring\n  \
                  tokenvault init --vault ./v --passphrase-file pass.txt --kdf strong"
)]
pub(crate) struct InitArgs {
    /// Write a new random key file here (mode 0600, never replacing a file) and use it
    #[arg(
        long,
        value_name = "PATH",
        help_heading = "Unlocking the vault (give at most one; else a prompt)"
    )]
    generate_key_file: Option<PathBuf>,
    /// Also add a recovery key (128 random bits in a keyslot of its own) and print it once,
    /// to be written down and kept offline
    #[arg(long)]
    with_recovery_key: bool,
    #[command(flatten)]
    secret: UnlockArgs,
    #[command(flatten)]
    kdf: KdfArgs,
}

#[derive(Serialize)]
struct InitJson<'a> {
    vault: String,
    format_version: u16,
    keyslot: Option<SlotJson>,
    generated_key_file: Option<&'a str>,
    /// The recovery key's keyslot and the key itself, shown this once.
    #[serde(skip_serializing_if = "Option::is_none")]
    recovery_keyslot: Option<SlotJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    recovery_key: Option<&'a str>,
}

/// Runs `tokenvault init`.
pub(crate) fn run(global: &Global, args: &InitArgs) -> Outcome {
    let location = global.location()?;
    let described = location.describe();
    let kdf = args.kdf.params();
    if kdf.is_insecure() {
        output::note(
            "warning: --insecure-fast-kdf makes the passphrase easy to guess; use it only in tests",
        );
    }
    let new = args
        .secret
        .initial_secret(args.generate_key_file.as_deref(), &described)?;
    let vault = match global.create_at(&location, global.options().kdf(kdf), &new.key) {
        Ok(vault) => vault,
        Err(e) => {
            new.discard();
            return Err(e);
        }
    };
    let recovery = if args.with_recovery_key {
        let key = RecoveryKey::generate()?;
        let id = vault.add_keyslot(&KeySource::recovery_key(&key))?;
        Some((id, key))
    } else {
        None
    };
    let slots = vault.keyslots()?;
    let slot = slots.first().cloned();
    let recovery_slot = recovery
        .as_ref()
        .and_then(|(id, _)| slots.iter().find(|s| s.id == *id).cloned());
    let format_version = vault.format_version();
    close(vault)?;
    let generated = new.generated().map(|p| p.display().to_string());
    let recovery_text = recovery.as_ref().map(|(_, key)| key.expose_text());
    let recovery_text = recovery_text.as_ref().map(ExposeSecret::expose_secret);
    if global.json {
        return output::json(
            &InitJson {
                vault: described.clone(),
                format_version,
                keyslot: slot.as_ref().map(SlotJson::from),
                generated_key_file: generated.as_deref(),
                recovery_keyslot: recovery_slot.as_ref().map(SlotJson::from),
                recovery_key: recovery_text,
            },
            recovery_text.map_or(0, str::len),
        );
    }
    let mut text = format!("created a vault at {}\n", output::escaped(&described));
    if let Some(slot) = &slot {
        text.push_str(&format!("{}\n", describe_slot(slot)));
    }
    if let Some(file) = &generated {
        text.push_str(&format!(
            "wrote a new key file at {}: back it up; without it (or another keyslot) the vault cannot be opened\n",
            output::escaped(file)
        ));
    }
    let mut out = output::SecretText::with_room(recovery_text.map_or(0, str::len));
    out.push(&text);
    match (&recovery_slot, recovery_text) {
        (Some(slot), Some(key)) => {
            out.push(&format!("{}\n", describe_slot(slot)));
            out.push("recovery key (shown only now: write it down and keep it offline):\n  ");
            out.push(key);
            out.push("\n");
        }
        _ if slot.as_ref().is_some_and(|s| s.kind == tokenvault::SlotKind::Keyring) => {
            output::note(
                "warning: the OS keyring holds the only key to this vault; add a recovery key \
                 (`tokenvault keyslot add --keyring --new-recovery-key`) or a passphrase, in \
                 case the keyring is lost",
            );
        }
        _ => output::note(
            "hint: `tokenvault keyslot add --new-recovery-key` adds a recovery key, to keep offline",
        ),
    }
    out.print()
}
