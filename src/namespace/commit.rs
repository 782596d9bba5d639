//! The write path: records and the manifests of their namespaces sealed and applied in one
//! conditional atomic batch, unless a single-key fast path (`fast.rs`) takes the write.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use zeroize::Zeroizing;

use crate::backend::{Batch, Condition};
use crate::engine::{Engine, NsState};
use crate::error::{Error, Result};
use crate::format::{ENTRIES_TREE, MANIFESTS_TREE, NS_ID_LEN, RECORDS_TREE};
use crate::record::{parse_prefix, seal_record, Manifest, RecordContext, RecordPrefix, RecordType};

use super::{fast, Conflict, Namespace, Version, RESERVED_GENERATIONS};

/// How often a write retries when a concurrent rotation step changed the record under it.
pub(super) const WRITE_RETRIES: usize = 64;

/// What one write of a [`WriteBatch`](crate::batch::WriteBatch) did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Written {
    /// The record's new version; `None` for a removal.
    pub version: Option<Version>,
    /// Whether a record was there before the write.
    pub existed: bool,
}

/// What a write expects of the record's current state.
#[derive(Clone, Copy)]
pub(crate) enum Expect {
    Anything,
    Exactly(Option<Version>),
}

/// One record write in a [`commit`].
pub(crate) struct Op<'a> {
    pub(crate) ns: &'a Namespace,
    pub(crate) key: &'a str,
    /// The encoded body to store; `None` removes the record.
    pub(crate) body: Option<Zeroizing<Vec<u8>>>,
    pub(crate) record_type: RecordType,
    pub(crate) expect: Expect,
}

/// The write path: seal the new records and the new manifests of their namespaces, and apply
/// them all in one conditional batch, so that either every write lands or none does. Returns
/// `Ok(Err((i, conflict)))` when the expectation of op `i` does not hold (nothing written).
///
/// Namespaces that do not exist yet are created first (with the maintenance lock held); if
/// the batch then does not apply, they are removed again, so a failed commit leaves no trace.
pub(crate) fn commit(
    engine: &Engine,
    ops: Vec<Op<'_>>,
) -> Result<Result<Vec<Written>, (usize, Conflict)>> {
    for (i, op) in ops.iter().enumerate() {
        if ops[..i]
            .iter()
            .any(|o| o.ns.id == op.ns.id && o.key == op.key)
        {
            return Err(Error::InvalidName {
                reason: "the same key appears twice in one write",
            });
        }
    }
    let rids = ops
        .iter()
        .map(|op| op.ns.record_id(op.key))
        .collect::<Result<Vec<_>>>()?;
    // The namespaces involved, in a fixed order (for the lock order and the batch).
    let mut ns_ids: Vec<[u8; NS_ID_LEN]> = ops.iter().map(|op| op.ns.id).collect();
    ns_ids.sort_unstable();
    ns_ids.dedup();
    let first_op = |id: &[u8; NS_ID_LEN]| ops.iter().position(|op| op.ns.id == *id);

    let mut missing = false;
    for op in &ops {
        if op.ns.state()?.is_none() {
            missing = true;
        }
    }
    let _maintenance = missing.then(|| engine.lock_maintenance());
    let _guards = engine.lock_shards(&ns_ids);

    // A namespace that does not exist holds no record: an op that expects one conflicts, and
    // a namespace only removed from is not created. One that is written to is created by
    // the same batch as its first records (`commit_locked`).
    for id in &ns_ids {
        let Some(first) = first_op(id) else { continue };
        let ns = ops[first].ns;
        if ns.state()?.is_some() {
            continue;
        }
        for (i, op) in ops.iter().enumerate() {
            if op.ns.id == *id && matches!(op.expect, Expect::Exactly(Some(_))) {
                return Ok(Err((i, Conflict { current: None })));
            }
        }
    }
    let fast = match (ops.as_slice(), rids.as_slice()) {
        ([op], [rid]) if !missing => fast::single(engine, op, rid).transpose(),
        ([op], [rid]) => fast::create(engine, op, rid).transpose(),
        _ => None,
    };
    let result = match fast {
        Some(result) => result,
        None => commit_locked(engine, &ops, &rids, &ns_ids),
    };
    drop(_guards);
    drop(_maintenance);
    match result {
        // Durable once synced; the locks are released first so that concurrent writers
        // share the sync (group commit).
        Ok(Ok((written, Some(ticket)))) => {
            engine.note_write();
            engine.sync(ticket)?;
            Ok(Ok(written))
        }
        Ok(Ok((written, None))) => Ok(Ok(written)),
        Ok(Err(conflict)) => Ok(Err(conflict)),
        Err(e) => Err(e),
    }
}

/// What [`commit_locked`] did: the writes, and the sync ticket to wait for (none when nothing
/// was written).
pub(super) type Committed = (Vec<Written>, Option<u64>);

/// One namespace's part of a [`commit_locked`] batch.
struct Plan<'a> {
    handle: &'a Namespace,
    ns: Arc<NsState>,
    /// The stored manifest the batch expects (`None`: the batch creates the namespace).
    manifest_bytes: Option<Vec<u8>>,
    manifest: Manifest,
    /// The new namespace's sealed entry and the marker condition its write carries, when
    /// the batch creates it.
    new_entry: Option<(Vec<u8>, Condition)>,
}

fn commit_locked(
    engine: &Engine,
    ops: &[Op<'_>],
    rids: &[[u8; 32]],
    ns_ids: &[[u8; NS_ID_LEN]],
) -> Result<Result<Committed, (usize, Conflict)>> {
    let vault_id = engine.read_state()?.vault_id().to_vec();
    // Which namespace (index into `ns_ids`) each op belongs to.
    let op_ns: Vec<usize> = ops
        .iter()
        .map(|op| ns_ids.iter().position(|id| *id == op.ns.id).unwrap_or(0))
        .collect();
    'retry: for _ in 0..WRITE_RETRIES {
        // Per namespace: its handle, state, manifest, and for a namespace this batch creates,
        // its new entry (`None`: it does not exist, and only removals target it).
        let mut plans: Vec<Option<Plan<'_>>> = Vec::with_capacity(ns_ids.len());
        for (p, id) in ns_ids.iter().enumerate() {
            let Some(i) = op_ns.iter().position(|q| *q == p) else {
                plans.push(None);
                continue;
            };
            let handle = ops[i].ns;
            plans.push(match handle.state()? {
                Some(ns) => {
                    let Some((bytes, manifest)) = handle.read_manifest(&ns)? else {
                        // Another handle removed (or re-created) the namespace: start over.
                        continue 'retry;
                    };
                    if parse_prefix(&bytes).is_ok_and(|p| p.key_id > ns.active) {
                        // A rotation elsewhere re-sealed the manifest under a newer key: take
                        // in the namespace's entry, never seal under a key being retired.
                        let fresh = handle.engine.load_entry(&handle.id, &handle.name)?;
                        if fresh.is_some_and(|f| f.stored == ns.stored) {
                            return Err(handle.namespace_damage(
                                "the manifest is sealed under a key newer than the \
                                 namespace's active key",
                            ));
                        }
                        continue 'retry;
                    }
                    handle.adopt_manifest(&ns, &bytes, &manifest)?;
                    Some(Plan {
                        handle,
                        ns,
                        manifest_bytes: Some(bytes),
                        manifest,
                        new_entry: None,
                    })
                }
                None if ops.iter().any(|op| op.ns.id == *id && op.body.is_some()) => {
                    let (ns, entry, marked, manifest) = handle.new_incarnation()?;
                    Some(Plan {
                        handle,
                        ns: Arc::new(ns),
                        manifest_bytes: None,
                        manifest,
                        new_entry: Some((entry, marked)),
                    })
                }
                None => None,
            });
        }
        // Read every current record and check the expectations before sealing anything.
        let mut currents: Vec<Option<Vec<u8>>> = Vec::with_capacity(ops.len());
        for (i, op) in ops.iter().enumerate() {
            let Some(Plan {
                handle,
                ns,
                manifest,
                manifest_bytes,
                new_entry,
            }) = &plans[op_ns[i]]
            else {
                currents.push(None);
                continue;
            };
            // A new incarnation's prefix holds nothing.
            let current = match new_entry {
                Some(_) => None,
                None => engine.call(|b| b.get(RECORDS_TREE, &ns.record_key(&rids[i])))?,
            };
            let current_version = match &current {
                Some(stored) => Some(match op.expect {
                    // A conditional write authenticates what it compares against.
                    Expect::Exactly(_) => Version(
                        handle
                            .open(ns, &rids[i], stored, Some(op.key))?
                            .0
                            .generation,
                    ),
                    Expect::Anything => Version(
                        parse_prefix(stored)
                            .map(|p| p.generation)
                            .unwrap_or_default(),
                    ),
                }),
                None => None,
            };
            // No record is written at a generation its manifest has not reserved first, so a
            // record newer than the manifest means the manifest was rolled back: generations
            // (and so versions) would repeat, and a compare-and-swap could match a different
            // write.
            // (A generation read from the prefix of a record that does not authenticate is
            // no evidence: such a record is damaged itself, and this write replaces it.)
            let forged = || match (&current, op.expect) {
                (Some(stored), Expect::Anything) => {
                    handle.open(ns, &rids[i], stored, Some(op.key)).is_err()
                }
                _ => false,
            };
            if current_version.is_some_and(|v| v.0 > manifest.generation) && !forged() {
                // Unless another handle wrote the record and a newer manifest since this one
                // read the manifest: then the batch would not apply anyway; read again.
                let stored = engine.call(|b| b.get(MANIFESTS_TREE, &ns.prefix()))?;
                if stored != *manifest_bytes {
                    continue 'retry;
                }
                return Err(handle.namespace_damage(
                    "a record is newer than the manifest (the manifest was rolled back); run verify",
                ));
            }
            if let Expect::Exactly(expected) = op.expect {
                if expected != current_version {
                    return Ok(Err((
                        i,
                        Conflict {
                            current: current_version,
                        },
                    )));
                }
            }
            currents.push(current);
        }
        let mut batch = Batch::new();
        // Per namespace: the generation of this write and the new manifest's.
        let mut generations: Vec<Option<(u64, u64)>> = vec![None; ns_ids.len()];
        let mut manifests: Vec<Option<Vec<u8>>> = vec![None; ns_ids.len()];
        for (p, plan) in plans.iter().enumerate() {
            let Some(Plan {
                handle,
                ns,
                manifest_bytes,
                manifest,
                new_entry,
            }) = plan
            else {
                continue;
            };
            let mine: Vec<usize> = (0..ops.len()).filter(|i| op_ns[*i] == p).collect();
            // Removals of absent records change nothing.
            if !mine
                .iter()
                .any(|&i| ops[i].body.is_some() || currents[i].is_some())
            {
                continue;
            }
            let exhausted = || handle.namespace_damage("write generation exhausted");
            let generation = ns
                .gens
                .last
                .load(Ordering::SeqCst)
                .checked_add(1)
                .ok_or_else(exhausted)?;
            // The new manifest reserves the generations after this one for overwrites.
            let ceiling = generation
                .checked_add(RESERVED_GENERATIONS)
                .ok_or_else(exhausted)?
                .max(manifest.generation);
            let mut count = manifest.count;
            let cipher = ns
                .active_cipher()
                .ok_or_else(|| handle.namespace_damage("the active key is missing"))?;
            let ctx = |record_id| RecordContext {
                vault_id: &vault_id,
                namespace: &handle.name,
                record_id,
                incarnation: Some(&ns.incarnation),
            };
            for &i in &mine {
                let current = currents[i].as_deref();
                match (current.is_some(), ops[i].body.is_some()) {
                    (false, true) => count += 1,
                    (true, false) => count = count.saturating_sub(1),
                    (false, false) => continue,
                    (true, true) => {}
                }
                let sealed = match &ops[i].body {
                    Some(body) => {
                        // Seal a copy (the batch may be retried), with the same capacity so
                        // that sealing never reallocates.
                        let mut copy = Zeroizing::new(Vec::with_capacity(body.capacity()));
                        copy.extend_from_slice(body);
                        let prefix = RecordPrefix {
                            record_type: ops[i].record_type,
                            key_id: ns.active,
                            generation,
                        };
                        Some(seal_record(cipher, &ctx(&rids[i]), &prefix, copy)?)
                    }
                    None => None,
                };
                let record_key = ns.record_key(&rids[i]);
                batch = batch.expect(RECORDS_TREE, &record_key, current).write(
                    RECORDS_TREE,
                    &record_key,
                    sealed,
                );
            }
            let new_manifest = handle.seal_manifest(
                &vault_id,
                ns,
                cipher,
                ns.active,
                &Manifest {
                    count,
                    generation: ceiling,
                },
            )?;
            manifests[p] = Some(new_manifest.clone());
            let manifest_key = ns.prefix();
            batch = batch
                .expect(MANIFESTS_TREE, &manifest_key, manifest_bytes.as_deref())
                .write(MANIFESTS_TREE, &manifest_key, Some(new_manifest));
            if let Some((entry, marked)) = new_entry {
                // The namespace is created by this batch: only if no entry exists (another
                // handle that created it first wins, and the retry uses its entry), and only
                // if the entry-key marker still names the key the entry is sealed under.
                batch.conditions.push(marked.clone());
                batch = batch.expect(ENTRIES_TREE, &ns.id, None).write(
                    ENTRIES_TREE,
                    &ns.id,
                    Some(entry.clone()),
                );
            }
            generations[p] = Some((generation, ceiling));
        }
        let written: Vec<Written> = ops
            .iter()
            .enumerate()
            .map(|(i, op)| Written {
                version: op
                    .body
                    .as_ref()
                    .and(generations[op_ns[i]])
                    .map(|(g, _)| Version(g)),
                existed: currents[i].is_some(),
            })
            .collect();
        if generations.iter().all(Option::is_none) {
            // Nothing to write (only removals of absent records).
            return Ok(Ok((written, None)));
        }
        if engine.call(|b| b.apply(&batch))? {
            for (p, plan) in plans.iter().enumerate() {
                if let (Some(plan), Some((generation, ceiling))) = (plan, generations[p]) {
                    let gens = &plan.ns.gens;
                    gens.last.fetch_max(generation, Ordering::SeqCst);
                    gens.reserved.store(ceiling, Ordering::SeqCst);
                    if let Some(m) = manifests[p].as_deref() {
                        gens.set_manifest(m);
                    }
                    if plan.new_entry.is_some() {
                        engine.install_new(Arc::clone(&plan.ns));
                    }
                }
            }
            return Ok(Ok((written, Some(engine.committed()))));
        }
        // A rotation step re-sealed a record or a manifest under us, another handle created
        // a namespace this batch meant to create, or a shred changed the entry key: read
        // again.
        if plans.iter().flatten().any(|plan| plan.new_entry.is_some()) {
            engine.refresh_header()?;
        }
    }
    Err(Error::backend(
        "the records kept changing under a write; retry the operation",
    ))
}
