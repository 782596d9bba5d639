//! The on-disk format specification (`docs/format.md`) checked against the library.
//!
//! `tests/decoder/decode_record.py` is an independent decoder written from the specification
//! only (Python, PyNaCl, argon2-cffi). These tests write vaults through the public API, take
//! the stored bytes through the `Backend` trait (format 2: the header file and the three trees
//! `e`, `r` and `m`), and require the decoder to unwrap the keyslot, open the namespace
//! entries, decrypt every record to exactly what was written and verify the anchor, and to
//! refuse tampered or misplaced bytes. The golden v1 vault still decodes (format 1 stays
//! readable, for the upgrade).
//!
//! Without `python3` and the two modules the tests print a message and pass, unless the `CI`
//! environment variable is set, where they fail.

// A test harness: failing loudly on anything unexpected is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, UNIX_EPOCH};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use support::BackendExt;
use tokenvault::backend::{Backend, MemoryBackend};
use tokenvault::secrecy::{ExposeSecret, SecretBox, SecretSlice, SecretString};
use tokenvault::{Error, KdfParams, KeySource, RecoveryKey, Secret, Token, VaultOptions};

const DECODER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/decoder/decode_record.py"
);
const GOLDEN_V1: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/v1/backend.json");
const PASSPHRASE: &str = "correct horse battery staple ✓";
const RAW_KEY: [u8; 32] = [0x5a; 32];

/// The three trees of format 2 (docs/format.md section 7.1): namespace entries, records,
/// manifests.
const ENTRIES: &[u8] = b"e";
const RECORDS: &[u8] = b"r";
const MANIFESTS: &[u8] = b"m";
/// The key of the entry-key marker in `e` and of the anchor in `m`.
const ANCHOR_KEY: &[u8] = &[0];
const NS_ID_LEN: usize = 32;
const INCARNATION_LEN: usize = 16;
/// A record's storage key: namespace id || incarnation || record id.
const RECORD_KEY_LEN: usize = NS_ID_LEN + INCARNATION_LEN + 32;
/// A namespace entry with one data key and a name of at most 20 bytes: version, key id,
/// incarnation, nonce, one 64-byte plaintext block, tag (section 3.6).
const SMALL_ENTRY_LEN: usize = 1 + 4 + INCARNATION_LEN + 24 + 64 + 16;

/// Offsets in a format 2 header with one passphrase slot (a 32-byte salt: 128 bytes in all)
/// and one entry-wrapping key (sections 3.1, 3.2): the body at 14, the slot at 44, the wrapped
/// index key at 172, then the epoch, the active key id, the key count and the one key.
const EPOCH_AT: usize = 244;
const ACTIVE_EWK_AT: usize = 252;
const EWK_COUNT_AT: usize = 256;
const ONE_SLOT_HEADER_LEN: usize = 78 + 319;

// ---------------------------------------------------------------- harness

/// Whether the decoder can run; fails the test under CI if not.
fn decoder_ready() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import nacl.bindings, argon2.low_level"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        let msg = "format_spec: needs python3 with PyNaCl and argon2-cffi \
                   (pip install pynacl argon2-cffi)";
        assert!(std::env::var_os("CI").is_none(), "{msg}");
        eprintln!("{msg}; skipping this test");
    }
    ok
}

/// Runs the decoder on `job`: `Ok(result)` on success, `Err(error object)` on a failed check.
fn decode(job: &Value) -> Result<Value, Value> {
    let mut child = Command::new("python3")
        .arg(DECODER)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(job.to_string().as_bytes())
        .expect("write the job");
    let out = child.wait_with_output().expect("wait for the decoder");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let value: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "decoder printed no JSON ({e}); stdout: {stdout}; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    match out.status.code() {
        Some(0) => Ok(value),
        Some(1) => {
            assert!(value["error"].is_string(), "{value}");
            Err(value)
        }
        other => panic!("decoder exit status {other:?}: {value}"),
    }
}

/// The decoder must fail, on a check whose message contains `what`, with error `class`.
fn refused(job: &Value, what: &str, class: &str) {
    match decode(job) {
        Ok(v) => panic!("the decoder accepted a bad input (expected {what}): {v}"),
        Err(e) => {
            let msg = e["error"].as_str().unwrap_or_default();
            assert!(
                msg.contains(what) && e["class"] == class,
                "expected `{what}` ({class}), got {e}"
            );
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Clone, Copy)]
enum Unlock {
    Passphrase(&'static str),
    Raw([u8; 32]),
    /// A recovery key's text form (`docs/format.md` 4.2.1).
    Recovery(&'static str),
    /// An OS keyring slot's entry names and the 32-byte key it holds (4.2.2).
    #[cfg(feature = "keyring")]
    Keyring(&'static str, &'static str, [u8; 32]),
}

/// A job that checks the header only (and the anchor or marker, if [`with`] adds them).
fn header_job(header: &[u8], unlock: Unlock) -> Value {
    let mut job = json!({ "header_hex": hex(header) });
    match unlock {
        Unlock::Passphrase(p) => job["passphrase"] = json!(p),
        Unlock::Raw(k) => job["raw_key_hex"] = json!(hex(&k)),
        Unlock::Recovery(text) => job["recovery_key"] = json!(text),
        #[cfg(feature = "keyring")]
        Unlock::Keyring(service, account, key) => {
            job["keyring"] = json!({"service": service, "account": account, "key_hex": hex(&key)});
        }
    }
    job
}

/// A job that opens `entry` as the namespace entry of `namespace`.
fn entry_job(header: &[u8], unlock: Unlock, namespace: &str, entry: &[u8]) -> Value {
    let mut job = header_job(header, unlock);
    job["namespace"] = json!(namespace);
    job["entry_hex"] = json!(hex(entry));
    job
}

/// A job that decodes `record` as the record `key` of `namespace`, whose entry is `entry`.
fn job(
    header: &[u8],
    unlock: Unlock,
    entry: &[u8],
    namespace: &str,
    key: &str,
    record: &[u8],
) -> Value {
    let mut job = entry_job(header, unlock, namespace, entry);
    job["key"] = json!(key);
    job["record_hex"] = json!(hex(record));
    job
}

fn manifest_job(
    header: &[u8],
    unlock: Unlock,
    entry: &[u8],
    namespace: &str,
    record: &[u8],
) -> Value {
    let mut job = job(header, unlock, entry, namespace, "", record);
    job["manifest"] = json!(true);
    job
}

/// `job` with `field` set to the hex of `bytes`, or to `null` for `None` ("storage holds
/// none"): `entry_hex`, `anchor_hex`, `marker_hex`, and the storage keys the bytes were
/// found under, `entry_key_hex` and `record_key_hex`.
fn with(mut job: Value, field: &str, bytes: Option<&[u8]>) -> Value {
    job[field] = bytes.map_or(Value::Null, |b| json!(hex(b)));
    job
}

fn passphrase(p: &str) -> KeySource {
    KeySource::passphrase(SecretString::from(p))
}

fn raw_key() -> KeySource {
    KeySource::raw_key(SecretBox::new(Box::new(RAW_KEY)))
}

fn fast() -> VaultOptions {
    VaultOptions::new().kdf(KdfParams::insecure_for_tests())
}

/// Every `(key, value)` of `tree` whose key starts with `prefix`, read in pages of three.
fn scan_all(backend: &MemoryBackend, tree: &[u8], prefix: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = backend.scan(tree, prefix, after.as_deref(), 3).unwrap();
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        out.extend(page);
    }
    out
}

/// Everything a backend holds: the header and `(tree, key, value)` for every key of the
/// three trees.
struct Stored {
    header: Vec<u8>,
    items: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)>,
}

/// A record found by [`Stored::find`], with its namespace's id and entry.
struct Found<'a> {
    /// The decoder's answer.
    out: Value,
    ns_id: &'a [u8],
    entry: &'a [u8],
    /// The record's storage key in `r`.
    key: &'a [u8],
    record: &'a [u8],
}

impl Found<'_> {
    /// Namespace id || incarnation: the prefix of the namespace's record keys in `r`, and
    /// its manifest's key in `m`.
    fn prefix(&self) -> &[u8] {
        &self.key[..NS_ID_LEN + INCARNATION_LEN]
    }
}

impl Stored {
    fn read(backend: &MemoryBackend) -> Self {
        let header = backend.read_header().unwrap().expect("a header");
        let mut items = Vec::new();
        for tree in [ENTRIES, RECORDS, MANIFESTS] {
            for (k, v) in scan_all(backend, tree, &[]) {
                items.push((tree.to_vec(), k, v));
            }
        }
        Self { header, items }
    }

    /// A new backend holding these trees, and `header` as its header file.
    fn restore(&self, header: &[u8]) -> MemoryBackend {
        let backend = MemoryBackend::new();
        backend.overwrite_header(header).unwrap();
        for (tree, key, value) in &self.items {
            backend.put(tree, key, value.clone()).unwrap();
        }
        backend
    }

    /// `(key, value)` for every key of `tree`.
    fn tree(&self, tree: &'static [u8]) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.items
            .iter()
            .filter(move |(t, _, _)| t == tree)
            .map(|(_, k, v)| (k.as_slice(), v.as_slice()))
    }

    /// `(namespace id, entry)` for every namespace entry (the 32-byte keys of `e`: the marker
    /// left out).
    fn namespace_entries(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.tree(ENTRIES).filter(|(k, _)| k.len() == NS_ID_LEN)
    }

    /// `(storage key, record)` for every record.
    fn records(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.tree(RECORDS)
    }

    /// `(namespace id || incarnation, manifest)` for every manifest (the 48-byte keys of `m`:
    /// the anchor and any mark of an unfinished key rotation left out).
    fn manifests(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.tree(MANIFESTS)
            .filter(|(k, _)| k.len() == NS_ID_LEN + INCARNATION_LEN)
    }

    /// The manifest stored under `prefix` (namespace id || incarnation).
    fn manifest(&self, prefix: &[u8]) -> &[u8] {
        self.manifests()
            .find(|(k, _)| *k == prefix)
            .expect("a manifest for every namespace entry")
            .1
    }

    /// The anchor: tree `m`, key `00`.
    fn anchor(&self) -> Option<&[u8]> {
        self.tree(MANIFESTS)
            .find(|(k, _)| *k == ANCHOR_KEY)
            .map(|(_, v)| v)
    }

    /// The entry-key marker: tree `e`, key `00`.
    fn marker(&self) -> Option<&[u8]> {
        self.tree(ENTRIES)
            .find(|(k, _)| *k == ANCHOR_KEY)
            .map(|(_, v)| v)
    }

    /// Opens `namespace`'s entry: exactly one stored entry must open for it, and it must be
    /// stored under the namespace id. Returns the result, the namespace id and the entry.
    fn find_entry(&self, unlock: Unlock, namespace: &str) -> (Value, &[u8], &[u8]) {
        let mut found = Vec::new();
        for (ns_id, entry) in self.namespace_entries() {
            if let Ok(out) = decode(&entry_job(&self.header, unlock, namespace, entry)) {
                found.push((out, ns_id, entry));
            }
        }
        assert_eq!(
            found.len(),
            1,
            "the entry of {namespace} must open exactly once"
        );
        let (out, ns_id, entry) = found.pop().expect("one");
        assert_eq!(out["namespace_id"], hex(ns_id), "entry key = namespace id");
        (out, ns_id, entry)
    }

    /// Decodes `(namespace, key)` against every stored record, with the namespace's entry:
    /// exactly one must decode, and it must be stored in `r` under namespace id ||
    /// incarnation (from the entry) || record id.
    fn find(&self, unlock: Unlock, namespace: &str, key: &str) -> Found<'_> {
        let (_, ns_id, entry) = self.find_entry(unlock, namespace);
        let mut found = Vec::new();
        for (k, v) in self.records() {
            if let Ok(out) = decode(&job(&self.header, unlock, entry, namespace, key, v)) {
                found.push((out, k, v));
            }
        }
        assert_eq!(found.len(), 1, "{namespace}/{key} must decode exactly once");
        let (out, k, record) = found.pop().expect("one");
        assert_eq!(k.len(), RECORD_KEY_LEN);
        assert_eq!(out["storage"], json!({"tree": "r", "key": hex(k)}), "{out}");
        assert_eq!(&k[..NS_ID_LEN], ns_id, "namespace id first");
        assert_eq!(
            out["incarnation"],
            hex(&k[NS_ID_LEN..NS_ID_LEN + INCARNATION_LEN]),
            "then the entry's incarnation"
        );
        assert_eq!(
            out["record_id"],
            hex(&k[NS_ID_LEN + INCARNATION_LEN..]),
            "then the record id"
        );
        Found {
            out,
            ns_id,
            entry,
            key: k,
            record,
        }
    }
}

/// The framing rule of the specification: the smallest whole number of 256-byte buckets.
fn check_padding(out: &Value, stored: &[u8]) {
    let body_len = out["body_len"].as_u64().expect("body_len");
    let padded = out["padded_len"].as_u64().expect("padded_len");
    assert_eq!(padded, (5 + body_len).div_ceil(256).max(1) * 256, "{out}");
    assert_eq!(stored.len() as u64, 14 + 24 + padded + 16);
}

fn recompute_checksum(header: &mut [u8]) {
    let n = header.len();
    let sum = Sha256::digest(&header[..n - 32]);
    header[n - 32..].copy_from_slice(&sum);
}

/// What `Vault::open` says about `header` over a copy of `stored`'s trees.
fn open_error(stored: &Stored, header: &[u8], key: &KeySource) -> Error {
    fast()
        .open_with_backend(stored.restore(header), key)
        .unwrap_err()
}

/// Reading `namespace`/`key` through a new handle on `backend` must report damage.
fn assert_damaged(backend: &MemoryBackend, namespace: &str, key: &str) {
    let vault = fast()
        .open_with_backend(backend.clone(), &passphrase(PASSPHRASE))
        .unwrap();
    let read = vault.namespace(namespace).unwrap().get::<Token>(key);
    assert!(
        matches!(read, Err(Error::Damaged(_))),
        "{namespace}/{key}: {read:?}"
    );
}

// ---------------------------------------------------------------- the cases

enum Item {
    Token(Token),
    Secret(Vec<u8>),
}

struct Case {
    namespace: &'static str,
    key: &'static str,
    value: Item,
    /// The decoded record as the specification says it must come out.
    expected: Value,
}

fn cases() -> Vec<Case> {
    let long_access = format!("eyJ{}", "A".repeat(700));
    vec![
        Case {
            namespace: "tenant-full",
            key: "transfer.api.example.org",
            value: Item::Token(
                Token::new("access-token-ZQXJ".into())
                    .with_refresh_token("refresh-token-WVKP".into())
                    .with_token_type("Bearer")
                    .with_expires_at(UNIX_EPOCH + Duration::from_millis(1_800_000_123_900))
                    .with_scopes(["openid", "email", "urn:globus:auth:scope:transfer:all"])
                    .with_identity("identity-7f3a")
                    .with_resource_server("transfer.api.example.org")
                    .with_extra_json(r#"{"id_token":"id-token-MMRT","n":1}"#.into()),
            ),
            expected: json!({
                "access_token": "access-token-ZQXJ",
                "refresh_token": "refresh-token-WVKP",
                "token_type": "Bearer",
                "expires_at": 1_800_000_123,
                "scopes": ["openid", "email", "urn:globus:auth:scope:transfer:all"],
                "identity": "identity-7f3a",
                "resource_server": "transfer.api.example.org",
                "extra_json": r#"{"id_token":"id-token-MMRT","n":1}"#,
            }),
        },
        Case {
            namespace: "tenant-minimal",
            key: "minimal",
            value: Item::Token(Token::new("m".into())),
            expected: json!({
                "access_token": "m",
                "refresh_token": null,
                "token_type": "Bearer",
                "expires_at": null,
                "scopes": [],
                "identity": null,
                "resource_server": null,
                "extra_json": null,
            }),
        },
        Case {
            // The 46-byte example body of docs/format.md section 5.4.
            namespace: "tenant-example",
            key: "k",
            value: Item::Token(Token::new("at".into())),
            expected: json!({
                "access_token": "at",
                "refresh_token": null,
                "token_type": "Bearer",
                "expires_at": null,
                "scopes": [],
                "identity": null,
                "resource_server": null,
                "extra_json": null,
            }),
        },
        Case {
            namespace: "tenant-ü/日本",
            key: "ключ 🔑",
            value: Item::Token(
                Token::new(long_access.clone().into())
                    .with_token_type("DPoP")
                    .with_expires_at(UNIX_EPOCH - Duration::from_secs(31_536_000))
                    .with_scopes(["", "ä", "a b"])
                    .with_extra_json("{\"q\":\"\\\"quoted\\\" ✓\"}".into()),
            ),
            expected: json!({
                "access_token": long_access,
                "refresh_token": null,
                "token_type": "DPoP",
                "expires_at": -31_536_000,
                "scopes": ["", "ä", "a b"],
                "identity": null,
                "resource_server": null,
                "extra_json": "{\"q\":\"\\\"quoted\\\" ✓\"}",
            }),
        },
        Case {
            namespace: "tenant-secret",
            key: "client-secret",
            value: Item::Secret(vec![0, 1, 2, 0x7f, 0x80, 0xfe, 0xff, 0]),
            expected: json!({ "value_hex": "0001027f80feff00" }),
        },
    ]
}

// ---------------------------------------------------------------- tests

#[test]
fn passphrase_vault_decodes_to_what_was_written() {
    if !decoder_ready() {
        return;
    }
    let storage = MemoryBackend::new();
    let vault = fast()
        .create_with_backend(storage.clone(), &passphrase(PASSPHRASE))
        .unwrap();
    assert_eq!(vault.format_version(), 2, "new vaults are format 2");
    let cases = cases();
    let mut versions = Vec::new();
    for case in &cases {
        let ns = vault.namespace(case.namespace).unwrap();
        let version = match &case.value {
            Item::Token(t) => ns.put(case.key, t).unwrap(),
            Item::Secret(b) => ns
                .put(case.key, &Secret::from_bytes(SecretSlice::from(b.clone())))
                .unwrap(),
        };
        versions.push(version.as_u64());
    }
    // Closing checkpoints: the raised epoch goes into the header, one more header write.
    let seqid = vault.header_seqid().unwrap() + 1;
    vault.close().unwrap();

    let stored = Stored::read(&storage);
    // Section 7.1: per namespace one entry, one manifest and one record; the entry-key
    // marker in `e` and the anchor in `m`; nothing else.
    assert_eq!(stored.namespace_entries().count(), cases.len());
    assert_eq!(stored.manifests().count(), cases.len());
    assert_eq!(stored.records().count(), cases.len());
    assert_eq!(stored.items.len(), 3 * cases.len() + 2, "nothing else");

    // The header (sections 3.1, 3.2, 3.5), the anchor and the marker (4.8, 7.1).
    let unlock = Unlock::Passphrase(PASSPHRASE);
    let header = &stored.header;
    let anchor = stored.anchor().expect("the anchor");
    let marker = stored.marker().expect("the entry-key marker");
    let h = decode(&with(
        with(header_job(header, unlock), "anchor_hex", Some(anchor)),
        "marker_hex",
        Some(marker),
    ))
    .unwrap();
    let epoch = h["header"]["epoch"].as_u64().expect("epoch");
    let active_ewk = h["header"]["active_ewk"].as_u64().expect("active_ewk");
    assert!(epoch >= 1, "closing checkpointed: {h}");
    assert_eq!(h["header"]["format_version"], 2);
    assert_eq!(h["header"]["seqid"], seqid);
    assert_eq!(h["header"]["ewk_ids"], json!([active_ewk]), "one entry key");
    assert_eq!(
        h["anchor"],
        json!({"present": true, "epoch": epoch, "rolled_back": false}),
        "after a clean close the anchor's epoch is the header's"
    );
    assert_eq!(h["marker"]["ewk_id"], active_ewk);
    assert_eq!(&header[8..10], &2u16.to_le_bytes(), "format_version");
    assert_eq!(header.len(), ONE_SLOT_HEADER_LEN);
    assert_eq!(&header[EPOCH_AT..EPOCH_AT + 8], &epoch.to_le_bytes());
    let active = &header[ACTIVE_EWK_AT..ACTIVE_EWK_AT + 4];
    assert_eq!(active, &u32::try_from(active_ewk).unwrap().to_le_bytes());
    assert_eq!(header[EWK_COUNT_AT], 1, "ewk_count");
    assert_eq!(&header[EWK_COUNT_AT + 1..EWK_COUNT_AT + 5], active);
    assert_eq!(anchor.len(), 1 + 8 + 32);
    assert_eq!(anchor[0], 2);
    assert_eq!(&anchor[1..9], &epoch.to_le_bytes());
    assert_eq!(marker.len(), 5);
    assert_eq!(marker[0], 2);
    assert_eq!(&marker[1..], active);

    let mut incarnations = BTreeSet::new();
    for (case, version) in cases.iter().zip(versions) {
        let found = stored.find(unlock, case.namespace, case.key);
        let out = &found.out;
        let what = format!("{}/{}", case.namespace, case.key);
        let record_type = match case.value {
            Item::Token(_) => "token",
            Item::Secret(_) => "secret",
        };
        assert_eq!(out["record_type"], record_type, "{what}");
        assert_eq!(out["key"], case.key, "{what}");
        assert_eq!(out["record"], case.expected, "{what}");
        assert_eq!(out["key_id"], 1, "{what}: the first data key has id 1");
        assert_eq!(out["namespace_key_ids"], json!([1]), "{what}");
        assert_eq!(out["generation"], version, "{what}: generation = Version");
        assert_eq!(
            out["slot"],
            json!({"id": 0, "kind": 1, "salt_len": 32, "m_kib": 64, "t": 1, "p": 1}),
            "{what}"
        );
        assert_eq!(out["header"]["seqid"], seqid, "{what}");
        assert_eq!(out["header"]["slot_count"], 1, "{what}");
        check_padding(out, found.record);
        if case.key == "k" {
            assert_eq!(out["body_len"], 46, "the example body of the spec");
            assert_eq!(found.record.len(), 310);
        }
        if case.namespace == "tenant-ü/日本" {
            assert!(
                out["padded_len"].as_u64().unwrap() > 256,
                "a multi-bucket record"
            );
        }

        // The entry (section 3.6): version 2, the entry key's id and the incarnation in
        // the clear, then one 64-byte block of plaintext (one key, a short name).
        let entry = found.entry;
        assert_eq!(entry.len(), SMALL_ENTRY_LEN, "{what}");
        assert_eq!(entry[0], 2, "{what}");
        assert_eq!(&entry[1..5], active, "{what}: sealed under the active key");
        assert_eq!(out["entry"]["ewk_id"], active_ewk, "{what}");
        assert_eq!(out["entry"]["incarnation"], hex(&entry[5..21]), "{what}");
        assert_eq!(out["entry"]["plaintext_len"], 64, "{what}");
        assert!(
            incarnations.insert(hex(&entry[5..21])),
            "{what}: own incarnation"
        );

        // The namespace's records by a prefix scan of `r`: this one.
        let scanned = scan_all(&storage, RECORDS, found.prefix());
        assert_eq!(scanned.len(), 1, "{what}");
        assert_eq!(scanned[0].0, found.key, "{what}");

        // The manifest: in `m` under namespace id || incarnation.
        let manifest = stored.manifest(found.prefix());
        let m = decode(&with(
            manifest_job(&stored.header, unlock, entry, case.namespace, manifest),
            "record_key_hex",
            Some(found.prefix()),
        ))
        .unwrap_or_else(|e| panic!("{what}: manifest: {e}"));
        assert_eq!(m["record_type"], "manifest");
        assert_eq!(m["record_id"], "00");
        assert_eq!(
            m["storage"],
            json!({"tree": "m", "key": hex(found.prefix())})
        );
        // The manifest's generation is the ceiling of the namespace's generations: at least
        // the record's, and the same in its prefix and body.
        assert_eq!(m["record"]["count"], 1, "{what}");
        assert!(m["generation"].as_u64().unwrap() >= version, "{what}");
        assert_eq!(m["record"]["generation"], m["generation"], "{what}");
        assert_eq!(m["body_len"], 16);
    }
}

#[test]
fn raw_key_slots_second_slot_and_rotated_keys() {
    if !decoder_ready() {
        return;
    }
    let storage = MemoryBackend::new();
    let vault = fast()
        .create_with_backend(storage.clone(), &raw_key())
        .unwrap();
    let pass_slot = vault.add_keyslot(&passphrase(PASSPHRASE)).unwrap();
    let ns = vault.namespace("tenant").unwrap();
    let token = Token::new("at-raw".into()).with_scopes(["s"]);
    let version = ns.put("api.example.org", &token).unwrap().as_u64();
    ns.put(
        "api-key",
        &Secret::from_text(SecretString::from("sk-123".to_owned())),
    )
    .unwrap();
    vault.close().unwrap();

    let stored = Stored::read(&storage);
    let found = stored.find(Unlock::Raw(RAW_KEY), "tenant", "api.example.org");
    assert_eq!(found.out["record"]["access_token"], "at-raw");
    assert_eq!(found.out["record"]["scopes"], json!(["s"]));
    assert_eq!(found.out["generation"], version);
    assert_eq!(
        found.out["slot"],
        json!({"id": 0, "kind": 2, "salt_len": 32})
    );
    let incarnation = found.out["incarnation"].clone();
    let record_key = found.key.to_vec();
    let secret = stored.find(Unlock::Passphrase(PASSPHRASE), "tenant", "api-key");
    assert_eq!(secret.out["record"]["value_hex"], hex(b"sk-123"));
    assert_eq!(secret.out["slot"]["id"], pass_slot);
    assert_eq!(secret.out["slot"]["kind"], 1);
    assert_eq!(secret.out["header"]["slot_count"], 2);
    assert_eq!(secret.prefix(), found.prefix(), "one namespace, one prefix");
    assert_eq!(scan_all(&storage, RECORDS, found.prefix()).len(), 2);
    refused(
        &job(
            &stored.header,
            Unlock::Raw([0x5b; 32]),
            found.entry,
            "tenant",
            "api-key",
            secret.record,
        ),
        "unwrap failed",
        "wrong_key",
    );

    // A namespace key rotation re-seals the records under key id 2, keeping their generation,
    // the namespace's incarnation and so their storage keys.
    let vault = fast()
        .open_with_backend(storage.clone(), &raw_key())
        .unwrap();
    let report = vault.rotate_namespace_key("tenant", |_| {}).unwrap();
    assert_eq!(report.key_id, 2);
    vault.close().unwrap();
    let stored = Stored::read(&storage);
    let found = stored.find(Unlock::Raw(RAW_KEY), "tenant", "api.example.org");
    assert_eq!(found.out["key_id"], 2);
    assert_eq!(found.out["namespace_key_ids"], json!([2]));
    assert_eq!(found.out["active_key_id"], 2);
    assert_eq!(found.out["generation"], version);
    assert_eq!(found.out["incarnation"], incarnation);
    assert_eq!(found.key, record_key.as_slice());
    // The finished rotation left no mark in `m`: the marker and one entry, two records, the
    // anchor and one manifest.
    assert_eq!(stored.items.len(), 2 + 2 + 2);
}

/// A recovery-key slot (kind 3): the decoder turns the text a user wrote down into the key
/// as section 4.2.1 says, opens the slot with it, and reports a typo as a typo.
#[test]
fn a_recovery_key_slot_opens_from_its_text() {
    if !decoder_ready() {
        return;
    }
    let leak = |text: String| -> &'static str { Box::leak(text.into_boxed_str()) };
    let storage = MemoryBackend::new();
    let vault = fast()
        .create_with_backend(storage.clone(), &raw_key())
        .unwrap();
    let recovery = RecoveryKey::generate().unwrap();
    let slot = vault
        .add_keyslot(&KeySource::recovery_key(&recovery))
        .unwrap();
    vault
        .namespace("tenant")
        .unwrap()
        .put("api.example.org", &Token::new("at-rk".into()))
        .unwrap();
    vault.close().unwrap();

    let text = leak(recovery.expose_text().expose_secret().to_owned());
    let stored = Stored::read(&storage);
    let found = stored.find(Unlock::Recovery(text), "tenant", "api.example.org");
    assert_eq!(found.out["record"]["access_token"], "at-rk");
    assert_eq!(
        found.out["slot"],
        json!({"id": slot, "kind": 3, "salt_len": 32})
    );
    // Spaces instead of dashes read the same.
    let spaced = leak(text.replace('-', " "));
    decode(&header_job(&stored.header, Unlock::Recovery(spaced))).unwrap();
    // A typo is refused as one, naming its group; another key is a wrong key.
    let mut typo = text.as_bytes().to_vec();
    typo[9] = if typo[9] == b'9' { b'8' } else { b'9' };
    let typo = leak(String::from_utf8(typo).unwrap());
    refused(
        &header_job(&stored.header, Unlock::Recovery(typo)),
        "typo in group 2",
        "typo",
    );
    let other = leak(
        RecoveryKey::generate()
            .unwrap()
            .expose_text()
            .expose_secret()
            .to_owned(),
    );
    refused(
        &header_job(&stored.header, Unlock::Recovery(other)),
        "unwrap failed",
        "wrong_key",
    );
}

/// An OS keyring slot (kind 4), its key in keyring-core's in-memory store: the decoder finds
/// the slot by its entry's names and opens it with the key that entry holds (4.2.2).
#[cfg(feature = "keyring")]
#[test]
fn a_keyring_slot_opens_with_the_key_its_entry_holds() {
    use std::sync::Arc;
    use tokenvault::keyring_core::{mock, CredentialStore, Entry};
    use tokenvault::Keyring;

    if !decoder_ready() {
        return;
    }
    let leak = |text: String| -> &'static str { Box::leak(text.into_boxed_str()) };
    let store: Arc<CredentialStore> = mock::Store::new().unwrap();
    let keyring = Keyring::with_store(Arc::clone(&store));
    let storage = MemoryBackend::new();
    let vault = fast()
        .create_with_backend(storage.clone(), &raw_key())
        .unwrap();
    let slot = vault.add_keyslot(&KeySource::keyring(&keyring)).unwrap();
    let entry = vault.keyslots().unwrap()[1].keyring_entry.clone().unwrap();
    vault
        .namespace("tenant")
        .unwrap()
        .put("api.example.org", &Token::new("at-kr".into()))
        .unwrap();
    vault.close().unwrap();

    let held = Entry::new_in_store(&store, &entry.service, &entry.account)
        .unwrap()
        .get_secret()
        .unwrap();
    let key: [u8; 32] = held.as_slice().try_into().unwrap();
    let (service, account) = (leak(entry.service.clone()), leak(entry.account.clone()));
    let stored = Stored::read(&storage);
    let found = stored.find(
        Unlock::Keyring(service, account, key),
        "tenant",
        "api.example.org",
    );
    assert_eq!(found.out["record"]["access_token"], "at-kr");
    assert_eq!(
        found.out["slot"],
        json!({"id": slot, "kind": 4, "salt_len": 32, "service": "tokenvault", "account": account})
    );
    // Another key under the same names is no key for the slot; other names find no slot.
    let mut other = key;
    other[0] ^= 1;
    refused(
        &header_job(&stored.header, Unlock::Keyring(service, account, other)),
        "unwrap failed",
        "wrong_key",
    );
    refused(
        &header_job(&stored.header, Unlock::Keyring(service, "vault-other", key)),
        "unwrap failed",
        "wrong_key",
    );
}

#[test]
fn default_kdf_parameters_with_four_lanes() {
    if !decoder_ready() {
        return;
    }
    let storage = MemoryBackend::new();
    let vault = VaultOptions::new()
        .create_with_backend(storage.clone(), &passphrase(PASSPHRASE))
        .unwrap();
    let token = Token::new("at-default".into()).with_identity("u1");
    vault.namespace("t").unwrap().put("rs", &token).unwrap();
    vault.close().unwrap();

    let stored = Stored::read(&storage);
    let (_, entry) = stored.namespace_entries().next().unwrap();
    let (_, record) = stored.records().next().unwrap();
    let out = decode(&job(
        &stored.header,
        Unlock::Passphrase(PASSPHRASE),
        entry,
        "t",
        "rs",
        record,
    ))
    .unwrap();
    assert_eq!(
        out["slot"],
        json!({"id": 0, "kind": 1, "salt_len": 32, "m_kib": 65536, "t": 3, "p": 4})
    );
    assert_eq!(out["record"]["access_token"], "at-default");
    assert_eq!(out["record"]["identity"], "u1");
    refused(
        &job(
            &stored.header,
            Unlock::Passphrase("not the passphrase"),
            entry,
            "t",
            "rs",
            record,
        ),
        "unwrap failed",
        "wrong_key",
    );
}

#[test]
fn tampered_misplaced_and_wrongly_unlocked_bytes_are_refused() {
    if !decoder_ready() {
        return;
    }
    let storage = MemoryBackend::new();
    let vault = fast()
        .create_with_backend(storage.clone(), &passphrase(PASSPHRASE))
        .unwrap();
    let ns = vault.namespace("tenant").unwrap();
    ns.put("a", &Token::new("at-a".into())).unwrap();
    ns.put("b", &Token::new("at-b".into())).unwrap();
    vault
        .namespace("other")
        .unwrap()
        .put("a", &Token::new("at-other".into()))
        .unwrap();
    vault.close().unwrap();

    let stored = Stored::read(&storage);
    let unlock = Unlock::Passphrase(PASSPHRASE);
    let header = &stored.header;
    let a = stored.find(unlock, "tenant", "a");
    let b = stored.find(unlock, "tenant", "b");
    let other = stored.find(unlock, "other", "a");
    let entry = a.entry;
    let record_a = a.record.to_vec();

    // A copy of the trees under the same header opens and reads: the three trees are the
    // whole vault besides the header.
    let copy = fast()
        .open_with_backend(stored.restore(header), &passphrase(PASSPHRASE))
        .unwrap();
    assert!(copy
        .namespace("tenant")
        .unwrap()
        .get::<Token>("a")
        .unwrap()
        .is_some());
    copy.close().unwrap();

    // The wrong passphrase.
    refused(
        &job(
            header,
            Unlock::Passphrase("wrong"),
            entry,
            "tenant",
            "a",
            &record_a,
        ),
        "unwrap failed",
        "wrong_key",
    );
    assert!(matches!(
        open_error(&stored, header, &passphrase("wrong")),
        Error::WrongKey
    ));

    // A record presented under another key, another namespace, or as the manifest.
    for (namespace, key, entry) in [
        ("tenant", "b", entry),
        ("tenant", "A", entry),
        ("other", "a", other.entry),
    ] {
        refused(
            &job(header, unlock, entry, namespace, key, &record_a),
            "record: authentication failed",
            "damaged",
        );
    }
    refused(
        &manifest_job(header, unlock, entry, "tenant", &record_a),
        "record: authentication failed",
        "damaged",
    );
    // A namespace with no entry in storage.
    refused(
        &with(
            job(header, unlock, entry, "no-such-namespace", "a", &record_a),
            "entry_hex",
            None,
        ),
        "no entry",
        "not_found",
    );
    // The manifest presented as a record.
    refused(
        &job(
            header,
            unlock,
            entry,
            "tenant",
            "a",
            stored.manifest(a.prefix()),
        ),
        "record: authentication failed",
        "damaged",
    );
    // Records of the same namespace are not interchangeable.
    refused(
        &job(header, unlock, entry, "tenant", "a", b.record),
        "record: authentication failed",
        "damaged",
    );

    // One flipped byte anywhere in the record: prefix, nonce, ciphertext, tag.
    let n = record_a.len();
    for (at, what) in [
        (1, "record type"),
        (2, "key the namespace does not have"),
        (6, "authentication failed"),
        (13, "authentication failed"),
        (14, "authentication failed"),
        (37, "authentication failed"),
        (38, "authentication failed"),
        (100, "authentication failed"),
        (n - 17, "authentication failed"),
        (n - 1, "authentication failed"),
    ] {
        let mut bad = record_a.clone();
        bad[at] ^= 0x01;
        refused(
            &job(header, unlock, entry, "tenant", "a", &bad),
            what,
            "damaged",
        );
    }
    // The format version: a format 1 record in a format 2 vault, and a newer one.
    let mut older = record_a.clone();
    older[0] = 1;
    refused(
        &job(header, unlock, entry, "tenant", "a", &older),
        "format version 1 in a format 2 vault",
        "damaged",
    );
    let mut newer = record_a.clone();
    newer[0] = 3;
    refused(
        &job(header, unlock, entry, "tenant", "a", &newer),
        "unsupported format version",
        "unsupported_version",
    );
    // Truncated, extended, and not a whole bucket.
    refused(
        &job(header, unlock, entry, "tenant", "a", &record_a[..n - 1]),
        "truncated",
        "damaged",
    );
    let mut longer = record_a.clone();
    longer.extend_from_slice(&[0u8; 256]);
    refused(
        &job(header, unlock, entry, "tenant", "a", &longer),
        "authentication failed",
        "damaged",
    );
    longer.truncate(n + 1);
    refused(
        &job(header, unlock, entry, "tenant", "a", &longer),
        "whole number of buckets",
        "damaged",
    );

    // One flipped byte in the entry: version, entry key id, incarnation, nonce, ciphertext,
    // tag; and a truncated or extended entry.
    let entry_len = entry.len();
    for (at, what, class) in [
        (0, "unsupported format version", "unsupported_version"),
        (1, "entry-wrapping key the header does not have", "damaged"),
        (5, "namespace entry: authentication failed", "damaged"),
        (20, "namespace entry: authentication failed", "damaged"),
        (21, "namespace entry: authentication failed", "damaged"),
        (44, "namespace entry: authentication failed", "damaged"),
        (45, "namespace entry: authentication failed", "damaged"),
        (
            entry_len - 17,
            "namespace entry: authentication failed",
            "damaged",
        ),
        (
            entry_len - 1,
            "namespace entry: authentication failed",
            "damaged",
        ),
    ] {
        let mut bad = entry.to_vec();
        bad[at] ^= 0x01;
        refused(
            &job(header, unlock, &bad, "tenant", "a", &record_a),
            what,
            class,
        );
    }
    refused(
        &job(
            header,
            unlock,
            &entry[..entry_len - 1],
            "tenant",
            "a",
            &record_a,
        ),
        "namespace entry: truncated",
        "damaged",
    );
    let mut longer = entry.to_vec();
    longer.push(0);
    refused(
        &job(header, unlock, &longer, "tenant", "a", &record_a),
        "namespace entry: authentication failed",
        "damaged",
    );
    // ... which the library reports as damage too.
    let copy = stored.restore(header);
    let mut bad = entry.to_vec();
    bad[50] ^= 0x01;
    copy.put(ENTRIES, a.ns_id, bad).unwrap();
    assert_damaged(&copy, "tenant", "a");

    // The header: a flipped byte is damage found by the checksum, before any key.
    let mut bad = header.clone();
    bad[40] ^= 0x01;
    refused(
        &job(&bad, unlock, entry, "tenant", "a", &record_a),
        "checksum",
        "damaged",
    );
    assert!(matches!(
        open_error(&stored, &bad, &passphrase(PASSPHRASE)),
        Error::Damaged(_)
    ));

    // Offsets from docs/format.md 3.2-3.4: body at 14, seqid at 30, the first slot at 44
    // (id 44..48, kind 48, params_len 49..51), its params at 51 (version, m, t, p).
    assert_eq!(header[48], 1, "the first slot is a passphrase slot");
    assert_eq!(&header[51..55], &0x13u32.to_le_bytes());
    assert_eq!(&header[55..59], &64u32.to_le_bytes());
    assert_eq!(header.len(), ONE_SLOT_HEADER_LEN);

    // An edit with a recomputed checksum is caught by the MAC after the unlock: the seqid,
    // the epoch.
    for at in [30, EPOCH_AT] {
        let mut edited = header.clone();
        edited[at] ^= 0x01;
        recompute_checksum(&mut edited);
        refused(
            &job(&edited, unlock, entry, "tenant", "a", &record_a),
            "MAC",
            "damaged",
        );
        assert!(matches!(
            open_error(&stored, &edited, &passphrase(PASSPHRASE)),
            Error::Damaged(_)
        ));
    }
    // The entry-wrapping keys' count out of bounds, or an active key id the header does not
    // hold: the header does not parse.
    for (at, value, what) in [
        (EWK_COUNT_AT, 0, "entry-wrapping key count out of bounds"),
        (EWK_COUNT_AT, 3, "entry-wrapping key count out of bounds"),
        (
            ACTIVE_EWK_AT,
            header[ACTIVE_EWK_AT] ^ 0x01,
            "active entry-wrapping key",
        ),
    ] {
        let mut edited = header.clone();
        edited[at] = value;
        recompute_checksum(&mut edited);
        refused(
            &job(&edited, unlock, entry, "tenant", "a", &record_a),
            what,
            "damaged",
        );
        assert!(matches!(
            open_error(&stored, &edited, &passphrase(PASSPHRASE)),
            Error::Damaged(_)
        ));
    }

    // Argon2 parameters out of bounds are refused before any derivation.
    for (offset, value) in [
        (59, 65u32),               // t > 64
        (59, 0),                   // t = 0
        (63, 17),                  // p > 16
        (55, 4 * 1024 * 1024 + 1), // m > 4 GiB
        (55, 7),                   // m < 8 p
    ] {
        let mut edited = header.clone();
        edited[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
        recompute_checksum(&mut edited);
        refused(
            &job(&edited, unlock, entry, "tenant", "a", &record_a),
            "Argon2 bounds",
            "damaged",
        );
        assert!(matches!(
            open_error(&stored, &edited, &passphrase(PASSPHRASE)),
            Error::Damaged(_)
        ));
    }
    // Parameters inside the bounds but edited: the slot no longer unwraps (wrong key).
    let mut edited = header.clone();
    edited[59..63].copy_from_slice(&2u32.to_le_bytes());
    recompute_checksum(&mut edited);
    refused(
        &job(&edited, unlock, entry, "tenant", "a", &record_a),
        "unwrap failed",
        "wrong_key",
    );
    assert!(matches!(
        open_error(&stored, &edited, &passphrase(PASSPHRASE)),
        Error::WrongKey
    ));

    // A newer format version is reported as such (it is checked before the checksum); a
    // format 2 header relabelled as format 1 fails the checksum.
    let mut newer = header.clone();
    newer[8] = 3;
    refused(
        &job(&newer, unlock, entry, "tenant", "a", &record_a),
        "unsupported format version",
        "unsupported_version",
    );
    assert!(matches!(
        open_error(&stored, &newer, &passphrase(PASSPHRASE)),
        Error::UnsupportedVersion {
            found: 3,
            supported: 2
        }
    ));
    let mut older = header.clone();
    older[8] = 1;
    refused(
        &job(&older, unlock, entry, "tenant", "a", &record_a),
        "checksum",
        "damaged",
    );
}

#[test]
fn entries_and_records_moved_elsewhere_are_refused() {
    if !decoder_ready() {
        return;
    }
    let storage = MemoryBackend::new();
    let vault = fast()
        .create_with_backend(storage.clone(), &passphrase(PASSPHRASE))
        .unwrap();
    vault
        .namespace("tenant")
        .unwrap()
        .put("a", &Token::new("at-a".into()))
        .unwrap();
    vault
        .namespace("other")
        .unwrap()
        .put("a", &Token::new("at-other".into()))
        .unwrap();
    vault.close().unwrap();

    let stored = Stored::read(&storage);
    let unlock = Unlock::Passphrase(PASSPHRASE);
    let header = &stored.header;
    let a = stored.find(unlock, "tenant", "a");
    let other = stored.find(unlock, "other", "a");
    assert_ne!(a.out["incarnation"], other.out["incarnation"]);

    // An entry moved to another namespace id: its AAD binds the id.
    refused(
        &entry_job(header, unlock, "tenant", other.entry),
        "namespace entry: authentication failed",
        "damaged",
    );
    refused(
        &with(
            entry_job(header, unlock, "tenant", a.entry),
            "entry_key_hex",
            Some(other.ns_id),
        ),
        "misplaced: namespace entry stored under another namespace id",
        "damaged",
    );
    let copy = stored.restore(header);
    copy.put(ENTRIES, a.ns_id, other.entry.to_vec()).unwrap();
    assert_damaged(&copy, "tenant", "a");

    // A record moved under another namespace's prefix: found there it is misplaced, and read
    // as that namespace's record (in place of one) it does not open.
    let moved = [other.prefix(), &a.key[NS_ID_LEN + INCARNATION_LEN..]].concat();
    refused(
        &with(
            job(header, unlock, a.entry, "tenant", "a", a.record),
            "record_key_hex",
            Some(moved.as_slice()),
        ),
        "misplaced: record stored under another namespace id",
        "damaged",
    );
    refused(
        &job(header, unlock, other.entry, "other", "a", a.record),
        "record: authentication failed",
        "damaged",
    );
    let copy = stored.restore(header);
    copy.put(RECORDS, other.key, a.record.to_vec()).unwrap();
    assert_damaged(&copy, "other", "a");

    // The namespace removed and created again: the same id, a new incarnation, and the old
    // incarnation's records and manifest are gone.
    let vault = fast()
        .open_with_backend(storage.clone(), &passphrase(PASSPHRASE))
        .unwrap();
    assert!(vault.remove_namespace("tenant").unwrap());
    vault
        .namespace("tenant")
        .unwrap()
        .put("a", &Token::new("at-a2".into()))
        .unwrap();
    vault.close().unwrap();
    let again = Stored::read(&storage);
    let a2 = again.find(unlock, "tenant", "a");
    assert_eq!(a2.out["record"]["access_token"], "at-a2");
    assert_eq!(a2.ns_id, a.ns_id, "the same name, the same namespace id");
    assert_ne!(
        a2.out["incarnation"], a.out["incarnation"],
        "a new incarnation"
    );
    assert!(scan_all(&storage, RECORDS, a.prefix()).is_empty());
    assert!(again.manifests().all(|(k, _)| k != a.prefix()));

    // A record or manifest of the earlier incarnation does not open under the new entry,
    // and found under the old prefix it is misplaced.
    refused(
        &job(&again.header, unlock, a2.entry, "tenant", "a", a.record),
        "record: authentication failed",
        "damaged",
    );
    refused(
        &manifest_job(
            &again.header,
            unlock,
            a2.entry,
            "tenant",
            stored.manifest(a.prefix()),
        ),
        "record: authentication failed",
        "damaged",
    );
    refused(
        &with(
            job(&again.header, unlock, a2.entry, "tenant", "a", a2.record),
            "record_key_hex",
            Some(a.key),
        ),
        "misplaced: record stored under another incarnation",
        "damaged",
    );
    // ... and put in place of the new incarnation's record, the library reports damage.
    let copy = again.restore(&again.header);
    copy.put(RECORDS, a2.key, a.record.to_vec()).unwrap();
    assert_damaged(&copy, "tenant", "a");
}

#[test]
fn the_anchor_holds_the_epoch_and_a_rollback_is_refused() {
    if !decoder_ready() {
        return;
    }
    let storage = MemoryBackend::new();
    let vault = fast()
        .create_with_backend(storage.clone(), &passphrase(PASSPHRASE))
        .unwrap();
    let ns = vault.namespace("tenant").unwrap();
    ns.put("a", &Token::new("at-1".into())).unwrap();
    vault.close().unwrap();
    let first = Stored::read(&storage);
    let unlock = Unlock::Passphrase(PASSPHRASE);
    let anchor_job = |stored: &Stored, anchor: Option<&[u8]>| {
        with(header_job(&stored.header, unlock), "anchor_hex", anchor)
    };
    let out = decode(&anchor_job(&first, first.anchor())).unwrap();
    let epoch = out["anchor"]["epoch"].as_u64().expect("epoch");
    assert!(epoch >= 1, "closing checkpoints: {out}");
    assert_eq!(out["header"]["epoch"], epoch);

    // A write and a checkpoint raise the epoch, in the anchor and then in the header.
    let vault = fast()
        .open_with_backend(storage.clone(), &passphrase(PASSPHRASE))
        .unwrap();
    vault
        .namespace("tenant")
        .unwrap()
        .put("a", &Token::new("at-2".into()))
        .unwrap();
    vault.checkpoint().unwrap();
    vault.close().unwrap();
    let second = Stored::read(&storage);
    let out = decode(&anchor_job(&second, second.anchor())).unwrap();
    let raised = out["anchor"]["epoch"].as_u64().expect("epoch");
    assert!(raised > epoch, "{out}");
    assert_eq!(out["header"]["epoch"], raised);
    let anchor = second.anchor().expect("the anchor");
    assert_eq!(&anchor[1..9], &raised.to_le_bytes());

    // A tampered anchor: its MAC binds the vault and the epoch.
    for (at, what, class) in [
        (0, "unsupported format version", "unsupported_version"),
        (1, "anchor: MAC mismatch", "damaged"),
        (8, "anchor: MAC mismatch", "damaged"),
        (9, "anchor: MAC mismatch", "damaged"),
        (40, "anchor: MAC mismatch", "damaged"),
    ] {
        let mut bad = anchor.to_vec();
        bad[at] ^= 0x01;
        refused(&anchor_job(&second, Some(bad.as_slice())), what, class);
    }
    refused(
        &anchor_job(&second, Some(&anchor[..40])),
        "anchor: wrong length",
        "damaged",
    );
    // Another vault's anchor does not verify.
    let elsewhere = MemoryBackend::new();
    let vault = fast()
        .create_with_backend(elsewhere.clone(), &passphrase(PASSPHRASE))
        .unwrap();
    vault
        .namespace("tenant")
        .unwrap()
        .put("a", &Token::new("at".into()))
        .unwrap();
    vault.close().unwrap();
    let foreign = Stored::read(&elsewhere);
    refused(
        &anchor_job(&second, foreign.anchor()),
        "anchor: MAC mismatch",
        "damaged",
    );

    // The first anchor put back (storage rolled back past the second checkpoint), or no
    // anchor at all: refused, by the decoder and by `open`, unless the rollback is accepted.
    refused(
        &anchor_job(&second, first.anchor()),
        "rolled back",
        "damaged",
    );
    refused(&anchor_job(&second, None), "anchor: missing", "damaged");
    let mut accepted = anchor_job(&second, first.anchor());
    accepted["accept_rollback"] = json!(true);
    let out = decode(&accepted).unwrap();
    assert_eq!(
        out["anchor"],
        json!({"present": true, "epoch": epoch, "rolled_back": true})
    );
    let rolled_back = second.restore(&second.header);
    rolled_back
        .put(MANIFESTS, ANCHOR_KEY, first.anchor().unwrap().to_vec())
        .unwrap();
    assert!(matches!(
        fast().open_with_backend(rolled_back.clone(), &passphrase(PASSPHRASE)),
        Err(Error::Damaged(_))
    ));
    assert!(fast()
        .accept_rollback(true)
        .open_with_backend(rolled_back, &passphrase(PASSPHRASE))
        .is_ok());
    let no_anchor = second.restore(&second.header);
    no_anchor.remove(MANIFESTS, ANCHOR_KEY).unwrap();
    assert!(matches!(
        fast().open_with_backend(no_anchor, &passphrase(PASSPHRASE)),
        Err(Error::Damaged(_))
    ));

    // An anchor ahead of the header (a checkpoint interrupted before its header write) is
    // not a rollback.
    let out = decode(&with(
        header_job(&first.header, unlock),
        "anchor_hex",
        second.anchor(),
    ))
    .unwrap();
    assert_eq!(out["anchor"]["rolled_back"], false);
    assert!(fast()
        .open_with_backend(second.restore(&first.header), &passphrase(PASSPHRASE))
        .is_ok());
}

/// The golden v1 vault's stored bytes (`tests/golden/v1/backend.json`) still decode: format
/// 1 stays readable for the upgrade (docs/format.md section 11).
#[test]
fn golden_v1_vault_still_decodes() {
    if !decoder_ready() {
        return;
    }
    let golden: Value = serde_json::from_str(&std::fs::read_to_string(GOLDEN_V1).unwrap()).unwrap();
    assert_eq!(golden["format_version"], 1);
    let header = &golden["header"];
    let trees = golden["trees"].as_object().expect("trees");
    for (namespace, versions) in golden["versions"].as_object().expect("versions") {
        let versions = versions.as_object().expect("versions of a namespace");
        let mut tree_of_namespace = None;
        for (key, version) in versions {
            let mut found = Vec::new();
            for (tree, records) in trees {
                for (id, record) in records.as_object().expect("records") {
                    if id == "00" {
                        continue;
                    }
                    let job = json!({
                        "header_hex": header,
                        "raw_key_hex": golden["raw_key"],
                        "namespace": namespace,
                        "key": key,
                        "record_hex": record,
                    });
                    if let Ok(out) = decode(&job) {
                        found.push((out, tree, id));
                    }
                }
            }
            assert_eq!(found.len(), 1, "{namespace}/{key} must decode exactly once");
            let (out, tree, id) = found.pop().expect("one");
            assert_eq!(out["header"]["format_version"], 1);
            assert_eq!(
                out["namespace_id"],
                tree.as_str(),
                "tree name = namespace id"
            );
            assert_eq!(out["record_id"], id.as_str(), "storage key = record id");
            assert_eq!(out["generation"], *version, "{namespace}/{key}");
            assert_eq!(out["key"], key.as_str());
            tree_of_namespace = Some(tree);
        }
        let tree = tree_of_namespace.expect("a namespace with records");
        let manifest = json!({
            "header_hex": header,
            "passphrase": golden["passphrase"],
            "namespace": namespace,
            "record_hex": trees[tree.as_str()]["00"],
            "manifest": true,
        });
        let out = decode(&manifest).unwrap();
        assert_eq!(out["record"]["count"], versions.len(), "{namespace}");
        assert_eq!(out["slot"]["kind"], 1);
    }
}

/// The golden format-2 vault (`tests/golden/v2/backend.json`) decodes with the independent
/// decoder: every namespace's entry (found among the stored entries by trying each: an entry
/// opens only as its own name's), each record at its storage key, the manifest, the anchor
/// and the marker.
#[test]
fn golden_v2_vault_decodes() {
    if !decoder_ready() {
        return;
    }
    let golden: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/golden/v2/backend.json"
        ))
        .unwrap(),
    )
    .unwrap();
    assert_eq!(golden["format_version"], 2);
    let bytes = |v: &Value| -> Vec<u8> {
        let s = v.as_str().expect("hex");
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    };
    let header = bytes(&golden["header"]);
    let raw: [u8; 32] = bytes(&golden["raw_key"]).try_into().unwrap();
    let unlock = Unlock::Raw(raw);
    let trees = &golden["trees"];
    let tree = |name: &str| -> Vec<(Vec<u8>, Vec<u8>)> {
        let t = trees[hex(name.as_bytes())].as_object().expect("tree");
        t.iter()
            .map(|(k, v)| (bytes(&json!(k)), bytes(v)))
            .collect()
    };
    let (entries, records, manifests) = (tree("e"), tree("r"), tree("m"));
    let anchor = manifests.iter().find(|(k, _)| k == &[0]).unwrap().1.clone();
    let marker = entries.iter().find(|(k, _)| k == &[0]).unwrap().1.clone();
    let out = decode(&with(
        with(header_job(&header, unlock), "anchor_hex", Some(&anchor)),
        "marker_hex",
        Some(&marker),
    ))
    .unwrap();
    assert_eq!(out["header"]["format_version"], 2);
    assert_eq!(out["anchor"]["epoch"], out["header"]["epoch"]);
    for (namespace, versions) in golden["versions"].as_object().expect("versions") {
        let (entry_key, entry) = entries
            .iter()
            .filter(|(k, _)| k.len() == 32)
            .find(|(_, e)| decode(&entry_job(&header, unlock, namespace, e)).is_ok())
            .unwrap_or_else(|| panic!("no entry opens as {namespace}"));
        let opened = decode(&with(
            entry_job(&header, unlock, namespace, entry),
            "entry_key_hex",
            Some(entry_key),
        ))
        .unwrap();
        let incarnation = bytes(&opened["incarnation"]);
        let mut prefix = entry_key.clone();
        prefix.extend_from_slice(&incarnation);
        for (key, version) in versions.as_object().expect("versions of a namespace") {
            let found: Vec<Value> = records
                .iter()
                .filter(|(k, _)| k.starts_with(&prefix))
                .filter_map(|(k, r)| {
                    decode(&with(
                        job(&header, unlock, entry, namespace, key, r),
                        "record_key_hex",
                        Some(k),
                    ))
                    .ok()
                })
                .collect();
            assert_eq!(found.len(), 1, "{namespace}/{key} must decode exactly once");
            assert_eq!(found[0]["generation"], *version, "{namespace}/{key}");
            assert_eq!(found[0]["key"], key.as_str());
        }
        let manifest = &manifests.iter().find(|(k, _)| *k == prefix).unwrap().1;
        let out = decode(&manifest_job(&header, unlock, entry, namespace, manifest)).unwrap();
        let count = versions.as_object().expect("versions").len();
        assert_eq!(out["record"]["count"], count, "{namespace}");
    }
}
