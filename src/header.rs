//! The header file: keyslots and wrapped keys, checksummed and MAC'd. Byte layout in
//! `docs/format.md`; all integers little-endian.
//!
//! ```text
//! magic [8] | format_version u16 | body_len u32 | body | mac [32] | checksum [32]
//! ```
//!
//! `checksum = SHA-256(everything before it)` tells damage from a wrong key without any key;
//! `mac = HMAC-SHA-256(K_mac, magic .. body)` with
//! `K_mac = HKDF-SHA-256(salt = vault id, ikm = VMK, info = "tokenvault/v1/header-mac")` detects
//! tampering once the vault master key is unwrapped.

#[cfg(any(test, feature = "test-hooks"))]
use zeroize::Zeroizing;

use crate::bytes::{Reader, Truncated};
use crate::crypto::{sha256, Aad, Cipher, Key, Prf, NONCE_LEN, TAG_LEN, WRAPPED_KEY_LEN};
use crate::entry::read_key_table;
#[cfg(any(test, feature = "test-hooks"))]
use crate::entry::{key_table_len, push_key_table};
use crate::error::{Error, Result};
use crate::format::{
    ENTRY_KEY_AAD_LABEL, FORMAT_V1, FORMAT_VERSION, HEADER_MAC_LABEL, INDEX_KEY_AAD_LABEL, MAGIC,
    MAX_HEADER_LEN, MAX_KEYSLOTS, NAMESPACE_AAD_LABEL, NS_ID_LEN, SLOT_AAD_LABEL, VAULT_ID_LEN,
    WRAP_LABEL,
};
use crate::keys::{KdfParams, SlotKind};

/// Largest slot parameter block.
const MAX_PARAMS_LEN: usize = 1024;
/// Largest sealed namespace entry.
const MAX_NS_BLOB_LEN: usize = 64 * 1024;
/// Namespace entry plaintexts are zero-padded to a multiple of this.
const NS_PAD: usize = 64;

const FIXED_LEN: usize = 8 + 2 + 4;
const TRAILER_LEN: usize = 32 + 32;

const KIND_PASSPHRASE: u8 = 1;
const KIND_RAW_KEY: u8 = 2;
const KIND_RECOVERY_KEY: u8 = 3;
const KIND_KEYRING: u8 = 4;
const ARGON2_VERSION: u32 = 0x13;
/// Salt bytes for new slots.
pub(crate) const SLOT_SALT_LEN: usize = 32;

/// Most entry-wrapping keys a header holds: the active one, and the one a shred is
/// re-sealing entries away from.
pub(crate) const MAX_EWKS: usize = 2;

/// The parsed header, everything except the VMK-dependent checks.
#[derive(Clone)]
pub(crate) struct Header {
    /// The format version: [`FORMAT_VERSION`], or [`FORMAT_V1`] (read only to upgrade it).
    pub(crate) version: u8,
    pub(crate) vault_id: [u8; VAULT_ID_LEN],
    pub(crate) seqid: u64,
    pub(crate) next_slot_id: u32,
    pub(crate) slots: Vec<Slot>,
    pub(crate) wrapped_index_key: [u8; WRAPPED_KEY_LEN],
    /// Format v1 only: every namespace's entry.
    pub(crate) namespaces: Vec<NsEntry>,
    /// Format v2: the checkpoint high-water mark; the anchor in storage is never below it.
    pub(crate) epoch: u64,
    /// Format v2: the id of the entry-wrapping key new entries are sealed under.
    pub(crate) active_ewk: u32,
    /// Format v2: the wrapped entry-wrapping keys, ids ascending.
    pub(crate) ewks: Vec<(u32, [u8; WRAPPED_KEY_LEN])>,
}

/// One keyslot as stored.
#[derive(Clone)]
pub(crate) struct Slot {
    pub(crate) id: u32,
    pub(crate) kind_code: u8,
    pub(crate) params: Vec<u8>,
    pub(crate) wrapped_vmk: [u8; WRAPPED_KEY_LEN],
}

/// A keyslot's parsed parameters.
pub(crate) enum SlotParams<'a> {
    Passphrase {
        kdf: KdfParams,
        salt: &'a [u8],
    },
    RawKey {
        salt: &'a [u8],
    },
    RecoveryKey {
        salt: &'a [u8],
    },
    /// An OS keyring slot: the entry that holds its 32-byte slot key, by service and account.
    #[cfg_attr(not(feature = "keyring"), allow(dead_code))]
    Keyring {
        salt: &'a [u8],
        service: &'a str,
        account: &'a str,
    },
    Unknown,
}

/// One namespace as stored: its id and its sealed entry.
#[derive(Clone)]
pub(crate) struct NsEntry {
    pub(crate) id: [u8; NS_ID_LEN],
    pub(crate) blob: Vec<u8>,
}

/// A namespace entry's plaintext: its name, its data keys, and its generation floor.
pub(crate) struct NsKeys {
    pub(crate) name: String,
    pub(crate) active: u32,
    pub(crate) keys: Vec<(u32, Key)>,
    /// The namespace's write generation when the header was last checkpointed: its
    /// manifest can never be behind it, unless storage was rolled back.
    pub(crate) floor: u64,
}

impl Slot {
    pub(crate) fn kind(&self) -> SlotKind {
        match self.kind_code {
            KIND_PASSPHRASE => SlotKind::Passphrase,
            KIND_RAW_KEY => SlotKind::RawKey,
            KIND_RECOVERY_KEY => SlotKind::RecoveryKey,
            KIND_KEYRING => SlotKind::Keyring,
            other => SlotKind::Unknown(other),
        }
    }

    /// The slot's parameters; `Err` if they are malformed or out of bounds (checked before
    /// any derivation runs).
    pub(crate) fn parse_params(&self) -> Result<SlotParams<'_>> {
        let mut r = Reader::new(&self.params);
        let parsed = match self.kind_code {
            KIND_PASSPHRASE => {
                let version = r.u32().map_err(truncated)?;
                let (m, t, p) = (
                    r.u32().map_err(truncated)?,
                    r.u32().map_err(truncated)?,
                    r.u32().map_err(truncated)?,
                );
                let salt = r.short_bytes().map_err(truncated)?;
                if version != ARGON2_VERSION {
                    return Err(Error::header("unknown Argon2 version in a keyslot"));
                }
                let kdf = KdfParams::from_disk(m, t, p)
                    .ok_or_else(|| Error::header("keyslot Argon2 parameters out of bounds"))?;
                check_salt(salt)?;
                SlotParams::Passphrase { kdf, salt }
            }
            KIND_RAW_KEY => {
                let salt = r.short_bytes().map_err(truncated)?;
                check_salt(salt)?;
                SlotParams::RawKey { salt }
            }
            KIND_RECOVERY_KEY => {
                let salt = r.short_bytes().map_err(truncated)?;
                check_salt(salt)?;
                SlotParams::RecoveryKey { salt }
            }
            KIND_KEYRING => {
                let salt = r.short_bytes().map_err(truncated)?;
                check_salt(salt)?;
                let service = entry_name(r.short_bytes().map_err(truncated)?)?;
                let account = entry_name(r.short_bytes().map_err(truncated)?)?;
                SlotParams::Keyring {
                    salt,
                    service,
                    account,
                }
            }
            _ => return Ok(SlotParams::Unknown),
        };
        finish(&r)?;
        Ok(parsed)
    }

    /// Associated data binding a wrapped VMK to its vault, slot id, kind and parameters.
    pub(crate) fn aad(vault_id: &[u8], id: u32, kind_code: u8, params: &[u8]) -> Vec<u8> {
        Aad::new(SLOT_AAD_LABEL)
            .bytes(vault_id)
            .u32(id)
            .u8(kind_code)
            .bytes(params)
            .finish()
    }

    pub(crate) fn passphrase_params(kdf: &KdfParams, salt: &[u8]) -> (u8, Vec<u8>) {
        let mut v = Vec::with_capacity(17 + salt.len());
        v.extend_from_slice(&ARGON2_VERSION.to_le_bytes());
        v.extend_from_slice(&kdf.m_kib().to_le_bytes());
        v.extend_from_slice(&kdf.t().to_le_bytes());
        v.extend_from_slice(&kdf.p().to_le_bytes());
        push_short(&mut v, salt);
        (KIND_PASSPHRASE, v)
    }

    pub(crate) fn raw_key_params(salt: &[u8]) -> (u8, Vec<u8>) {
        let mut v = Vec::with_capacity(1 + salt.len());
        push_short(&mut v, salt);
        (KIND_RAW_KEY, v)
    }

    pub(crate) fn recovery_key_params(salt: &[u8]) -> (u8, Vec<u8>) {
        let (_, v) = Self::raw_key_params(salt);
        (KIND_RECOVERY_KEY, v)
    }

    /// A keyring slot's parameters: the salt, then the entry's service and account names
    /// (each 1 to 255 bytes of printable UTF-8; checked by the caller).
    #[cfg_attr(not(feature = "keyring"), allow(dead_code))]
    pub(crate) fn keyring_params(salt: &[u8], service: &str, account: &str) -> (u8, Vec<u8>) {
        let mut v = Vec::with_capacity(3 + salt.len() + service.len() + account.len());
        push_short(&mut v, salt);
        push_short(&mut v, service.as_bytes());
        push_short(&mut v, account.as_bytes());
        (KIND_KEYRING, v)
    }
}

/// A keyring entry's service or account name from a slot: 1 to 255 bytes of UTF-8 without
/// control characters.
pub(crate) fn entry_name(bytes: &[u8]) -> Result<&str> {
    std::str::from_utf8(bytes)
        .ok()
        .filter(|name| !name.is_empty() && !name.chars().any(char::is_control))
        .ok_or_else(|| Error::header("a keyring keyslot names its entry badly"))
}

impl Slot {
    /// The keyring entry a keyring slot names, as (service, account).
    pub(crate) fn keyring_entry(&self) -> Option<(&str, &str)> {
        match self.parse_params() {
            Ok(SlotParams::Keyring {
                service, account, ..
            }) => Some((service, account)),
            _ => None,
        }
    }
}

fn check_salt(salt: &[u8]) -> Result<()> {
    if (KdfParams::MIN_SALT_LEN..=KdfParams::MAX_SALT_LEN).contains(&salt.len()) {
        Ok(())
    } else {
        Err(Error::header("keyslot salt length out of bounds"))
    }
}

fn push_short(v: &mut Vec<u8>, bytes: &[u8]) {
    // Salts are at most 64 bytes (checked by the callers), so the length fits in a byte.
    v.push(u8::try_from(bytes.len()).unwrap_or(u8::MAX));
    v.extend_from_slice(bytes);
}

/// The keys derived from the vault master key.
pub(crate) struct VmkKeys {
    pub(crate) mac: Prf,
    pub(crate) wrap: Cipher,
}

impl VmkKeys {
    pub(crate) fn new(vmk: &Key, vault_id: &[u8]) -> Result<Self> {
        Ok(Self {
            mac: Prf::new(&vmk.derive(vault_id, HEADER_MAC_LABEL)?)?,
            wrap: vmk.derive(vault_id, WRAP_LABEL)?.cipher(),
        })
    }
}

impl Header {
    /// Parses a header file. Checks the length, magic, version and checksum, and bounds every
    /// count and length; the MAC is checked later with [`Header::verify_mac`].
    pub(crate) fn parse(file: &[u8]) -> Result<Self> {
        if file.len() > MAX_HEADER_LEN {
            return Err(Error::header("header file too large"));
        }
        if file.len() < FIXED_LEN + TRAILER_LEN {
            return Err(Error::header("header file truncated"));
        }
        if file[..8] != MAGIC {
            return Err(Error::header("not a tokenvault header (bad magic)"));
        }
        let version = u16::from_le_bytes([file[8], file[9]]);
        let version = match u8::try_from(version) {
            Ok(v @ (FORMAT_V1 | FORMAT_VERSION)) => v,
            _ if version > u16::from(FORMAT_VERSION) => {
                return Err(Error::UnsupportedVersion {
                    found: version,
                    supported: u16::from(FORMAT_VERSION),
                })
            }
            _ => return Err(Error::header("unknown format version")),
        };
        let body_len = u32::from_le_bytes([file[10], file[11], file[12], file[13]]) as usize;
        if body_len.checked_add(FIXED_LEN + TRAILER_LEN) != Some(file.len()) {
            return Err(Error::header("header length does not match its contents"));
        }
        let checked = &file[..file.len() - 32];
        if sha256(checked) != file[file.len() - 32..] {
            return Err(Error::header("checksum mismatch"));
        }
        let mut r = Reader::new(&file[FIXED_LEN..FIXED_LEN + body_len]);
        let vault_id = r.array::<VAULT_ID_LEN>().map_err(truncated)?;
        let seqid = r.u64().map_err(truncated)?;
        let next_slot_id = r.u32().map_err(truncated)?;
        let slot_count = usize::from(r.u16().map_err(truncated)?);
        if slot_count == 0 || slot_count > MAX_KEYSLOTS {
            return Err(Error::header("keyslot count out of bounds"));
        }
        let mut slots = Vec::with_capacity(slot_count);
        for _ in 0..slot_count {
            let id = r.u32().map_err(truncated)?;
            let kind_code = r.u8().map_err(truncated)?;
            let params_len = usize::from(r.u16().map_err(truncated)?);
            if params_len > MAX_PARAMS_LEN {
                return Err(Error::header("keyslot parameters too long"));
            }
            let params = r.take(params_len).map_err(truncated)?.to_vec();
            let wrapped_vmk = r.array::<WRAPPED_KEY_LEN>().map_err(truncated)?;
            if id >= next_slot_id || slots.iter().any(|s: &Slot| s.id == id) {
                return Err(Error::header("keyslot ids are inconsistent"));
            }
            slots.push(Slot {
                id,
                kind_code,
                params,
                wrapped_vmk,
            });
        }
        let wrapped_index_key = r.array::<WRAPPED_KEY_LEN>().map_err(truncated)?;
        let mut header = Self {
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
        };
        if version == FORMAT_V1 {
            header.namespaces = parse_v1_namespaces(&mut r)?;
        } else {
            header.epoch = r.u64().map_err(truncated)?;
            header.active_ewk = r.u32().map_err(truncated)?;
            let count = usize::from(r.u8().map_err(truncated)?);
            if count == 0 || count > MAX_EWKS {
                return Err(Error::header("entry-key count out of bounds"));
            }
            for _ in 0..count {
                let id = r.u32().map_err(truncated)?;
                let wrapped = r.array::<WRAPPED_KEY_LEN>().map_err(truncated)?;
                if header.ewks.last().is_some_and(|(last, _)| *last >= id) {
                    return Err(Error::header("entry-key ids are not ascending"));
                }
                header.ewks.push((id, wrapped));
            }
            if !header.ewks.iter().any(|(id, _)| *id == header.active_ewk) {
                return Err(Error::header("the active entry key is missing"));
            }
        }
        finish(&r)?;
        Ok(header)
    }

    /// Associated data binding a wrapped entry-wrapping key to its vault and id.
    pub(crate) fn ewk_aad(&self, id: u32) -> Vec<u8> {
        Aad::new(ENTRY_KEY_AAD_LABEL)
            .bytes(&self.vault_id)
            .u32(id)
            .finish()
    }
}

/// The namespace table of a format-v1 header body, to its end.
fn parse_v1_namespaces(r: &mut Reader<'_>) -> Result<Vec<NsEntry>> {
    let ns_count = r.u32().map_err(truncated)? as usize;
    // Each entry takes at least its id, a length and a sealed minimum; bound the count
    // by what the remaining bytes can hold before allocating.
    let min_entry = NS_ID_LEN + 4 + NONCE_LEN + NS_PAD + TAG_LEN;
    if ns_count > r.remaining() / min_entry {
        return Err(Error::header("namespace count exceeds the header's size"));
    }
    let mut namespaces = Vec::with_capacity(ns_count);
    for _ in 0..ns_count {
        let id = r.array::<NS_ID_LEN>().map_err(truncated)?;
        let blob_len = r.u32().map_err(truncated)? as usize;
        if !(NONCE_LEN + NS_PAD + TAG_LEN..=MAX_NS_BLOB_LEN).contains(&blob_len) {
            return Err(Error::header("namespace entry length out of bounds"));
        }
        let blob = r.take(blob_len).map_err(truncated)?.to_vec();
        namespaces.push(NsEntry { id, blob });
    }
    let mut ids: Vec<&[u8; NS_ID_LEN]> = namespaces.iter().map(|n| &n.id).collect();
    ids.sort_unstable();
    if ids.windows(2).any(|w| w[0] == w[1]) {
        return Err(Error::header("duplicate namespace entries"));
    }
    Ok(namespaces)
}

impl Header {
    /// Checks the header MAC over `file` (constant time).
    pub(crate) fn verify_mac(file: &[u8], keys: &VmkKeys) -> Result<()> {
        let Some(macd_len) = file.len().checked_sub(TRAILER_LEN) else {
            return Err(Error::header("header file truncated"));
        };
        if keys
            .mac
            .verify_raw(&file[..macd_len], &file[macd_len..macd_len + 32])
        {
            Ok(())
        } else {
            Err(Error::header(
                "header authentication failed: it was modified by something other than tokenvault",
            ))
        }
    }

    /// Encodes the header file, MAC and checksum included.
    pub(crate) fn encode(&self, keys: &VmkKeys) -> Result<Vec<u8>> {
        let mut body = Vec::with_capacity(
            128 + self.slots.len() * 128
                + self
                    .namespaces
                    .iter()
                    .map(|n| NS_ID_LEN + 4 + n.blob.len())
                    .sum::<usize>(),
        );
        body.extend_from_slice(&self.vault_id);
        body.extend_from_slice(&self.seqid.to_le_bytes());
        body.extend_from_slice(&self.next_slot_id.to_le_bytes());
        let slot_count = u16::try_from(self.slots.len()).map_err(|_| Error::KeyslotLimit)?;
        body.extend_from_slice(&slot_count.to_le_bytes());
        for slot in &self.slots {
            body.extend_from_slice(&slot.id.to_le_bytes());
            body.push(slot.kind_code);
            let params_len = u16::try_from(slot.params.len())
                .map_err(|_| Error::backend("internal: keyslot parameters too long"))?;
            body.extend_from_slice(&params_len.to_le_bytes());
            body.extend_from_slice(&slot.params);
            body.extend_from_slice(&slot.wrapped_vmk);
        }
        body.extend_from_slice(&self.wrapped_index_key);
        if self.version == FORMAT_V1 {
            self.encode_v1_namespaces(&mut body)?;
        } else {
            body.extend_from_slice(&self.epoch.to_le_bytes());
            body.extend_from_slice(&self.active_ewk.to_le_bytes());
            let count = u8::try_from(self.ewks.len())
                .ok()
                .filter(|n| (1..=MAX_EWKS).contains(&usize::from(*n)))
                .ok_or_else(|| Error::backend("internal: entry-key count out of bounds"))?;
            body.push(count);
            for (id, wrapped) in &self.ewks {
                body.extend_from_slice(&id.to_le_bytes());
                body.extend_from_slice(wrapped);
            }
        }
        if FIXED_LEN + body.len() + TRAILER_LEN > MAX_HEADER_LEN {
            return Err(Error::TooLarge {
                what: "the header",
                limit: MAX_HEADER_LEN,
            });
        }
        let mut file = Vec::with_capacity(FIXED_LEN + body.len() + TRAILER_LEN);
        file.extend_from_slice(&MAGIC);
        file.extend_from_slice(&u16::from(self.version).to_le_bytes());
        file.extend_from_slice(&crate::crypto::len32(body.len()));
        file.extend_from_slice(&body);
        let mac = keys.mac.mac_raw(&file);
        file.extend_from_slice(&mac);
        let checksum = sha256(&file);
        file.extend_from_slice(&checksum);
        Ok(file)
    }

    fn encode_v1_namespaces(&self, body: &mut Vec<u8>) -> Result<()> {
        let ns_count = u32::try_from(self.namespaces.len()).map_err(|_| Error::TooLarge {
            what: "the namespace table",
            limit: MAX_HEADER_LEN,
        })?;
        body.extend_from_slice(&ns_count.to_le_bytes());
        for ns in &self.namespaces {
            body.extend_from_slice(&ns.id);
            body.extend_from_slice(&crate::crypto::len32(ns.blob.len()));
            body.extend_from_slice(&ns.blob);
        }
        Ok(())
    }

    pub(crate) fn index_key_aad(&self) -> Vec<u8> {
        Aad::new(INDEX_KEY_AAD_LABEL).bytes(&self.vault_id).finish()
    }
}

/// Seals a namespace entry: `name_len u16 | name | active u32 | key_count u16 |
/// (key_id u32 | key [32])* | floor u64 | zero padding to a multiple of 64`.
#[cfg(any(test, feature = "test-hooks"))]
pub(crate) fn seal_ns(
    wrap: &Cipher,
    vault_id: &[u8],
    id: &[u8; NS_ID_LEN],
    keys: &NsKeys,
) -> Result<Vec<u8>> {
    let plain_len = (key_table_len(&keys.name, &keys.keys) + 8).div_ceil(NS_PAD) * NS_PAD;
    let mut buf = Zeroizing::new(Vec::with_capacity(NONCE_LEN + plain_len + TAG_LEN));
    buf.resize(NONCE_LEN, 0);
    push_key_table(&mut buf, &keys.name, keys.active, &keys.keys)?;
    buf.extend_from_slice(&keys.floor.to_le_bytes());
    buf.resize(NONCE_LEN + plain_len, 0);
    let nonce = wrap.seal_in_place(&ns_aad(vault_id, id), &mut buf, NONCE_LEN)?;
    buf[..NONCE_LEN].copy_from_slice(&nonce);
    Ok(std::mem::take(&mut *buf))
}

/// Opens a namespace entry sealed by [`seal_ns`].
pub(crate) fn open_ns(
    wrap: &Cipher,
    vault_id: &[u8],
    entry: &NsEntry,
) -> Result<NsKeys, &'static str> {
    let blob = &entry.blob;
    if blob.len() < NONCE_LEN + TAG_LEN {
        return Err("namespace entry truncated");
    }
    let plain = wrap
        .open(
            &blob[..NONCE_LEN],
            &ns_aad(vault_id, &entry.id),
            &blob[NONCE_LEN..],
        )
        .ok_or("namespace entry failed authentication")?;
    let mut r = Reader::new(&plain);
    let bad = |_| "namespace entry malformed";
    let (name, active, keys) = read_key_table(&mut r)?;
    let floor = r.u64().map_err(bad)?;
    if !plain.len().is_multiple_of(NS_PAD) || r.rest().iter().any(|&b| b != 0) {
        return Err("namespace entry padding is malformed");
    }
    Ok(NsKeys {
        name,
        active,
        keys,
        floor,
    })
}

fn ns_aad(vault_id: &[u8], id: &[u8]) -> Vec<u8> {
    Aad::new(NAMESPACE_AAD_LABEL)
        .bytes(vault_id)
        .bytes(id)
        .finish()
}

/// A header field cut short.
fn truncated(_: Truncated) -> Error {
    Error::header("header truncated inside a field")
}

/// A header field must be read to its end.
fn finish(r: &Reader<'_>) -> Result<()> {
    if r.remaining() == 0 {
        Ok(())
    } else {
        Err(Error::header("trailing bytes in a header field"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (Header, VmkKeys) {
        let vmk = Key::random().unwrap();
        let keys = VmkKeys::new(&vmk, &[1u8; 16]).unwrap();
        let (kind_code, params) = Slot::raw_key_params(&[3u8; 32]);
        let ns = NsKeys {
            name: "tenant".into(),
            active: 1,
            keys: vec![(1, Key::random().unwrap())],
            floor: 77,
        };
        let blob = seal_ns(&keys.wrap, &[1u8; 16], &[5u8; 32], &ns).unwrap();
        let header = Header {
            version: FORMAT_V1,
            epoch: 0,
            active_ewk: 0,
            ewks: Vec::new(),
            vault_id: [1u8; 16],
            seqid: 4,
            next_slot_id: 1,
            slots: vec![Slot {
                id: 0,
                kind_code,
                params,
                wrapped_vmk: [7u8; WRAPPED_KEY_LEN],
            }],
            wrapped_index_key: [8u8; WRAPPED_KEY_LEN],
            namespaces: vec![NsEntry {
                id: [5u8; 32],
                blob,
            }],
        };
        (header, keys)
    }

    #[test]
    fn encode_parse_round_trip() {
        let (header, keys) = sample();
        let file = header.encode(&keys).unwrap();
        let back = Header::parse(&file).unwrap();
        Header::verify_mac(&file, &keys).unwrap();
        assert_eq!(back.seqid, 4);
        assert_eq!(back.slots.len(), 1);
        assert_eq!(back.encode(&keys).unwrap(), file);
        let ns = open_ns(&keys.wrap, &back.vault_id, &back.namespaces[0]).unwrap();
        assert_eq!(ns.name, "tenant");
        assert_eq!(ns.floor, 77);
    }

    #[test]
    fn unknown_slot_kinds_are_kept_intact() {
        // A newer tokenvault may add key sources (an OS keyring entry): an older one must
        // keep such slots byte for byte when it rewrites the header.
        let (mut header, keys) = sample();
        header.slots.push(Slot {
            id: 7,
            kind_code: 42,
            params: b"keyring:service=tokenvault;account=alice".to_vec(),
            wrapped_vmk: [9u8; WRAPPED_KEY_LEN],
        });
        header.next_slot_id = 8;
        let file = header.encode(&keys).unwrap();
        let back = Header::parse(&file).unwrap();
        assert_eq!(back.slots[1].kind(), SlotKind::Unknown(42));
        assert!(matches!(
            back.slots[1].parse_params(),
            Ok(SlotParams::Unknown)
        ));
        assert_eq!(back.slots[1].params, header.slots[1].params);
        assert_eq!(back.encode(&keys).unwrap(), file);
    }

    #[test]
    fn every_truncation_and_flip_is_an_error() {
        let (header, keys) = sample();
        let file = header.encode(&keys).unwrap();
        for len in 0..file.len() {
            assert!(Header::parse(&file[..len]).is_err());
        }
        for i in 0..file.len() * 8 {
            let mut bad = file.clone();
            bad[i / 8] ^= 1 << (i % 8);
            let ok = Header::parse(&bad).is_ok() && Header::verify_mac(&bad, &keys).is_ok();
            assert!(!ok, "flip of bit {i} went unnoticed");
        }
    }

    #[test]
    fn recomputed_checksum_still_fails_the_mac() {
        let (header, keys) = sample();
        let mut file = header.encode(&keys).unwrap();
        file[FIXED_LEN + 16] ^= 1; // seqid
        let n = file.len();
        let sum = sha256(&file[..n - 32]);
        file[n - 32..].copy_from_slice(&sum);
        assert!(Header::parse(&file).is_ok());
        assert!(Header::verify_mac(&file, &keys).is_err());
    }
}
