//! An independent codec of the format's bytes, written from the format specification
//! (docs/format.md; for format 2, the v2 byte layout it was built from) and sharing no code
//! with the library: the header file of format 2 and of format 1, the keyed primitives
//! (HKDF, HMAC, XChaCha20-Poly1305 with the nonce in front), every associated-data layout,
//! namespace entries (format 2 in tree `e`, format 1 in the header), records and the anchor.
//! The `open_vault` target uses it to read a real vault's keys, to re-seal what it edits, and
//! to recompute the header's MAC and checksum.
//!
//! This module holds the header file (its framing, and its fields parsed and encoded);
//! `crypto` the labels, the keyed primitives, the key hierarchy and every associated-data
//! layout, records included; `storage` the storage layout, the anchor and the entry-key
//! marker, and namespace entries.

// Test harness code: failing loudly on anything unexpected is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;

mod crypto;
mod storage;

// Their items are `pub(crate)` so that these re-exports reach the fuzz module (the
// module itself is private to it).
pub(super) use self::crypto::*;
pub(super) use self::storage::*;

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
