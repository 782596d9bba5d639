//! The bodies of the fuzz targets in `fuzz/fuzz_targets/`, shared with
//! `tests/engine/fuzz_regressions.rs` so that an input replays identically with and without the
//! fuzzer.
//!
//! Every `check_*` returns `Err` describing a violated invariant (the fuzz target turns it
//! into a crash, the regression test into a failure); a panic inside is a failure as well.
//!
//! The `open_vault` target needs to reach past the header's checksum, MAC and AEAD tags, so
//! this file carries a small independent encoder of the header format (docs/format.md
//! sections 3 and 4): it re-derives a real vault's keys from its raw key and can re-seal
//! keyslots, the index key and namespace entries, and recompute the MAC and the checksum.
// Test harness code: failing loudly on anything unexpected is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::OnceLock;

use crate::backend::{Backend, Batch, MemoryBackend};
use crate::secrecy::{SecretBox, SecretString};
use crate::{Damage, Error, KdfParams, KeySource, Secret, Token, Vault, VaultOptions};
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

// ---------------------------------------------------------------------------------------
// record, payload, header

/// `record`: arbitrary bytes opened as a sealed record under the hook's fixed key.
pub fn check_record(data: &[u8]) -> Result<(), String> {
    super::fuzz_record(data)
}

/// `payload`: arbitrary bytes decoded as a decrypted payload (framing, padding, bincode).
pub fn check_payload(data: &[u8]) -> Result<(), String> {
    super::fuzz_payload(data)
}

/// `header`: arbitrary bytes parsed as a header file, as given and again with the magic,
/// version, length and checksum fixed up (almost no mutation survives the SHA-256 checksum,
/// so without the fix-up the body parser would be out of the fuzzer's reach).
pub fn check_header(data: &[u8]) -> Result<(), String> {
    super::fuzz_header(data)?;
    if let Some(fixed) = fix_framing(data) {
        super::fuzz_header(&fixed).map_err(|e| format!("(framing fixed) {e}"))?;
    }
    Ok(())
}

const MAGIC: [u8; 8] = [0x89, b'T', b'V', b'A', b'U', b'L', b'T', b'\n'];
const FIXED_LEN: usize = 14;
const TRAILER_LEN: usize = 64;

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

fn set_body_len(file: &mut [u8]) {
    if let Some(body_len) = file.len().checked_sub(FIXED_LEN + TRAILER_LEN) {
        let body_len = u32::try_from(body_len).unwrap_or(u32::MAX);
        file[10..14].copy_from_slice(&body_len.to_le_bytes());
    }
}

fn set_checksum(file: &mut [u8]) {
    if file.len() >= 32 {
        let n = file.len() - 32;
        let sum: [u8; 32] = Sha256::digest(&file[..n]).into();
        file[n..].copy_from_slice(&sum);
    }
}

// ---------------------------------------------------------------------------------------
// Format primitives (docs/format.md sections 1, 3, 4), written from the document.

const RAW_KEY_LABEL: &[u8] = b"tokenvault/v1/keyslot/raw-key";
const SLOT_AAD_LABEL: &[u8] = b"tokenvault/v1/keyslot";
const INDEX_KEY_AAD_LABEL: &[u8] = b"tokenvault/v1/index-key";
const NAMESPACE_AAD_LABEL: &[u8] = b"tokenvault/v1/namespace";
const NAMESPACE_ID_LABEL: &[u8] = b"tokenvault/v1/namespace-id";
const HEADER_MAC_LABEL: &[u8] = b"tokenvault/v1/header-mac";
const WRAP_LABEL: &[u8] = b"tokenvault/v1/wrap";

fn lp(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(bytes);
}

fn hkdf(salt: &[u8], ikm: &[u8], info: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    // 32 bytes is always a valid HKDF-SHA-256 output length.
    let _ = Hkdf::<Sha256>::new(Some(salt), ikm).expand(info, &mut out);
    out
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(key) else {
        return [0u8; 32];
    };
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

fn ns_id(index_key: &[u8; 32], name: &[u8]) -> [u8; 32] {
    let mut m = Vec::new();
    lp(&mut m, NAMESPACE_ID_LABEL);
    lp(&mut m, name);
    hmac(index_key, &[&m])
}

/// XChaCha20-Poly1305 with the nonce in front: `nonce [24] || ciphertext || tag [16]`.
/// The nonce is derived from the inputs: the fuzz targets must be deterministic.
fn seal(key: &[u8; 32], aad: &[u8], plain: &[u8]) -> Vec<u8> {
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

fn open(key: &[u8; 32], aad: &[u8], blob: &[u8]) -> Option<Vec<u8>> {
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

fn slot_aad(vault_id: &[u8], id: u32, kind: u8, params: &[u8]) -> Vec<u8> {
    let mut a = Vec::new();
    lp(&mut a, SLOT_AAD_LABEL);
    lp(&mut a, vault_id);
    a.extend_from_slice(&id.to_le_bytes());
    a.push(kind);
    lp(&mut a, params);
    a
}

fn index_key_aad(vault_id: &[u8]) -> Vec<u8> {
    let mut a = Vec::new();
    lp(&mut a, INDEX_KEY_AAD_LABEL);
    lp(&mut a, vault_id);
    a
}

fn ns_aad(vault_id: &[u8], id: &[u8]) -> Vec<u8> {
    let mut a = Vec::new();
    lp(&mut a, NAMESPACE_AAD_LABEL);
    lp(&mut a, vault_id);
    lp(&mut a, id);
    a
}

fn raw_kek(raw_key: &[u8; 32], salt: &[u8]) -> [u8; 32] {
    hkdf(salt, raw_key, RAW_KEY_LABEL)
}

/// A header as its fields (section 3), for a well-formed file only.
#[derive(Clone, PartialEq, Eq)]
struct HeaderFields {
    vault_id: [u8; 16],
    seqid: u64,
    next_slot_id: u32,
    slots: Vec<SlotFields>,
    wrapped_index_key: Vec<u8>,
    namespaces: Vec<([u8; 32], Vec<u8>)>,
    mac: [u8; 32],
}

#[derive(Clone, PartialEq, Eq)]
struct SlotFields {
    id: u32,
    kind: u8,
    params: Vec<u8>,
    wrapped: Vec<u8>,
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.0.len() {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn arr<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
}

impl HeaderFields {
    fn parse(file: &[u8]) -> Option<Self> {
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
    fn encode(&self) -> Vec<u8> {
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
fn set_mac(file: &mut [u8], vmk: &[u8; 32]) {
    let Some(n) = file.len().checked_sub(TRAILER_LEN) else {
        return;
    };
    let vault_id = file.get(FIXED_LEN..FIXED_LEN + 16).unwrap_or(&[]).to_vec();
    let k_mac = hkdf(&vault_id, vmk, HEADER_MAC_LABEL);
    let mac = hmac(&k_mac, &[&file[..n]]);
    file[n..n + 32].copy_from_slice(&mac);
}

// ---------------------------------------------------------------------------------------
// The real vault the open_vault target mutates.

/// The raw key of the vault's first slot, and of a second raw slot.
pub const FIXTURE_KEY: [u8; 32] = [9u8; 32];
pub const FIXTURE_KEY_2: [u8; 32] = [8u8; 32];
/// The raw key the arbitrary-bytes half of `open_vault` tries (no vault has it).
pub const STRANGER_KEY: [u8; 32] = [7u8; 32];
const FIXTURE_PASSPHRASE: &str = "fuzz fixture passphrase";
/// The namespaces and records of the fixture.
const FIXTURE_RECORDS: [(&str, &str); 3] = [
    ("alpha", "rs.example.org"),
    ("alpha", "client-secret"),
    ("beta", "k"),
];
const NAMES: [&str; 7] = [
    "alpha",
    "beta",
    "gamma",
    "",
    "\u{e9}t\u{e9}",
    "\u{0}",
    "long",
];

/// A tree's name and its `(key, value)` entries.
type Tree = (Vec<u8>, Vec<(Vec<u8>, Vec<u8>)>);
/// A namespace's name, active key id and `(key id, key)` list.
type NsKeys = (String, u32, Vec<(u32, [u8; 32])>);

#[allow(missing_debug_implementations)]
pub struct Fixture {
    /// The real header file.
    pub header: Vec<u8>,
    fields: HeaderFields,
    /// Every tree and its entries.
    pub trees: Vec<Tree>,
    vmk: [u8; 32],
    index_key: [u8; 32],
    /// Each namespace's name, active key id and keys, as decrypted from the header.
    ns_keys: Vec<NsKeys>,
    /// Whether namespace entries carry a `floor u64` after their keys (the generation the
    /// header last recorded), and the fixture's floors.
    floor_field: bool,
    floors: Vec<u64>,
}

pub fn raw_key(bytes: [u8; 32]) -> KeySource {
    KeySource::raw_key(SecretBox::new(Box::new(bytes)))
}

/// The real vault, built once per process: a raw slot (key 9), a passphrase slot (the
/// insecure test KDF, never derived by the target), a second raw slot (key 8), namespaces
/// `alpha` (a token and a secret) and `beta` (a token, its data key rotated once).
pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| build_fixture().unwrap_or_else(|e| panic!("fixture: {e}")))
}

fn build_fixture() -> Result<Fixture, String> {
    let e = |e: Error| e.to_string();
    let storage = MemoryBackend::new();
    let options = VaultOptions::new().kdf(KdfParams::insecure_for_tests());
    let vault = options
        .create_with_backend(storage.clone(), &raw_key(FIXTURE_KEY))
        .map_err(e)?;
    vault
        .add_keyslot(&KeySource::passphrase(SecretString::from(
            FIXTURE_PASSPHRASE,
        )))
        .map_err(e)?;
    vault.add_keyslot(&raw_key(FIXTURE_KEY_2)).map_err(e)?;
    for (ns, key) in FIXTURE_RECORDS {
        let ns = vault.namespace(ns).map_err(e)?;
        if key == "client-secret" {
            ns.put(key, &Secret::from_text("s3cret".into()))
                .map_err(e)?;
        } else {
            let token = Token::new(format!("access-{key}").into())
                .with_refresh_token("refresh".into())
                .with_scopes(["openid", "transfer:all"])
                .with_resource_server(key);
            ns.put(key, &token).map_err(e)?;
        }
    }
    vault.rotate_namespace_key("beta", |_| {}).map_err(e)?;
    vault.close().map_err(e)?;

    let header = storage
        .read_header()
        .map_err(|e| e.to_string())?
        .ok_or("no header")?;
    let mut trees = Vec::new();
    for tree in storage.trees().map_err(|e| e.to_string())? {
        let entries = storage
            .scan(&tree, None, usize::MAX)
            .map_err(|e| e.to_string())?;
        trees.push((tree, entries));
    }
    let fields = HeaderFields::parse(&header).ok_or("the fixture header does not parse")?;
    if fields.encode() != header {
        return Err("the fixture header does not re-encode to itself".into());
    }
    // Unwrap the VMK from the first slot (section 4.2, 4.3).
    let slot = &fields.slots[0];
    let salt = slot.params.get(1..).ok_or("slot params")?;
    let kek = raw_kek(&FIXTURE_KEY, salt);
    let aad = slot_aad(&fields.vault_id, slot.id, slot.kind, &slot.params);
    let vmk: [u8; 32] = open(&kek, &aad, &slot.wrapped)
        .ok_or("the VMK does not unwrap")?
        .try_into()
        .map_err(|_| "VMK length")?;
    let mut remac = header.clone();
    set_mac(&mut remac, &vmk);
    if remac != header {
        return Err("the recomputed header MAC differs".into());
    }
    let k_wrap = hkdf(&fields.vault_id, &vmk, WRAP_LABEL);
    let index_key: [u8; 32] = open(
        &k_wrap,
        &index_key_aad(&fields.vault_id),
        &fields.wrapped_index_key,
    )
    .ok_or("the index key does not unwrap")?
    .try_into()
    .map_err(|_| "index key length")?;
    let mut ns_keys = Vec::new();
    let mut floors = Vec::new();
    for (id, blob) in &fields.namespaces {
        let plain =
            open(&k_wrap, &ns_aad(&fields.vault_id, id), blob).ok_or("a namespace entry")?;
        let mut c = Cursor(&plain);
        let name_len = usize::from(c.u16().ok_or("entry")?);
        let name = String::from_utf8(c.take(name_len).ok_or("entry")?.to_vec())
            .map_err(|_| "entry name")?;
        if ns_id(&index_key, name.as_bytes()) != *id {
            return Err("a recomputed namespace id differs".into());
        }
        let active = c.u32().ok_or("entry")?;
        let count = c.u16().ok_or("entry")?;
        let mut keys = Vec::new();
        for _ in 0..count {
            keys.push((c.u32().ok_or("entry")?, c.arr::<32>().ok_or("entry")?));
        }
        // A namespace's generation starts at a random point, so a recorded floor is never 0.
        floors.push(c.u64().unwrap_or(0));
        ns_keys.push((name, active, keys));
    }
    let floor_field = floors.iter().all(|&f| f != 0);
    Ok(Fixture {
        header,
        fields,
        trees,
        vmk,
        index_key,
        ns_keys,
        floor_field,
        floors,
    })
}

impl Fixture {
    fn k_wrap(&self, vault_id: &[u8]) -> [u8; 32] {
        hkdf(vault_id, &self.vmk, WRAP_LABEL)
    }

    /// A fresh backend holding `header` and the fixture's records.
    fn backend(&self, header: &[u8]) -> Result<MemoryBackend, String> {
        let storage = MemoryBackend::new();
        let mut batch = Batch::new();
        for (tree, entries) in &self.trees {
            for (k, v) in entries {
                batch = batch.write(tree, k, Some(v.clone()));
            }
        }
        storage.apply(&batch).map_err(|e| e.to_string())?;
        storage.write_header(header).map_err(|e| e.to_string())?;
        Ok(storage)
    }

    fn data_key(&self, name: &str, index: usize) -> Option<(u32, [u8; 32])> {
        let (_, _, keys) = self.ns_keys.iter().find(|(n, _, _)| n == name)?;
        keys.get(index % keys.len().max(1)).copied()
    }
}

// ---------------------------------------------------------------------------------------
// open_vault

/// Reads the fuzz input; past its end every read gives zeros.
struct Input<'a> {
    data: &'a [u8],
}

impl Input<'_> {
    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
    fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }
    /// `n` bytes, zero-filled past the end of the input.
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let (head, tail) = self.data.split_at(n.min(self.data.len()));
        self.data = tail;
        let mut v = head.to_vec();
        v.resize(n, 0);
        v
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }
    fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | (u64::from(self.u32()) << 32)
    }
    fn key(&mut self) -> [u8; 32] {
        let mut k = [0u8; 32];
        k.copy_from_slice(&self.bytes(32)[..]);
        k
    }
    /// A small number most of the time, any `u32` sometimes.
    fn small_u32(&mut self) -> u32 {
        match self.byte() {
            b @ 0..=239 => u32::from(b % 8),
            240..=247 => u32::MAX,
            _ => self.u32(),
        }
    }
}

/// `open_vault`: arbitrary bytes as a header (they must not open), then a real vault's header
/// edited by a small program read from the input, with the length, MAC and checksum
/// optionally recomputed. An edited header whose MAC was not recomputed must not open; one
/// whose MAC was recomputed may, and the vault must then work without panicking.
pub fn check_open_vault(data: &[u8]) -> Result<(), String> {
    stranger_must_fail(data)?;
    if let Some(fixed) = fix_framing(data) {
        stranger_must_fail(&fixed).map_err(|e| format!("(framing fixed) {e}"))?;
    }
    edited_real_header(data)
}

fn stranger_must_fail(header: &[u8]) -> Result<(), String> {
    let storage = MemoryBackend::new();
    storage.write_header(header).map_err(|e| e.to_string())?;
    match Vault::open_with_backend(storage, &raw_key(STRANGER_KEY)) {
        Ok(_) => Err("arbitrary header bytes opened with a key no vault has".into()),
        Err(e) => expected_open_error(&e),
    }
}

fn expected_open_error(e: &Error) -> Result<(), String> {
    match e {
        Error::Damaged(Damage::Header { .. })
        | Error::WrongKey
        | Error::UnsupportedVersion { .. } => Ok(()),
        other => Err(format!(
            "unexpected error opening a header: {other:?} ({other})"
        )),
    }
}

/// The edited real header the input describes: the file, whether its MAC was recomputed,
/// and the raw key to open it with.
fn edited_header(data: &[u8]) -> (Vec<u8>, bool, [u8; 32]) {
    let fx = fixture();
    let mut input = Input { data };
    let flags = input.byte();
    let (fix_len, fix_checksum, fix_mac) = (flags & 1 != 0, flags & 2 != 0, flags & 4 != 0);
    let key = if flags & 8 != 0 {
        FIXTURE_KEY_2
    } else {
        FIXTURE_KEY
    };
    let mut fields = fx.fields.clone();
    let mut byte_edits: Vec<(usize, u8)> = Vec::new();
    let mut resize: Option<usize> = None;
    for _ in 0..32 {
        if input.is_empty() {
            break;
        }
        edit(fx, &mut fields, &mut input, &mut byte_edits, &mut resize);
    }
    let mut file = fields.encode();
    for (at, x) in byte_edits {
        if !file.is_empty() {
            let at = at % file.len();
            file[at] ^= x;
        }
    }
    if let Some(len) = resize {
        file.resize(len, 0);
    }
    if fix_len {
        set_body_len(&mut file);
    }
    if fix_mac {
        set_mac(&mut file, &fx.vmk);
    }
    if fix_checksum {
        set_checksum(&mut file);
    }
    (file, fix_mac, key)
}

fn edited_real_header(data: &[u8]) -> Result<(), String> {
    let fx = fixture();
    let (file, fix_mac, key) = edited_header(data);
    let storage = fx.backend(&file)?;
    let opened = Vault::open_with_backend(storage.clone(), &raw_key(key));
    if file == fx.header {
        return match opened {
            Ok(vault) => exercise(vault, &storage, key),
            Err(e) => Err(format!("the unmodified real header does not open: {e}")),
        };
    }
    match opened {
        Err(e) => expected_open_error(&e),
        Ok(_) if !fix_mac => {
            Err("an edited header opened although its MAC was not recomputed".into())
        }
        Ok(vault) => exercise(vault, &storage, key),
    }
}

/// What opening the edited header of an `open_vault` input gives, for diagnosis.
pub fn explain_open_vault(data: &[u8]) -> String {
    let fx = fixture();
    let (file, fix_mac, key) = edited_header(data);
    let opened = fx
        .backend(&file)
        .map_err(|e| e.to_string())
        .and_then(|s| Vault::open_with_backend(s, &raw_key(key)).map_err(|e| format!("{e:?}")));
    format!(
        "{} bytes (real: {}), unchanged: {}, MAC recomputed: {fix_mac}, open: {}",
        file.len(),
        fx.header.len(),
        file == fx.header,
        match opened {
            Ok(v) => format!("Ok, namespaces {:?}", v.namespaces()),
            Err(e) => e,
        }
    )
}

/// One edit of the header's fields, or a byte edit recorded for after the encoding.
fn edit(
    fx: &Fixture,
    h: &mut HeaderFields,
    input: &mut Input<'_>,
    byte_edits: &mut Vec<(usize, u8)>,
    resize: &mut Option<usize>,
) {
    let op = input.byte() % 16;
    match op {
        0 => h.seqid = input.u64(),
        1 => h.next_slot_id = input.small_u32(),
        2 => {
            // A new slot: id, kind, parameters of some shape, and a wrapped VMK that is either
            // genuine (sealed under a fixture key's KEK with this slot's AAD) or bytes.
            let id = input.small_u32();
            let kind = match input.byte() % 4 {
                0 => 1,
                1 | 2 => 2,
                _ => input.byte(),
            };
            let shape = input.byte();
            let params = match shape % 4 {
                0 => {
                    let n = usize::from(input.byte() % 80);
                    let mut p = vec![u8::try_from(n).unwrap_or(0)];
                    p.extend(input.bytes(n));
                    p.resize(n + 1, 0x5a);
                    p
                }
                1 => {
                    let mut p = 0x13u32.to_le_bytes().to_vec();
                    for _ in 0..3 {
                        p.extend_from_slice(&input.u32().to_le_bytes());
                    }
                    let n = usize::from(input.byte() % 80);
                    p.push(u8::try_from(n).unwrap_or(0));
                    p.resize(p.len() + n, 0x33);
                    p
                }
                2 => {
                    let mut p = vec![32u8];
                    p.extend_from_slice(&[0x11; 32]);
                    p
                }
                _ => {
                    let n = usize::from(input.u16() % 1100);
                    input.bytes(n)
                }
            };
            let wrapped = if shape & 0x80 != 0 {
                let raw = if shape & 0x40 != 0 {
                    FIXTURE_KEY_2
                } else {
                    FIXTURE_KEY
                };
                let salt = params.get(1..).unwrap_or(&[]);
                let kek = raw_kek(&raw, salt);
                seal(&kek, &slot_aad(&h.vault_id, id, kind, &params), &fx.vmk)
            } else {
                input.bytes(72)
            };
            let wrapped = fit(wrapped, 72);
            let at = usize::from(input.byte()) % (h.slots.len() + 1);
            h.slots.insert(
                at,
                SlotFields {
                    id,
                    kind,
                    params,
                    wrapped,
                },
            );
        }
        3 => {
            if !h.slots.is_empty() {
                let i = usize::from(input.byte()) % h.slots.len();
                h.slots.remove(i);
            }
        }
        4 => {
            if !h.slots.is_empty() {
                let i = usize::from(input.byte()) % h.slots.len();
                let j = usize::from(input.byte()) % h.slots.len();
                h.slots.swap(i, j);
            }
        }
        5 => {
            if !h.slots.is_empty() {
                let i = usize::from(input.byte()) % h.slots.len();
                let s = &mut h.slots[i];
                match input.byte() % 4 {
                    0 => s.id = input.small_u32(),
                    1 => s.kind = input.byte(),
                    2 => {
                        if !s.params.is_empty() {
                            let at = usize::from(input.byte()) % s.params.len();
                            s.params[at] ^= input.byte();
                        }
                    }
                    _ => {
                        let at = usize::from(input.byte()) % 72;
                        if let Some(b) = s.wrapped.get_mut(at) {
                            *b ^= input.byte();
                        }
                    }
                }
            }
        }
        6 => {
            // A namespace entry with arbitrary plaintext, sealed genuinely.
            let plain_len = usize::from(input.u16() % 2048);
            let plain = input.bytes(plain_len);
            let id = entry_id(fx, h, input, &plain);
            let blob = seal(&fx.k_wrap(&h.vault_id), &ns_aad(&h.vault_id, &id), &plain);
            put_entry(h, input, id, blob);
        }
        7 => {
            // A namespace entry built field by field, sealed genuinely.
            let plain = structured_entry(fx, input);
            let id = entry_id(fx, h, input, &plain);
            let blob = seal(&fx.k_wrap(&h.vault_id), &ns_aad(&h.vault_id, &id), &plain);
            put_entry(h, input, id, blob);
        }
        8 => {
            if !h.namespaces.is_empty() {
                let i = usize::from(input.byte()) % h.namespaces.len();
                h.namespaces.remove(i);
            }
        }
        9 => {
            if !h.namespaces.is_empty() {
                let i = usize::from(input.byte()) % h.namespaces.len();
                let entry = h.namespaces[i].clone();
                h.namespaces.push(entry);
            }
        }
        10 => {
            let k_wrap = fx.k_wrap(&h.vault_id);
            let aad = index_key_aad(&h.vault_id);
            h.wrapped_index_key = match input.byte() % 3 {
                0 => seal(&k_wrap, &aad, &fx.index_key),
                1 => seal(&k_wrap, &aad, &input.key()),
                _ => input.bytes(72),
            };
            h.wrapped_index_key = fit(std::mem::take(&mut h.wrapped_index_key), 72);
        }
        11 => {
            if !h.namespaces.is_empty() {
                let i = usize::from(input.byte()) % h.namespaces.len();
                h.namespaces[i].0 = input.key();
            }
        }
        12 => {
            if !h.namespaces.is_empty() {
                let i = usize::from(input.byte()) % h.namespaces.len();
                let j = usize::from(input.byte()) % h.namespaces.len();
                h.namespaces.swap(i, j);
            }
        }
        13 => rebind_vault_id(fx, h, input),
        14 => {
            let at = usize::from(input.u16());
            let x = input.byte();
            byte_edits.push((at, x));
        }
        _ => {
            let len = fx.header.len();
            let delta = usize::from(input.byte());
            *resize = Some(if delta & 0x80 != 0 {
                len.saturating_sub(delta & 0x7f)
            } else {
                len + delta
            });
        }
    }
}

fn fit(mut v: Vec<u8>, n: usize) -> Vec<u8> {
    v.resize(n, 0);
    v
}

/// The id an edited entry is filed under: the genuine id of the name inside (when the
/// plaintext has one), an existing entry's id, or bytes.
fn entry_id(fx: &Fixture, h: &HeaderFields, input: &mut Input<'_>, plain: &[u8]) -> [u8; 32] {
    match input.byte() % 4 {
        0 | 1 => {
            let mut c = Cursor(plain);
            let name = c.u16().and_then(|n| c.take(usize::from(n))).unwrap_or(b"");
            ns_id(&fx.index_key, name)
        }
        2 if !h.namespaces.is_empty() => {
            h.namespaces[usize::from(input.byte()) % h.namespaces.len()].0
        }
        _ => input.key(),
    }
}

/// Replaces an entry, or appends one.
fn put_entry(h: &mut HeaderFields, input: &mut Input<'_>, id: [u8; 32], blob: Vec<u8>) {
    let at = usize::from(input.byte());
    if at < h.namespaces.len() {
        h.namespaces[at] = (id, blob);
    } else {
        h.namespaces.push((id, blob));
    }
}

/// A namespace entry plaintext (section 3.5) built from choices: a name, an active id, keys
/// (the real ones of a fixture namespace, or bytes), padding right or wrong.
fn structured_entry(fx: &Fixture, input: &mut Input<'_>) -> Vec<u8> {
    let name_choice = input.byte();
    let name: Vec<u8> = match NAMES[usize::from(name_choice) % NAMES.len()] {
        "long" => vec![b'n'; 1025],
        n if name_choice >= 0xf0 => {
            let mut v = n.as_bytes().to_vec();
            v.push(0xff);
            v
        }
        n => n.as_bytes().to_vec(),
    };
    let name_str = String::from_utf8_lossy(&name).into_owned();
    let count_choice = input.byte();
    let count = match count_choice % 8 {
        7 => 64 + usize::from(count_choice >> 7),
        n => usize::from(n),
    };
    let mut keys: Vec<(u32, [u8; 32])> = Vec::new();
    for i in 0..count {
        let choice = input.byte();
        let real = if choice & 1 == 0 {
            fx.data_key(&name_str, usize::from(choice >> 1))
        } else {
            None
        };
        keys.push(match real {
            Some(k) => k,
            None => {
                let id = if choice & 2 == 0 {
                    u32::try_from(i + 1).unwrap_or(0)
                } else {
                    input.small_u32()
                };
                (
                    id,
                    if choice & 4 == 0 {
                        [0x44; 32]
                    } else {
                        input.key()
                    },
                )
            }
        });
    }
    let active = match input.byte() % 4 {
        0 | 1 => keys.last().map_or(1, |k| k.0),
        2 => keys.first().map_or(1, |k| k.0),
        _ => input.small_u32(),
    };
    let mut plain = Vec::new();
    let name_len = if count_choice & 0x40 != 0 {
        input.u16()
    } else {
        u16::try_from(name.len()).unwrap_or(u16::MAX)
    };
    plain.extend_from_slice(&name_len.to_le_bytes());
    plain.extend_from_slice(&name);
    plain.extend_from_slice(&active.to_le_bytes());
    let key_count = if count_choice & 0x20 != 0 {
        input.u16()
    } else {
        u16::try_from(keys.len()).unwrap_or(u16::MAX)
    };
    plain.extend_from_slice(&key_count.to_le_bytes());
    for (id, key) in &keys {
        plain.extend_from_slice(&id.to_le_bytes());
        plain.extend_from_slice(key);
    }
    if fx.floor_field {
        let floor = match input.byte() % 4 {
            0 => fx
                .ns_keys
                .iter()
                .position(|(n, _, _)| *n == name_str)
                .and_then(|i| fx.floors.get(i).copied())
                .unwrap_or(1),
            1 => 0,
            2 => u64::MAX,
            _ => input.u64(),
        };
        plain.extend_from_slice(&floor.to_le_bytes());
    }
    let pad = input.byte();
    let target = plain.len().div_ceil(64) * 64 + usize::from(pad % 4) * 64;
    plain.resize(target, 0);
    if pad & 0x10 != 0 {
        plain.push(0);
    }
    if pad & 0x20 != 0 {
        if let Some(last) = plain.last_mut() {
            *last = 1;
        }
    }
    plain
}

/// A new vault id, with everything that binds it re-sealed (the fixture's raw slots, the
/// index key, the namespace entries): the vault opens, but no record does.
fn rebind_vault_id(fx: &Fixture, h: &mut HeaderFields, input: &mut Input<'_>) {
    let old_wrap = fx.k_wrap(&h.vault_id);
    let old_id = h.vault_id;
    let mut new_id = [0u8; 16];
    new_id.copy_from_slice(&input.bytes(16));
    h.vault_id = new_id;
    let new_wrap = fx.k_wrap(&new_id);
    for s in &mut h.slots {
        for raw in [FIXTURE_KEY, FIXTURE_KEY_2] {
            let kek = raw_kek(&raw, s.params.get(1..).unwrap_or(&[]));
            if open(
                &kek,
                &slot_aad(&old_id, s.id, s.kind, &s.params),
                &s.wrapped,
            )
            .is_some()
            {
                s.wrapped = seal(&kek, &slot_aad(&new_id, s.id, s.kind, &s.params), &fx.vmk);
            }
        }
    }
    if let Some(k) = open(&old_wrap, &index_key_aad(&old_id), &h.wrapped_index_key) {
        h.wrapped_index_key = seal(&new_wrap, &index_key_aad(&new_id), &k);
    }
    for (id, blob) in &mut h.namespaces {
        if let Some(plain) = open(&old_wrap, &ns_aad(&old_id, id), blob) {
            *blob = seal(&new_wrap, &ns_aad(&new_id, id), &plain);
        }
    }
}

/// Uses a vault opened from an edited header: nothing may panic, `verify` must answer, and
/// the vault must open again, with the same namespaces, after the header rewrites this
/// causes.
fn exercise(vault: Vault, storage: &MemoryBackend, key: [u8; 32]) -> Result<(), String> {
    let names = vault.namespaces().map_err(|e| format!("namespaces: {e}"))?;
    for name in names
        .iter()
        .map(String::as_str)
        .chain(["alpha", "beta", "new"])
    {
        let Ok(ns) = vault.namespace(name) else {
            continue;
        };
        let _ = ns.keys();
        for (_, key) in FIXTURE_RECORDS {
            let _ = ns.get::<Token>(key);
            let _ = ns.get_versioned::<Secret>(key);
        }
        if let Ok(Some((_, v))) = ns.get_versioned::<Token>("rs.example.org") {
            let _ = ns.compare_and_swap("rs.example.org", Some(v), &Token::new("new".into()));
        }
        let _ = ns.put("fuzz", &Token::new("fuzz".into()));
        let _ = ns.remove("k");
    }
    vault
        .verify(|_| {})
        .map_err(|e| format!("verify failed instead of reporting: {e}"))?;
    for name in &names {
        let _ = vault.rotate_namespace_key(name, |_| {});
    }
    let _ = vault.keyslots();
    let _ = vault.rotate_master_key();
    let _ = vault.add_keyslot(&raw_key([6u8; 32]));
    let _ = vault.remove_namespace("gamma");
    let names = vault.namespaces().map_err(|e| format!("namespaces: {e}"))?;
    vault.close().map_err(|e| format!("close: {e}"))?;
    let again = Vault::open_with_backend(storage.clone(), &raw_key(key))
        .map_err(|e| format!("a header this library accepted and rewrote does not reopen: {e}"))?;
    let names_again = again.namespaces().map_err(|e| format!("namespaces: {e}"))?;
    if names_again != names {
        return Err(format!(
            "namespaces changed across a reopen: {names:?} then {names_again:?}"
        ));
    }
    again.verify(|_| {}).map_err(|e| format!("verify: {e}"))?;
    again.close().map_err(|e| format!("close: {e}"))
}

// ---------------------------------------------------------------------------------------
// Seeds

/// Small inputs for each target, from the fixture vault (header, sealed records, and
/// payloads decrypted from its records), written by the `generate_seeds` test.
pub fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let fx = fixture();
    let mut out = Vec::new();
    out.push(("header", "real-header".to_string(), fx.header.clone()));
    let mut truncated = fx.header.clone();
    truncated.truncate(200);
    out.push((
        "header",
        "real-header-truncated-fixed".to_string(),
        fix_framing(&truncated).unwrap_or_default(),
    ));
    out.push(("open_vault", "real-header".to_string(), fx.header.clone()));
    let mut n = 0;
    for (tree, entries) in &fx.trees {
        for (k, v) in entries {
            if n < 4 {
                out.push(("record", format!("record-{n}"), v.clone()));
                n += 1;
            }
            if let Some(payload) = decrypt_record(fx, tree, k, v) {
                let kind = match v.get(1) {
                    Some(1) => "token",
                    Some(2) => "secret",
                    _ => "manifest",
                };
                let name = format!("{kind}-{}", out.iter().filter(|s| s.0 == "payload").count());
                out.push(("payload", name, payload));
            }
        }
    }
    // open_vault programs: flags, then edits (see `edit`).
    let programs: [(&str, Vec<u8>); 8] = [
        ("unmodified", vec![0]),
        ("unmodified-key2", vec![8]),
        ("remac-seqid", vec![7, 0, 1, 2, 3, 4, 5, 6, 7, 8]),
        ("no-remac-xor", vec![3, 14, 40, 0, 1]),
        ("remac-structured-alpha", vec![7, 7, 0, 1, 0, 0, 0, 0, 0]),
        ("remac-raw-slot-first", vec![7, 1, 240, 2, 3, 1, 0x82, 0]),
        ("remac-rebind", {
            let mut v = vec![7, 13];
            v.extend_from_slice(&[0x21; 16]);
            v
        }),
        ("remac-drop-ns", vec![7, 8, 1, 12, 0, 1]),
    ];
    for (name, program) in programs {
        out.push(("open_vault", name.to_string(), program));
    }
    out
}

/// The plaintext of a stored record of the fixture (docs/format.md 5.1, 5.2).
fn decrypt_record(fx: &Fixture, tree: &[u8], rid: &[u8], stored: &[u8]) -> Option<Vec<u8>> {
    let (i, _) = fx
        .fields
        .namespaces
        .iter()
        .enumerate()
        .find(|(_, (id, _))| id.as_slice() == tree)?;
    let (name, _, keys) = &fx.ns_keys[i];
    let key_id = u32::from_le_bytes(stored.get(2..6)?.try_into().ok()?);
    let (_, key) = keys.iter().find(|(id, _)| *id == key_id)?;
    let mut aad = Vec::new();
    lp(&mut aad, b"tokenvault/v1/record");
    aad.push(1);
    lp(&mut aad, &fx.fields.vault_id);
    lp(&mut aad, name.as_bytes());
    lp(&mut aad, rid);
    aad.extend_from_slice(stored.get(1..2)?);
    aad.extend_from_slice(stored.get(2..14)?);
    open(key, &aad, stored.get(14..)?)
}

// ---------------------------------------------------------------------------------------
// response

/// `response`: arbitrary bytes parsed as an OAuth token response. Whatever the input: no
/// panic; an error is `InvalidResponse` and does not quote the input; a parsed response has
/// at least one token, each with a non-empty access token and token type, that survives a
/// refresh merge with itself and a round trip through a vault record (or is refused as too
/// large), and whose `Debug` does not show its access token.
pub fn check_response(data: &[u8]) -> Result<(), String> {
    use crate::oauth::TokenResponse;
    use crate::secrecy::ExposeSecret;
    use crate::store::TokenStore;

    let sent = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
    let response = match TokenResponse::from_json(data, sent) {
        Ok(r) => r,
        Err(crate::oauth::TokenError::InvalidResponse { reason }) => {
            // Reasons name fields and positions. An OAuth error code is echoed, but only
            // when it is the `error` field's value (bounded to 64 printable characters).
            if reason.len() > 200 {
                return Err(format!("an overlong error reason: {reason:?}"));
            }
            return Ok(());
        }
        Err(e) => return Err(format!("an error other than InvalidResponse: {e:?}")),
    };
    if response.is_empty() {
        return Err("a parsed response holds no token".into());
    }
    let store = response_vault();
    for (i, token) in response.tokens().iter().enumerate() {
        let access = token.access_token().expose_secret();
        if access.is_empty() || token.token_type().is_empty() {
            return Err("a token without access token or token type".into());
        }
        let debug = format!("{token:?}");
        if access.len() >= 16 && debug.contains(access) {
            let public = [token.token_type(), token.identity().unwrap_or("")]
                .into_iter()
                .chain(token.resource_server())
                .chain(token.scopes().iter().map(String::as_str));
            if !public.into_iter().any(|p| p.contains(access)) {
                return Err("Debug shows the access token".into());
            }
        }
        if !token.refreshed_with(token.clone()).same_as(token) {
            return Err("merging a token with itself changed it".into());
        }
        let key = format!("k{i}");
        match store.set_token(&key, token) {
            Ok(()) => {
                let back = store
                    .get_token(&key)
                    .map_err(|e| format!("stored token unreadable: {e}"))?
                    .ok_or("stored token missing")?;
                if !back.same_as(token) {
                    return Err("a stored token came back different".into());
                }
            }
            Err(crate::oauth::TokenError::Vault(Error::TooLarge { .. })) => {}
            Err(e) => return Err(format!("storing a parsed token failed: {e}")),
        }
    }
    Ok(())
}

fn response_vault() -> crate::Namespace {
    static VAULT: OnceLock<Vault> = OnceLock::new();
    VAULT
        .get_or_init(|| {
            let key = KeySource::raw_key(SecretBox::new(Box::new([9u8; 32])));
            Vault::create_with_backend(MemoryBackend::new(), &key).unwrap_or_else(|e| {
                panic!("cannot create the fuzz vault: {e}");
            })
        })
        .namespace("fuzz")
        .unwrap_or_else(|e| panic!("namespace: {e}"))
}

// ---------------------------------------------------------------------------------------
// import

/// `import`: arbitrary bytes as the contents of a token file to import (Globus JSON 2.0 and
/// 1.0, a Sharetribe file store) and as a file whose format is sniffed. Whatever the input:
/// no panic; an error is one that reading a file can give and quotes no access or refresh
/// token of the input; the records of a file that reads have valid names (Globus: keyed by
/// their resource server) and round-trip through a vault; a file that reads as Globus JSON is
/// detected as such (see `super::fuzz_import`).
///
/// A JSON object is checked again with whitespace in front, past the 16 bytes a sniffer may
/// look at first: random mutations almost never make so long a prefix of a valid file.
pub fn check_import(data: &[u8]) -> Result<(), String> {
    super::fuzz_import(data)?;
    if data.first() == Some(&b'{') {
        let mut padded = b" \n\t\r".repeat(5);
        padded.extend_from_slice(data);
        super::fuzz_import(&padded).map_err(|e| format!("(after 20 bytes of whitespace) {e}"))?;
    }
    Ok(())
}
