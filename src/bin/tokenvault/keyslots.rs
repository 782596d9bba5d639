//! `tokenvault passwd` and `tokenvault keyslot add|rm|ls`: the secrets that open a vault.

use clap::Args;
use serde::Serialize;
use tokenvault::{KeyslotInfo, SlotKind};

use crate::cli::Global;
use crate::failure::Outcome;
use crate::output;
use crate::secrets::{NewSecret, NewSecretArgs, OpenArgs};
use crate::vault_path::{close, KdfArgs};

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

/// `tokenvault keyslot add`.
#[derive(Debug, Args)]
#[command(
    long_about = "Add a keyslot: another passphrase or key file that opens the vault, for \
                  example a recovery key kept offline. Rewrites only the header file. A secret \
                  that already opens a keyslot is refused (exit code 7), which costs one key \
                  derivation per keyslot of its kind.",
    after_help = "Examples:\n  \
                  tokenvault keyslot add --generate-key-file recovery.key\n  \
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
                  the vault directory made afterwards. The last keyslot cannot be removed.",
    after_help = "Example:\n  tokenvault keyslot ls && tokenvault keyslot rm 1"
)]
pub(crate) struct KeyslotRmArgs {
    /// The keyslot to remove (see `tokenvault keyslot ls`)
    id: u32,
    #[command(flatten)]
    open: OpenArgs,
}

/// `tokenvault keyslot ls`.
#[derive(Debug, Args)]
#[command(
    long_about = "List the keyslots: id, kind (passphrase or raw key) and, for passphrase \
                  keyslots, the Argon2id parameters.",
    after_help = "Example:\n  tokenvault keyslot ls --json"
)]
pub(crate) struct KeyslotLsArgs {
    #[command(flatten)]
    open: OpenArgs,
}

/// A keyslot in `--json` output.
#[derive(Serialize)]
pub(crate) struct SlotJson {
    id: u32,
    kind: String,
    kdf: Option<KdfJson>,
}

#[derive(Serialize)]
struct KdfJson {
    algorithm: &'static str,
    m_kib: u32,
    t: u32,
    p: u32,
    insecure: bool,
}

#[derive(Serialize)]
struct SlotsJson {
    keyslots: Vec<SlotJson>,
}

#[derive(Serialize)]
struct RemovedJson {
    removed: u32,
}

#[derive(Serialize)]
struct SlotChangeJson<'a> {
    /// The first slot changed or added (the only one, but for `passwd` of a shared secret).
    keyslot: Option<SlotJson>,
    /// Every slot changed or added.
    keyslots: Vec<SlotJson>,
    generated_key_file: Option<&'a str>,
}

/// Runs `tokenvault passwd`.
pub(crate) fn passwd(global: &Global, args: &PasswdArgs) -> Outcome {
    let (vault, old) = global.open_keeping_key(&args.open, Some(args.kdf.params()?))?;
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

/// Runs `tokenvault keyslot add`.
pub(crate) fn add(global: &Global, args: &KeyslotAddArgs) -> Outcome {
    let vault = global
        .open_keeping_key(&args.open, Some(args.kdf.params()?))?
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
pub(crate) fn rm(global: &Global, args: &KeyslotRmArgs) -> Outcome {
    let vault = global.open(&args.open)?;
    vault.remove_keyslot(args.id)?;
    close(vault)?;
    if global.json {
        return output::json(&RemovedJson { removed: args.id }, 0);
    }
    output::text(&format!("removed keyslot {}\n", args.id))
}

/// Runs `tokenvault keyslot ls`.
pub(crate) fn ls(global: &Global, args: &KeyslotLsArgs) -> Outcome {
    let vault = global.open(&args.open)?;
    let slots = vault.keyslots()?;
    close(vault)?;
    if global.json {
        let slots: Vec<SlotJson> = slots.iter().map(SlotJson::from).collect();
        return output::json(&SlotsJson { keyslots: slots }, 0);
    }
    let text: String = slots.iter().map(|s| describe_slot(s) + "\n").collect();
    output::text(&text)
}

/// One line about a keyslot: `keyslot 0: passphrase (Argon2id m=65536 KiB, t=3, p=4)`.
pub(crate) fn describe_slot(slot: &KeyslotInfo) -> String {
    let mut text = format!("keyslot {}: {}", slot.id, kind_name(slot.kind));
    if let Some(kdf) = &slot.kdf {
        text.push_str(&format!(
            " (Argon2id m={} KiB, t={}, p={}{})",
            kdf.m_kib(),
            kdf.t(),
            kdf.p(),
            if kdf.is_insecure() {
                ", INSECURE test parameters"
            } else {
                ""
            }
        ));
    }
    text
}

/// Prints what `passwd` or `keyslot add` did, naming the slots it changed or added.
fn report_change(global: &Global, new: &NewSecret, slots: &[&KeyslotInfo], verb: &str) -> Outcome {
    let generated = new.generated().map(|p| p.display().to_string());
    if global.json {
        return output::json(
            &SlotChangeJson {
                keyslot: slots.first().map(|s| SlotJson::from(*s)),
                keyslots: slots.iter().map(|s| SlotJson::from(*s)).collect(),
                generated_key_file: generated.as_deref(),
            },
            0,
        );
    }
    let mut text: String = slots
        .iter()
        .map(|slot| format!("{verb} {}\n", describe_slot(slot)))
        .collect();
    if let Some(file) = &generated {
        text.push_str(&format!(
            "wrote a new key file at {}: back it up\n",
            output::escaped(file)
        ));
    }
    output::text(&text)
}

/// The `kind` of a keyslot in output: `passphrase`, `raw-key`, or `unknown-N`.
fn kind_name(kind: SlotKind) -> String {
    match kind {
        SlotKind::Passphrase => "passphrase".to_owned(),
        SlotKind::RawKey => "raw-key".to_owned(),
        SlotKind::Unknown(code) => format!("unknown-{code}"),
        _ => "unknown".to_owned(),
    }
}

impl From<&KeyslotInfo> for SlotJson {
    fn from(slot: &KeyslotInfo) -> Self {
        Self {
            id: slot.id,
            kind: kind_name(slot.kind),
            kdf: slot.kdf.map(|kdf| KdfJson {
                algorithm: "argon2id",
                m_kib: kdf.m_kib(),
                t: kdf.t(),
                p: kdf.p(),
                insecure: kdf.is_insecure(),
            }),
        }
    }
}
