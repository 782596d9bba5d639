//! The `Backend` contract, on the PostgreSQL backend: conditional header writes, single-key
//! and multi-key conditional batches (atomic, linearizable under concurrency), prefix scans,
//! trees, the server's clock, closing, and vaults kept apart in one database.

use std::sync::{Arc, Barrier};

use tokenvault::backend::{Backend, BackendErrorKind, Batch};

use super::{fresh, server_url};

#[test]
fn the_header_is_replaced_only_if_unchanged() {
    let Some(url) = server_url() else { return };
    let b = fresh(&url, "header");
    assert_eq!(b.read_header().unwrap(), None);
    assert!(b.write_header(None, b"one").unwrap());
    assert!(!b.write_header(None, b"two").unwrap(), "a header exists");
    assert!(!b.write_header(Some(b"other"), b"two").unwrap());
    assert!(b.write_header(Some(b"one"), b"two").unwrap());
    assert_eq!(b.read_header().unwrap().as_deref(), Some(&b"two"[..]));
}

#[test]
fn single_key_writes_hold_their_conditions() {
    let Some(url) = server_url() else { return };
    let b = fresh(&url, "single");
    let cas = |expected: Option<&[u8]>, new: Option<&[u8]>| {
        b.apply(&Batch::new().expect(b"t", b"k", expected).write(
            b"t",
            b"k",
            new.map(<[u8]>::to_vec),
        ))
        .unwrap()
    };
    assert!(cas(None, Some(b"v1")), "insert if absent");
    assert!(!cas(None, Some(b"v2")), "present now");
    assert!(!cas(Some(b"v0"), Some(b"v2")));
    assert!(cas(Some(b"v1"), Some(b"v2")));
    assert_eq!(b.get(b"t", b"k").unwrap().as_deref(), Some(&b"v2"[..]));
    assert!(!cas(Some(b"v1"), None), "delete if equal: not equal");
    assert!(cas(Some(b"v2"), None));
    assert!(cas(None, None), "absent, and stays so");
    assert_eq!(b.get(b"t", b"k").unwrap(), None);
    // Unconditional writes.
    assert!(b
        .apply(&Batch::new().write(b"t", b"u", Some(b"x".to_vec())))
        .unwrap());
    assert!(b
        .apply(&Batch::new().write(b"t", b"u", Some(b"y".to_vec())))
        .unwrap());
    assert_eq!(b.get(b"t", b"u").unwrap().as_deref(), Some(&b"y"[..]));
    assert!(b.apply(&Batch::new().write(b"t", b"u", None)).unwrap());
    assert_eq!(b.get(b"t", b"u").unwrap(), None);
}

#[test]
fn several_keys_are_read_in_one_call_in_order() {
    let Some(url) = server_url() else { return };
    let b = fresh(&url, "many");
    let batch = Batch::new()
        .write(b"m", b"n", Some(b"manifest".to_vec()))
        .write(b"r", b"n1", Some(b"record".to_vec()));
    assert!(b.apply(&batch).unwrap());
    let got = b
        .get_many(&[
            (b"r", b"n1"),
            (b"r", b"absent"),
            (b"m", b"n"),
            (b"r", b"n1"),
        ])
        .unwrap();
    assert_eq!(
        got,
        vec![
            Some(b"record".to_vec()),
            None,
            Some(b"manifest".to_vec()),
            Some(b"record".to_vec())
        ]
    );
    assert_eq!(b.get_many(&[]).unwrap(), Vec::<Option<Vec<u8>>>::new());
    assert_eq!(b.get_many(&[(b"m", b"x")]).unwrap(), vec![None]);
}

#[test]
fn a_batch_applies_whole_or_not_at_all() {
    let Some(url) = server_url() else { return };
    let b = fresh(&url, "batch");
    let first = Batch::new()
        .expect(b"m", b"n", None)
        .write(b"m", b"n", Some(b"manifest".to_vec()))
        .write(b"r", b"n1", Some(b"record".to_vec()))
        .write(b"e", b"n", Some(b"entry".to_vec()));
    assert!(b.apply(&first).unwrap());
    // A condition on another key fails: nothing of the batch is written.
    let second = Batch::new()
        .expect(b"m", b"n", Some(b"stale"))
        .write(b"r", b"n1", None)
        .write(b"r", b"n2", Some(b"new".to_vec()));
    assert!(!b.apply(&second).unwrap());
    assert_eq!(b.get(b"r", b"n1").unwrap().as_deref(), Some(&b"record"[..]));
    assert_eq!(b.get(b"r", b"n2").unwrap(), None);
    let third = Batch::new()
        .expect(b"m", b"n", Some(b"manifest"))
        .expect(b"e", b"gone", None)
        .write(b"r", b"n1", None)
        .write(b"r", b"n2", Some(b"new".to_vec()));
    assert!(b.apply(&third).unwrap());
    assert_eq!(b.get(b"r", b"n1").unwrap(), None);
    assert_eq!(b.get(b"r", b"n2").unwrap().as_deref(), Some(&b"new"[..]));
}

/// An overwrite that also expects another key's bytes (a record and its namespace's
/// manifest: one statement) applies only if both hold, whichever order they are given in.
#[test]
fn an_overwrite_checking_another_key_applies_only_if_both_hold() {
    let Some(url) = server_url() else { return };
    let b = fresh(&url, "also");
    let setup = Batch::new()
        .write(b"m", b"n", Some(b"manifest".to_vec()))
        .write(b"r", b"k", Some(b"v1".to_vec()));
    assert!(b.apply(&setup).unwrap());
    let overwrite = |old: &[u8], manifest: &[u8], new: &[u8], manifest_first: bool| {
        let batch = if manifest_first {
            Batch::new()
                .expect(b"m", b"n", Some(manifest))
                .expect(b"r", b"k", Some(old))
        } else {
            Batch::new()
                .expect(b"r", b"k", Some(old))
                .expect(b"m", b"n", Some(manifest))
        };
        b.apply(&batch.write(b"r", b"k", Some(new.to_vec())))
            .unwrap()
    };
    assert!(!overwrite(b"v1", b"stale", b"x", false), "another manifest");
    assert!(!overwrite(b"v0", b"manifest", b"x", true), "another record");
    assert_eq!(b.get(b"r", b"k").unwrap().as_deref(), Some(&b"v1"[..]));
    assert!(overwrite(b"v1", b"manifest", b"v2", false));
    assert!(overwrite(b"v2", b"manifest", b"v3", true));
    assert_eq!(b.get(b"r", b"k").unwrap().as_deref(), Some(&b"v3"[..]));
    assert_eq!(
        b.get(b"m", b"n").unwrap().as_deref(),
        Some(&b"manifest"[..])
    );
    // A missing record or manifest refuses it too.
    assert!(b.apply(&Batch::new().write(b"m", b"n", None)).unwrap());
    assert!(!overwrite(b"v3", b"manifest", b"v4", false));
    assert_eq!(b.get(b"r", b"k").unwrap().as_deref(), Some(&b"v3"[..]));
}

#[test]
fn concurrent_conditional_writes_have_one_winner() {
    let Some(url) = server_url() else { return };
    let b = Arc::new(fresh(&url, "race"));
    let threads = 8;
    let barrier = Arc::new(Barrier::new(threads));
    let winners: Vec<_> = (0..threads)
        .map(|i| {
            let (b, barrier) = (b.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let mut won = 0;
                for round in 0..20u8 {
                    let key = [round];
                    let value = vec![i as u8, round];
                    // Single-key creation, and a two-key batch conditional on an absent
                    // key it does not write (a predicate only SERIALIZABLE protects).
                    let single = Batch::new().expect(b"s", &key, None).write(
                        b"s",
                        &key,
                        Some(value.clone()),
                    );
                    let pair = Batch::new()
                        .expect(b"p", &key, None)
                        .write(b"p", &key, Some(value.clone()))
                        .write(b"q", &key, Some(value));
                    won += usize::from(b.apply(&single).unwrap());
                    won += usize::from(b.apply(&pair).unwrap()) * 100;
                }
                won
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    let total: usize = winners.iter().sum();
    assert_eq!(
        total,
        20 + 20 * 100,
        "one winner per key and kind: {winners:?}"
    );
    for round in 0..20u8 {
        // The pair's two writes come from the same winner.
        assert_eq!(
            b.get(b"p", &[round]).unwrap(),
            b.get(b"q", &[round]).unwrap()
        );
    }
}

#[test]
fn scans_page_through_a_prefix_in_key_order() {
    let Some(url) = server_url() else { return };
    let b = fresh(&url, "scan");
    let keys: Vec<Vec<u8>> = vec![
        vec![0x01],
        vec![0x02, 0x00],
        vec![0x02, 0x01],
        vec![0x02, 0xFF],
        vec![0x02, 0xFF, 0xFF],
        vec![0x03],
        vec![0xFF],
        vec![0xFF, 0x00],
    ];
    let mut batch = Batch::new();
    for k in &keys {
        batch = batch.write(b"t", k, Some(k.clone()));
    }
    batch = batch.write(b"other", &[0x02, 0x05], Some(vec![0]));
    assert!(b.apply(&batch).unwrap());
    let all = |prefix: &[u8], page: usize| {
        let mut out = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let got = b.scan(b"t", prefix, after.as_deref(), page).unwrap();
            let Some((last, _)) = got.last() else { break };
            after = Some(last.clone());
            out.extend(got.into_iter().map(|(k, v)| {
                assert_eq!(k, v);
                k
            }));
        }
        out
    };
    assert_eq!(all(&[], 3), keys);
    assert_eq!(all(&[0x02], 1), keys[1..5].to_vec());
    assert_eq!(all(&[0x02, 0xFF], 2), keys[3..5].to_vec());
    assert_eq!(
        all(&[0xFF], 1),
        keys[6..].to_vec(),
        "no upper bound for 0xFF"
    );
    assert_eq!(all(&[0x04], 5), Vec::<Vec<u8>>::new());
    // `after` before the prefix starts at the prefix.
    let got = b.scan(b"t", &[0x02], Some(&[0x01]), 10).unwrap();
    assert_eq!(got.len(), 4);
}

#[test]
fn trees_are_listed_and_dropped_per_vault() {
    let Some(url) = server_url() else { return };
    let (a, other) = (fresh(&url, "trees"), fresh(&url, "trees"));
    for (tree, key) in [(&b"e"[..], &b"1"[..]), (b"r", b"1"), (b"r", b"2")] {
        assert!(a
            .apply(&Batch::new().write(tree, key, Some(vec![1])))
            .unwrap());
    }
    assert!(other
        .apply(&Batch::new().write(b"x", b"1", Some(vec![1])))
        .unwrap());
    assert_eq!(a.trees().unwrap(), vec![b"e".to_vec(), b"r".to_vec()]);
    a.drop_tree(b"r").unwrap();
    assert_eq!(a.trees().unwrap(), vec![b"e".to_vec()]);
    assert_eq!(
        other.trees().unwrap(),
        vec![b"x".to_vec()],
        "another vault's trees stay"
    );
    assert_eq!(
        other.get(b"r", b"1").unwrap(),
        None,
        "vaults do not see each other"
    );
}

#[test]
fn the_clock_is_the_servers_and_close_ends_the_backend() {
    let Some(url) = server_url() else { return };
    let b = fresh(&url, "clock");
    let server = b.now().unwrap();
    let local = std::time::SystemTime::now();
    let apart = server
        .duration_since(local)
        .or_else(|e| Ok::<_, ()>(e.duration()))
        .unwrap();
    assert!(apart.as_secs() < 60, "the test server runs on this machine");
    b.close().unwrap();
    let err = b.get(b"t", b"k").unwrap_err();
    assert_eq!(err.kind(), BackendErrorKind::Closed);
}
