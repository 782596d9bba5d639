//! Data that looks orphaned is never deleted by the vault itself (issue 12, finding 5):
//! opening with an older or foreign header (even to read) keeps the namespaces created since;
//! creating a namespace over an orphan sets its records aside; `Vault::create` refuses storage
//! that holds records without a header; only `purge_orphans` drops orphans.
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
fn opening_with_an_older_header_keeps_the_namespaces_created_since() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v");
    let older = vault_with_an_older_header_saved(&path);
    let newer = fs::read(path.join(HEADER)).unwrap();

    // The older header comes back (a restored backup); a read-only session opens with it.
    fs::write(path.join(HEADER), &older).unwrap();
    let vault = Vault::open(&path, &raw_key(1)).unwrap();
    assert_eq!(vault.namespaces().unwrap(), ["old"]);
    let report = vault.verify(|_| {}).unwrap();
    assert_eq!(report.orphan_trees, 1, "the newer namespace is reported");
    vault.close().unwrap();

    // With the newer header back, nothing was lost.
    fs::write(path.join(HEADER), &newer).unwrap();
    let vault = Vault::open(&path, &raw_key(1)).unwrap();
    let new = vault.namespace("new").unwrap();
    for i in 0..3 {
        let t: Token = new.get(&format!("k{i}")).unwrap().unwrap();
        assert_eq!(t.access_token().expose_secret(), &format!("new-at-{i}"));
    }
    assert!(vault.verify(|_| {}).unwrap().is_clean());
    vault.close().unwrap();
}

#[test]
fn a_foreign_header_does_not_destroy_this_vaults_records() {
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

    // Another vault's header copied over ours (an operator's mistake).
    fs::copy(theirs.join(HEADER), ours.join(HEADER)).unwrap();
    let foreign = Vault::open(&ours, &raw_key(2)).unwrap();
    assert!(foreign.namespaces().unwrap().is_empty());
    assert_eq!(foreign.verify(|_| {}).unwrap().orphan_trees, 1);
    foreign.close().unwrap();

    fs::write(ours.join(HEADER), &our_header).unwrap();
    let vault = Vault::open(&ours, &raw_key(1)).unwrap();
    let t: Token = vault
        .namespace("tenant")
        .unwrap()
        .get("k")
        .unwrap()
        .unwrap();
    assert_eq!(t.access_token().expose_secret(), "ours");
    vault.close().unwrap();
}

#[test]
fn creating_a_namespace_over_an_orphan_sets_its_records_aside() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v");
    let older = vault_with_an_older_header_saved(&path);

    // With the older header, "new" is written again: a new namespace over the orphan.
    fs::write(path.join(HEADER), &older).unwrap();
    let vault = Vault::open(&path, &raw_key(1)).unwrap();
    let new = vault.namespace("new").unwrap();
    new.put("k0", &small_token("rewritten")).unwrap();
    assert_eq!(new.keys().unwrap(), ["k0"]);
    // The old records were set aside, not dropped: verify counts them.
    let report = vault.verify(|_| {}).unwrap();
    assert_eq!((report.orphan_trees, report.set_aside_trees), (0, 1));
    assert!(!report.is_clean());
    vault.close().unwrap();

    // Purging orphans keeps them; only the explicit purge of set-aside trees drops them.
    let vault = Vault::open(&path, &raw_key(1)).unwrap();
    assert_eq!(vault.purge_orphans().unwrap(), 0);
    assert_eq!(vault.verify(|_| {}).unwrap().set_aside_trees, 1);
    assert_eq!(vault.purge_set_aside().unwrap(), 1);
    let report = vault.verify(|_| {}).unwrap();
    assert_eq!((report.orphan_trees, report.set_aside_trees), (0, 0));
    assert!(report.is_clean());
    let t: Token = vault.namespace("new").unwrap().get("k0").unwrap().unwrap();
    assert_eq!(t.access_token().expose_secret(), "rewritten");
    vault.close().unwrap();
}

#[test]
fn the_set_aside_copy_holds_every_entry_of_the_orphan() {
    let storage = MemoryBackend::new();
    let vault = Vault::create_with_backend(storage.clone(), &raw_key(1)).unwrap();
    vault
        .namespace("a")
        .unwrap()
        .put("k", &small_token("a"))
        .unwrap();
    let older = storage.read_header().unwrap().unwrap();
    let ns = vault.namespace("b").unwrap();
    for i in 0..300 {
        ns.put(&format!("k{i}"), &small_token("b")).unwrap();
    }
    vault.close().unwrap();
    let trees_before: Vec<Vec<u8>> = storage.trees().unwrap();
    let b_tree = trees_before
        .iter()
        .find(|t| storage.scan(t, None, 1000).unwrap().len() == 301)
        .unwrap()
        .clone();
    let b_entries = storage.scan(&b_tree, None, 1000).unwrap();

    storage.overwrite_header(&older).unwrap();
    let vault = Vault::open_with_backend(storage.clone(), &raw_key(1)).unwrap();
    vault
        .namespace("b")
        .unwrap()
        .put("x", &small_token("again"))
        .unwrap();
    vault.close().unwrap();
    let aside: Vec<Vec<u8>> = storage
        .trees()
        .unwrap()
        .into_iter()
        .filter(|t| t.len() != 32)
        .collect();
    assert_eq!(aside.len(), 1);
    assert!(aside[0].starts_with(b"tokenvault/set-aside/"));
    assert!(aside[0].windows(32).any(|w| w == b_tree.as_slice()));
    assert_eq!(storage.scan(&aside[0], None, 1000).unwrap(), b_entries);
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

#[test]
fn a_tree_holding_only_a_manifest_is_set_aside_too() {
    // What an interrupted creation leaves, and also what an empty namespace of a newer
    // header looks like: kept either way.
    let storage = MemoryBackend::new();
    let vault = Vault::create_with_backend(storage.clone(), &raw_key(1)).unwrap();
    let older = storage.read_header().unwrap().unwrap();
    let ns = vault.namespace("empty").unwrap();
    ns.put("k", &small_token("x")).unwrap();
    ns.remove("k").unwrap();
    vault.close().unwrap();
    let tree = storage
        .trees()
        .unwrap()
        .into_iter()
        .find(|t| t.len() == 32)
        .unwrap();
    let manifest_only = storage.scan(&tree, None, 10).unwrap();
    assert_eq!(manifest_only.len(), 1);

    storage.overwrite_header(&older).unwrap();
    let vault = Vault::open_with_backend(storage.clone(), &raw_key(1)).unwrap();
    vault
        .namespace("empty")
        .unwrap()
        .put("k", &small_token("y"))
        .unwrap();
    let report = vault.verify(|_| {}).unwrap();
    assert_eq!(report.set_aside_trees, 1);
    vault.close().unwrap();
    let aside = storage
        .trees()
        .unwrap()
        .into_iter()
        .find(|t| t.len() != 32)
        .unwrap();
    assert_eq!(storage.scan(&aside, None, 10).unwrap(), manifest_only);
}
