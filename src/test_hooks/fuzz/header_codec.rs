//! An independent codec of the format's bytes, written from the format specification
//! (docs/format.md; for format 2, the v2 byte layout it was built from) and sharing no code
//! with the library: the header file of format 2 and of format 1, the keyed primitives
//! (HKDF, HMAC, XChaCha20-Poly1305 with the nonce in front), every associated-data layout,
//! namespace entries (format 2 in tree `e`, format 1 in the header), records and the anchor.
//! The `open_vault` target uses it to read a real vault's keys, to re-seal what it edits, and
//! to recompute the header's MAC and checksum.

// Test harness code: failing loudly on anything unexpected is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;

pub(super) const MAGIC: [u8; 8] = [0x89, b'T', b'V', b'A', b'U', b'L', b'T', b'\n'];
/// Magic, version and body length.
pub(super) const FIXED_LEN: usize = 14;
/// MAC and checksum.
pub(super) const TRAILER_LEN: usize = 64;
/// Format versions.
pub(super) const V1: u16 = 1;
pub(super) const V2: u16 = 2;

/// `data` with the magic, `body_len` and checksum made consistent with its length, and the
/// version kept if it is 1 or 2 (else set to 2, the current format), so that the body parser
/// of either version is within a fuzzer's reach (`None` if it is shorter than an empty
/// header).
pub fn fix_framing(data: &[u8]) -> Option<Vec<u8>> {
    if data.len() < FIXED_LEN + TRAILER_LEN {
        return None;
    }
    let mut out = data.to_vec();
    out[..8].copy_from_slice(&MAGIC);
    let version = u16::from_le_bytes([out[8], out[9]]);
    if version != V1 && version != V2 {
        out[8..10].copy_from_slice(&V2.to_le_bytes());
    }
    set_body_len(&mut out);
    set_checksum(&mut out);
    Some(out)
}

pub(super) fn set_body_len(file: &mut [u8]) {
    if let Some(body_len) = file.len().checked_sub(FIXED_LEN + TRAILER_LEN) {
        let body_len = u32::try_from(body_len).unwrap_or(u32::MAX);
        file[10..14].copy_from_slice(&body_len.to_le_bytes());
    }
}

pub(super) fn set_checksum(file: &mut [u8]) {
    if file.len() >= 32 {
        let n = file.len() - 32;
        let sum: [u8; 32] = Sha256::digest(&file[..n]).into();
        file[n..].copy_from_slice(&sum);
    }
}

// ---------------------------------------------------------------------------------------
// Labels (docs/format.md section 2; format 2 keeps format 1's and adds six).

pub(super) const RAW_KEY_LABEL: &[u8] = b"tokenvault/v1/keyslot/raw-key";
pub(super) const SLOT_AAD_LABEL: &[u8] = b"tokenvault/v1/keyslot";
pub(super) const INDEX_KEY_AAD_LABEL: &[u8] = b"tokenvault/v1/index-key";
pub(super) const NAMESPACE_AAD_LABEL: &[u8] = b"tokenvault/v1/namespace";
pub(super) const NAMESPACE_ID_LABEL: &[u8] = b"tokenvault/v1/namespace-id";
pub(super) const RECORD_ID_LABEL: &[u8] = b"tokenvault/v1/record-id";
pub(super) const RECORD_V1_LABEL: &[u8] = b"tokenvault/v1/record";
pub(super) const HEADER_MAC_LABEL: &[u8] = b"tokenvault/v1/header-mac";
pub(super) const WRAP_LABEL: &[u8] = b"tokenvault/v1/wrap";
pub(super) const ENTRY_KEY_AAD_LABEL: &[u8] = b"tokenvault/v2/entry-key";
pub(super) const ENTRY_LABEL: &[u8] = b"tokenvault/v2/entry";
pub(super) const RECORD_V2_LABEL: &[u8] = b"tokenvault/v2/record";
pub(super) const ANCHOR_LABEL: &[u8] = b"tokenvault/v2/anchor";
pub(super) const UPGRADE_EWK_LABEL: &[u8] = b"tokenvault/v2/upgrade-ewk";
pub(super) const UPGRADE_INCARNATION_LABEL: &[u8] = b"tokenvault/v2/upgrade-incarnation";

// ---------------------------------------------------------------------------------------
// Storage layout (section 7.1).

/// The entries tree, the records tree and the manifests tree.
pub(super) const ENTRIES: &[u8] = b"e";
pub(super) const RECORDS: &[u8] = b"r";
pub(super) const MANIFESTS: &[u8] = b"m";
/// The key of the entry-key marker (in `e`) and of the anchor (in `m`).
pub(super) const ANCHOR_KEY: &[u8] = &[0];
/// The first byte of a pending rotation's mark in `m` (`01 || ns_id`).
pub(super) const PENDING_ROTATION: u8 = 1;
/// The manifest's record id (in its AAD; format 1 also stores it under this key).
pub(super) const MANIFEST_ID: &[u8] = &[0];

// ---------------------------------------------------------------------------------------
// Primitives (section 1.1).

pub(super) fn lp(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(bytes);
}

pub(super) fn hkdf(salt: &[u8], ikm: &[u8], info: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    // 32 bytes is always a valid HKDF-SHA-256 output length.
    let _ = Hkdf::<Sha256>::new(Some(salt), ikm).expand(info, &mut out);
    out
}

pub(super) fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(key) else {
        return [0u8; 32];
    };
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// `HMAC(key, lp(part_1) || lp(part_2) || ...)`.
pub(super) fn hmac_lp(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut m = Vec::new();
    for part in parts {
        lp(&mut m, part);
    }
    hmac(key, &[&m])
}

/// A namespace id (section 4.6).
pub(super) fn ns_id(index_key: &[u8; 32], name: &[u8]) -> [u8; 32] {
    hmac_lp(index_key, &[NAMESPACE_ID_LABEL, name])
}

/// A record id (section 4.6).
pub(super) fn record_id(index_key: &[u8; 32], name: &[u8], key: &[u8]) -> [u8; 32] {
    hmac_lp(index_key, &[RECORD_ID_LABEL, name, key])
}

/// XChaCha20-Poly1305 with the nonce in front: `nonce [24] || ciphertext || tag [16]`.
/// The nonce is derived from the inputs: the fuzz targets must be deterministic.
pub(super) fn seal(key: &[u8; 32], aad: &[u8], plain: &[u8]) -> Vec<u8> {
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

pub(super) fn open(key: &[u8; 32], aad: &[u8], blob: &[u8]) -> Option<Vec<u8>> {
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
pub(super) fn unwrap(kek: &[u8; 32], aad: &[u8], wrapped: &[u8]) -> Option<[u8; 32]> {
    if wrapped.len() != 72 {
        return None;
    }
    open(kek, aad, wrapped)?.try_into().ok()
}

// ---------------------------------------------------------------------------------------
// Key hierarchy (section 4) and associated data.

pub(super) fn raw_kek(raw_key: &[u8; 32], salt: &[u8]) -> [u8; 32] {
    hkdf(salt, raw_key, RAW_KEY_LABEL)
}

pub(super) fn k_wrap(vmk: &[u8; 32], vault_id: &[u8]) -> [u8; 32] {
    hkdf(vault_id, vmk, WRAP_LABEL)
}

pub(super) fn k_mac(vmk: &[u8; 32], vault_id: &[u8]) -> [u8; 32] {
    hkdf(vault_id, vmk, HEADER_MAC_LABEL)
}

/// `K_entry[id]` from `EWK[id]` (section 4.7).
pub(super) fn k_entry(ewk: &[u8; 32], vault_id: &[u8]) -> [u8; 32] {
    hkdf(vault_id, ewk, ENTRY_LABEL)
}

/// The entry-wrapping key of a vault upgraded from format 1 (section 12).
pub(super) fn upgrade_ewk(vmk: &[u8; 32], vault_id: &[u8]) -> [u8; 32] {
    hkdf(vault_id, vmk, UPGRADE_EWK_LABEL)
}

/// The incarnation an upgrade from format 1 gives namespace `id` (section 12).
pub(super) fn upgrade_incarnation(index_key: &[u8; 32], id: &[u8]) -> [u8; 16] {
    let mac = hmac_lp(index_key, &[UPGRADE_INCARNATION_LABEL, id]);
    let mut out = [0u8; 16];
    out.copy_from_slice(&mac[..16]);
    out
}

pub(super) fn slot_aad(vault_id: &[u8], id: u32, kind: u8, params: &[u8]) -> Vec<u8> {
    let mut a = Vec::new();
    lp(&mut a, SLOT_AAD_LABEL);
    lp(&mut a, vault_id);
    a.extend_from_slice(&id.to_le_bytes());
    a.push(kind);
    lp(&mut a, params);
    a
}

pub(super) fn index_key_aad(vault_id: &[u8]) -> Vec<u8> {
    let mut a = Vec::new();
    lp(&mut a, INDEX_KEY_AAD_LABEL);
    lp(&mut a, vault_id);
    a
}

/// The AAD of a wrapped entry-wrapping key (section 4.7).
pub(super) fn ewk_aad(vault_id: &[u8], id: u32) -> Vec<u8> {
    let mut a = Vec::new();
    lp(&mut a, ENTRY_KEY_AAD_LABEL);
    lp(&mut a, vault_id);
    a.extend_from_slice(&id.to_le_bytes());
    a
}

/// The AAD of a format-1 namespace entry (section 11.3).
pub(super) fn ns_aad_v1(vault_id: &[u8], id: &[u8]) -> Vec<u8> {
    let mut a = Vec::new();
    lp(&mut a, NAMESPACE_AAD_LABEL);
    lp(&mut a, vault_id);
    lp(&mut a, id);
    a
}

/// The AAD of a format-2 namespace entry (section 4.7).
pub(super) fn entry_aad(vault_id: &[u8], id: &[u8], ewk_id: u32, incarnation: &[u8]) -> Vec<u8> {
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
pub(super) struct RecordPlace<'a> {
    pub(super) vault_id: &'a [u8],
    pub(super) name: &'a [u8],
    pub(super) incarnation: Option<&'a [u8; 16]>,
    pub(super) record_id: &'a [u8],
}

/// The AAD of a record (section 5.2; format 1: section 11.4) with the given 14-byte prefix.
pub(super) fn record_aad(place: &RecordPlace<'_>, prefix: &[u8]) -> Vec<u8> {
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
pub(super) fn open_record(
    key: &[u8; 32],
    place: &RecordPlace<'_>,
    stored: &[u8],
) -> Option<Vec<u8>> {
    let prefix = stored.get(..14)?;
    open(key, &record_aad(place, prefix), stored.get(14..)?)
}

/// Seals a record's plaintext as a stored record with the given type, key id and generation,
/// in the format that `place` implies (2 with an incarnation, 1 without).
pub(super) fn seal_record(
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
pub(super) fn record_prefix(stored: &[u8]) -> Option<(u8, u32, u64)> {
    let mut c = Cursor(stored.get(..14)?);
    let _version = c.take(1)?;
    Some((c.take(1)?[0], c.u32()?, c.u64()?))
}

// ---------------------------------------------------------------------------------------
// The anchor (section 4.8).

/// `K_anchor`.
pub(super) fn k_anchor(index_key: &[u8; 32], vault_id: &[u8]) -> [u8; 32] {
    hkdf(vault_id, index_key, ANCHOR_LABEL)
}

/// The anchor's MAC over `lp(label) || lp(vault_id) || lp(le64(epoch))`.
pub(super) fn anchor_mac(index_key: &[u8; 32], vault_id: &[u8], epoch: u64) -> [u8; 32] {
    hmac_lp(
        &k_anchor(index_key, vault_id),
        &[ANCHOR_LABEL, vault_id, &epoch.to_le_bytes()],
    )
}

/// The stored anchor: `u8(2) || le64(epoch) || mac`.
pub(super) fn seal_anchor(index_key: &[u8; 32], vault_id: &[u8], epoch: u64) -> Vec<u8> {
    let mut v = vec![2];
    v.extend_from_slice(&epoch.to_le_bytes());
    v.extend_from_slice(&anchor_mac(index_key, vault_id, epoch));
    v
}

/// The epoch of an authentic anchor: exactly 41 bytes, version 2, the MAC verifies.
pub(super) fn open_anchor(index_key: &[u8; 32], vault_id: &[u8], stored: &[u8]) -> Option<u64> {
    if stored.len() != 41 || stored[0] != 2 {
        return None;
    }
    let epoch = u64::from_le_bytes(stored[1..9].try_into().ok()?);
    (stored[9..] == anchor_mac(index_key, vault_id, epoch)).then_some(epoch)
}

/// The entry-key marker's value: `u8(2) || le32(active_ewk)`.
pub(super) fn marker(active_ewk: u32) -> Vec<u8> {
    let mut v = vec![2];
    v.extend_from_slice(&active_ewk.to_le_bytes());
    v
}

// ---------------------------------------------------------------------------------------
// The header file (sections 3 and 11.1).

/// A header as its fields, for a structurally well-formed file (bounds are not checked
/// here: [`HeaderFields::body_rule_broken`]). The version decides the tail of the body: the
/// namespace table (format 1) or the epoch and the entry-wrapping keys (format 2, and any
/// other version, so that an edit can set an unknown one).
#[derive(Clone, PartialEq, Eq)]
pub(super) struct HeaderFields {
    pub(super) version: u16,
    pub(super) vault_id: [u8; 16],
    pub(super) seqid: u64,
    pub(super) next_slot_id: u32,
    pub(super) slots: Vec<SlotFields>,
    pub(super) wrapped_index_key: Vec<u8>,
    /// Format 1: every namespace's id and sealed entry.
    pub(super) namespaces: Vec<([u8; 32], Vec<u8>)>,
    /// Format 2: the checkpoint high-water mark.
    pub(super) epoch: u64,
    /// Format 2: the id of the entry-wrapping key new entries are sealed under.
    pub(super) active_ewk: u32,
    /// Format 2: the wrapped entry-wrapping keys, in stored order.
    pub(super) ewks: Vec<(u32, Vec<u8>)>,
    pub(super) mac: [u8; 32],
}

#[derive(Clone, PartialEq, Eq)]
pub(super) struct SlotFields {
    pub(super) id: u32,
    pub(super) kind: u8,
    pub(super) params: Vec<u8>,
    pub(super) wrapped: Vec<u8>,
}

pub(super) struct Cursor<'a>(pub(super) &'a [u8]);

impl<'a> Cursor<'a> {
    pub(super) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.0.len() {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }
    pub(super) fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    pub(super) fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }
    pub(super) fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    pub(super) fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    pub(super) fn arr<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
}

impl HeaderFields {
    /// The fields of `file`, if its body parses to its end (magic, `body_len` and checksum
    /// are not checked).
    pub(super) fn parse(file: &[u8]) -> Option<Self> {
        let n = file.len().checked_sub(TRAILER_LEN)?;
        let version = u16::from_le_bytes(file.get(8..10)?.try_into().ok()?);
        let mut c = Cursor(file.get(FIXED_LEN..n)?);
        let vault_id = c.arr::<16>()?;
        let seqid = c.u64()?;
        let next_slot_id = c.u32()?;
        let slot_count = c.u16()?;
        let mut slots = Vec::new();
        for _ in 0..slot_count {
            let id = c.u32()?;
            let kind = c.u8()?;
            let params_len = usize::from(c.u16()?);
            let params = c.take(params_len)?.to_vec();
            let wrapped = c.take(72)?.to_vec();
            slots.push(SlotFields {
                id,
                kind,
                params,
                wrapped,
            });
        }
        let wrapped_index_key = c.take(72)?.to_vec();
        let mut fields = Self {
            version,
            vault_id,
            seqid,
            next_slot_id,
            slots,
            wrapped_index_key,
            namespaces: Vec::new(),
            epoch: 0,
            active_ewk: 0,
            ewks: Vec::new(),
            mac: file[n..n + 32].try_into().ok()?,
        };
        if version == V1 {
            let ns_count = c.u32()?;
            for _ in 0..ns_count {
                let id = c.arr::<32>()?;
                let blob_len = usize::try_from(c.u32()?).ok()?;
                fields.namespaces.push((id, c.take(blob_len)?.to_vec()));
            }
        } else {
            fields.epoch = c.u64()?;
            fields.active_ewk = c.u32()?;
            let count = c.u8()?;
            for _ in 0..count {
                let id = c.u32()?;
                fields.ewks.push((id, c.take(72)?.to_vec()));
            }
        }
        c.0.is_empty().then_some(fields)
    }

    /// The file: fixed part, body, the stored `mac` and a correct checksum.
    pub(super) fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&self.vault_id);
        body.extend_from_slice(&self.seqid.to_le_bytes());
        body.extend_from_slice(&self.next_slot_id.to_le_bytes());
        let slot_count = u16::try_from(self.slots.len()).unwrap_or(u16::MAX);
        body.extend_from_slice(&slot_count.to_le_bytes());
        for s in &self.slots {
            body.extend_from_slice(&s.id.to_le_bytes());
            body.push(s.kind);
            let params_len = u16::try_from(s.params.len()).unwrap_or(u16::MAX);
            body.extend_from_slice(&params_len.to_le_bytes());
            body.extend_from_slice(&s.params);
            body.extend_from_slice(&s.wrapped);
        }
        body.extend_from_slice(&self.wrapped_index_key);
        if self.version == V1 {
            let ns_count = u32::try_from(self.namespaces.len()).unwrap_or(u32::MAX);
            body.extend_from_slice(&ns_count.to_le_bytes());
            for (id, blob) in &self.namespaces {
                body.extend_from_slice(id);
                let blob_len = u32::try_from(blob.len()).unwrap_or(u32::MAX);
                body.extend_from_slice(&blob_len.to_le_bytes());
                body.extend_from_slice(blob);
            }
        } else {
            body.extend_from_slice(&self.epoch.to_le_bytes());
            body.extend_from_slice(&self.active_ewk.to_le_bytes());
            body.push(u8::try_from(self.ewks.len()).unwrap_or(u8::MAX));
            for (id, wrapped) in &self.ewks {
                body.extend_from_slice(&id.to_le_bytes());
                body.extend_from_slice(wrapped);
            }
        }
        let mut file = MAGIC.to_vec();
        file.extend_from_slice(&self.version.to_le_bytes());
        let body_len = u32::try_from(body.len()).unwrap_or(u32::MAX);
        file.extend_from_slice(&body_len.to_le_bytes());
        file.extend_from_slice(&body);
        file.extend_from_slice(&self.mac);
        file.extend_from_slice(&[0u8; 32]);
        set_checksum(&mut file);
        file
    }

    /// The first body rule of section 3.2 (format 1: 11.1) that these fields break, if any
    /// (8.1 step 7; the structure itself was checked by [`HeaderFields::parse`]).
    pub(super) fn body_rule_broken(&self) -> Option<&'static str> {
        if self.slots.is_empty() || self.slots.len() > 32 {
            return Some("slot count out of bounds");
        }
        let mut ids = Vec::new();
        for s in &self.slots {
            if s.params.len() > 1024 {
                return Some("slot parameters too long");
            }
            if s.id >= self.next_slot_id || ids.contains(&s.id) {
                return Some("slot ids inconsistent");
            }
            ids.push(s.id);
        }
        if self.version == V1 {
            // The count is bounded by what the bytes after it can hold (140 bytes at least
            // per entry); a parsed body ends with its last entry.
            let remaining: usize = self.namespaces.iter().map(|(_, b)| 36 + b.len()).sum();
            if self.namespaces.len() > remaining / 140 {
                return Some("namespace count exceeds the header's size");
            }
            let mut seen = Vec::new();
            for (id, blob) in &self.namespaces {
                if !(104..=65_536).contains(&blob.len()) {
                    return Some("namespace entry length out of bounds");
                }
                if seen.contains(id) {
                    return Some("duplicate namespace ids");
                }
                seen.push(*id);
            }
            return None;
        }
        if self.ewks.is_empty() || self.ewks.len() > 2 {
            return Some("entry-key count out of bounds");
        }
        if self.ewks.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Some("entry-key ids not ascending");
        }
        if !self.ewks.iter().any(|(id, _)| *id == self.active_ewk) {
            return Some("the active entry key is missing");
        }
        None
    }
}

/// `file` with its MAC recomputed under `vmk` (the vault id is read from the file itself).
pub(super) fn set_mac(file: &mut [u8], vmk: &[u8; 32]) {
    let Some(n) = file.len().checked_sub(TRAILER_LEN) else {
        return;
    };
    let vault_id = file.get(FIXED_LEN..FIXED_LEN + 16).unwrap_or(&[]).to_vec();
    let mac = hmac(&k_mac(vmk, &vault_id), &[&file[..n]]);
    file[n..n + 32].copy_from_slice(&mac);
}

// ---------------------------------------------------------------------------------------
// Namespace entries: the plaintext (sections 3.6 and 11.2) and the stored format-2 entry.

/// A namespace entry's plaintext fields; `floor` only in format 1.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct EntryPlain {
    pub(super) name: Vec<u8>,
    pub(super) active: u32,
    pub(super) keys: Vec<(u32, [u8; 32])>,
    pub(super) floor: Option<u64>,
}

impl EntryPlain {
    /// The plaintext, zero-padded to a multiple of 64 bytes.
    pub(super) fn encode(&self) -> Vec<u8> {
        let mut p = Vec::new();
        p.extend_from_slice(
            &u16::try_from(self.name.len())
                .unwrap_or(u16::MAX)
                .to_le_bytes(),
        );
        p.extend_from_slice(&self.name);
        p.extend_from_slice(&self.active.to_le_bytes());
        p.extend_from_slice(
            &u16::try_from(self.keys.len())
                .unwrap_or(u16::MAX)
                .to_le_bytes(),
        );
        for (id, key) in &self.keys {
            p.extend_from_slice(&id.to_le_bytes());
            p.extend_from_slice(key);
        }
        if let Some(floor) = self.floor {
            p.extend_from_slice(&floor.to_le_bytes());
        }
        p.resize(p.len().div_ceil(64) * 64, 0);
        p
    }

    /// Parses and checks a plaintext as section 3.6 says a reader must (with a `floor`
    /// field when `v1`), and the name's bounds of section 4.7 (1 ..= 1024 bytes of UTF-8).
    pub(super) fn parse(plain: &[u8], v1: bool) -> Result<Self, &'static str> {
        let bad = "namespace entry malformed";
        let mut c = Cursor(plain);
        let name_len = usize::from(c.u16().ok_or(bad)?);
        let name = c.take(name_len).ok_or(bad)?.to_vec();
        if std::str::from_utf8(&name).is_err() {
            return Err("namespace name is not UTF-8");
        }
        let active = c.u32().ok_or(bad)?;
        let count = usize::from(c.u16().ok_or(bad)?);
        if count == 0 || count > 64 {
            return Err("namespace key count out of bounds");
        }
        let mut keys: Vec<(u32, [u8; 32])> = Vec::new();
        for _ in 0..count {
            let id = c.u32().ok_or(bad)?;
            let key = c.arr::<32>().ok_or(bad)?;
            if keys.iter().any(|(k, _)| *k == id) {
                return Err("duplicate namespace key ids");
            }
            keys.push((id, key));
        }
        let floor = if v1 { Some(c.u64().ok_or(bad)?) } else { None };
        if !plain.len().is_multiple_of(64) || c.0.iter().any(|&b| b != 0) {
            return Err("namespace entry padding is malformed");
        }
        if !keys.iter().any(|(id, _)| *id == active) {
            return Err("namespace active key missing");
        }
        if NAME_BOUNDS && (name.is_empty() || name.len() > 1024) {
            return Err("namespace name out of bounds");
        }
        Ok(Self {
            name,
            active,
            keys,
            floor,
        })
    }

    pub(super) fn key(&self, id: u32) -> Option<&[u8; 32]> {
        self.keys
            .iter()
            .find_map(|(k, key)| (*k == id).then_some(key))
    }
}

/// Whether an entry's name must be a valid namespace name (1 ..= 1024 bytes), as section 4.7
/// says a reader checks.
pub(super) const NAME_BOUNDS: bool = true;

/// A stored format-2 entry: `u8 version | le32 ewk_id | incarnation [16] | nonce [24] |
/// ciphertext || tag`, sealed under `K_entry` of `ewk` with the AAD of `id`, `ewk_id` and
/// `incarnation` (the clear fields are written as given).
pub(super) fn seal_entry(
    ewk: &[u8; 32],
    vault_id: &[u8],
    id: &[u8],
    ewk_id: u32,
    incarnation: &[u8; 16],
    plain: &[u8],
) -> Vec<u8> {
    let mut out = vec![2];
    out.extend_from_slice(&ewk_id.to_le_bytes());
    out.extend_from_slice(incarnation);
    let aad = entry_aad(vault_id, id, ewk_id, incarnation);
    out.extend_from_slice(&seal(&k_entry(ewk, vault_id), &aad, plain));
    out
}

/// The clear fields of a stored format-2 entry: version, entry-wrapping key id, incarnation.
pub(super) fn entry_clear(stored: &[u8]) -> Option<(u8, u32, [u8; 16])> {
    let mut c = Cursor(stored);
    Some((c.u8()?, c.u32()?, c.arr::<16>()?))
}

/// Opens a stored format-2 entry filed under `id` with the entry-wrapping keys `ewks`, as
/// section 8.2 steps 2 to 6 say, and returns its incarnation and plaintext (the caller
/// checks the name against the id: step 7).
pub(super) fn open_entry(
    ewks: &[(u32, [u8; 32])],
    vault_id: &[u8],
    id: &[u8],
    stored: &[u8],
) -> Result<([u8; 16], EntryPlain), &'static str> {
    if !(125..=65_536).contains(&stored.len()) {
        return Err("namespace entry length out of bounds");
    }
    let (version, ewk_id, incarnation) = entry_clear(stored).ok_or("namespace entry truncated")?;
    if version != 2 {
        return Err("namespace entry has an unknown version");
    }
    let (_, ewk) = ewks
        .iter()
        .find(|(k, _)| *k == ewk_id)
        .ok_or("the entry is sealed under an unknown entry key")?;
    let plain = open(
        &k_entry(ewk, vault_id),
        &entry_aad(vault_id, id, ewk_id, &incarnation),
        &stored[21..],
    )
    .ok_or("namespace entry failed authentication")?;
    Ok((incarnation, EntryPlain::parse(&plain, false)?))
}
