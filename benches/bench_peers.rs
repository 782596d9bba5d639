//! The peer benchmark's workload through tokenvault: 2,000 token records over 10 namespaces,
//! stored one `put` per record, then each read back once with `get`.
//!
//! ```text
//! cargo bench --bench bench_peers                     # what benches/peers/run.sh runs
//! cargo bench --bench bench_peers -- --records 500 --namespaces 5
//! ```
//!
//! Twice: in a vault with the default durability (every `put` is on stable storage when it
//! returns: sled flush plus `fdatasync`), and in a second vault with
//! `Durability::Buffered` (a `put` returns once applied in memory; the closing
//! `vault.flush()` is counted in the put phase). Each vault is fresh, in a temp dir, with a
//! raw key (no Argon2). The records are built before timing; each is a realistic token (1 KiB
//! access token, refresh token, scopes, expiry, identity, resource server), the same shape
//! as in `benches/peers/globus_bench.py`. Reads use the same open vault.
//!
//! Prints one JSON line with the numbers (never a token value). Build it in release mode:
//! a debug build measures the unoptimised code.

use std::time::{Duration, Instant, SystemTime};

use tokenvault::secrecy::{ExposeSecret, SecretBox, SecretString};
use tokenvault::{Durability, KeySource, Token, Vault, VaultOptions};

const ACCESS_TOKEN_LEN: usize = 1024;
const REFRESH_TOKEN_LEN: usize = 64;
const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// One record of the workload: where it goes and what it is.
struct Item {
    namespace: usize,
    key: String,
    token: Token,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let records = arg("--records", 2000)?;
    let namespaces = arg("--namespaces", 10)?.max(1);
    let (names, items) = workload(records, namespaces);

    let durable = run(Durability::Durable, &names, &items)?;
    let buffered = run(Durability::Buffered, &names, &items)?;
    println!(
        "{{\"peer\":\"tokenvault\",\"tokenvault\":\"{}\",\"records\":{records},\"namespaces\":{namespaces},\
         \"results\":{{\"durable\":{},\"buffered\":{}}}}}",
        env!("CARGO_PKG_VERSION"),
        durable.json(records, true),
        buffered.json(records, false),
    );
    Ok(())
}

/// What one run measured.
struct Measured {
    put: Duration,
    get: Duration,
    dir_bytes: u64,
}

impl Measured {
    fn json(&self, records: usize, fsync: bool) -> String {
        let rate = |d: Duration| records as f64 / d.as_secs_f64().max(f64::MIN_POSITIVE);
        format!(
            "{{\"store_s\":{:.6},\"get_s\":{:.6},\"stores_per_s\":{:.1},\"gets_per_s\":{:.1},\
             \"file_bytes\":{},\"fsync\":{fsync}}}",
            self.put.as_secs_f64(),
            self.get.as_secs_f64(),
            rate(self.put),
            rate(self.get),
            self.dir_bytes,
        )
    }
}

/// Creates a fresh vault with `durability`, puts every item, then gets every item once.
fn run(
    durability: Durability,
    names: &[String],
    items: &[Item],
) -> Result<Measured, Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("vault");
    let key = KeySource::raw_key(SecretBox::new(Box::new([7u8; 32])));
    let vault = if durability == Durability::Durable {
        Vault::create(&path, &key)? // the default durability
    } else {
        VaultOptions::new()
            .durability(durability)
            .create(&path, &key)?
    };
    // Namespace handles are cheap and made once, as an application would; each namespace is
    // created by its first put, inside the timed phase.
    let handles = names
        .iter()
        .map(|name| vault.namespace(name))
        .collect::<Result<Vec<_>, _>>()?;
    let handle = |item: &Item| {
        handles
            .get(item.namespace)
            .ok_or("namespace index out of range")
    };

    let start = Instant::now();
    for item in items {
        handle(item)?.put(&item.key, &item.token)?;
    }
    // A no-op wait for durable puts; for buffered ones, the cost of making them durable.
    vault.flush()?;
    let put = start.elapsed();

    let start = Instant::now();
    let mut found = 0usize;
    for item in items {
        let token: Option<Token> = handle(item)?.get(&item.key)?;
        // A cheap check that the right record came back (lengths and metadata, no values).
        if token.is_some_and(|t| {
            t.access_token().expose_secret().len() == ACCESS_TOKEN_LEN
                && t.resource_server() == Some(item.key.as_str())
        }) {
            found += 1;
        }
    }
    let get = start.elapsed();
    if found != items.len() {
        return Err(format!("read back {found} of {} records", items.len()).into());
    }

    vault.close()?;
    let dir_bytes = dir_size(&path)?;
    Ok(Measured {
        put,
        get,
        dir_bytes,
    })
}

/// The namespace names and the records, in store order: record i goes to namespace
/// i % namespaces (as in the Python and Node workloads). Deterministic.
fn workload(records: usize, namespaces: usize) -> (Vec<String>, Vec<Item>) {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let names: Vec<String> = (0..namespaces)
        .map(|_| format!("user/{}", rng.uuid()))
        .collect();
    let identities: Vec<String> = (0..namespaces).map(|_| rng.uuid()).collect();
    let expires_at = SystemTime::now() + Duration::from_secs(172_800);
    let items = (0..records)
        .map(|i| {
            let namespace = i % namespaces;
            let key = format!("rs-{:03}.api.example.org", i / namespaces);
            let scope = format!("urn:globus:auth:scope:{key}:all");
            let token = Token::new(SecretString::from(rng.text(ACCESS_TOKEN_LEN)))
                .with_refresh_token(SecretString::from(rng.text(REFRESH_TOKEN_LEN)))
                .with_token_type("Bearer")
                .with_expires_at(expires_at)
                .with_scopes(["openid", "profile", "email", scope.as_str()])
                .with_identity(identities.get(namespace).cloned().unwrap_or_default())
                .with_resource_server(key.clone());
            Item {
                namespace,
                key,
                token,
            }
        })
        .collect();
    (names, items)
}

/// The total size of the files under `path`.
fn dir_size(path: &std::path::Path) -> std::io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            dir_size(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

/// `--name N` from the command line, else `default`.
fn arg(name: &str, default: usize) -> Result<usize, Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == name) {
        Some(i) => Ok(args
            .get(i + 1)
            .ok_or_else(|| format!("{name} needs a value"))?
            .parse()?),
        None => Ok(default),
    }
}

/// A small deterministic generator for made-up token text (not for secrets).
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn text(&mut self, len: usize) -> String {
        (0..len)
            .map(|_| {
                let i = (self.next() % ALPHABET.len() as u64) as usize;
                ALPHABET.get(i).map_or('A', |&b| char::from(b))
            })
            .collect()
    }

    fn uuid(&mut self) -> String {
        let (a, b) = (self.next(), self.next());
        format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xffff,
            b >> 48,
            b & 0xffff_ffff_ffff
        )
    }
}
