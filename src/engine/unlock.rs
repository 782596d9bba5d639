//! Keyslots' cryptography: opening a slot with a key source (within the KDF limit) and
//! making a new one.

use crate::crypto::{fill_random, Key};
use crate::error::{Error, Result};
use crate::header::{Header, Slot, SlotParams, SLOT_SALT_LEN};
#[cfg(feature = "keyring")]
use crate::keys::keyring_kek;
use crate::keys::{raw_key_kek, recovery_key_kek, KdfParams, KeySource, Material, SlotKind};

/// Unwraps the VMK with `source`: tries each slot of the source's kind (only `only`, if
/// given), checking its stored parameters' bounds, and the caller's `limit`, before deriving
/// anything. A passphrase slot above the limit is skipped, as is a keyring slot whose entry
/// is missing or does not open it; if no slot opens, the error is the first slot's skipped
/// ([`Error::KdfLimit`], [`Error::Keyring`]), else [`Error::WrongKey`]. Any other keyring
/// failure (no keyring, locked, a timeout) ends the search at once.
pub(crate) fn unlock_slot(
    header: &Header,
    source: &KeySource,
    only: Option<u32>,
    limit: &KdfParams,
) -> Result<(u32, Key, Key)> {
    let kind = source.kind();
    let candidates: Vec<&Slot> = header
        .slots
        .iter()
        .filter(|s| s.kind() == kind && only.is_none_or(|id| id == s.id))
        .collect();
    if candidates.is_empty() {
        return Err(match only {
            Some(id) if !header.slots.iter().any(|s| s.id == id) => {
                Error::NoSuchKeyslot { slot: id }
            }
            _ => Error::WrongKey,
        });
    }
    let material = source.material()?;
    let mut skipped = None;
    for slot in candidates {
        let tried = match try_slot(&header.vault_id, slot, &material, limit) {
            Err(e) if skippable(&e) => {
                skipped.get_or_insert(e);
                continue;
            }
            tried => tried?,
        };
        if let Some((kek, vmk)) = tried {
            return Ok((slot.id, kek, vmk));
        }
    }
    Err(skipped.unwrap_or(Error::WrongKey))
}

/// Whether a slot's failure lets the search go on to the next slot: one too costly to try,
/// one whose keyring entry is missing or does not open it.
fn skippable(e: &Error) -> bool {
    use crate::error::KeyringFailure;
    matches!(
        e,
        Error::KdfLimit { .. }
            | Error::Keyring {
                failure: KeyringFailure::NoEntry | KeyringFailure::Mismatch,
                ..
            }
    )
}

/// Tries `material` on one slot: its KEK and the VMK it unwraps, or `None` if it does not
/// open the slot (one derivation; none for a slot of another kind). A passphrase slot that
/// costs more than `limit` is not derived: [`Error::KdfLimit`].
pub(crate) fn try_slot(
    vault_id: &[u8],
    slot: &Slot,
    material: &Material<'_>,
    limit: &KdfParams,
) -> Result<Option<(Key, Key)>> {
    let kek = match (slot.parse_params()?, material) {
        (SlotParams::Passphrase { kdf, .. }, Material::Passphrase(_)) if kdf.exceeds(limit) => {
            return Err(Error::KdfLimit {
                slot: slot.id,
                asked: kdf,
                limit: *limit,
            })
        }
        (SlotParams::Passphrase { kdf, salt }, Material::Passphrase(p)) => kdf.derive(p, salt)?,
        (SlotParams::RawKey { salt }, Material::Raw(k)) => raw_key_kek(k, salt)?,
        (SlotParams::RecoveryKey { salt }, Material::Recovery(k)) => recovery_key_kek(k, salt)?,
        #[cfg(feature = "keyring")]
        (
            SlotParams::Keyring {
                salt,
                service,
                account,
            },
            Material::Keyring(keyring),
        ) => {
            let kek = keyring_kek(&keyring.read_slot_key(service, account)?, salt)?;
            let aad = Slot::aad(vault_id, slot.id, slot.kind_code, &slot.params);
            // The entry is this slot's by name: a key that does not open it is a changed
            // entry, not a wrong key.
            return match kek.cipher().unwrap_key(&aad, &slot.wrapped_vmk) {
                Some(vmk) => Ok(Some((kek, vmk))),
                None => Err(Error::Keyring {
                    failure: crate::error::KeyringFailure::Mismatch,
                    entry: Some(format!("{account}@{service}")),
                    detail: format!("it does not open keyslot {}", slot.id),
                }),
            };
        }
        _ => return Ok(None),
    };
    let aad = Slot::aad(vault_id, slot.id, slot.kind_code, &slot.params);
    Ok(kek
        .cipher()
        .unwrap_key(&aad, &slot.wrapped_vmk)
        .map(|vmk| (kek, vmk)))
}

/// A new keyslot `id` for `source`, wrapping `vmk`.
pub(crate) fn new_slot(
    vault_id: &[u8],
    id: u32,
    source: &KeySource,
    kdf: &KdfParams,
    limit: &KdfParams,
    vmk: &Key,
) -> Result<(Slot, Key)> {
    if source.kind() == SlotKind::Passphrase && kdf.exceeds(limit) {
        return Err(Error::KdfLimit {
            slot: id,
            asked: *kdf,
            limit: *limit,
        });
    }
    let mut salt = [0u8; SLOT_SALT_LEN];
    fill_random(&mut salt)?;
    let material = source.material()?;
    let ((kind_code, params), kek) = match &material {
        Material::Passphrase(p) => (Slot::passphrase_params(kdf, &salt), kdf.derive(p, &salt)?),
        Material::Raw(k) => (Slot::raw_key_params(&salt), raw_key_kek(k, &salt)?),
        Material::Recovery(k) => (
            Slot::recovery_key_params(&salt),
            recovery_key_kek(k, &salt)?,
        ),
        #[cfg(feature = "keyring")]
        Material::Keyring(keyring) => {
            let (key, service, account) = keyring.write_slot_key(vault_id)?;
            (
                Slot::keyring_params(&salt, &service, &account),
                keyring_kek(&key, &salt)?,
            )
        }
    };
    let aad = Slot::aad(vault_id, id, kind_code, &params);
    let wrapped_vmk = kek.cipher().wrap_key(&aad, vmk)?;
    Ok((
        Slot {
            id,
            kind_code,
            params,
            wrapped_vmk,
        },
        kek,
    ))
}
