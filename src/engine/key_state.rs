//! The unlocked key state: the current header, the vault master key and the keys it
//! unwraps (index key, keyslot KEKs, each namespace's data keys), and what this handle knows
//! of each namespace's write generations.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use subtle::ConstantTimeEq;

use crate::crypto::{Cipher, Key, Prf};
use crate::error::{Error, Result};
use crate::format::NS_ID_LEN;
use crate::header::{seal_ns, Header, NsEntry, NsKeys, Slot, VmkKeys};
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
    /// The costliest Argon2 derivation this handle runs ([`VaultOptions::kdf_limit`]).
    pub(crate) kdf_limit: KdfParams,
    pub(crate) namespaces: HashMap<[u8; NS_ID_LEN], Arc<NsState>>,
}

/// One namespace's unwrapped keys, and what this handle knows of its write generation.
pub(crate) struct NsState {
    pub(crate) name: String,
    pub(crate) active: u32,
    pub(crate) ciphers: Vec<(u32, Cipher)>,
    pub(crate) keys: Vec<(u32, Key)>,
    /// The generation recorded in the header: the manifest is never behind it.
    pub(crate) floor: u64,
    /// Whether this handle has checked the manifest against the floor.
    pub(crate) fresh: AtomicBool,
    /// What this handle knows of the namespace's write generations: shared by every state
    /// of the namespace (re-sealing its header entry keeps it), so no update is lost.
    pub(crate) gens: Arc<Generations>,
}

/// One namespace's write generations as this handle knows them (`docs/format.md`, section 6).
/// Changed only with the namespace's write lock held, except `written`, which only grows.
#[derive(Default)]
pub(crate) struct Generations {
    /// The newest generation this handle has written.
    pub(crate) written: AtomicU64,
    /// `written` as of the last checkpoint: a checkpoint is due when `written` is past it.
    pub(crate) checkpointed: AtomicU64,
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
    pub(crate) fn new(keys: NsKeys) -> Self {
        Self {
            ciphers: keys.keys.iter().map(|(id, k)| (*id, k.cipher())).collect(),
            name: keys.name,
            active: keys.active,
            keys: keys.keys,
            floor: keys.floor,
            fresh: AtomicBool::new(false),
            gens: Arc::new(Generations {
                written: AtomicU64::new(keys.floor),
                checkpointed: AtomicU64::new(keys.floor),
                ..Generations::default()
            }),
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

    pub(crate) fn to_keys(&self) -> NsKeys {
        NsKeys {
            name: self.name.clone(),
            floor: self.floor,
            active: self.active,
            keys: self
                .keys
                .iter()
                .map(|(id, k)| (*id, k.duplicate()))
                .collect(),
        }
    }
}

impl KeyState {
    pub(crate) fn duplicate(&self) -> Result<Self> {
        Ok(Self {
            header: self.header.clone(),
            header_bytes: self.header_bytes.clone(),
            vmk: self.vmk.duplicate(),
            vmk_keys: VmkKeys::new(&self.vmk, &self.header.vault_id)?,
            index_key: self.index_key.duplicate(),
            index: self.index.clone(),
            keks: self
                .keks
                .iter()
                .map(|(id, k)| (*id, k.duplicate()))
                .collect(),
            kdf_limit: self.kdf_limit,
            namespaces: self.namespaces.clone(),
        })
    }

    pub(crate) fn vault_id(&self) -> &[u8] {
        &self.header.vault_id
    }

    pub(crate) fn index(&self) -> &Prf {
        &self.index
    }

    /// Seals `keys` as the namespace entry `id` and puts it into the header and the state.
    pub(crate) fn set_namespace(&mut self, id: [u8; NS_ID_LEN], keys: NsKeys) -> Result<()> {
        let blob = seal_ns(&self.vmk_keys.wrap, &self.header.vault_id, &id, &keys)?;
        match self.header.namespaces.iter_mut().find(|e| e.id == id) {
            Some(entry) => entry.blob = blob,
            None => self.header.namespaces.push(NsEntry { id, blob }),
        }
        let mut new = NsState::new(keys);
        if let Some(old) = self.namespaces.get(&id) {
            // What this handle learnt about the namespace survives re-sealing its entry.
            new.gens = Arc::clone(&old.gens);
            new.fresh
                .store(old.fresh.load(Ordering::SeqCst), Ordering::SeqCst);
        }
        self.namespaces.insert(id, Arc::new(new));
        Ok(())
    }

    pub(crate) fn drop_namespace(&mut self, id: &[u8; NS_ID_LEN]) -> bool {
        self.header.namespaces.retain(|e| &e.id != id);
        self.namespaces.remove(id).is_some()
    }

    /// A namespace's current keys, for building a changed entry.
    pub(crate) fn namespace_keys(&self, id: &[u8; NS_ID_LEN]) -> Option<NsKeys> {
        self.namespaces.get(id).map(|ns| ns.to_keys())
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
