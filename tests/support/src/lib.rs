//! What the integration tests share (a dev-only crate, `support` in the tests): key
//! sources, tokens and options at the crate root; [`token_server`], a real OAuth 2.0 token
//! endpoint on 127.0.0.1; [`tls_front`], a TLS server and CONNECT proxy in front of it.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

pub mod child;
pub mod tls_front;
pub mod token_server;

use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokenvault::backend::{
    Backend, BackendError, BackendErrorKind, Batch, MemoryBackend, ScanPage,
};
use tokenvault::secrecy::{SecretBox, SecretString};
use tokenvault::{KdfParams, KeySource, Token, VaultOptions};

/// A raw key source made of `byte` repeated.
pub fn raw_key(byte: u8) -> KeySource {
    KeySource::raw_key(SecretBox::new(Box::new([byte; 32])))
}

/// A passphrase key source.
pub fn passphrase(p: &str) -> KeySource {
    KeySource::passphrase(SecretString::from(p))
}

/// Options with the insecure test KDF, so passphrase slots are fast.
pub fn fast() -> VaultOptions {
    VaultOptions::new().kdf(KdfParams::insecure_for_tests())
}

/// A token with every field set, distinguishable by `n`.
pub fn full_token(n: u32) -> Token {
    Token::new(format!("access-token-{n:08}-ZQXJ").into())
        .with_refresh_token(format!("refresh-token-{n:08}-WVKP").into())
        .with_token_type("Bearer")
        .with_expires_at(UNIX_EPOCH + Duration::from_secs(1_800_000_000 + u64::from(n)))
        .with_scopes([
            "openid",
            "email",
            "urn:globus:auth:scope:transfer.api.globus.org:all",
        ])
        .with_identity(format!("identity-{n}"))
        .with_resource_server(format!("rs-{n}.example.org"))
        .with_extra_json(format!(r#"{{"id_token":"id-token-{n:08}-MMRT"}}"#).into())
}

/// A small token.
pub fn small_token(access: &str) -> Token {
    Token::new(access.to_owned().into())
}

pub fn now() -> SystemTime {
    SystemTime::now()
}

/// A backend wrapper that counts flushes, can slow them down, and can fail every `apply`
/// after a countdown (a stand-in for a crash: the process "dies" when an apply fails).
#[derive(Debug, Clone)]
pub struct FaultyBackend {
    pub inner: MemoryBackend,
    pub flushes: Arc<AtomicUsize>,
    pub applies: Arc<AtomicUsize>,
    /// Applies left before every further apply fails; negative: never fail.
    pub fail_after: Arc<AtomicI64>,
    /// Applies left before exactly one apply fails; negative: none.
    pub fail_once_after: Arc<AtomicI64>,
    pub flush_delay: Duration,
}

impl FaultyBackend {
    pub fn new(inner: MemoryBackend) -> Self {
        Self {
            inner,
            flushes: Arc::new(AtomicUsize::new(0)),
            applies: Arc::new(AtomicUsize::new(0)),
            fail_after: Arc::new(AtomicI64::new(-1)),
            fail_once_after: Arc::new(AtomicI64::new(-1)),
            flush_delay: Duration::ZERO,
        }
    }

    pub fn fail_after(&self, applies: i64) {
        self.fail_after.store(applies, Ordering::SeqCst);
    }

    /// After `applies` successful applies, fails exactly one (a transient error).
    pub fn fail_once_after(&self, applies: i64) {
        self.fail_once_after.store(applies, Ordering::SeqCst);
    }

    pub fn flush_count(&self) -> usize {
        self.flushes.load(Ordering::SeqCst)
    }
}

impl Backend for FaultyBackend {
    fn read_header(&self) -> Result<Option<Vec<u8>>, BackendError> {
        self.inner.read_header()
    }
    fn write_header(&self, expected: Option<&[u8]>, bytes: &[u8]) -> Result<bool, BackendError> {
        self.inner.write_header(expected, bytes)
    }
    fn get(&self, tree: &[u8], key: &[u8]) -> Result<Option<Vec<u8>>, BackendError> {
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
        match self.fail_once_after.load(Ordering::SeqCst) {
            0 => {
                self.fail_once_after.store(-1, Ordering::SeqCst);
                return Err(BackendError::new(
                    BackendErrorKind::Other,
                    "injected failure",
                ));
            }
            n if n > 0 => {
                self.fail_once_after.fetch_sub(1, Ordering::SeqCst);
            }
            _ => {}
        }
        let left = self.fail_after.load(Ordering::SeqCst);
        if left == 0 {
            return Err(BackendError::new(
                BackendErrorKind::Other,
                "injected failure",
            ));
        }
        if left > 0 {
            self.fail_after.fetch_sub(1, Ordering::SeqCst);
        }
        self.applies.fetch_add(1, Ordering::SeqCst);
        self.inner.apply(batch)
    }
    fn drop_tree(&self, tree: &[u8]) -> Result<(), BackendError> {
        self.inner.drop_tree(tree)
    }
    fn trees(&self) -> Result<Vec<Vec<u8>>, BackendError> {
        self.inner.trees()
    }
    fn flush(&self) -> Result<(), BackendError> {
        self.flushes.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(self.flush_delay);
        self.inner.flush()
    }
    fn close(&self) -> Result<(), BackendError> {
        self.inner.close()
    }
}

/// Single writes on any backend, for tests that plant or damage stored bytes: each is one
/// [`Batch`] through [`Backend::apply`].
pub trait BackendExt: Backend {
    /// Sets `key` in `tree` to `value`, unconditionally.
    fn put(&self, tree: &[u8], key: &[u8], value: Vec<u8>) -> Result<(), BackendError> {
        self.apply(&Batch::new().write(tree, key, Some(value)))
            .map(|_| ())
    }

    /// Removes `key` from `tree`, unconditionally.
    fn remove(&self, tree: &[u8], key: &[u8]) -> Result<(), BackendError> {
        self.apply(&Batch::new().write(tree, key, None)).map(|_| ())
    }

    /// Sets `key` to `new` (or removes it) only if it holds exactly `expected` now.
    fn compare_and_swap(
        &self,
        tree: &[u8],
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<Vec<u8>>,
    ) -> Result<bool, BackendError> {
        self.apply(
            &Batch::new()
                .expect(tree, key, expected)
                .write(tree, key, new),
        )
    }

    /// Replaces the header with `bytes`, whatever it holds now (for tests that forge or
    /// damage headers).
    fn overwrite_header(&self, bytes: &[u8]) -> Result<(), BackendError> {
        let current = self.read_header()?;
        assert!(
            self.write_header(current.as_deref(), bytes)?,
            "the header changed meanwhile"
        );
        Ok(())
    }
}

impl<B: Backend + ?Sized> BackendExt for B {}

/// Every (tree, key, value) in a backend.
pub fn dump(backend: &dyn Backend) -> Vec<(Vec<u8>, Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    for tree in backend.trees().unwrap() {
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = backend.scan(&tree, &[], after.as_deref(), 100).unwrap();
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            for (k, v) in page {
                out.push((tree.clone(), k, v));
            }
        }
    }
    out
}

/// The stored records (not manifests) of a backend.
pub fn records(backend: &dyn Backend) -> Vec<(Vec<u8>, Vec<u8>, Vec<u8>)> {
    dump(backend)
        .into_iter()
        .filter(|(t, _, _)| t.as_slice() == b"r")
        .collect()
}

/// The manifests of a backend (format 2: tree `m`), as (storage key, stored bytes) in key
/// order; the storage key is the namespace id followed by its incarnation. The anchor (key
/// `0x00`) is left out.
pub fn manifests(backend: &dyn Backend) -> Vec<(Vec<u8>, Vec<u8>)> {
    dump(backend)
        .into_iter()
        .filter(|(t, k, _)| t.as_slice() == b"m" && k.len() == 48)
        .map(|(_, k, v)| (k, v))
        .collect()
}

/// The records of a backend grouped by namespace incarnation: (the 48-byte prefix, its
/// records as (storage key, stored bytes)), in key order.
pub fn records_by_namespace(backend: &dyn Backend) -> Vec<(Vec<u8>, Vec<(Vec<u8>, Vec<u8>)>)> {
    let mut out: Vec<(Vec<u8>, Vec<(Vec<u8>, Vec<u8>)>)> = Vec::new();
    for (_, key, value) in records(backend) {
        let prefix = key[..48].to_vec();
        match out.last_mut() {
            Some((p, list)) if *p == prefix => list.push((key, value)),
            _ => out.push((prefix, vec![(key, value)])),
        }
    }
    out
}

/// The records of the namespace incarnation holding exactly `n` records (panics unless
/// exactly one does).
pub fn namespace_with(backend: &dyn Backend, n: usize) -> (Vec<u8>, Vec<(Vec<u8>, Vec<u8>)>) {
    let mut found: Vec<_> = records_by_namespace(backend)
        .into_iter()
        .filter(|(_, list)| list.len() == n)
        .collect();
    assert_eq!(found.len(), 1, "namespaces holding {n} records");
    found.remove(0)
}

/// Copies a directory tree (a vault directory, for instance).
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Every file under `dir`, sorted.
pub fn all_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            out.extend(all_files(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// The URL of the PostgreSQL test server that `scripts/pg-test-server start` started (its
/// `TOKENVAULT_TEST_PG_URL`), or `None` outside CI when none was started: the caller returns
/// early, after a note. Under `CI=true` a missing server panics: tests that need the server
/// never skip in CI.
pub fn postgres_test_url() -> Option<String> {
    match std::env::var("TOKENVAULT_TEST_PG_URL") {
        Ok(url) => Some(url),
        Err(_) if std::env::var("CI").is_ok_and(|v| v == "true") => panic!(
            "TOKENVAULT_TEST_PG_URL is not set: start the test server with \
             eval \"$(bash scripts/pg-test-server start)\""
        ),
        Err(_) => {
            eprintln!("skipped: no PostgreSQL test server (scripts/pg-test-server start)");
            None
        }
    }
}

/// The password of the throwaway Secret Service that `scripts/keyring-test-session` started
/// (its `TOKENVAULT_TEST_KEYRING_PASSWORD`), or `None` outside CI when there is none: the
/// caller returns early, after a note. Under `CI=true` a missing keyring panics: tests that
/// need it never skip in CI.
pub fn keyring_test_password() -> Option<String> {
    match std::env::var("TOKENVAULT_TEST_KEYRING_PASSWORD") {
        Ok(password) => Some(password),
        Err(_) if std::env::var("CI").is_ok_and(|v| v == "true") => panic!(
            "TOKENVAULT_TEST_KEYRING_PASSWORD is not set: run the tests with \
             dbus-run-session -- bash scripts/keyring-test-session cargo test --all-features"
        ),
        Err(_) => {
            eprintln!(
                "skipped: no Secret Service test session \
                 (dbus-run-session -- bash scripts/keyring-test-session cargo test ...)"
            );
            None
        }
    }
}

/// A name no other test, process or earlier run uses (for vaults in a shared database).
pub fn unique_name(what: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!(
        "{what}-{}-{nanos}-{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    )
}

/// A plain HTTP/1.1 `GET` of an absolute `http://host:port/path` URL, as a browser would send
/// it (the test playing the browser in a login): the status and the `Location` header.
///
/// # Panics
/// On a URL of another form, or a connection that fails or says nothing in 10 s.
pub fn http_get(url: &str) -> (u16, Option<String>) {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let (host, path) = rest.split_at(rest.find('/').expect("a path"));
    let mut stream = std::net::TcpStream::connect(host).expect("connect");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("read timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("answer");
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let location = answer.lines().find_map(|line| {
        line.strip_prefix("Location: ")
            .or_else(|| line.strip_prefix("location: "))
            .map(str::to_owned)
    });
    (status, location)
}
