//! Format-1 vaults as tokenvault wrote them before format 2 (issue 14), for tests of the
//! upgrade at sizes the golden vaults do not have: the same header, namespace entries,
//! record AAD and manifests, written through the [`Backend`] trait.

use crate::backend::{Backend, Batch};
use crate::crypto::{fill_random, random_u64, Key, Prf, WRAPPED_KEY_LEN};
use crate::engine::new_slot;
use crate::format::RecordType;
use crate::format::{FORMAT_V1, NAMESPACE_ID_LABEL, RECORD_ID_LABEL, VAULT_ID_LEN};
use crate::header::{seal_ns, Header, NsEntry, NsKeys, VmkKeys};
use crate::keys::{KdfParams, KeySource};
use crate::namespace::{MANIFEST_ID, RESERVED_GENERATIONS};
use crate::record::sealed::Sealed;
use crate::record::{encode_manifest, seal_record, Manifest, RecordContext, RecordPrefix};
use crate::Token;

/// Writes a format-1 vault into the empty `backend`: one keyslot for `key`, and namespaces
/// holding the given tokens (record key, token), each namespace in a sled tree named by its
/// id with its manifest, and its entry (with its checkpoint floor) in the header.
///
/// # Errors
/// A description of what failed.
pub fn write_v1_vault(
    backend: &dyn Backend,
    key: &KeySource,
    namespaces: &[(String, Vec<(String, Token)>)],
) -> Result<(), String> {
    let e = |e: crate::Error| e.to_string();
    let mut vault_id = [0u8; VAULT_ID_LEN];
    fill_random(&mut vault_id).map_err(e)?;
    let vmk = Key::random().map_err(e)?;
    let index_key = Key::random().map_err(e)?;
    let index = Prf::new(&index_key).map_err(e)?;
    let kdf = KdfParams::insecure_for_tests();
    let (slot, _) =
        new_slot(&vault_id, 0, key, &kdf, &KdfParams::DEFAULT_LIMIT, &vmk).map_err(e)?;
    let vmk_keys = VmkKeys::new(&vmk, &vault_id).map_err(e)?;
    let mut header = Header {
        version: FORMAT_V1,
        vault_id,
        seqid: 1,
        next_slot_id: 1,
        slots: vec![slot],
        wrapped_index_key: [0u8; WRAPPED_KEY_LEN],
        namespaces: Vec::new(),
        epoch: 0,
        active_ewk: 0,
        ewks: Vec::new(),
    };
    header.wrapped_index_key = vmk_keys
        .wrap
        .wrap_key(&header.index_key_aad(), &index_key)
        .map_err(e)?;
    for (name, tokens) in namespaces {
        let id = index.mac(&[NAMESPACE_ID_LABEL, name.as_bytes()]);
        let data_key = Key::random().map_err(e)?;
        let cipher = data_key.cipher();
        let start = random_u64().map_err(e)? >> 12;
        let mut batch = Batch::new();
        let mut generation = start;
        for (record_key, token) in tokens {
            generation += 1;
            let rid = index.mac(&[RECORD_ID_LABEL, name.as_bytes(), record_key.as_bytes()]);
            let sealed = seal_record(
                &cipher,
                &RecordContext {
                    vault_id: &vault_id,
                    namespace: name,
                    record_id: &rid,
                    incarnation: None,
                },
                &RecordPrefix {
                    record_type: RecordType::Token,
                    key_id: 1,
                    generation,
                },
                Sealed::encode_body(token, record_key).map_err(e)?,
            )
            .map_err(e)?;
            batch = batch.write(&id, &rid, Some(sealed));
        }
        let ceiling = generation + RESERVED_GENERATIONS;
        let manifest = seal_record(
            &cipher,
            &RecordContext {
                vault_id: &vault_id,
                namespace: name,
                record_id: MANIFEST_ID,
                incarnation: None,
            },
            &RecordPrefix {
                record_type: RecordType::Manifest,
                key_id: 1,
                generation: ceiling,
            },
            encode_manifest(&Manifest {
                count: tokens.len() as u64,
                generation: ceiling,
            })
            .map_err(e)?,
        )
        .map_err(e)?;
        batch = batch.write(&id, MANIFEST_ID, Some(manifest));
        backend.apply(&batch).map_err(|e| e.to_string())?;
        let blob = seal_ns(
            &vmk_keys.wrap,
            &vault_id,
            &id,
            &NsKeys {
                name: name.clone(),
                active: 1,
                keys: vec![(1, data_key)],
                floor: ceiling,
            },
        )
        .map_err(e)?;
        header.namespaces.push(NsEntry { id, blob });
    }
    backend.flush().map_err(|e| e.to_string())?;
    let bytes = header.encode(&vmk_keys).map_err(e)?;
    if !backend
        .write_header(None, &bytes)
        .map_err(|e| e.to_string())?
    {
        return Err("the backend already holds a header".into());
    }
    Ok(())
}
