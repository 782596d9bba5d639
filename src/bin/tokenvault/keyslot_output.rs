//! Keyslots in output: one line of text, or a JSON object; and the report of the commands
//! that change or add keyslots (`passwd`, `keyslot add`).

use serde::Serialize;
use tokenvault::secrecy::ExposeSecret;
use tokenvault::{KeyslotInfo, SlotKind};

use crate::cli::Global;
use crate::failure::Outcome;
use crate::output;
use crate::secrets::NewSecret;

/// A keyslot in `--json` output.
#[derive(Serialize)]
pub(crate) struct SlotJson {
    id: u32,
    kind: String,
    kdf: Option<KdfJson>,
    /// A keyring slot's entry, as `account@service`.
    #[serde(skip_serializing_if = "Option::is_none")]
    keyring_entry: Option<String>,
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
struct SlotChangeJson<'a> {
    /// The first slot changed or added (the only one, but for `passwd` of a shared secret).
    keyslot: Option<SlotJson>,
    /// Every slot changed or added.
    keyslots: Vec<SlotJson>,
    generated_key_file: Option<&'a str>,
    /// A generated recovery key, shown this once.
    #[serde(skip_serializing_if = "Option::is_none")]
    recovery_key: Option<&'a str>,
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
    if let Some(entry) = &slot.keyring_entry {
        text.push_str(&format!(" (entry {})", output::escaped(&entry.to_string())));
    }
    text
}

/// Prints what `passwd` or `keyslot add` did, naming the slots it changed or added.
pub(crate) fn report_change(
    global: &Global,
    new: &NewSecret,
    slots: &[&KeyslotInfo],
    verb: &str,
) -> Outcome {
    let generated = new.generated().map(|p| p.display().to_string());
    let recovery = new.recovery().map(tokenvault::RecoveryKey::expose_text);
    let recovery = recovery.as_ref().map(ExposeSecret::expose_secret);
    if global.json {
        return output::json(
            &SlotChangeJson {
                keyslot: slots.first().map(|s| SlotJson::from(*s)),
                keyslots: slots.iter().map(|s| SlotJson::from(*s)).collect(),
                generated_key_file: generated.as_deref(),
                recovery_key: recovery,
            },
            recovery.map_or(0, str::len),
        );
    }
    if let Some(recovery) = recovery {
        let mut text = output::SecretText::with_room(recovery.len());
        for slot in slots {
            text.push(&format!("{verb} {}\n", describe_slot(slot)));
        }
        text.push("recovery key (shown only now: write it down and keep it offline):\n  ");
        text.push(recovery);
        text.push("\n");
        return text.print();
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

/// The `kind` of a keyslot in output: `passphrase`, `raw-key`, `recovery-key`, `keyring`, or
/// `unknown-N`.
fn kind_name(kind: SlotKind) -> String {
    match kind {
        SlotKind::Passphrase => "passphrase".to_owned(),
        SlotKind::RawKey => "raw-key".to_owned(),
        SlotKind::RecoveryKey => "recovery-key".to_owned(),
        SlotKind::Keyring => "keyring".to_owned(),
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
            keyring_entry: slot.keyring_entry.as_ref().map(ToString::to_string),
        }
    }
}
