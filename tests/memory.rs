//! Memory hygiene: no secret is left behind in heap memory that is freed, and no `Debug` or
//! `Display` output shows one.
//!
//! The first test installs a global allocator that scans every heap block as it is freed
//! (and the old block of every reallocation; this allocator always moves a reallocated
//! block, so a growing buffer's leftovers are found whatever the system allocator would have
//! done) for canary secrets: an access token, a refresh token, an `id_token` inside the
//! extra JSON, two passphrases, a `Secret` value, a raw key and a key file's contents, all
//! drawn at random when the test starts. A block freed with a canary (or half of one) still
//! in it is a copy that nobody wiped. The scanner is armed only around a full round trip
//! through the public API on a real directory (and once more on the in-memory backend); the
//! tests in this file take turns, so no other test's frees are scanned.
//!
//! What it cannot see: copies on the stack, copies in blocks still allocated when the round
//! trip ends (there should be none: everything is dropped), and copies the OS makes.
//!
//! Set `TOKENVAULT_LEAK_BACKTRACE=1` (and run with `--nocapture`) to print a backtrace of the
//! code that frees each leaking block; that diagnostic mode allocates inside the allocator
//! (guarded against reentrancy) and is off by default.

// The crate's one audited `unsafe` exception: the package lint is `unsafe_code = "deny"` (the
// library itself is `#![forbid(unsafe_code)]`). A `GlobalAlloc` implementation is unsafe by
// definition, and reading a block that is being freed needs a raw pointer. Every unsafe block
// below carries a `SAFETY:` comment.
#![allow(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::panic)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokenvault::backend::{Backend, Batch, MemoryBackend, SledBackend, SledOptions};
#[cfg(feature = "keyring")]
use tokenvault::keyring_core;
use tokenvault::secrecy::{ExposeSecret, SecretBox, SecretSlice, SecretString};
use tokenvault::{
    Conflict, Error, KdfParams, KeySource, RecoveryKey, Secret, Token, Vault, VaultOptions,
};

// ---------------------------------------------------------------------------------------
// Canaries.

const CANARY_LEN: usize = 32;
/// Every canary is two halves of 16 bytes, each starting with these bytes, so that the
/// scanner looks further only where they occur (`~` is rare in memory), and so that half a
/// canary left behind is found too.
const MARK: [u8; 4] = *b"~Cy!";
const HALF: usize = CANARY_LEN / 2;

const ACCESS: usize = 0;
const REFRESH: usize = 1;
const ID_TOKEN: usize = 2;
const PASSPHRASE: usize = 3;
const NEW_PASSPHRASE: usize = 4;
const SECRET: usize = 5;
const RAW_KEY: usize = 6;
const KEY_FILE: usize = 7;
/// A recovery key holds 16 bytes: the first half of its canary.
const RECOVERY: usize = 8;
/// A keyring keyslot's slot key (feature `keyring`).
const KEYRING: usize = 9;
const N: usize = 10;
const NAMES: [&str; N] = [
    "access token",
    "refresh token",
    "id_token (extra JSON)",
    "passphrase",
    "new passphrase",
    "Secret value",
    "raw key",
    "key file contents",
    "recovery key",
    "keyring slot key",
];

static CANARIES: OnceLock<[[u8; CANARY_LEN]; N]> = OnceLock::new();

/// The canaries: ASCII, so they can be tokens and passphrases; random per run, so that they
/// are nowhere in the binary and cannot turn up by coincidence.
fn canaries() -> &'static [[u8; CANARY_LEN]; N] {
    CANARIES.get_or_init(|| {
        let local = 0u8;
        let mut state = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ (u64::from(std::process::id()) << 32)
            ^ (&raw const local as usize as u64);
        let mut next = move || {
            // splitmix64
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        let mut all = [[0u8; CANARY_LEN]; N];
        for canary in &mut all {
            for half in canary.chunks_exact_mut(HALF) {
                half[..MARK.len()].copy_from_slice(&MARK);
                for b in &mut half[MARK.len()..] {
                    *b = ALPHABET[(next() % ALPHABET.len() as u64) as usize];
                }
            }
        }
        all
    })
}

fn canary(which: usize) -> &'static [u8; CANARY_LEN] {
    &canaries()[which]
}

fn canary_str(which: usize) -> &'static str {
    std::str::from_utf8(canary(which)).unwrap()
}

/// A `SecretString` holding `parts` concatenated, built in a buffer of exactly its final
/// size: `SecretString::from(String)` calls `into_boxed_str`, which would reallocate (and
/// leave an unwiped copy behind) if the capacity were larger than the length.
fn secret_string(parts: &[&str]) -> SecretString {
    let len = parts.iter().map(|p| p.len()).sum();
    let mut s = String::with_capacity(len);
    for p in parts {
        s.push_str(p);
    }
    assert_eq!(s.capacity(), s.len());
    SecretString::from(s)
}

fn canary_secret_string(which: usize) -> SecretString {
    secret_string(&[canary_str(which)])
}

fn canary_token() -> Token {
    Token::new(canary_secret_string(ACCESS))
        .with_refresh_token(canary_secret_string(REFRESH))
        .with_extra_json(secret_string(&[
            r#"{"id_token":""#,
            canary_str(ID_TOKEN),
            r#""}"#,
        ]))
        .with_scopes(["openid", "transfer:all"])
        .with_identity("user-1")
        .with_resource_server("transfer.api.example.org")
        .with_expires_at(UNIX_EPOCH + Duration::from_secs(1_900_000_000))
}

fn canary_secret() -> Secret {
    let mut bytes = Vec::with_capacity(CANARY_LEN);
    bytes.extend_from_slice(canary(SECRET));
    // `SecretSlice::from(Vec)` calls `into_boxed_slice`: exact capacity, no reallocation.
    Secret::from_bytes(SecretSlice::from(bytes))
}

fn passphrase(which: usize) -> KeySource {
    KeySource::passphrase(canary_secret_string(which))
}

fn canary_raw_key() -> KeySource {
    // Filled in place, in its heap block: no copy of the key anywhere on the heap.
    KeySource::raw_key(SecretBox::init_with_mut(|k: &mut [u8; 32]| {
        k.copy_from_slice(canary(RAW_KEY));
    }))
}

/// A recovery key whose 16 bytes are the first half of its canary, parsed from its text (48
/// digits, built in a buffer of exactly its final size).
fn canary_recovery_key() -> RecoveryKey {
    let bytes = &canary(RECOVERY)[..HALF];
    let mut text = String::with_capacity(55);
    for (g, pair) in bytes.chunks_exact(2).enumerate() {
        if g > 0 {
            text.push('-');
        }
        let value = u32::from(u16::from_le_bytes([pair[0], pair[1]])) * 11;
        for place in (0..6).rev() {
            text.push(char::from(b'0' + ((value / 10u32.pow(place)) % 10) as u8));
        }
    }
    assert_eq!(text.capacity(), text.len());
    let text = SecretString::from(text);
    RecoveryKey::parse(text.expose_secret()).unwrap()
}

fn write_private(path: &std::path::Path, contents: &[u8]) {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).unwrap().write_all(contents).unwrap();
}

fn fast() -> VaultOptions {
    VaultOptions::new().kdf(KdfParams::insecure_for_tests())
}

/// A keyring-core store in memory that keeps each secret in a wiped buffer and hands out
/// exact-size copies: whatever canary is left in freed memory after a keyring round trip is
/// tokenvault's doing. (The real Secret Service is tested in tests/keyring.rs; its D-Bus
/// client's buffers are outside tokenvault's reach, SECURITY.md section 12.1.)
#[cfg(feature = "keyring")]
mod wiping_store {
    use std::any::Any;
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use tokenvault::keyring_core::api::{CredentialApi, CredentialStoreApi};
    use tokenvault::keyring_core::{Credential, CredentialStore, Entry, Error, Result};
    use tokenvault::secrecy::zeroize::Zeroizing;

    type Map = Arc<Mutex<HashMap<(String, String), Zeroizing<Vec<u8>>>>>;

    pub(super) struct Store(Map);

    impl Store {
        pub(super) fn shared() -> Arc<CredentialStore> {
            Arc::new(Self(Arc::default()))
        }
    }

    impl CredentialStoreApi for Store {
        fn vendor(&self) -> String {
            "tokenvault memory test".into()
        }

        fn id(&self) -> String {
            "wiping".into()
        }

        fn build(
            &self,
            service: &str,
            user: &str,
            _modifiers: Option<&HashMap<&str, &str>>,
        ) -> Result<Entry> {
            Ok(Entry::new_with_credential(Arc::new(Cred {
                map: Arc::clone(&self.0),
                name: (service.to_owned(), user.to_owned()),
            })))
        }

        fn as_any(&self) -> &dyn Any {
            self
        }
    }

    struct Cred {
        map: Map,
        name: (String, String),
    }

    impl CredentialApi for Cred {
        fn set_secret(&self, secret: &[u8]) -> Result<()> {
            let mut held = Zeroizing::new(Vec::with_capacity(secret.len()));
            held.extend_from_slice(secret);
            self.map.lock().unwrap().insert(self.name.clone(), held);
            Ok(())
        }

        fn get_secret(&self) -> Result<Vec<u8>> {
            let map = self.map.lock().unwrap();
            let held = map.get(&self.name).ok_or(Error::NoEntry)?;
            let mut copy = Vec::with_capacity(held.len());
            copy.extend_from_slice(held);
            Ok(copy)
        }

        fn delete_credential(&self) -> Result<()> {
            let removed = self.map.lock().unwrap().remove(&self.name);
            removed.map(drop).ok_or(Error::NoEntry)
        }

        fn get_credential(&self) -> Result<Option<Arc<Credential>>> {
            Ok(None)
        }

        fn get_specifiers(&self) -> Option<(String, String)> {
            Some(self.name.clone())
        }

        fn as_any(&self) -> &dyn Any {
            self
        }
    }
}

// ---------------------------------------------------------------------------------------
// The scanning allocator.

/// Wraps the system allocator. Every block is handed out zeroed (so that every byte the
/// scanner reads was written), and every reallocation moves: whether a growing buffer
/// leaves a copy behind then does not depend on the system allocator's luck. Never
/// allocates itself (except in the opt-in backtrace mode, see the module docs).
struct Scanner;

#[global_allocator]
static ALLOCATOR: Scanner = Scanner;

static ARMED: AtomicBool = AtomicBool::new(false);
static BACKTRACES: AtomicBool = AtomicBool::new(false);
static FREED_HITS: [AtomicUsize; N] = [const { AtomicUsize::new(0) }; N];
static REALLOC_HITS: [AtomicUsize; N] = [const { AtomicUsize::new(0) }; N];
static SCANNED_BLOCKS: AtomicUsize = AtomicUsize::new(0);
static SCANNED_BYTES: AtomicUsize = AtomicUsize::new(0);

/// The first hits, for the failure message: block size, canary, offset, realloc or free,
/// whole or half.
const LOG_LEN: usize = 64;
struct LogEntry {
    size: AtomicUsize,
    canary: AtomicUsize,
    offset: AtomicUsize,
    realloc: AtomicBool,
    whole: AtomicBool,
}
static LOG: [LogEntry; LOG_LEN] = [const {
    LogEntry {
        size: AtomicUsize::new(0),
        canary: AtomicUsize::new(0),
        offset: AtomicUsize::new(0),
        realloc: AtomicBool::new(false),
        whole: AtomicBool::new(false),
    }
}; LOG_LEN];
static LOGGED: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Set while this thread captures a backtrace, so that the capture's own frees do not
    /// start another one.
    static IN_HOOK: Cell<bool> = const { Cell::new(false) };
}

/// Counts every canary in `block`, a block about to be freed (or left by a reallocation):
/// whole canaries, and halves that are not part of a whole one.
fn inspect(block: &[u8], realloc: bool) {
    let Some(canaries) = CANARIES.get() else {
        return;
    };
    SCANNED_BLOCKS.fetch_add(1, Ordering::Relaxed);
    SCANNED_BYTES.fetch_add(block.len(), Ordering::Relaxed);
    if block.len() < HALF {
        return;
    }
    // Where the last whole match of each canary ends: its second half is not counted again.
    let mut whole_until = [0usize; N];
    for i in 0..=block.len() - HALF {
        if block[i] != MARK[0] || block[i + 1..i + MARK.len()] != MARK[1..] {
            continue;
        }
        for (which, canary) in canaries.iter().enumerate() {
            if block.get(i..i + CANARY_LEN) == Some(&canary[..]) {
                record_hit(which, block.len(), i, realloc, true);
                whole_until[which] = i + CANARY_LEN;
            } else if i >= whole_until[which]
                && (block[i..i + HALF] == canary[..HALF] || block[i..i + HALF] == canary[HALF..])
            {
                record_hit(which, block.len(), i, realloc, false);
            }
        }
    }
}

fn record_hit(which: usize, size: usize, offset: usize, realloc: bool, whole: bool) {
    let counters = if realloc { &REALLOC_HITS } else { &FREED_HITS };
    counters[which].fetch_add(1, Ordering::SeqCst);
    let slot = LOGGED.fetch_add(1, Ordering::SeqCst);
    if let Some(entry) = LOG.get(slot) {
        entry.size.store(size, Ordering::SeqCst);
        entry.canary.store(which, Ordering::SeqCst);
        entry.offset.store(offset, Ordering::SeqCst);
        entry.realloc.store(realloc, Ordering::SeqCst);
        entry.whole.store(whole, Ordering::SeqCst);
    }
    if BACKTRACES.load(Ordering::SeqCst) {
        // Diagnostic mode only: this allocates. The guard stops the capture's own frees from
        // capturing again; `try_with` because a thread being torn down has no locals.
        let entered = IN_HOOK
            .try_with(|busy| !busy.replace(true))
            .unwrap_or(false);
        if entered {
            let trace = std::backtrace::Backtrace::force_capture();
            eprintln!(
                "=== leak: {}{} in a {size}-byte block at offset {offset} ({}) ===\n{trace}",
                if whole { "" } else { "half of the " },
                NAMES[which],
                if realloc { "reallocated" } else { "freed" }
            );
            let _ = IN_HOOK.try_with(|busy| busy.set(false));
        }
    }
}

// SAFETY: every method forwards to `System` with the caller's layout (or, in `realloc`, with
// a layout whose size the caller guaranteed valid), so the `GlobalAlloc` contract is the
// system allocator's. The scanner only reads blocks the caller still owns.
unsafe impl GlobalAlloc for Scanner {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as ours (non-zero size layout); zeroed memory is valid.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if ARMED.load(Ordering::Relaxed) {
            // SAFETY: `ptr` is a live block of `layout.size()` bytes allocated by us (the
            // caller's contract), zeroed at allocation and so initialized; nobody else uses
            // it any more, and we only read it before handing it back.
            let block = unsafe { std::slice::from_raw_parts(ptr, layout.size()) };
            inspect(block, false);
        }
        // SAFETY: `ptr` was allocated by `System` (through us) with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees that `new_size`, rounded up to `layout.align()`, does
        // not overflow `isize`, which is what `Layout` requires.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: `new_size` is non-zero (the caller's contract), so `new_layout` is valid.
        let new = unsafe { System.alloc_zeroed(new_layout) };
        if new.is_null() {
            return new;
        }
        // SAFETY: `ptr` is live for `layout.size()` bytes and `new` for `new_size` bytes;
        // they are distinct blocks, so the copy of the common prefix does not overlap.
        unsafe { std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size)) };
        if ARMED.load(Ordering::Relaxed) {
            // SAFETY: as in `dealloc`: the old block is live, initialized and ours to read.
            let old = unsafe { std::slice::from_raw_parts(ptr, layout.size()) };
            inspect(old, true);
        }
        // SAFETY: `ptr` was allocated by `System` (through us) with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        new
    }
}

fn reset() {
    for c in FREED_HITS.iter().chain(REALLOC_HITS.iter()) {
        c.store(0, Ordering::SeqCst);
    }
    LOGGED.store(0, Ordering::SeqCst);
    SCANNED_BLOCKS.store(0, Ordering::SeqCst);
    SCANNED_BYTES.store(0, Ordering::SeqCst);
}

fn total_hits() -> usize {
    FREED_HITS
        .iter()
        .chain(REALLOC_HITS.iter())
        .map(|c| c.load(Ordering::SeqCst))
        .sum()
}

fn hit_summary() -> String {
    let mut s = String::new();
    for which in 0..N {
        let (freed, moved) = (
            FREED_HITS[which].load(Ordering::SeqCst),
            REALLOC_HITS[which].load(Ordering::SeqCst),
        );
        if freed + moved > 0 {
            let _ = writeln!(
                s,
                "  {}: {freed} in freed blocks, {moved} in reallocated blocks",
                NAMES[which]
            );
        }
    }
    let logged = LOGGED.load(Ordering::SeqCst).min(LOG_LEN);
    for entry in &LOG[..logged] {
        let _ = writeln!(
            s,
            "    {} block of {} bytes, {}{} at offset {}",
            if entry.realloc.load(Ordering::SeqCst) {
                "reallocated"
            } else {
                "freed"
            },
            entry.size.load(Ordering::SeqCst),
            if entry.whole.load(Ordering::SeqCst) {
                ""
            } else {
                "half of the "
            },
            NAMES[entry.canary.load(Ordering::SeqCst)],
            entry.offset.load(Ordering::SeqCst),
        );
    }
    s
}

/// Arms the scanner while `f` runs.
fn armed<T>(f: impl FnOnce() -> T) -> T {
    ARMED.store(true, Ordering::SeqCst);
    let out = f();
    ARMED.store(false, Ordering::SeqCst);
    out
}

/// The tests in this file take turns: the scanner sees every thread's frees.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

// ---------------------------------------------------------------------------------------
// The tests.

#[test]
fn no_secret_is_left_in_freed_memory() {
    let _serial = serial();
    canaries();
    BACKTRACES.store(
        std::env::var_os("TOKENVAULT_LEAK_BACKTRACE").is_some_and(|v| v == "1"),
        Ordering::SeqCst,
    );

    // Controls: the scanner sees a canary (or half of one) in a freed String and in the old
    // block of a grown Vec, and nothing when a canary is freed from a SecretString (wiped).
    reset();
    armed(|| {
        let mut plain = String::with_capacity(CANARY_LEN);
        plain.push_str(canary_str(ACCESS));
        drop(std::hint::black_box(plain));
    });
    assert_eq!(
        (FREED_HITS[ACCESS].load(Ordering::SeqCst), total_hits()),
        (1, 1),
        "control: free (a whole canary counts once)"
    );
    reset();
    armed(|| {
        let mut half = String::with_capacity(3 * HALF);
        half.push_str("prefix-");
        half.push_str(&canary_str(REFRESH)[HALF..]);
        drop(std::hint::black_box(half));
    });
    assert_eq!(
        (FREED_HITS[REFRESH].load(Ordering::SeqCst), total_hits()),
        (1, 1),
        "control: half a canary"
    );
    reset();
    armed(|| {
        let mut grown = Vec::with_capacity(CANARY_LEN);
        grown.extend_from_slice(canary(SECRET));
        grown.push(0u8); // reallocates: the old block still holds the canary
        let mut grown = std::hint::black_box(grown);
        zeroize::Zeroize::zeroize(&mut grown);
    });
    assert_eq!(
        (REALLOC_HITS[SECRET].load(Ordering::SeqCst), total_hits()),
        (1, 1),
        "control: realloc (the zeroized final block must not count)"
    );
    reset();
    armed(|| drop(std::hint::black_box(canary_secret_string(PASSPHRASE))));
    assert_eq!(total_hits(), 0, "control: a SecretString is wiped on drop");
    reset();
    // ... unless it was built from a String with spare capacity: `SecretString::from(String)`
    // shrinks it first (`into_boxed_str`), and the block it leaves is not wiped. This is the
    // caller-side leak SECURITY.md warns about; the canaries above are built to avoid it.
    armed(|| {
        let mut roomy = String::with_capacity(2 * CANARY_LEN);
        roomy.push_str(canary_str(NEW_PASSPHRASE));
        drop(std::hint::black_box(SecretString::from(roomy)));
    });
    assert_eq!(
        (
            REALLOC_HITS[NEW_PASSPHRASE].load(Ordering::SeqCst),
            total_hits()
        ),
        (1, 1),
        "control: SecretString::from a String with spare capacity"
    );
    reset();

    // The round trip, armed from the first secret made to the last one dropped.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vault");
    let started = Instant::now();
    armed(|| round_trip(&path));
    let elapsed = started.elapsed();
    let hits = total_hits();
    let summary = hit_summary();
    eprintln!(
        "memory: round trip scanned {} freed blocks ({} bytes) in {elapsed:.2?}; {hits} canary \
         hits\n{summary}",
        SCANNED_BLOCKS.load(Ordering::SeqCst),
        SCANNED_BYTES.load(Ordering::SeqCst),
    );
    assert!(
        SCANNED_BLOCKS.load(Ordering::SeqCst) > 1000,
        "the scanner saw the round trip"
    );
    assert_eq!(
        hits, 0,
        "secrets left in freed heap memory (rerun with TOKENVAULT_LEAK_BACKTRACE=1 \
         --nocapture to see where):\n{summary}"
    );
    drop(dir);
}

/// Everything a user does with secrets, on a real directory.
fn round_trip(path: &std::path::Path) {
    let pass = passphrase(PASSPHRASE);
    let new_pass = passphrase(NEW_PASSPHRASE);
    let raw = canary_raw_key();
    // A raw key file (32 bytes, mode 0600), written straight from the canary's static bytes.
    let key_path = path.with_extension("key");
    write_private(&key_path, canary(KEY_FILE));
    let key_file = KeySource::key_file(&key_path);
    let token = canary_token();
    let secret = canary_secret();

    let check = |vault: &Vault| {
        let ns = vault.namespace("tenant-1").unwrap();
        let (got, version) = ns
            .get_versioned::<Token>("transfer.api.example.org")
            .unwrap()
            .unwrap();
        assert!(got.same_as(&token));
        assert_eq!(
            got.access_token().expose_secret().as_bytes(),
            canary(ACCESS)
        );
        let got: Secret = ns.get("client-secret").unwrap().unwrap();
        assert_eq!(got.expose_bytes(), canary(SECRET));
        assert_eq!(
            ns.keys().unwrap(),
            ["client-secret", "transfer.api.example.org"]
        );
        version
    };

    let vault = fast().create(path, &pass).unwrap();
    let ns = vault.namespace("tenant-1").unwrap();
    let v1 = ns.put("transfer.api.example.org", &token).unwrap();
    ns.put("client-secret", &secret).unwrap();
    vault
        .namespace("tenant-2")
        .unwrap()
        .put("auth.example.org", &token)
        .unwrap();
    let version = check(&vault);
    assert_eq!(version, v1);
    let v2 = ns
        .compare_and_swap("transfer.api.example.org", Some(v1), &token)
        .unwrap()
        .unwrap();
    assert!(ns
        .compare_and_swap("transfer.api.example.org", Some(v1), &token)
        .unwrap()
        .is_err());
    let _: Option<Secret> = ns.get("missing").unwrap();
    vault.close().unwrap();

    let vault = fast().open(path, &pass).unwrap();
    assert_eq!(check(&vault), v2);
    vault.change_passphrase(&pass, &new_pass).unwrap();
    let slot = vault.add_keyslot(&raw).unwrap();
    vault.rotate_namespace_key("tenant-1", |_| {}).unwrap();
    vault.rotate_master_key().unwrap();
    assert!(vault.verify(|_| {}).unwrap().is_clean());
    check(&vault);
    assert!(vault
        .namespace("tenant-2")
        .unwrap()
        .remove("auth.example.org")
        .unwrap());
    vault.close().unwrap();

    let vault = fast().open(path, &raw).unwrap();
    check(&vault);
    vault.remove_keyslot(slot).unwrap();
    let file_slot = vault.add_keyslot(&key_file).unwrap();
    // This handle did not open the passphrase slot: its secret is passed in.
    vault.rotate_master_key_with(&[&new_pass]).unwrap();
    vault.close().unwrap();
    let vault = fast().open(path, &key_file).unwrap();
    check(&vault);
    vault.remove_keyslot(file_slot).unwrap();
    // A recovery key: added, its text shown once, then typed back in to open the vault.
    let recovery = canary_recovery_key();
    let recovery_slot = vault
        .add_keyslot(&KeySource::recovery_key(&recovery))
        .unwrap();
    let shown = recovery.expose_text();
    let typed = RecoveryKey::parse(shown.expose_secret()).unwrap();
    drop(shown);
    vault
        .rotate_master_key_with(&[&new_pass, &KeySource::recovery_key(&typed)])
        .unwrap();
    vault.close().unwrap();
    let vault = fast().open(path, &KeySource::recovery_key(&typed)).unwrap();
    check(&vault);
    vault.remove_keyslot(recovery_slot).unwrap();
    drop((recovery, typed));
    vault.close().unwrap();
    #[cfg(feature = "keyring")]
    {
        // A keyring slot, its key in a keyring-core store that wipes what it holds: added,
        // carried through a master-key rotation, opened, removed with its entry.
        let keyring = tokenvault::Keyring::with_store(wiping_store::Store::shared());
        let vault = fast().open(path, &new_pass).unwrap();
        tokenvault::test_hooks::set_next_keyring_slot_key(canary(KEYRING));
        let slot = vault.add_keyslot(&KeySource::keyring(&keyring)).unwrap();
        vault.close().unwrap();
        let vault = fast().open(path, &KeySource::keyring(&keyring)).unwrap();
        assert_eq!(vault.unlocked_keyslot().unwrap(), slot);
        check(&vault);
        vault.rotate_master_key_with(&[&new_pass]).unwrap();
        vault.close().unwrap();
        let vault = fast().open(path, &KeySource::keyring(&keyring)).unwrap();
        vault.remove_keyring_keyslot(slot, &keyring).unwrap();
        vault.close().unwrap();
    }
    // Opening with a stronger policy re-wraps the weak passphrase slot (a real Argon2 run
    // over 19 MiB of working memory, allocated and wiped by the library).
    let vault = VaultOptions::new()
        .kdf(KdfParams::OWASP_MINIMUM)
        .upgrade_weak_slots(true)
        .open(path, &new_pass)
        .unwrap();
    check(&vault);
    assert!(vault.keyslots().unwrap()[0]
        .kdf
        .is_some_and(|k| !k.is_insecure()));
    vault.close().unwrap();
    let vault = fast().open(path, &new_pass).unwrap();
    check(&vault);
    vault.close().unwrap();
    assert!(matches!(fast().open(path, &pass), Err(Error::WrongKey)));

    // The same on the in-memory backend.
    let vault = fast()
        .create_with_backend(MemoryBackend::new(), &new_pass)
        .unwrap();
    let ns = vault.namespace("tenant-1").unwrap();
    ns.put("transfer.api.example.org", &token).unwrap();
    ns.put("client-secret", &secret).unwrap();
    check(&vault);
    vault.rotate_namespace_key("tenant-1", |_| {}).unwrap();
    drop(vault);

    drop((pass, new_pass, raw, key_file, token, secret));
}

#[test]
fn token_responses_and_stores_leave_no_secret_in_freed_memory() {
    let _serial = serial();
    canaries();
    reset();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vault");
    armed(|| responses_round_trip(&path));
    let hits = total_hits();
    let summary = hit_summary();
    eprintln!(
        "memory: responses round trip scanned {} freed blocks; {hits} canary hits\n{summary}",
        SCANNED_BLOCKS.load(Ordering::SeqCst),
    );
    // The round trip frees about a thousand blocks (fewer since overwrites skip sled's
    // transactions); the bound only shows that the scan ran.
    assert!(SCANNED_BLOCKS.load(Ordering::SeqCst) > 500);
    assert_eq!(
        hits, 0,
        "secrets left in freed heap memory by token responses or stores:\n{summary}"
    );
}

/// Token responses (a Globus multi-resource-server login, then a refresh) parsed from JSON,
/// stored in a vault namespace and in a memory store, merged, read back and dropped.
fn responses_round_trip(path: &std::path::Path) {
    use tokenvault::oauth::TokenResponse;
    use tokenvault::store::{MemoryStore, TokenStore};

    // The response bodies, built in buffers of exactly their size and wiped on drop.
    let json = |parts: &[&str]| {
        let len = parts.iter().map(|p| p.len()).sum();
        let mut buf = zeroize::Zeroizing::new(Vec::with_capacity(len));
        for p in parts {
            buf.extend_from_slice(p.as_bytes());
        }
        assert_eq!(buf.len(), buf.capacity());
        buf
    };
    let login = json(&[
        r#"{"access_token":""#,
        canary_str(ACCESS),
        r#"","token_type":"Bearer","expires_in":3600,"resource_server":"auth.example.org","#,
        r#""scope":"openid email","refresh_token":""#,
        canary_str(REFRESH),
        r#"","id_token":""#,
        canary_str(ID_TOKEN),
        r#"","other_tokens":[{"access_token":""#,
        canary_str(ACCESS),
        r#"","token_type":"Bearer","resource_server":"transfer.example.org"}]}"#,
    ]);
    let refresh = json(&[
        r#"{"access_token":""#,
        canary_str(SECRET),
        r#"","token_type":"Bearer","expires_in":3600,"resource_server":"auth.example.org","#,
        r#""id_token":""#,
        canary_str(NEW_PASSPHRASE),
        r#""}"#,
    ]);
    let sent = UNIX_EPOCH + Duration::from_secs(1_900_000_000);

    let vault = Vault::create(path, &canary_raw_key()).unwrap();
    let ns = vault.namespace("user/1").unwrap();
    let memory = MemoryStore::new();
    for store in [&ns as &dyn TokenStore, &memory] {
        let response = TokenResponse::from_json(&login, sent).unwrap();
        store.store_response(&response).unwrap();
        drop(response);
        let response = TokenResponse::from_json(&refresh, sent).unwrap();
        store.store_response(&response).unwrap();
        let merged = store.get_token("auth.example.org").unwrap().unwrap();
        assert_eq!(
            merged.access_token().expose_secret().as_bytes(),
            canary(SECRET)
        );
        assert_eq!(
            merged.refresh_token().unwrap().expose_secret().as_bytes(),
            canary(REFRESH)
        );
        assert!(merged
            .extra_json()
            .unwrap()
            .expose_secret()
            .contains(canary_str(NEW_PASSPHRASE)));
        assert!(store.remove_token("transfer.example.org").unwrap());
    }
    drop((ns, memory));
    #[cfg(feature = "http")]
    {
        // A provider whose client secret is a canary: stored, read back, made a refresher.
        use tokenvault::oauth::{ClientAuth, GrantType, Provider, Providers};
        let providers = Providers::new(&vault.namespace("providers").unwrap());
        let provider = Provider::new("https://idp.example.org/token", "cli")
            .unwrap()
            .client_secret(canary_secret_string(SECRET), ClientAuth::Post);
        providers.put("idp", &provider).unwrap();
        drop(provider);
        let read = providers.get("idp").unwrap().unwrap();
        let refresher = read.refresher(GrantType::ClientCredentials).unwrap();
        drop((read, refresher));
        assert!(providers.remove("idp").unwrap());
    }
    vault.close().unwrap();
    drop((login, refresh));
}

#[test]
fn the_authorizer_leaves_no_secret_in_freed_memory() {
    let _serial = serial();
    canaries();
    reset();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vault");
    armed(|| authorizer_round_trip(&path));
    let hits = total_hits();
    let summary = hit_summary();
    eprintln!(
        "memory: authorizer round trip scanned {} freed blocks; {hits} canary hits\n{summary}",
        SCANNED_BLOCKS.load(Ordering::SeqCst),
    );
    assert!(SCANNED_BLOCKS.load(Ordering::SeqCst) > 1000);
    assert_eq!(
        hits, 0,
        "secrets left in freed heap memory by the authorizer:\n{summary}"
    );
}

/// An expired canary grant refreshed through an authorizer (on its own thread, under a
/// lease), served from the cache, invalidated, refreshed again, and logged out.
fn authorizer_round_trip(path: &std::path::Path) {
    use tokenvault::oauth::{Authorizer, RefreshError};

    let vault = Vault::create(path, &canary_raw_key()).unwrap();
    let ns = vault.namespace("user/1").unwrap();
    let expired = canary_token().with_expires_at(UNIX_EPOCH + Duration::from_secs(1));
    ns.put("api", &expired).unwrap();
    drop(expired);
    let refresher = |current: Option<&Token>| -> Result<Token, RefreshError> {
        assert_eq!(
            current
                .unwrap()
                .refresh_token()
                .unwrap()
                .expose_secret()
                .as_bytes(),
            canary(REFRESH)
        );
        Ok(Token::new(canary_secret_string(SECRET))
            .with_expires_at(SystemTime::now() + Duration::from_secs(3600))
            .with_extra_json(secret_string(&[
                r#"{"id_token":""#,
                canary_str(NEW_PASSPHRASE),
                r#""}"#,
            ])))
    };
    let auth = Authorizer::builder(&ns, "api", refresher).build().unwrap();
    let token = auth.token().unwrap();
    assert_eq!(
        token.access_token().expose_secret().as_bytes(),
        canary(SECRET)
    );
    assert_eq!(
        token.refresh_token().unwrap().expose_secret().as_bytes(),
        canary(REFRESH)
    );
    auth.token().unwrap();
    auth.invalidate(&token);
    drop(token);
    auth.token().unwrap();
    let logout = auth.logout(|t| {
        drop(t);
        Ok::<(), ()>(())
    });
    assert!(logout.unwrap().removed);
    drop((auth, ns));
    vault.close().unwrap();
}

/// Each canary as text, as the `{:?}` of its bytes, and as hex: a `Debug` of a byte buffer
/// would show it in one of those forms.
fn needles() -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for which in 0..N {
        let c = canary(which);
        out.push((which, canary_str(which).to_owned()));
        out.push((
            which,
            format!("{:?}", &c[..])[1..]
                .trim_end_matches(']')
                .to_owned(),
        ));
        out.push((which, c.iter().map(|b| format!("{b:02x}")).collect()));
        // Each half's random part alone, in case only part of a canary is shown.
        let text = canary_str(which);
        out.push((which, text[MARK.len()..HALF].to_owned()));
        out.push((which, text[HALF + MARK.len()..].to_owned()));
    }
    // The recovery key's digits, whole and group by group.
    let digits = canary_recovery_key().expose_text();
    for group in digits.expose_secret().split('-') {
        out.push((RECOVERY, group.to_owned()));
    }
    out.push((RECOVERY, digits.expose_secret().to_owned()));
    out
}

fn assert_clean(what: &str, rendered: &str, needles: &[(usize, String)]) {
    for (which, needle) in needles {
        assert!(
            !rendered.contains(needle.as_str()),
            "{what} shows the {}: {rendered}",
            NAMES[*which]
        );
    }
}

#[test]
fn debug_and_display_never_show_a_secret() {
    let _serial = serial();
    let needles = needles();
    let mut checked = 0usize;
    let mut check_debug = |what: &str, value: &dyn std::fmt::Debug| {
        let rendered = format!("{value:?}\n{value:#?}");
        assert_clean(what, &rendered, &needles);
        checked += 1;
    };

    let token = canary_token();
    check_debug("Token", &token);
    check_debug("Secret", &canary_secret());
    check_debug("KeySource::passphrase", &passphrase(PASSPHRASE));
    check_debug("KeySource::raw_key", &canary_raw_key());
    let recovery = canary_recovery_key();
    check_debug("RecoveryKey", &recovery);
    check_debug(
        "KeySource::recovery_key",
        &KeySource::recovery_key(&recovery),
    );
    check_debug(
        "KeySource::systemd_credential",
        &KeySource::systemd_credential("vault-key"),
    );
    #[cfg(feature = "keyring")]
    {
        // A keyring whose store holds the canary, and a vault whose keyring entry was
        // overwritten with it (a mismatch, whose error must not show what it found).
        let store = wiping_store::Store::shared();
        let keyring = tokenvault::Keyring::with_store(std::sync::Arc::clone(&store));
        check_debug("Keyring", &keyring);
        check_debug("KeySource::keyring", &KeySource::keyring(&keyring));
        let storage = MemoryBackend::new();
        let vault = fast()
            .create_with_backend(storage.clone(), &KeySource::keyring(&keyring))
            .unwrap();
        let info = vault.keyslots().unwrap();
        check_debug("KeyslotInfo (keyring)", &info);
        let entry = info[0].keyring_entry.clone().unwrap();
        let stored =
            keyring_core::Entry::new_in_store(&store, &entry.service, &entry.account).unwrap();
        for overwritten in [&canary(KEYRING)[..], &canary(KEYRING)[..HALF]] {
            stored.set_secret(overwritten).unwrap();
            let err = fast()
                .open_with_backend(storage.clone(), &KeySource::keyring(&keyring))
                .unwrap_err();
            assert!(matches!(err, Error::Keyring { .. }), "{err}");
            check_debug("Error::Keyring", &err);
            assert_clean("Error::Keyring (Display)", &err.to_string(), &needles);
        }
        drop(vault);
    }
    // A key file path is not a secret, its contents are.
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("vault.key");
    std::fs::write(&key_file, [canary(RAW_KEY).as_slice(), b"x"].concat()).unwrap();
    let file_source = KeySource::key_file(&key_file);
    check_debug("KeySource::key_file", &file_source);
    let options = fast();
    check_debug("VaultOptions", &options);
    check_debug("KdfParams", &KdfParams::insecure_for_tests());
    check_debug("KdfParams", &KdfParams::default());
    #[cfg(feature = "http")]
    {
        // A provider whose client secret is a canary, as built and as read back.
        use tokenvault::oauth::{ClientAuth, Provider, Providers};
        let provider = Provider::new("https://idp.example.org/token", "cli")
            .unwrap()
            .client_secret(canary_secret_string(SECRET), ClientAuth::Basic);
        check_debug("Provider", &provider);
        let vault = fast()
            .create_with_backend(MemoryBackend::new(), &canary_raw_key())
            .unwrap();
        let providers = Providers::new(&vault.namespace("p").unwrap());
        providers.put("idp", &provider).unwrap();
        check_debug("Providers", &providers);
        check_debug("Provider (stored)", &providers.get("idp").unwrap().unwrap());
        let refresher = provider
            .refresher(tokenvault::oauth::GrantType::RefreshToken)
            .unwrap();
        check_debug("HttpRefresher (provider)", &refresher);
        drop(vault);
    }

    // A vault on memory, with canary secrets stored, and everything it reports.
    let storage = MemoryBackend::new();
    let pass = passphrase(PASSPHRASE);
    let vault = fast().create_with_backend(storage.clone(), &pass).unwrap();
    vault.add_keyslot(&canary_raw_key()).unwrap();
    let ns = vault.namespace("tenant-1").unwrap();
    let v1 = ns.put("rs", &token).unwrap();
    ns.put("secret", &canary_secret()).unwrap();
    ns.put("other", &token).unwrap();
    check_debug("Vault", &vault);
    check_debug("Namespace", &ns);
    check_debug("MemoryBackend", &storage);
    for slot in vault.keyslots().unwrap() {
        check_debug("KeyslotInfo", &slot);
    }
    check_debug("Version", &v1);
    assert_clean("Version", &v1.to_string(), &needles);
    ns.compare_and_swap("rs", Some(v1), &token)
        .unwrap()
        .unwrap();
    let conflict: Conflict = ns
        .compare_and_swap("rs", Some(v1), &token)
        .unwrap()
        .unwrap_err();
    check_debug("Conflict", &conflict);
    assert_clean("Conflict", &conflict.to_string(), &needles);
    let mut progress = Vec::new();
    let rotation = vault
        .rotate_namespace_key("tenant-1", |p| progress.push(p))
        .unwrap();
    check_debug("RotationReport", &rotation);
    for p in &progress {
        check_debug("Progress", p);
    }

    // Errors are collected as they are produced, and checked at the end.
    let mut errors: Vec<(&str, Error)> = Vec::new();
    errors.push(("WrongRecordType", ns.get::<Token>("secret").unwrap_err()));

    // Damage the records so that verify has something to report.
    for (id, mut sealed) in storage.scan(b"r", &[], None, 100).unwrap() {
        sealed[60] ^= 1;
        storage
            .apply(&Batch::new().write(b"r", &id, Some(sealed)))
            .unwrap();
    }
    let mut progress = Vec::new();
    let report = vault.verify(|p| progress.push(p)).unwrap();
    assert!(!report.is_clean());
    check_debug("VerifyReport", &report);
    assert_clean("VerifyReport", &report.to_string(), &needles);
    for n in &report.namespaces {
        check_debug("NamespaceReport", n);
        for d in &n.damaged {
            check_debug("DamagedRecord", d);
        }
    }
    for p in &progress {
        check_debug("Progress", p);
    }

    // Every other error the API can be made to return around canary secrets.
    let damaged = ["rs", "secret", "other"]
        .iter()
        .find_map(|k| {
            ns.get::<Token>(k)
                .err()
                .filter(|e| matches!(e, Error::Damaged(_)))
        })
        .unwrap();
    errors.push(("Damaged", damaged));
    errors.push((
        "WrongKey",
        fast()
            .open_with_backend(storage.clone(), &passphrase(NEW_PASSPHRASE))
            .unwrap_err(),
    ));
    errors.push((
        "KeySource (key file)",
        fast()
            .open_with_backend(storage.clone(), &file_source)
            .unwrap_err(),
    ));
    errors.push((
        "KeySource (empty passphrase)",
        Vault::create_with_backend(
            MemoryBackend::new(),
            &KeySource::passphrase(SecretString::from(String::new())),
        )
        .unwrap_err(),
    ));
    errors.push((
        "AlreadyExists",
        fast()
            .create_with_backend(storage.clone(), &pass)
            .unwrap_err(),
    ));
    errors.push(("InvalidName", vault.namespace("").unwrap_err()));
    errors.push((
        "InvalidName (key)",
        ns.get::<Token>(&"k".repeat(2000)).unwrap_err(),
    ));
    let huge = Token::new(secret_string(&[canary_str(ACCESS); 2100]));
    errors.push(("TooLarge", ns.put("huge", &huge).unwrap_err()));
    drop(huge);
    errors.push(("NoSuchKeyslot", vault.remove_keyslot(99).unwrap_err()));
    errors.push((
        "KdfParams",
        KdfParams::new(8, 1, 1).map(|_| ()).unwrap_err(),
    ));
    let conflict_error: Box<dyn std::error::Error> = Box::new(conflict);
    assert_clean(
        "Conflict as an error",
        &format!("{conflict_error} {conflict_error:?}"),
        &needles,
    );

    // On a directory: Locked, NotFound, SlotSecretsMissing, LastKeyslot, UnsupportedVersion,
    // Closed.
    let path = dir.path().join("v");
    let on_disk = fast().create(&path, &pass).unwrap();
    on_disk.add_keyslot(&canary_raw_key()).unwrap();
    on_disk.namespace("n").unwrap().put("k", &token).unwrap();
    errors.push((
        "Locked",
        fast()
            .sled(SledOptions::new().lock_timeout(Duration::ZERO))
            .open(&path, &pass)
            .unwrap_err(),
    ));
    on_disk.close().unwrap();
    errors.push((
        "NotFound",
        fast().open(dir.path().join("nothing"), &pass).unwrap_err(),
    ));
    // A handle that knows only one slot's secret cannot rotate the master key.
    let only_raw = fast().open(&path, &canary_raw_key()).unwrap();
    errors.push((
        "SlotSecretsMissing",
        only_raw.rotate_master_key().unwrap_err(),
    ));
    only_raw.remove_keyslot(0).unwrap();
    errors.push(("LastKeyslot", only_raw.remove_keyslot(1).unwrap_err()));
    let closed_ns = only_raw.namespace("n").unwrap();
    only_raw.close().unwrap();
    errors.push(("Closed", closed_ns.get::<Token>("k").unwrap_err()));
    let header_path = path.join("tokenvault.header");
    let mut header = std::fs::read(&header_path).unwrap();
    header[8] = 3;
    std::fs::write(&header_path, &header).unwrap();
    errors.push((
        "UnsupportedVersion",
        fast().open(&path, &canary_raw_key()).unwrap_err(),
    ));

    let sled = SledBackend::create(dir.path().join("sled")).unwrap();
    check_debug("SledBackend", &sled);
    let sled_vault = fast().create_with_backend(sled, &pass).unwrap();
    sled_vault.namespace("n").unwrap().put("k", &token).unwrap();
    check_debug("Vault (sled)", &sled_vault);
    sled_vault.close().unwrap();

    let mut kinds = std::collections::BTreeSet::new();
    for (what, error) in &errors {
        check_debug(what, error);
        assert_clean(what, &error.to_string(), &needles);
        kinds.insert(
            format!("{error:?}")
                .split([' ', '(', '{'])
                .next()
                .unwrap()
                .to_owned(),
        );
    }
    for kind in [
        "WrongKey",
        "Damaged",
        "KeySource",
        "WrongRecordType",
        "Locked",
        "NotFound",
        "AlreadyExists",
        "InvalidName",
        "TooLarge",
        "NoSuchKeyslot",
        "KdfParams",
        "SlotSecretsMissing",
        "LastKeyslot",
        "Closed",
        "UnsupportedVersion",
    ] {
        assert!(kinds.contains(kind), "{kind} was not produced: {kinds:?}");
    }
    eprintln!(
        "debug/display: {checked} values checked, {} error kinds",
        kinds.len()
    );
}
