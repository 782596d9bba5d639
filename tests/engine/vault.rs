//! The vault's behaviour through the public API: create/open, namespaces, records, CAS,
//! record types, errors, threads.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::Arc;

use support::{fast, full_token, passphrase, raw_key, small_token};
use tokenvault::backend::MemoryBackend;
use tokenvault::format::RecordType;
use tokenvault::oauth::TokenError;
use tokenvault::secrecy::ExposeSecret;
use tokenvault::{Error, Secret, Token, Vault};

#[test]
fn create_refuses_existing_and_open_refuses_missing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v");
    let err = Vault::open(&path, &raw_key(1)).unwrap_err();
    assert!(
        matches!(&err, Error::NotFound { path: Some(p) } if p == &path),
        "{err}"
    );
    assert!(!path.exists(), "open must not create anything");

    let vault = Vault::create(&path, &raw_key(1)).unwrap();
    vault.close().unwrap();
    let err = Vault::create(&path, &raw_key(2)).unwrap_err();
    assert!(matches!(err, Error::AlreadyExists { .. }), "{err}");
    // The existing vault is untouched and still opens with its key.
    Vault::open(&path, &raw_key(1)).unwrap().close().unwrap();
}

#[test]
fn errors_about_a_backend_name_no_path() {
    let storage = MemoryBackend::new();
    let err = Vault::open_with_backend(storage.clone(), &raw_key(1)).unwrap_err();
    assert!(matches!(err, Error::NotFound { path: None }), "{err}");
    Vault::create_with_backend(storage.clone(), &raw_key(1))
        .unwrap()
        .close()
        .unwrap();
    let err = Vault::create_with_backend(storage, &raw_key(1)).unwrap_err();
    assert!(matches!(err, Error::AlreadyExists { path: None }), "{err}");
    assert!(!err.to_string().contains('<'), "{err}");
}

#[test]
fn round_trip_every_field_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v");
    let vault = fast().create(&path, &passphrase("pw")).unwrap();
    let ns = vault.namespace("tenant-1").unwrap();
    let tokens: Vec<Token> = (0..20).map(full_token).collect();
    for (i, t) in tokens.iter().enumerate() {
        ns.put(&format!("rs-{i}"), t).unwrap();
    }
    ns.put("minimal", &small_token("m")).unwrap();
    vault.close().unwrap();

    let vault = fast().open(&path, &passphrase("pw")).unwrap();
    let ns = vault.namespace("tenant-1").unwrap();
    for (i, t) in tokens.iter().enumerate() {
        let got: Token = ns.get(&format!("rs-{i}")).unwrap().unwrap();
        assert!(got.same_as(t), "record {i} differs: {got:?} vs {t:?}");
    }
    let m: Token = ns.get("minimal").unwrap().unwrap();
    assert_eq!(m.access_token().expose_secret(), "m");
    assert!(m.refresh_token().is_none() && m.expires_at().is_none() && m.scopes().is_empty());
    assert_eq!(m.token_type(), "Bearer");
    assert_eq!(ns.keys().unwrap().len(), 21);
}

#[test]
fn namespaces_are_separate_and_listable() {
    let vault = Vault::create_with_backend(MemoryBackend::new(), &raw_key(3)).unwrap();
    let a = vault.namespace("tenant-a").unwrap();
    let b = vault.namespace("tenant-b").unwrap();
    a.put("rs", &small_token("for-a")).unwrap();
    b.put("rs", &small_token("for-b")).unwrap();
    let got_a: Token = a.get("rs").unwrap().unwrap();
    let got_b: Token = b.get("rs").unwrap().unwrap();
    assert_eq!(got_a.access_token().expose_secret(), "for-a");
    assert_eq!(got_b.access_token().expose_secret(), "for-b");
    assert_eq!(vault.namespaces().unwrap(), ["tenant-a", "tenant-b"]);

    // Reading a namespace that was never written neither fails nor creates it.
    let ghost = vault.namespace("ghost").unwrap();
    assert!(ghost.get::<Token>("rs").unwrap().is_none());
    assert!(ghost.keys().unwrap().is_empty());
    assert!(!ghost.remove("rs").unwrap());
    assert_eq!(vault.namespaces().unwrap().len(), 2);

    // An emptied namespace still exists until removed.
    assert!(a.remove("rs").unwrap());
    assert!(!a.remove("rs").unwrap());
    assert_eq!(vault.namespaces().unwrap().len(), 2);
    assert!(vault.remove_namespace("tenant-a").unwrap());
    assert!(!vault.remove_namespace("tenant-a").unwrap());
    assert_eq!(vault.namespaces().unwrap(), ["tenant-b"]);
    // Writing again re-creates it, empty apart from the new record.
    a.put("other", &small_token("x")).unwrap();
    assert_eq!(a.keys().unwrap(), ["other"]);
}

#[test]
fn any_utf8_name_works_and_bad_names_are_refused() {
    let vault = Vault::create_with_backend(MemoryBackend::new(), &raw_key(3)).unwrap();
    for name in [
        "tenant/42",
        "ünïcødé ✓",
        " spaces ",
        "a\u{0}b",
        "\n",
        &"x".repeat(1024),
    ] {
        let ns = vault.namespace(name).unwrap();
        ns.put(name, &small_token(name)).unwrap();
        let t: Token = ns.get(name).unwrap().unwrap();
        assert_eq!(t.access_token().expose_secret(), name);
        assert_eq!(ns.keys().unwrap(), [name]);
    }
    assert!(matches!(
        vault.namespace(""),
        Err(Error::InvalidName { .. })
    ));
    assert!(matches!(
        vault.namespace(&"x".repeat(1025)),
        Err(Error::InvalidName { .. })
    ));
    let ns = vault.namespace("n").unwrap();
    assert!(matches!(
        ns.put("", &small_token("a")),
        Err(Error::InvalidName { .. })
    ));
    assert!(matches!(
        ns.get::<Token>(&"k".repeat(1025)),
        Err(Error::InvalidName { .. })
    ));
}

#[test]
fn compare_and_swap_semantics() {
    let vault = Vault::create_with_backend(MemoryBackend::new(), &raw_key(4)).unwrap();
    let ns = vault.namespace("n").unwrap();
    // None = must be absent.
    let v1 = ns
        .compare_and_swap("k", None, &small_token("one"))
        .unwrap()
        .unwrap();
    let conflict = ns
        .compare_and_swap("k", None, &small_token("again"))
        .unwrap()
        .unwrap_err();
    assert_eq!(conflict.current, Some(v1));
    let (_, read_v) = ns.get_versioned::<Token>("k").unwrap().unwrap();
    assert_eq!(read_v, v1);
    let v2 = ns
        .compare_and_swap("k", Some(v1), &small_token("two"))
        .unwrap()
        .unwrap();
    assert!(v2 > v1);
    let stale = ns
        .compare_and_swap("k", Some(v1), &small_token("three"))
        .unwrap()
        .unwrap_err();
    assert_eq!(stale.current, Some(v2));
    let t: Token = ns.get("k").unwrap().unwrap();
    assert_eq!(t.access_token().expose_secret(), "two");
    // A put moves the version on too.
    let v3 = ns.put("k", &small_token("four")).unwrap();
    assert!(v3 > v2);
    assert!(ns.compare_and_remove("k", v2).unwrap().is_err());
    ns.compare_and_remove("k", v3).unwrap().unwrap();
    assert!(ns.get::<Token>("k").unwrap().is_none());
    let gone = ns
        .compare_and_swap("k", Some(v3), &small_token("x"))
        .unwrap()
        .unwrap_err();
    assert_eq!(gone.current, None);
}

#[test]
fn concurrent_cas_loses_no_update() {
    let vault = Vault::create_with_backend(MemoryBackend::new(), &raw_key(5)).unwrap();
    let ns = vault.namespace("counter").unwrap();
    ns.put("c", &small_token("0")).unwrap();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let ns = ns.clone();
            std::thread::spawn(move || {
                let mut wins = 0u32;
                while wins < 25 {
                    let (t, v) = ns.get_versioned::<Token>("c").unwrap().unwrap();
                    let n: u32 = t.access_token().expose_secret().parse().unwrap();
                    if ns
                        .compare_and_swap("c", Some(v), &small_token(&(n + 1).to_string()))
                        .unwrap()
                        .is_ok()
                    {
                        wins += 1;
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let t: Token = ns.get("c").unwrap().unwrap();
    assert_eq!(t.access_token().expose_secret(), "200");
}

#[test]
fn secrets_and_tokens_are_distinct_types() {
    let vault = Vault::create_with_backend(MemoryBackend::new(), &raw_key(6)).unwrap();
    let ns = vault.namespace("n").unwrap();
    ns.put("client-secret", &Secret::from_text("hunter2".into()))
        .unwrap();
    ns.put("token", &small_token("at")).unwrap();
    let s: Secret = ns.get("client-secret").unwrap().unwrap();
    assert_eq!(s.expose_text(), Some("hunter2"));
    let err = ns.get::<Token>("client-secret").unwrap_err();
    assert!(
        matches!(
            err,
            Error::WrongRecordType {
                expected: RecordType::Token,
                found: RecordType::Secret
            }
        ),
        "{err}"
    );
    assert!(matches!(
        ns.get::<Secret>("token"),
        Err(Error::WrongRecordType { .. })
    ));
    let binary = Secret::from_bytes(vec![0u8, 255, 1, 2].into());
    ns.put("bin", &binary).unwrap();
    assert_eq!(
        ns.get::<Secret>("bin").unwrap().unwrap().expose_bytes(),
        [0, 255, 1, 2]
    );
    assert_eq!(ns.keys().unwrap(), ["bin", "client-secret", "token"]);
}

#[test]
fn records_over_the_limit_are_refused_and_nothing_changes() {
    let vault = Vault::create_with_backend(MemoryBackend::new(), &raw_key(6)).unwrap();
    let ns = vault.namespace("n").unwrap();
    ns.put("k", &small_token("keep")).unwrap();
    let huge = small_token(&"x".repeat(tokenvault::format::MAX_RECORD_LEN));
    assert!(matches!(ns.put("k", &huge), Err(Error::TooLarge { .. })));
    let t: Token = ns.get("k").unwrap().unwrap();
    assert_eq!(t.access_token().expose_secret(), "keep");
    // Just under the limit fits.
    let big = small_token(&"y".repeat(tokenvault::format::MAX_RECORD_LEN - 200));
    ns.put("big", &big).unwrap();
    assert!(ns.get::<Token>("big").unwrap().unwrap().same_as(&big));
}

#[test]
fn vault_is_send_sync_and_survives_eight_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Vault>();
    assert_send_sync::<tokenvault::Namespace>();

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v");
    let vault = Vault::create(&path, &raw_key(8)).unwrap();
    let threads: Vec<_> = (0..8u32)
        .map(|t| {
            let vault = vault.clone();
            std::thread::spawn(move || {
                let mine = vault.namespace(&format!("thread-{t}")).unwrap();
                let shared = vault.namespace("shared").unwrap();
                let mut written = HashMap::new();
                for i in 0..40u32 {
                    let n = t * 1000 + i;
                    let key = format!("k{}", i % 10);
                    mine.put(&key, &full_token(n)).unwrap();
                    written.insert(key, n);
                    shared.put(&format!("t{t}-{i}"), &full_token(n)).unwrap();
                    // Shared keys every thread writes: whatever is read must be intact.
                    shared.put("hot", &full_token(n)).unwrap();
                    let hot: Token = shared.get("hot").unwrap().unwrap();
                    assert!(hot
                        .access_token()
                        .expose_secret()
                        .starts_with("access-token-"));
                }
                for (key, n) in written {
                    let got: Token = mine.get(&key).unwrap().unwrap();
                    assert!(got.same_as(&full_token(n)));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    vault.close().unwrap();
    let vault = Vault::open(&path, &raw_key(8)).unwrap();
    let shared = vault.namespace("shared").unwrap();
    assert_eq!(shared.keys().unwrap().len(), 8 * 40 + 1);
    for t in 0..8u32 {
        for i in 0..40u32 {
            let got: Token = shared.get(&format!("t{t}-{i}")).unwrap().unwrap();
            assert!(got.same_as(&full_token(t * 1000 + i)));
        }
    }
    assert!(vault.verify(|_| {}).unwrap().is_clean());
}

#[test]
fn closed_handles_report_closed() {
    let vault = Vault::create_with_backend(MemoryBackend::new(), &raw_key(9)).unwrap();
    let ns = vault.namespace("n").unwrap();
    let other = vault.clone();
    vault.close().unwrap();
    assert!(matches!(ns.put("k", &small_token("a")), Err(Error::Closed)));
    assert!(matches!(other.namespaces(), Err(Error::Closed)));
    assert!(matches!(other.namespace("n"), Err(Error::Closed)));
}

#[test]
fn debug_and_errors_never_show_secrets() {
    let token = full_token(77);
    let key = passphrase("my-passphrase-ABCD");
    let rendered = format!(
        "{token:?} {token:#?} {key:?} {:?}",
        Secret::from_text("secret-value-EFGH".into())
    );
    for needle in [
        "access-token-00000077",
        "refresh-token-00000077",
        "id-token-00000077",
        "my-passphrase-ABCD",
        "secret-value-EFGH",
    ] {
        assert!(!rendered.contains(needle), "{needle} leaked: {rendered}");
    }
    let vault = Vault::create_with_backend(MemoryBackend::new(), &raw_key(1)).unwrap();
    let rendered = format!("{vault:?} {:?}", vault.namespace("n").unwrap());
    assert!(!rendered.contains("[1, 1, 1"));
    let err = Vault::open_with_backend(MemoryBackend::new(), &key).unwrap_err();
    assert!(!format!("{err} {err:?}").contains("ABCD"));
}

#[test]
fn every_error_message_says_what_to_do() {
    // Display of the errors users meet most; each is one line with a hint.
    let errors = vec![
        Error::WrongKey,
        Error::Closed,
        Error::LastKeyslot,
        Error::Locked {
            path: "/tmp/x".into(),
        },
        Error::NotFound {
            path: Some("/tmp/x".into()),
        },
        Error::NotFound { path: None },
    ];
    for e in errors {
        let s = e.to_string();
        assert!(!s.contains('\n') && s.len() > 20, "{s}");
    }
}

#[test]
fn handles_share_writes_immediately() {
    let vault = Vault::create_with_backend(MemoryBackend::new(), &raw_key(2)).unwrap();
    let h1 = vault.namespace("n").unwrap();
    let h2 = vault.clone().namespace("n").unwrap();
    h1.put("k", &small_token("from-h1")).unwrap();
    let t: Token = h2.get("k").unwrap().unwrap();
    assert_eq!(t.access_token().expose_secret(), "from-h1");
    let _ = Arc::new(vault);
}

#[test]
fn keys_starting_with_nul_are_reserved() {
    let vault = Vault::create_with_backend(MemoryBackend::new(), &raw_key(1)).unwrap();
    let ns = vault.namespace("n").unwrap();
    for key in ["\0", "\0lease\0rs", "\0x"] {
        let err = ns.put(key, &small_token("a")).unwrap_err();
        assert!(matches!(err, Error::InvalidName { .. }), "{err:?}");
        assert!(matches!(
            ns.get::<Token>(key),
            Err(Error::InvalidName { .. })
        ));
        assert!(matches!(ns.remove(key), Err(Error::InvalidName { .. })));
    }
    // A NUL anywhere else is an ordinary character.
    ns.put("a\0b", &small_token("a")).unwrap();
    assert_eq!(ns.keys().unwrap(), ["a\0b"]);
}

#[test]
fn every_error_has_a_kind_and_copies_keep_it() {
    use std::time::Duration;
    use tokenvault::backend::SledOptions;
    use tokenvault::oauth::RefreshError;
    use tokenvault::{ErrorKind, VaultOptions};

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v");
    let vault = Vault::create(&path, &raw_key(1)).unwrap();
    // Vault errors as the token layer wraps them, and the token layer's own.
    let kinds: [(TokenError, ErrorKind); 8] = [
        (
            VaultOptions::new()
                .sled(SledOptions::new().lock_timeout(Duration::ZERO))
                .open(&path, &raw_key(1))
                .unwrap_err()
                .into(),
            ErrorKind::Locked,
        ),
        (
            vault.namespace("").unwrap_err().into(),
            ErrorKind::InvalidInput,
        ),
        (
            vault.remove_keyslot(0).unwrap_err().into(),
            ErrorKind::Refused,
        ),
        (
            vault.remove_keyslot(9).unwrap_err().into(),
            ErrorKind::NotFound,
        ),
        (
            TokenError::Refresh(RefreshError::invalid_grant("revoked")),
            ErrorKind::Reauthenticate,
        ),
        (
            TokenError::Refresh(RefreshError::transient("503")),
            ErrorKind::Transient,
        ),
        (
            TokenError::Refresh(RefreshError::rejected("invalid_client")),
            ErrorKind::InvalidInput,
        ),
        (
            TokenError::store("a user store's failure"),
            ErrorKind::Other,
        ),
    ];
    vault.close().unwrap();
    for (error, kind) in kinds {
        assert_eq!(error.kind(), kind, "{error:?}");
        assert_eq!(ErrorKind::of(&error), kind, "{error:?}");
        let boxed: Box<dyn std::error::Error> = Box::new(error.clone());
        assert_eq!(ErrorKind::of(boxed.as_ref()), kind, "{error:?}");
        let copy = error.clone();
        assert_eq!(copy.kind(), kind);
        assert_eq!(copy.to_string(), error.to_string());
    }
    assert_eq!(
        Vault::create(&path, &raw_key(1)).unwrap_err().kind(),
        ErrorKind::Refused
    );
    assert_eq!(
        Vault::open(&path, &raw_key(2)).unwrap_err().kind(),
        ErrorKind::WrongKey
    );
    assert_eq!(
        Vault::open(dir.path().join("none"), &raw_key(1))
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    // A damaged header.
    let header = path.join("tokenvault.header");
    let mut bytes = std::fs::read(&header).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    std::fs::write(&header, bytes).unwrap();
    assert_eq!(
        Vault::open(&path, &raw_key(1)).unwrap_err().kind(),
        ErrorKind::Damaged
    );
}

/// A batch spanning namespaces is all or nothing: a failed condition anywhere leaves every
/// record, and the namespaces the batch would have created, as they were.
#[test]
fn a_batch_across_namespaces_writes_all_or_nothing() {
    let vault = Vault::create_with_backend(MemoryBackend::new(), &raw_key(1)).unwrap();
    let alice = vault.namespace("alice").unwrap();
    let v1 = alice.put("api", &small_token("a-1")).unwrap();
    let bob = vault.namespace("bob").unwrap();

    // Bob's namespace does not exist yet; the second write's condition fails.
    let mut batch = vault.batch();
    batch
        .put(&bob, "api", &small_token("b-1"))
        .unwrap()
        .put_if(&alice, "api", &small_token("a-2"), None)
        .unwrap();
    let conflict = batch.commit().unwrap().unwrap_err();
    assert_eq!(conflict.index, 1);
    assert_eq!(conflict.conflict.current, Some(v1));
    assert_eq!(vault.namespaces().unwrap(), ["alice"]);
    assert!(bob.get::<Token>("api").unwrap().is_none());

    // With the right version, both land, and a conditional removal sees the new version.
    let mut batch = vault.batch();
    batch
        .put(&bob, "api", &small_token("b-1"))
        .unwrap()
        .put_if(&alice, "api", &small_token("a-2"), Some(v1))
        .unwrap();
    let written = batch.commit().unwrap().unwrap();
    assert_eq!(written.len(), 2);
    assert!(!written[0].existed && written[1].existed);
    let v2 = written[1].version.unwrap();
    assert!(v2 > v1);
    let token: Token = alice.get("api").unwrap().unwrap();
    assert_eq!(token.access_token().expose_secret(), "a-2");

    let mut batch = vault.batch();
    batch.remove_if(&alice, "api", v1).unwrap();
    assert_eq!(
        batch.commit().unwrap().unwrap_err().conflict.current,
        Some(v2)
    );
    let mut batch = vault.batch();
    batch
        .remove_if(&alice, "api", v2)
        .unwrap()
        .remove(&bob, "api")
        .unwrap();
    let written = batch.commit().unwrap().unwrap();
    assert_eq!(written[0].version, None);
    assert!(alice.keys().unwrap().is_empty() && bob.keys().unwrap().is_empty());
}

/// A batch refuses what it cannot write atomically or safely, before writing anything.
#[test]
fn a_batch_refuses_foreign_namespaces_repeated_records_and_reserved_keys() {
    let vault = Vault::create_with_backend(MemoryBackend::new(), &raw_key(1)).unwrap();
    let other = Vault::create_with_backend(MemoryBackend::new(), &raw_key(2)).unwrap();
    let ns = vault.namespace("ns").unwrap();

    let mut batch = vault.batch();
    let foreign = other.namespace("ns").unwrap();
    assert!(matches!(
        batch.put(&foreign, "api", &small_token("x")),
        Err(Error::InvalidName { .. })
    ));
    assert!(matches!(
        batch.put(&ns, "\0lease\0api", &small_token("x")),
        Err(Error::InvalidName { .. })
    ));
    assert!(batch.is_empty());

    batch.put(&ns, "api", &small_token("x")).unwrap();
    batch.remove(&ns, "api").unwrap();
    assert!(matches!(batch.commit(), Err(Error::InvalidName { .. })));
    assert!(vault.namespaces().unwrap().is_empty());
}

/// Internal records are sealed like others, written atomically with the caller's record,
/// and never listed; `remove_token` takes the authorizer's lease (an internal record) along.
#[test]
fn internal_records_are_never_listed_and_go_with_their_token() {
    use tokenvault::batch::InternalKey;
    use tokenvault::store::TokenStore;

    let vault = Vault::create_with_backend(MemoryBackend::new(), &raw_key(1)).unwrap();
    let ns = vault.namespace("ns").unwrap();
    let mark = InternalKey::new("my-layer", "api").unwrap();
    let lease = InternalKey::new("lease", "api").unwrap();
    let mut batch = vault.batch();
    batch
        .put(&ns, "api", &small_token("at"))
        .unwrap()
        .put(&ns, &mark, &Secret::from_bytes(b"mark".to_vec().into()))
        .unwrap()
        .put(&ns, &lease, &Secret::from_bytes(b"lease".to_vec().into()))
        .unwrap();
    batch.commit().unwrap().unwrap();

    assert_eq!(ns.keys().unwrap(), ["api"]);
    assert_eq!(ns.token_keys().unwrap(), ["api"]);
    assert_eq!(
        ns.keys_of_type(RecordType::Secret).unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(ns.record_count().unwrap(), 3);
    let (secret, _) = ns.get_internal::<Secret>(&mark).unwrap().unwrap();
    assert_eq!(secret.expose_bytes(), b"mark");
    // A caller's key cannot reach an internal record.
    assert!(matches!(
        ns.get::<Secret>("\0my-layer\0api"),
        Err(Error::InvalidName { .. })
    ));

    // Only the internal records left: the namespace holds no caller's record.
    let mut batch = vault.batch();
    batch.remove(&ns, "api").unwrap();
    batch.commit().unwrap().unwrap();
    assert!(vault.namespaces_with_records().unwrap().is_empty());

    // Removing a token through the store layer takes its lease along, atomically.
    ns.put("api", &small_token("at")).unwrap();
    assert!(ns.remove_token("api").unwrap());
    assert!(ns.get_internal::<Secret>(&lease).unwrap().is_none());
    assert!(ns.get_internal::<Secret>(&mark).unwrap().is_some());
}

/// Two handles on one storage: a header change made through one is taken in by the other
/// before its own next header change (never overwritten), a master-key rotation included;
/// a handle that can no longer unlock the header gets `Reopen` and writes nothing.
#[test]
fn handles_sharing_storage_take_in_each_others_header_changes() {
    use tokenvault::ErrorKind;

    let storage = MemoryBackend::new();
    let first = Vault::create_with_backend(storage.clone(), &raw_key(1)).unwrap();
    let second = Vault::open_with_backend(storage.clone(), &raw_key(1)).unwrap();

    // The second handle's view is out of date: its change is applied to the header as
    // storage holds it now, never written over the first handle's.
    assert_eq!(first.add_keyslot(&raw_key(2)).unwrap(), 1);
    assert_eq!(second.add_keyslot(&raw_key(3)).unwrap(), 2);
    let fresh = Vault::open_with_backend(storage.clone(), &raw_key(2)).unwrap();
    assert_eq!(fresh.keyslots().unwrap().len(), 3);
    assert_eq!(
        fresh.header_seqid().unwrap(),
        second.header_seqid().unwrap()
    );
    drop(fresh);

    // A master-key rotation elsewhere: the second handle unwraps the new master key with a
    // slot secret it knows, and keeps working.
    first.rotate_master_key_with(&[&raw_key(3)]).unwrap();
    second
        .namespace("tenant")
        .unwrap()
        .put("k", &small_token("at"))
        .unwrap();
    assert_eq!(second.add_keyslot(&raw_key(4)).unwrap(), 3);
    let token: Token = first
        .namespace("tenant")
        .unwrap()
        .get("k")
        .unwrap()
        .unwrap();
    assert_eq!(token.access_token().expose_secret(), "at");

    // A handle whose keyslot was removed elsewhere can no longer follow: Reopen, and its
    // change does not reach storage.
    let third = Vault::open_with_backend(storage.clone(), &raw_key(4)).unwrap();
    first.remove_keyslot(3).unwrap();
    let seqid = first.header_seqid().unwrap();
    let err = third.add_keyslot(&raw_key(5)).unwrap_err();
    assert!(matches!(err, Error::Reopen), "{err}");
    assert_eq!(err.kind(), ErrorKind::Reopen);
    let fresh = Vault::open_with_backend(storage.clone(), &raw_key(1)).unwrap();
    assert_eq!(fresh.header_seqid().unwrap(), seqid);
    assert!(Vault::open_with_backend(storage.clone(), &raw_key(5)).is_err());
    assert!(Vault::open_with_backend(storage.clone(), &raw_key(4)).is_err());

    // Creating a vault where one exists is refused even on a backend that said no header a
    // moment before.
    assert!(matches!(
        Vault::create_with_backend(storage, &raw_key(9)),
        Err(Error::AlreadyExists { .. })
    ));
}
