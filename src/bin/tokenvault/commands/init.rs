//! `tokenvault init`: create a vault.

use std::path::PathBuf;

use clap::Args;
use serde::Serialize;

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
    let slot = vault.keyslots()?.into_iter().next();
    let format_version = vault.format_version();
    close(vault)?;
    let generated = new.generated().map(|p| p.display().to_string());
    if global.json {
        return output::json(
            &InitJson {
                vault: described.clone(),
                format_version,
                keyslot: slot.as_ref().map(SlotJson::from),
                generated_key_file: generated.as_deref(),
            },
            0,
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
    output::text(&text)
}
