//! Data that looks orphaned is never deleted by the vault itself (issue 12, finding 5):
//! opening with an older header loses nothing (format 2 keeps namespace entries in storage,
//! not in the header); a foreign header is refused and destroys nothing; a namespace created
//! again never sees what an interrupted removal of its predecessor left (incarnations);
//! `Vault::create` refuses storage that holds records without a header; only
//! `purge_orphans` removes orphans.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;

use support::{raw_key, small_token, BackendExt};
use tokenvault::backend::{Backend, MemoryBackend};
use tokenvault::secrecy::ExposeSecret;
use tokenvault::{Error, Token, Vault};

const HEADER: &str = "tokenvault.header";

/// A vault with namespace "old", its header saved, then namespace "new" created after.
fn vault_with_an_older_header_saved(path: &std::path::Path) -> Vec<u8> {
    let vault = Vault::create(path, &raw_key(1)).unwrap();
    vault
        .namespace("old")
        .unwrap()
        .put("k", &small_token("old-at"))
        .unwrap();
    vault.close().unwrap();
    let older = fs::read(path.join(HEADER)).unwrap();
    let vault = Vault::open(path, &raw_key(1)).unwrap();
    let new = vault.namespace("new").unwrap();
    for i in 0..3 {
        new.put(&format!("k{i}"), &small_token(&format!("new-at-{i}")))
            .unwrap();
    }
    vault.close().unwrap();
    older
}

#[test]
fn opening_with_an_older_header_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v");
    let older = vault_with_an_older_header_saved(&path);

    // The older header comes back (a restored backup): the namespaces created since are
    // still there, because their entries live in storage.
    fs::write(path.join(HEADER), &older).unwrap();
    let vault = Vault::open(&path, &raw_key(1)).unwrap();
    assert_eq!(vault.namespaces().unwrap(), ["new", "old"]);
    let new = vault.namespace("new").unwrap();
    for i in 0..3 {
        let t: Token = new.get(&format!("k{i}")).unwrap().unwrap();
        assert_eq!(t.access_token().expose_secret(), &format!("new-at-{i}"));
    }
    new.put("k3", &small_token("after")).unwrap();
    let report = vault.verify(|_| {}).unwrap();
    assert!(report.is_clean(), "{report}");
    vault.close().unwrap();
    let vault = Vault::open(&path, &raw_key(1)).unwrap();
    assert_eq!(vault.namespace("new").unwrap().keys().unwrap().len(), 4);
    vault.close().unwrap();
}

#[test]
fn a_foreign_header_is_refused_and_destroys_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ours = dir.path().join("ours");
    let theirs = dir.path().join("theirs");
    let vault = Vault::create(&ours, &raw_key(1)).unwrap();
    vault
        .namespace("tenant")
        .unwrap()
        .put("k", &small_token("ours"))
        .unwrap();
    vault.close().unwrap();
    Vault::create(&theirs, &raw_key(2))
        .unwrap()
        .close()
        .unwrap();
    let our_header = fs::read(ours.join(HEADER)).unwrap();

    // Another vault's header copied over ours (an operator's mistake): the storage's
    // anchor does not authenticate under it, so the open is refused.
    fs::copy(theirs.join(HEADER), ours.join(HEADER)).unwrap();
    match Vault::open(&ours, &raw_key(2)) {
        Err(Error::Damaged(tokenvault::Damage::Rollback { found: None, .. })) => {}
        other => panic!("expected the anchor to be refused, got {other:?}"),
    }

    fs::write(ours.join(HEADER), &our_header).unwrap();
    let vault = Vault::open(&ours, &raw_key(1)).unwrap();
    let t: Token = vault
        .namespace("tenant")
        .unwrap()
        .get("k")
        .unwrap()
        .unwrap();
    assert_eq!(t.access_token().expose_secret(), "ours");
    assert!(vault.verify(|_| {}).unwrap().is_clean());
    vault.close().unwrap();
}

#[test]
fn a_namespace_created_again_never_sees_what_its_removal_left() {
    let storage = MemoryBackend::new();
    let vault = Vault::create_with_backend(storage.clone(), &raw_key(1)).unwrap();
    let ns = vault.namespace("t").unwrap();
    for i in 0..300 {
        ns.put(&format!("old-{i}"), &small_token("old")).unwrap();
    }
    // A removal that stopped after its first batch: entry and manifest gone, records left.
    let (prefix, _) = support::namespace_with(&storage, 300);
    storage.remove(b"e", &prefix[..32]).unwrap();
    storage.remove(b"m", &prefix).unwrap();
    vault.close().unwrap();

    let vault = Vault::open_with_backend(storage.clone(), &raw_key(1)).unwrap();
    assert!(vault.namespaces().unwrap().is_empty());
    let ns = vault.namespace("t").unwrap();
    assert!(ns.get::<Token>("old-1").unwrap().is_none());
    ns.put("new", &small_token("new")).unwrap();
    // A new incarnation: a prefix of its own, and none of the old records.
    assert_eq!(ns.keys().unwrap(), ["new"]);
    assert_eq!(ns.record_count().unwrap(), 1);
    assert!(ns.get::<Token>("old-1").unwrap().is_none());
    let report = vault.verify(|_| {}).unwrap();
    assert_eq!(report.orphans, 1, "{report}");
    assert_eq!(report.namespaces.len(), 1);
    assert_eq!(report.namespaces[0].ok, 1);
    assert_eq!(vault.purge_orphans().unwrap(), 1);
    assert_eq!(support::records(&storage).len(), 1);
    assert!(vault.verify(|_| {}).unwrap().is_clean());
    vault.close().unwrap();
}

#[test]
fn create_refuses_storage_that_holds_records_without_a_header() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v");
    let vault = Vault::create(&path, &raw_key(1)).unwrap();
    vault
        .namespace("n")
        .unwrap()
        .put("k", &small_token("keep me"))
        .unwrap();
    vault.close().unwrap();
    let header = fs::read(path.join(HEADER)).unwrap();
    // The header file is lost; `tokenvault init` runs again on the directory.
    fs::remove_file(path.join(HEADER)).unwrap();
    match Vault::create(&path, &raw_key(2)) {
        Err(Error::NotEmpty { path: p, .. }) => assert_eq!(p.as_ref(), Some(&path)),
        other => panic!("expected NotEmpty, got {other:?}"),
    }
    // The records are still there for the restored header.
    fs::write(path.join(HEADER), header).unwrap();
    let vault = Vault::open(&path, &raw_key(1)).unwrap();
    let t: Token = vault.namespace("n").unwrap().get("k").unwrap().unwrap();
    assert_eq!(t.access_token().expose_secret(), "keep me");
    vault.close().unwrap();
}

#[test]
fn create_refuses_a_directory_with_files_that_are_not_a_vaults() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("notes.txt"), b"mine").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    }
    match Vault::create(dir.path(), &raw_key(1)) {
        Err(Error::NotEmpty { reason, .. }) => assert!(reason.contains("notes.txt"), "{reason}"),
        other => panic!("expected NotEmpty, got {other:?}"),
    }
    assert_eq!(fs::read(dir.path().join("notes.txt")).unwrap(), b"mine");
    assert!(!dir.path().join(HEADER).exists());
    // The refused directory is left as it was: not even its mode changed.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dir.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o755);
        let entries = fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(entries, 1, "nothing was added to it");
    }
    // An empty directory is fine.
    let empty = tempfile::tempdir().unwrap();
    Vault::create(empty.path(), &raw_key(1))
        .unwrap()
        .close()
        .unwrap();
}

#[test]
fn create_with_backend_refuses_records_without_a_header() {
    let storage = MemoryBackend::new();
    storage.put(&[7; 32], b"record", b"bytes".to_vec()).unwrap();
    assert!(matches!(
        Vault::create_with_backend(storage.clone(), &raw_key(1)),
        Err(Error::NotEmpty { path: None, .. })
    ));
    assert_eq!(
        storage.get(&[7; 32], b"record").unwrap().as_deref(),
        Some(&b"bytes"[..])
    );
}
