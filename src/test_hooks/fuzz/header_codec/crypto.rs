//! The labels, the keyed primitives (HKDF, HMAC, XChaCha20-Poly1305 with the nonce in
//! front), the key hierarchy and every associated-data layout, with the sealing and
//! opening of records, as docs/format.md specifies them.

// Test harness code: failing loudly on anything unexpected is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;

// ---------------------------------------------------------------------------------------
// Labels (docs/format.md section 2; format 2 keeps format 1's and adds six).

pub(crate) const RAW_KEY_LABEL: &[u8] = b"tokenvault/v1/keyslot/raw-key";
pub(crate) const SLOT_AAD_LABEL: &[u8] = b"tokenvault/v1/keyslot";
pub(crate) const INDEX_KEY_AAD_LABEL: &[u8] = b"tokenvault/v1/index-key";
pub(crate) const NAMESPACE_AAD_LABEL: &[u8] = b"tokenvault/v1/namespace";
pub(crate) const NAMESPACE_ID_LABEL: &[u8] = b"tokenvault/v1/namespace-id";
pub(crate) const RECORD_ID_LABEL: &[u8] = b"tokenvault/v1/record-id";
pub(crate) const RECORD_V1_LABEL: &[u8] = b"tokenvault/v1/record";
pub(crate) const HEADER_MAC_LABEL: &[u8] = b"tokenvault/v1/header-mac";
pub(crate) const WRAP_LABEL: &[u8] = b"tokenvault/v1/wrap";
pub(crate) const ENTRY_KEY_AAD_LABEL: &[u8] = b"tokenvault/v2/entry-key";
pub(crate) const ENTRY_LABEL: &[u8] = b"tokenvault/v2/entry";
pub(crate) const RECORD_V2_LABEL: &[u8] = b"tokenvault/v2/record";
pub(crate) const ANCHOR_LABEL: &[u8] = b"tokenvault/v2/anchor";
pub(crate) const UPGRADE_EWK_LABEL: &[u8] = b"tokenvault/v2/upgrade-ewk";
pub(crate) const UPGRADE_INCARNATION_LABEL: &[u8] = b"tokenvault/v2/upgrade-incarnation";

// ---------------------------------------------------------------------------------------
// Primitives (section 1.1).

pub(crate) fn lp(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(bytes);
}

pub(crate) fn hkdf(salt: &[u8], ikm: &[u8], info: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    // 32 bytes is always a valid HKDF-SHA-256 output length.
    let _ = Hkdf::<Sha256>::new(Some(salt), ikm).expand(info, &mut out);
    out
}

pub(crate) fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(key) else {
        return [0u8; 32];
    };
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// `HMAC(key, lp(part_1) || lp(part_2) || ...)`.
pub(crate) fn hmac_lp(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut m = Vec::new();
    for part in parts {
        lp(&mut m, part);
    }
    hmac(key, &[&m])
}

/// A namespace id (section 4.6).
pub(crate) fn ns_id(index_key: &[u8; 32], name: &[u8]) -> [u8; 32] {
    hmac_lp(index_key, &[NAMESPACE_ID_LABEL, name])
}

/// A record id (section 4.6).
pub(crate) fn record_id(index_key: &[u8; 32], name: &[u8], key: &[u8]) -> [u8; 32] {
    hmac_lp(index_key, &[RECORD_ID_LABEL, name, key])
}

/// XChaCha20-Poly1305 with the nonce in front: `nonce [24] || ciphertext || tag [16]`.
/// The nonce is derived from the inputs: the fuzz targets must be deterministic.
pub(crate) fn seal(key: &[u8; 32], aad: &[u8], plain: &[u8]) -> Vec<u8> {
    let nonce_seed = hmac(key, &[b"fuzz-nonce", aad, plain]);
    let mut nonce = [0u8; 24];
    nonce.copy_from_slice(&nonce_seed[..24]);
    let Ok(cipher) = XChaCha20Poly1305::new_from_slice(key) else {
        return Vec::new();
    };
    let sealed = cipher
        .encrypt(&XNonce::from(nonce), Payload { msg: plain, aad })
        .unwrap_or_default();
    let mut out = nonce.to_vec();
    out.extend_from_slice(&sealed);
    out
}

pub(crate) fn open(key: &[u8; 32], aad: &[u8], blob: &[u8]) -> Option<Vec<u8>> {
    if blob.len() < 24 + 16 {
        return None;
    }
    let mut nonce = [0u8; 24];
    nonce.copy_from_slice(&blob[..24]);
    let cipher = XChaCha20Poly1305::new_from_slice(key).ok()?;
    cipher
        .decrypt(
            &XNonce::from(nonce),
            Payload {
                msg: &blob[24..],
                aad,
            },
        )
        .ok()
}

/// `Unwrap` (section 1.2): exactly 72 bytes, a 32-byte key inside.
pub(crate) fn unwrap(kek: &[u8; 32], aad: &[u8], wrapped: &[u8]) -> Option<[u8; 32]> {
    if wrapped.len() != 72 {
        return None;
    }
    open(kek, aad, wrapped)?.try_into().ok()
}

// ---------------------------------------------------------------------------------------
// Key hierarchy (section 4) and associated data.

pub(crate) fn raw_kek(raw_key: &[u8; 32], salt: &[u8]) -> [u8; 32] {
    hkdf(salt, raw_key, RAW_KEY_LABEL)
}

pub(crate) fn k_wrap(vmk: &[u8; 32], vault_id: &[u8]) -> [u8; 32] {
    hkdf(vault_id, vmk, WRAP_LABEL)
}

pub(crate) fn k_mac(vmk: &[u8; 32], vault_id: &[u8]) -> [u8; 32] {
    hkdf(vault_id, vmk, HEADER_MAC_LABEL)
}

/// `K_entry[id]` from `EWK[id]` (section 4.7).
pub(crate) fn k_entry(ewk: &[u8; 32], vault_id: &[u8]) -> [u8; 32] {
    hkdf(vault_id, ewk, ENTRY_LABEL)
}

/// The entry-wrapping key of a vault upgraded from format 1 (section 12).
pub(crate) fn upgrade_ewk(vmk: &[u8; 32], vault_id: &[u8]) -> [u8; 32] {
    hkdf(vault_id, vmk, UPGRADE_EWK_LABEL)
}

/// The incarnation an upgrade from format 1 gives namespace `id` (section 12).
pub(crate) fn upgrade_incarnation(index_key: &[u8; 32], id: &[u8]) -> [u8; 16] {
    let mac = hmac_lp(index_key, &[UPGRADE_INCARNATION_LABEL, id]);
    let mut out = [0u8; 16];
    out.copy_from_slice(&mac[..16]);
    out
}

pub(crate) fn slot_aad(vault_id: &[u8], id: u32, kind: u8, params: &[u8]) -> Vec<u8> {
    let mut a = Vec::new();
    lp(&mut a, SLOT_AAD_LABEL);
    lp(&mut a, vault_id);
    a.extend_from_slice(&id.to_le_bytes());
    a.push(kind);
    lp(&mut a, params);
    a
}

pub(crate) fn index_key_aad(vault_id: &[u8]) -> Vec<u8> {
    let mut a = Vec::new();
    lp(&mut a, INDEX_KEY_AAD_LABEL);
    lp(&mut a, vault_id);
    a
}

/// The AAD of a wrapped entry-wrapping key (section 4.7).
pub(crate) fn ewk_aad(vault_id: &[u8], id: u32) -> Vec<u8> {
    let mut a = Vec::new();
    lp(&mut a, ENTRY_KEY_AAD_LABEL);
    lp(&mut a, vault_id);
    a.extend_from_slice(&id.to_le_bytes());
    a
}

/// The AAD of a format-1 namespace entry (section 11.3).
pub(crate) fn ns_aad_v1(vault_id: &[u8], id: &[u8]) -> Vec<u8> {
    let mut a = Vec::new();
    lp(&mut a, NAMESPACE_AAD_LABEL);
    lp(&mut a, vault_id);
    lp(&mut a, id);
    a
}

/// The AAD of a format-2 namespace entry (section 4.7).
pub(crate) fn entry_aad(vault_id: &[u8], id: &[u8], ewk_id: u32, incarnation: &[u8]) -> Vec<u8> {
    let mut a = Vec::new();
    lp(&mut a, ENTRY_LABEL);
    lp(&mut a, vault_id);
    lp(&mut a, id);
    a.extend_from_slice(&ewk_id.to_le_bytes());
    lp(&mut a, incarnation);
    a
}

/// Where a record belongs: its vault, namespace name, incarnation (format 2 only) and
/// record id (32 bytes, or [`MANIFEST_ID`]).
pub(crate) struct RecordPlace<'a> {
    pub(crate) vault_id: &'a [u8],
    pub(crate) name: &'a [u8],
    pub(crate) incarnation: Option<&'a [u8; 16]>,
    pub(crate) record_id: &'a [u8],
}

/// The AAD of a record (section 5.2; format 1: section 11.4) with the given 14-byte prefix.
pub(crate) fn record_aad(place: &RecordPlace<'_>, prefix: &[u8]) -> Vec<u8> {
    let mut a = Vec::new();
    match place.incarnation {
        Some(incarnation) => {
            lp(&mut a, RECORD_V2_LABEL);
            a.push(2);
            lp(&mut a, place.vault_id);
            lp(&mut a, place.name);
            lp(&mut a, incarnation);
        }
        None => {
            lp(&mut a, RECORD_V1_LABEL);
            a.push(1);
            lp(&mut a, place.vault_id);
            lp(&mut a, place.name);
        }
    }
    lp(&mut a, place.record_id);
    a.extend_from_slice(prefix.get(1..14).unwrap_or(&[]));
    a
}

/// Opens a stored record (section 5.1) under data key `key`: its plaintext (payload framing
/// included), or `None`.
pub(crate) fn open_record(
    key: &[u8; 32],
    place: &RecordPlace<'_>,
    stored: &[u8],
) -> Option<Vec<u8>> {
    let prefix = stored.get(..14)?;
    open(key, &record_aad(place, prefix), stored.get(14..)?)
}

/// Seals a record's plaintext as a stored record with the given type, key id and generation,
/// in the format that `place` implies (2 with an incarnation, 1 without).
pub(crate) fn seal_record(
    key: &[u8; 32],
    place: &RecordPlace<'_>,
    record_type: u8,
    key_id: u32,
    generation: u64,
    plain: &[u8],
) -> Vec<u8> {
    let mut prefix = vec![if place.incarnation.is_some() { 2 } else { 1 }, record_type];
    prefix.extend_from_slice(&key_id.to_le_bytes());
    prefix.extend_from_slice(&generation.to_le_bytes());
    let mut out = prefix.clone();
    out.extend_from_slice(&seal(key, &record_aad(place, &prefix), plain));
    out
}

/// The stored record prefix's fields: type, key id, generation.
pub(crate) fn record_prefix(stored: &[u8]) -> Option<(u8, u32, u64)> {
    let mut c = Cursor(stored.get(..14)?);
    let _version = c.take(1)?;
    Some((c.take(1)?[0], c.u32()?, c.u64()?))
}
