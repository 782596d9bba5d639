//! Storage: durability and group commit, manifests and verify, locking, damaged sled files,
//! namespace-key rotation and its resumption.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::fs;
use std::time::{Duration, Instant};

use support::{
    fast, full_token, manifests, namespace_with, raw_key, records, small_token, BackendExt,
    FaultyBackend,
};
use tokenvault::backend::{Backend, BackendErrorKind, MemoryBackend, SledBackend, SledOptions};
use tokenvault::maintenance::Progress;
use tokenvault::secrecy::ExposeSecret;
use tokenvault::test_hooks::RESERVED_GENERATIONS;
use tokenvault::{Durability, Error, Token, Vault, VaultOptions};

#[test]
fn every_write_is_flushed_before_it_returns() {
    let storage = FaultyBackend::new(MemoryBackend::new());
    let vault = Vault::create_with_backend(storage.clone(), &raw_key(1)).unwrap();
    let ns = vault.namespace("n").unwrap();
    ns.put("warm-up", &small_token("x")).unwrap();
    for i in 0..20 {
        let before = storage.flush_count();
        match i % 4 {
            0 => {
                ns.put("k", &small_token("v")).unwrap();
            }
            1 => {
                let (_, v) = ns.get_versioned::<Token>("k").unwrap().unwrap();
                ns.compare_and_swap("k", Some(v), &small_token("w"))
                    .unwrap()
                    .unwrap();
            }
            2 => assert!(ns.remove("k").unwrap()),
            _ => {
                ns.put("k", &small_token("again")).unwrap();
            }
        }
        assert!(
            storage.flush_count() > before,
            "write {i} returned before a flush"
        );
    }
    // Reads and failed compare-and-swaps do not flush.
    let before = storage.flush_count();
    let _: Option<Token> = ns.get("k").unwrap();
    assert!(ns
        .compare_and_swap("k", None, &small_token("no"))
        .unwrap()
        .is_err());
    assert_eq!(storage.flush_count(), before);
}

#[test]
fn buffered_mode_skips_per_write_flushes_but_close_flushes() {
    let storage = FaultyBackend::new(MemoryBackend::new());
    let vault = VaultOptions::new()
        .durability(Durability::Buffered)
        .create_with_backend(storage.clone(), &raw_key(1))
        .unwrap();
    let ns = vault.namespace("n").unwrap();
    ns.put("first", &small_token("x")).unwrap(); // creates the namespace
    let before = storage.flush_count();
    for i in 0..50 {
        ns.put(&format!("k{i}"), &small_token("v")).unwrap();
    }
    assert_eq!(
        storage.flush_count(),
        before,
        "buffered writes do not flush"
    );
    vault.flush().unwrap();
    assert_eq!(storage.flush_count(), before + 1);
    vault.close().unwrap();
    assert!(storage.flush_count() >= before + 2, "close flushes");
}

#[test]
fn concurrent_writers_share_flushes() {
    let mut storage = FaultyBackend::new(MemoryBackend::new());
    storage.flush_delay = Duration::from_millis(5);
    let vault = Vault::create_with_backend(storage.clone(), &raw_key(1)).unwrap();
    for t in 0..8 {
        vault
            .namespace(&format!("ns{t}"))
            .unwrap()
            .put("init", &small_token("x"))
            .unwrap();
    }
    let before = storage.flush_count();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let ns = vault.namespace(&format!("ns{t}")).unwrap();
            std::thread::spawn(move || {
                for i in 0..25 {
                    ns.put(&format!("k{i}"), &small_token("v")).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let flushes = storage.flush_count() - before;
    assert!(
        flushes < 200,
        "{flushes} flushes for 200 durable writes: no group commit"
    );
    assert!(flushes > 0);
}

#[test]
fn verify_reports_damaged_and_lost_records() {
    let storage = MemoryBackend::new();
    let vault = Vault::create_with_backend(storage.clone(), &raw_key(1)).unwrap();
    let ns = vault.namespace("n").unwrap();
    for i in 0..10 {
        ns.put(&format!("k{i}"), &full_token(i)).unwrap();
    }
    vault
        .namespace("clean")
        .unwrap()
        .put("k", &small_token("x"))
        .unwrap();
    let mut progress = Vec::new();
    let report = vault.verify(|p: Progress| progress.push(p)).unwrap();
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.namespaces[1].ok, 10);
    assert!(!progress.is_empty());
    assert_eq!(
        progress.last().unwrap().done,
        13,
        "11 records and 2 manifests"
    );

    // Damage one record and lose two others (as a truncated log would).
    let (prefix, mut recs) = namespace_with(&storage, 10);
    let (id, mut sealed) = recs.pop().unwrap();
    sealed[100] ^= 1;
    storage.put(b"r", &id, sealed).unwrap();
    for (k, _) in recs.iter().take(2) {
        storage.remove(b"r", k).unwrap();
    }
    let report = vault.verify(|_| {}).unwrap();
    assert!(!report.is_clean());
    let n = report
        .namespaces
        .iter()
        .find(|r| r.namespace == "n")
        .unwrap();
    assert_eq!((n.ok, n.damaged.len(), n.missing), (7, 1, 2), "{report}");
    assert!(n.damaged[0].reason.contains("authentication failed"));
    assert_eq!(n.damaged[0].storage_id.len(), 64);
    let clean = report
        .namespaces
        .iter()
        .find(|r| r.namespace == "clean")
        .unwrap();
    assert_eq!((clean.ok, clean.missing), (1, 0));

    // Writing to a namespace whose manifest is gone is refused, not papered over.
    storage.remove(b"m", &prefix).unwrap();
    assert!(matches!(
        ns.put("new", &small_token("x")),
        Err(Error::Damaged(tokenvault::Damage::Namespace { .. }))
    ));
    let report = vault.verify(|_| {}).unwrap();
    let n = report
        .namespaces
        .iter()
        .find(|r| r.namespace == "n")
        .unwrap();
    assert_eq!(n.manifest_damaged, Some("the manifest is missing"));
}

#[test]
fn a_second_holder_waits_then_gets_locked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v");
    let vault = Vault::create(&path, &raw_key(1)).unwrap();
    let started = Instant::now();
    let err = VaultOptions::new()
        .sled(SledOptions::new().lock_timeout(Duration::from_millis(300)))
        .open(&path, &raw_key(1))
        .unwrap_err();
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(
        matches!(&err, Error::Locked { path: p } if p == &path),
        "{err}"
    );
    assert!(err.to_string().contains(&path.display().to_string()));
    // The backend underneath says the same, with its kind and path.
    let err = SledOptions::new()
        .lock_timeout(Duration::ZERO)
        .open(&path)
        .unwrap_err();
    assert_eq!(err.kind(), BackendErrorKind::Locked);
    assert_eq!(err.path(), Some(path.as_path()));

    // A holder that lets go within the timeout is waited for.
    let closer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        vault.close().unwrap();
    });
    let vault = VaultOptions::new()
        .sled(SledOptions::new().lock_timeout(Duration::from_secs(10)))
        .open(&path, &raw_key(1))
        .unwrap();
    closer.join().unwrap();
    vault.close().unwrap();
}

#[test]
fn backend_errors_keep_their_source() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let err = SledBackend::open(&missing).unwrap_err();
    assert_eq!(err.kind(), BackendErrorKind::Io);
    let source = std::error::Error::source(&err).unwrap();
    let io = source.downcast_ref::<std::io::Error>().unwrap();
    assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
    // The vault's message holds the whole chain.
    SledBackend::create(&missing).unwrap().close().unwrap();
    fs::remove_dir_all(missing.join("data")).unwrap();
    fs::write(missing.join("tokenvault.header"), b"").unwrap();
    let err = Vault::open(&missing, &raw_key(1)).unwrap_err();
    assert!(matches!(err, Error::Backend(_)), "{err}");
    assert!(
        err.to_string().contains("missing its data directory"),
        "{err}"
    );
    // ... and keeps the backend's error as its source, with its kind and the vault's path.
    let Error::Backend(backend) = &err else {
        unreachable!()
    };
    assert_eq!(backend.path(), Some(missing.as_path()));
    let source = std::error::Error::source(&err).unwrap();
    let source = source
        .downcast_ref::<tokenvault::backend::BackendError>()
        .unwrap();
    assert_eq!(source.kind(), backend.kind());
    assert_eq!(tokenvault::ErrorKind::of(&err), err.kind());
}

#[test]
fn close_then_reopen_works_every_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v");
    Vault::create(&path, &raw_key(1)).unwrap().close().unwrap();
    for i in 0..50 {
        let vault = VaultOptions::new()
            .sled(SledOptions::new().lock_timeout(Duration::ZERO))
            .open(&path, &raw_key(1))
            .unwrap_or_else(|e| panic!("reopen {i}: {e}"));
        vault
            .namespace("n")
            .unwrap()
            .put(&format!("k{i}"), &small_token("v"))
            .unwrap();
        vault.close().unwrap();
    }
    // Dropping the last handle releases the directory too.
    {
        let _vault = Vault::open(&path, &raw_key(1)).unwrap();
    }
    let vault = VaultOptions::new()
        .sled(SledOptions::new().lock_timeout(Duration::ZERO))
        .open(&path, &raw_key(1))
        .unwrap();
    assert_eq!(vault.namespace("n").unwrap().keys().unwrap().len(), 50);
}

#[test]
fn damaged_sled_files_give_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v");
    let vault = Vault::create(&path, &raw_key(1)).unwrap();
    let ns = vault.namespace("n").unwrap();
    for i in 0..200 {
        ns.put(&format!("k{i}"), &full_token(i)).unwrap();
    }
    vault.close().unwrap();
    let pristine = dir.path().join("pristine");
    fs::create_dir(&pristine).unwrap();
    let data = path.join("data").join("db");
    let original = fs::read(&data).unwrap();
    let mut outcomes = [0usize; 3]; // opened and read, error, read error after open
    let mut rng = 0x9e3779b97f4a7c15u64;
    for _ in 0..60 {
        let mut damaged = original.clone();
        for _ in 0..8 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let at = (rng % damaged.len() as u64) as usize;
            damaged[at] ^= 1 << (rng % 8);
        }
        fs::write(&data, &damaged).unwrap();
        // Any outcome but a panic (or a wrong value) is acceptable.
        let result = std::panic::catch_unwind(|| match Vault::open(&path, &raw_key(1)) {
            Ok(vault) => {
                let ns = vault.namespace("n").unwrap();
                let mut read_error = false;
                for i in 0..200 {
                    match ns.get::<Token>(&format!("k{i}")) {
                        Ok(Some(t)) => assert!(t.same_as(&full_token(i)), "k{i} changed"),
                        Ok(None) | Err(_) => read_error = true,
                    }
                }
                let _ = vault.verify(|_| {});
                let _ = vault.close();
                if read_error {
                    2
                } else {
                    0
                }
            }
            Err(_) => 1,
        });
        let outcome = result.expect("a damaged sled file made the vault panic");
        outcomes[outcome] += 1;
    }
    eprintln!("opened clean / open error / read errors: {outcomes:?}");
    fs::write(&data, &original).unwrap();
    let vault = Vault::open(&path, &raw_key(1)).unwrap();
    assert!(vault.verify(|_| {}).unwrap().is_clean());
}

#[test]
fn rotating_a_namespace_reseals_only_its_records() {
    let storage = MemoryBackend::new();
    let vault = Vault::create_with_backend(storage.clone(), &raw_key(1)).unwrap();
    let (a, b) = (vault.namespace("a").unwrap(), vault.namespace("b").unwrap());
    for i in 0..600 {
        a.put(&format!("k{i}"), &full_token(i)).unwrap();
    }
    b.put("k", &small_token("untouched")).unwrap();
    let (b_prefix, b_before) = namespace_with(&storage, 1);
    let mut progress = Vec::new();
    let report = vault
        .rotate_namespace_key("a", |p| progress.push(p))
        .unwrap();
    assert_eq!(report.key_id, 2);
    assert_eq!(report.resealed, 601, "600 records and the manifest");
    assert_eq!(progress.last().unwrap().done, 601);
    assert_eq!(progress.last().unwrap().total, Some(601));
    for (_, key, value) in records(&storage) {
        if key.starts_with(&b_prefix) {
            assert!(b_before.contains(&(key, value)), "b was rewritten");
        } else {
            assert_eq!(u32::from_le_bytes(value[2..6].try_into().unwrap()), 2);
        }
    }
    for i in (0..600).step_by(37) {
        assert!(a
            .get::<Token>(&format!("k{i}"))
            .unwrap()
            .unwrap()
            .same_as(&full_token(i)));
    }
    let again = vault.rotate_namespace_key("a", |_| {}).unwrap();
    assert_eq!(again.key_id, 3);
    assert!(vault.verify(|_| {}).unwrap().is_clean());
    assert!(matches!(
        vault.rotate_namespace_key("nope", |_| {}),
        Err(Error::InvalidName { .. })
    ));
}

#[test]
fn writes_during_rotation_use_the_new_key_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let vault = Vault::create(dir.path().join("v"), &raw_key(1)).unwrap();
    let ns = vault.namespace("n").unwrap();
    for i in 0..400 {
        ns.put(&format!("k{i}"), &small_token(&format!("old-{i}")))
            .unwrap();
    }
    let writer = {
        let ns = ns.clone();
        std::thread::spawn(move || {
            for i in (0..400).step_by(3) {
                ns.put(&format!("k{i}"), &small_token(&format!("new-{i}")))
                    .unwrap();
            }
        })
    };
    vault.rotate_namespace_key("n", |_| {}).unwrap();
    writer.join().unwrap();
    for i in 0..400 {
        let t: Token = ns.get(&format!("k{i}")).unwrap().unwrap();
        let want = if i % 3 == 0 {
            format!("new-{i}")
        } else {
            format!("old-{i}")
        };
        assert_eq!(t.access_token().expose_secret(), want);
    }
    let report = vault.verify(|_| {}).unwrap();
    assert!(report.is_clean(), "{report}");
}

#[test]
fn an_interrupted_rotation_resumes_on_open() {
    let storage = FaultyBackend::new(MemoryBackend::new());
    let vault = Vault::create_with_backend(storage.clone(), &raw_key(1)).unwrap();
    let ns = vault.namespace("n").unwrap();
    for i in 0..300 {
        ns.put(&format!("k{i}"), &full_token(i)).unwrap();
    }
    // "Crash" part way: every apply fails from the 100th re-seal on.
    storage.fail_after(100);
    assert!(vault.rotate_namespace_key("n", |_| {}).is_err());
    let report = vault.verify(|_| {}).unwrap();
    assert!(report.namespaces[0].rotation_pending);
    let key_ids = |s: &MemoryBackend| {
        let mut ids: Vec<u32> = records(s)
            .iter()
            .map(|(_, _, v)| u32::from_le_bytes(v[2..6].try_into().unwrap()))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    };
    assert_eq!(key_ids(&storage.inner), [1, 2], "half re-sealed");
    drop(vault);

    storage.fail_after(-1);
    let vault = Vault::open_with_backend(storage.clone(), &raw_key(1)).unwrap();
    assert_eq!(
        key_ids(&storage.inner),
        [2],
        "the open finished the rotation"
    );
    let report = vault.verify(|_| {}).unwrap();
    assert!(report.is_clean(), "{report}");
    let ns = vault.namespace("n").unwrap();
    for i in 0..300 {
        assert!(ns
            .get::<Token>(&format!("k{i}"))
            .unwrap()
            .unwrap()
            .same_as(&full_token(i)));
    }
}

#[test]
fn a_rotation_blocked_by_damage_keeps_the_old_key() {
    let storage = MemoryBackend::new();
    let vault = Vault::create_with_backend(storage.clone(), &raw_key(1)).unwrap();
    let ns = vault.namespace("n").unwrap();
    for i in 0..5 {
        ns.put(&format!("k{i}"), &small_token("v")).unwrap();
    }
    let (tree, id, mut sealed) = records(&storage).remove(0);
    sealed[60] ^= 1;
    storage.put(&tree, &id, sealed).unwrap();
    let err = vault.rotate_namespace_key("n", |_| {}).unwrap_err();
    assert!(matches!(err, Error::Damaged(_)), "{err}");
    let report = vault.verify(|_| {}).unwrap();
    assert!(report.namespaces[0].rotation_pending);
    assert_eq!(
        report.namespaces[0].ok, 4,
        "the healthy records are re-sealed and readable"
    );
    // Remove the damaged record and the rotation completes.
    let bad_key = (0..5)
        .map(|i| format!("k{i}"))
        .find(|k| ns.get::<Token>(k).is_err())
        .unwrap();
    assert!(ns.remove(&bad_key).unwrap());
    vault.rotate_namespace_key("n", |_| {}).unwrap();
    assert!(vault.verify(|_| {}).unwrap().is_clean());
}

#[test]
fn fast_options_are_what_tests_use() {
    // The quick preset is only reachable by name.
    let vault = fast()
        .create_with_backend(MemoryBackend::new(), &support::passphrase("p"))
        .unwrap();
    assert!(vault.keyslots().unwrap()[0].kdf.unwrap().m_kib() < 1024);
}

#[test]
fn readers_during_rotation_never_see_damage() {
    let storage = MemoryBackend::new();
    let vault = Vault::create_with_backend(storage, &raw_key(1)).unwrap();
    let ns = vault.namespace("n").unwrap();
    for i in 0..300 {
        ns.put(&format!("k{i}"), &full_token(i)).unwrap();
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..3)
        .map(|r| {
            let ns = ns.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut reads = 0u64;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) || reads == 0 {
                    // A listing holds one view of the namespace's keys for a whole scan.
                    if reads.is_multiple_of(10) {
                        let keys = ns.keys().unwrap_or_else(|e| panic!("listing failed: {e}"));
                        assert_eq!(keys.len(), 300);
                    }
                    let i = (reads * 7 + r) % 300;
                    let got = ns.get::<Token>(&format!("k{i}"));
                    let got = got.unwrap_or_else(|e| panic!("read of k{i} failed: {e}"));
                    assert!(got.unwrap().same_as(&full_token(i as u32)));
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    for _ in 0..3 {
        vault.rotate_namespace_key("n", |_| {}).unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
    assert!(vault.verify(|_| {}).unwrap().is_clean());
}

/// A vault whose namespace "n" holds record "a": the storage, the vault, the namespace, the
/// namespace's tree and its manifest's stored bytes.
fn one_record_vault() -> (
    MemoryBackend,
    Vault,
    tokenvault::Namespace,
    Vec<u8>,
    Vec<u8>,
) {
    let storage = MemoryBackend::new();
    let vault = Vault::create_with_backend(storage.clone(), &raw_key(1)).unwrap();
    let ns = vault.namespace("n").unwrap();
    ns.put("a", &small_token("1")).unwrap();
    let (key, manifest) = manifests(&storage).remove(0);
    (storage, vault, ns, key, manifest)
}

#[test]
fn verify_notices_a_rolled_back_manifest() {
    // Replaced past its reservation: the records written since are newer than it.
    let (storage, vault, ns, tree, old_manifest) = one_record_vault();
    for i in 0..=RESERVED_GENERATIONS {
        ns.put("a", &small_token(&i.to_string())).unwrap();
    }
    assert_ne!(storage.get(b"m", &tree).unwrap().unwrap(), old_manifest);
    storage.put(b"m", &tree, old_manifest).unwrap();
    vault.close().unwrap();
    // A fresh handle knows nothing of the newer manifest: the record's generation shows it.
    let vault = Vault::open_with_backend(storage.clone(), &raw_key(1)).unwrap();
    let report = vault.verify(|_| {}).unwrap();
    let n = &report.namespaces[0];
    assert_eq!((n.ok, n.damaged.len()), (0, 1), "{report}");
    assert!(n.damaged[0].reason.contains("rolled back"));
    // Writes over the record refuse too, instead of reusing generations.
    let ns = vault.namespace("n").unwrap();
    let err = ns.put("a", &small_token("3")).unwrap_err();
    assert!(err.to_string().contains("rolled back"), "{err}");
}

#[test]
fn a_manifest_replaced_under_a_running_process_stops_its_writes() {
    // Replaced within its reservation: no record is newer than it, but this process wrote a
    // newer one, and every write, overwrites included, checks the stored manifest first.
    let (storage, vault, ns, tree, old_manifest) = one_record_vault();
    ns.put("b", &small_token("2")).unwrap();
    ns.put("a", &small_token("3")).unwrap();
    storage.put(b"m", &tree, old_manifest).unwrap();
    let before = support::dump(&storage);
    for err in [
        ns.put("a", &small_token("4")).unwrap_err(),
        ns.put("c", &small_token("4")).unwrap_err(),
        ns.remove("b").unwrap_err(),
    ] {
        assert!(err.to_string().contains("rolled back"), "{err}");
    }
    assert_eq!(support::dump(&storage), before, "nothing written");
    let report = vault.verify(|_| {}).unwrap();
    let n = &report.namespaces[0];
    assert!(
        n.manifest_damaged
            .is_some_and(|r| r.contains("rolled back")),
        "{report}"
    );
    // Reads still serve the newest values.
    assert_eq!(
        ns.get::<Token>("a")
            .unwrap()
            .unwrap()
            .access_token()
            .expose_secret(),
        "3"
    );
}

#[test]
fn repeated_failed_rotations_never_lock_the_vault() {
    // Every rotation fails on a damaged record; the keys must not pile up (a namespace holds
    // at most 64), or the header would be written but could never be opened again.
    let storage = MemoryBackend::new();
    let vault = Vault::create_with_backend(storage.clone(), &raw_key(1)).unwrap();
    let ns = vault.namespace("n").unwrap();
    ns.put("good", &small_token("v")).unwrap();
    ns.put("bad", &small_token("v")).unwrap();
    let header_before = storage.read_header().unwrap().unwrap().len();
    let (tree, id, mut sealed) = records(&storage)
        .into_iter()
        .find(|(t, k, v)| {
            let mut probe = v.clone();
            probe[60] ^= 1;
            storage.put(t, k, probe).unwrap();
            let broken = ns.get::<Token>("bad").is_err();
            storage.put(t, k, v.clone()).unwrap();
            broken
        })
        .unwrap();
    sealed[60] ^= 1;
    storage.put(&tree, &id, sealed).unwrap();
    for _ in 0..70 {
        assert!(vault.rotate_namespace_key("n", |_| {}).is_err());
    }
    let header_after = storage.read_header().unwrap().unwrap().len();
    assert!(
        header_after <= header_before + 64,
        "keys piled up: {header_before} -> {header_after}"
    );
    vault.close().unwrap();
    let vault = Vault::open_with_backend(storage, &raw_key(1)).unwrap();
    let t: Token = vault.namespace("n").unwrap().get("good").unwrap().unwrap();
    assert_eq!(t.access_token().expose_secret(), "v");
    assert!(vault.verify(|_| {}).unwrap().namespaces[0].rotation_pending);
}

#[test]
fn large_records_round_trip_on_disk() {
    // Records near the size limit make sled write nodes over its segment threshold to
    // separate blob files, which a durable flush must sync as well.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v");
    let vault = Vault::create(&path, &raw_key(1)).unwrap();
    let ns = vault.namespace("big").unwrap();
    let big = |i: usize| {
        small_token(&format!(
            "{i}-{}",
            "x".repeat(tokenvault::format::MAX_RECORD_LEN - 300)
        ))
    };
    for i in 0..12 {
        ns.put(&format!("k{i}"), &big(i)).unwrap();
    }
    let blobs = fs::read_dir(path.join("data").join("blobs"))
        .map(|d| d.count())
        .unwrap_or(0);
    eprintln!("sled blob files: {blobs}");
    vault.close().unwrap();
    let vault = Vault::open(&path, &raw_key(1)).unwrap();
    let ns = vault.namespace("big").unwrap();
    for i in 0..12 {
        assert!(ns
            .get::<Token>(&format!("k{i}"))
            .unwrap()
            .unwrap()
            .same_as(&big(i)));
    }
    assert!(vault.verify(|_| {}).unwrap().is_clean());
}

/// A backend that panics on every record read and write, as sled does on some damaged files.
#[derive(Debug, Clone)]
struct PanickingBackend(MemoryBackend, std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Backend for PanickingBackend {
    fn read_header(&self) -> Result<Option<Vec<u8>>, tokenvault::backend::BackendError> {
        self.0.read_header()
    }
    fn write_header(
        &self,
        expected: Option<&[u8]>,
        bytes: &[u8],
    ) -> Result<bool, tokenvault::backend::BackendError> {
        self.0.write_header(expected, bytes)
    }
    fn get(
        &self,
        tree: &[u8],
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, tokenvault::backend::BackendError> {
        if self.1.load(std::sync::atomic::Ordering::SeqCst) {
            panic!("simulated sled panic in get");
        }
        self.0.get(tree, key)
    }
    fn scan(
        &self,
        tree: &[u8],
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<tokenvault::backend::ScanPage, tokenvault::backend::BackendError> {
        if self.1.load(std::sync::atomic::Ordering::SeqCst) {
            panic!("simulated sled panic in scan");
        }
        self.0.scan(tree, prefix, after, limit)
    }
    fn apply(
        &self,
        batch: &tokenvault::backend::Batch,
    ) -> Result<bool, tokenvault::backend::BackendError> {
        if self.1.load(std::sync::atomic::Ordering::SeqCst) {
            panic!("simulated sled panic in apply");
        }
        self.0.apply(batch)
    }
    fn drop_tree(&self, tree: &[u8]) -> Result<(), tokenvault::backend::BackendError> {
        self.0.drop_tree(tree)
    }
    fn trees(&self) -> Result<Vec<Vec<u8>>, tokenvault::backend::BackendError> {
        self.0.trees()
    }
    fn flush(&self) -> Result<(), tokenvault::backend::BackendError> {
        self.0.flush()
    }
    fn close(&self) -> Result<(), tokenvault::backend::BackendError> {
        self.0.close()
    }
}

#[test]
fn a_panicking_backend_gives_errors_and_keeps_what_is_stored() {
    let armed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let storage = PanickingBackend(MemoryBackend::new(), armed.clone());
    let vault = Vault::create_with_backend(storage, &raw_key(1)).unwrap();
    let ns = vault.namespace("n").unwrap();
    ns.put("k", &small_token("kept")).unwrap();
    armed.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(matches!(ns.get::<Token>("k"), Err(Error::Backend(_))));
    assert!(matches!(
        ns.put("k", &small_token("new")),
        Err(Error::Backend(_))
    ));
    assert!(matches!(ns.keys(), Err(Error::Backend(_))));
    assert!(matches!(vault.verify(|_| {}), Err(Error::Backend(_))));
    armed.store(false, std::sync::atomic::Ordering::SeqCst);
    let t: Token = ns.get("k").unwrap().unwrap();
    assert_eq!(t.access_token().expose_secret(), "kept");
}

#[test]
fn leftovers_no_entry_names_are_kept_until_purged() {
    let storage = MemoryBackend::new();
    let vault = Vault::create_with_backend(storage.clone(), &raw_key(1)).unwrap();
    vault
        .namespace("n")
        .unwrap()
        .put("k", &small_token("v"))
        .unwrap();
    let gone = vault.namespace("gone").unwrap();
    for i in 0..3 {
        gone.put(&format!("k{i}"), &small_token("x")).unwrap();
    }
    vault.close().unwrap();
    // What a removal that stopped after its first batch leaves: the entry and the manifest
    // are gone, the records are not.
    let (prefix, _) = namespace_with(&storage, 3);
    storage.remove(b"e", &prefix[..32]).unwrap();
    storage.remove(b"m", &prefix).unwrap();
    // What an upgrade from format 1 that stopped before dropping the old trees leaves.
    storage.put(&[9u8; 32], &[0], vec![1, 2, 3]).unwrap();
    let vault = Vault::open_with_backend(storage.clone(), &raw_key(1)).unwrap();
    let report = vault.verify(|_| {}).unwrap();
    assert_eq!((report.orphans, report.orphan_trees), (1, 1), "{report}");
    assert!(!report.is_clean());
    assert_eq!(vault.namespaces().unwrap(), ["n"]);
    assert_eq!(vault.purge_orphans().unwrap(), 2);
    assert_eq!(records(&storage).len(), 1);
    assert!(!storage.trees().unwrap().contains(&vec![9u8; 32]));
    let report = vault.verify(|_| {}).unwrap();
    assert!(report.is_clean(), "{report}");
    let t: Token = vault.namespace("n").unwrap().get("k").unwrap().unwrap();
    assert_eq!(t.access_token().expose_secret(), "v");
}

/// sled 0.34.7 writes a snapshot to `snap.<lsn>.generating` and renames it when complete,
/// but at open reads the highest-numbered `snap.*` file, an interrupted one included, and
/// then refuses to open ("Read corrupted data", sled issue #1527). A kill while sled writes a
/// snapshot (it does so at open, after recovery) left exactly that in the crash test; the
/// backend removes such leftovers before sled opens.
#[test]
fn an_interrupted_sled_snapshot_does_not_stop_the_vault_from_opening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v");
    let vault = Vault::create(&path, &raw_key(1)).unwrap();
    vault
        .namespace("n")
        .unwrap()
        .put("k", &full_token(1))
        .unwrap();
    vault.close().unwrap();
    for contents in [&b""[..], &[0x55; 700][..]] {
        let leftover = path.join("data").join("snap.7FFFFFFFFFFFFFFF.generating");
        fs::write(&leftover, contents).unwrap();
        let vault = Vault::open(&path, &raw_key(1)).unwrap();
        let token: Token = vault.namespace("n").unwrap().get("k").unwrap().unwrap();
        assert!(token.same_as(&full_token(1)));
        vault.close().unwrap();
        assert!(!leftover.exists());
    }
}

/// Every manifest's stored bytes.
fn manifest_bytes(storage: &MemoryBackend) -> Vec<(Vec<u8>, Vec<u8>)> {
    manifests(storage)
}

#[test]
fn overwrites_leave_the_manifest_alone_and_versions_keep_growing() {
    let storage = MemoryBackend::new();
    let vault = Vault::create_with_backend(storage.clone(), &raw_key(1)).unwrap();
    let ns = vault.namespace("n").unwrap();
    let mut versions = vec![ns.put("a", &small_token("0")).unwrap()];
    let manifest = manifest_bytes(&storage);
    for i in 1..20 {
        versions.push(ns.put("a", &small_token(&i.to_string())).unwrap());
        assert_eq!(
            manifest_bytes(&storage),
            manifest,
            "an overwrite wrote the manifest"
        );
    }
    // A compare-and-swap over an existing record takes the same path.
    let swapped = ns
        .compare_and_swap("a", versions.last().copied(), &small_token("cas"))
        .unwrap()
        .unwrap();
    versions.push(swapped);
    assert_eq!(manifest_bytes(&storage), manifest);
    // A new record changes the count: the manifest is written.
    versions.push(ns.put("b", &small_token("b")).unwrap());
    assert_ne!(
        manifest_bytes(&storage),
        manifest,
        "a new record left the manifest"
    );
    vault.close().unwrap();
    // Across a reopen, and past a reservation, versions only grow.
    let vault = Vault::open_with_backend(storage.clone(), &raw_key(1)).unwrap();
    let ns = vault.namespace("n").unwrap();
    for i in 0..(RESERVED_GENERATIONS + 10) {
        versions.push(ns.put("a", &small_token(&i.to_string())).unwrap());
    }
    assert!(
        versions.windows(2).all(|w| w[0] < w[1]),
        "versions repeat or shrink"
    );
    assert_eq!(ns.record_count().unwrap(), 2);
    assert!(vault.verify(|_| {}).unwrap().is_clean());
}

#[test]
fn storage_rolled_back_past_a_checkpoint_is_refused_at_open() {
    let storage = MemoryBackend::new();
    let vault = Vault::create_with_backend(storage.clone(), &raw_key(1)).unwrap();
    vault
        .namespace("a")
        .unwrap()
        .put("k", &small_token("a1"))
        .unwrap();
    vault.checkpoint().unwrap();
    let old: Vec<_> = support::dump(&storage);
    vault
        .namespace("a")
        .unwrap()
        .put("k", &small_token("a2"))
        .unwrap();
    vault.close().unwrap();
    // The storage falls back to its state at the first checkpoint (the header stays).
    for (tree, key, _) in support::dump(&storage) {
        storage.remove(&tree, &key).unwrap();
    }
    for (tree, key, value) in old {
        storage.put(&tree, &key, value).unwrap();
    }
    let err = Vault::open_with_backend(storage.clone(), &raw_key(1)).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Damaged(tokenvault::Damage::Rollback {
                found: Some(1),
                expected: 2
            })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("rolled back"), "{err}");
    // Opened anyway on request: the older value, and the next checkpoint accepts it.
    let vault = VaultOptions::new()
        .accept_rollback(true)
        .open_with_backend(storage.clone(), &raw_key(1))
        .unwrap();
    let t: Token = vault.namespace("a").unwrap().get("k").unwrap().unwrap();
    assert_eq!(t.access_token().expose_secret(), "a1");
    vault
        .namespace("a")
        .unwrap()
        .put("k", &small_token("a3"))
        .unwrap();
    vault.close().unwrap();
    let vault = Vault::open_with_backend(storage.clone(), &raw_key(1)).unwrap();
    let t: Token = vault.namespace("a").unwrap().get("k").unwrap().unwrap();
    assert_eq!(t.access_token().expose_secret(), "a3");
    vault.close().unwrap();
    // A missing or forged anchor is refused the same way.
    let anchor = storage.get(b"m", &[0]).unwrap().unwrap();
    storage.remove(b"m", &[0]).unwrap();
    assert!(matches!(
        Vault::open_with_backend(storage.clone(), &raw_key(1)),
        Err(Error::Damaged(tokenvault::Damage::Rollback {
            found: None,
            ..
        }))
    ));
    let mut forged = anchor.clone();
    forged[1] = forged[1].wrapping_add(5);
    storage.put(b"m", &[0], forged).unwrap();
    assert!(matches!(
        Vault::open_with_backend(storage.clone(), &raw_key(1)),
        Err(Error::Damaged(tokenvault::Damage::Rollback {
            found: None,
            ..
        }))
    ));
    storage.put(b"m", &[0], anchor).unwrap();
    Vault::open_with_backend(storage, &raw_key(1)).unwrap();
}

#[test]
fn the_cache_size_is_a_setting_of_the_process_not_of_the_vault() {
    // sled refuses some settings that differ from the ones a database was created with; the
    // cache size must not be one of them.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v");
    let vault = VaultOptions::new()
        .sled(SledOptions::new().cache_capacity(1 << 20))
        .create(&path, &raw_key(1))
        .unwrap();
    let ns = vault.namespace("n").unwrap();
    let items: Vec<String> = (0..500).map(|i| format!("k{i}")).collect();
    for k in &items {
        ns.put(k, &small_token(k)).unwrap();
    }
    vault.close().unwrap();
    for cache in [256 << 10, 256 << 20] {
        let vault = VaultOptions::new()
            .sled(SledOptions::new().cache_capacity(cache))
            .open(&path, &raw_key(1))
            .unwrap();
        let ns = vault.namespace("n").unwrap();
        for k in &items {
            let t = ns.get::<Token>(k).unwrap().unwrap();
            assert_eq!(t.access_token().expose_secret(), k);
        }
        vault.close().unwrap();
    }
}
