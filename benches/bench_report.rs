//! The benchmark report: every vault operation against its floor (the irreducible parts,
//! measured by the same harness in the same run), printed as one table.
//!
//! ```text
//! cargo bench --bench bench_report              # the table (a few minutes)
//! cargo bench --bench bench_report -- --quick   # shorter measurements
//! cargo bench --bench bench_report -- --scale   # 1k / 100k / 1M records (long)
//! cargo bench --bench bench_report -- --scale --tenants  # 1k / 100k / 1M namespaces (long)
//! ```
//!
//! The floors: a vault get is an HMAC of the names, a storage get, an AEAD open and a bincode
//! decode; a put is the HMAC, an encode, a seal and a storage insert (plus sled's flush and an
//! `fdatasync` when durable); a compare-and-swap is the same with sled's compare-and-swap.
//! Storage is raw sled with the vault's settings, holding as many records of the same size.
//! `benches/vault.rs` measures the same operations with criterion.

#![allow(clippy::unwrap_used, clippy::cast_precision_loss)]

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use tokenvault::backend::SledOptions;
use tokenvault::import::Import;
use tokenvault::oauth::{Authorizer, RefreshError};
use tokenvault::secrecy::SecretString;
use tokenvault::store::TokenStore;
use tokenvault::test_hooks::bench::RecordParts;
use tokenvault::{Durability, KdfParams, KeySource, Token, Vault, VaultOptions};
use workload::{
    bench_dir, filled_vault, id, once, paired, per_op, per_op_n, raw_key, token, RawSled,
    RawTenants, KEY, NS,
};

struct Row {
    name: String,
    vault: Duration,
    floor: Option<Duration>,
    goal: Option<f64>,
    note: String,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    if args.iter().any(|a| a == "--scale") {
        // `--cache-mib N`: sled's page cache for the vault and the raw-sled floor.
        let cache_mib: Option<u64> = args
            .iter()
            .position(|a| a == "--cache-mib")
            .and_then(|i| args.get(i + 1))
            .and_then(|n| n.parse().ok());
        if args.iter().any(|a| a == "--tenants") {
            return tenants_scale(quick);
        }
        return scale(quick, cache_mib);
    }
    let budget = if quick {
        Duration::from_millis(300)
    } else {
        Duration::from_secs(2)
    };
    let samples = 7;
    // Durable operations: a fixed number of calls per sample.
    let durable_calls: u32 = if quick { 40 } else { 200 };
    let mut rows = Vec::new();
    let parts = RecordParts::new();
    let t = token(1);
    let rid = parts.record_id(NS, KEY);
    let body = parts.encode(KEY, &t)?;
    let sealed = parts.seal(NS, &rid, body.clone())?;
    println!(
        "record: {} bytes stored ({} bytes of access token)",
        sealed.len(),
        1024
    );

    // ---- the floor's parts ----
    let hmac = per_op(budget, samples, || {
        black_box(parts.record_id(black_box(NS), black_box(KEY)));
    });
    let encode = per_op(budget, samples, || {
        black_box(parts.encode(KEY, black_box(&t)).unwrap());
    });
    let copy = per_op(budget, samples, || {
        black_box(body.clone());
    });
    let seal = per_op(budget, samples, || {
        black_box(parts.seal(NS, &rid, body.clone()).unwrap());
    })
    .saturating_sub(copy);
    let open = per_op(budget, samples, || {
        black_box(parts.open(NS, &rid, black_box(&sealed)).unwrap());
    });
    let (plain, range) = parts.open(NS, &rid, &sealed).unwrap();
    let decode = per_op(budget, samples, || {
        black_box(parts.decode(black_box(&plain[range.clone()])).unwrap());
    });
    let dir = bench_dir("floor");
    let records = 1000;
    let raw = RawSled::create(dir.path(), records, sealed.len());
    // sled skips an insert whose value equals the stored one (no log write at all), and a
    // vault write always stores new bytes (a fresh nonce): the floors alternate between two
    // values that differ in one byte, so that every insert is a real write.
    let mut other = sealed.clone();
    other[40] ^= 1;
    let mut i = 0u64;
    let sled_get = per_op(budget, samples, || {
        i = (i + 1) % records;
        black_box(raw.tree.get(id(i)).unwrap());
    });
    // Write `n` goes to key `n % records`, with the value the key did not hold before.
    let mut n = 0u64;
    let mut next = || {
        n += 1;
        let value = if (n / records + n).is_multiple_of(2) {
            sealed.as_slice()
        } else {
            other.as_slice()
        };
        (id(n % records), value)
    };
    let sled_insert = per_op(budget, samples, || {
        let (k, v) = next();
        raw.tree.insert(k, v).unwrap();
    });
    raw.tree.insert(id(records + 1), sealed.as_slice())?;
    let mut current = sealed.clone();
    let seal_bytes = sealed.len() as f64;
    println!(
        "AEAD: seal {:.2} ns/byte, open {:.2} ns/byte ({} bytes)",
        seal.as_nanos() as f64 / seal_bytes,
        open.as_nanos() as f64 / seal_bytes,
        sealed.len()
    );

    // ---- vault operations, on a vault of 1,000 records over 10 namespaces ----
    let vdir = bench_dir("vault");
    let vpath = vdir.path().join("v");
    let vault = filled_vault(&vpath, &raw_key(), records, 10);
    let ns = vault.namespace(NS)?;
    let get = per_op(budget, samples, || {
        black_box(ns.get::<Token>(KEY).unwrap().unwrap());
    });
    rows.push(Row {
        name: "vault get".into(),
        vault: get,
        floor: Some(hmac + sled_get + open + decode),
        goal: Some(1.3),
        note: "floor: HMAC + sled get + open + decode".into(),
    });
    // A durable write's time is mostly the disk's, which drifts during a run (the same
    // fdatasync takes 50 µs or 250 µs minutes apart): each durable floor is measured in
    // alternation with its vault operation, sample by sample, so that both see the same disk.
    let (sled_durable, put_durable) = paired(
        samples,
        durable_calls,
        || {
            let (k, v) = next();
            raw.tree.insert(k, v).unwrap();
            raw.durable_flush();
        },
        || {
            ns.put(KEY, &t).unwrap();
        },
    );
    let mut v = ns.get_versioned::<Token>(KEY)?.unwrap().1;
    let (sled_cas_durable, cas) = paired(
        samples,
        durable_calls,
        || {
            let next = if current == sealed { &other } else { &sealed };
            raw.tree
                .compare_and_swap(
                    id(records + 1),
                    Some(current.as_slice()),
                    Some(next.as_slice()),
                )
                .unwrap()
                .unwrap();
            current = next.clone();
            raw.durable_flush();
        },
        || {
            v = ns.compare_and_swap(KEY, Some(v), &t).unwrap().unwrap();
        },
    );
    drop(raw);
    let mut floor_rows = Vec::new();
    for (name, d) in [
        ("floor part: HMAC-SHA-256 of the names", hmac),
        ("floor part: bincode encode (framed, padded)", encode),
        ("floor part: XChaCha20-Poly1305 seal", seal),
        ("floor part: XChaCha20-Poly1305 open", open),
        ("floor part: bincode decode", decode),
        ("floor part: sled get", sled_get),
        ("floor part: sled insert", sled_insert),
        ("floor part: sled insert + flush + fdatasync", sled_durable),
        ("floor part: sled CAS + flush + fdatasync", sled_cas_durable),
    ] {
        floor_rows.push(Row {
            name: name.into(),
            vault: d,
            floor: None,
            goal: None,
            note: String::new(),
        });
    }
    // The floor's parts head the table.
    rows.splice(0..0, floor_rows);
    rows.push(Row {
        name: "vault put, durable".into(),
        vault: put_durable,
        floor: Some(hmac + encode + seal + sled_durable),
        goal: Some(1.1),
        note: "floor: HMAC + encode + seal + sled insert + flush + fdatasync, measured in \
               alternation"
            .into(),
    });
    rows.push(Row {
        name: "vault compare-and-swap, durable".into(),
        vault: cas,
        floor: Some(hmac + encode + seal + sled_cas_durable),
        goal: None,
        note: "floor: HMAC + encode + seal + sled CAS + flush + fdatasync, measured in \
               alternation"
            .into(),
    });
    vault.close()?;
    let buffered = VaultOptions::new()
        .durability(Durability::Buffered)
        .open(&vpath, &raw_key())?;
    let bns = buffered.namespace(NS)?;
    // Buffered writes are bound by how fast sled's log reaches the disk once its buffers
    // fill, so both sides do the same sustained work: N puts of distinct keys, then one
    // durable flush, measured as a whole.
    let n_buf: u64 = if quick { 2_000 } else { 20_000 };
    let mut round = 0u64;
    let put_buffered = once(5, || {
        round += 1;
        for k in 0..n_buf {
            bns.put(&format!("buf-{}", k % 1000), &t).unwrap();
        }
        buffered.flush().unwrap();
    }) / u32::try_from(n_buf).unwrap_or(1);
    let fdir = bench_dir("floor-buffered");
    let fraw = RawSled::create(fdir.path(), 1000, sealed.len());
    let put_buffered_floor = once(5, || {
        for k in 0..n_buf {
            let r = parts.record_id(NS, &format!("buf-{}", k % 1000));
            let b = parts.encode(KEY, &t).unwrap();
            let s = parts.seal(NS, &r, b).unwrap();
            fraw.tree.insert(id(k % 1000), s).unwrap();
        }
        fraw.durable_flush();
    }) / u32::try_from(n_buf).unwrap_or(1);
    // Where the time goes: sled's atomic batches (a transaction, as the vault's writes use,
    // or `apply_batch`) against plain inserts of the same two values (record and manifest).
    let manifests = [vec![0x5Au8; 300], vec![0xA5u8; 300]];
    let values = [sealed.as_slice(), other.as_slice()];
    // New values every time (sled skips writes of the stored value): a key written at `k`
    // and again at `k + 1000` gets the other value.
    let pick = |k: u64| ((k / 1000 + k) % 2) as usize;
    let sled_two_inserts = once(5, || {
        for k in 0..n_buf {
            fraw.tree.insert(id(k % 1000), values[pick(k)]).unwrap();
            fraw.tree
                .insert([0u8], manifests[pick(k)].as_slice())
                .unwrap();
        }
        fraw.durable_flush();
    }) / u32::try_from(n_buf).unwrap_or(1);
    let sled_transaction = once(5, || {
        for k in 0..n_buf {
            let trees = [fraw.tree.clone()];
            let r: Result<(), sled::transaction::TransactionError<()>> =
                sled::Transactional::transaction(trees.as_slice(), |tx| {
                    black_box(tx[0].get(id(k % 1000))?);
                    black_box(tx[0].get([0u8])?);
                    tx[0].insert(&id(k % 1000), values[pick(k)])?;
                    tx[0].insert(&[0u8], manifests[pick(k)].as_slice())?;
                    Ok(())
                });
            r.unwrap();
            // As the vault's sled backend does after every atomic batch: without this
            // flush, a sustained run of transactions deadlocks sled 0.34.7 (see
            // BENCHMARKS.md, "The write stall", and `benches/sled_stress.rs`).
            fraw.db.flush().unwrap();
        }
        fraw.durable_flush();
    }) / u32::try_from(n_buf).unwrap_or(1);
    drop(fraw);
    rows.push(Row {
        name: "sled: 2 plain inserts (sustained)".into(),
        vault: sled_two_inserts,
        floor: None,
        goal: None,
        note: "record + manifest sized values, no atomicity".into(),
    });
    rows.push(Row {
        name: "sled: transaction of 2 writes + flush (sustained)".into(),
        vault: sled_transaction,
        floor: None,
        goal: None,
        note: "a removal or a multi-record write: an atomic batch with the manifest, then \
               sled's flush"
            .into(),
    });
    rows.push(Row {
        name: "vault put, buffered (sustained)".into(),
        vault: put_buffered,
        floor: Some(put_buffered_floor),
        goal: Some(1.5),
        note: format!(
            "{n_buf} puts then one flush; floor: the same through HMAC + encode + seal + sled insert"
        ),
    });
    // A new record at a reserved generation: a single-key compare-and-swap on absence, then
    // one of the manifest for its count (no atomic batch). Issue 14's goal: at most 3x a
    // buffered overwrite.
    let n_new: u64 = if quick { 300 } else { 2_000 };
    let mut created = 0u64;
    let put_new = once(3, || {
        for _ in 0..n_new {
            created += 1;
            bns.put(&format!("new-{created}"), &t).unwrap();
        }
        buffered.flush().unwrap();
    }) / u32::try_from(n_new).unwrap_or(1);
    rows.push(Row {
        name: "vault put of a new record, buffered".into(),
        vault: put_new,
        floor: Some(put_buffered),
        goal: Some(3.0),
        note: format!(
            "{n_new} new keys then one flush; floor: the buffered put (an overwrite) above"
        ),
    });
    let auth = Authorizer::builder(
        &bns,
        KEY,
        |_: Option<&Token>| -> Result<Token, RefreshError> {
            Err(RefreshError::transient("unused"))
        },
    )
    .build()?;
    auth.token()?;
    let hit = per_op(budget, samples, || {
        black_box(auth.token().unwrap());
    });
    rows.push(Row {
        name: "authorizer cache hit".into(),
        vault: hit,
        floor: None,
        goal: None,
        note: "goal: under 1 µs".into(),
    });
    drop((auth, bns));

    // Rotation throughput: one namespace of 10,000 records.
    let big = buffered.namespace("rotate-me")?;
    let n_rot = if quick { 2_000 } else { 10_000 };
    for k in 0..n_rot {
        big.put(&format!("rs-{k}"), &t)?;
    }
    buffered.flush()?;
    let rotate = once(3, || {
        buffered.rotate_namespace_key("rotate-me", |_| {}).unwrap();
    });
    let per_record_floor = open + copy + seal + sled_insert;
    rows.push(Row {
        name: format!("namespace-key rotation, {n_rot} records"),
        vault: rotate,
        floor: Some(per_record_floor * n_rot + sled_durable),
        goal: None,
        note: format!(
            "{:.0} records/s; floor: per record open + seal + sled insert, one durable flush",
            n_rot as f64 / rotate.as_secs_f64()
        ),
    });
    buffered.close()?;

    // Import throughput: a Globus JSON file of 2,000 records over 10 namespaces.
    let n_imp: u32 = 2_000;
    let json_path = vdir.path().join("tokens.json");
    std::fs::write(&json_path, globus_json(n_imp))?;
    let json_bytes = std::fs::read(&json_path)?;
    let parse = once(5, || {
        black_box(serde_json::from_slice::<serde_json::Value>(&json_bytes).unwrap());
    });
    let import = once(3, || {
        let d = bench_dir("import");
        let v = Vault::create(d.path().join("v"), &raw_key()).unwrap();
        let t0 = Instant::now();
        Import::globus_json(&json_path).run(&v).unwrap();
        black_box(t0);
        v.close().unwrap();
    });
    let import_floor = parse + (hmac + encode + seal + sled_insert) * n_imp + sled_durable;
    rows.push(Row {
        name: format!("import, Globus JSON, {n_imp} records"),
        vault: import,
        floor: Some(import_floor),
        goal: None,
        note: format!(
            "{:.0} records/s (incl. creating the vault); floor: JSON parse + per record HMAC + encode + seal + sled insert, one durable flush",
            f64::from(n_imp) / import.as_secs_f64()
        ),
    });

    // Unlock: a vault of 100,000 records, with the default Argon2id parameters.
    let n_open = if quick { 10_000 } else { 100_000 };
    let odir = bench_dir("open");
    let opath = odir.path().join("v");
    let pass = KeySource::passphrase(SecretString::from("correct horse battery staple"));
    filled_vault(&opath, &pass, n_open, 100).close()?;
    let kdf = KdfParams::default();
    let argon = once(5, || {
        black_box(
            tokenvault::test_hooks::argon2id(
                kdf.m_kib(),
                kdf.t(),
                kdf.p(),
                b"correct horse battery staple",
                &[7u8; 16],
            )
            .unwrap(),
        );
    });
    let mut opened = Vec::new();
    for _ in 0..5 {
        let t0 = Instant::now();
        let v = Vault::open(&opath, &pass).unwrap();
        opened.push(t0.elapsed());
        v.close().unwrap();
    }
    opened.sort_unstable();
    let open_pass = opened[2];
    let mut raw_opened = Vec::new();
    for _ in 0..5 {
        let t0 = Instant::now();
        let v = Vault::open(&opath, &raw_key()).unwrap_or_else(|_| {
            // The vault has only the passphrase slot: open with it and add the raw key once.
            let v = Vault::open(&opath, &pass).unwrap();
            v.add_keyslot(&raw_key()).unwrap();
            v
        });
        raw_opened.push(t0.elapsed());
        v.close().unwrap();
    }
    raw_opened.sort_unstable();
    let open_raw = raw_opened[2];
    rows.push(Row {
        name: format!("open, passphrase, {n_open} records"),
        vault: open_pass,
        floor: Some(argon),
        goal: None,
        note: format!(
            "overhead beyond Argon2id: {:.1} ms (goal < 30 ms); open with a raw key: {}",
            open_pass.saturating_sub(argon).as_secs_f64() * 1e3,
            fmt(open_raw)
        ),
    });
    let v = Vault::open(&opath, &pass)?;
    let change = once(3, || {
        v.change_passphrase(&pass, &pass).unwrap();
    });
    v.close()?;
    rows.push(Row {
        name: "passphrase change".into(),
        vault: change,
        floor: Some(argon * 2),
        goal: None,
        note: "floor: two Argon2id derivations (old and new)".into(),
    });

    print_table(&rows);
    Ok(())
}

fn print_table(rows: &[Row]) {
    println!();
    println!(
        "| {:<46} | {:>12} | {:>12} | {:>7} | {:>6} | notes",
        "operation", "time", "floor", "ratio", "goal"
    );
    println!(
        "|{:-<48}|{:->14}|{:->14}|{:->9}|{:->8}|------",
        "", "", "", "", ""
    );
    for r in rows {
        let ratio = r
            .floor
            .map(|f| r.vault.as_secs_f64() / f.as_secs_f64().max(1e-12));
        println!(
            "| {:<46} | {:>12} | {:>12} | {:>7} | {:>6} | {}",
            r.name,
            fmt(r.vault),
            r.floor.map(fmt).unwrap_or_default(),
            ratio.map(|x| format!("{x:.2}x")).unwrap_or_default(),
            match (r.goal, ratio) {
                (Some(g), Some(x)) => format!("{}{g}x", if x <= g { "ok " } else { "NO " }),
                _ => String::new(),
            },
            r.note
        );
    }
}

fn fmt(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns < 10_000 {
        format!("{ns} ns")
    } else if ns < 10_000_000 {
        format!("{:.1} µs", ns as f64 / 1e3)
    } else {
        format!("{:.1} ms", ns as f64 / 1e6)
    }
}

/// A Globus `JSONTokenStorage` file (format 2.0) of `n` records over 10 namespaces.
fn globus_json(n: u32) -> Vec<u8> {
    use tokenvault::secrecy::ExposeSecret;
    let t = token(3);
    let mut data = serde_json::Map::new();
    for i in 0..n {
        let ns = format!("user/{:04}", i % 10);
        let rs = format!("rs-{i}.example.org");
        let entry = data
            .entry(ns)
            .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
        entry.as_object_mut().unwrap().insert(
            rs.clone(),
            serde_json::json!({
                "resource_server": rs,
                "identity_id": "2265b1f5-1111-4222-8333-d8f191b7584a",
                "scope": "openid email profile",
                "access_token": t.access_token().expose_secret(),
                "refresh_token": t.refresh_token().unwrap().expose_secret(),
                "expires_at_seconds": 1_900_000_000u64 + u64::from(i),
                "token_type": "Bearer",
            }),
        );
    }
    serde_json::to_vec(&serde_json::json!({
        "data": data, "format_version": "2.0", "globus-sdk.version": "4.9.1"
    }))
    .unwrap()
}

/// The scale runs: the same operations at 1,000, 100,000 and 1,000,000 records over 1,000
/// namespaces; disk bytes per record and peak memory; 8 threads on mixed get/put; durable
/// write throughput of 8 writers against 1.
fn scale(quick: bool, cache_mib: Option<u64>) -> Result<(), Box<dyn std::error::Error>> {
    let sizes: &[u64] = if quick {
        &[1_000, 10_000]
    } else {
        &[1_000, 100_000, 1_000_000]
    };
    let budget = Duration::from_millis(if quick { 300 } else { 1500 });
    let t = token(1);
    // The crypto part of a get's floor (HMAC + open + decode), for the random-get floor.
    let parts = RecordParts::new();
    let rid = parts.record_id(NS, KEY);
    let sealed = parts.seal(NS, &rid, parts.encode(KEY, &t)?)?;
    let crypto = per_op(budget, 5, || {
        black_box(parts.record_id(black_box(NS), black_box(KEY)));
        let (plain, range) = parts.open(NS, &rid, black_box(&sealed)).unwrap();
        black_box(parts.decode(&plain[range]).unwrap());
    });
    println!(
        "| {:>9} | {:>10} | {:>10} | {:>10} | {:>10} | {:>6} | {:>10} | {:>10} | {:>11} | {:>9} | {:>12} | {:>10} | {:>10} | {:>11} | {:>11}",
        "records", "get", "get rand.", "floor", "sled rand.", "ratio", "put dur.", "put buf.",
        "disk B/rec", "peak RSS", "8 thr ops/s", "p50", "p99", "1 writer/s", "8 writers/s"
    );
    for &n in sizes {
        let dir = bench_dir("scale");
        let path = dir.path().join("v");
        let cache = cache_mib.map_or(tokenvault::backend::DEFAULT_CACHE_CAPACITY, |m| m << 20);
        filled_vault(&path, &raw_key(), n, 1000).close()?;
        let vault = VaultOptions::new()
            .sled(SledOptions::new().cache_capacity(cache))
            .open(&path, &raw_key())?;
        let ns = vault.namespace(NS)?;
        let get = per_op(budget, 5, || {
            black_box(ns.get::<Token>(KEY).unwrap());
        });
        // Gets of random records (most not in sled's cache at the larger sizes), against raw
        // sled with the vault's settings holding as many records of the same size, plus the
        // crypto part of the floor.
        let handles = tenants(&vault);
        if cache_mib.is_some() {
            // A cache sized for the data: the gets below measure the steady state rather
            // than the first read after an open (raw sled, just filled, starts warm).
            warm(&handles, n);
        }
        let mut next = random_below(n);
        let get_random = per_op(budget, 5, || {
            let i = next();
            black_box(
                handles[(i % 1000) as usize]
                    .get::<Token>(&format!("rs-{i}"))
                    .unwrap(),
            );
        });
        drop(handles);
        let rdir = bench_dir("scale-raw");
        let raw = RawSled::create_with_cache(rdir.path(), n, sealed.len(), cache);
        let sled_random = per_op(budget, 5, || {
            black_box(raw.tree.get(id(next())).unwrap());
        });
        drop(raw);
        drop(rdir);
        let random_floor = sled_random + crypto;
        let put = per_op_n(5, if quick { 40 } else { 200 }, || {
            ns.put(KEY, &t).unwrap();
        });
        vault.close()?;
        let disk = workload::disk_bytes(&path);
        let buffered = VaultOptions::new()
            .durability(Durability::Buffered)
            .sled(SledOptions::new().cache_capacity(cache))
            .open(&path, &raw_key())?;
        let bns = buffered.namespace(NS)?;
        let put_buf = per_op(budget, 5, || {
            bns.put(KEY, &t).unwrap();
        });
        buffered.close()?;
        let vault = VaultOptions::new()
            .sled(SledOptions::new().cache_capacity(cache))
            .open(&path, &raw_key())?;
        if cache_mib.is_some() {
            warm(&tenants(&vault), n);
        }
        let (ops, p50, p99) = mixed(&vault, n, if quick { 2_000 } else { 10_000 });
        let one = writers(&vault, 1, if quick { 200 } else { 1_000 });
        let eight = writers(&vault, 8, if quick { 200 } else { 1_000 });
        vault.close()?;
        println!(
            "| {:>9} | {:>10} | {:>10} | {:>10} | {:>10} | {:>5.2}x | {:>10} | {:>10} | {:>11} | {:>9} | {:>12.0} | {:>10} | {:>10} | {:>11.0} | {:>11.0}",
            n,
            fmt(get),
            fmt(get_random),
            fmt(random_floor),
            fmt(sled_random),
            get_random.as_secs_f64() / random_floor.as_secs_f64(),
            fmt(put),
            fmt(put_buf),
            disk / (n + 1),
            format!("{} MiB", workload::peak_rss() >> 20),
            ops,
            fmt(p50),
            fmt(p99),
            one,
            eight
        );
    }
    Ok(())
}

/// The tenants axis: 1,000, 100,000 and 1,000,000 namespaces with one token each, onboarded
/// one by one from one thread (buffered): the onboarding rate while building, then the cost
/// of creating a namespace with its first record at that size, the open time (raw key: no
/// KDF), gets and overwrites in random namespaces (most entries not in the entry cache), the
/// memory an open vault gains from touching 20,000 random namespaces (the entry cache holds
/// 4,096), and disk bytes per tenant.
fn tenants_scale(quick: bool) -> Result<(), Box<dyn std::error::Error>> {
    let sizes: &[u64] = if quick {
        &[1_000, 10_000]
    } else {
        &[1_000, 100_000, 1_000_000]
    };
    let budget = Duration::from_millis(if quick { 300 } else { 1500 });
    let t = token(1);
    println!(
        "| {:>9} | {:>12} | {:>11} | {:>11} | {:>9} | {:>9} | {:>10} | {:>10} | {:>10} | {:>10} | {:>12} |",
        "tenants",
        "onboard/s",
        "create",
        "raw create",
        "open",
        "raw open",
        "get",
        "get rand.",
        "put rand.",
        "RSS +20k",
        "disk B/ten."
    );
    let mut first_create = None;
    let mut first_open = None;
    for &n in sizes {
        let dir = bench_dir("tenants");
        let path = dir.path().join("v");
        let vault = VaultOptions::new()
            .durability(Durability::Buffered)
            .create(&path, &raw_key())?;
        let start = Instant::now();
        for i in 0..n {
            vault.namespace(&format!("tenant-{i:07}"))?.put(KEY, &t)?;
        }
        let onboard = n as f64 / start.elapsed().as_secs_f64();
        // Creating more at this size.
        let extra: u64 = if quick { 500 } else { 2_000 };
        let start = Instant::now();
        for i in 0..extra {
            vault.namespace(&format!("extra-{i:07}"))?.put(KEY, &t)?;
        }
        let create = start.elapsed() / u32::try_from(extra)?;
        vault.close()?;
        let disk = workload::disk_bytes(&path);
        let open = once(5, || {
            Vault::open(&path, &raw_key()).unwrap().close().unwrap();
        });
        let rss_before = workload::current_rss();
        let vault = VaultOptions::new()
            .durability(Durability::Buffered)
            .open(&path, &raw_key())?;
        let ns = vault.namespace("tenant-0000000")?;
        let get = per_op(budget, 5, || {
            black_box(ns.get::<Token>(KEY).unwrap());
        });
        let mut next = random_below(n);
        let get_random = per_op(budget, 5, || {
            let ns = vault.namespace(&format!("tenant-{:07}", next())).unwrap();
            black_box(ns.get::<Token>(KEY).unwrap());
        });
        let put_random = per_op(budget, 5, || {
            let ns = vault.namespace(&format!("tenant-{:07}", next())).unwrap();
            ns.put(KEY, &t).unwrap();
        });
        for _ in 0..20_000 {
            let ns = vault.namespace(&format!("tenant-{:07}", next())).unwrap();
            black_box(ns.get::<Token>(KEY).unwrap());
        }
        let rss = workload::current_rss().saturating_sub(rss_before);
        vault.close()?;
        drop(dir);
        // The floors at this size: raw sled laid out the same way, the same random-key
        // reads and inserts per creation, and sled's own open of it.
        let raw_dir = bench_dir("tenants-raw");
        let raw = RawTenants::open(raw_dir.path(), sealed_len(&t)?);
        for i in 0..n {
            raw.create(i);
        }
        let start = Instant::now();
        for i in n..n + extra {
            raw.create(i);
        }
        let raw_create = start.elapsed() / u32::try_from(extra)?;
        raw.db.flush()?;
        drop(raw);
        let raw_open = once(5, || {
            drop(RawTenants::open(raw_dir.path(), 0));
        });
        let first_create = *first_create.get_or_insert((create, raw_create));
        let first_open = *first_open.get_or_insert((open, raw_open));
        let growth = |now: (Duration, Duration), first: (Duration, Duration)| {
            (
                now.0.as_secs_f64() / first.0.as_secs_f64(),
                now.1.as_secs_f64() / first.1.as_secs_f64(),
            )
        };
        let (create_x, raw_create_x) = growth((create, raw_create), first_create);
        let (open_x, raw_open_x) = growth((open, raw_open), first_open);
        println!(
            "| {:>9} | {:>12.0} | {:>11} | {:>11} | {:>9} | {:>9} | {:>10} | {:>10} | {:>10} | {:>10} | {:>12} | create {:.2}x (raw sled {:.2}x), open {:.2}x (raw sled {:.2}x) the first size",
            n,
            onboard,
            fmt(create),
            fmt(raw_create),
            fmt(open),
            fmt(raw_open),
            fmt(get),
            fmt(get_random),
            fmt(put_random),
            format!("{} MiB", rss >> 20),
            disk / (n + extra),
            create_x,
            raw_create_x,
            open_x,
            raw_open_x,
        );
    }
    Ok(())
}

/// The stored size of token `t` sealed as a record.
fn sealed_len(t: &Token) -> Result<usize, Box<dyn std::error::Error>> {
    let parts = RecordParts::new();
    let rid = parts.record_id(NS, KEY);
    Ok(parts.seal(NS, &rid, parts.encode(KEY, t)?)?.len())
}

/// A fixed xorshift sequence of numbers below `n`.
fn random_below(n: u64) -> impl FnMut() -> u64 {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    }
}

/// The 1,000 namespaces of a `filled_vault`.
fn tenants(vault: &Vault) -> Vec<tokenvault::Namespace> {
    (0..1000u64)
        .map(|i| vault.namespace(&format!("tenant-{i:04}")).unwrap())
        .collect()
}

/// Reads every record of a `filled_vault` of `records` records (its `tenants`) once.
fn warm(handles: &[tokenvault::Namespace], records: u64) {
    for i in 0..records {
        black_box(
            handles[(i % 1000) as usize]
                .get::<Token>(&format!("rs-{i}"))
                .unwrap(),
        );
    }
}

/// 8 threads, each doing `per_thread` operations: 90% gets, 10% durable puts, on random
/// records. Returns ops/s and the p50 and p99 latency.
fn mixed(vault: &Vault, records: u64, per_thread: u64) -> (f64, Duration, Duration) {
    let barrier = Arc::new(Barrier::new(8));
    let start = Instant::now();
    let handles: Vec<_> = (0..8u64)
        .map(|th| {
            let vault = vault.clone();
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                let t = token(2);
                let mut lat = Vec::with_capacity(per_thread as usize);
                let mut x = th.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                barrier.wait();
                for _ in 0..per_thread {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let i = x % records;
                    let ns = vault.namespace(&format!("tenant-{:04}", i % 1000)).unwrap();
                    let k = format!("rs-{i}");
                    let t0 = Instant::now();
                    if x % 10 == 0 {
                        ns.put(&k, &t).unwrap();
                    } else {
                        black_box(ns.get::<Token>(&k).unwrap());
                    }
                    lat.push(t0.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut all: Vec<Duration> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let elapsed = start.elapsed();
    all.sort_unstable();
    let p = |q: f64| all[((all.len() as f64 - 1.0) * q) as usize];
    (all.len() as f64 / elapsed.as_secs_f64(), p(0.5), p(0.99))
}

/// Durable puts per second from `threads` writers, each overwriting (refreshing) 100 records
/// of its own, round robin.
fn writers(vault: &Vault, threads: u64, per_thread: u64) -> f64 {
    let barrier = Arc::new(Barrier::new(threads as usize));
    for th in 0..threads {
        let ns = vault.namespace(&format!("writers-{th}")).unwrap();
        let t = token(3);
        let keys: Vec<String> = (0..100).map(|k| format!("w-{k}")).collect();
        let items: Vec<(&str, &Token)> = keys.iter().map(|k| (k.as_str(), &t)).collect();
        ns.set_tokens(&items).unwrap();
    }
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|th| {
            let vault = vault.clone();
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                let t = token(3);
                let ns = vault.namespace(&format!("writers-{th}")).unwrap();
                barrier.wait();
                for k in 0..per_thread {
                    ns.put(&format!("w-{}", k % 100), &t).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    (threads * per_thread) as f64 / start.elapsed().as_secs_f64()
}
