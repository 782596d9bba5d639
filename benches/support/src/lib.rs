//! The benchmarks' shared workload: a realistic token record, vaults filled with them, and
//! the floor's storage parts (raw sled with the same bytes, with and without the durable flush
//! the vault does), through the public API only. Used by `benches/vault.rs` (criterion) and
//! `benches/bench_report.rs` (the table), as the dev-dependency `workload`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokenvault::secrecy::SecretBox;
use tokenvault::store::TokenStore;
use tokenvault::{Durability, KeySource, Token, Vault, VaultOptions};

/// The namespace and key of the record the single-record operations use.
pub const NS: &str = "tenant-0007";
pub const KEY: &str = "transfer.api.globus.org";

/// A realistic token: a 1,024-byte access token (a JWT-sized string), a 64-byte refresh
/// token, three scopes, an expiry, an identity, a resource server. `n` makes it unique.
pub fn token(n: u64) -> Token {
    let mut access = String::with_capacity(1024);
    let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    while access.len() < 1024 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        access.push(ALPHABET[(x % 64) as usize] as char);
    }
    Token::new(access.into())
        .with_refresh_token(format!("Ar{n:062}").into())
        .with_expires_at(UNIX_EPOCH + Duration::from_secs(1_900_000_000 + n))
        .with_scopes([
            "openid",
            "email",
            "urn:globus:auth:scope:transfer.api.globus.org:all",
        ])
        .with_identity("2265b1f5-1111-4222-8333-d8f191b7584a")
        .with_resource_server(KEY)
}

pub fn raw_key() -> KeySource {
    KeySource::raw_key(SecretBox::new(Box::new([0x42; 32])))
}

/// A fresh directory for benchmark data, on the same disk as the build (not a RAM disk).
pub fn bench_dir(name: &str) -> tempfile::TempDir {
    // tokenvault's own target directory (this crate is benches/support/).
    let base = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-data");
    std::fs::create_dir_all(&base).unwrap();
    tempfile::Builder::new()
        .prefix(name)
        .tempdir_in(base)
        .unwrap()
}

/// A vault at `path` holding `records` tokens spread over `namespaces` namespaces (key
/// `rs-{i}` in namespace `tenant-{i % namespaces:04}`), written buffered and flushed once.
/// The single-record operations' record (`NS`, `KEY`) is among them.
pub fn filled_vault(path: &Path, key: &KeySource, records: u64, namespaces: u64) -> Vault {
    let vault = VaultOptions::new()
        .durability(Durability::Buffered)
        .create(path, key)
        .unwrap();
    let handles: Vec<_> = (0..namespaces)
        .map(|i| vault.namespace(&format!("tenant-{i:04}")).unwrap())
        .collect();
    // Filled namespace by namespace, many records per atomic write: how the records got
    // there does not change what a read or an overwrite costs, and a million single creates
    // (each an atomic batch with the manifest) would take most of the run.
    let t = token(0);
    let per_ns = records.div_ceil(namespaces.max(1));
    for (n, handle) in handles.iter().enumerate() {
        let keys: Vec<String> = (0..per_ns)
            .map(|j| j * namespaces + n as u64)
            .filter(|i| *i < records)
            .map(|i| format!("rs-{i}"))
            .collect();
        for chunk in keys.chunks(1000) {
            let items: Vec<(&str, &Token)> = chunk.iter().map(|k| (k.as_str(), &t)).collect();
            handle.set_tokens(&items).unwrap();
        }
    }
    vault.namespace(NS).unwrap().put(KEY, &token(1)).unwrap();
    vault.close().unwrap();
    Vault::open(path, key).unwrap()
}

/// Raw sled with the vault's settings, and the same durable flush the vault's sled backend
/// does (sled's flush, then `fdatasync` of its data file).
pub struct RawSled {
    pub db: sled::Db,
    pub tree: sled::Tree,
    data_file: File,
}

impl RawSled {
    pub fn create(dir: &Path, records: u64, value_len: usize) -> Self {
        Self::create_with_cache(dir, records, value_len, 64 * 1024 * 1024)
    }

    pub fn create_with_cache(dir: &Path, records: u64, value_len: usize, cache: u64) -> Self {
        let db = sled::Config::new()
            .path(dir.join("data"))
            .cache_capacity(cache)
            .flush_every_ms(Some(500))
            .open()
            .unwrap();
        let tree = db.open_tree(b"ns").unwrap();
        let value = vec![0xA5u8; value_len];
        for i in 0..records {
            tree.insert(id(i), value.as_slice()).unwrap();
        }
        db.flush().unwrap();
        let data_file = File::open(dir.join("data").join("db")).unwrap();
        Self {
            db,
            tree,
            data_file,
        }
    }

    pub fn durable_flush(&self) {
        self.db.flush().unwrap();
        self.data_file.sync_data().unwrap();
    }
}

/// Raw sled laid out as a format-2 vault of one-token tenants: trees `e`, `m` and `r` with
/// random 32-byte namespace ids, 48-byte manifest keys and 80-byte record keys, holding
/// values of an entry's, a manifest's and a token record's sizes. The floor of a tenant's
/// creation at scale: the same random-key reads and inserts, without the vault.
pub struct RawTenants {
    pub db: sled::Db,
    e: sled::Tree,
    m: sled::Tree,
    r: sled::Tree,
    values: [Vec<u8>; 3],
}

/// A pseudo-random 32-byte id for tenant `i` (namespace ids are HMACs: spread over the key
/// space).
fn tenant_id(i: u64) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut x = i.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    for chunk in out.chunks_mut(8) {
        x ^= x >> 29;
        x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        chunk.copy_from_slice(&x.to_be_bytes());
    }
    out
}

impl RawTenants {
    /// Opens (creating) raw sled in `dir` with the vault's settings.
    pub fn open(dir: &Path, record_len: usize) -> Self {
        let db = sled::Config::new()
            .path(dir.join("data"))
            .cache_capacity(64 * 1024 * 1024)
            .flush_every_ms(Some(500))
            .open()
            .unwrap();
        Self {
            e: db.open_tree(b"e").unwrap(),
            m: db.open_tree(b"m").unwrap(),
            r: db.open_tree(b"r").unwrap(),
            db,
            values: [vec![0xE5; 170], vec![0x3D; 100], vec![0xA5; record_len]],
        }
    }

    /// Tenant `i` created as the vault creates one: a read of its entry (absent), then its
    /// manifest, its record and its entry inserted, each a single-key write.
    pub fn create(&self, i: u64) {
        let id = tenant_id(i);
        assert!(self.e.get(id).unwrap().is_none());
        let mut manifest_key = id.to_vec();
        manifest_key.extend_from_slice(&tenant_id(!i)[..16]);
        let mut record_key = manifest_key.clone();
        record_key.extend_from_slice(&tenant_id(i ^ 0x5555)[..]);
        self.m
            .insert(manifest_key, self.values[1].as_slice())
            .unwrap();
        self.r
            .insert(record_key, self.values[2].as_slice())
            .unwrap();
        self.e.insert(id, self.values[0].as_slice()).unwrap();
    }
}

/// A 32-byte record id for record `i` (what the vault's HMAC produces).
pub fn id(i: u64) -> [u8; 32] {
    let mut out = [0u8; 32];
    out[..8].copy_from_slice(&i.to_le_bytes());
    out[8..16].copy_from_slice(&(!i).to_le_bytes());
    out
}

/// The median time per call of `f`, over `samples` batches filling about `budget` in all.
pub fn per_op(budget: Duration, samples: usize, mut f: impl FnMut()) -> Duration {
    // Warm up, and size the batches.
    let start = Instant::now();
    let mut calls = 0u64;
    while start.elapsed() < budget / 10 || calls < 3 {
        f();
        calls += 1;
    }
    let per_call = start.elapsed() / u32::try_from(calls).unwrap_or(u32::MAX);
    let batch = ((budget.as_secs_f64() / samples as f64) / per_call.as_secs_f64().max(1e-9))
        .clamp(1.0, 1e9) as u64;
    let mut times: Vec<Duration> = (0..samples)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..batch {
                f();
            }
            t.elapsed() / u32::try_from(batch).unwrap_or(u32::MAX)
        })
        .collect();
    times.sort_unstable();
    times[times.len() / 2]
}

/// The median time per call of `f` over `samples` batches of exactly `calls` calls each (for
/// operations bound by `fdatasync`, whose cost varies too much to size batches by time).
pub fn per_op_n(samples: usize, calls: u32, mut f: impl FnMut()) -> Duration {
    f();
    let mut times: Vec<Duration> = (0..samples)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..calls {
                f();
            }
            t.elapsed() / calls
        })
        .collect();
    times.sort_unstable();
    times[times.len() / 2]
}

/// The median times per call of `floor` and of `f`, measured in alternation: `samples`
/// batches of `calls` calls each, a batch of `floor` then one of `f`, so that both see the
/// same state of a drifting resource (a disk's sync latency).
pub fn paired(
    samples: usize,
    calls: u32,
    mut floor: impl FnMut(),
    mut f: impl FnMut(),
) -> (Duration, Duration) {
    floor();
    f();
    let batch = |g: &mut dyn FnMut()| {
        let t = Instant::now();
        for _ in 0..calls {
            g();
        }
        t.elapsed() / calls
    };
    let (mut floors, mut times): (Vec<Duration>, Vec<Duration>) = (0..samples)
        .map(|_| (batch(&mut floor), batch(&mut f)))
        .unzip();
    floors.sort_unstable();
    times.sort_unstable();
    (floors[floors.len() / 2], times[times.len() / 2])
}

/// Wall time of one run of `f`, the median of `runs`.
pub fn once(runs: usize, mut f: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort_unstable();
    times[times.len() / 2]
}

/// Bytes of all files under `dir`.
pub fn disk_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let meta = entry.metadata().unwrap();
        if meta.is_dir() {
            total += disk_bytes(&entry.path());
        } else {
            total += meta.len();
        }
    }
    total
}

/// The process's peak resident set size, in bytes (Linux; 0 elsewhere).
pub fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// The process's current resident set size, in bytes (Linux; 0 elsewhere).
pub fn current_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

pub fn now() -> SystemTime {
    SystemTime::now()
}
