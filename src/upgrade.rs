//! The upgrade from format version 1: every namespace's entry moves from the header into the
//! entries tree, and its records and manifest from its own sled tree into the shared records
//! and manifests trees, re-sealed under the format-2 AAD (which binds the incarnation). The
//! vault keeps its id, master key, keyslots, name-index key and data keys.
//!
//! Resumable: the format-1 header stays in place (and every format-1 tree untouched) until
//! everything is copied and durable, then one header write makes the vault format 2, and
//! only then are the format-1 trees dropped. The first entry-wrapping key and each
//! namespace's incarnation are derived (from the master key and the index key), so a resumed
//! upgrade recognises what an interrupted one wrote and writes it again; records an earlier
//! attempt copied are cleared first, so nothing removed since comes back.

use crate::backend::{Backend, Batch};
use crate::crypto::{Key, Prf};
use crate::engine::{anchor_prf, guarded, marker, seal_anchor, Ewk, KeyState};
use crate::entry::{entry_clear, open_entry, seal_entry, Entry};
use crate::error::{Damage, Error, Result};
use crate::format::{
    ENTRIES_TREE, FORMAT_VERSION, INCARNATION_LEN, MANIFESTS_TREE, NAMESPACE_ID_LABEL,
    RECORDS_TREE, UPGRADE_EWK_LABEL, UPGRADE_INCARNATION_LABEL,
};
use crate::header::{open_ns, Header, NsEntry, NsKeys, VmkKeys};
use crate::namespace::MANIFEST_ID;
use crate::record::{
    decode_manifest, open_record, parse_prefix, seal_record, RecordContext, RecordPrefix,
    RecordType,
};

/// Records copied per batch.
const PAGE: usize = 256;

/// Upgrades the format-1 vault whose header is `header` (stored as `bytes`, unlocked with
/// `vmk`) to format 2; returns the new header and its bytes.
pub(crate) fn upgrade(
    backend: &dyn Backend,
    header: Header,
    bytes: &[u8],
    vmk: &Key,
    vmk_keys: &VmkKeys,
    index_key: &Key,
) -> Result<(Header, Vec<u8>)> {
    let vault_id = header.vault_id;
    let index = Prf::new(index_key)?;
    let ewk = Ewk::new(1, vmk.derive(&vault_id, UPGRADE_EWK_LABEL)?, &vault_id)?;
    for ns_entry in &header.namespaces {
        upgrade_namespace(backend, &vault_id, vmk_keys, &index, &ewk, ns_entry)?;
    }
    let anchor = anchor_prf(index_key, &vault_id)?;
    let storage = Batch::new()
        .write(
            ENTRIES_TREE,
            crate::format::ANCHOR_KEY,
            Some(marker(ewk.id)),
        )
        .write(
            MANIFESTS_TREE,
            crate::format::ANCHOR_KEY,
            Some(seal_anchor(&anchor, &vault_id, 0)),
        );
    guarded(backend, |b| {
        b.apply(&storage)?;
        b.flush()
    })?;
    let mut next = Header {
        version: FORMAT_VERSION,
        seqid: header.seqid.wrapping_add(1),
        namespaces: Vec::new(),
        epoch: 0,
        active_ewk: ewk.id,
        ewks: Vec::new(),
        ..header.clone()
    };
    next.ewks = vec![(
        ewk.id,
        vmk_keys.wrap.wrap_key(&next.ewk_aad(ewk.id), &ewk.key)?,
    )];
    let next_bytes = next.encode(vmk_keys)?;
    if !guarded(backend, |b| b.write_header(Some(bytes), &next_bytes))? {
        return Err(Error::Reopen);
    }
    // Format 2 from here on: the old trees are garbage. A failure leaves them for
    // `purge_orphans`.
    for ns_entry in &header.namespaces {
        let _ = guarded(backend, |b| b.drop_tree(&ns_entry.id));
    }
    let _ = guarded(backend, |b| b.flush());
    // Checked by the caller's open like any format-2 header.
    let _ = KeyState::unwrap_ewks(&next, vmk_keys)?;
    Ok((next, next_bytes))
}

fn upgrade_namespace(
    backend: &dyn Backend,
    vault_id: &[u8],
    vmk_keys: &VmkKeys,
    index: &Prf,
    ewk: &Ewk,
    ns_entry: &NsEntry,
) -> Result<()> {
    let id = ns_entry.id;
    let keys = open_ns(&vmk_keys.wrap, vault_id, ns_entry)
        .map_err(|reason| Error::Damaged(Damage::Header { reason }))?;
    if index.mac(&[NAMESPACE_ID_LABEL, keys.name.as_bytes()]) != id {
        return Err(Error::header(
            "a namespace entry is filed under another name's id",
        ));
    }
    let mut incarnation = [0u8; INCARNATION_LEN];
    incarnation.copy_from_slice(&index.mac(&[UPGRADE_INCARNATION_LABEL, &id])[..INCARNATION_LEN]);
    let damaged = |reason| {
        Error::Damaged(Damage::Namespace {
            namespace: keys.name.clone(),
            reason,
        })
    };
    // What an interrupted upgrade may have written: recognised, else refused.
    if let Some(stored) = guarded(backend, |b| b.get(ENTRIES_TREE, &id))? {
        let ours = entry_clear(&stored).is_ok_and(|(e, inc)| e == ewk.id && inc == incarnation)
            && open_entry(&ewk.cipher, vault_id, &id, &stored).is_ok();
        if !ours {
            return Err(Error::NotEmpty {
                path: None,
                reason: "its storage already holds format-2 entries of another vault; \
                         the upgrade stopped, and the format-1 header and trees are unchanged"
                    .into(),
            });
        }
    }
    let mut prefix = id.to_vec();
    prefix.extend_from_slice(&incarnation);
    clear_prefix(backend, &prefix)?;
    let active_cipher = keys
        .keys
        .iter()
        .find_map(|(kid, k)| (*kid == keys.active).then(|| k.cipher()))
        .ok_or_else(|| damaged("the active key is missing"))?;
    let mut manifest = None;
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = guarded(backend, |b| b.scan(&id, &[], after.as_deref(), PAGE))?;
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        let mut batch = Batch::new();
        for (rid, stored) in page {
            let prefix_v1 = parse_prefix(&stored).map_err(|e| damaged(e.reason()))?;
            let cipher = keys
                .keys
                .iter()
                .find_map(|(kid, k)| (*kid == prefix_v1.key_id).then(|| k.cipher()))
                .ok_or_else(|| {
                    damaged("a record is sealed under a key the namespace does not have")
                })?;
            let (plain, range) = open_record(
                &cipher,
                &RecordContext {
                    vault_id,
                    namespace: &keys.name,
                    record_id: &rid,
                    incarnation: None,
                },
                &prefix_v1,
                &stored,
            )
            .map_err(|e| damaged(e.reason()))?;
            let body = reframe(&plain[range.clone()]);
            let prefix_v2 = RecordPrefix {
                key_id: keys.active,
                ..prefix_v1
            };
            let sealed = seal_record(
                &active_cipher,
                &RecordContext {
                    vault_id,
                    namespace: &keys.name,
                    record_id: &rid,
                    incarnation: Some(&incarnation),
                },
                &prefix_v2,
                body,
            )?;
            if rid.as_slice() == MANIFEST_ID {
                if prefix_v1.record_type != RecordType::Manifest {
                    return Err(damaged("the manifest has the wrong type"));
                }
                let m = decode_manifest(&plain[range])
                    .map_err(|_| damaged("the manifest does not decode"))?;
                if m.generation < keys.floor {
                    return Err(damaged(
                        "storage holds an older state of the namespace than the header \
                         recorded (rolled back); restore from a backup before upgrading",
                    ));
                }
                manifest = Some(sealed);
            } else {
                let mut key = prefix.clone();
                key.extend_from_slice(&rid);
                batch = batch.write(RECORDS_TREE, &key, Some(sealed));
            }
        }
        guarded(backend, |b| b.apply(&batch))?;
    }
    let manifest = manifest.ok_or_else(|| {
        damaged("the namespace's manifest is missing: storage lost data (run verify)")
    })?;
    let NsKeys {
        name, active, keys, ..
    } = keys;
    let active_key = keys
        .into_iter()
        .find(|(kid, _)| *kid == active)
        .map(|(_, k)| k)
        .ok_or_else(|| Error::header("namespace active key missing"))?;
    let entry = Entry {
        name,
        incarnation,
        active,
        keys: vec![(active, active_key)],
    };
    let sealed = seal_entry(&ewk.cipher, ewk.id, vault_id, &id, &entry)?;
    let batch = Batch::new()
        .write(MANIFESTS_TREE, &prefix, Some(manifest))
        .write(ENTRIES_TREE, &id, Some(sealed));
    guarded(backend, |b| b.apply(&batch))?;
    Ok(())
}

/// Removes every record under `prefix` (copies of an interrupted upgrade).
fn clear_prefix(backend: &dyn Backend, prefix: &[u8]) -> Result<()> {
    loop {
        let page = guarded(backend, |b| b.scan(RECORDS_TREE, prefix, None, PAGE))?;
        if page.is_empty() {
            return Ok(());
        }
        let mut batch = Batch::new();
        for (key, _) in &page {
            batch = batch.write(RECORDS_TREE, key, None);
        }
        guarded(backend, |b| b.apply(&batch))?;
    }
}

/// A record body laid out again for [`seal_record`].
fn reframe(body: &[u8]) -> zeroize::Zeroizing<Vec<u8>> {
    use crate::crypto::TAG_LEN;
    use crate::record::{PAD_BUCKET, RECORD_HEADER_LEN};
    let capacity = RECORD_HEADER_LEN + 5 + body.len() + PAD_BUCKET + TAG_LEN;
    let mut buf = zeroize::Zeroizing::new(Vec::with_capacity(capacity));
    buf.resize(RECORD_HEADER_LEN + 5, 0);
    buf.extend_from_slice(body);
    buf
}
