//! Keyslot changes: adding, removing and listing keyslots, and changing their secrets. Each
//! rewrites only the header file.

use subtle::ConstantTimeEq;

use super::{KeyslotInfo, Vault};
use crate::crypto::Key;
use crate::engine::{try_slot, KeyState};
use crate::error::{Error, KeyringFailure, Result};
use crate::format::MAX_KEYSLOTS;
use crate::header::{Header, SlotParams};
use crate::keys::{KdfParams, KeySource, SlotKind};
use crate::vault::KeyringEntry;

impl Vault {
    /// Adds a keyslot for `key`, wrapping the vault master key under it. Rewrites only the
    /// header file. A passphrase slot uses the options' [`KdfParams`].
    ///
    /// A secret that already opens a keyslot is refused with [`Error::KeyslotExists`]: two
    /// slots with one secret would make that secret harder to revoke. Checking costs one key
    /// derivation per existing slot of the key's kind (an Argon2 run per passphrase slot),
    /// plus the new slot's own.
    ///
    /// ```
    /// use tokenvault::{Error, KeySource, Vault};
    /// use tokenvault::secrecy::SecretBox;
    ///
    /// # let dir = tempfile::tempdir()?;
    /// let key = |byte| KeySource::raw_key(SecretBox::new(Box::new([byte; 32])));
    /// let vault = Vault::create(dir.path().join("vault"), &key(1))?;
    /// assert_eq!(vault.add_keyslot(&key(2))?, 1);
    /// assert!(matches!(vault.add_keyslot(&key(2)), Err(Error::KeyslotExists { slot: 1 })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::KeyslotExists`] naming the slot `key` already opens;
    /// [`Error::KeyslotLimit`] past [`MAX_KEYSLOTS`](crate::format::MAX_KEYSLOTS) slots;
    /// [`Error::KeySource`] if the key cannot be read; [`Error::Keyring`] if a keyring
    /// source cannot write its entry.
    pub fn add_keyslot(&self, key: &KeySource) -> Result<u32> {
        let kdf = self.engine.options.kdf;
        let added = self.engine.update_state(|s| {
            if s.header.slots.len() >= MAX_KEYSLOTS {
                return Err(Error::KeyslotLimit);
            }
            s.refuse_duplicate(key, &[])?;
            let id = s.header.next_slot_id;
            let (slot, kek) = s.new_slot(id, key, &kdf)?;
            s.header.next_slot_id = id.checked_add(1).ok_or(Error::KeyslotLimit)?;
            s.header.slots.push(slot);
            s.keks.insert(id, kek);
            Ok(id)
        });
        self.settle_keyring(key, added.is_ok());
        added
    }

    /// Removes keyslot `id`. Rewrites only the header file: afterwards the slot's secret gives
    /// [`Error::WrongKey`], on this directory and on any copy made later.
    ///
    /// A keyring slot's entry stays in the keyring (it unlocks nothing any more): use
    /// [`remove_keyring_keyslot`](Self::remove_keyring_keyslot) to delete it as well, or
    /// [`Keyring::delete_entry`](crate::Keyring::delete_entry) later.
    ///
    /// # Errors
    /// [`Error::LastKeyslot`] for the only slot; [`Error::NoSuchKeyslot`].
    pub fn remove_keyslot(&self, id: u32) -> Result<()> {
        self.engine.update_state(|s| {
            if !s.header.slots.iter().any(|slot| slot.id == id) {
                return Err(Error::NoSuchKeyslot { slot: id });
            }
            if s.header.slots.len() == 1 {
                return Err(Error::LastKeyslot);
            }
            s.header.slots.retain(|slot| slot.id != id);
            s.keks.remove(&id);
            Ok(())
        })
    }

    /// Replaces the secret of **every** keyslot that `old` unlocks with `new` (each keeps its
    /// id; each gets a new salt, and the options' [`KdfParams`] for a passphrase). Works for
    /// any kind of key source. Rewrites only the header file; afterwards `old` gives
    /// [`Error::WrongKey`], with or without [`VaultOptions::slot`](crate::VaultOptions::slot).
    /// Returns the ids of the slots changed, in order.
    ///
    /// A `new` secret that already opens another keyslot is refused with
    /// [`Error::KeyslotExists`], as in [`add_keyslot`](Self::add_keyslot): removing that
    /// slot later would otherwise not revoke the secret.
    ///
    /// Finding the slots costs one key derivation per slot of `old`'s kind, and one per
    /// other slot of `new`'s kind (an Argon2 run per passphrase slot), plus one per slot
    /// changed: two in all for a vault with one passphrase slot. To change a single slot,
    /// use [`change_keyslot`](Self::change_keyslot).
    ///
    /// ```
    /// use tokenvault::{Error, KeySource, Vault};
    /// use tokenvault::secrecy::SecretBox;
    ///
    /// # let dir = tempfile::tempdir()?;
    /// # let path = dir.path().join("vault");
    /// let key = |byte| KeySource::raw_key(SecretBox::new(Box::new([byte; 32])));
    /// let vault = Vault::create(&path, &key(1))?;
    /// assert_eq!(vault.change_passphrase(&key(1), &key(2))?, vec![0]);
    /// vault.close()?;
    /// assert!(matches!(Vault::open(&path, &key(1)), Err(Error::WrongKey)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::WrongKey`] if `old` unlocks no slot; [`Error::KeyslotExists`] if `new`
    /// already opens another slot; [`Error::KeySource`] if either key cannot be read
    /// (nothing is changed then).
    pub fn change_passphrase(&self, old: &KeySource, new: &KeySource) -> Result<Vec<u32>> {
        let kdf = self.engine.options.kdf;
        let mut replaced = Vec::new();
        let changed = self.engine.update_state(|s| {
            let opened = s.slots_opened_by(old, |_| true)?;
            if opened.is_empty() {
                return Err(Error::WrongKey);
            }
            let ids: Vec<u32> = opened.into_iter().map(|(id, _)| id).collect();
            s.refuse_duplicate(new, &ids)?;
            replaced = keyring_entries(&s.header, &ids);
            s.replace_slots(&ids, new, &kdf)?;
            Ok(ids)
        });
        self.settle_keyring(new, changed.is_ok());
        if changed.is_ok() {
            delete_replaced(old, &replaced);
        }
        changed
    }

    /// The ids of the keyslots that `key` opens, in order: one key derivation per slot of
    /// the key's kind (an Argon2 run per passphrase slot). Useful after
    /// [`change_keyslot`](Self::change_keyslot), to see whether an old secret still opens
    /// other slots.
    ///
    /// ```
    /// use tokenvault::{KeySource, Vault};
    /// use tokenvault::secrecy::SecretBox;
    ///
    /// # let dir = tempfile::tempdir()?;
    /// let key = |byte| KeySource::raw_key(SecretBox::new(Box::new([byte; 32])));
    /// let vault = Vault::create(dir.path().join("vault"), &key(1))?;
    /// vault.add_keyslot(&key(2))?;
    /// assert_eq!(vault.keyslots_opened_by(&key(2))?, [1]);
    /// assert!(vault.keyslots_opened_by(&key(3))?.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::KeySource`] if the key cannot be read; [`Error::KdfLimit`] for a slot above
    /// the handle's cost limit.
    pub fn keyslots_opened_by(&self, key: &KeySource) -> Result<Vec<u32>> {
        let state = self.engine.read_state()?;
        Ok(state
            .slots_opened_by(key, |_| true)?
            .into_iter()
            .map(|(id, _)| id)
            .collect())
    }

    /// Replaces the secret of keyslot `id` alone: `old` must open it (exactly one key
    /// derivation to check), and `new` takes its place (same id, a new salt, the options'
    /// [`KdfParams`] for a passphrase). Rewrites only the header file; afterwards `old` no
    /// longer opens slot `id`. Other slots that `old` opens keep it: use
    /// [`change_passphrase`](Self::change_passphrase) to change them all.
    ///
    /// ```
    /// use tokenvault::{Error, KeySource, Vault, VaultOptions};
    /// use tokenvault::secrecy::SecretBox;
    ///
    /// # let dir = tempfile::tempdir()?;
    /// # let path = dir.path().join("vault");
    /// let key = |byte| KeySource::raw_key(SecretBox::new(Box::new([byte; 32])));
    /// let vault = Vault::create(&path, &key(1))?;
    /// let recovery = vault.add_keyslot(&key(2))?;
    /// vault.change_keyslot(recovery, &key(2), &key(3))?;
    /// vault.close()?;
    /// assert!(matches!(Vault::open(&path, &key(2)), Err(Error::WrongKey)));
    /// VaultOptions::new().slot(recovery).open(&path, &key(3))?.close()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::NoSuchKeyslot`]; [`Error::WrongKey`] if `old` does not open slot `id`;
    /// [`Error::KeyslotExists`] if `new` already opens another slot (one derivation per other
    /// slot of its kind to find out); [`Error::KeySource`] if either key cannot be read.
    pub fn change_keyslot(&self, id: u32, old: &KeySource, new: &KeySource) -> Result<()> {
        let kdf = self.engine.options.kdf;
        let mut replaced = Vec::new();
        let changed = self.engine.update_state(|s| {
            if !s.header.slots.iter().any(|slot| slot.id == id) {
                return Err(Error::NoSuchKeyslot { slot: id });
            }
            if s.slots_opened_by(old, |slot| slot == id)?.is_empty() {
                return Err(Error::WrongKey);
            }
            s.refuse_duplicate(new, &[id])?;
            replaced = keyring_entries(&s.header, &[id]);
            s.replace_slots(&[id], new, &kdf)
        });
        self.settle_keyring(new, changed.is_ok());
        if changed.is_ok() {
            delete_replaced(old, &replaced);
        }
        changed
    }

    /// Removes keyring keyslot `id` and then deletes its entry from `keyring` (feature
    /// `keyring`). The slot is gone once the header is written, whatever the keyring does
    /// next; a missing entry is not an error.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tokenvault::keyring_core::{mock, CredentialStore};
    /// use tokenvault::{KeySource, Keyring, Vault};
    /// use tokenvault::secrecy::SecretBox;
    ///
    /// # let dir = tempfile::tempdir()?;
    /// let store: Arc<CredentialStore> = mock::Store::new()?; // for illustration
    /// let keyring = Keyring::with_store(store);
    /// let vault = Vault::create(dir.path().join("v"), &KeySource::raw_key(SecretBox::new(Box::new([1; 32]))))?;
    /// let slot = vault.add_keyslot(&KeySource::keyring(&keyring))?;
    /// let entry = vault.keyslots()?[1].keyring_entry.clone().expect("a keyring slot");
    /// vault.remove_keyring_keyslot(slot, &keyring)?;
    /// assert!(!keyring.delete_entry(&entry)?); // already gone
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`remove_keyslot`](Self::remove_keyslot), and [`Error::KeySource`] if slot `id` is
    /// not a keyring slot (nothing is changed then); [`Error::Keyring`] if the entry could
    /// not be deleted (the slot is removed all the same; delete the entry with
    /// [`Keyring::delete_entry`](crate::Keyring::delete_entry) or the platform's tool).
    #[cfg(feature = "keyring")]
    pub fn remove_keyring_keyslot(&self, id: u32, keyring: &crate::Keyring) -> Result<()> {
        let mut entry = None;
        self.engine.update_state(|s| {
            let slot = s
                .header
                .slots
                .iter()
                .find(|slot| slot.id == id)
                .ok_or(Error::NoSuchKeyslot { slot: id })?;
            let (service, account) = slot.keyring_entry().ok_or_else(|| Error::KeySource {
                reason: format!("keyslot {id} is not a keyring keyslot"),
            })?;
            entry = Some((service.to_owned(), account.to_owned()));
            if s.header.slots.len() == 1 {
                return Err(Error::LastKeyslot);
            }
            s.header.slots.retain(|slot| slot.id != id);
            s.keks.remove(&id);
            Ok(())
        })?;
        if let Some((service, account)) = entry {
            keyring.delete(&service, &account)?;
        }
        Ok(())
    }

    /// After a change that may have written keyring entries for new slots (`key` a keyring
    /// source): keeps those the stored header names, deletes the others. After a failure
    /// the header is read again first; if it cannot be, nothing is deleted (an entry that
    /// unlocks nothing is better than a slot without its entry).
    fn settle_keyring(&self, key: &KeySource, succeeded: bool) {
        #[cfg(feature = "keyring")]
        if let Some(keyring) = key.as_keyring() {
            let Ok(vault_id) = self.engine.read_state().map(|s| s.header.vault_id) else {
                return;
            };
            if !succeeded && self.engine.refresh_header().is_err() {
                keyring.settle_keeping_all(&vault_id);
                return;
            }
            match self.engine.read_state() {
                Ok(state) => keyring.settle(&vault_id, &keyring_accounts(&state.header)),
                Err(_) => keyring.settle_keeping_all(&vault_id),
            }
        }
        #[cfg(not(feature = "keyring"))]
        let _ = (key, succeeded);
    }

    /// The keyslot whose secret opened this handle: the one [`Vault::open`] found the key
    /// source's secret in (0 for the handle that created the vault).
    ///
    /// ```
    /// use tokenvault::{KeySource, Vault};
    /// use tokenvault::secrecy::SecretBox;
    ///
    /// # let dir = tempfile::tempdir()?;
    /// let key = |b: u8| KeySource::raw_key(SecretBox::new(Box::new([b; 32])));
    /// let vault = Vault::create(dir.path().join("v"), &key(1))?;
    /// let second = vault.add_keyslot(&key(2))?;
    /// assert_eq!(vault.unlocked_keyslot()?, 0);
    /// vault.close()?;
    /// let vault = Vault::open(dir.path().join("v"), &key(2))?;
    /// assert_eq!(vault.unlocked_keyslot()?, second);
    /// # vault.close()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Closed`] after [`close`](Vault::close).
    pub fn unlocked_keyslot(&self) -> Result<u32> {
        Ok(self.engine.read_state()?.unlocked)
    }

    /// The keyslots, in order.
    ///
    /// # Errors
    /// [`Error::Closed`] after [`Vault::close`].
    pub fn keyslots(&self) -> Result<Vec<KeyslotInfo>> {
        let state = self.engine.read_state()?;
        Ok(state
            .header
            .slots
            .iter()
            .map(|slot| KeyslotInfo {
                id: slot.id,
                kind: slot.kind(),
                kdf: match slot.parse_params() {
                    Ok(SlotParams::Passphrase { kdf, .. }) => Some(kdf),
                    _ => None,
                },
                keyring_entry: slot.keyring_entry().map(|(service, account)| KeyringEntry {
                    service: service.to_owned(),
                    account: account.to_owned(),
                }),
            })
            .collect())
    }
}

/// The keyring entries of slots `ids`, as (service, account).
fn keyring_entries(header: &Header, ids: &[u32]) -> Vec<(String, String)> {
    header
        .slots
        .iter()
        .filter(|slot| ids.contains(&slot.id))
        .filter_map(|slot| slot.keyring_entry())
        .map(|(service, account)| (service.to_owned(), account.to_owned()))
        .collect()
}

/// The accounts of every keyring slot in `header`.
#[cfg(feature = "keyring")]
pub(crate) fn keyring_accounts(header: &Header) -> Vec<&str> {
    header
        .slots
        .iter()
        .filter_map(|slot| slot.keyring_entry().map(|(_, account)| account))
        .collect()
}

/// Deletes the entries of keyring slots a change replaced, with the keyring that `old` is
/// (best effort: the slots are already replaced; an entry left behind unlocks nothing).
fn delete_replaced(old: &KeySource, replaced: &[(String, String)]) {
    #[cfg(feature = "keyring")]
    if let Some(keyring) = old.as_keyring() {
        for (service, account) in replaced {
            let _ = keyring.delete(service, account);
        }
    }
    #[cfg(not(feature = "keyring"))]
    let _ = (old, replaced);
}

impl KeyState {
    /// Every slot that `source` opens among those `tried` accepts, with its KEK: one
    /// derivation per slot of the source's kind tried. A slot that opens to another master
    /// key is damage.
    fn slots_opened_by(
        &self,
        source: &KeySource,
        tried: impl Fn(u32) -> bool,
    ) -> Result<Vec<(u32, Key)>> {
        let kind = source.kind();
        let material = source.material()?;
        let mut opened = Vec::new();
        for slot in self
            .header
            .slots
            .iter()
            .filter(|slot| slot.kind() == kind && tried(slot.id))
        {
            // A slot above the cost limit is an error here, not skipped: a change must not
            // leave a slot of the old secret behind unnoticed.
            let tried = match try_slot(&self.header.vault_id, slot, &material, &self.kdf_limit) {
                // A keyring slot whose entry is gone or changed is not one the keyring opens.
                Err(Error::Keyring {
                    failure: KeyringFailure::NoEntry | KeyringFailure::Mismatch,
                    ..
                }) => None,
                tried => tried?,
            };
            if let Some((kek, vmk)) = tried {
                if !bool::from(vmk.bytes().ct_eq(self.vmk.bytes())) {
                    return Err(Error::header("a keyslot wraps a different master key"));
                }
                opened.push((slot.id, kek));
            }
        }
        Ok(opened)
    }

    /// [`Error::KeyslotExists`] if `new` opens a slot other than `changing` (only those are
    /// tried: a passphrase change costs one derivation per other passphrase slot, none for
    /// a vault with one).
    fn refuse_duplicate(&self, new: &KeySource, changing: &[u32]) -> Result<()> {
        if new.kind() == SlotKind::Keyring {
            // A keyring source makes a new random slot key: never a duplicate.
            return Ok(());
        }
        match self
            .slots_opened_by(new, |id| !changing.contains(&id))?
            .into_iter()
            .next()
        {
            Some((slot, _)) => Err(Error::KeyslotExists { slot }),
            None => Ok(()),
        }
    }

    /// Re-makes slots `ids` for `new` (same ids, fresh salts), and remembers their KEKs.
    fn replace_slots(&mut self, ids: &[u32], new: &KeySource, kdf: &KdfParams) -> Result<()> {
        let mut made = Vec::with_capacity(ids.len());
        for &id in ids {
            made.push(self.new_slot(id, new, kdf)?);
        }
        for (slot, kek) in made {
            let id = slot.id;
            if let Some(existing) = self.header.slots.iter_mut().find(|s| s.id == id) {
                *existing = slot;
            }
            self.keks.insert(id, kek);
        }
        Ok(())
    }
}
