//! A namespace's manifest: its sealed record count and write-generation ceiling (the
//! generations reserved for overwrites), checked against the header's floor, and the
//! namespace's creation, which writes the first manifest (`docs/format.md`, section 6).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::backend::Batch;
use crate::crypto::random_u64;
use crate::crypto::Key;
use crate::engine::NsState;
use crate::error::{Error, Result};
use crate::header::NsKeys;
use crate::record::{
    decode_manifest, encode_manifest, seal_record, Manifest, RecordContext, RecordPrefix,
    RecordType,
};

use super::commit::WRITE_RETRIES;
use super::Namespace;

/// The storage key of a namespace's manifest (record ids are 32 bytes, so never equal).
pub(crate) const MANIFEST_ID: &[u8] = &[0];
const MANIFEST_WENT_BACK: &str = "the manifest is older than one this process wrote: it was \
                                  replaced by an older copy (rolled back); run verify";
const ROLLED_BACK: &str = "storage holds an older state of the namespace than the header \
                           recorded (rolled back, or a damaged log); restore from a backup";
/// How many generations a manifest write reserves beyond the one it uses: single-record
/// overwrites take them without writing the manifest (`docs/format.md`, section 6).
pub(crate) const RESERVED_GENERATIONS: u64 = 4096;

impl Namespace {
    /// The namespace's manifest, authenticated and checked against the header's floor.
    pub(crate) fn read_manifest(&self, ns: &NsState) -> Result<(Vec<u8>, Manifest)> {
        match self.engine.call(|b| b.get(&self.id, MANIFEST_ID))? {
            Some(stored) => {
                let (prefix, plain, range) = self
                    .open(ns, MANIFEST_ID, &stored, None)
                    .map_err(|_| self.namespace_damage("the manifest fails authentication"))?;
                if prefix.record_type != RecordType::Manifest {
                    return Err(self.namespace_damage("the manifest has the wrong type"));
                }
                let manifest = decode_manifest(&plain[range])
                    .map_err(|_| self.namespace_damage("the manifest does not decode"))?;
                if manifest.generation != prefix.generation {
                    return Err(self.namespace_damage("the manifest generation is inconsistent"));
                }
                if manifest.generation < ns.floor {
                    return Err(self.namespace_damage(ROLLED_BACK));
                }
                Ok((stored, manifest))
            }
            // A namespace's manifest is written before its header entry, so a namespace the
            // header lists always has one: a missing manifest is lost data.
            None => Err(self.namespace_damage(
                "the namespace's manifest is missing: storage lost data (run verify)",
            )),
        }
    }

    /// Checks, once per handle and namespace, that storage holds the namespace at least as
    /// new as the header's floor, before serving reads from it.
    pub(super) fn check_fresh(&self, ns: &NsState) -> Result<()> {
        if ns.fresh.load(Ordering::SeqCst) {
            return Ok(());
        }
        self.read_manifest(ns)?;
        ns.fresh.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Seals a manifest under `cipher` (data key `key_id`).
    pub(super) fn seal_manifest(
        &self,
        vault_id: &[u8],
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
            },
            &RecordPrefix {
                record_type: RecordType::Manifest,
                key_id,
                generation: manifest.generation,
            },
            encode_manifest(manifest)?,
        )
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

    /// For a checkpoint: writes the manifest again with a generation above every one given
    /// out so far (a new reservation) and returns that generation, the namespace's new floor:
    /// storage rolled back to any state before this write holds a lower one. `None` if the
    /// namespace no longer exists, or is no longer the one `gens` belongs to (removed and
    /// created again). Not durable until the next flush.
    pub(crate) fn raise_manifest(
        &self,
        gens: &Arc<crate::engine::Generations>,
    ) -> Result<Option<u64>> {
        let _guard = self.engine.lock_shards(&[self.id]);
        let vault_id = self.vault_id()?;
        for _ in 0..WRITE_RETRIES {
            let Some(ns) = self.state()? else {
                return Ok(None);
            };
            if !Arc::ptr_eq(&ns.gens, gens) {
                return Ok(None);
            }
            let (stored, manifest) = self.read_manifest(&ns)?;
            self.adopt_manifest(&ns, &stored, &manifest)?;
            let gens = &ns.gens;
            let last = gens.last.load(Ordering::SeqCst);
            let ceiling = last
                .checked_add(RESERVED_GENERATIONS)
                .ok_or_else(|| self.namespace_damage("write generation exhausted"))?;
            let cipher = ns
                .active_cipher()
                .ok_or_else(|| self.namespace_damage("the active key is missing"))?;
            let sealed = self.seal_manifest(
                &vault_id,
                cipher,
                ns.active,
                &Manifest {
                    count: manifest.count,
                    generation: ceiling,
                },
            )?;
            let batch = Batch::new()
                .expect(&self.id, MANIFEST_ID, Some(&stored))
                .write(&self.id, MANIFEST_ID, Some(sealed));
            if self.engine.call(|b| b.apply(&batch))? {
                gens.reserved.store(ceiling, Ordering::SeqCst);
                if let Some(w) = batch.writes.first().and_then(|w| w.value.as_deref()) {
                    gens.set_manifest(w);
                }
                return Ok(Some(ceiling));
            }
            // A rotation step re-sealed the manifest under us: read it again.
        }
        Err(Error::backend(
            "the manifest kept changing under a checkpoint; retry the operation",
        ))
    }

    /// The namespace's state, creating the namespace (new random data key, header write)
    /// if it does not exist. Called with the namespace lock held.
    pub(super) fn ensure(&self) -> Result<Arc<NsState>> {
        if let Some(ns) = self.state()? {
            return Ok(ns);
        }
        let id = self.id;
        let key = Key::random()?;
        // Start the generation at a random point so that versions of a removed and
        // re-created namespace do not repeat.
        // Below 2^52: far from exhaustion, and exact in JSON numbers (doubles).
        let generation = random_u64()? >> 12;
        // The manifest goes to storage (durably) before the header lists the namespace, so
        // that a listed namespace without a manifest can only mean lost data. Whatever is
        // stored under the id already is an orphan (an interrupted removal, or a namespace of
        // a newer header): set it aside, never drop it (`orphans.rs`).
        self.engine.set_aside(&id)?;
        let vault_id = self.vault_id()?;
        let manifest = self.seal_manifest(
            &vault_id,
            &key.cipher(),
            1,
            &Manifest {
                count: 0,
                generation,
            },
        )?;
        self.engine
            .call(|b| b.apply(&Batch::new().write(&id, MANIFEST_ID, Some(manifest))))?;
        self.engine.sync_now()?;
        let name = self.name.to_string();
        self.engine.update_state(|s| {
            if !s.namespaces.contains_key(&id) {
                let keys = NsKeys {
                    name,
                    active: 1,
                    keys: vec![(1, key)],
                    floor: generation,
                };
                s.set_namespace(id, keys)?;
            }
            Ok(())
        })?;
        let ns = self
            .state()?
            .ok_or_else(|| Error::backend("internal: namespace vanished after creation"))?;
        // This handle wrote the manifest itself.
        ns.fresh.store(true, Ordering::SeqCst);
        Ok(ns)
    }
}
