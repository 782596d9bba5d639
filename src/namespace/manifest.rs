//! A namespace's manifest: its sealed record count and write-generation ceiling (the
//! generations reserved for overwrites), and a new incarnation of the namespace, which its
//! first write stores with its first records in one conditional batch (`docs/format.md`,
//! section 6).

use std::sync::atomic::Ordering;

use crate::backend::{Batch, Condition};
use crate::crypto::{fill_random, random_u64, Key};
use crate::engine::NsState;
use crate::entry::Entry;
use crate::error::Result;
use crate::format::{INCARNATION_LEN, MANIFESTS_TREE, RECORDS_TREE};
use crate::record::{
    decode_manifest, encode_manifest, parse_prefix, seal_record, Manifest, RecordContext,
    RecordPrefix, RecordType,
};

use super::Namespace;

/// The record id of a namespace's manifest in its AAD (record ids are 32 bytes, so never
/// equal).
pub(crate) const MANIFEST_ID: &[u8] = &[0];
const MANIFEST_WENT_BACK: &str = "the manifest is older than one this process wrote: it was \
                                  replaced by an older copy (rolled back); run verify";
/// How many generations a manifest write reserves beyond the one it uses: single-record
/// overwrites take them without writing the manifest (`docs/format.md`, section 6).
pub(crate) const RESERVED_GENERATIONS: u64 = 4096;
/// How often [`Namespace::count_insert`] tries again after another handle rewrote the
/// manifest.
const COUNT_RETRIES: usize = 8;

impl Namespace {
    /// The namespace's manifest, authenticated; `None` when the namespace's entry changed
    /// under the caller's state (another handle removed it, or removed and created it
    /// again): the caller reads the state again.
    ///
    /// # Errors
    /// [`Error::Damaged`](crate::Error::Damaged) for a manifest that is missing or does not
    /// authenticate while the entry is unchanged.
    pub(crate) fn read_manifest(&self, ns: &NsState) -> Result<Option<(Vec<u8>, Manifest)>> {
        let stored = self.engine.call(|b| b.get(MANIFESTS_TREE, &ns.prefix()))?;
        let opened = stored
            .as_deref()
            .map(|stored| self.open_manifest(ns, stored));
        if let Some(Ok(manifest)) = opened {
            return Ok(stored.map(|s| (s, manifest)));
        }
        // The entry and the first manifest are written in one batch and removed in one,
        // so a manifest that is missing or does not open under an unchanged entry is damage.
        match self.engine.load_entry(&self.id, &self.name)? {
            Some(fresh) if fresh.stored == ns.stored => Err(match opened {
                Some(Err(reason)) => self.namespace_damage(reason),
                _ => self.namespace_damage(
                    "the namespace's manifest is missing: storage lost data (run verify)",
                ),
            }),
            _ => Ok(None),
        }
    }

    fn open_manifest(&self, ns: &NsState, stored: &[u8]) -> Result<Manifest, &'static str> {
        let (prefix, plain, range) = self
            .open(ns, MANIFEST_ID, stored, None)
            .map_err(|_| "the manifest fails authentication")?;
        if prefix.record_type != RecordType::Manifest {
            return Err("the manifest has the wrong type");
        }
        let manifest =
            decode_manifest(&plain[range]).map_err(|_| "the manifest does not decode")?;
        if manifest.generation != prefix.generation {
            return Err("the manifest generation is inconsistent");
        }
        Ok(manifest)
    }

    /// Seals a manifest of `ns` under `cipher` (data key `key_id`).
    pub(super) fn seal_manifest(
        &self,
        vault_id: &[u8],
        ns: &NsState,
        cipher: &crate::crypto::Cipher,
        key_id: u32,
        manifest: &Manifest,
    ) -> Result<Vec<u8>> {
        seal_record(
            cipher,
            &RecordContext {
                vault_id,
                namespace: &self.name,
                record_id: MANIFEST_ID,
                incarnation: Some(&ns.incarnation),
            },
            &RecordPrefix {
                record_type: RecordType::Manifest,
                key_id,
                generation: manifest.generation,
            },
            encode_manifest(manifest)?,
        )
    }

    /// Counts a record this handle has just stored by the single-key fast path
    /// (`commit::insert`): a compare-and-swap of the manifest from `manifest` (the stored
    /// manifest found unchanged before the record was written) to one with the count raised
    /// by one and the generation ceiling renewed past the record's `generation`, as a batch
    /// write would (so a manifest this handle replaced still reads as older than its own).
    ///
    /// The count may lag, never lead: a crash between the two writes leaves the record
    /// uncounted, and so does any doubt. When another handle rewrote the manifest in
    /// between, the record is counted only while it is still exactly the one written (a
    /// removal elsewhere already took it off the count, and a re-creation counted itself);
    /// a manifest write whose outcome is unknown is never repeated. When the namespace was
    /// removed in between, the record is removed again, so that no orphan stays behind its
    /// removal's sweep. Errors end the counting: the record itself is stored.
    pub(super) fn count_insert(
        &self,
        ns: &NsState,
        manifest: &[u8],
        record_key: &[u8],
        sealed: &[u8],
        generation: u64,
    ) {
        let manifest_key = ns.prefix();
        let mut expected = manifest.to_vec();
        for _ in 0..COUNT_RETRIES {
            let Ok(current) = self.open_manifest(ns, &expected) else {
                return;
            };
            if parse_prefix(&expected).map_or(true, |p| p.key_id > ns.active) {
                return;
            }
            let (Some(count), Some(cipher), Ok(vault_id)) = (
                current.count.checked_add(1),
                ns.active_cipher(),
                self.engine.read_state().map(|s| s.vault_id().to_vec()),
            ) else {
                return;
            };
            let ceiling = generation
                .saturating_add(RESERVED_GENERATIONS)
                .max(current.generation);
            let counted = Manifest {
                count,
                generation: ceiling,
            };
            let Ok(new) = self.seal_manifest(&vault_id, ns, cipher, ns.active, &counted) else {
                return;
            };
            let batch = Batch::new()
                .expect(MANIFESTS_TREE, &manifest_key, Some(&expected))
                .write(MANIFESTS_TREE, &manifest_key, Some(new.clone()));
            match self.engine.call(|b| b.apply(&batch)) {
                Ok(true) => {
                    ns.gens.reserved.store(ceiling, Ordering::SeqCst);
                    ns.gens.set_manifest(&new);
                    return;
                }
                Ok(false) => {}
                // The outcome is unknown: counting again could count the record twice.
                Err(_) => return,
            }
            let now = match self.engine.call(|b| b.get(MANIFESTS_TREE, &manifest_key)) {
                Ok(Some(now)) => now,
                Ok(None) => {
                    // Removed under the write: its sweep may already have passed the record.
                    let undo = Batch::new()
                        .expect(RECORDS_TREE, record_key, Some(sealed))
                        .write(RECORDS_TREE, record_key, None);
                    let _ = self.engine.call(|b| b.apply(&undo));
                    return;
                }
                Err(_) => return,
            };
            match self.engine.call(|b| b.get(RECORDS_TREE, record_key)) {
                Ok(Some(stored)) if stored == sealed => {}
                _ => return,
            }
            match self.open_manifest(ns, &now) {
                Ok(newer) if self.adopt_manifest(ns, &now, &newer).is_ok() => expected = now,
                _ => return,
            }
        }
    }

    /// The first half of a renewal of the reservation
    /// ([`renew_reservation`](Self::renew_reservation)): the namespace's manifest read,
    /// authenticated and taken in
    /// (so the handle's reservation is the manifest's ceiling, which the caller checks the
    /// record it replaces against before anything is written). `None` when the entry changed
    /// under the caller's state or the manifest is sealed under a key the state lacks (the
    /// general path reads them again).
    ///
    /// # Errors
    /// [`Error::Damaged`](crate::Error::Damaged) for a manifest that is missing, does not
    /// authenticate, or is older than one this handle wrote.
    pub(super) fn manifest_to_renew(&self, ns: &NsState) -> Result<Option<(Vec<u8>, Manifest)>> {
        let Some((stored, manifest)) = self.read_manifest(ns)? else {
            return Ok(None);
        };
        if parse_prefix(&stored).map_or(true, |p| p.key_id > ns.active) {
            return Ok(None);
        }
        self.adopt_manifest(ns, &stored, &manifest)?;
        Ok(Some((stored, manifest)))
    }

    /// Reserves generations with a single-key compare-and-swap of the manifest `stored`
    /// (`manifest`, from [`manifest_to_renew`](Self::manifest_to_renew)): the same count, and
    /// the ceiling raised past every generation given out, as a batch write would raise it.
    /// Returns the manifest now stored; `None` when it changed meanwhile.
    ///
    /// Safe on shared storage too: a manifest reserving generations that no record carries
    /// yet is a state every crash can leave, and the record write that follows is a
    /// compare-and-swap on the record's exact bytes.
    pub(super) fn renew_reservation(
        &self,
        ns: &NsState,
        stored: &[u8],
        manifest: &Manifest,
    ) -> Result<Option<Vec<u8>>> {
        let exhausted = || self.namespace_damage("write generation exhausted");
        let ceiling = ns
            .gens
            .last
            .load(Ordering::SeqCst)
            .checked_add(1 + RESERVED_GENERATIONS)
            .ok_or_else(exhausted)?
            .max(manifest.generation);
        let Some(cipher) = ns.active_cipher() else {
            return Ok(None);
        };
        let vault_id = self.engine.read_state()?.vault_id().to_vec();
        let renewed = self.seal_manifest(
            &vault_id,
            ns,
            cipher,
            ns.active,
            &Manifest {
                count: manifest.count,
                generation: ceiling,
            },
        )?;
        let key = ns.prefix();
        let batch = Batch::new()
            .expect(MANIFESTS_TREE, &key, Some(stored))
            .write(MANIFESTS_TREE, &key, Some(renewed.clone()));
        if !self.engine.call(|b| b.apply(&batch))? {
            return Ok(None);
        }
        ns.gens.reserved.store(ceiling, Ordering::SeqCst);
        ns.gens.set_manifest(&renewed);
        Ok(Some(renewed))
    }

    /// Takes in a manifest just read and authenticated: every generation up to its own may
    /// have been given out. A manifest below what this handle reserved itself was replaced
    /// by an older copy under it.
    pub(super) fn adopt_manifest(
        &self,
        ns: &NsState,
        stored: &[u8],
        manifest: &Manifest,
    ) -> Result<()> {
        let gens = &ns.gens;
        let reserved = gens.reserved.load(Ordering::SeqCst);
        if manifest.generation < reserved {
            return Err(self.namespace_damage(MANIFEST_WENT_BACK));
        }
        gens.last.fetch_max(manifest.generation, Ordering::SeqCst);
        gens.reserved.store(manifest.generation, Ordering::SeqCst);
        gens.set_manifest(stored);
        Ok(())
    }

    /// A new incarnation of this namespace, not yet stored: its state (random incarnation and
    /// data key), its sealed entry with the condition its write carries, and its first
    /// manifest (no records, a generation at a
    /// random point below 2^52: far from exhaustion, exact in JSON numbers, and versions of a
    /// re-created namespace do not repeat). The write that creates the namespace stores the
    /// entry with its first records, in one batch.
    pub(super) fn new_incarnation(&self) -> Result<(NsState, Vec<u8>, Condition, Manifest)> {
        let mut incarnation = [0u8; INCARNATION_LEN];
        fill_random(&mut incarnation)?;
        let entry = Entry {
            name: self.name.to_string(),
            incarnation,
            active: 1,
            keys: vec![(1, Key::random()?)],
        };
        let (stored, marked) = self.engine.seal_entry(&self.id, &entry)?;
        let state = NsState::new(self.id, entry, stored.clone());
        let generation = random_u64()? >> 12;
        state.gens.last.store(generation, Ordering::SeqCst);
        Ok((
            state,
            stored,
            marked,
            Manifest {
                count: 0,
                generation,
            },
        ))
    }
}
