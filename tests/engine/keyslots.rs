//! Keyslots and key sources: wrong keys, the Argon2 policy and its bounds, key files,
//! passphrase changes that rewrite only the header, master-key rotation.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::Path;

use sha2::{Digest, Sha256};
use support::BackendExt;
use support::{fast, passphrase, raw_key, small_token};
use tokenvault::backend::{Backend, MemoryBackend};
use tokenvault::secrecy::ExposeSecret;
use tokenvault::test_hooks::kdf_runs_on_this_thread;
use tokenvault::{Damage, Error, KdfParams, KeySource, SlotKind, Token, Vault, VaultOptions};

/// Offset of the first keyslot's Argon2 `m` field in a header whose first slot is a
/// passphrase slot: magic 8, version 2, body_len 4, vault_id 16, seqid 8, next_slot_id 4,
/// slot_count 2, slot id 4, kind 1, params_len 2, argon2 version 4.
const FIRST_SLOT_M: usize = 8 + 2 + 4 + 16 + 8 + 4 + 2 + 4 + 1 + 2 + 4;

fn fix_checksum(header: &mut [u8]) {
    let n = header.len();
    let sum: [u8; 32] = Sha256::digest(&header[..n - 32]).into();
    header[n - 32..].copy_from_slice(&sum);
}

#[test]
fn wrong_passphrase_costs_one_kdf_per_passphrase_slot() {
    let storage = MemoryBackend::new();
    let vault = fast()
        .create_with_backend(storage.clone(), &passphrase("one"))
        .unwrap();
    vault.add_keyslot(&passphrase("two")).unwrap();
    vault.add_keyslot(&raw_key(1)).unwrap();
    vault.add_keyslot(&passphrase("three")).unwrap();
    vault.close().unwrap();

    let before = kdf_runs_on_this_thread();
    let err = fast()
        .open_with_backend(storage.clone(), &passphrase("wrong"))
        .unwrap_err();
    assert!(matches!(err, Error::WrongKey), "{err}");
    assert_eq!(
        kdf_runs_on_this_thread() - before,
        3,
        "one run per passphrase slot"
    );

    // Naming the slot: exactly one derivation.
    let before = kdf_runs_on_this_thread();
    let err = fast()
        .slot(0)
        .open_with_backend(storage.clone(), &passphrase("three"))
        .unwrap_err();
    assert!(matches!(err, Error::WrongKey));
    assert_eq!(kdf_runs_on_this_thread() - before, 1);
    let before = kdf_runs_on_this_thread();
    fast()
        .slot(3)
        .open_with_backend(storage.clone(), &passphrase("three"))
        .unwrap()
        .close()
        .unwrap();
    assert_eq!(kdf_runs_on_this_thread() - before, 1);

    // A raw key never runs Argon2; a wrong one is WrongKey too.
    let before = kdf_runs_on_this_thread();
    assert!(matches!(
        fast().open_with_backend(storage.clone(), &raw_key(2)),
        Err(Error::WrongKey)
    ));
    assert_eq!(kdf_runs_on_this_thread(), before);
    fast()
        .open_with_backend(storage.clone(), &raw_key(1))
        .unwrap()
        .close()
        .unwrap();
    assert!(matches!(
        fast().slot(99).open_with_backend(storage, &raw_key(1)),
        Err(Error::NoSuchKeyslot { slot: 99 })
    ));
}

#[test]
fn wrong_key_is_told_apart_from_damage() {
    let storage = MemoryBackend::new();
    fast()
        .create_with_backend(storage.clone(), &passphrase("pw"))
        .unwrap()
        .close()
        .unwrap();
    let good = storage.read_header().unwrap().unwrap();
    for i in [0, 9, 20, good.len() / 2, good.len() - 40, good.len() - 1] {
        let mut bad = good.clone();
        bad[i] ^= 0x40;
        storage.overwrite_header(&bad).unwrap();
        let err = fast()
            .open_with_backend(storage.clone(), &passphrase("pw"))
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::Damaged(Damage::Header { .. }) | Error::UnsupportedVersion { .. }
            ),
            "byte {i}: {err}"
        );
        let err = fast()
            .open_with_backend(storage.clone(), &passphrase("wrong"))
            .unwrap_err();
        assert!(
            !matches!(err, Error::WrongKey),
            "byte {i}: damage reported as a wrong key"
        );
    }
    // Tampering that also fixes the checksum (here: the seqid) is caught by the MAC.
    let mut tampered = good.clone();
    tampered[8 + 2 + 4 + 16] ^= 1;
    fix_checksum(&mut tampered);
    storage.overwrite_header(&tampered).unwrap();
    let err = fast()
        .open_with_backend(storage.clone(), &passphrase("pw"))
        .unwrap_err();
    assert!(
        matches!(err, Error::Damaged(Damage::Header { .. })),
        "{err}"
    );
    storage.overwrite_header(&good).unwrap();
    fast()
        .open_with_backend(storage, &passphrase("pw"))
        .unwrap()
        .close()
        .unwrap();
}

#[test]
fn kdf_parameters_from_disk_are_bounded_before_any_derivation() {
    let storage = MemoryBackend::new();
    fast()
        .create_with_backend(storage.clone(), &passphrase("pw"))
        .unwrap()
        .close()
        .unwrap();
    let good = storage.read_header().unwrap().unwrap();
    // (field offset from m, value): m = 4 GiB + 1 KiB, t = 65, p = 17, p = 0.
    for (delta, value) in [
        (0usize, 4 * 1024 * 1024 + 1u32),
        (4, 65),
        (8, 17),
        (8, 0),
        (4, 0),
    ] {
        let mut bad = good.clone();
        bad[FIRST_SLOT_M + delta..FIRST_SLOT_M + delta + 4].copy_from_slice(&value.to_le_bytes());
        fix_checksum(&mut bad);
        storage.overwrite_header(&bad).unwrap();
        let before = kdf_runs_on_this_thread();
        let started = std::time::Instant::now();
        let err = fast()
            .open_with_backend(storage.clone(), &passphrase("pw"))
            .unwrap_err();
        assert!(
            matches!(err, Error::Damaged(Damage::Header { .. })),
            "{err}"
        );
        assert_eq!(kdf_runs_on_this_thread(), before, "no derivation may run");
        // Informational only (timing is asserted in benchmarks, not tests).
        let _ = started.elapsed();
    }
}

#[test]
fn creation_floor_and_presets() {
    assert_eq!(KdfParams::default(), KdfParams::RFC9106_SECOND);
    assert_eq!(
        (
            KdfParams::RFC9106_SECOND.m_kib(),
            KdfParams::RFC9106_SECOND.t(),
            KdfParams::RFC9106_SECOND.p()
        ),
        (65536, 3, 4)
    );
    assert!(matches!(
        KdfParams::new(19 * 1024 - 1, 2, 1),
        Err(Error::KdfParams { .. })
    ));
    assert!(matches!(
        KdfParams::new(64 * 1024, 1, 4),
        Err(Error::KdfParams { .. })
    ));
    assert!(matches!(
        KdfParams::new(64 * 1024, 3, 17),
        Err(Error::KdfParams { .. })
    ));
    assert!(KdfParams::new(19 * 1024, 2, 1).is_ok());
    assert!(KdfParams::insecure_for_tests().is_insecure());
    assert!(!KdfParams::STRONG.is_insecure());

    // The default options really use the RFC preset.
    let storage = MemoryBackend::new();
    let vault = Vault::create_with_backend(storage, &passphrase("pw")).unwrap();
    let slots = vault.keyslots().unwrap();
    assert_eq!(slots[0].kind, SlotKind::Passphrase);
    assert_eq!(slots[0].kdf, Some(KdfParams::RFC9106_SECOND));
}

#[test]
fn weak_slots_can_be_upgraded_on_open() {
    let storage = MemoryBackend::new();
    fast()
        .create_with_backend(storage.clone(), &passphrase("pw"))
        .unwrap()
        .close()
        .unwrap();
    let policy = KdfParams::new(19 * 1024, 2, 1).unwrap();
    // Without the option nothing changes.
    let vault = VaultOptions::new()
        .kdf(policy)
        .open_with_backend(storage.clone(), &passphrase("pw"))
        .unwrap();
    assert_eq!(vault.keyslots().unwrap()[0].kdf.unwrap().m_kib(), 64);
    vault.close().unwrap();
    let vault = VaultOptions::new()
        .kdf(policy)
        .upgrade_weak_slots(true)
        .open_with_backend(storage.clone(), &passphrase("pw"))
        .unwrap();
    let seq = vault.header_seqid().unwrap();
    assert_eq!(vault.keyslots().unwrap()[0].kdf, Some(policy));
    vault.close().unwrap();
    let vault = VaultOptions::new()
        .kdf(policy)
        .upgrade_weak_slots(true)
        .open_with_backend(storage, &passphrase("pw"))
        .unwrap();
    assert_eq!(
        vault.header_seqid().unwrap(),
        seq,
        "a strong slot is not rewritten"
    );
}

fn hash_tree(dir: &Path) -> Vec<(String, [u8; 32])> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        if path.is_dir() {
            out.extend(hash_tree(&path));
        } else {
            let bytes = fs::read(&path).unwrap();
            out.push((path.display().to_string(), Sha256::digest(&bytes).into()));
        }
    }
    out.sort();
    out
}

#[test]
fn changing_the_passphrase_rewrites_only_the_header() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v");
    let vault = fast().create(&path, &passphrase("old")).unwrap();
    let ns = vault.namespace("n").unwrap();
    for i in 0..300 {
        ns.put(&format!("k{i}"), &small_token(&format!("t{i}")))
            .unwrap();
    }
    let header_len = fs::metadata(path.join("tokenvault.header")).unwrap().len();
    let data_before = hash_tree(&path.join("data"));
    let seq = vault.header_seqid().unwrap();

    vault
        .change_passphrase(&passphrase("old"), &passphrase("new"))
        .unwrap();
    assert_eq!(vault.header_seqid().unwrap(), seq + 1);
    assert_eq!(
        hash_tree(&path.join("data")),
        data_before,
        "records must not be rewritten"
    );
    assert_eq!(
        fs::metadata(path.join("tokenvault.header")).unwrap().len(),
        header_len,
        "the header does not grow with records"
    );
    assert!(matches!(
        vault.change_passphrase(&passphrase("old"), &passphrase("x")),
        Err(Error::WrongKey)
    ));
    vault.close().unwrap();

    // The old secret fails on the directory and on any copy made from now on.
    let copy = dir.path().join("copy");
    support::copy_dir(&path, &copy);
    for p in [&path, &copy] {
        assert!(matches!(
            fast().open(p, &passphrase("old")),
            Err(Error::WrongKey)
        ));
        let vault = fast().open(p, &passphrase("new")).unwrap();
        let t: Token = vault.namespace("n").unwrap().get("k299").unwrap().unwrap();
        assert_eq!(t.access_token().expose_secret(), "t299");
        vault.close().unwrap();
    }
}

#[test]
fn header_size_is_independent_of_record_count() {
    let sizes: Vec<usize> = [0usize, 1, 500]
        .iter()
        .map(|&n| {
            let storage = MemoryBackend::new();
            let vault = Vault::create_with_backend(storage.clone(), &raw_key(1)).unwrap();
            let ns = vault.namespace("n").unwrap();
            ns.put("first", &small_token("a")).unwrap();
            for i in 0..n {
                ns.put(&format!("k{i}"), &small_token("b")).unwrap();
            }
            vault.add_keyslot(&raw_key(2)).unwrap();
            let len = storage.read_header().unwrap().unwrap().len();
            vault.close().unwrap();
            len
        })
        .collect();
    assert!(sizes.windows(2).all(|w| w[0] == w[1]), "{sizes:?}");
}

#[test]
fn adding_and_removing_keyslots() {
    let storage = MemoryBackend::new();
    let vault = fast()
        .create_with_backend(storage.clone(), &passphrase("a"))
        .unwrap();
    vault
        .namespace("n")
        .unwrap()
        .put("k", &small_token("v"))
        .unwrap();
    let b = vault.add_keyslot(&passphrase("b")).unwrap();
    let c = vault.add_keyslot(&raw_key(7)).unwrap();
    assert_eq!((b, c), (1, 2));
    assert_eq!(vault.keyslots().unwrap().len(), 3);
    assert!(matches!(
        vault.remove_keyslot(42),
        Err(Error::NoSuchKeyslot { slot: 42 })
    ));
    vault.remove_keyslot(0).unwrap();
    vault.remove_keyslot(c).unwrap();
    assert!(matches!(vault.remove_keyslot(b), Err(Error::LastKeyslot)));
    vault.close().unwrap();

    assert!(matches!(
        fast().open_with_backend(storage.clone(), &passphrase("a")),
        Err(Error::WrongKey)
    ));
    assert!(matches!(
        fast().open_with_backend(storage.clone(), &raw_key(7)),
        Err(Error::WrongKey)
    ));
    let vault = fast().open_with_backend(storage, &passphrase("b")).unwrap();
    // Slot ids are never reused.
    assert_eq!(vault.add_keyslot(&raw_key(8)).unwrap(), 3);
    let t: Token = vault.namespace("n").unwrap().get("k").unwrap().unwrap();
    assert_eq!(t.access_token().expose_secret(), "v");
}

#[test]
fn key_files() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, contents: &[u8], mode: u32| {
        let p = dir.path().join(name);
        fs::write(&p, contents).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        }
        p
    };
    let raw = write("raw.key", &[5u8; 32], 0o600);
    let hex = write(
        "hex.key",
        format!("{}\n", "05".repeat(32)).as_bytes(),
        0o400,
    );
    let storage = MemoryBackend::new();
    Vault::create_with_backend(storage.clone(), &KeySource::key_file(&raw))
        .unwrap()
        .close()
        .unwrap();
    // The same 32 bytes, in hex, from a raw key: all three are the same key.
    for key in [
        KeySource::key_file(&hex),
        raw_key(5),
        KeySource::key_file(&raw),
    ] {
        Vault::open_with_backend(storage.clone(), &key)
            .unwrap()
            .close()
            .unwrap();
    }

    let bad = [
        write("open.key", &[5u8; 32], 0o644),
        write("group.key", &[5u8; 32], 0o640),
        write("short.key", &[5u8; 31], 0o600),
        write("long.key", &[5u8; 33], 0o600),
        write("badhex.key", "zz".repeat(32).as_bytes(), 0o600),
        dir.path().join("missing.key"),
        dir.path().to_path_buf(),
    ];
    for path in bad {
        let err =
            Vault::open_with_backend(storage.clone(), &KeySource::key_file(&path)).unwrap_err();
        assert!(
            matches!(err, Error::KeySource { .. }),
            "{}: {err}",
            path.display()
        );
        assert!(
            !err.to_string().contains("0505"),
            "no key bytes in messages"
        );
    }
    // A bad key source at create leaves nothing behind.
    let path = dir.path().join("v");
    let err =
        Vault::create(&path, &KeySource::key_file(dir.path().join("missing.key"))).unwrap_err();
    assert!(matches!(err, Error::KeySource { .. }));
    assert!(!path.exists());
    assert!(matches!(
        Vault::create_with_backend(MemoryBackend::new(), &passphrase("")),
        Err(Error::KeySource { .. })
    ));
}

#[test]
fn master_key_rotation_rewraps_everything() {
    let storage = MemoryBackend::new();
    let vault = fast()
        .create_with_backend(storage.clone(), &passphrase("a"))
        .unwrap();
    for ns in ["x", "y", "z"] {
        vault
            .namespace(ns)
            .unwrap()
            .put("k", &small_token(ns))
            .unwrap();
    }
    vault.close().unwrap();
    // After the close: its checkpoint rewrites the manifests it wrote to.
    let records_before = support::dump(&storage);

    // Opened with "a": slot 1 (added by another handle) is unknown to this one.
    let other = fast()
        .open_with_backend(storage.clone(), &passphrase("a"))
        .unwrap();
    other.add_keyslot(&raw_key(9)).unwrap();
    other.close().unwrap();
    let vault = fast()
        .open_with_backend(storage.clone(), &passphrase("a"))
        .unwrap();
    let seq = vault.header_seqid().unwrap();
    let err = vault.rotate_master_key().unwrap_err();
    assert!(
        matches!(&err, Error::SlotSecretsMissing { slots } if slots == &[1]),
        "{err}"
    );
    assert_eq!(vault.header_seqid().unwrap(), seq, "nothing written");
    assert!(matches!(
        vault.rotate_master_key_with(&[&raw_key(3)]),
        Err(Error::WrongKey)
    ));
    let header_before = storage.read_header().unwrap().unwrap();
    vault.rotate_master_key_with(&[&raw_key(9)]).unwrap();
    let header_after = storage.read_header().unwrap().unwrap();
    assert_ne!(header_before, header_after);
    // Every slot was re-wrapped: the wrapped keys differ, the salts and parameters do not.
    assert_eq!(
        support::dump(&storage),
        records_before,
        "no record is rewritten"
    );
    vault.rotate_master_key().unwrap(); // now it knows both secrets
    vault.close().unwrap();
    for key in [passphrase("a"), raw_key(9)] {
        let vault = fast().open_with_backend(storage.clone(), &key).unwrap();
        for ns in ["x", "y", "z"] {
            let t: Token = vault.namespace(ns).unwrap().get("k").unwrap().unwrap();
            assert_eq!(t.access_token().expose_secret(), ns);
        }
        assert!(vault.verify(|_| {}).unwrap().is_clean());
        vault.close().unwrap();
    }
}

#[test]
fn newer_format_versions_are_refused_clearly() {
    let storage = MemoryBackend::new();
    Vault::create_with_backend(storage.clone(), &raw_key(1))
        .unwrap()
        .close()
        .unwrap();
    let mut header = storage.read_header().unwrap().unwrap();
    header[8] = 3;
    fix_checksum(&mut header);
    storage.overwrite_header(&header).unwrap();
    let err = Vault::open_with_backend(storage, &raw_key(1)).unwrap_err();
    assert!(
        matches!(
            err,
            Error::UnsupportedVersion {
                found: 3,
                supported: 2
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("upgrade"));
}

#[test]
fn seqid_counts_header_writes() {
    let vault = Vault::create_with_backend(MemoryBackend::new(), &raw_key(1)).unwrap();
    let s0 = vault.header_seqid().unwrap();
    vault
        .namespace("a")
        .unwrap()
        .put("k", &small_token("v"))
        .unwrap(); // creates "a": its entry is not in the header
    assert_eq!(vault.header_seqid().unwrap(), s0);
    vault.remove_namespace("a").unwrap(); // no header change either
    assert_eq!(vault.header_seqid().unwrap(), s0);
    let id = vault.add_keyslot(&raw_key(2)).unwrap();
    vault.remove_keyslot(id).unwrap();
    assert_eq!(vault.header_seqid().unwrap(), s0 + 2);
    vault
        .namespace("b")
        .unwrap()
        .put("k", &small_token("v"))
        .unwrap();
    vault.checkpoint().unwrap(); // records the epoch
    assert_eq!(vault.header_seqid().unwrap(), s0 + 3);
    vault.checkpoint().unwrap(); // nothing written since
    assert_eq!(vault.header_seqid().unwrap(), s0 + 3);
}

/// A vault whose header an older tokenvault wrote with two keyslots for one secret
/// (`tests/data/duplicate-slots/README.md`); this version refuses to make such slots.
fn with_duplicate_slots(file: &str) -> MemoryBackend {
    let header = fs::read(Path::new("tests/data/duplicate-slots").join(file)).unwrap();
    let storage = MemoryBackend::new();
    storage.overwrite_header(&header).unwrap();
    storage
}

#[test]
fn a_secret_shared_by_two_slots_rotates_both() {
    // Slot 0: raw key 1; slots 1 and 2: raw key 2.
    let storage = with_duplicate_slots("raw-key.header");
    let vault = Vault::open_with_backend(storage.clone(), &raw_key(1)).unwrap();
    vault
        .rotate_master_key_with(&[&raw_key(2), &raw_key(2)])
        .unwrap();
    vault.close().unwrap();
    for id in [1, 2] {
        VaultOptions::new()
            .slot(id)
            .open_with_backend(storage.clone(), &raw_key(2))
            .unwrap()
            .close()
            .unwrap();
    }
    // Removing a namespace that does not exist writes nothing.
    let vault = Vault::open_with_backend(storage, &raw_key(1)).unwrap();
    let seq = vault.header_seqid().unwrap();
    assert!(!vault.remove_namespace("never-there").unwrap());
    assert_eq!(vault.header_seqid().unwrap(), seq);
}

/// Regression (issue 12, finding 2): a secret shared by two slots was changed in the first
/// slot only, so the old secret kept opening the vault through the second.
#[test]
fn change_passphrase_changes_every_slot_the_old_secret_opens() {
    // Slots 0 and 2: "shared", slot 1: "other" (as an older version's add_keyslot allowed).
    let storage = with_duplicate_slots("passphrase.header");
    let vault = fast()
        .open_with_backend(storage.clone(), &passphrase("shared"))
        .unwrap();

    // One derivation per passphrase slot to find the old secret's slots, one per other
    // slot to check that the new secret opens none of them, one per slot re-made.
    let before = kdf_runs_on_this_thread();
    let changed = vault
        .change_passphrase(&passphrase("shared"), &passphrase("new"))
        .unwrap();
    assert_eq!(changed, vec![0, 2]);
    assert_eq!(kdf_runs_on_this_thread() - before, 3 + 1 + 2);
    assert!(matches!(
        vault.change_passphrase(&passphrase("shared"), &passphrase("x")),
        Err(Error::WrongKey)
    ));
    vault.close().unwrap();

    // The old secret opens nothing: not by trying every slot, not by naming one.
    let open = |options: VaultOptions, key: &str| {
        options.open_with_backend(storage.clone(), &passphrase(key))
    };
    assert!(matches!(open(fast(), "shared"), Err(Error::WrongKey)));
    for id in [0, 1, 2] {
        assert!(
            matches!(open(fast().slot(id), "shared"), Err(Error::WrongKey)),
            "slot {id}"
        );
    }
    for id in [0, 2] {
        open(fast().slot(id), "new").unwrap().close().unwrap();
    }
    open(fast().slot(1), "other").unwrap().close().unwrap();
}

/// Regression (issue 12, finding 2): `tokenvault passwd --slot N` needs a library call that
/// changes slot N, and only it.
#[test]
fn change_keyslot_changes_only_the_named_slot() {
    let storage = MemoryBackend::new();
    let vault = fast()
        .create_with_backend(storage.clone(), &passphrase("a"))
        .unwrap();
    vault.add_keyslot(&passphrase("b")).unwrap();
    let seq = vault.header_seqid().unwrap();

    // Errors change nothing, and checking `old` costs one derivation.
    assert!(matches!(
        vault.change_keyslot(7, &passphrase("a"), &passphrase("c")),
        Err(Error::NoSuchKeyslot { slot: 7 })
    ));
    let before = kdf_runs_on_this_thread();
    assert!(matches!(
        vault.change_keyslot(1, &passphrase("a"), &passphrase("c")),
        Err(Error::WrongKey)
    ));
    assert_eq!(kdf_runs_on_this_thread() - before, 1);
    assert!(matches!(
        vault.change_keyslot(1, &raw_key(1), &passphrase("c")),
        Err(Error::WrongKey)
    ));
    assert_eq!(vault.header_seqid().unwrap(), seq);

    // Slot 0 alone changes, to another kind of secret; slot 1 keeps its own.
    vault
        .change_keyslot(0, &passphrase("a"), &raw_key(9))
        .unwrap();
    assert_eq!(vault.header_seqid().unwrap(), seq + 1);
    let kinds: Vec<SlotKind> = vault.keyslots().unwrap().iter().map(|s| s.kind).collect();
    assert_eq!(kinds, [SlotKind::RawKey, SlotKind::Passphrase]);
    vault.close().unwrap();

    let open =
        |options: VaultOptions, key: &KeySource| options.open_with_backend(storage.clone(), key);
    open(fast().slot(1), &passphrase("b"))
        .unwrap()
        .close()
        .unwrap();
    open(fast().slot(0), &raw_key(9)).unwrap().close().unwrap();
    assert!(matches!(
        open(fast().slot(0), &passphrase("a")),
        Err(Error::WrongKey)
    ));
}

/// Regression (issue 12, finding 2): a new keyslot for a secret that already opens one was
/// accepted, so changing that secret later left a slot behind.
#[test]
fn add_keyslot_refuses_a_secret_that_already_opens_a_slot() {
    let dir = tempfile::tempdir().unwrap();
    let storage = MemoryBackend::new();
    let vault = fast()
        .create_with_backend(storage.clone(), &passphrase("a"))
        .unwrap();
    vault.add_keyslot(&raw_key(4)).unwrap();
    vault.add_keyslot(&passphrase("b")).unwrap();
    let seq = vault.header_seqid().unwrap();

    // One derivation per passphrase slot, and the slot named.
    let before = kdf_runs_on_this_thread();
    let err = vault.add_keyslot(&passphrase("b")).unwrap_err();
    assert!(matches!(err, Error::KeyslotExists { slot: 2 }), "{err}");
    assert_eq!(kdf_runs_on_this_thread() - before, 2);
    assert!(err.to_string().contains("keyslot 2"), "{err}");
    assert!(matches!(
        vault.add_keyslot(&passphrase("a")),
        Err(Error::KeyslotExists { slot: 0 })
    ));
    // The same key given as a key file is the same secret.
    let file = dir.path().join("k.key");
    fs::write(&file, [4u8; 32]).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
    }
    assert!(matches!(
        vault.add_keyslot(&KeySource::key_file(&file)),
        Err(Error::KeyslotExists { slot: 1 })
    ));
    assert_eq!(vault.header_seqid().unwrap(), seq, "nothing written");
    assert_eq!(vault.keyslots().unwrap().len(), 3);
    // A new secret is still welcome.
    assert_eq!(vault.add_keyslot(&passphrase("c")).unwrap(), 3);
}

/// Opens a vault with key file `path` on another thread, so that a hang fails the test (after
/// a generous limit) instead of blocking it forever.
#[cfg(unix)]
fn open_with_key_file_in_time(storage: &MemoryBackend, path: &Path) -> Error {
    let (tx, rx) = std::sync::mpsc::channel();
    let (storage, path) = (storage.clone(), path.to_path_buf());
    std::thread::spawn(move || {
        let result = Vault::open_with_backend(storage, &KeySource::key_file(&path));
        let _ = tx.send(result.err());
    });
    rx.recv_timeout(std::time::Duration::from_secs(60))
        .expect("opening with the key file hung")
        .expect("the key file was accepted")
}

/// Regression (issue 12, finding 6): a FIFO as a key file blocked the open until a writer
/// came; a device was read as a key file.
#[cfg(unix)]
#[test]
fn fifos_and_devices_as_key_files_are_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let storage = MemoryBackend::new();
    Vault::create_with_backend(storage.clone(), &raw_key(1))
        .unwrap()
        .close()
        .unwrap();
    let fifo = dir.path().join("fifo.key");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    for path in [
        fifo.as_path(),
        Path::new("/dev/zero"),
        Path::new("/dev/null"),
    ] {
        let err = open_with_key_file_in_time(&storage, path);
        assert!(
            matches!(err, Error::KeySource { .. }),
            "{}: {err}",
            path.display()
        );
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }
}

/// Regression (issue 12, finding 6): a key file owned by another user (who could replace its
/// key) was accepted. Root-owned files are accepted. Changing a file's owner needs root: as
/// another user, this checks only that one's own file is accepted.
#[cfg(unix)]
#[test]
fn key_files_owned_by_another_user_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let storage = MemoryBackend::new();
    let file = dir.path().join("vault.key");
    fs::write(&file, [6u8; 32]).unwrap();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
    Vault::create_with_backend(storage.clone(), &KeySource::key_file(&file))
        .unwrap()
        .close()
        .unwrap();
    if !rustix::process::geteuid().is_root() {
        eprintln!("not root: cannot chown a key file to another user; checked own files only");
        return;
    }
    // Root's own file opens (above); so does one owned by root while running as root. A file
    // owned by `nobody` does not, even with mode 0600.
    std::os::unix::fs::chown(&file, Some(65534), Some(65534)).unwrap();
    let err = open_with_key_file_in_time(&storage, &file);
    assert!(matches!(err, Error::KeySource { .. }), "{err}");
    assert!(err.to_string().contains("owned by user id 65534"), "{err}");
    std::os::unix::fs::chown(&file, Some(0), Some(0)).unwrap();
    Vault::open_with_backend(storage, &KeySource::key_file(&file))
        .unwrap()
        .close()
        .unwrap();
}

#[test]
fn a_change_to_a_secret_that_opens_another_slot_is_refused() {
    let storage = MemoryBackend::new();
    let vault = fast()
        .create_with_backend(storage.clone(), &passphrase("first"))
        .unwrap();
    assert_eq!(vault.add_keyslot(&passphrase("second")).unwrap(), 1);
    let before = storage.read_header().unwrap();
    // Both ways of changing a secret refuse to give it one that slot 1 already has: removing
    // slot 1 later would not revoke it.
    assert!(matches!(
        vault.change_passphrase(&passphrase("first"), &passphrase("second")),
        Err(Error::KeyslotExists { slot: 1 })
    ));
    assert!(matches!(
        vault.change_keyslot(0, &passphrase("first"), &passphrase("second")),
        Err(Error::KeyslotExists { slot: 1 })
    ));
    assert_eq!(
        storage.read_header().unwrap(),
        before,
        "nothing was written"
    );
    // Changing a slot to its own secret again (a new salt) is fine.
    vault
        .change_keyslot(1, &passphrase("second"), &passphrase("second"))
        .unwrap();
    assert_eq!(
        vault.keyslots_opened_by(&passphrase("second")).unwrap(),
        [1]
    );
    assert_eq!(vault.keyslots_opened_by(&passphrase("first")).unwrap(), [0]);
    assert!(vault
        .keyslots_opened_by(&passphrase("third"))
        .unwrap()
        .is_empty());
    vault.close().unwrap();
}

/// A recovery key unlocks a keyslot of its own: only recovery keys open it, a different one
/// is a wrong key, a typo is a typo (never a wrong key), and master-key rotation and slot
/// removal treat it like any slot.
#[test]
fn a_recovery_key_unlocks_its_own_keyslot() {
    use tokenvault::RecoveryKey;
    let storage = MemoryBackend::new();
    let vault = fast()
        .create_with_backend(storage.clone(), &raw_key(1))
        .unwrap();
    vault
        .namespace("n")
        .unwrap()
        .put("k", &small_token("v"))
        .unwrap();
    let recovery = RecoveryKey::generate().unwrap();
    let slot = vault
        .add_keyslot(&KeySource::recovery_key(&recovery))
        .unwrap();
    let kinds: Vec<SlotKind> = vault.keyslots().unwrap().iter().map(|s| s.kind).collect();
    assert_eq!(kinds, [SlotKind::RawKey, SlotKind::RecoveryKey]);
    // The same key again is refused as already enrolled.
    assert!(matches!(
        vault.add_keyslot(&KeySource::recovery_key(&recovery)),
        Err(Error::KeyslotExists { slot: s }) if s == slot
    ));
    vault.close().unwrap();

    // The text a user wrote down, typed back in, opens the vault.
    let text = recovery.expose_text();
    let typed = RecoveryKey::parse(text.expose_secret()).unwrap();
    let open = |key: &KeySource| fast().open_with_backend(storage.clone(), key);
    let vault = open(&KeySource::recovery_key(&typed)).unwrap();
    let token: Token = vault.namespace("n").unwrap().get("k").unwrap().unwrap();
    assert_eq!(token.access_token().expose_secret(), "v");
    assert_eq!(vault.unlocked_keyslot().unwrap(), slot);
    vault.close().unwrap();

    // Another recovery key is a wrong key; so is a raw key made of the same bits.
    let other = RecoveryKey::generate().unwrap();
    assert!(matches!(
        open(&KeySource::recovery_key(&other)),
        Err(Error::WrongKey)
    ));
    assert!(matches!(open(&raw_key(2)), Err(Error::WrongKey)));
    // A typo is reported as a typo, before any vault is touched.
    let mut digits = text.expose_secret().as_bytes().to_vec();
    digits[8] = if digits[8] == b'0' { b'1' } else { b'0' };
    let err = RecoveryKey::parse(std::str::from_utf8(&digits).unwrap()).unwrap_err();
    assert!(matches!(err, Error::RecoveryKeyTypo { group: Some(2) }));
    assert_eq!(err.kind(), tokenvault::ErrorKind::InvalidInput);
    assert!(!err
        .to_string()
        .contains(std::str::from_utf8(&digits[..6]).unwrap()));

    // A master-key rotation needs the recovery key too, and keeps its slot working.
    let vault = open(&raw_key(1)).unwrap();
    assert!(matches!(
        vault.rotate_master_key_with(&[&raw_key(1)]),
        Err(Error::SlotSecretsMissing { .. })
    ));
    vault
        .rotate_master_key_with(&[&raw_key(1), &KeySource::recovery_key(&typed)])
        .unwrap();
    vault.close().unwrap();
    open(&KeySource::recovery_key(&recovery))
        .unwrap()
        .close()
        .unwrap();

    // Removed, the recovery key opens nothing.
    let vault = open(&raw_key(1)).unwrap();
    vault.remove_keyslot(slot).unwrap();
    vault.close().unwrap();
    assert!(matches!(
        open(&KeySource::recovery_key(&recovery)),
        Err(Error::WrongKey)
    ));
}
