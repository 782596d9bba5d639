//! Long-running work over many records: namespace-key rotation and verification.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use zeroize::Zeroizing;

use crate::backend::{Batch, Write};
use crate::crypto::{Key, TAG_LEN};
use crate::engine::NsState;
use crate::entry::entry_clear;
use crate::error::{Damage, Error, Result};
use crate::format::{
    ENTRIES_TREE, INCARNATION_LEN, MANIFESTS_TREE, NS_ID_LEN, PENDING_ROTATION, RECORDS_TREE,
};
use crate::namespace::{Namespace, MANIFEST_ID};
use crate::record::{
    decode_manifest, parse_prefix, seal_record, RecordContext, RecordPrefix, RecordType,
    RECORD_HEADER_LEN,
};
use crate::vault::Vault;

const PAGE: usize = 256;

/// Progress of a long operation, passed to its callback after each batch of records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Progress {
    /// Records processed so far.
    pub done: u64,
    /// Records expected in all (from the namespace manifests), if known.
    pub total: Option<u64>,
}

/// What [`Vault::rotate_namespace_key`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RotationReport {
    /// The new data key's id, which every record now carries.
    pub key_id: u32,
    /// Records re-sealed under it.
    pub resealed: u64,
}

/// What [`Vault::verify`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifyReport {
    /// One entry per namespace, sorted by name.
    pub namespaces: Vec<NamespaceReport>,
    /// Namespace entries that do not open (damaged or forged), by storage id.
    pub damaged_entries: Vec<DamagedRecord>,
    /// Namespace incarnations whose records or manifest remain in storage without an entry
    /// naming them: left by a namespace removal that stopped midway. Undecryptable without
    /// the removed entry; [`Vault::purge_orphans`] removes them.
    pub orphans: usize,
    /// Storage trees of format version 1 left by an upgrade that stopped before removing
    /// them (their records were copied first); [`Vault::purge_orphans`] drops them.
    pub orphan_trees: usize,
    /// Trees holding what a namespace's creation found under its id (an orphan) and set
    /// aside instead of deleting. Never dropped by the vault itself: see
    /// [`Vault::purge_set_aside`].
    pub set_aside_trees: usize,
}

/// [`VerifyReport`] for one namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NamespaceReport {
    /// The namespace name.
    pub namespace: String,
    /// Records that authenticated and decoded.
    pub ok: u64,
    /// Records that failed, with the reason.
    pub damaged: Vec<DamagedRecord>,
    /// Records the manifest counts but storage no longer has: lost to damage, not removed.
    pub missing: u64,
    /// Why the manifest itself is unusable, if it is.
    pub manifest_damaged: Option<&'static str>,
    /// Whether a key rotation is unfinished (the namespace still holds an old key).
    pub rotation_pending: bool,
}

/// A record [`Vault::verify`] could not open.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DamagedRecord {
    /// The record key, if the record still decrypts far enough to tell it.
    pub key: Option<String>,
    /// The record's storage id (hex): its name is sealed inside it.
    pub storage_id: String,
    /// What is wrong.
    pub reason: String,
}

impl VerifyReport {
    /// Whether nothing is damaged, missing or pending.
    pub fn is_clean(&self) -> bool {
        self.orphan_trees == 0
            && self.orphans == 0
            && self.damaged_entries.is_empty()
            && self.set_aside_trees == 0
            && self.namespaces.iter().all(|n| {
                n.damaged.is_empty()
                    && n.missing == 0
                    && n.manifest_damaged.is_none()
                    && !n.rotation_pending
            })
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for n in &self.namespaces {
            write!(
                f,
                "{:?}: {} ok, {} damaged, {} missing",
                n.namespace,
                n.ok,
                n.damaged.len(),
                n.missing
            )?;
            if let Some(m) = n.manifest_damaged {
                write!(f, ", manifest damaged ({m})")?;
            }
            if n.rotation_pending {
                f.write_str(", key rotation pending")?;
            }
            writeln!(f)?;
        }
        for e in &self.damaged_entries {
            writeln!(f, "namespace entry {}: {}", e.storage_id, e.reason)?;
        }
        if self.orphans > 0 {
            writeln!(f, "{} orphaned namespace incarnation(s)", self.orphans)?;
        }
        if self.orphan_trees > 0 {
            writeln!(f, "{} orphaned tree(s)", self.orphan_trees)?;
        }
        if self.set_aside_trees > 0 {
            writeln!(f, "{} set-aside tree(s)", self.set_aside_trees)?;
        }
        Ok(())
    }
}

impl Vault {
    /// Rotates the data key of namespace `name`: a new random key becomes active at once (new
    /// writes use it), every record sealed under an older key is re-sealed under it, and
    /// only then are the old keys destroyed. Other namespaces are untouched. Concurrent reads
    /// and writes continue throughout.
    ///
    /// If the process dies midway, the next [`Vault::open`] finishes the rotation.
    /// `progress` is called after each batch of records.
    ///
    /// # Errors
    /// [`Error::Damaged`] if some records cannot be opened to re-seal them: the rotation
    /// stays pending (the old key is kept) so that nothing is lost; remove or restore those
    /// records (see [`Vault::verify`]) and rotate again.
    pub fn rotate_namespace_key(
        &self,
        name: &str,
        progress: impl FnMut(Progress),
    ) -> Result<RotationReport> {
        let ns = self.namespace(name)?;
        let _maintenance = self.engine.lock_maintenance();
        let guard = self.engine.lock_ns(&ns.id);
        let mut key_id = None;
        for _ in 0..64 {
            let state = self
                .engine
                .load_entry(&ns.id, name)?
                .ok_or(Error::InvalidName {
                    reason: "no such namespace",
                })?;
            if state.rotation_pending() {
                // A rotation is already pending: finish it rather than stack another key
                // on top (a namespace holds at most 64 keys).
                key_id = Some(state.active);
                break;
            }
            let mut entry = state.to_entry();
            let next = entry
                .keys
                .iter()
                .map(|(id, _)| *id)
                .max()
                .unwrap_or(0)
                .checked_add(1)
                .ok_or_else(|| Error::backend("namespace key ids exhausted"))?;
            entry.keys.push((next, Key::random()?));
            entry.active = next;
            // The mark of the unfinished rotation goes with the new key, so that the next
            // open finishes it if this process stops first.
            let mark = vec![Write {
                tree: MANIFESTS_TREE.to_vec(),
                key: pending_key(&ns.id),
                value: Some(Vec::new()),
            }];
            if self.engine.replace_entry(&state, entry, mark)?.is_some() {
                key_id = Some(next);
                break;
            }
        }
        let key_id = key_id.ok_or_else(|| {
            Error::backend("the namespace's entry kept changing under a rotation; retry it")
        })?;
        drop(guard);
        let resealed = self.finish_rotation(&ns, progress)?;
        Ok(RotationReport { key_id, resealed })
    }

    /// Finishes the namespace-key rotations that a stopped process left unfinished (marked
    /// in storage, so that opening needs no scan of the namespaces); a failure leaves the
    /// rotation pending ([`verify`](Self::verify) reports it) rather than failing the open.
    pub(crate) fn resume_rotations(&self) -> Result<()> {
        let marks = self
            .engine
            .call(|b| b.scan(MANIFESTS_TREE, &[PENDING_ROTATION], None, PAGE))?;
        let _maintenance = self.engine.lock_maintenance();
        for (key, _) in marks {
            let Ok(id) = <[u8; NS_ID_LEN]>::try_from(&key[1..]) else {
                continue;
            };
            let Some(stored) = self.engine.call(|b| b.get(ENTRIES_TREE, &id))? else {
                let batch = Batch::new().write(MANIFESTS_TREE, &key, None);
                self.engine.call(|b| b.apply(&batch))?;
                continue;
            };
            if let Ok(entry) = self.engine.open_stored_entry(&id, &stored)? {
                let ns = Namespace::new(Arc::clone(&self.engine), &entry.name, id);
                let _ = self.finish_rotation(&ns, |_| {});
            }
        }
        Ok(())
    }

    /// Re-seals every record of `ns` (and its manifest) that is not under the active key,
    /// then drops the other keys. Called with the maintenance lock held.
    fn finish_rotation(&self, ns: &Namespace, mut progress: impl FnMut(Progress)) -> Result<u64> {
        let state = self
            .engine
            .load_entry(&ns.id, ns.name())?
            .ok_or(Error::InvalidName {
                reason: "no such namespace",
            })?;
        let total = self.manifest_count(ns, &state);
        let prefix = state.prefix();
        let mut done = 0u64;
        let mut resealed = 0u64;
        let mut failed = 0u64;
        // The manifest first: a handle elsewhere that still seals under the old key then finds
        // every write of a new record refused (they are conditional on the manifest), reads
        // the manifest under the new key, and reads the namespace's entry again; its
        // overwrites find the records re-sealed under a key it does not know, likewise.
        if let Some(stored) = self.engine.call(|b| b.get(MANIFESTS_TREE, &prefix))? {
            match self.reseal(ns, &state, MANIFESTS_TREE, &prefix, MANIFEST_ID, stored)? {
                Some(true) => resealed += 1,
                Some(false) => {}
                None => failed += 1,
            }
            done += 1;
        }
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = self
                .engine
                .call(|b| b.scan(RECORDS_TREE, &prefix, after.as_deref(), PAGE))?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            for (key, stored) in page {
                match self.reseal(ns, &state, RECORDS_TREE, &key, &key[prefix.len()..], stored)? {
                    Some(true) => resealed += 1,
                    Some(false) => {}
                    None => failed += 1,
                }
                done += 1;
            }
            // Re-sealed records must be durable before the old key can go.
            self.engine.sync_now()?;
            progress(Progress { done, total });
        }
        if failed > 0 {
            return Err(Error::Damaged(Damage::Namespace {
                namespace: ns.name().to_owned(),
                reason: "some records cannot be opened to re-seal them; the rotation stays \
                         pending and the old key is kept (run verify)",
            }));
        }
        let guard = self.engine.lock_ns(&ns.id);
        let unmark = || Write {
            tree: MANIFESTS_TREE.to_vec(),
            key: pending_key(&ns.id),
            value: None,
        };
        for _ in 0..64 {
            let current = self.engine.load_entry(&ns.id, ns.name())?;
            let Some(current) =
                current.filter(|c| c.incarnation == state.incarnation && c.rotation_pending())
            else {
                // Removed, re-created or finished elsewhere: only the mark is left to go.
                let batch = Batch {
                    conditions: Vec::new(),
                    writes: vec![unmark()],
                };
                self.engine.call(|b| b.apply(&batch))?;
                break;
            };
            let mut entry = current.to_entry();
            let active = entry.active;
            entry.keys.retain(|(kid, _)| *kid == active);
            if self
                .engine
                .replace_entry(&current, entry, vec![unmark()])?
                .is_some()
            {
                break;
            }
        }
        drop(guard);
        // The old keys are gone when this returns, whatever the durability mode.
        self.engine.sync_now()?;
        Ok(resealed)
    }

    /// Re-seals one stored record (or the manifest) of `ns` under its active key:
    /// `Some(true)` if it did, `Some(false)` if nothing was to do, `None` if it does not
    /// open. A concurrent write may replace the record between the read and the swap; it is
    /// then sealed under the active key already, or read again.
    fn reseal(
        &self,
        ns: &Namespace,
        state: &NsState,
        tree: &[u8],
        key: &[u8],
        rid: &[u8],
        mut stored: Vec<u8>,
    ) -> Result<Option<bool>> {
        let vault_id = self.engine.read_state()?.vault_id().to_vec();
        for _ in 0..16 {
            let Ok(prefix) = parse_prefix(&stored) else {
                return Ok(None);
            };
            if prefix.key_id == state.active {
                return Ok(Some(false));
            }
            let Ok((_, plain, range)) = ns.open(state, rid, &stored, None) else {
                return Ok(None);
            };
            let cipher = state
                .active_cipher()
                .ok_or_else(|| Error::backend("internal: active key missing"))?;
            let ctx = RecordContext {
                vault_id: &vault_id,
                namespace: ns.name(),
                record_id: rid,
                incarnation: Some(&state.incarnation),
            };
            let resealed = seal_record(
                cipher,
                &ctx,
                &RecordPrefix {
                    key_id: state.active,
                    ..prefix
                },
                reframe(&plain[range]),
            )?;
            let batch =
                Batch::new()
                    .expect(tree, key, Some(&stored))
                    .write(tree, key, Some(resealed));
            if self.engine.call(|b| b.apply(&batch))? {
                return Ok(Some(true));
            }
            match self.engine.call(|b| b.get(tree, key))? {
                Some(now) => stored = now,
                None => return Ok(Some(false)),
            }
        }
        Err(Error::backend(
            "a record kept changing under a rotation; retry it",
        ))
    }

    fn manifest_count(&self, ns: &Namespace, state: &NsState) -> Option<u64> {
        let stored = self
            .engine
            .call(|b| b.get(MANIFESTS_TREE, &state.prefix()))
            .ok()??;
        let (prefix, plain, range) = ns.open(state, MANIFEST_ID, &stored, None).ok()?;
        (prefix.record_type == RecordType::Manifest)
            .then(|| decode_manifest(&plain[range]).ok().map(|m| m.count + 1))
            .flatten()
    }

    /// Authenticates and decodes every record in every namespace and checks each namespace
    /// against its manifest: reports damaged records, records lost to damage (counted by the
    /// manifest but gone from storage), unfinished rotations and orphaned trees. Read-only.
    ///
    /// # Errors
    /// Backend errors only; damage is reported in the [`VerifyReport`].
    pub fn verify(&self, mut progress: impl FnMut(Progress)) -> Result<VerifyReport> {
        let (orphans, orphan_trees, set_aside_trees) = self.unlisted_counts()?;
        let mut report = VerifyReport {
            orphans,
            orphan_trees,
            set_aside_trees,
            ..VerifyReport::default()
        };
        let mut done = 0u64;
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = self
                .engine
                .call(|b| b.scan(ENTRIES_TREE, &[], after.as_deref(), PAGE))?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            for (key, stored) in page {
                let Ok(id) = <[u8; NS_ID_LEN]>::try_from(key.as_slice()) else {
                    continue; // the entry-key marker
                };
                let entry = match self.engine.open_stored_entry(&id, &stored)? {
                    Ok(entry) => entry,
                    Err(reason) => {
                        report.damaged_entries.push(DamagedRecord {
                            key: None,
                            storage_id: hex(&id),
                            reason: reason.to_owned(),
                        });
                        continue;
                    }
                };
                let ns = Namespace::new(Arc::clone(&self.engine), &entry.name, id);
                // The handle's own state when it holds this very entry (what it reserved
                // shows a manifest replaced by an older copy), else a fresh one.
                let state = match self.engine.namespace_state(&id, &entry.name)? {
                    Some(cached) if cached.stored == stored => cached,
                    _ => Arc::new(NsState::new(id, entry, stored)),
                };
                report
                    .namespaces
                    .push(self.verify_namespace(&ns, &state, &mut done)?);
                progress(Progress { done, total: None });
            }
        }
        report
            .namespaces
            .sort_by(|a, b| a.namespace.cmp(&b.namespace));
        Ok(report)
    }

    fn verify_namespace(
        &self,
        ns: &Namespace,
        state: &NsState,
        done: &mut u64,
    ) -> Result<NamespaceReport> {
        let mut r = NamespaceReport {
            namespace: ns.name().to_owned(),
            rotation_pending: state.rotation_pending(),
            ..NamespaceReport::default()
        };
        // Before the manifest is read: it only grows, so a manifest read later that is
        // below it was replaced by an older copy (a concurrent write cannot cause that).
        let reserved = state.gens.reserved.load(Ordering::SeqCst);
        let prefix = state.prefix();
        let manifest = self
            .engine
            .call(|b| b.get(MANIFESTS_TREE, &prefix))?
            .map(|stored| match ns.open(state, MANIFEST_ID, &stored, None) {
                Ok((p, plain, range)) if p.record_type == RecordType::Manifest => {
                    decode_manifest(&plain[range]).map_err(|_| "the manifest does not decode")
                }
                Ok(_) => Err("the manifest has the wrong type"),
                Err(_) => Err("the manifest fails authentication"),
            });
        if manifest.is_some() {
            *done += 1;
        }
        let mut generations = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = self
                .engine
                .call(|b| b.scan(RECORDS_TREE, &prefix, after.as_deref(), PAGE))?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            for (key, stored) in &page {
                *done += 1;
                let rid = &key[prefix.len()..];
                match ns.open_name(state, rid, stored) {
                    Ok(_) => {
                        r.ok += 1;
                        if let Ok(p) = parse_prefix(stored) {
                            generations.push((rid.to_vec(), p.generation));
                        }
                    }
                    Err(e) => r.damaged.push(DamagedRecord {
                        key: match &e {
                            Error::Damaged(Damage::Record { key, .. }) => key.clone(),
                            _ => None,
                        },
                        storage_id: hex(rid),
                        reason: e.to_string(),
                    }),
                }
            }
        }
        let found = r.ok + r.damaged.len() as u64;
        match manifest {
            Some(Ok(m)) if m.generation < reserved => {
                r.manifest_damaged = Some(
                    "the manifest is older than one this process wrote: it was replaced by \
                     an older copy (rolled back)",
                );
            }
            Some(Ok(m)) => {
                r.missing = m.count.saturating_sub(found);
                // A manifest reserves every generation before a record carries it, so no
                // record can be newer than it, unless it was replaced by an older copy. A
                // write during the scan may have raised it since it was read: compare with
                // the manifest as it is now, when that is newer.
                let mut ceiling = m.generation;
                if generations.iter().any(|(_, g)| *g > ceiling) {
                    if let Some(now) = self.engine.call(|b| b.get(MANIFESTS_TREE, &prefix))? {
                        if let Ok((p, plain, range)) = ns.open(state, MANIFEST_ID, &now, None) {
                            if p.record_type == RecordType::Manifest {
                                if let Ok(newer) = decode_manifest(&plain[range]) {
                                    ceiling = ceiling.max(newer.generation);
                                }
                            }
                        }
                    }
                }
                for (rid, generation) in generations {
                    if generation > ceiling {
                        r.ok -= 1;
                        r.damaged.push(DamagedRecord {
                            key: None,
                            storage_id: hex(&rid),
                            reason: "newer than the namespace manifest: the manifest was \
                                     rolled back"
                                .into(),
                        });
                    }
                }
            }
            Some(Err(reason)) => r.manifest_damaged = Some(reason),
            None => r.manifest_damaged = Some("the manifest is missing"),
        }
        Ok(r)
    }

    /// The namespace incarnations in storage that no entry names (`ns_id || incarnation`
    /// prefixes of the manifests and records trees), in key order.
    pub(crate) fn orphan_prefixes(&self) -> Result<Vec<Vec<u8>>> {
        const PREFIX: usize = NS_ID_LEN + INCARNATION_LEN;
        let mut found: Vec<Vec<u8>> = Vec::new();
        let named = |prefix: &[u8]| -> Result<bool> {
            let stored = self
                .engine
                .call(|b| b.get(ENTRIES_TREE, &prefix[..NS_ID_LEN]))?;
            Ok(stored
                .as_deref()
                .and_then(|s| entry_clear(s).ok())
                .is_some_and(|(_, incarnation)| incarnation[..] == prefix[NS_ID_LEN..]))
        };
        for tree in [MANIFESTS_TREE, RECORDS_TREE] {
            let mut after: Option<Vec<u8>> = None;
            loop {
                let page = self
                    .engine
                    .call(|b| b.scan(tree, &[], after.as_deref(), 1))?;
                let Some((key, _)) = page.into_iter().next() else {
                    break;
                };
                if key.len() < PREFIX {
                    after = Some(key); // the anchor
                    continue;
                }
                let prefix = key[..PREFIX].to_vec();
                // Past every key under this prefix (record ids are 32 bytes).
                let mut skip = prefix.clone();
                skip.extend_from_slice(&[0xff; 33]);
                after = Some(skip);
                if !named(&prefix)? && !found.contains(&prefix) {
                    found.push(prefix);
                }
            }
        }
        found.sort_unstable();
        Ok(found)
    }
}

/// A record body re-framed into a fresh buffer laid out for [`seal_record`], with capacity
/// for the padding and the tag so that sealing does not reallocate.
fn reframe(body: &[u8]) -> Zeroizing<Vec<u8>> {
    let capacity = RECORD_HEADER_LEN + 5 + body.len() + crate::record::PAD_BUCKET + TAG_LEN;
    let mut buf = Zeroizing::new(Vec::with_capacity(capacity));
    buf.resize(RECORD_HEADER_LEN + 5, 0);
    buf.extend_from_slice(body);
    buf
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The storage key of a namespace's unfinished-rotation mark.
fn pending_key(id: &[u8; NS_ID_LEN]) -> Vec<u8> {
    let mut key = vec![PENDING_ROTATION];
    key.extend_from_slice(id);
    key
}
