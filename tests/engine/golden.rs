//! Golden vaults: vault files of each on-disk format version, checked into the repository,
//! that every later tokenvault must open and read exactly (format 1 by upgrading it).
//!
//! - `tests/golden/vN/sled/`: a vault directory as [`Vault::create`] writes it (the header
//!   file and sled's `data/` directory; the empty lock file is left out);
//! - `tests/golden/vN/backend.json`: the same vault's stored bytes, backend-independent: the
//!   header file and every tree's key/value pairs, in hex, as the `Backend` trait returns
//!   them. Loaded into a `MemoryBackend`, it must open as well.
//!
//! Each version's files were written once by the `regenerate` test below (ignored), which
//! writes the current format's directory and refuses to overwrite one. **Never regenerate
//! an existing version**: these files are the compatibility promise; a new format version
//! gets a new directory next to them, and the old ones keep being tested. See
//! `tests/golden/README.md`.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use serde_json::{json, Value};
use support::{BackendExt, FaultyBackend};
use tokenvault::backend::{Backend, Batch, MemoryBackend, SledBackend};
use tokenvault::secrecy::{ExposeSecret, SecretBox, SecretSlice, SecretString};
use tokenvault::{Error, KdfParams, KeySource, Secret, SlotKind, Token, Vault, VaultOptions};

// ---------------------------------------------------------------------------------------
// What the golden vaults hold. Changing anything here makes the test fail against the
// checked-in files: that is the point. Do not "fix" it by regenerating v1.

/// The golden directories: format version 1 (read by upgrading it) and 2.
const V1: &str = "v1";
const V2: &str = "v2";

/// Slot 0: this raw key (bytes 0x00, 0x01, ..., 0x1f).
fn golden_raw_key() -> [u8; 32] {
    std::array::from_fn(|i| u8::try_from(i).unwrap())
}

/// Slot 2: this passphrase, with `KdfParams::insecure_for_tests()` (m = 64, t = 1, p = 1).
/// (Slot 1 was a passphrase slot that the generator added and removed again, so the vault
/// has `next_slot_id = 3` and a gap in its slot ids.)
const GOLDEN_PASSPHRASE: &str = "golden passphrase v1 — ünïcödé ✓";
const GOLDEN_PASSPHRASE_SLOT: u32 = 2;

const NS_ALPHA: &str = "tenant-alpha";
const NS_BETA: &str = "tenant-β/ünïcode";

enum Stored {
    Token(Token),
    Secret(Vec<u8>),
}

/// Every record of the golden vaults: (namespace, key, value).
fn golden_records() -> Vec<(&'static str, &'static str, Stored)> {
    let full = Token::new("golden-access-token-AT1-9f8e7d6c".into())
        .with_refresh_token("golden-refresh-token-RT1-5a4b3c2d".into())
        .with_token_type("Bearer")
        .with_expires_at(UNIX_EPOCH + Duration::from_secs(1_900_000_000))
        .with_scopes([
            "openid",
            "email",
            "urn:globus:auth:scope:transfer.api.globus.org:all",
        ])
        .with_identity("user-0001@idp.example.org")
        .with_resource_server("transfer.api.example.org")
        .with_extra_json(
            r#"{"id_token":"eyJhbGciOiJub25lIn0.eyJzdWIiOiJnb2xkZW4ifQ.","other_tokens":[]}"#
                .into(),
        );
    let dpop = Token::new("golden-dpop-access-token".into())
        .with_token_type("DPoP")
        // Before the Unix epoch: a negative i64 on disk.
        .with_expires_at(UNIX_EPOCH - Duration::from_secs(86_400))
        .with_scopes(["ünïcode:scope", ""])
        .with_identity("");
    // Long enough to need three 256-byte buckets.
    let long = Token::new("L".repeat(600).into())
        .with_refresh_token("R".repeat(100).into())
        .with_resource_server("long.example.org");
    vec![
        (NS_ALPHA, "transfer.api.example.org", Stored::Token(full)),
        (NS_ALPHA, "auth.example.org", Stored::Token(dpop)),
        (
            NS_ALPHA,
            "client-secret",
            Stored::Secret(b"golden-client-secret-CS1".to_vec()),
        ),
        (NS_BETA, "minimal", Stored::Token(Token::new("at".into()))),
        (NS_BETA, "long", Stored::Token(long)),
        (
            NS_BETA,
            "signing-key/ключ",
            Stored::Secret((0..=255u8).collect()),
        ),
    ]
}

fn raw_key_source() -> KeySource {
    KeySource::raw_key(SecretBox::new(Box::new(golden_raw_key())))
}

fn passphrase_source(p: &str) -> KeySource {
    KeySource::passphrase(SecretString::from(p))
}

fn golden_root(version: &str) -> PathBuf {
    [env!("CARGO_MANIFEST_DIR"), "tests", "golden", version]
        .iter()
        .collect()
}

// ---------------------------------------------------------------------------------------
// Helpers

fn to_hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        write!(s, "{b:02x}").unwrap();
        s
    })
}

fn from_hex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2));
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Everything a backend stores: the header and every tree's key/value pairs.
#[derive(Debug, PartialEq, Eq)]
struct Dump {
    header: Vec<u8>,
    trees: BTreeMap<Vec<u8>, BTreeMap<Vec<u8>, Vec<u8>>>,
}

fn dump(backend: &dyn Backend) -> Dump {
    let header = backend.read_header().unwrap().unwrap();
    let mut trees = BTreeMap::new();
    for tree in backend.trees().unwrap() {
        let mut entries = BTreeMap::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = backend.scan(&tree, &[], after.as_deref(), 64).unwrap();
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            entries.extend(page);
        }
        trees.insert(tree, entries);
    }
    Dump { header, trees }
}

fn dump_to_json(d: &Dump) -> Value {
    let trees: serde_json::Map<String, Value> = d
        .trees
        .iter()
        .map(|(tree, entries)| {
            let entries: serde_json::Map<String, Value> = entries
                .iter()
                .map(|(k, v)| (to_hex(k), Value::String(to_hex(v))))
                .collect();
            (to_hex(tree), Value::Object(entries))
        })
        .collect();
    json!({ "header": to_hex(&d.header), "trees": trees })
}

fn dump_from_json(v: &Value) -> Dump {
    let header = from_hex(v["header"].as_str().unwrap());
    let trees = v["trees"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(tree, entries)| {
            let entries = entries
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (from_hex(k), from_hex(v.as_str().unwrap())))
                .collect();
            (from_hex(tree), entries)
        })
        .collect();
    Dump { header, trees }
}

fn load_json(version: &str) -> Value {
    let path = golden_root(version).join("backend.json");
    let text =
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// Copies a directory tree. Files get mode 0644 and directories 0755, as a git checkout
/// leaves them (git does not keep the 0600/0700 modes tokenvault writes).
fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
            set_mode(&target, 0o644);
        }
    }
    set_mode(to, 0o755);
}

/// Removes the empty directories under `dir` (depth first); returns whether `dir` is empty.
fn remove_empty_dirs(dir: &Path) -> bool {
    let mut empty = true;
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() && remove_empty_dirs(&entry.path()) {
            fs::remove_dir(entry.path()).unwrap();
        } else {
            empty = false;
        }
    }
    empty
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

#[cfg(not(unix))]
fn set_mode(_: &Path, _: u32) {}

/// A fresh temporary copy of the sled golden directory (opening may write to it).
fn sled_copy(version: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("vault");
    copy_tree(&golden_root(version).join("sled"), &dir);
    (tmp, dir)
}

/// Every check of a golden vault's contents through the public API.
fn check_vault(vault: &Vault, version: &str) {
    let records = golden_records();

    // Namespaces, sorted.
    assert_eq!(vault.namespaces().unwrap(), [NS_ALPHA, NS_BETA]);

    // Keyslots: the raw key in slot 0, the passphrase in slot 2 with the insecure preset.
    let slots = vault.keyslots().unwrap();
    assert_eq!(slots.len(), 2, "{slots:?}");
    assert_eq!((slots[0].id, slots[0].kind), (0, SlotKind::RawKey));
    assert_eq!(slots[0].kdf, None);
    assert_eq!(
        (slots[1].id, slots[1].kind),
        (GOLDEN_PASSPHRASE_SLOT, SlotKind::Passphrase)
    );
    let kdf = slots[1].kdf.unwrap();
    assert_eq!((kdf.m_kib(), kdf.t(), kdf.p()), (64, 1, 1));
    assert!(kdf.is_insecure());
    assert_eq!(kdf, KdfParams::insecure_for_tests());

    // Keys per namespace, sorted.
    for ns_name in [NS_ALPHA, NS_BETA] {
        let mut expected: Vec<&str> = records
            .iter()
            .filter(|(n, _, _)| *n == ns_name)
            .map(|(_, k, _)| *k)
            .collect();
        expected.sort_unstable();
        assert_eq!(vault.namespace(ns_name).unwrap().keys().unwrap(), expected);
    }

    // Every value, field by field, and its version.
    let versions = load_json(version)["versions"].clone();
    for (ns_name, key, stored) in &records {
        let ns = vault.namespace(ns_name).unwrap();
        let want_version = versions[*ns_name][*key].as_u64().unwrap();
        match stored {
            Stored::Token(want) => {
                let (got, version) = ns.get_versioned::<Token>(key).unwrap().unwrap();
                assert_eq!(version.as_u64(), want_version, "{ns_name}/{key}");
                assert_eq!(
                    got.access_token().expose_secret(),
                    want.access_token().expose_secret()
                );
                assert_eq!(
                    got.refresh_token().map(|s| s.expose_secret().to_owned()),
                    want.refresh_token().map(|s| s.expose_secret().to_owned())
                );
                assert_eq!(got.token_type(), want.token_type());
                assert_eq!(got.expires_at(), want.expires_at());
                assert_eq!(got.scopes(), want.scopes());
                assert_eq!(got.identity(), want.identity());
                assert_eq!(got.resource_server(), want.resource_server());
                assert_eq!(
                    got.extra_json().map(|s| s.expose_secret().to_owned()),
                    want.extra_json().map(|s| s.expose_secret().to_owned())
                );
                assert!(got.same_as(want), "{ns_name}/{key}");
                // The record type is part of the format too.
                assert!(matches!(
                    ns.get::<Secret>(key),
                    Err(Error::WrongRecordType { .. })
                ));
            }
            Stored::Secret(want) => {
                let (got, version) = ns.get_versioned::<Secret>(key).unwrap().unwrap();
                assert_eq!(version.as_u64(), want_version, "{ns_name}/{key}");
                assert_eq!(got.expose_bytes(), &want[..], "{ns_name}/{key}");
                assert!(matches!(
                    ns.get::<Token>(key),
                    Err(Error::WrongRecordType { .. })
                ));
            }
        }
    }
    // The record the generator removed stays removed; an unknown namespace is empty.
    assert!(vault
        .namespace(NS_ALPHA)
        .unwrap()
        .get::<Token>("removed-record")
        .unwrap()
        .is_none());
    assert!(vault
        .namespace("tenant-gamma")
        .unwrap()
        .keys()
        .unwrap()
        .is_empty());

    // Everything authenticates; the manifests agree; no rotation is pending.
    let report = vault.verify(|_| {}).unwrap();
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.orphan_trees, 0);
    let ok: Vec<(String, u64)> = report
        .namespaces
        .iter()
        .map(|n| (n.namespace.clone(), n.ok))
        .collect();
    assert_eq!(ok, [(NS_ALPHA.to_owned(), 3), (NS_BETA.to_owned(), 3)]);
}

/// The golden vault still takes writes, and reopens with them.
fn check_writable(vault: &Vault) -> u64 {
    let ns = vault.namespace(NS_BETA).unwrap();
    ns.put("written-by-this-version", &Token::new("new".into()))
        .unwrap();
    let ns = vault.namespace("tenant-new").unwrap();
    ns.put("k", &Secret::from_text("v".into())).unwrap();
    assert!(vault.verify(|_| {}).unwrap().is_clean());
    vault.header_seqid().unwrap()
}

// ---------------------------------------------------------------------------------------
// The tests

#[test]
fn sled_golden_opens_with_the_raw_key() {
    let (_tmp, dir) = sled_copy(V1);
    let vault = Vault::open(&dir, &raw_key_source()).unwrap();
    check_vault(&vault, V1);
    check_writable(&vault);
    vault.close().unwrap();
    let vault = Vault::open(&dir, &raw_key_source()).unwrap();
    assert_eq!(
        vault.namespaces().unwrap(),
        [NS_ALPHA, "tenant-new", NS_BETA] // sorted by bytes
    );
    let token: Token = vault
        .namespace(NS_BETA)
        .unwrap()
        .get("written-by-this-version")
        .unwrap()
        .unwrap();
    assert_eq!(token.access_token().expose_secret(), "new");
    vault.close().unwrap();
}

#[test]
fn sled_golden_opens_with_the_passphrase() {
    let (_tmp, dir) = sled_copy(V1);
    let passphrase = passphrase_source(GOLDEN_PASSPHRASE);
    let vault = VaultOptions::new()
        .slot(GOLDEN_PASSPHRASE_SLOT)
        .open(&dir, &passphrase)
        .unwrap();
    check_vault(&vault, V1);
    vault.close().unwrap();
    // Without naming the slot, too.
    Vault::open(&dir, &passphrase).unwrap().close().unwrap();
}

#[test]
fn sled_golden_refuses_wrong_keys() {
    let (_tmp, dir) = sled_copy(V1);
    let mut wrong = golden_raw_key();
    wrong[31] ^= 1;
    let wrong = KeySource::raw_key(SecretBox::new(Box::new(wrong)));
    assert!(matches!(Vault::open(&dir, &wrong), Err(Error::WrongKey)));
    let wrong = passphrase_source("golden passphrase v1");
    assert!(matches!(Vault::open(&dir, &wrong), Err(Error::WrongKey)));
}

/// The sled golden stores exactly the bytes of `backend.json`, read through the `Backend`
/// trait: the two goldens are one vault.
#[test]
fn sled_golden_stores_the_bytes_of_the_json_golden() {
    let (_tmp, dir) = sled_copy(V1);
    let backend = SledBackend::open(&dir).unwrap();
    let stored = dump(&backend);
    backend.close().unwrap();
    let expected = dump_from_json(&load_json(V1));
    assert_eq!(stored.header, expected.header);
    assert_eq!(stored.trees, expected.trees);
    // The header file is the same bytes too.
    assert_eq!(
        fs::read(golden_root(V1).join("sled/tokenvault.header")).unwrap(),
        expected.header
    );
}

#[test]
fn json_golden_opens_in_a_memory_backend() {
    let json = load_json(V1);
    // The inputs recorded in the file are the ones this test uses.
    assert_eq!(json["format_version"], 1);
    assert_eq!(json["raw_key"], to_hex(&golden_raw_key()));
    assert_eq!(json["passphrase"], GOLDEN_PASSPHRASE);
    let d = dump_from_json(&json);
    // Two namespace trees: a record count plus one manifest each.
    assert_eq!(d.trees.len(), 2);
    assert_eq!(
        d.trees.values().map(BTreeMap::len).collect::<Vec<_>>(),
        [4, 4]
    );
    assert_eq!(&d.header[..8], b"\x89TVAULT\n");
    assert_eq!(&d.header[8..10], &[1, 0]);

    let storage = golden_in_memory(V1);
    assert_eq!(dump(&storage), d);
    // Refusing the upgrade changes nothing.
    assert!(matches!(
        VaultOptions::new()
            .upgrade(false)
            .open_with_backend(storage.clone(), &raw_key_source()),
        Err(Error::UpgradeRequired { found: 1 })
    ));
    assert_eq!(dump(&storage), d);
    // Opening upgrades it to format 2, in one header write.
    let vault = Vault::open_with_backend(storage.clone(), &raw_key_source()).unwrap();
    assert_eq!(vault.format_version(), 2);
    check_vault(&vault, V1);
    let seqid = vault.header_seqid().unwrap();
    vault.close().unwrap();
    let upgraded = dump(&storage);
    assert_eq!(&upgraded.header[8..10], &[2, 0]);
    assert_eq!(
        upgraded.trees.keys().cloned().collect::<Vec<_>>(),
        [b"e".to_vec(), b"m".to_vec(), b"r".to_vec()],
        "the format-1 trees were dropped"
    );
    // Opening the upgraded vault and reading write nothing.
    let vault = Vault::open_with_backend(storage.clone(), &raw_key_source()).unwrap();
    check_vault(&vault, V1);
    vault.close().unwrap();
    assert_eq!(dump(&storage), upgraded);

    let vault = VaultOptions::new()
        .slot(GOLDEN_PASSPHRASE_SLOT)
        .open_with_backend(storage.clone(), &passphrase_source(GOLDEN_PASSPHRASE))
        .unwrap();
    check_vault(&vault, V1);
    // Writes do not change the header in format 2; the close's checkpoint does.
    assert_eq!(check_writable(&vault), seqid);
    vault.close().unwrap();
}

/// The golden format-1 vault in a fresh memory backend.
fn golden_in_memory(version: &str) -> MemoryBackend {
    let d = dump_from_json(&load_json(version));
    let storage = MemoryBackend::new();
    storage.overwrite_header(&d.header).unwrap();
    for (tree, entries) in &d.trees {
        for (key, value) in entries {
            storage
                .apply(&Batch::new().write(tree, key, Some(value.clone())))
                .unwrap();
        }
    }
    storage
}

#[test]
fn an_upgrade_stopped_at_any_write_resumes_and_loses_nothing() {
    // How many storage writes a whole upgrade makes.
    let counting = FaultyBackend::new(golden_in_memory(V1));
    Vault::open_with_backend(counting.clone(), &raw_key_source())
        .unwrap()
        .close()
        .unwrap();
    let writes = counting.applies.load(std::sync::atomic::Ordering::SeqCst) as i64;
    assert!(writes >= 4, "{writes} writes");
    // Stopped after each of them ("the process dies": every later write fails), then
    // opened again: the upgrade resumes, and the vault is exactly the golden one.
    for stop in 0..writes {
        let storage = FaultyBackend::new(golden_in_memory(V1));
        storage.fail_after(stop);
        let first = Vault::open_with_backend(storage.clone(), &raw_key_source());
        if let Ok(vault) = first {
            // The header write went through before the failures (the last writes drop the
            // format-1 trees, best effort): a format-2 vault with leftovers to purge.
            drop(vault);
        }
        storage.fail_after(-1);
        let vault = Vault::open_with_backend(storage.clone(), &raw_key_source()).unwrap();
        assert_eq!(vault.format_version(), 2, "stopped after {stop} writes");
        vault.purge_orphans().unwrap();
        check_vault(&vault, V1);
        vault.close().unwrap();
    }
}

#[test]
fn sled_golden_v2_opens_with_both_keys_and_reading_writes_nothing() {
    let (_tmp, dir) = sled_copy(V2);
    let vault = Vault::open(&dir, &raw_key_source()).unwrap();
    assert_eq!(vault.format_version(), 2);
    check_vault(&vault, V2);
    vault.close().unwrap();
    let backend = SledBackend::open(&dir).unwrap();
    let stored = dump(&backend);
    backend.close().unwrap();
    let expected = dump_from_json(&load_json(V2));
    assert_eq!(stored, expected, "an open and reads wrote nothing");
    assert_eq!(
        fs::read(golden_root(V2).join("sled/tokenvault.header")).unwrap(),
        expected.header
    );
    let vault = VaultOptions::new()
        .slot(GOLDEN_PASSPHRASE_SLOT)
        .open(&dir, &passphrase_source(GOLDEN_PASSPHRASE))
        .unwrap();
    check_vault(&vault, V2);
    check_writable(&vault);
    vault.close().unwrap();
    let vault = Vault::open(&dir, &raw_key_source()).unwrap();
    assert_eq!(
        vault.namespaces().unwrap(),
        [NS_ALPHA, "tenant-new", NS_BETA]
    );
    vault.close().unwrap();
}

#[test]
fn json_golden_v2_opens_in_a_memory_backend() {
    let json = load_json(V2);
    assert_eq!(json["format_version"], 2);
    assert_eq!(json["raw_key"], to_hex(&golden_raw_key()));
    assert_eq!(json["passphrase"], GOLDEN_PASSPHRASE);
    let d = dump_from_json(&json);
    assert_eq!(&d.header[8..10], &[2, 0]);
    assert_eq!(
        d.trees.keys().cloned().collect::<Vec<_>>(),
        [b"e".to_vec(), b"m".to_vec(), b"r".to_vec()]
    );
    let storage = golden_in_memory(V2);
    let vault = Vault::open_with_backend(storage.clone(), &raw_key_source()).unwrap();
    check_vault(&vault, V2);
    vault.close().unwrap();
    assert_eq!(dump(&storage), d, "an open and reads wrote nothing");
    let vault = Vault::open_with_backend(storage, &raw_key_source()).unwrap();
    check_writable(&vault);
    vault.close().unwrap();
}

#[test]
#[ignore = "writes the golden files; never for an existing format version"]
fn regenerate() {
    // Golden files are written for the current format version only, once.
    let out =
        std::env::var_os("TOKENVAULT_GOLDEN_OUT").map_or_else(|| golden_root(V2), PathBuf::from);
    assert!(
        !out.exists() || fs::read_dir(&out).unwrap().next().is_none(),
        "{} exists: golden files of a released format are never regenerated; \
         a new format version gets a new directory",
        out.display()
    );

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("vault");
    let options = VaultOptions::new().kdf(KdfParams::insecure_for_tests());
    let vault = options.create(&dir, &raw_key_source()).unwrap();
    // Slot 1 comes and goes, so that the golden has a gap in its slot ids.
    let gone = vault.add_keyslot(&passphrase_source("removed")).unwrap();
    vault.remove_keyslot(gone).unwrap();
    let slot = vault
        .add_keyslot(&passphrase_source(GOLDEN_PASSPHRASE))
        .unwrap();
    assert_eq!(slot, GOLDEN_PASSPHRASE_SLOT);

    let alpha = vault.namespace(NS_ALPHA).unwrap();
    // An overwritten and a removed record, so generations have moved on.
    alpha
        .put("transfer.api.example.org", &Token::new("old".into()))
        .unwrap();
    alpha
        .put("removed-record", &Token::new("removed".into()))
        .unwrap();
    alpha.remove("removed-record").unwrap();
    for (ns_name, key, stored) in golden_records() {
        let ns = vault.namespace(ns_name).unwrap();
        match stored {
            Stored::Token(t) => ns.put(key, &t).unwrap(),
            Stored::Secret(s) => ns
                .put(key, &Secret::from_bytes(SecretSlice::from(s)))
                .unwrap(),
        };
    }
    // Records of tenant-alpha carry data key id 2.
    let report = vault.rotate_namespace_key(NS_ALPHA, |_| {}).unwrap();
    assert_eq!(report.key_id, 2);
    // Entries sealed under entry-wrapping key 2, the first one destroyed.
    vault.shred(|_| {}).unwrap();

    let mut versions = serde_json::Map::new();
    for (ns_name, key, stored) in golden_records() {
        let ns = vault.namespace(ns_name).unwrap();
        let version = match stored {
            Stored::Token(_) => ns.get_versioned::<Token>(key).unwrap().unwrap().1,
            Stored::Secret(_) => ns.get_versioned::<Secret>(key).unwrap().unwrap().1,
        };
        versions
            .entry(ns_name)
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .unwrap()
            .insert(key.to_owned(), json!(version.as_u64()));
    }
    assert!(vault.verify(|_| {}).unwrap().is_clean());
    vault.close().unwrap();

    // The directory, without the (empty) lock file.
    let sled_out = out.join("sled");
    fs::create_dir_all(&sled_out).unwrap();
    fs::copy(
        dir.join("tokenvault.header"),
        sled_out.join("tokenvault.header"),
    )
    .unwrap();
    set_mode(&sled_out.join("tokenvault.header"), 0o644);
    copy_tree(&dir.join("data"), &sled_out.join("data"));
    // git keeps no empty directories (sled's `blobs/`): leave none, so that the tests see
    // what a fresh clone has.
    remove_empty_dirs(&sled_out);

    // The stored bytes, read through the backend from the original (not the output).
    let backend = SledBackend::open(&dir).unwrap();
    let d = dump(&backend);
    backend.close().unwrap();
    let mut json = dump_to_json(&d);
    let obj = json.as_object_mut().unwrap();
    obj.insert(
        "comment".into(),
        json!(
            "tokenvault golden vault, on-disk format version 2. The same vault as sled/: \
             the header file and the trees e (entries: key ns_id, or 00 for the entry-key \
             marker), r (records: key ns_id || incarnation || record_id) and m (manifests: \
             key ns_id || incarnation, or 00 for the anchor), hex. Never regenerate; see \
             tests/golden/README.md."
        ),
    );
    obj.insert("format_version".into(), json!(2));
    obj.insert("raw_key".into(), json!(to_hex(&golden_raw_key())));
    obj.insert("passphrase".into(), json!(GOLDEN_PASSPHRASE));
    obj.insert("versions".into(), Value::Object(versions));
    let mut text = serde_json::to_string_pretty(&json).unwrap();
    text.push('\n');
    fs::write(out.join("backend.json"), text).unwrap();
    eprintln!("wrote {}", out.display());
}
