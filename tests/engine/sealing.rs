//! Sealing: every record is bound to its vault, namespace, key, type, key id and generation;
//! names and token bytes never reach the disk; files are created private.

#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::fs;
use std::path::Path;

use support::{full_token, raw_key, records, small_token, BackendExt, FaultyBackend};
use tokenvault::backend::{Backend, MemoryBackend};
use tokenvault::secrecy::ExposeSecret;
use tokenvault::{Damage, Error, Secret, Token, Vault};

fn is_record_damage(r: Result<Option<Token>, Error>) -> bool {
    matches!(r, Err(Error::Damaged(Damage::Record { .. })))
}

/// The one record id that appeared in `storage` since `before`.
fn new_record(
    storage: &MemoryBackend,
    before: &HashSet<(Vec<u8>, Vec<u8>)>,
) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let mut fresh: Vec<_> = records(storage)
        .into_iter()
        .filter(|(t, k, _)| !before.contains(&(t.clone(), k.clone())))
        .collect();
    assert_eq!(fresh.len(), 1);
    fresh.remove(0)
}

fn ids(storage: &MemoryBackend) -> HashSet<(Vec<u8>, Vec<u8>)> {
    records(storage)
        .into_iter()
        .map(|(t, k, _)| (t, k))
        .collect()
}

#[test]
fn records_moved_anywhere_fail_to_open() {
    let storage = MemoryBackend::new();
    let vault = Vault::create_with_backend(storage.clone(), &raw_key(1)).unwrap();
    let other_storage = MemoryBackend::new();
    // Same key source, other vault: different vault id and data keys.
    let other = Vault::create_with_backend(other_storage.clone(), &raw_key(1)).unwrap();
    let mut cases = 0;
    for i in 0..250 {
        let (ns_a, ns_b) = (format!("a{}", i % 7), format!("b{}", i % 5));
        let a = vault.namespace(&ns_a).unwrap();
        let b = vault.namespace(&ns_b).unwrap();
        let (k1, k2) = (format!("key-{i}"), format!("other-{i}"));

        let before = ids(&storage);
        a.put(&k1, &full_token(i)).unwrap();
        let (tree_a, id_a1, sealed) = new_record(&storage, &before);
        let before = ids(&storage);
        a.put(&k2, &full_token(i + 1)).unwrap();
        let (_, id_a2, original_a2) = new_record(&storage, &before);
        let before = ids(&storage);
        b.put(&k1, &full_token(i + 2)).unwrap();
        let (tree_b, id_b1, original_b1) = new_record(&storage, &before);

        // (a) another key in the same namespace.
        storage.put(&tree_a, &id_a2, sealed.clone()).unwrap();
        assert!(
            is_record_damage(a.get(&k2)),
            "case {i}: moved to another key"
        );
        storage.put(&tree_a, &id_a2, original_a2).unwrap();
        cases += 1;

        // (b) the same key in another namespace.
        storage.put(&tree_b, &id_b1, sealed.clone()).unwrap();
        assert!(
            is_record_damage(b.get(&k1)),
            "case {i}: moved to another namespace"
        );
        storage.put(&tree_b, &id_b1, original_b1).unwrap();
        cases += 1;

        // (c) the same namespace and key in another vault.
        let o = other.namespace(&ns_a).unwrap();
        let before = ids(&other_storage);
        o.put(&k1, &small_token("mine")).unwrap();
        let (tree_o, id_o, original_o) = new_record(&other_storage, &before);
        other_storage.put(&tree_o, &id_o, sealed.clone()).unwrap();
        assert!(
            is_record_damage(o.get(&k1)),
            "case {i}: moved to another vault"
        );
        other_storage.put(&tree_o, &id_o, original_o).unwrap();
        cases += 1;

        // (d) the same place with another type, generation or key id in its prefix.
        for (offset, value) in [(1usize, 2u8), (6, sealed[6] ^ 1), (2, sealed[2] ^ 2)] {
            let mut changed = sealed.clone();
            changed[offset] = value;
            storage.put(&tree_a, &id_a1, changed).unwrap();
            let r = if offset == 1 {
                a.get::<Secret>(&k1).map(|_| None)
            } else {
                a.get::<Token>(&k1)
            };
            assert!(
                is_record_damage(r),
                "case {i}: prefix byte {offset} changed"
            );
            cases += 1;
        }
        storage.put(&tree_a, &id_a1, sealed).unwrap();
        assert!(a
            .get::<Token>(&k1)
            .unwrap()
            .unwrap()
            .same_as(&full_token(i)));
    }
    assert!(cases >= 1000, "{cases} cases");
}

#[test]
fn another_key_id_of_the_same_namespace_does_not_open_it() {
    // Hold a namespace mid-rotation (the rotation fails part way), so that it has two keys.
    let storage = FaultyBackend::new(MemoryBackend::new());
    let vault = Vault::create_with_backend(storage.clone(), &raw_key(1)).unwrap();
    let ns = vault.namespace("n").unwrap();
    for i in 0..10 {
        ns.put(&format!("k{i}"), &small_token(&format!("v{i}")))
            .unwrap();
    }
    storage.fail_after(3);
    assert!(vault.rotate_namespace_key("n", |_| {}).is_err());
    storage.fail_after(-1);
    let recs = records(&storage.inner);
    let old: Vec<_> = recs.iter().filter(|(_, _, v)| v[2] == 1).collect();
    let new: Vec<_> = recs.iter().filter(|(_, _, v)| v[2] == 2).collect();
    assert!(
        !old.is_empty() && !new.is_empty(),
        "the rotation is half done"
    );
    for (tree, id, value) in old {
        let mut relabelled = value.clone();
        relabelled[2] = 2;
        storage.inner.put(tree, id, relabelled).unwrap();
    }
    let report = vault.verify(|_| {}).unwrap();
    assert_eq!(report.namespaces[0].damaged.len(), recs.len() - new.len());
}

#[test]
fn every_bit_flip_of_a_record_is_detected() {
    let storage = MemoryBackend::new();
    let vault = Vault::create_with_backend(storage.clone(), &raw_key(1)).unwrap();
    let ns = vault.namespace("n").unwrap();
    ns.put("k", &full_token(1)).unwrap();
    let (tree, id, sealed) = records(&storage).remove(0);
    for bit in 0..sealed.len() * 8 {
        let mut bad = sealed.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        storage.put(&tree, &id, bad).unwrap();
        match ns.get::<Token>("k") {
            Err(Error::Damaged(_) | Error::UnsupportedVersion { .. }) => {}
            // The type byte may turn into "secret": still authenticated and refused.
            Err(Error::WrongRecordType { .. }) => panic!("bit {bit}: a damaged type was trusted"),
            other => panic!("bit {bit}: {other:?}"),
        }
    }
    for len in 0..sealed.len() {
        storage.put(&tree, &id, sealed[..len].to_vec()).unwrap();
        assert!(ns.get::<Token>("k").is_err(), "truncated to {len}");
    }
    for extra in 1..=64 {
        let mut longer = sealed.clone();
        longer.extend(std::iter::repeat_n(0u8, extra));
        storage.put(&tree, &id, longer).unwrap();
        assert!(ns.get::<Token>("k").is_err(), "extended by {extra}");
    }
    storage.put(&tree, &id, sealed).unwrap();
    assert!(ns
        .get::<Token>("k")
        .unwrap()
        .unwrap()
        .same_as(&full_token(1)));
}

#[test]
fn no_name_or_token_bytes_reach_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v");
    let vault = Vault::create(&path, &raw_key(1)).unwrap();
    let namespaces = ["tenant-QUOKKA-7731", "user/BILBY-0420-uuid"];
    let keys = ["transfer.PLATYPUS.example.org", "auth.WOMBAT.example.org"];
    let mut tokens = Vec::new();
    for (i, ns) in namespaces.iter().enumerate() {
        let ns = vault.namespace(ns).unwrap();
        for (j, key) in keys.iter().enumerate() {
            let t = full_token((i * 10 + j) as u32)
                .with_identity(format!("identity-NUMBAT-{i}{j}"))
                .with_resource_server(format!("rs-DINGO-{i}{j}"));
            ns.put(key, &t).unwrap();
            tokens.push(t);
        }
        ns.put(
            "client-secret-ECHIDNA",
            &Secret::from_text("secret-value-KOALA-991".into()),
        )
        .unwrap();
    }
    vault.rotate_namespace_key(namespaces[0], |_| {}).unwrap();
    vault.close().unwrap();

    let mut needles: Vec<Vec<u8>> = namespaces
        .iter()
        .chain(keys.iter())
        .map(|s| s.as_bytes().to_vec())
        .collect();
    needles.push(b"client-secret-ECHIDNA".to_vec());
    let mut secrets: Vec<String> = vec!["secret-value-KOALA-991".into()];
    for t in &tokens {
        secrets.push(t.access_token().expose_secret().to_owned());
        secrets.push(t.refresh_token().unwrap().expose_secret().to_owned());
        secrets.push(t.extra_json().unwrap().expose_secret().to_owned());
        secrets.push(t.identity().unwrap().to_owned());
        secrets.push(t.resource_server().unwrap().to_owned());
    }
    for s in &secrets {
        for w in s.as_bytes().windows(8) {
            needles.push(w.to_vec());
        }
    }
    let files = support::all_files(&path);
    assert!(files.len() >= 3, "{files:?}");
    let mut scanned = 0;
    for file in files {
        let bytes = fs::read(&file).unwrap();
        scanned += bytes.len();
        for needle in &needles {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_slice()),
                "{} contains {:?}",
                file.display(),
                String::from_utf8_lossy(needle)
            );
        }
    }
    assert!(scanned > 1000);
}

#[cfg(unix)]
#[test]
fn files_are_created_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a").join("v");
    let vault = Vault::create(&path, &raw_key(1)).unwrap();
    vault
        .namespace("n")
        .unwrap()
        .put("k", &small_token("v"))
        .unwrap();
    vault.add_keyslot(&raw_key(2)).unwrap();
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o700);
    assert_eq!(mode(&path.join("tokenvault.header")), 0o600);
    assert_eq!(mode(&path.join("tokenvault.lock")), 0o600);
    vault.close().unwrap();
    // An existing, empty directory is tightened to 0700.
    let loose = dir.path().join("loose");
    fs::create_dir(&loose).unwrap();
    fs::set_permissions(&loose, fs::Permissions::from_mode(0o755)).unwrap();
    Vault::create(&loose, &raw_key(1)).unwrap().close().unwrap();
    assert_eq!(mode(&loose), 0o700);
}

#[test]
fn a_removed_namespace_leaves_nothing_decryptable() {
    let storage = MemoryBackend::new();
    let vault = Vault::create_with_backend(storage.clone(), &raw_key(1)).unwrap();
    let ns = vault.namespace("doomed").unwrap();
    ns.put("k", &full_token(5)).unwrap();
    vault
        .namespace("kept")
        .unwrap()
        .put("k", &small_token("x"))
        .unwrap();
    let (_, doomed) = support::records_by_namespace(&storage)
        .into_iter()
        .find(|(_, list)| {
            list.len() == 1 && {
                // The doomed record is the larger one (a full token).
                list[0].1.len() > 400
            }
        })
        .unwrap();
    let (old_key, sealed) = doomed[0].clone();
    let old_entry = storage.get(b"e", &old_key[..32]).unwrap().unwrap();
    assert!(vault.remove_namespace("doomed").unwrap());

    // Its entry, manifest and records are gone.
    assert!(storage.get(b"e", &old_key[..32]).unwrap().is_none());
    assert!(storage.get(b"r", &old_key).unwrap().is_none());
    assert_eq!(records(&storage).len(), 1);
    assert!(ns.get::<Token>("k").unwrap().is_none());

    // Re-create a namespace of the same name: a new incarnation, under a new prefix. The old
    // record put back where it was is not seen; put under the new prefix, it does not open
    // (its AAD names the old incarnation).
    ns.put("other", &small_token("new life")).unwrap();
    storage.put(b"r", &old_key, sealed.clone()).unwrap();
    assert!(ns.get::<Token>("k").unwrap().is_none());
    let new_prefix = support::records_by_namespace(&storage)
        .into_iter()
        .map(|(p, _)| p)
        .find(|p| p[..32] == old_key[..32] && p[32..] != old_key[32..48])
        .unwrap();
    let mut moved = new_prefix.clone();
    moved.extend_from_slice(&old_key[48..]);
    storage.put(b"r", &moved, sealed).unwrap();
    assert!(
        is_record_damage(ns.get("k")),
        "the old record opened under the new incarnation"
    );
    storage.remove(b"r", &moved).unwrap();
    storage.remove(b"r", &old_key).unwrap();

    // After a shred, the removed namespace's old entry (which sled's log or a backup may
    // still hold) no longer opens: its data key is gone.
    vault.shred(|_| {}).unwrap();
    let new_entry = storage.get(b"e", &old_key[..32]).unwrap().unwrap();
    storage.put(b"e", &old_key[..32], old_entry).unwrap();
    let fresh = Vault::open_with_backend(storage.clone(), &raw_key(1)).unwrap();
    assert!(matches!(
        fresh.namespace("doomed").unwrap().get::<Token>("other"),
        Err(Error::Damaged(Damage::Namespace { .. }))
    ));
    storage.put(b"e", &old_key[..32], new_entry).unwrap();
    let fresh = Vault::open_with_backend(storage.clone(), &raw_key(1)).unwrap();
    let t: Token = fresh
        .namespace("doomed")
        .unwrap()
        .get("other")
        .unwrap()
        .unwrap();
    assert_eq!(t.access_token().expose_secret(), "new life");
    assert_eq!(fresh.namespaces().unwrap(), ["doomed", "kept"]);
    let t: Token = fresh.namespace("kept").unwrap().get("k").unwrap().unwrap();
    assert_eq!(t.access_token().expose_secret(), "x");
}
