//! Criterion benchmarks of the vault's operations and of their floors (the irreducible parts
//! measured alone). `cargo bench --bench vault`; the one-table report with ratios is
//! `cargo bench --bench bench_report` (see BENCHMARKS.md).

#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use tokenvault::oauth::{Authorizer, RefreshError};
use tokenvault::test_hooks::bench::RecordParts;
use tokenvault::{Durability, Token, VaultOptions};
use workload::{bench_dir, filled_vault, id, raw_key, token, RawSled, KEY, NS};

fn floor(c: &mut Criterion) {
    let parts = RecordParts::new();
    let t = token(1);
    let rid = parts.record_id(NS, KEY);
    let body = parts.encode(KEY, &t).unwrap();
    let sealed = parts.seal(NS, &rid, body.clone()).unwrap();
    let (plain, range) = parts.open(NS, &rid, &sealed).unwrap();
    let mut g = c.benchmark_group("floor");
    g.bench_function("hmac_names", |b| {
        b.iter(|| parts.record_id(black_box(NS), black_box(KEY)))
    });
    g.bench_function("encode", |b| {
        b.iter(|| parts.encode(KEY, black_box(&t)).unwrap())
    });
    g.bench_function("seal", |b| {
        b.iter(|| parts.seal(NS, &rid, body.clone()).unwrap())
    });
    g.bench_function("open", |b| {
        b.iter(|| parts.open(NS, &rid, black_box(&sealed)).unwrap())
    });
    g.bench_function("decode", |b| {
        b.iter(|| parts.decode(black_box(&plain[range.clone()])).unwrap())
    });
    let dir = bench_dir("criterion-floor");
    let raw = RawSled::create(dir.path(), 1000, sealed.len());
    let mut i = 0u64;
    g.bench_function("sled_get", |b| {
        b.iter(|| {
            i = (i + 1) % 1000;
            raw.tree.get(id(i)).unwrap()
        })
    });
    // sled skips an insert of the value a key already holds: write `n` goes to key
    // `n % 1000` with the value that key did not hold before.
    let mut other = sealed.clone();
    other[40] ^= 1;
    let mut n = 0u64;
    let mut next = || {
        n += 1;
        let value = if (n / 1000 + n).is_multiple_of(2) {
            sealed.as_slice()
        } else {
            other.as_slice()
        };
        (id(n % 1000), value)
    };
    g.bench_function("sled_insert", |b| {
        b.iter(|| {
            let (k, v) = next();
            raw.tree.insert(k, v).unwrap()
        })
    });
    g.sample_size(20);
    g.bench_function("sled_insert_durable", |b| {
        b.iter(|| {
            let (k, v) = next();
            raw.tree.insert(k, v).unwrap();
            raw.durable_flush();
        })
    });
    g.finish();
}

fn vault(c: &mut Criterion) {
    let dir = bench_dir("criterion-vault");
    let path = dir.path().join("v");
    let t = token(1);
    let v = filled_vault(&path, &raw_key(), 1000, 10);
    let ns = v.namespace(NS).unwrap();
    let mut g = c.benchmark_group("vault");
    g.bench_function("get", |b| b.iter(|| ns.get::<Token>(KEY).unwrap().unwrap()));
    g.sample_size(20);
    g.bench_function("put_durable", |b| b.iter(|| ns.put(KEY, &t).unwrap()));
    let mut version = ns.get_versioned::<Token>(KEY).unwrap().unwrap().1;
    g.bench_function("compare_and_swap_durable", |b| {
        b.iter(|| {
            version = ns
                .compare_and_swap(KEY, Some(version), &t)
                .unwrap()
                .unwrap();
        })
    });
    drop(ns);
    v.close().unwrap();
    let v = VaultOptions::new()
        .durability(Durability::Buffered)
        .open(&path, &raw_key())
        .unwrap();
    let ns = v.namespace(NS).unwrap();
    g.sample_size(100);
    g.bench_function("put_buffered", |b| b.iter(|| ns.put(KEY, &t).unwrap()));
    // A new record: an atomic batch with the manifest, then sled's flush.
    let mut created = 0u64;
    g.sample_size(20);
    g.bench_function("put_new_record_buffered", |b| {
        b.iter(|| {
            created += 1;
            ns.put(&format!("new-{created}"), &t).unwrap()
        })
    });
    g.sample_size(100);
    let auth = Authorizer::builder(
        &ns,
        KEY,
        |_: Option<&Token>| -> Result<Token, RefreshError> {
            Err(RefreshError::transient("unused"))
        },
    )
    .build()
    .unwrap();
    auth.token().unwrap();
    g.bench_function("authorizer_cache_hit", |b| b.iter(|| auth.token().unwrap()));
    g.finish();
}

criterion_group!(benches, floor, vault);
criterion_main!(benches);
