//! The tamper matrix: damage to the header and keyslots, to records and manifests, and to
//! the files of a vault directory. Whatever the damage, opening and reading give an error
//! (or, for damage the format cannot see, the value that was written), never a wrong value
//! and never a panic; and records lost to damage are reported by `verify`, not silently
//! forgotten.
//!
//! - (a) every bit flip, truncation and extension of a real header, as found and with its
//!   checksum (and length) recomputed, opened with a raw key and with a passphrase;
//! - (b) records restored from an older write of another key, and every bit flip,
//!   truncation and extension of a namespace manifest;
//! - (c) random bit flips and zeroed pages in the files of a vault directory on sled, and
//!   the smallest such case (one bit in the middle of sled's log) as its own test.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use support::{fast, full_token, passphrase, raw_key, records, small_token, BackendExt};
use tokenvault::backend::{Backend, MemoryBackend, SledOptions};
use tokenvault::secrecy::ExposeSecret;
use tokenvault::{Damage, Error, KeySource, Namespace, Secret, Token, Vault, VaultOptions};

/// A deterministic xorshift generator: every trial is reproducible from its seed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Runs `f`, turning a panic into `None` (the default hook still prints it).
fn no_panic<T>(f: impl FnOnce() -> T) -> Option<T> {
    catch_unwind(AssertUnwindSafe(f)).ok()
}

// ---------------------------------------------------------------------------------------
// (a) The header and its keyslots.

/// Header layout offsets (docs/format.md section 3) for a header whose first slot is a
/// passphrase slot: magic 8, version 2, body_len 4, vault_id 16, seqid 8, next_slot_id 4,
/// slot_count 2, then slot 0: id 4, kind 1, params_len 2, argon2 version 4, m 4, t 4, p 4.
const BODY_LEN_AT: usize = 10;
const BODY_AT: usize = 14;
const SLOT0_M_AT: usize = BODY_AT + 16 + 8 + 4 + 2 + 4 + 1 + 2 + 4;
const TRAILER_LEN: usize = 64;

fn fix_checksum(header: &mut [u8]) {
    let n = header.len();
    let sum: [u8; 32] = Sha256::digest(&header[..n - 32]).into();
    header[n - 32..].copy_from_slice(&sum);
}

/// `header` with its body replaced by `body` (keeping the MAC bytes), the length field and
/// the checksum recomputed: what a deliberate edit of the body looks like.
fn with_body(header: &[u8], body: &[u8]) -> Vec<u8> {
    let mac = &header[header.len() - TRAILER_LEN..header.len() - 32];
    let mut out = header[..BODY_AT].to_vec();
    out[BODY_LEN_AT..BODY_AT].copy_from_slice(&u32::try_from(body.len()).unwrap().to_le_bytes());
    out.extend_from_slice(body);
    out.extend_from_slice(mac);
    out.extend_from_slice(&[0; 32]);
    fix_checksum(&mut out);
    out
}

#[derive(Default)]
struct HeaderTally {
    /// The vault's storage (everything but the header), given to every open.
    storage: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)>,
    opens: usize,
    damaged: usize,
    wrong_key: usize,
    unsupported: usize,
    over_limit: usize,
    failures: Vec<String>,
}

impl HeaderTally {
    /// Opens a backend holding only `header` with `key`: any error but damage, a wrong key
    /// or a newer version, any success and any panic is a failure.
    fn open(&mut self, what: &str, header: &[u8], key: &KeySource) {
        self.opens += 1;
        let storage = MemoryBackend::new();
        for (tree, key, value) in &self.storage {
            storage.put(tree, key, value.clone()).unwrap();
        }
        storage.overwrite_header(header).unwrap();
        match no_panic(|| Vault::open_with_backend(storage, key)) {
            None => self.failures.push(format!("{what}: panicked")),
            Some(Ok(_)) => self.failures.push(format!("{what}: opened")),
            Some(Err(Error::Damaged(Damage::Header { .. }))) => self.damaged += 1,
            Some(Err(Error::WrongKey)) => self.wrong_key += 1,
            Some(Err(Error::UnsupportedVersion { .. })) => self.unsupported += 1,
            // A slot edited to cost more than the caller accepts: refused before deriving.
            Some(Err(Error::KdfLimit { .. })) => self.over_limit += 1,
            Some(Err(other)) => self.failures.push(format!("{what}: {other:?}")),
        }
    }
}

#[test]
fn every_damage_to_the_header_is_refused() {
    let started = Instant::now();
    let storage = MemoryBackend::new();
    let pass = passphrase("header-matrix-passphrase");
    let raw = raw_key(0x5a);
    let vault = fast().create_with_backend(storage.clone(), &pass).unwrap();
    assert_eq!(vault.add_keyslot(&raw).unwrap(), 1);
    for name in ["tenant-a", "tenant-b"] {
        vault
            .namespace(name)
            .unwrap()
            .put("k", &small_token("v"))
            .unwrap();
    }
    vault.close().unwrap();
    let good = storage.read_header().unwrap().unwrap();
    let body = good[BODY_AT..good.len() - TRAILER_LEN].to_vec();
    let mut t = HeaderTally {
        storage: support::dump(&storage),
        ..HeaderTally::default()
    };
    // The pristine header opens with both keys.
    for key in [&pass, &raw] {
        let s = MemoryBackend::new();
        for (tree, k, value) in &t.storage {
            s.put(tree, k, value.clone()).unwrap();
        }
        s.overwrite_header(&good).unwrap();
        Vault::open_with_backend(s, key).unwrap().close().unwrap();
    }
    // A passphrase slot's Argon2 memory field with a high bit flipped stays within the
    // bounds (up to 4 GiB) and would run a slow derivation: skip those for the passphrase
    // (they fail the same way as the lower bits, as WrongKey, because the parameters are in
    // the wrapped key's associated data).
    let slow_kdf = |bit: usize| (SLOT0_M_AT * 8 + 14..(SLOT0_M_AT + 4) * 8).contains(&bit);

    // 1. Every bit flip, as found (the checksum catches it) and with the checksum
    //    recomputed (the parser's bounds, the keyslot AEAD, the MAC and the namespace entries
    //    must catch it). Flipping the checksum itself and recomputing it is the original.
    for bit in 0..good.len() * 8 {
        let mut bad = good.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        t.open(&format!("bit {bit}"), &bad, &raw);
        if bit % 8 == 0 {
            t.open(&format!("bit {bit} (passphrase)"), &bad, &pass);
        }
        if bit < (good.len() - 32) * 8 {
            fix_checksum(&mut bad);
            t.open(&format!("bit {bit}, checksum recomputed"), &bad, &raw);
            if !slow_kdf(bit) {
                t.open(
                    &format!("bit {bit}, checksum recomputed (passphrase)"),
                    &bad,
                    &pass,
                );
            }
        }
    }
    // 2. Every truncation: as found, with the checksum recomputed, and (cutting the body)
    //    with the length and the checksum recomputed.
    for len in 0..good.len() {
        let mut bad = good[..len].to_vec();
        t.open(&format!("truncated to {len}"), &bad, &raw);
        if len % 16 == 0 {
            t.open(&format!("truncated to {len} (passphrase)"), &bad, &pass);
        }
        if len >= 32 {
            fix_checksum(&mut bad);
            t.open(
                &format!("truncated to {len}, checksum recomputed"),
                &bad,
                &raw,
            );
        }
    }
    for cut in 0..body.len() {
        let bad = with_body(&good, &body[..cut]);
        t.open(&format!("body cut to {cut}, length recomputed"), &bad, &raw);
        if cut % 16 == 0 {
            t.open(&format!("body cut to {cut} (passphrase)"), &bad, &pass);
        }
    }
    // 3. Extensions by 1..=64 bytes (zeros and other bytes), after the file and at the end
    //    of the body with the length and the checksum recomputed.
    for extra in 1..=64usize {
        for fill in [0u8, 0xa5] {
            let mut longer = good.clone();
            longer.extend(std::iter::repeat_n(fill, extra));
            t.open(&format!("extended by {extra} x {fill:#x}"), &longer, &raw);
            fix_checksum(&mut longer);
            t.open(
                &format!("extended by {extra} x {fill:#x}, checksum recomputed"),
                &longer,
                &raw,
            );
            let mut body_longer = body.clone();
            body_longer.extend(std::iter::repeat_n(fill, extra));
            let bad = with_body(&good, &body_longer);
            t.open(&format!("body extended by {extra} x {fill:#x}"), &bad, &raw);
            t.open(
                &format!("body extended by {extra} x {fill:#x} (passphrase)"),
                &bad,
                &pass,
            );
        }
    }
    eprintln!(
        "tamper (header of {} bytes): {} opens in {:.1?}: {} Damaged, {} WrongKey, {} \
         UnsupportedVersion, {} KdfLimit, {} failures",
        good.len(),
        t.opens,
        started.elapsed(),
        t.damaged,
        t.wrong_key,
        t.unsupported,
        t.over_limit,
        t.failures.len()
    );
    for f in t.failures.iter().take(40) {
        eprintln!("  {f}");
    }
    assert!(t.failures.is_empty(), "{} failures", t.failures.len());
    assert!(t.opens > 12_000, "{} opens", t.opens);
}

// ---------------------------------------------------------------------------------------
// (b) Records and manifests.

/// The one record that appeared or changed in `storage` since `before`.
fn changed_record(
    storage: &MemoryBackend,
    before: &[(Vec<u8>, Vec<u8>, Vec<u8>)],
) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let mut fresh: Vec<_> = records(storage)
        .into_iter()
        .filter(|r| !before.contains(r))
        .collect();
    assert_eq!(fresh.len(), 1);
    fresh.remove(0)
}

#[test]
fn an_older_write_of_another_key_does_not_open() {
    let started = Instant::now();
    let storage = MemoryBackend::new();
    let vault = Vault::create_with_backend(storage.clone(), &raw_key(3)).unwrap();
    let mut cases = 0;
    for i in 0..60u32 {
        let ns = vault.namespace(&format!("ns-{}", i % 4)).unwrap();
        let (k1, k2) = (format!("first-{i}"), format!("second-{i}"));
        // k1 written twice, k2 once (in either order), possibly as another record type.
        let k1_as_secret = i % 3 == 1;
        let put_k1 = |n: u32| {
            if k1_as_secret {
                ns.put(&k1, &Secret::from_text(format!("secret-{n}").into()))
                    .unwrap()
            } else {
                ns.put(&k1, &full_token(n)).unwrap()
            }
        };
        if i % 2 == 0 {
            ns.put(&k2, &full_token(1_000 + i)).unwrap();
        }
        let before = records(&storage);
        let v1 = put_k1(i);
        let (tree, _, first_k1) = changed_record(&storage, &before);
        let before = records(&storage);
        let v2 = put_k1(i + 500);
        let (_, id_k1, second_k1) = changed_record(&storage, &before);
        assert!(v2 > v1);
        let before = records(&storage);
        if i % 2 == 1 {
            ns.put(&k2, &full_token(1_000 + i)).unwrap();
        } else {
            ns.put(&k2, &full_token(2_000 + i)).unwrap();
        }
        let (_, id_k2, k2_sealed) = changed_record(&storage, &before);

        // k1's first write under k2's id: refused, whichever type it is read as.
        storage.put(&tree, &id_k2, first_k1.clone()).unwrap();
        assert!(
            matches!(
                ns.get::<Token>(&k2),
                Err(Error::Damaged(Damage::Record { .. }))
            ),
            "case {i}: an older write of {k1} opened as {k2}"
        );
        assert!(matches!(
            ns.get::<Secret>(&k2),
            Err(Error::Damaged(Damage::Record { .. }))
        ));
        // k1's latest write there too.
        storage.put(&tree, &id_k2, second_k1.clone()).unwrap();
        assert!(matches!(
            ns.get::<Token>(&k2),
            Err(Error::Damaged(Damage::Record { .. }))
        ));
        // verify lists it, and keys() refuses to list it.
        let report = vault.verify(|_| {}).unwrap();
        let n = report
            .namespaces
            .iter()
            .find(|r| r.namespace == ns.name())
            .unwrap();
        assert_eq!(n.damaged.len(), 1, "case {i}: {report}");
        assert!(
            ns.keys().is_err(),
            "case {i}: keys() listed a misplaced record"
        );
        storage.put(&tree, &id_k2, k2_sealed).unwrap();
        cases += 3;

        // The documented limit (SECURITY.md section 7): k1's own older write put back in
        // place opens, as exactly the older value with the older version.
        storage.put(&tree, &id_k1, first_k1).unwrap();
        if k1_as_secret {
            let (s, v) = ns.get_versioned::<Secret>(&k1).unwrap().unwrap();
            assert_eq!(
                (s.expose_text(), v),
                (Some(format!("secret-{i}").as_str()), v1)
            );
        } else {
            let (t, v) = ns.get_versioned::<Token>(&k1).unwrap().unwrap();
            assert!(t.same_as(&full_token(i)) && v == v1, "case {i}");
        }
        storage.put(&tree, &id_k1, second_k1).unwrap();
        cases += 1;
    }
    assert!(vault.verify(|_| {}).unwrap().is_clean());

    // Across a namespace-key rotation: a write sealed under the destroyed key, put back
    // under its own id or another key's, does not open.
    let ns = vault.namespace("ns-0").unwrap();
    let before = records(&storage);
    ns.put("rotated", &full_token(9)).unwrap();
    let (tree, id, old_sealed) = changed_record(&storage, &before);
    vault.rotate_namespace_key("ns-0", |_| {}).unwrap();
    let other_id = records(&storage)
        .into_iter()
        .find(|(t, k, _)| t == &tree && k != &id && k[..48] == id[..48])
        .unwrap()
        .1;
    for target in [&id, &other_id] {
        let saved = storage.get(&tree, target).unwrap().unwrap();
        storage.put(&tree, target, old_sealed.clone()).unwrap();
        assert_eq!(
            vault.verify(|_| {}).unwrap().namespaces[0].damaged.len(),
            1,
            "a record under a destroyed key was not reported"
        );
        storage.put(&tree, target, saved).unwrap();
        cases += 1;
    }
    assert!(matches!(
        {
            storage.put(&tree, &id, old_sealed).unwrap();
            ns.get::<Token>("rotated")
        },
        Err(Error::Damaged(Damage::Record { .. }))
    ));
    eprintln!(
        "tamper (records moved between keys): {cases} cases in {:.1?}",
        started.elapsed()
    );
}

/// The stored manifest of the namespace incarnation `key` (`ns_id || incarnation`).
fn manifest_of(storage: &MemoryBackend, key: &[u8]) -> Vec<u8> {
    storage.get(b"m", key).unwrap().unwrap()
}

#[test]
fn every_damage_to_a_manifest_is_reported_and_stops_writes() {
    let started = Instant::now();
    let storage = MemoryBackend::new();
    let vault = Vault::create_with_backend(storage.clone(), &raw_key(4)).unwrap();
    let ns = vault.namespace("tenant").unwrap();
    for i in 0..2 {
        ns.put(&format!("k{i}"), &full_token(i)).unwrap();
    }
    let other = vault.namespace("other").unwrap();
    other.put("k0", &small_token("x")).unwrap();
    let (tree, list) = support::namespace_with(&storage, 2);
    let other_tree = support::manifests(&storage)
        .into_iter()
        .map(|(k, _)| k)
        .find(|k| k != &tree)
        .unwrap();
    let good = manifest_of(&storage, &tree);
    let a_record = list[1].1.clone();

    // Every case: a write is refused and verify reports the manifest. Every eighth case
    // (and every special one), in full: reads still work, no kind of write goes through,
    // nothing is written.
    let mut cases = 0usize;
    let mut check = |what: &str, bad: Option<Vec<u8>>, full: bool| {
        match bad {
            Some(bad) => storage.put(b"m", &tree, bad).unwrap(),
            None => storage.remove(b"m", &tree).unwrap(),
        }
        let before = full.then(|| records(&storage));
        let writes: Vec<Result<(), Error>> = if full {
            vec![
                ns.put("new", &small_token("n")).map(|_| ()),
                ns.put("k0", &small_token("n")).map(|_| ()),
                ns.remove("k1").map(|_| ()),
                ns.compare_and_swap("k0", None, &small_token("n"))
                    .map(|_| ()),
            ]
        } else {
            vec![ns.put("new", &small_token("n")).map(|_| ())]
        };
        for result in writes {
            assert!(
                matches!(result, Err(Error::Damaged(Damage::Namespace { .. }))),
                "{what}: a write over a damaged manifest gave {result:?}"
            );
        }
        if let Some(before) = before {
            assert_eq!(records(&storage), before, "{what}: a refused write wrote");
            // Reads do not consult the manifest: the records are intact.
            let t: Token = ns.get("k1").unwrap().unwrap();
            assert!(t.same_as(&full_token(1)), "{what}");
        }
        // verify reports the manifest, and nothing else.
        let report = vault.verify(|_| {}).unwrap();
        let n = report
            .namespaces
            .iter()
            .find(|r| r.namespace == "tenant")
            .unwrap();
        assert!(n.manifest_damaged.is_some(), "{what}: {report}");
        assert_eq!((n.ok, n.damaged.len()), (2, 0), "{what}: {report}");
        cases += 1;
    };
    for bit in 0..good.len() * 8 {
        let mut bad = good.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        check(&format!("manifest bit {bit}"), Some(bad), bit % 8 == 0);
    }
    for len in 0..good.len() {
        check(
            &format!("manifest truncated to {len}"),
            Some(good[..len].to_vec()),
            len % 8 == 0,
        );
    }
    for extra in 1..=64 {
        let mut longer = good.clone();
        longer.extend(std::iter::repeat_n(0u8, extra));
        check(&format!("manifest extended by {extra}"), Some(longer), true);
    }
    check(
        "the other namespace's manifest",
        Some(manifest_of(&storage, &other_tree)),
        true,
    );
    check("a record in the manifest's place", Some(a_record), true);
    check("the manifest deleted", None, true);
    storage.put(b"m", &tree, good).unwrap();
    assert!(vault.verify(|_| {}).unwrap().is_clean());
    ns.put("after", &small_token("ok")).unwrap();
    eprintln!(
        "tamper (manifest): {cases} damaged manifests in {:.1?}",
        started.elapsed()
    );
    assert!(cases > 2_500);
}

// ---------------------------------------------------------------------------------------
// (c) Random corruption of the files of a vault directory.

/// Every value a key was given, in order: the last one is what must read back.
#[derive(Clone, Debug, PartialEq)]
enum Value {
    Token(u32),
    Secret(u32),
    Removed,
}

type History = BTreeMap<(String, String), Vec<Value>>;

fn secret_value(n: u32) -> Secret {
    Secret::from_text(format!("secret-value-{n:08}-QPWX").into())
}

/// A vault in four namespaces of 16 keys: tokens and secrets, most written more than once,
/// some removed. Writes are numbered in the order they were made.
fn build_pristine(path: &Path) -> History {
    let vault = Vault::create(path, &raw_key(1)).unwrap();
    let mut history = History::new();
    let mut n = 0u32;
    let mut rng = Rng::new(7);
    for ns_index in 0..4 {
        let name = format!("tenant-{ns_index}");
        let ns = vault.namespace(&name).unwrap();
        for k in 0..16 {
            let key = format!("rs-{k}.example.org");
            let values = history.entry((name.clone(), key.clone())).or_default();
            for _ in 0..1 + rng.below(3) {
                n += 1;
                if k % 5 == 4 {
                    ns.put(&key, &secret_value(n)).unwrap();
                    values.push(Value::Secret(n));
                } else {
                    ns.put(&key, &full_token(n)).unwrap();
                    values.push(Value::Token(n));
                }
            }
            if k % 7 == 6 {
                assert!(ns.remove(&key).unwrap());
                values.push(Value::Removed);
            }
        }
    }
    assert!(vault.verify(|_| {}).unwrap().is_clean());
    vault.close().unwrap();
    history
}

/// One damage to a copy of the vault directory.
#[derive(Debug)]
enum Mutation {
    /// Flip these bits: (file, byte offset, bit).
    Flips(Vec<(String, usize, u8)>),
    /// Zero the 4 KiB page at this offset of this file.
    ZeroPage(String, usize),
}

type Files = Vec<(String, Vec<u8>)>;

/// One trial in eight zeroes a page of sled's log, one in eight flips bits of the header
/// file only, the others flip 1..=16 bits anywhere in sled's files (weighted by size).
fn choose_mutation(rng: &mut Rng, files: &Files) -> Mutation {
    let header = files
        .iter()
        .position(|(p, _)| p == "tokenvault.header")
        .unwrap();
    let sled: Vec<usize> = (0..files.len()).filter(|&i| i != header).collect();
    let sled_total: usize = sled.iter().map(|&i| files[i].1.len()).sum();
    let pick_sled_byte = |rng: &mut Rng| {
        let mut at = rng.below(sled_total);
        for &i in &sled {
            if at < files[i].1.len() {
                return (i, at);
            }
            at -= files[i].1.len();
        }
        unreachable!()
    };
    let flips = 1 + rng.below(16);
    match rng.below(8) {
        0 => {
            let db = files.iter().position(|(p, _)| p == "data/db").unwrap();
            let pages = files[db].1.len().div_ceil(4096);
            Mutation::ZeroPage(files[db].0.clone(), rng.below(pages) * 4096)
        }
        1 => Mutation::Flips(
            (0..flips)
                .map(|_| {
                    let at = rng.below(files[header].1.len());
                    (files[header].0.clone(), at, rng.below(8) as u8)
                })
                .collect(),
        ),
        _ => Mutation::Flips(
            (0..flips)
                .map(|_| {
                    let (f, at) = pick_sled_byte(rng);
                    (files[f].0.clone(), at, rng.below(8) as u8)
                })
                .collect(),
        ),
    }
}

fn apply_mutation(mutation: &Mutation, files: &Files, target: &Path) {
    let mut changed: BTreeMap<&str, Vec<u8>> = BTreeMap::new();
    let original =
        |name: &str| -> Vec<u8> { files.iter().find(|(p, _)| p == name).unwrap().1.clone() };
    match mutation {
        Mutation::Flips(flips) => {
            for (file, at, bit) in flips {
                let bytes = changed.entry(file).or_insert_with(|| original(file));
                bytes[*at] ^= 1 << bit;
            }
        }
        Mutation::ZeroPage(file, at) => {
            let bytes = changed.entry(file).or_insert_with(|| original(file));
            let end = (at + 4096).min(bytes.len());
            bytes[*at..end].fill(0);
        }
    }
    for (file, bytes) in changed {
        fs::write(target.join(file), bytes).unwrap();
    }
}

/// What one trial saw.
#[derive(Debug, Default)]
struct Trial {
    opened: bool,
    open_error: Option<String>,
    panicked: bool,
    verify_panicked: bool,
    verify_error: Option<String>,
    /// Records that read back as absent, and as an error.
    absent: usize,
    damaged: usize,
    /// Of those, how many `verify` did not account for.
    unreported: usize,
    /// Reads that returned an older value of the same key (a rollback).
    stale: Vec<String>,
    /// Reads that returned a value for a key whose last write removed it.
    resurrected: Vec<String>,
    /// Reads that returned a value never written to that key.
    foreign: Vec<String>,
    /// Keys listed that were never written.
    phantom_keys: Vec<String>,
    /// For diagnosis: the lost records and what reading them gave.
    lost_keys: Vec<String>,
    report: String,
}

impl Trial {
    fn broke_a_property(&self) -> bool {
        self.unreported > 0
            || !self.stale.is_empty()
            || !self.resurrected.is_empty()
            || !self.foreign.is_empty()
            || !self.phantom_keys.is_empty()
            || self.verify_panicked
    }
}

/// Reads `key` as the type it was written with; a value that is not exactly one of the
/// values written (every field compared) reads as number `u32::MAX`.
fn read_back(ns: &Namespace, key: &str, kind: &Value) -> Result<Option<Value>, Error> {
    Ok(match kind {
        Value::Secret(_) => ns.get::<Secret>(key)?.map(|s| {
            s.expose_text()
                .and_then(|t| t.strip_prefix("secret-value-"))
                .and_then(|t| t.strip_suffix("-QPWX"))
                .and_then(|n| n.parse().ok())
                .map_or(Value::Secret(u32::MAX), Value::Secret)
        }),
        _ => ns.get::<Token>(key)?.map(|t| {
            let n = t
                .access_token()
                .expose_secret()
                .strip_prefix("access-token-")
                .and_then(|t| t.strip_suffix("-ZQXJ"))
                .and_then(|n| n.parse().ok())
                .unwrap_or(u32::MAX);
            if t.same_as(&full_token(n)) {
                Value::Token(n)
            } else {
                Value::Token(u32::MAX)
            }
        }),
    })
}

fn check_opened(vault: &Vault, history: &History, trial: &mut Trial) {
    let mut lost_by_ns: BTreeMap<String, usize> = BTreeMap::new();
    let mut written_keys: BTreeMap<&str, HashSet<&str>> = BTreeMap::new();
    for ((name, key), values) in history {
        written_keys.entry(name).or_default().insert(key);
        let last = values.last().unwrap();
        let ns = vault.namespace(name).unwrap();
        let kind = values.iter().find(|v| **v != Value::Removed).unwrap();
        let describe = |got: &Value| format!("{name}/{key}: read {got:?}, history {values:?}");
        match read_back(&ns, key, kind) {
            Ok(Some(got)) if &got == last => {}
            Ok(Some(got)) if !values.contains(&got) => trial.foreign.push(describe(&got)),
            Ok(Some(got)) if *last == Value::Removed => trial.resurrected.push(describe(&got)),
            Ok(Some(got)) => trial.stale.push(describe(&got)),
            Ok(None) | Err(_) if *last == Value::Removed => {}
            other => {
                if other.is_ok() {
                    trial.absent += 1;
                } else {
                    trial.damaged += 1;
                }
                *lost_by_ns.entry(name.clone()).or_default() += 1;
                trial
                    .lost_keys
                    .push(format!("{name}/{key} (history {values:?}): {other:?}"));
            }
        }
    }
    for (name, written) in &written_keys {
        if let Ok(keys) = vault.namespace(name).unwrap().keys() {
            for key in keys {
                if !written.contains(key.as_str()) {
                    trial.phantom_keys.push(format!("{name}/{key}"));
                }
            }
        }
    }
    match no_panic(|| vault.verify(|_| {})) {
        None => trial.verify_panicked = true,
        Some(Err(e)) => trial.verify_error = Some(e.to_string()),
        Some(Ok(report)) => {
            trial.report = report.to_string();
            for (name, lost) in &lost_by_ns {
                let reported = report
                    .namespaces
                    .iter()
                    .find(|n| &n.namespace == name)
                    .map_or(0, |n| {
                        if n.manifest_damaged.is_some() {
                            usize::MAX
                        } else {
                            usize::try_from(n.missing).unwrap() + n.damaged.len()
                        }
                    });
                trial.unreported += lost.saturating_sub(reported);
            }
        }
    }
}

fn run_trial(path: &Path, history: &History) -> Trial {
    no_panic(|| {
        let mut trial = Trial::default();
        match VaultOptions::new()
            .sled(SledOptions::new().lock_timeout(Duration::ZERO))
            .open(path, &raw_key(1))
        {
            Ok(vault) => {
                trial.opened = true;
                check_opened(&vault, history, &mut trial);
                let _ = vault.close();
            }
            Err(e) => trial.open_error = Some(format!("{e:?}")),
        }
        trial
    })
    .unwrap_or_else(|| Trial {
        panicked: true,
        ..Trial::default()
    })
}

#[derive(Default)]
struct Totals {
    trials: usize,
    flips: usize,
    zeroed_pages: usize,
    opened: usize,
    open_errors: usize,
    panics: usize,
    lost: usize,
    unreported: usize,
    verify_errors: usize,
    stale: usize,
    resurrected: usize,
    foreign: usize,
    phantom_keys: usize,
    error_kinds: BTreeMap<String, usize>,
}

impl Totals {
    fn add(&mut self, trial: &Trial) {
        self.trials += 1;
        self.opened += usize::from(trial.opened);
        self.panics += usize::from(trial.panicked);
        self.verify_errors += usize::from(trial.verify_error.is_some());
        if let Some(e) = &trial.open_error {
            self.open_errors += 1;
            let kind: String = e.chars().take(70).collect();
            *self.error_kinds.entry(kind).or_default() += 1;
        }
        self.lost += trial.absent + trial.damaged;
        self.unreported += trial.unreported;
        self.stale += trial.stale.len();
        self.resurrected += trial.resurrected.len();
        self.foreign += trial.foreign.len();
        self.phantom_keys += trial.phantom_keys.len();
    }
}

const TRIALS: u64 = 320;

/// `TAMPER_SEED=n` runs only trial `n` and prints everything about it. (The vault's bytes
/// differ from run to run, random keys and nonces, so a seed reproduces the kind and the
/// rough place of the damage, not the exact bytes hit.)
#[test]
fn random_damage_to_a_vault_directory() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let pristine = dir.path().join("pristine");
    let history = build_pristine(&pristine);
    let files: Files = support::all_files(&pristine)
        .into_iter()
        .map(|p| {
            let bytes = fs::read(&p).unwrap();
            let name = p
                .strip_prefix(&pristine)
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned();
            (name, bytes)
        })
        .filter(|(_, b)| !b.is_empty())
        .collect();
    let only: Option<u64> = std::env::var("TAMPER_SEED")
        .ok()
        .and_then(|s| s.parse().ok());
    let seeds: Vec<u64> = only.map_or_else(|| (0..TRIALS).collect(), |seed| vec![seed]);
    let mut totals = Totals::default();
    let mut failures = Vec::new();
    for &seed in &seeds {
        let mut rng = Rng::new(seed + 1000);
        let mutation = choose_mutation(&mut rng, &files);
        match &mutation {
            Mutation::Flips(f) => totals.flips += f.len(),
            Mutation::ZeroPage(..) => totals.zeroed_pages += 1,
        }
        let target = dir.path().join(format!("trial-{seed}"));
        support::copy_dir(&pristine, &target);
        apply_mutation(&mutation, &files, &target);
        let trial = run_trial(&target, &history);
        let _ = fs::remove_dir_all(&target);
        if only.is_some() {
            eprintln!("seed {seed}: {mutation:?}\n{trial:#?}\n{}", trial.report);
        }
        totals.add(&trial);
        if trial.broke_a_property() {
            failures.push(format!(
                "seed {seed}: {mutation:?}: {} absent + {} damaged, {} not reported by \
                 verify; {} stale, {} resurrected, {} foreign, {} phantom keys{}",
                trial.absent,
                trial.damaged,
                trial.unreported,
                trial.stale.len(),
                trial.resurrected.len(),
                trial.foreign.len(),
                trial.phantom_keys.len(),
                if trial.verify_panicked {
                    "; verify panicked"
                } else {
                    ""
                },
            ));
        }
    }
    let t = &totals;
    eprintln!(
        "tamper (directory): {} trials ({} bit flips, {} zeroed 4 KiB pages) in {:.1?}\n  \
         opened ok {}, open error {}, panic caught {}\n  \
         records reported lost {}, lost records NOT reported {}, verify errors {}\n  \
         wrong values: {} stale (an older value of the key), {} resurrected (a removed \
         key), {} foreign (never written to the key); phantom keys {}",
        t.trials,
        t.flips,
        t.zeroed_pages,
        started.elapsed(),
        t.opened,
        t.open_errors,
        t.panics,
        t.lost - t.unreported,
        t.unreported,
        t.verify_errors,
        t.stale,
        t.resurrected,
        t.foreign,
        t.phantom_keys,
    );
    for (kind, n) in &t.error_kinds {
        eprintln!("  open error {n:4} x {kind}");
    }
    for f in failures.iter().take(30) {
        eprintln!("  {f}");
    }
    assert_eq!(t.foreign, 0, "a value never written to its key was read");
    assert!(
        failures.is_empty(),
        "{} of {} trials broke a property (rerun one with TAMPER_SEED=n)",
        failures.len(),
        t.trials
    );
}

/// The smallest case of what the random trials find: one bit flipped in the middle of sled's
/// log of a cleanly closed vault. The vault must not open as a clean, smaller vault.
#[test]
fn one_flipped_bit_in_the_middle_of_sleds_log_is_not_silent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v");
    let history = build_pristine(&path);
    let live = history
        .values()
        .filter(|v| v.last() != Some(&Value::Removed))
        .count();
    let db = path.join("data").join("db");
    let mut bytes = fs::read(&db).unwrap();
    let at = bytes.len() * 3 / 10;
    bytes[at] ^= 0x10;
    fs::write(&db, &bytes).unwrap();
    let Ok(vault) = Vault::open(&path, &raw_key(1)) else {
        return; // refusing to open is an acceptable answer
    };
    let mut trial = Trial::default();
    check_opened(&vault, &history, &mut trial);
    let report = vault.verify(|_| {}).unwrap();
    vault.close().unwrap();
    let after = fs::read(&db).unwrap();
    let rewritten = bytes
        .iter()
        .zip(after.iter())
        .filter(|(a, b)| a != b)
        .count();
    eprintln!(
        "one bit flipped at byte {at} of {}: {} of {live} live records lost ({} stale, {} \
         resurrected), verify clean: {}; opening rewrote {rewritten} bytes of sled's log\n{report}",
        bytes.len(),
        trial.absent + trial.damaged,
        trial.stale.len(),
        trial.resurrected.len(),
        report.is_clean(),
    );
    assert!(
        !trial.broke_a_property(),
        "the vault opened as a clean, older vault: {} records silently lost",
        trial.unreported
    );
}

/// Regression: a record replaced by another namespace's record whose (unauthenticated)
/// generation is above this namespace's manifest read as a rolled-back manifest, and the
/// namespace refused the very writes that repair it ("remove it and store it again").
#[test]
fn a_foreign_record_with_a_higher_generation_can_be_removed_and_written_over() {
    let storage = MemoryBackend::new();
    let vault = fast()
        .create_with_backend(storage.clone(), &raw_key(1))
        .unwrap();
    let (a, b) = (vault.namespace("a").unwrap(), vault.namespace("b").unwrap());
    let va = a.put("api", &small_token("a")).unwrap();
    let vb = b.put("api", &small_token("b")).unwrap();
    // Each namespace starts its generations at a random point: copy the record of the one
    // that is ahead into the other, whose manifest is then below the copy's generation.
    let (behind, ahead) = if va < vb { (&a, &b) } else { (&b, &a) };
    let by_ns = support::records_by_namespace(&storage);
    let record_of = |ns: &Namespace| {
        let version = ns.get_versioned::<Token>("api").unwrap().unwrap().1;
        by_ns
            .iter()
            .flat_map(|(_, list)| list)
            .find(|(_, value)| {
                value[..]
                    .windows(8)
                    .any(|w| w == version.as_u64().to_le_bytes())
            })
            .cloned()
            .unwrap()
    };
    let (behind_key, _) = record_of(behind);
    let (_, ahead_value) = record_of(ahead);
    storage.put(b"r", &behind_key, ahead_value).unwrap();
    assert!(matches!(
        behind.get::<Token>("api"),
        Err(Error::Damaged(Damage::Record { .. }))
    ));
    assert!(
        behind.remove("api").unwrap(),
        "a damaged record can be removed"
    );
    behind.put("api", &small_token("again")).unwrap();
    let token: Token = behind.get("api").unwrap().unwrap();
    assert_eq!(token.access_token().expose_secret(), "again");
    // And written over directly, the same way.
    storage.put(b"r", &behind_key, record_of(ahead).1).unwrap();
    behind.put("api", &small_token("over")).unwrap();
    let token: Token = behind.get("api").unwrap().unwrap();
    assert_eq!(token.access_token().expose_secret(), "over");
    let report = vault.verify(|_| {}).unwrap();
    assert!(report.is_clean(), "{report}");
}
