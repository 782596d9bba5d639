//! New records and new namespaces outside a batch (issue 14's new-record and onboarding
//! goals). On storage the handle writes alone:
//! - a new record is one compare-and-swap on absence, then one of the manifest for its
//!   count. The count may lag, never lead: an interrupted count is never reported as a lost
//!   record, a count whose outcome is unknown is never repeated, and a namespace removed in
//!   between leaves no orphan;
//! - a new namespace is its manifest, its first record, then its entry: cut short, it
//!   leaves orphans, never an entry without a manifest.
//!
//! On shared storage the batch paths stay.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};

use support::{fast, raw_key, small_token, BackendExt};
use tokenvault::backend::{
    Backend, BackendError, BackendErrorKind, Batch, MemoryBackend, ScanPage,
};
use tokenvault::secrecy::ExposeSecret;
use tokenvault::{Token, Vault};

/// What happens to the next batch that writes a given tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Next {
    Apply,
    /// Not applied, reported as failed.
    FailBefore,
    /// Applied, reported as failed (a lost reply).
    FailAfter,
    /// Every manifest and entry removed first (a removal the write did not see coming).
    RemoveFirst,
}

/// A memory backend that says whether it is exclusive, logs the shape of every applied
/// batch, and injects one fault into a write of a given tree.
#[derive(Debug, Clone)]
struct Probe {
    inner: MemoryBackend,
    exclusive: bool,
    next: Arc<Mutex<(Vec<u8>, Next)>>,
    /// Per applied batch: the trees it writes, in order.
    log: Arc<Mutex<Vec<Vec<Vec<u8>>>>>,
    /// Keys read (`get`, and each key of a `get_many`).
    reads: Arc<Mutex<usize>>,
}

impl Probe {
    fn new(exclusive: bool) -> Self {
        Self {
            inner: MemoryBackend::new(),
            exclusive,
            next: Arc::new(Mutex::new((Vec::new(), Next::Apply))),
            log: Arc::new(Mutex::new(Vec::new())),
            reads: Arc::new(Mutex::new(0)),
        }
    }

    fn take_reads(&self) -> usize {
        std::mem::take(&mut *self.reads.lock().unwrap())
    }

    /// Arms a fault for the next batch that writes a manifest.
    fn arm(&self, next: Next) {
        self.arm_tree(b"m", next);
    }

    fn arm_tree(&self, tree: &[u8], next: Next) {
        *self.next.lock().unwrap() = (tree.to_vec(), next);
    }

    fn take_log(&self) -> Vec<Vec<Vec<u8>>> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }
}

fn injected() -> BackendError {
    BackendError::new(BackendErrorKind::Io, "injected")
}

impl Backend for Probe {
    fn read_header(&self) -> Result<Option<Vec<u8>>, BackendError> {
        self.inner.read_header()
    }
    fn write_header(&self, expected: Option<&[u8]>, bytes: &[u8]) -> Result<bool, BackendError> {
        self.inner.write_header(expected, bytes)
    }
    fn get(&self, tree: &[u8], key: &[u8]) -> Result<Option<Vec<u8>>, BackendError> {
        *self.reads.lock().unwrap() += 1;
        self.inner.get(tree, key)
    }
    fn scan(
        &self,
        tree: &[u8],
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<ScanPage, BackendError> {
        self.inner.scan(tree, prefix, after, limit)
    }
    fn apply(&self, batch: &Batch) -> Result<bool, BackendError> {
        let next = {
            let mut armed = self.next.lock().unwrap();
            if batch.writes.iter().any(|w| w.tree == armed.0) {
                std::mem::replace(&mut armed.1, Next::Apply)
            } else {
                Next::Apply
            }
        };
        match next {
            Next::FailBefore => return Err(injected()),
            Next::RemoveFirst => {
                for tree in [&b"m"[..], b"e"] {
                    let page = self.inner.scan(tree, b"", None, 1000)?;
                    for (key, _) in page {
                        if key.len() > 1 {
                            self.inner.remove(tree, &key)?;
                        }
                    }
                }
            }
            Next::Apply | Next::FailAfter => {}
        }
        let applied = self.inner.apply(batch)?;
        if applied {
            self.log
                .lock()
                .unwrap()
                .push(batch.writes.iter().map(|w| w.tree.clone()).collect());
        }
        if next == Next::FailAfter {
            return Err(injected());
        }
        Ok(applied)
    }
    fn drop_tree(&self, tree: &[u8]) -> Result<(), BackendError> {
        self.inner.drop_tree(tree)
    }
    fn trees(&self) -> Result<Vec<Vec<u8>>, BackendError> {
        self.inner.trees()
    }
    fn flush(&self) -> Result<(), BackendError> {
        self.inner.flush()
    }
    fn exclusive(&self) -> bool {
        self.exclusive
    }
    fn close(&self) -> Result<(), BackendError> {
        self.inner.close()
    }
}

fn access(ns: &tokenvault::Namespace, key: &str) -> Option<String> {
    ns.get::<Token>(key)
        .unwrap()
        .map(|t| t.access_token().expose_secret().to_owned())
}

fn vault_on(probe: &Probe) -> (Vault, tokenvault::Namespace) {
    let vault = fast()
        .create_with_backend(probe.clone(), &raw_key(1))
        .unwrap();
    let ns = vault.namespace("n").unwrap();
    ns.put("a", &small_token("a")).unwrap();
    probe.take_log();
    (vault, ns)
}

#[test]
fn a_new_record_is_two_single_key_writes_only_on_exclusive_storage() {
    let alone = Probe::new(true);
    let (_vault, ns) = vault_on(&alone);
    ns.put("b", &small_token("b")).unwrap();
    assert_eq!(
        alone.take_log(),
        vec![vec![b"r".to_vec()], vec![b"m".to_vec()]],
        "the record, then its count"
    );
    assert_eq!(ns.record_count().unwrap(), 2);

    let shared = Probe::new(false);
    let (_vault, ns) = vault_on(&shared);
    ns.put("b", &small_token("b")).unwrap();
    assert_eq!(
        shared.take_log(),
        vec![vec![b"r".to_vec(), b"m".to_vec()]],
        "one batch with the manifest"
    );
    assert_eq!(ns.record_count().unwrap(), 2);
}

#[test]
fn an_interrupted_count_lags_and_is_never_reported_missing() {
    let probe = Probe::new(true);
    let (vault, ns) = vault_on(&probe);
    probe.arm(Next::FailBefore);
    ns.put("b", &small_token("b")).unwrap();
    assert_eq!(
        access(&ns, "b").as_deref(),
        Some("b"),
        "the record is stored"
    );
    assert_eq!(ns.record_count().unwrap(), 1, "but not counted");
    let report = vault.verify(|_| {}).unwrap();
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.namespaces[0].ok, 2);

    // Counted writes go on from the lagging count; removals never take it below zero.
    ns.put("c", &small_token("c")).unwrap();
    assert_eq!(ns.record_count().unwrap(), 2);
    for key in ["a", "b", "c"] {
        assert!(ns.remove(key).unwrap());
        let report = vault.verify(|_| {}).unwrap();
        assert!(report.is_clean(), "after removing {key}: {report}");
    }
    assert_eq!(ns.record_count().unwrap(), 0);
    assert_eq!(ns.keys().unwrap(), Vec::<String>::new());
}

#[test]
fn a_count_whose_outcome_is_unknown_is_not_repeated() {
    let probe = Probe::new(true);
    let (vault, ns) = vault_on(&probe);
    probe.arm(Next::FailAfter);
    ns.put("b", &small_token("b")).unwrap();
    assert_eq!(ns.record_count().unwrap(), 2, "counted once, not twice");
    // The next writes read the manifest the lost reply left, and go on from it.
    ns.put("b", &small_token("b2")).unwrap();
    ns.put("c", &small_token("c")).unwrap();
    assert_eq!(ns.record_count().unwrap(), 3);
    assert_eq!(access(&ns, "b").as_deref(), Some("b2"));
    let report = vault.verify(|_| {}).unwrap();
    assert!(report.is_clean(), "{report}");
}

#[test]
fn a_namespace_removed_before_the_count_keeps_no_orphan() {
    let probe = Probe::new(true);
    let (vault, ns) = vault_on(&probe);
    probe.arm(Next::RemoveFirst);
    ns.put("b", &small_token("b")).unwrap();
    // The removal took the entry and the manifest; the write took its record back.
    let records = probe.inner.scan(b"r", b"", None, 1000).unwrap();
    assert_eq!(records.len(), 1, "only the record of \"a\" is left");
    assert_eq!(vault.verify(|_| {}).unwrap().orphans, 1);
    vault.purge_orphans().unwrap();
    assert_eq!(vault.namespaces().unwrap(), Vec::<String>::new());
}

#[test]
fn new_records_racing_rotations_in_one_process_stay_readable_on_sled() {
    let dir = tempfile::tempdir().unwrap();
    let vault = Vault::create(dir.path().join("v"), &raw_key(1)).unwrap();
    let ns = vault.namespace("n").unwrap();
    ns.put("seed", &small_token("seed")).unwrap();
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let ns = ns.clone();
            std::thread::spawn(move || {
                for i in 0..300 {
                    ns.put(&format!("w{w}-{i}"), &small_token(&format!("{w}-{i}")))
                        .unwrap();
                }
            })
        })
        .collect();
    for _ in 0..3 {
        vault.rotate_namespace_key("n", |_| {}).unwrap();
    }
    for writer in writers {
        writer.join().unwrap();
    }
    for w in 0..2 {
        for i in 0..300 {
            assert_eq!(
                access(&ns, &format!("w{w}-{i}")).as_deref(),
                Some(format!("{w}-{i}").as_str())
            );
        }
    }
    assert_eq!(ns.record_count().unwrap(), 601);
    let report = vault.verify(|_| {}).unwrap();
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.namespaces[0].ok, 601);
}

#[test]
fn a_new_namespace_is_manifest_record_entry_only_on_exclusive_storage() {
    let m = b"m".to_vec();
    let r = b"r".to_vec();
    let e = b"e".to_vec();
    for (exclusive, want) in [
        (
            true,
            vec![vec![m.clone()], vec![r.clone()], vec![e.clone()]],
        ),
        (false, vec![vec![r.clone(), m.clone(), e.clone()]]),
    ] {
        let probe = Probe::new(exclusive);
        let vault = fast()
            .create_with_backend(probe.clone(), &raw_key(1))
            .unwrap();
        let ns = vault.namespace("n").unwrap();
        probe.take_log();
        ns.put("a", &small_token("a")).unwrap();
        assert_eq!(probe.take_log(), want, "exclusive: {exclusive}");
        assert_eq!(ns.record_count().unwrap(), 1);
        // The reservation is taken: the next new record and overwrite skip the batch.
        ns.put("b", &small_token("b")).unwrap();
        ns.put("a", &small_token("a2")).unwrap();
        if exclusive {
            assert_eq!(
                probe.take_log(),
                vec![vec![r.clone()], vec![m.clone()], vec![r.clone()]]
            );
        }
        // A fresh handle reads what was written.
        vault.close().unwrap();
        let vault = fast()
            .open_with_backend(probe.clone(), &raw_key(1))
            .unwrap();
        let ns = vault.namespace("n").unwrap();
        assert_eq!(access(&ns, "a").as_deref(), Some("a2"));
        assert_eq!(access(&ns, "b").as_deref(), Some("b"));
        assert_eq!(ns.record_count().unwrap(), 2);
        let report = vault.verify(|_| {}).unwrap();
        assert!(report.is_clean(), "{report}");
    }
}

#[test]
fn a_creation_cut_short_leaves_orphans_never_an_entry_without_manifest() {
    for tree in [&b"r"[..], b"e"] {
        let probe = Probe::new(true);
        let vault = fast()
            .create_with_backend(probe.clone(), &raw_key(1))
            .unwrap();
        let ns = vault.namespace("n").unwrap();
        probe.arm_tree(tree, Next::FailBefore);
        ns.put("a", &small_token("a")).unwrap_err();
        assert_eq!(vault.namespaces().unwrap(), Vec::<String>::new());
        assert_eq!(access(&ns, "a"), None);
        let report = vault.verify(|_| {}).unwrap();
        assert!(report.namespaces.is_empty() && report.damaged_entries.is_empty());
        assert_eq!(report.orphans, 1, "{report}");
        assert_eq!(vault.purge_orphans().unwrap(), 1);
        // Written again, under a new incarnation.
        ns.put("a", &small_token("a")).unwrap();
        assert_eq!(access(&ns, "a").as_deref(), Some("a"));
        let report = vault.verify(|_| {}).unwrap();
        assert!(report.is_clean(), "{report}");
    }
}

#[test]
fn a_handle_with_no_reservation_renews_it_with_one_manifest_write() {
    for exclusive in [true, false] {
        let probe = Probe::new(exclusive);
        let (vault, _) = vault_on(&probe);
        vault.close().unwrap();
        // A fresh handle knows no reservation: the overwrite raises the manifest's ceiling
        // by itself, then writes the record, on shared storage too.
        let vault = fast()
            .open_with_backend(probe.clone(), &raw_key(1))
            .unwrap();
        let ns = vault.namespace("n").unwrap();
        let before = ns.get_versioned::<Token>("a").unwrap().unwrap().1;
        probe.take_log();
        let after = ns.put("a", &small_token("a2")).unwrap();
        assert!(after > before);
        assert_eq!(
            probe.take_log(),
            vec![vec![b"m".to_vec()], vec![b"r".to_vec()]],
            "exclusive: {exclusive}"
        );
        assert_eq!(access(&ns, "a").as_deref(), Some("a2"));
        assert_eq!(ns.record_count().unwrap(), 1);
        // The renewed reservation serves the next overwrites alone.
        ns.put("a", &small_token("a3")).unwrap();
        assert_eq!(probe.take_log(), vec![vec![b"r".to_vec()]]);
        let report = vault.verify(|_| {}).unwrap();
        assert!(report.is_clean(), "{report}");
    }
}

/// On shared storage, an overwrite of the record a handle wrote last is one conditional write
/// (the record's bytes and the manifest checked by the write itself), with no read; another
/// handle's write in between makes it read again and decide as usual.
#[test]
fn on_shared_storage_an_overwrite_of_the_last_record_written_reads_nothing() {
    let probe = Probe::new(false);
    let vault = Vault::create_with_backend(probe.clone(), &raw_key(1)).unwrap();
    let ns = vault.namespace("n").unwrap();
    ns.put("a", &small_token("0")).unwrap();
    ns.put("a", &small_token("1")).unwrap();
    probe.take_reads();
    probe.take_log();
    let mut last = None;
    for i in 2..12 {
        last = Some(ns.put("a", &small_token(&i.to_string())).unwrap());
    }
    assert_eq!(probe.take_reads(), 0, "an overwrite read first");
    assert_eq!(probe.take_log(), vec![vec![b"r".to_vec()]; 10]);
    // A compare-and-swap on the version it wrote takes the same path.
    let swapped = ns
        .compare_and_swap("a", last, &small_token("cas"))
        .unwrap()
        .unwrap();
    assert_eq!(probe.take_reads(), 0);

    // Another handle overwrites the record: the next write is refused as it stands, reads,
    // and goes through; a compare-and-swap on the stale version is a conflict naming the
    // current one.
    let other = Vault::open_with_backend(probe.clone(), &raw_key(1)).unwrap();
    let theirs = other
        .namespace("n")
        .unwrap()
        .put("a", &small_token("theirs"))
        .unwrap();
    probe.take_reads();
    let conflict = ns
        .compare_and_swap("a", Some(swapped), &small_token("late"))
        .unwrap()
        .unwrap_err();
    assert_eq!(conflict.current, Some(theirs));
    assert!(probe.take_reads() > 0);
    ns.put("a", &small_token("mine")).unwrap();
    let token: Token = other.namespace("n").unwrap().get("a").unwrap().unwrap();
    assert_eq!(token.access_token().expose_secret(), "mine");
    // On exclusive storage (sled) the overwrite reads, and writes the record alone.
    let probe = Probe::new(true);
    let vault = Vault::create_with_backend(probe.clone(), &raw_key(1)).unwrap();
    let ns = vault.namespace("n").unwrap();
    ns.put("a", &small_token("0")).unwrap();
    ns.put("a", &small_token("1")).unwrap();
    probe.take_reads();
    ns.put("a", &small_token("2")).unwrap();
    assert!(probe.take_reads() > 0);
    assert!(vault.verify(|_| {}).unwrap().is_clean());
}
