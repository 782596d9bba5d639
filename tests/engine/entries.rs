//! Namespace entries in storage (format 2): the bounded entry cache, paged listing, a
//! damaged entry that affects only its namespace, and shredding.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use support::{raw_key, small_token, BackendExt, FaultyBackend};
use tokenvault::backend::{Backend, MemoryBackend};
use tokenvault::secrecy::ExposeSecret;
use tokenvault::{Damage, Error, Token, Vault, VaultOptions};

fn at(t: &Token) -> String {
    t.access_token().expose_secret().to_owned()
}

#[test]
fn the_entry_cache_stays_bounded_and_evicted_namespaces_keep_working() {
    let storage = MemoryBackend::new();
    let vault = VaultOptions::new()
        .entry_cache(16)
        .create_with_backend(storage.clone(), &raw_key(1))
        .unwrap();
    let mut versions = Vec::new();
    for i in 0..200 {
        let ns = vault.namespace(&format!("tenant-{i}")).unwrap();
        versions.push(ns.put("api", &small_token(&format!("at-{i}"))).unwrap());
        assert!(
            vault.cached_namespaces() <= 16,
            "{}",
            vault.cached_namespaces()
        );
    }
    // Every namespace, evicted or not, reads back and takes overwrites with growing
    // versions (what the handle knew of its generations is read again from the manifest).
    for (i, version) in versions.iter().enumerate() {
        let ns = vault.namespace(&format!("tenant-{i}")).unwrap();
        let (t, v) = ns.get_versioned::<Token>("api").unwrap().unwrap();
        assert_eq!((at(&t), v), (format!("at-{i}"), *version));
        let next = ns.put("api", &small_token("again")).unwrap();
        assert!(next > v);
        assert!(vault.cached_namespaces() <= 16);
    }
    assert_eq!(vault.namespaces().unwrap().len(), 200);
    assert!(vault.verify(|_| {}).unwrap().is_clean());
}

#[test]
fn listing_pages_through_storage() {
    let vault = Vault::create_with_backend(MemoryBackend::new(), &raw_key(1)).unwrap();
    for i in 0..25 {
        vault
            .namespace(&format!("n{i:02}"))
            .unwrap()
            .put("k", &small_token("x"))
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = vault.namespaces_page(cursor.as_ref(), 7).unwrap();
        assert!(page.names.len() <= 7);
        assert_eq!(page.damaged, 0);
        seen.extend(page.names);
        pages += 1;
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(pages, 4);
    seen.sort();
    let all: Vec<String> = (0..25).map(|i| format!("n{i:02}")).collect();
    assert_eq!(seen, all);
    assert_eq!(vault.namespaces().unwrap(), all);
}

#[test]
fn a_damaged_entry_affects_only_its_namespace() {
    let storage = MemoryBackend::new();
    let vault = Vault::create_with_backend(storage.clone(), &raw_key(1)).unwrap();
    for name in ["good", "bad"] {
        vault
            .namespace(name)
            .unwrap()
            .put("k", &small_token(name))
            .unwrap();
    }
    vault.close().unwrap();
    let bad_id = storage
        .scan(b"e", &[], None, 10)
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| k.len() == 32)
        .find(|id| {
            let s = MemoryBackend::new();
            for (t, k, v) in support::dump(&storage) {
                if !(t.as_slice() == b"e" && k == *id) {
                    s.put(&t, &k, v).unwrap();
                }
            }
            s.overwrite_header(&storage.read_header().unwrap().unwrap())
                .unwrap();
            let v = Vault::open_with_backend(s, &raw_key(1)).unwrap();
            v.namespaces().unwrap() == ["good"]
        })
        .unwrap();
    let mut entry = storage.get(b"e", &bad_id).unwrap().unwrap();
    entry[40] ^= 1;
    storage.put(b"e", &bad_id, entry).unwrap();

    let vault = Vault::open_with_backend(storage.clone(), &raw_key(1)).unwrap();
    let bad = vault.namespace("bad").unwrap();
    for result in [
        bad.get::<Token>("k").map(|_| ()),
        bad.put("k", &small_token("x")).map(|_| ()),
        bad.keys().map(|_| ()),
    ] {
        assert!(
            matches!(
                result,
                Err(Error::Damaged(Damage::Namespace { ref namespace, .. })) if namespace == "bad"
            ),
            "{result:?}"
        );
    }
    // The other namespace keeps working; listings leave the damaged entry out and count it.
    let good = vault.namespace("good").unwrap();
    assert_eq!(at(&good.get::<Token>("k").unwrap().unwrap()), "good");
    good.put("k2", &small_token("more")).unwrap();
    assert_eq!(vault.namespaces().unwrap(), ["good"]);
    assert_eq!(vault.namespaces_page(None, 10).unwrap().damaged, 1);
    let report = vault.verify(|_| {}).unwrap();
    assert_eq!(report.damaged_entries.len(), 1, "{report}");
    assert!(!report.is_clean());
    // A shred cannot re-seal it: it keeps the old key (nothing else lost) and says so.
    assert!(matches!(vault.shred(|_| {}), Err(Error::Damaged(_))));
    assert_eq!(at(&good.get::<Token>("k").unwrap().unwrap()), "good");
    // Removed, the namespace's name is free again.
    assert!(vault.remove_namespace("bad").unwrap());
    bad.put("k", &small_token("fresh")).unwrap();
    assert_eq!(at(&bad.get::<Token>("k").unwrap().unwrap()), "fresh");
    // The unfinished shred finishes (every entry is under its key already), then a new one
    // re-seals both.
    assert_eq!(vault.shred(|_| {}).unwrap(), 0);
    assert_eq!(vault.shred(|_| {}).unwrap(), 2);
    vault.close().unwrap();
}

#[test]
fn an_interrupted_shred_keeps_everything_open_and_finishes_when_run_again() {
    let storage = FaultyBackend::new(MemoryBackend::new());
    let vault = Vault::create_with_backend(storage.clone(), &raw_key(1)).unwrap();
    for i in 0..600 {
        vault
            .namespace(&format!("t{i}"))
            .unwrap()
            .put("k", &small_token(&i.to_string()))
            .unwrap();
    }
    // Fails after part of the entries were re-sealed.
    storage.fail_after(300);
    assert!(vault.shred(|_| {}).is_err());
    storage.fail_after(-1);
    drop(vault);
    // Two entry keys in the header; every entry opens, whichever key it is under.
    let vault = Vault::open_with_backend(storage.clone(), &raw_key(1)).unwrap();
    for i in (0..600).step_by(7) {
        let t: Token = vault
            .namespace(&format!("t{i}"))
            .unwrap()
            .get("k")
            .unwrap()
            .unwrap();
        assert_eq!(at(&t), i.to_string());
    }
    let resealed = vault.shred(|_| {}).unwrap();
    assert!(resealed > 0 && resealed < 600, "{resealed}");
    // A new shred after that starts over with a new key and re-seals everything.
    assert_eq!(vault.shred(|_| {}).unwrap(), 600);
    assert!(vault.verify(|_| {}).unwrap().is_clean());
}
