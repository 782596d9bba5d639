//! Long-running work over many records: namespace-key rotation and verification.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use zeroize::Zeroizing;

use crate::backend::Batch;
use crate::crypto::{Key, TAG_LEN};
use crate::error::{Damage, Error, Result};
use crate::format::NS_ID_LEN;
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
    /// Trees in storage named like a namespace that the header does not list: left by an
    /// interrupted namespace creation or removal (undecryptable), or namespaces of a newer
    /// or foreign header (this header restored from an older backup). Never dropped by the
    /// vault itself: see [`Vault::purge_orphans`].
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
        let key_id = self.engine.update_state(|s| {
            let mut keys = s.namespace_keys(&ns.id).ok_or(Error::InvalidName {
                reason: "no such namespace",
            })?;
            if keys.keys.len() > 1 {
                // A rotation is already pending: finish it rather than stack another key
                // on top (a namespace holds at most 64 keys).
                return Ok(keys.active);
            }
            let next = keys
                .keys
                .iter()
                .map(|(id, _)| *id)
                .max()
                .unwrap_or(0)
                .checked_add(1)
                .ok_or_else(|| Error::backend("namespace key ids exhausted"))?;
            keys.keys.push((next, Key::random()?));
            keys.active = next;
            s.set_namespace(ns.id, keys)?;
            Ok(next)
        })?;
        drop(guard);
        let resealed = self.finish_rotation(&ns, progress)?;
        Ok(RotationReport { key_id, resealed })
    }

    /// Finishes every pending rotation; failures leave the rotation pending (`verify`
    /// reports it) rather than failing the open.
    pub(crate) fn resume_rotations(&self) {
        let pending: Vec<String> = match self.engine.read_state() {
            Ok(s) => s
                .namespaces
                .values()
                .filter(|n| n.rotation_pending())
                .map(|n| n.name.clone())
                .collect(),
            Err(_) => return,
        };
        let _maintenance = self.engine.lock_maintenance();
        for name in pending {
            if let Ok(ns) = self.namespace(&name) {
                let _ = self.finish_rotation(&ns, |_| {});
            }
        }
    }

    /// Re-seals every record of `ns` that is not under the active key, then drops the
    /// other keys. Called with the maintenance lock held.
    fn finish_rotation(&self, ns: &Namespace, mut progress: impl FnMut(Progress)) -> Result<u64> {
        let state = self
            .engine
            .read_state()?
            .namespaces
            .get(&ns.id)
            .cloned()
            .ok_or(Error::InvalidName {
                reason: "no such namespace",
            })?;
        let vault_id = self.engine.read_state()?.vault_id().to_vec();
        let total = self.manifest_count(ns, &state);
        let mut done = 0u64;
        let mut resealed = 0u64;
        let mut failed = 0u64;
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = self
                .engine
                .call(|b| b.scan(&ns.id, after.as_deref(), PAGE))?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            for (rid, stored) in page {
                let mut stored = stored;
                // A concurrent write may replace the record between our read and our swap;
                // it is then sealed under the active key already, or we read it again.
                for _ in 0..16 {
                    let Ok(prefix) = parse_prefix(&stored) else {
                        failed += 1;
                        break;
                    };
                    if prefix.key_id == state.active {
                        break;
                    }
                    let Ok((_, plain, range)) = ns.open(&state, &rid, &stored, None) else {
                        failed += 1;
                        break;
                    };
                    let cipher = state
                        .active_cipher()
                        .ok_or_else(|| Error::backend("internal: active key missing"))?;
                    let ctx = RecordContext {
                        vault_id: &vault_id,
                        namespace: ns.name(),
                        record_id: &rid,
                    };
                    let resealed_bytes = seal_record(
                        cipher,
                        &ctx,
                        &RecordPrefix {
                            key_id: state.active,
                            ..prefix
                        },
                        reframe(&plain[range]),
                    )?;
                    let batch = Batch::new().expect(&ns.id, &rid, Some(&stored)).write(
                        &ns.id,
                        &rid,
                        Some(resealed_bytes),
                    );
                    if self.engine.call(|b| b.apply(&batch))? {
                        resealed += 1;
                        break;
                    }
                    match self.engine.call(|b| b.get(&ns.id, &rid))? {
                        Some(now) => stored = now,
                        None => break,
                    }
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
        let id: [u8; NS_ID_LEN] = ns.id;
        self.engine.update_state(|s| {
            if let Some(mut keys) = s.namespace_keys(&id) {
                let active = keys.active;
                keys.keys.retain(|(kid, _)| *kid == active);
                s.set_namespace(id, keys)?;
            }
            Ok(())
        })?;
        drop(guard);
        Ok(resealed)
    }

    fn manifest_count(&self, ns: &Namespace, state: &crate::engine::NsState) -> Option<u64> {
        let stored = self.engine.call(|b| b.get(&ns.id, MANIFEST_ID)).ok()??;
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
        let namespaces: Vec<(String, [u8; NS_ID_LEN])> = {
            let s = self.engine.read_state()?;
            let mut v: Vec<_> = s
                .namespaces
                .iter()
                .map(|(id, n)| (n.name.clone(), *id))
                .collect();
            v.sort_unstable();
            v
        };
        let (orphan_trees, set_aside_trees) = self.unlisted_counts()?;
        let mut report = VerifyReport {
            orphan_trees,
            set_aside_trees,
            ..VerifyReport::default()
        };
        let mut done = 0u64;
        let mut total = 0u64;
        let mut states = Vec::new();
        for (name, id) in &namespaces {
            let ns = Namespace::new(Arc::clone(&self.engine), name, *id);
            let Some(state) = self.engine.read_state()?.namespaces.get(id).cloned() else {
                continue;
            };
            total += self.manifest_count(&ns, &state).unwrap_or(0);
            states.push((ns, state));
        }
        for (ns, state) in states {
            let mut r = NamespaceReport {
                namespace: ns.name().to_owned(),
                rotation_pending: state.rotation_pending(),
                ..NamespaceReport::default()
            };
            // Before the manifest is read: it only grows, so a manifest read later that is
            // below it was replaced by an older copy (a concurrent write cannot cause that).
            let reserved = state.gens.reserved.load(Ordering::SeqCst);
            let mut manifest = None;
            let mut generations = Vec::new();
            let mut after: Option<Vec<u8>> = None;
            loop {
                let page = self
                    .engine
                    .call(|b| b.scan(&ns.id, after.as_deref(), PAGE))?;
                let Some((last, _)) = page.last() else { break };
                after = Some(last.clone());
                for (rid, stored) in &page {
                    done += 1;
                    if rid.as_slice() == MANIFEST_ID {
                        manifest = Some(match ns.open(&state, MANIFEST_ID, stored, None) {
                            Ok((p, plain, range)) if p.record_type == RecordType::Manifest => {
                                decode_manifest(&plain[range])
                                    .map_err(|_| "the manifest does not decode")
                            }
                            Ok(_) => Err("the manifest has the wrong type"),
                            Err(_) => Err("the manifest fails authentication"),
                        });
                        continue;
                    }
                    match ns.open_name(&state, rid, stored) {
                        Ok(_) => {
                            r.ok += 1;
                            if let Ok(prefix) = parse_prefix(stored) {
                                generations.push((rid.clone(), prefix.generation));
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
                progress(Progress {
                    done,
                    total: Some(total),
                });
            }
            let found = r.ok + r.damaged.len() as u64;
            match manifest {
                Some(Ok(m)) if m.generation < reserved => {
                    r.manifest_damaged = Some(
                        "the manifest is older than one this process wrote: it was replaced by \
                         an older copy (rolled back)",
                    );
                }
                Some(Ok(m)) if m.generation < state.floor => {
                    r.manifest_damaged = Some(
                        "the namespace is older than the header recorded: storage was rolled \
                         back or lost the end of its log",
                    );
                }
                Some(Ok(m)) => {
                    r.missing = m.count.saturating_sub(found);
                    // A manifest reserves every generation before a record carries it, so
                    // no record can be newer than it, unless it was replaced by an older copy.
                    for (rid, generation) in generations {
                        if generation > m.generation {
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
            report.namespaces.push(r);
        }
        Ok(report)
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
