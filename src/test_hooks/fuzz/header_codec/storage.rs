//! What the vault stores beside the header's fields: the storage layout, the anchor and
//! the entry-key marker, and namespace entries (their plaintext, in tree `e` in format 2
//! and in the header in format 1, and the stored format-2 entry).

// Test harness code: failing loudly on anything unexpected is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;

// ---------------------------------------------------------------------------------------
// Storage layout (section 7.1).

/// The entries tree, the records tree and the manifests tree.
pub(crate) const ENTRIES: &[u8] = b"e";
pub(crate) const RECORDS: &[u8] = b"r";
pub(crate) const MANIFESTS: &[u8] = b"m";
/// The key of the entry-key marker (in `e`) and of the anchor (in `m`).
pub(crate) const ANCHOR_KEY: &[u8] = &[0];
/// The first byte of a pending rotation's mark in `m` (`01 || ns_id`).
pub(crate) const PENDING_ROTATION: u8 = 1;
/// The manifest's record id (in its AAD; format 1 also stores it under this key).
pub(crate) const MANIFEST_ID: &[u8] = &[0];

// ---------------------------------------------------------------------------------------
// The anchor (section 4.8).

/// `K_anchor`.
pub(crate) fn k_anchor(index_key: &[u8; 32], vault_id: &[u8]) -> [u8; 32] {
    hkdf(vault_id, index_key, ANCHOR_LABEL)
}

/// The anchor's MAC over `lp(label) || lp(vault_id) || lp(le64(epoch))`.
pub(crate) fn anchor_mac(index_key: &[u8; 32], vault_id: &[u8], epoch: u64) -> [u8; 32] {
    hmac_lp(
        &k_anchor(index_key, vault_id),
        &[ANCHOR_LABEL, vault_id, &epoch.to_le_bytes()],
    )
}

/// The stored anchor: `u8(2) || le64(epoch) || mac`.
pub(crate) fn seal_anchor(index_key: &[u8; 32], vault_id: &[u8], epoch: u64) -> Vec<u8> {
    let mut v = vec![2];
    v.extend_from_slice(&epoch.to_le_bytes());
    v.extend_from_slice(&anchor_mac(index_key, vault_id, epoch));
    v
}

/// The epoch of an authentic anchor: exactly 41 bytes, version 2, the MAC verifies.
pub(crate) fn open_anchor(index_key: &[u8; 32], vault_id: &[u8], stored: &[u8]) -> Option<u64> {
    if stored.len() != 41 || stored[0] != 2 {
        return None;
    }
    let epoch = u64::from_le_bytes(stored[1..9].try_into().ok()?);
    (stored[9..] == anchor_mac(index_key, vault_id, epoch)).then_some(epoch)
}

/// The entry-key marker's value: `u8(2) || le32(active_ewk)`.
pub(crate) fn marker(active_ewk: u32) -> Vec<u8> {
    let mut v = vec![2];
    v.extend_from_slice(&active_ewk.to_le_bytes());
    v
}

// ---------------------------------------------------------------------------------------
// Namespace entries: the plaintext (sections 3.6 and 11.2) and the stored format-2 entry.

/// A namespace entry's plaintext fields; `floor` only in format 1.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct EntryPlain {
    pub(crate) name: Vec<u8>,
    pub(crate) active: u32,
    pub(crate) keys: Vec<(u32, [u8; 32])>,
    pub(crate) floor: Option<u64>,
}

impl EntryPlain {
    /// The plaintext, zero-padded to a multiple of 64 bytes.
    pub(crate) fn encode(&self) -> Vec<u8> {
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
    pub(crate) fn parse(plain: &[u8], v1: bool) -> Result<Self, &'static str> {
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

    pub(crate) fn key(&self, id: u32) -> Option<&[u8; 32]> {
        self.keys
            .iter()
            .find_map(|(k, key)| (*k == id).then_some(key))
    }
}

/// Whether an entry's name must be a valid namespace name (1 ..= 1024 bytes), as section 4.7
/// says a reader checks.
pub(crate) const NAME_BOUNDS: bool = true;

/// A stored format-2 entry: `u8 version | le32 ewk_id | incarnation [16] | nonce [24] |
/// ciphertext || tag`, sealed under `K_entry` of `ewk` with the AAD of `id`, `ewk_id` and
/// `incarnation` (the clear fields are written as given).
pub(crate) fn seal_entry(
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
pub(crate) fn entry_clear(stored: &[u8]) -> Option<(u8, u32, [u8; 16])> {
    let mut c = Cursor(stored);
    Some((c.u8()?, c.u32()?, c.arr::<16>()?))
}

/// Opens a stored format-2 entry filed under `id` with the entry-wrapping keys `ewks`, as
/// section 8.2 steps 2 to 6 say, and returns its incarnation and plaintext (the caller
/// checks the name against the id: step 7).
pub(crate) fn open_entry(
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
