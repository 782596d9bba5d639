//! Namespace entries (format v2): a namespace's name, incarnation and data keys, sealed as a
//! value of its own in the entries tree under an entry key derived from the header's
//! entry-wrapping key (`docs/format.md`, section 3.6).
//!
//! ```text
//! u8 version = 2 | le32 ewk_id | incarnation [16] | nonce [24] | ciphertext || tag [16]
//! plaintext: name_len u16 | name | active u32 | key_count u16 | (key_id u32 | key [32])*
//!            | zero padding to a multiple of 64
//! ```

use zeroize::Zeroizing;

use crate::bytes::Reader;
use crate::crypto::{Aad, Cipher, Key, KEY_LEN, NONCE_LEN, TAG_LEN};
use crate::error::{Error, Result};
use crate::format::{ENTRY_LABEL, FORMAT_VERSION, INCARNATION_LEN, MAX_NAME_LEN, NS_ID_LEN};

/// Entry plaintexts are zero-padded to a multiple of this.
const PAD: usize = 64;
/// Most keys one namespace holds at once (the active one and those being rotated away).
pub(crate) const MAX_NS_KEYS: usize = 64;
/// Bytes before the nonce: version, entry-key id, incarnation.
const CLEAR_LEN: usize = 1 + 4 + INCARNATION_LEN;
/// Largest stored entry read.
const MAX_ENTRY_LEN: usize = 64 * 1024;

/// A namespace entry's contents.
pub(crate) struct Entry {
    pub(crate) name: String,
    /// Random, new at every creation of the name: part of the storage keys and the AAD of
    /// the namespace's records, so nothing of an earlier incarnation opens under this one.
    pub(crate) incarnation: [u8; INCARNATION_LEN],
    /// The key id new records are sealed under.
    pub(crate) active: u32,
    pub(crate) keys: Vec<(u32, Key)>,
}

/// The entry key under entry-wrapping key `ewk`: `HKDF(salt = vault_id, ikm = ewk, info =
/// "tokenvault/v2/entry")`.
pub(crate) fn entry_cipher(ewk: &Key, vault_id: &[u8]) -> Result<Cipher> {
    Ok(ewk.derive(vault_id, ENTRY_LABEL)?.cipher())
}

/// What a stored entry says in the clear: the entry-wrapping key id it is sealed under and
/// the incarnation.
pub(crate) fn entry_clear(stored: &[u8]) -> Result<(u32, [u8; INCARNATION_LEN]), &'static str> {
    let mut r = Reader::new(stored);
    let bad = |_| "namespace entry truncated";
    let version = r.u8().map_err(bad)?;
    if version != FORMAT_VERSION {
        return Err("namespace entry has an unknown version");
    }
    let ewk_id = r.u32().map_err(bad)?;
    let incarnation = r.array::<INCARNATION_LEN>().map_err(bad)?;
    Ok((ewk_id, incarnation))
}

/// Seals `entry` as namespace `ns_id`'s stored entry under entry key `cipher` (id `ewk_id`).
pub(crate) fn seal_entry(
    cipher: &Cipher,
    ewk_id: u32,
    vault_id: &[u8],
    ns_id: &[u8; NS_ID_LEN],
    entry: &Entry,
) -> Result<Vec<u8>> {
    let plain_len = key_table_len(&entry.name, &entry.keys).div_ceil(PAD) * PAD;
    let start = CLEAR_LEN + NONCE_LEN;
    let mut buf = Zeroizing::new(Vec::with_capacity(start + plain_len + TAG_LEN));
    buf.push(FORMAT_VERSION);
    buf.extend_from_slice(&ewk_id.to_le_bytes());
    buf.extend_from_slice(&entry.incarnation);
    buf.resize(start, 0);
    push_key_table(&mut buf, &entry.name, entry.active, &entry.keys)?;
    buf.resize(start + plain_len, 0);
    let aad = entry_aad(vault_id, ns_id, ewk_id, &entry.incarnation);
    let nonce = cipher.seal_in_place(&aad, &mut buf, start)?;
    buf[CLEAR_LEN..start].copy_from_slice(&nonce);
    Ok(std::mem::take(&mut *buf))
}

/// Opens a stored entry sealed by [`seal_entry`] under entry key `cipher`. The caller picks
/// the cipher by the id [`entry_clear`] reads, and checks that the name belongs to `ns_id`.
pub(crate) fn open_entry(
    cipher: &Cipher,
    vault_id: &[u8],
    ns_id: &[u8; NS_ID_LEN],
    stored: &[u8],
) -> Result<Entry, &'static str> {
    if stored.len() > MAX_ENTRY_LEN {
        return Err("namespace entry too long");
    }
    let (ewk_id, incarnation) = entry_clear(stored)?;
    if stored.len() < CLEAR_LEN + NONCE_LEN + TAG_LEN {
        return Err("namespace entry truncated");
    }
    let (nonce, sealed) = stored[CLEAR_LEN..].split_at(NONCE_LEN);
    let plain = cipher
        .open(
            nonce,
            &entry_aad(vault_id, ns_id, ewk_id, &incarnation),
            sealed,
        )
        .ok_or("namespace entry failed authentication")?;
    let mut r = Reader::new(&plain);
    let (name, active, keys) = read_key_table(&mut r)?;
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err("namespace name length out of bounds");
    }
    if !plain.len().is_multiple_of(PAD) || r.rest().iter().any(|&b| b != 0) {
        return Err("namespace entry padding is malformed");
    }
    Ok(Entry {
        name,
        incarnation,
        active,
        keys,
    })
}

/// A key table: the namespace's name, its active key id, and its keys by id.
pub(crate) type KeyTable = (String, u32, Vec<(u32, Key)>);

/// The length of a key table (before padding): `2 + name + 4 + 2 + 36 × keys`.
pub(crate) fn key_table_len(name: &str, keys: &[(u32, Key)]) -> usize {
    2 + name.len() + 4 + 2 + keys.len() * (4 + KEY_LEN)
}

/// Writes a namespace's key table, the part of an entry's plaintext both formats share:
/// `name_len u16 | name | active u32 | key_count u16 | (key_id u32 | key [32])*`.
pub(crate) fn push_key_table(
    buf: &mut Vec<u8>,
    name: &str,
    active: u32,
    keys: &[(u32, Key)],
) -> Result<()> {
    let name_len = u16::try_from(name.len()).map_err(|_| Error::TooLarge {
        what: "the namespace name",
        limit: usize::from(u16::MAX),
    })?;
    if keys.is_empty() || keys.len() > MAX_NS_KEYS {
        return Err(Error::backend(
            "internal: namespace key count out of bounds",
        ));
    }
    let key_count = u16::try_from(keys.len())
        .map_err(|_| Error::backend("internal: too many namespace keys"))?;
    buf.extend_from_slice(&name_len.to_le_bytes());
    buf.extend_from_slice(name.as_bytes());
    buf.extend_from_slice(&active.to_le_bytes());
    buf.extend_from_slice(&key_count.to_le_bytes());
    for (kid, key) in keys {
        buf.extend_from_slice(&kid.to_le_bytes());
        buf.extend_from_slice(key.bytes());
    }
    Ok(())
}

/// Reads what [`push_key_table`] wrote, checking the key count's bounds, that key ids are
/// unique and that the active one is among them.
pub(crate) fn read_key_table(r: &mut Reader<'_>) -> Result<KeyTable, &'static str> {
    let bad = |_| "namespace entry malformed";
    let name_len = usize::from(r.u16().map_err(bad)?);
    let name = std::str::from_utf8(r.take(name_len).map_err(bad)?)
        .map_err(|_| "namespace name is not UTF-8")?
        .to_owned();
    let active = r.u32().map_err(bad)?;
    let key_count = usize::from(r.u16().map_err(bad)?);
    if key_count == 0 || key_count > MAX_NS_KEYS {
        return Err("namespace key count out of bounds");
    }
    let mut keys: Vec<(u32, Key)> = Vec::with_capacity(key_count);
    for _ in 0..key_count {
        let kid = r.u32().map_err(bad)?;
        if keys.iter().any(|(k, _)| *k == kid) {
            return Err("duplicate namespace key ids");
        }
        let key =
            Key::from_slice(r.take(KEY_LEN).map_err(bad)?).ok_or("namespace key malformed")?;
        keys.push((kid, key));
    }
    if !keys.iter().any(|(kid, _)| *kid == active) {
        return Err("namespace active key missing");
    }
    Ok((name, active, keys))
}

fn entry_aad(
    vault_id: &[u8],
    ns_id: &[u8],
    ewk_id: u32,
    incarnation: &[u8; INCARNATION_LEN],
) -> Vec<u8> {
    Aad::new(ENTRY_LABEL)
        .bytes(vault_id)
        .bytes(ns_id)
        .u32(ewk_id)
        .bytes(incarnation)
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (Cipher, Entry) {
        let ewk = Key::random().unwrap();
        let entry = Entry {
            name: "tenant".into(),
            incarnation: [9; INCARNATION_LEN],
            active: 2,
            keys: vec![(1, Key::random().unwrap()), (2, Key::random().unwrap())],
        };
        (entry_cipher(&ewk, &[1; 16]).unwrap(), entry)
    }

    #[test]
    fn round_trip_and_binding() {
        let (cipher, entry) = sample();
        let stored = seal_entry(&cipher, 7, &[1; 16], &[5; 32], &entry).unwrap();
        assert_eq!(entry_clear(&stored).unwrap(), (7, [9; INCARNATION_LEN]));
        let back = open_entry(&cipher, &[1; 16], &[5; 32], &stored).unwrap();
        assert_eq!(back.name, "tenant");
        assert_eq!(back.active, 2);
        assert_eq!(back.keys.len(), 2);
        assert!(open_entry(&cipher, &[1; 16], &[6; 32], &stored).is_err());
        assert!(open_entry(&cipher, &[2; 16], &[5; 32], &stored).is_err());
    }

    #[test]
    fn every_flip_and_truncation_is_refused() {
        let (cipher, entry) = sample();
        let stored = seal_entry(&cipher, 7, &[1; 16], &[5; 32], &entry).unwrap();
        for len in 0..stored.len() {
            assert!(open_entry(&cipher, &[1; 16], &[5; 32], &stored[..len]).is_err());
        }
        for i in 0..stored.len() * 8 {
            let mut bad = stored.clone();
            bad[i / 8] ^= 1 << (i % 8);
            assert!(
                open_entry(&cipher, &[1; 16], &[5; 32], &bad).is_err(),
                "flip of bit {i} went unnoticed"
            );
        }
    }
}
