//! The single-key fast paths of a one-record write (docs/format.md, section 6): an overwrite
//! or, on storage one handle writes alone, a new record at a reserved generation, and a new
//! namespace's first write; each a few single-key compare-and-swaps instead of an atomic
//! batch with the manifest, which sled turns into a log write of its own (BENCHMARKS.md).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use zeroize::Zeroizing;

use crate::backend::Batch;
use crate::engine::{Engine, LastWrite, NsState};
use crate::error::Result;
use crate::format::{ENTRIES_TREE, MANIFESTS_TREE, RECORDS_TREE};
use crate::record::{parse_prefix, seal_record, Manifest, RecordContext, RecordPrefix};

use super::commit::{Committed, Expect, Op, Written};
use super::{Conflict, Version, RESERVED_GENERATIONS};

/// The fast path of a single-record write at a generation the manifest has already
/// reserved: one conditional single-key write of the record, without the manifest (sled
/// turns every multi-key atomic batch into a log write of its own, which dominates a
/// buffered write; see BENCHMARKS.md). The reservation keeps every generation unique and at
/// most the manifest's.
///
/// - An overwrite of an existing record changes nothing else.
/// - A new record (compare-and-swap on absence), only on storage this handle writes alone
///   ([`Backend::exclusive`](crate::backend::Backend::exclusive)), is then counted by a
///   second single-key compare-and-swap of the manifest, which also renews the reservation
///   ([`Namespace::count_insert`]): the count may lag (a crash between the two writes),
///   never lead (`docs/format.md`, section 6).
///
/// With no generation reserved, the reservation is renewed first by a single-key write of
/// the manifest ([`Namespace::renew_reservation`]), so that a write to a namespace this
/// handle has only just loaded is no atomic batch either.
///
/// `Ok(None)`: take the general path (a removal, a manifest changed under us, or a record
/// changed under us by a rotation step or another handle).
pub(super) fn single(
    engine: &Engine,
    op: &Op<'_>,
    rid: &[u8; 32],
) -> Result<Option<Result<Committed, (usize, Conflict)>>> {
    let Some(body) = &op.body else {
        return Ok(None);
    };
    let handle = op.ns;
    let Some(ns) = handle.state()? else {
        return Ok(None);
    };
    let gens = &ns.gens;
    let renew = {
        let reserved = gens.reserved.load(Ordering::SeqCst);
        reserved == 0 || gens.last.load(Ordering::SeqCst) >= reserved
    };
    // With no generation reserved (a namespace this handle has not written since it loaded
    // it, or the reservation used up), the manifest is read and taken in now, and renewed
    // just before the record is written, once the record is known not to be newer than it.
    // The stored manifest; its decoded form when it is to be renewed; and the record when it
    // was read with it.
    // On shared storage, an overwrite of the record this handle wrote last is one
    // conditional write, without reading first.
    let shared = !engine.call(|b| Ok(b.exclusive()))?;
    if shared && !renew {
        if let Some(done) = overwrite_remembered(engine, op, rid, &ns, body)? {
            return Ok(Some(done));
        }
    }
    let (manifest, to_renew, read) = if renew {
        match handle.manifest_to_renew(&ns)? {
            Some((stored, manifest)) => (stored, Some(manifest), None),
            None => return Ok(None),
        }
    } else {
        // Storage must still hold the manifest this handle last authenticated (else the
        // general path reads it again, and reports damage or a rollback). Read with the
        // record (one round trip on a networked backend).
        let prefix = ns.prefix();
        let record_key = ns.record_key(rid);
        let mut both = engine
            .call(|b| b.get_many(&[(MANIFESTS_TREE, &prefix), (RECORDS_TREE, &record_key)]))?
            .into_iter();
        let (manifest, record) = (both.next().flatten(), both.next().flatten());
        match manifest {
            Some(stored) if gens.manifest_is(&stored) => (stored, None, Some(record)),
            _ => return Ok(None),
        }
    };
    let renewed = |manifest: Vec<u8>| -> Result<Option<Vec<u8>>> {
        match &to_renew {
            Some(decoded) => handle.renew_reservation(&ns, &manifest, decoded),
            None => Ok(Some(manifest)),
        }
    };
    let reserved = gens.reserved.load(Ordering::SeqCst);
    let record_key = ns.record_key(rid);
    let current = match read {
        Some(record) => record,
        None => engine.call(|b| b.get(RECORDS_TREE, &record_key))?,
    };
    let Some(current) = current else {
        // Only the storage's sole writer stores a new record outside a batch with the
        // manifest: another handle's namespace-key rotation could otherwise finish between
        // its scan of the records and this write, retiring the key the record is sealed
        // under. This handle's own rotations take the namespace's lock, held here.
        if matches!(op.expect, Expect::Exactly(Some(_))) || !engine.call(|b| Ok(b.exclusive()))? {
            // The general path reports the conflict, or writes the batch.
            return Ok(None);
        }
        let Some(manifest) = renewed(manifest)? else {
            return Ok(None);
        };
        return insert(engine, op, rid, &ns, &manifest, body);
    };
    if matches!(op.expect, Expect::Exactly(None)) {
        // The general path reports the conflict, with the authenticated version.
        return Ok(None);
    }
    let current_generation = match op.expect {
        // A conditional write authenticates what it compares against.
        Expect::Exactly(_) => handle.open(&ns, rid, &current, Some(op.key))?.0.generation,
        Expect::Anything => parse_prefix(&current)
            .map(|p| p.generation)
            .unwrap_or_default(),
    };
    if parse_prefix(&current).is_ok_and(|p| p.key_id > ns.active) {
        // Re-sealed by a rotation elsewhere under a key this handle does not know yet: the
        // general path reads the manifest and the entry again.
        return Ok(None);
    }
    if current_generation > reserved {
        // The manifest was rolled back: the general path reports it.
        return Ok(None);
    }
    if let Expect::Exactly(expected) = op.expect {
        if expected != Some(Version(current_generation)) {
            return Ok(Some(Err((
                0,
                Conflict {
                    current: Some(Version(current_generation)),
                },
            ))));
        }
    }
    if renewed(manifest)?.is_none() {
        return Ok(None);
    }
    let (reserved, last) = (
        gens.reserved.load(Ordering::SeqCst),
        gens.last.load(Ordering::SeqCst),
    );
    if last >= reserved {
        return Ok(None);
    }
    let generation = last + 1;
    if generation <= current_generation {
        // Only possible if a write was applied but reported as failed: let the general path
        // read the manifest again.
        return Ok(None);
    }
    let sealed = seal_at(op, rid, &ns, generation, body)?;
    let remembered = shared.then(|| sealed.clone());
    let batch = Batch::new()
        .expect(RECORDS_TREE, &record_key, Some(&current))
        .write(RECORDS_TREE, &record_key, Some(sealed));
    if !engine.call(|b| b.apply(&batch))? {
        return Ok(None);
    }
    gens.last.store(generation, Ordering::SeqCst);
    gens.remember(remembered.map(|bytes| LastWrite {
        rid: *rid,
        bytes,
        generation,
    }));
    Ok(wrote_one(engine, generation, true))
}

/// The overwrite of the record this handle wrote last, on shared storage: one atomic write
/// whose conditions are that storage still holds exactly the record's bytes as this handle
/// wrote them and the manifest this handle last authenticated (a database server checks both
/// in the statement that writes, `docs/postgres.md`), at the next reserved generation.
/// Everything the read-first path checks holds by construction: the record was sealed by this
/// handle at a generation it reserved, under a key it knew then (a rotation since changed the
/// bytes, so the write is refused). `Ok(None)`: nothing remembered for this record, no
/// generation left, a conditional write that expects another version, or a refused write
/// (forgotten, then the read-first path decides).
fn overwrite_remembered(
    engine: &Engine,
    op: &Op<'_>,
    rid: &[u8; 32],
    ns: &NsState,
    body: &Zeroizing<Vec<u8>>,
) -> Result<Option<Result<Committed, (usize, Conflict)>>> {
    let gens = &ns.gens;
    let Some((current, current_generation)) = gens.last_write(rid) else {
        return Ok(None);
    };
    match op.expect {
        Expect::Anything => {}
        Expect::Exactly(Some(v)) if v == Version(current_generation) => {}
        Expect::Exactly(_) => return Ok(None),
    }
    let (reserved, last) = (
        gens.reserved.load(Ordering::SeqCst),
        gens.last.load(Ordering::SeqCst),
    );
    let manifest = gens.manifest_bytes();
    if last >= reserved || last < current_generation || manifest.is_empty() {
        return Ok(None);
    }
    let generation = last + 1;
    let sealed = seal_at(op, rid, ns, generation, body)?;
    let record_key = ns.record_key(rid);
    let batch = Batch::new()
        .expect(RECORDS_TREE, &record_key, Some(&current))
        .expect(MANIFESTS_TREE, &ns.prefix(), Some(&manifest))
        .write(RECORDS_TREE, &record_key, Some(sealed.clone()));
    match engine.call(|b| b.apply(&batch)) {
        Ok(true) => {}
        other => {
            // Refused (another handle wrote the record, or changed the manifest), or an
            // error that may have applied it: what this handle remembers is stale.
            gens.remember(None);
            other?;
            return Ok(None);
        }
    }
    gens.last.store(generation, Ordering::SeqCst);
    gens.remember(Some(LastWrite {
        rid: *rid,
        bytes: sealed,
        generation,
    }));
    Ok(wrote_one(engine, generation, true))
}

/// A fast path's outcome: one record written at `generation`, durable once the ticket is.
fn wrote_one(
    engine: &Engine,
    generation: u64,
    existed: bool,
) -> Option<Result<Committed, (usize, Conflict)>> {
    let written = Written {
        version: Some(Version(generation)),
        existed,
    };
    Some(Ok((vec![written], Some(engine.committed()))))
}

/// The fast path's new record: stored at the next reserved generation on condition that no
/// record is there, then counted in the manifest (`manifest`: the stored manifest the caller
/// has just found unchanged).
fn insert(
    engine: &Engine,
    op: &Op<'_>,
    rid: &[u8; 32],
    ns: &NsState,
    manifest: &[u8],
    body: &Zeroizing<Vec<u8>>,
) -> Result<Option<Result<Committed, (usize, Conflict)>>> {
    let generation = ns.gens.last.load(Ordering::SeqCst) + 1;
    let sealed = seal_at(op, rid, ns, generation, body)?;
    let record_key = ns.record_key(rid);
    let batch = Batch::new().expect(RECORDS_TREE, &record_key, None).write(
        RECORDS_TREE,
        &record_key,
        Some(sealed.clone()),
    );
    if !engine.call(|b| b.apply(&batch))? {
        // Another handle stored the record first: the general path reads it.
        return Ok(None);
    }
    ns.gens.last.store(generation, Ordering::SeqCst);
    op.ns
        .count_insert(ns, manifest, &record_key, &sealed, generation);
    Ok(wrote_one(engine, generation, false))
}

/// The fast path of a namespace's first write, on storage this handle writes alone
/// ([`Backend::exclusive`](crate::backend::Backend::exclusive)): a new incarnation's manifest
/// (already counting the record, its reservation taken), the record, then the entry, each a
/// single-key compare-and-swap on absence, in that order. The entry names the incarnation
/// only once its manifest and record are stored, and storage keeps a prefix of the writes,
/// so a crash in between leaves orphans under an incarnation no entry names (`verify` counts
/// them, `purge_orphans` removes them), never an entry without its manifest. The
/// maintenance lock, held by the caller, keeps this handle's shreds (which move the
/// entry-key marker) and removals out.
///
/// `Ok(None)`: take the general path (shared storage, a write that expects a record, or a
/// namespace that exists after all).
pub(super) fn create(
    engine: &Engine,
    op: &Op<'_>,
    rid: &[u8; 32],
) -> Result<Option<Result<Committed, (usize, Conflict)>>> {
    let Some(body) = &op.body else {
        return Ok(None);
    };
    if matches!(op.expect, Expect::Exactly(Some(_))) || !engine.call(|b| Ok(b.exclusive()))? {
        return Ok(None);
    }
    let handle = op.ns;
    if handle.state()?.is_some() {
        return Ok(None);
    }
    let (ns, entry, _marker, first) = handle.new_incarnation()?;
    let exhausted = || handle.namespace_damage("write generation exhausted");
    let generation = first.generation.checked_add(1).ok_or_else(exhausted)?;
    let ceiling = generation
        .checked_add(RESERVED_GENERATIONS)
        .ok_or_else(exhausted)?;
    let cipher = ns
        .active_cipher()
        .ok_or_else(|| handle.namespace_damage("the active key is missing"))?;
    let manifest = handle.seal_manifest(
        &handle.vault_id()?,
        &ns,
        cipher,
        ns.active,
        &Manifest {
            count: 1,
            generation: ceiling,
        },
    )?;
    let record = seal_at(op, rid, &ns, generation, body)?;
    let writes = [
        (MANIFESTS_TREE, ns.prefix(), manifest.clone()),
        (RECORDS_TREE, ns.record_key(rid), record),
        (ENTRIES_TREE, ns.id.to_vec(), entry),
    ];
    for (tree, key, value) in writes {
        let batch = Batch::new()
            .expect(tree, &key, None)
            .write(tree, &key, Some(value));
        if !engine.call(|b| b.apply(&batch))? {
            // Taken (an entry no read showed; a random incarnation's keys are never taken):
            // what this wrote is an orphan; the general path decides.
            return Ok(None);
        }
    }
    ns.gens.last.store(generation, Ordering::SeqCst);
    ns.gens.reserved.store(ceiling, Ordering::SeqCst);
    ns.gens.set_manifest(&manifest);
    engine.install_new(Arc::new(ns));
    Ok(wrote_one(engine, generation, false))
}

/// Seals a copy of `body` as the record `rid` of `ns` at `generation`, under the active key
/// (the general path may still need the body).
fn seal_at(
    op: &Op<'_>,
    rid: &[u8; 32],
    ns: &NsState,
    generation: u64,
    body: &Zeroizing<Vec<u8>>,
) -> Result<Vec<u8>> {
    let handle = op.ns;
    let cipher = ns
        .active_cipher()
        .ok_or_else(|| handle.namespace_damage("the active key is missing"))?;
    let vault_id = handle.vault_id()?;
    // The same capacity, so that sealing never reallocates.
    let mut copy = Zeroizing::new(Vec::with_capacity(body.capacity()));
    copy.extend_from_slice(body);
    seal_record(
        cipher,
        &RecordContext {
            vault_id: &vault_id,
            namespace: &handle.name,
            record_id: rid,
            incarnation: Some(&ns.incarnation),
        },
        &RecordPrefix {
            record_type: op.record_type,
            key_id: ns.active,
            generation,
        },
        copy,
    )
}
