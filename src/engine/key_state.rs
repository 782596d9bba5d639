//! The unlocked key state: the current header, the vault master key and the keys it
//! unwraps (index key, keyslot KEKs, entry keys, the anchor key), and one namespace's
//! unwrapped entry ([`NsState`]) with what this handle knows of its write generations.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use subtle::ConstantTimeEq;

use crate::crypto::{Cipher, Key, Prf};
use crate::entry::{entry_cipher, Entry};
use crate::error::{Error, Result};
use crate::format::{ANCHOR_LABEL, INCARNATION_LEN, NS_ID_LEN};
use crate::header::{Header, Slot, VmkKeys};
use crate::keys::{KdfParams, KeySource};

use super::{new_slot, unlock_slot};

/// Everything unlocked: the current header and the keys it wraps.
pub(crate) struct KeyState {
    pub(crate) header: Header,
    /// The header's bytes as this handle read or wrote them: what the next header write
    /// expects to replace.
    pub(crate) header_bytes: Vec<u8>,
    pub(crate) vmk: Key,
    pub(crate) vmk_keys: VmkKeys,
    pub(crate) index_key: Key,
    pub(crate) index: Prf,
    /// Key-encryption keys of the slots this handle knows the secret of.
    pub(crate) keks: HashMap<u32, Key>,
    /// The keyslot whose secret opened this handle (0 for the handle that created the vault).
    pub(crate) unlocked: u32,
    /// The costliest Argon2 derivation this handle runs ([`VaultOptions::kdf_limit`]).
    pub(crate) kdf_limit: KdfParams,
    /// The header's entry-wrapping keys, unwrapped, with their entry keys.
    pub(crate) ewks: Vec<Ewk>,
    /// The key of the anchor's MAC (derived from the index key, which never changes).
    pub(crate) anchor: Prf,
}

/// One entry-wrapping key and the entry key derived from it.
pub(crate) struct Ewk {
    pub(crate) id: u32,
    pub(crate) key: Key,
    pub(crate) cipher: Cipher,
}

impl Ewk {
    pub(crate) fn new(id: u32, key: Key, vault_id: &[u8]) -> Result<Self> {
        Ok(Self {
            id,
            cipher: entry_cipher(&key, vault_id)?,
            key,
        })
    }
}

/// The anchor's MAC key: `HKDF(salt = vault_id, ikm = index_key, info = "tokenvault/v2/anchor")`.
pub(crate) fn anchor_prf(index_key: &Key, vault_id: &[u8]) -> Result<Prf> {
    Prf::new(&index_key.derive(vault_id, ANCHOR_LABEL)?)
}

/// One namespace's unwrapped entry, and what this handle knows of its write generations.
pub(crate) struct NsState {
    pub(crate) id: [u8; NS_ID_LEN],
    pub(crate) name: String,
    pub(crate) incarnation: [u8; INCARNATION_LEN],
    pub(crate) active: u32,
    pub(crate) ciphers: Vec<(u32, Cipher)>,
    pub(crate) keys: Vec<(u32, Key)>,
    /// The stored entry this state was read from or written as: what a change of the entry
    /// expects to replace.
    pub(crate) stored: Vec<u8>,
    /// What this handle knows of the namespace's write generations: shared by every state
    /// of this incarnation (re-sealing its entry keeps it), so no update is lost.
    pub(crate) gens: Arc<Generations>,
}

/// One namespace's write generations as this handle knows them (`docs/format.md`, section 6).
/// Changed only with the namespace's write lock held.
#[derive(Default)]
pub(crate) struct Generations {
    /// The manifest's generation (the ceiling of the generations reserved for records) as
    /// this handle last read or wrote it, or 0 while unknown. Single-record overwrites take
    /// generations up to it without writing the manifest.
    pub(crate) reserved: AtomicU64,
    /// The newest generation given out: every generation up to the manifest's when it was
    /// read counts as given out, so none is ever given twice.
    pub(crate) last: AtomicU64,
    /// The stored manifest as this handle last authenticated or wrote it: an overwrite that
    /// skips the manifest first checks that storage still holds exactly these bytes, so a
    /// damaged, removed or replaced manifest still stops writes.
    pub(crate) manifest: Mutex<Vec<u8>>,
    /// The record this handle last wrote in the namespace (on shared storage only): its id,
    /// stored bytes and generation. An overwrite of it expects exactly these bytes, and the
    /// manifest above, in its one conditional write instead of reading them first (one round
    /// trip to a database server instead of two); a refused write forgets them and reads.
    /// One record per namespace, so the memory it takes is bounded by the entry cache.
    pub(crate) written: Mutex<Option<LastWrite>>,
}

/// A record as this handle last wrote it.
pub(crate) struct LastWrite {
    pub(crate) rid: [u8; 32],
    pub(crate) bytes: Vec<u8>,
    pub(crate) generation: u64,
}

impl Generations {
    /// Whether `stored` is the manifest this handle last saw.
    pub(crate) fn manifest_is(&self, stored: &[u8]) -> bool {
        self.manifest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_slice()
            == stored
    }

    /// The stored manifest as this handle last authenticated or wrote it (empty: none yet).
    pub(crate) fn manifest_bytes(&self) -> Vec<u8> {
        self.manifest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Remembers the record this handle just wrote (`None`: forgets it).
    pub(crate) fn remember(&self, written: Option<LastWrite>) {
        *self
            .written
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = written;
    }

    /// The bytes and generation of record `rid` as this handle last wrote it, if it was the
    /// last record written.
    pub(crate) fn last_write(&self, rid: &[u8; 32]) -> Option<(Vec<u8>, u64)> {
        self.written
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .filter(|w| w.rid == *rid)
            .map(|w| (w.bytes.clone(), w.generation))
    }

    /// Remembers the manifest this handle just authenticated or wrote.
    pub(crate) fn set_manifest(&self, stored: &[u8]) {
        let mut m = self
            .manifest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        m.clear();
        m.extend_from_slice(stored);
    }
}

impl NsState {
    /// The state of entry `entry` of namespace `id`, stored as `stored`.
    pub(crate) fn new(id: [u8; NS_ID_LEN], entry: Entry, stored: Vec<u8>) -> Self {
        Self {
            id,
            ciphers: entry.keys.iter().map(|(i, k)| (*i, k.cipher())).collect(),
            name: entry.name,
            incarnation: entry.incarnation,
            active: entry.active,
            keys: entry.keys,
            stored,
            gens: Arc::new(Generations::default()),
        }
    }

    pub(crate) fn cipher(&self, key_id: u32) -> Option<&Cipher> {
        self.ciphers
            .iter()
            .find_map(|(id, c)| (*id == key_id).then_some(c))
    }

    pub(crate) fn active_cipher(&self) -> Option<&Cipher> {
        self.cipher(self.active)
    }

    pub(crate) fn rotation_pending(&self) -> bool {
        self.keys.len() > 1
    }

    /// The entry's contents, for building a changed entry.
    pub(crate) fn to_entry(&self) -> Entry {
        Entry {
            name: self.name.clone(),
            incarnation: self.incarnation,
            active: self.active,
            keys: self
                .keys
                .iter()
                .map(|(id, k)| (*id, k.duplicate()))
                .collect(),
        }
    }

    /// The storage prefix of this incarnation's records, and its manifest's key:
    /// `ns_id || incarnation`.
    pub(crate) fn prefix(&self) -> Vec<u8> {
        let mut key = Vec::with_capacity(NS_ID_LEN + INCARNATION_LEN + 32);
        key.extend_from_slice(&self.id);
        key.extend_from_slice(&self.incarnation);
        key
    }

    /// The storage key of record `rid`: `ns_id || incarnation || rid`.
    pub(crate) fn record_key(&self, rid: &[u8]) -> Vec<u8> {
        let mut key = self.prefix();
        key.extend_from_slice(rid);
        key
    }
}

impl KeyState {
    pub(crate) fn duplicate(&self) -> Result<Self> {
        let vault_id = self.header.vault_id;
        Ok(Self {
            header: self.header.clone(),
            header_bytes: self.header_bytes.clone(),
            vmk: self.vmk.duplicate(),
            vmk_keys: VmkKeys::new(&self.vmk, &vault_id)?,
            index_key: self.index_key.duplicate(),
            index: self.index.clone(),
            keks: self
                .keks
                .iter()
                .map(|(id, k)| (*id, k.duplicate()))
                .collect(),
            unlocked: self.unlocked,
            kdf_limit: self.kdf_limit,
            ewks: self
                .ewks
                .iter()
                .map(|e| Ewk::new(e.id, e.key.duplicate(), &vault_id))
                .collect::<Result<_>>()?,
            anchor: self.anchor.clone(),
        })
    }

    /// The entry-wrapping key `id`, if this header holds it.
    pub(crate) fn ewk(&self, id: u32) -> Option<&Ewk> {
        self.ewks.iter().find(|e| e.id == id)
    }

    /// Unwraps the header's entry-wrapping keys under `vmk_keys`.
    pub(crate) fn unwrap_ewks(header: &Header, vmk_keys: &VmkKeys) -> Result<Vec<Ewk>> {
        header
            .ewks
            .iter()
            .map(|(id, wrapped)| {
                let key = vmk_keys
                    .wrap
                    .unwrap_key(&header.ewk_aad(*id), wrapped)
                    .ok_or_else(|| Error::header("an entry key does not unwrap"))?;
                Ewk::new(*id, key, &header.vault_id)
            })
            .collect()
    }

    /// Re-wraps every entry-wrapping key under the current VMK into the header.
    pub(crate) fn wrap_ewks(&mut self) -> Result<()> {
        let mut wrapped = Vec::with_capacity(self.ewks.len());
        for e in &self.ewks {
            wrapped.push((
                e.id,
                self.vmk_keys
                    .wrap
                    .wrap_key(&self.header.ewk_aad(e.id), &e.key)?,
            ));
        }
        self.header.ewks = wrapped;
        Ok(())
    }

    pub(crate) fn vault_id(&self) -> &[u8] {
        &self.header.vault_id
    }

    pub(crate) fn index(&self) -> &Prf {
        &self.index
    }

    /// Which slot `source` opens, and its KEK: one derivation per slot of the source's kind
    /// tried, exactly one when `only` names the slot.
    pub(crate) fn find_slot(&self, source: &KeySource, only: Option<u32>) -> Result<(u32, Key)> {
        let (id, kek, vmk) = unlock_slot(&self.header, source, only, &self.kdf_limit)?;
        if bool::from(vmk.bytes().ct_eq(self.vmk.bytes())) {
            Ok((id, kek))
        } else {
            Err(Error::header("a keyslot wraps a different master key"))
        }
    }

    /// Builds a slot for `source`, wrapping the current VMK, with a fresh salt.
    pub(crate) fn new_slot(
        &self,
        id: u32,
        source: &KeySource,
        kdf: &KdfParams,
    ) -> Result<(Slot, Key)> {
        new_slot(
            &self.header.vault_id,
            id,
            source,
            kdf,
            &self.kdf_limit,
            &self.vmk,
        )
    }
}
