//! An independent encoder of the header format (docs/format.md sections 3 and 4), so that
//! the `open_vault` target can re-seal keyslots, the index key and namespace entries, and
//! recompute the MAC and the checksum of a real vault's header.

// Test harness code: failing loudly on anything unexpected is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;

pub(super) const MAGIC: [u8; 8] = [0x89, b'T', b'V', b'A', b'U', b'L', b'T', b'\n'];
pub(super) const FIXED_LEN: usize = 14;
pub(super) const TRAILER_LEN: usize = 64;

/// `data` with the magic, version 1, `body_len` and checksum made consistent with its length
/// (`None` if it is shorter than an empty header).
pub fn fix_framing(data: &[u8]) -> Option<Vec<u8>> {
    if data.len() < FIXED_LEN + TRAILER_LEN {
        return None;
    }
    let mut out = data.to_vec();
    out[..8].copy_from_slice(&MAGIC);
    out[8..10].copy_from_slice(&1u16.to_le_bytes());
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
// Format primitives (docs/format.md sections 1, 3, 4), written from the document.

pub(super) const RAW_KEY_LABEL: &[u8] = b"tokenvault/v1/keyslot/raw-key";
pub(super) const SLOT_AAD_LABEL: &[u8] = b"tokenvault/v1/keyslot";
pub(super) const INDEX_KEY_AAD_LABEL: &[u8] = b"tokenvault/v1/index-key";
pub(super) const NAMESPACE_AAD_LABEL: &[u8] = b"tokenvault/v1/namespace";
pub(super) const NAMESPACE_ID_LABEL: &[u8] = b"tokenvault/v1/namespace-id";
pub(super) const HEADER_MAC_LABEL: &[u8] = b"tokenvault/v1/header-mac";
pub(super) const WRAP_LABEL: &[u8] = b"tokenvault/v1/wrap";

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

pub(super) fn ns_id(index_key: &[u8; 32], name: &[u8]) -> [u8; 32] {
    let mut m = Vec::new();
    lp(&mut m, NAMESPACE_ID_LABEL);
    lp(&mut m, name);
    hmac(index_key, &[&m])
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

pub(super) fn ns_aad(vault_id: &[u8], id: &[u8]) -> Vec<u8> {
    let mut a = Vec::new();
    lp(&mut a, NAMESPACE_AAD_LABEL);
    lp(&mut a, vault_id);
    lp(&mut a, id);
    a
}

pub(super) fn raw_kek(raw_key: &[u8; 32], salt: &[u8]) -> [u8; 32] {
    hkdf(salt, raw_key, RAW_KEY_LABEL)
}

/// A header as its fields (section 3), for a well-formed file only.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct HeaderFields {
    pub(super) vault_id: [u8; 16],
    pub(super) seqid: u64,
    pub(super) next_slot_id: u32,
    pub(super) slots: Vec<SlotFields>,
    pub(super) wrapped_index_key: Vec<u8>,
    pub(super) namespaces: Vec<([u8; 32], Vec<u8>)>,
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
    pub(super) fn parse(file: &[u8]) -> Option<Self> {
        let n = file.len().checked_sub(TRAILER_LEN)?;
        let mut c = Cursor(file.get(FIXED_LEN..n)?);
        let vault_id = c.arr::<16>()?;
        let seqid = c.u64()?;
        let next_slot_id = c.u32()?;
        let slot_count = c.u16()?;
        let mut slots = Vec::new();
        for _ in 0..slot_count {
            let id = c.u32()?;
            let kind = c.take(1)?[0];
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
        let ns_count = c.u32()?;
        let mut namespaces = Vec::new();
        for _ in 0..ns_count {
            let id = c.arr::<32>()?;
            let blob_len = usize::try_from(c.u32()?).ok()?;
            namespaces.push((id, c.take(blob_len)?.to_vec()));
        }
        if !c.0.is_empty() {
            return None;
        }
        Some(Self {
            vault_id,
            seqid,
            next_slot_id,
            slots,
            wrapped_index_key,
            namespaces,
            mac: file[n..n + 32].try_into().ok()?,
        })
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
        let ns_count = u32::try_from(self.namespaces.len()).unwrap_or(u32::MAX);
        body.extend_from_slice(&ns_count.to_le_bytes());
        for (id, blob) in &self.namespaces {
            body.extend_from_slice(id);
            let blob_len = u32::try_from(blob.len()).unwrap_or(u32::MAX);
            body.extend_from_slice(&blob_len.to_le_bytes());
            body.extend_from_slice(blob);
        }
        let mut file = MAGIC.to_vec();
        file.extend_from_slice(&1u16.to_le_bytes());
        let body_len = u32::try_from(body.len()).unwrap_or(u32::MAX);
        file.extend_from_slice(&body_len.to_le_bytes());
        file.extend_from_slice(&body);
        file.extend_from_slice(&self.mac);
        file.extend_from_slice(&[0u8; 32]);
        set_checksum(&mut file);
        file
    }
}

/// `file` with its MAC recomputed under `vmk` (the vault id is read from the file itself).
pub(super) fn set_mac(file: &mut [u8], vmk: &[u8; 32]) {
    let Some(n) = file.len().checked_sub(TRAILER_LEN) else {
        return;
    };
    let vault_id = file.get(FIXED_LEN..FIXED_LEN + 16).unwrap_or(&[]).to_vec();
    let k_mac = hkdf(&vault_id, vmk, HEADER_MAC_LABEL);
    let mac = hmac(&k_mac, &[&file[..n]]);
    file[n..n + 32].copy_from_slice(&mac);
}
