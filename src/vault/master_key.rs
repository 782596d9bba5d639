//! Master-key rotation: a fresh vault master key, with every keyslot, the name-index key and
//! the entry-wrapping keys re-wrapped under it. Rewrites only the header file, whatever the
//! number of namespaces.

use super::Vault;
use crate::crypto::Key;
use crate::error::{Error, Result};
use crate::header::{Slot, VmkKeys};
use crate::keys::KeySource;

impl Vault {
    /// Replaces the vault master key with a fresh one and re-wraps everything under it:
    /// every keyslot, the name-index key and the entry-wrapping keys (one header write,
    /// whatever the number of namespaces; no entry or record is rewritten and no name
    /// changes).
    ///
    /// Re-wrapping a keyslot needs its secret. This handle knows the secrets of the slot it
    /// was opened with and of the slots it added or changed; if the vault has others, pass
    /// them to [`rotate_master_key_with`](Self::rotate_master_key_with).
    ///
    /// # Errors
    /// [`Error::SlotSecretsMissing`] naming the slots whose secrets are unknown (nothing is
    /// changed then).
    pub fn rotate_master_key(&self) -> Result<()> {
        self.rotate_master_key_with(&[])
    }

    /// [`rotate_master_key`](Self::rotate_master_key), with the secrets of other keyslots.
    /// Each source is tried against the slots whose secret this handle does not know.
    ///
    /// # Errors
    /// [`Error::SlotSecretsMissing`]; [`Error::WrongKey`] if a given source opens no slot.
    pub fn rotate_master_key_with(&self, others: &[&KeySource]) -> Result<()> {
        self.engine.update_state(|s| {
            for source in others {
                // Try the slots whose secret is still unknown, so that a secret shared by two
                // slots unlocks the second one too.
                let unknown: Vec<u32> = s
                    .header
                    .slots
                    .iter()
                    .filter(|slot| slot.kind() == source.kind() && !s.keks.contains_key(&slot.id))
                    .map(|slot| slot.id)
                    .collect();
                let found = unknown
                    .into_iter()
                    .find_map(|id| s.find_slot(source, Some(id)).ok());
                let (id, kek) = match found {
                    Some(found) => found,
                    // Nothing unknown matches: the source may still be a known slot's secret.
                    None => s.find_slot(source, None)?,
                };
                s.keks.insert(id, kek);
            }
            let missing: Vec<u32> = s
                .header
                .slots
                .iter()
                .map(|slot| slot.id)
                .filter(|id| !s.keks.contains_key(id))
                .collect();
            if !missing.is_empty() {
                return Err(Error::SlotSecretsMissing { slots: missing });
            }
            let vmk = Key::random()?;
            let vault_id = s.header.vault_id;
            for slot in &mut s.header.slots {
                let kek = s.keks.get(&slot.id).ok_or(Error::SlotSecretsMissing {
                    slots: vec![slot.id],
                })?;
                let aad = Slot::aad(&vault_id, slot.id, slot.kind_code, &slot.params);
                slot.wrapped_vmk = kek.cipher().wrap_key(&aad, &vmk)?;
            }
            s.vmk_keys = VmkKeys::new(&vmk, &vault_id)?;
            s.vmk = vmk;
            s.header.wrapped_index_key = s
                .vmk_keys
                .wrap
                .wrap_key(&s.header.index_key_aad(), &s.index_key)?;
            s.wrap_ewks()?;
            Ok(())
        })
    }
}
