//! The on-disk format specification (`docs/format.md`) checked against the library.
//!
//! `tests/decoder/decode_record.py` is an independent decoder written from the specification
//! only (Python, PyNaCl, argon2-cffi). These tests write vaults through the public API, take
//! the stored bytes through the `Backend` trait, and require the decoder to unwrap the
//! keyslot and decrypt every record to exactly what was written, and to refuse tampered or
//! misplaced bytes.
//!
//! Without `python3` and the two modules the tests print a message and pass, unless the `CI`
//! environment variable is set, where they fail.

// A test harness: failing loudly on anything unexpected is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, UNIX_EPOCH};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use support::BackendExt;
use tokenvault::backend::{Backend, MemoryBackend};
use tokenvault::secrecy::{SecretBox, SecretSlice, SecretString};
use tokenvault::{Error, KdfParams, KeySource, Secret, Token, VaultOptions};

const DECODER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/decoder/decode_record.py"
);
const PASSPHRASE: &str = "correct horse battery staple ✓";
const RAW_KEY: [u8; 32] = [0x5a; 32];

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
}

fn job(header: &[u8], unlock: Unlock, namespace: &str, key: &str, record: &[u8]) -> Value {
    let mut job = json!({
        "header_hex": hex(header),
        "namespace": namespace,
        "key": key,
        "record_hex": hex(record),
    });
    match unlock {
        Unlock::Passphrase(p) => job["passphrase"] = json!(p),
        Unlock::Raw(k) => job["raw_key_hex"] = json!(hex(&k)),
    }
    job
}

fn manifest_job(header: &[u8], unlock: Unlock, namespace: &str, record: &[u8]) -> Value {
    let mut job = job(header, unlock, namespace, "", record);
    job["manifest"] = json!(true);
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

/// Everything a backend holds: the header and `(tree, key, value)` for every entry.
struct Stored {
    header: Vec<u8>,
    entries: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)>,
}

impl Stored {
    fn read(backend: &MemoryBackend) -> Self {
        let header = backend.read_header().unwrap().expect("a header");
        let mut entries = Vec::new();
        for tree in backend.trees().unwrap() {
            let mut after: Option<Vec<u8>> = None;
            loop {
                let page = backend.scan(&tree, after.as_deref(), 3).unwrap();
                let Some((last, _)) = page.last() else { break };
                after = Some(last.clone());
                for (k, v) in page {
                    entries.push((tree.clone(), k, v));
                }
            }
        }
        Self { header, entries }
    }

    /// Records (not manifests), with their tree and storage key.
    fn records(&self) -> impl Iterator<Item = &(Vec<u8>, Vec<u8>, Vec<u8>)> {
        self.entries.iter().filter(|(_, k, _)| k.as_slice() != [0])
    }

    fn manifest(&self, tree: &[u8]) -> &[u8] {
        &self
            .entries
            .iter()
            .find(|(t, k, _)| t == tree && k.as_slice() == [0])
            .expect("a manifest in every namespace tree")
            .2
    }

    /// Decodes `(namespace, key)` against every stored record: exactly one must decode, and
    /// it must be stored in tree `namespace_id` under key `record_id`. Returns the result and
    /// the stored bytes.
    fn find(&self, unlock: Unlock, namespace: &str, key: &str) -> (Value, &[u8], &[u8]) {
        let mut found = Vec::new();
        for (tree, k, v) in self.records() {
            if let Ok(out) = decode(&job(&self.header, unlock, namespace, key, v)) {
                found.push((out, tree, k, v));
            }
        }
        assert_eq!(found.len(), 1, "{namespace}/{key} must decode exactly once");
        let (out, tree, k, v) = found.pop().expect("one");
        assert_eq!(out["namespace_id"], hex(tree), "tree name = namespace id");
        assert_eq!(out["record_id"], hex(k), "storage key = record id");
        (out, tree, v)
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

/// What `Vault::open` says about a header (on a fresh backend holding only that header).
fn open_error(header: &[u8], key: &KeySource) -> Error {
    let backend = MemoryBackend::new();
    backend.overwrite_header(header).unwrap();
    fast().open_with_backend(backend, key).unwrap_err()
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
    // Closing checkpoints the namespaces' generations into the header: one more write.
    let seqid = vault.header_seqid().unwrap() + 1;
    vault.close().unwrap();

    let stored = Stored::read(&storage);
    assert_eq!(stored.records().count(), cases.len());
    assert_eq!(
        stored.entries.len(),
        2 * cases.len(),
        "one manifest per tree"
    );
    let unlock = Unlock::Passphrase(PASSPHRASE);
    for (case, version) in cases.iter().zip(versions) {
        let (out, tree, record) = stored.find(unlock, case.namespace, case.key);
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
        assert_eq!(out["header"]["namespace_count"], cases.len(), "{what}");
        check_padding(&out, record);
        if case.key == "k" {
            assert_eq!(out["body_len"], 46, "the example body of the spec");
            assert_eq!(record.len(), 310);
        }
        if case.namespace == "tenant-ü/日本" {
            assert!(
                out["padded_len"].as_u64().unwrap() > 256,
                "a multi-bucket record"
            );
        }

        let manifest = stored.manifest(tree);
        let m = decode(&manifest_job(
            &stored.header,
            unlock,
            case.namespace,
            manifest,
        ))
        .unwrap_or_else(|e| panic!("{what}: manifest: {e}"));
        assert_eq!(m["record_type"], "manifest");
        assert_eq!(m["record_id"], "00");
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
    let (out, _, _) = stored.find(Unlock::Raw(RAW_KEY), "tenant", "api.example.org");
    assert_eq!(out["record"]["access_token"], "at-raw");
    assert_eq!(out["record"]["scopes"], json!(["s"]));
    assert_eq!(out["generation"], version);
    assert_eq!(out["slot"], json!({"id": 0, "kind": 2, "salt_len": 32}));
    let (out, _, _) = stored.find(Unlock::Passphrase(PASSPHRASE), "tenant", "api-key");
    assert_eq!(out["record"]["value_hex"], hex(b"sk-123"));
    assert_eq!(out["slot"]["id"], pass_slot);
    assert_eq!(out["slot"]["kind"], 1);
    assert_eq!(out["header"]["slot_count"], 2);
    let any_record = &stored.records().next().unwrap().2;
    refused(
        &job(
            &stored.header,
            Unlock::Raw([0x5b; 32]),
            "tenant",
            "api-key",
            any_record,
        ),
        "unwrap failed",
        "wrong_key",
    );

    // A namespace key rotation re-seals under key id 2 and keeps the generation.
    let vault = fast()
        .open_with_backend(storage.clone(), &raw_key())
        .unwrap();
    let report = vault.rotate_namespace_key("tenant", |_| {}).unwrap();
    assert_eq!(report.key_id, 2);
    vault.close().unwrap();
    let stored = Stored::read(&storage);
    let (out, _, _) = stored.find(Unlock::Raw(RAW_KEY), "tenant", "api.example.org");
    assert_eq!(out["key_id"], 2);
    assert_eq!(out["namespace_key_ids"], json!([2]));
    assert_eq!(out["active_key_id"], 2);
    assert_eq!(out["generation"], version);
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
    let record = &stored.records().next().unwrap().2;
    let out = decode(&job(
        &stored.header,
        Unlock::Passphrase(PASSPHRASE),
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
    let (_, tree_a, record_a) = stored.find(unlock, "tenant", "a");
    let (_, _, record_b) = stored.find(unlock, "tenant", "b");
    let record_a = record_a.to_vec();

    // The wrong passphrase.
    refused(
        &job(
            header,
            Unlock::Passphrase("wrong"),
            "tenant",
            "a",
            &record_a,
        ),
        "unwrap failed",
        "wrong_key",
    );
    assert!(matches!(
        open_error(header, &passphrase("wrong")),
        Error::WrongKey
    ));

    // A record presented under another key, another namespace, or as the manifest.
    for (namespace, key) in [("tenant", "b"), ("tenant", "A"), ("other", "a")] {
        refused(
            &job(header, unlock, namespace, key, &record_a),
            "authentication failed",
            "damaged",
        );
    }
    refused(
        &manifest_job(header, unlock, "tenant", &record_a),
        "authentication failed",
        "damaged",
    );
    refused(
        &job(header, unlock, "no-such-namespace", "a", &record_a),
        "no entry",
        "not_found",
    );
    // The manifest presented as a record.
    refused(
        &job(header, unlock, "tenant", "a", stored.manifest(tree_a)),
        "authentication failed",
        "damaged",
    );
    // Records of the same namespace are not interchangeable.
    refused(
        &job(header, unlock, "tenant", "a", record_b),
        "authentication failed",
        "damaged",
    );

    // One flipped byte anywhere in the record: prefix, nonce, ciphertext, tag.
    let n = record_a.len();
    for (at, what) in [
        (0, "format version"),
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
        refused(&job(header, unlock, "tenant", "a", &bad), what, "damaged");
    }
    let mut newer = record_a.clone();
    newer[0] = 2;
    refused(
        &job(header, unlock, "tenant", "a", &newer),
        "unsupported format version",
        "unsupported_version",
    );
    // Truncated, extended, and not a whole bucket.
    refused(
        &job(header, unlock, "tenant", "a", &record_a[..n - 1]),
        "truncated",
        "damaged",
    );
    let mut longer = record_a.clone();
    longer.extend_from_slice(&[0u8; 256]);
    refused(
        &job(header, unlock, "tenant", "a", &longer),
        "authentication failed",
        "damaged",
    );
    longer.truncate(n + 1);
    refused(
        &job(header, unlock, "tenant", "a", &longer),
        "whole number of buckets",
        "damaged",
    );

    // The header: a flipped byte is damage found by the checksum, before any key.
    let mut bad = header.clone();
    bad[40] ^= 0x01;
    refused(
        &job(&bad, unlock, "tenant", "a", &record_a),
        "checksum",
        "damaged",
    );
    assert!(matches!(
        open_error(&bad, &passphrase(PASSPHRASE)),
        Error::Damaged(_)
    ));

    // Offsets from docs/format.md 3.2-3.4: body at 14, seqid at 30, the first slot at 44
    // (id 44..48, kind 48, params_len 49..51), its params at 51 (version, m, t, p).
    assert_eq!(header[48], 1, "the first slot is a passphrase slot");
    assert_eq!(&header[51..55], &0x13u32.to_le_bytes());
    assert_eq!(&header[55..59], &64u32.to_le_bytes());

    // An edit with a recomputed checksum is caught by the MAC after the unlock.
    let mut edited = header.clone();
    edited[30] ^= 0x01;
    recompute_checksum(&mut edited);
    refused(
        &job(&edited, unlock, "tenant", "a", &record_a),
        "MAC",
        "damaged",
    );
    assert!(matches!(
        open_error(&edited, &passphrase(PASSPHRASE)),
        Error::Damaged(_)
    ));

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
            &job(&edited, unlock, "tenant", "a", &record_a),
            "Argon2 bounds",
            "damaged",
        );
        assert!(matches!(
            open_error(&edited, &passphrase(PASSPHRASE)),
            Error::Damaged(_)
        ));
    }
    // Parameters inside the bounds but edited: the slot no longer unwraps (wrong key).
    let mut edited = header.clone();
    edited[59..63].copy_from_slice(&2u32.to_le_bytes());
    recompute_checksum(&mut edited);
    refused(
        &job(&edited, unlock, "tenant", "a", &record_a),
        "unwrap failed",
        "wrong_key",
    );
    assert!(matches!(
        open_error(&edited, &passphrase(PASSPHRASE)),
        Error::WrongKey
    ));

    // A newer format version is reported as such (it is checked before the checksum).
    let mut newer = header.clone();
    newer[8] = 2;
    refused(
        &job(&newer, unlock, "tenant", "a", &record_a),
        "unsupported format version",
        "unsupported_version",
    );
    assert!(matches!(
        open_error(&newer, &passphrase(PASSPHRASE)),
        Error::UnsupportedVersion {
            found: 2,
            supported: 1
        }
    ));
}
