//! Sustained writes, with a watchdog that exits with status 3 when progress stops for 10 s:
//! the reproduction of sled 0.34.7's deadlock under sustained atomic batches, and the check
//! that the vault's work-around holds (BENCHMARKS.md, "The write stall").
//!
//! ```text
//! cargo bench --bench sled_stress -- tx 300000       # raw sled transactions: can deadlock (1 run in 3 here)
//! cargo bench --bench sled_stress -- insert 200000   # raw sled plain inserts: completes
//! cargo bench --bench sled_stress -- batch 200000    # raw sled apply_batch of the same two
//! cargo bench --bench sled_stress -- vault 200000    # overwrites through the vault
//! CHURN=1 cargo bench --bench sled_stress -- vault 200000   # batches of creates, of removals
//! CREATE=1 cargo bench --bench sled_stress -- vault 100000  # creates only
//! ```
//!
//! In `vault` mode, `SKIP_DURABLE=1` skips the 1,400 durable puts before the sustained ones,
//! and `NO_FLUSH=1` drops the `Vault::flush` every 20,000 puts. Every vault mode completes;
//! before the work-around, overwrites (then atomic batches too) stalled 27,000 to 69,000
//! writes in and `CHURN=1` about 59,000 in. CI runs the `CHURN=1` mode.

#![allow(clippy::unwrap_used)]
use sled::Transactional;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
fn main() {
    // `cargo bench` adds `--bench` to the arguments.
    let args: Vec<String> = std::env::args().filter(|a| a != "--bench").collect();
    let mode = args.get(1).cloned().unwrap_or_else(|| "tx".into());
    let total: u64 = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(200_000);
    let dir = tempfile::tempdir_in(concat!(env!("CARGO_MANIFEST_DIR"), "/target")).unwrap();
    let db = sled::Config::new()
        .path(dir.path())
        .cache_capacity(64 << 20)
        .flush_every_ms(Some(500))
        .open()
        .unwrap();
    let tree = db.open_tree(b"ns").unwrap();
    let done = Arc::new(AtomicU64::new(0));
    let d2 = Arc::clone(&done);
    std::thread::spawn(move || {
        let mut last = 0;
        loop {
            std::thread::sleep(Duration::from_secs(10));
            let now = d2.load(Ordering::SeqCst);
            eprintln!("progress: {now}");
            if now == last {
                eprintln!("STALLED at {now}");
                std::process::exit(3);
            }
            last = now;
        }
    });
    if mode == "vault" {
        return vault_mode(total, &done, dir.path());
    }
    let t = Instant::now();
    for i in 0..total {
        if mode == "mixed" && i < 3000 {
            // First a run of durable writes (flush after each), as the report does before
            // its sustained buffered writes.
            db.flush().unwrap();
        }
        if mode == "batch" {
            raw_batch(&tree, i);
        } else {
            raw_write(&tree, i, mode != "insert");
        }
        done.store(i + 1, Ordering::SeqCst);
    }
    db.flush().unwrap();
    eprintln!("{mode}: {total} in {:?}", t.elapsed());
}

/// The benchmark report's sequence through the vault: 1,000 records, 1,400 durable puts,
/// reopen buffered, then sustained puts over 1,000 keys with a flush every 20,000.
fn vault_mode(total: u64, done: &AtomicU64, dir: &std::path::Path) {
    use tokenvault::secrecy::SecretBox;
    use tokenvault::{Durability, KeySource, Token, Vault, VaultOptions};
    let key = KeySource::raw_key(SecretBox::new(Box::new([0x42; 32])));
    let path = dir.join("v");
    let access: String = "A".repeat(1024);
    let token = Token::new(access.into()).with_refresh_token("r".repeat(64).into());
    let vault = VaultOptions::new()
        .durability(Durability::Buffered)
        .create(&path, &key)
        .unwrap();
    let ns = vault.namespace("tenant-0007").unwrap();
    for i in 0..1000 {
        ns.put(&format!("rs-{i}"), &token).unwrap();
    }
    vault.close().unwrap();
    let vault = Vault::open(&path, &key).unwrap();
    let ns = vault.namespace("tenant-0007").unwrap();
    let durable = if std::env::var_os("SKIP_DURABLE").is_some() {
        0
    } else {
        1400
    };
    for i in 0..durable {
        ns.put("rs-1", &token).unwrap();
        done.store(i, Ordering::SeqCst);
    }
    vault.close().unwrap();
    let vault = VaultOptions::new()
        .durability(Durability::Buffered)
        .open(&path, &key)
        .unwrap();
    let ns = vault.namespace("tenant-0007").unwrap();
    let t = Instant::now();
    // `CREATE=1`: every put creates a new record (on sled, a compare-and-swap on absence,
    // then one of the manifest for the count).
    // `CHURN=1`: pairs of records created and removed in turn over 1,000 keys, each pair one
    // atomic batch with the manifest (the vault's batch path, which a lone new record no
    // longer takes on sled), on a small, often rewritten tree: the pattern that stalled most
    // reliably.
    let create = std::env::var_os("CREATE").is_some();
    let churn = std::env::var_os("CHURN").is_some();
    for i in 0..total {
        if churn {
            let key = format!("churn-{}", i % 1000);
            let pair = format!("{key}-pair");
            let mut batch = vault.batch();
            if (i / 1000) % 2 == 0 {
                batch
                    .put(&ns, key.as_str(), &token)
                    .unwrap()
                    .put(&ns, pair.as_str(), &token)
                    .unwrap();
            } else {
                batch
                    .remove(&ns, key.as_str())
                    .unwrap()
                    .remove(&ns, pair.as_str())
                    .unwrap();
            }
            batch.commit().unwrap().unwrap();
        } else {
            let key = if create {
                format!("new-{i}")
            } else {
                format!("buf-{}", i % 1000)
            };
            ns.put(&key, &token).unwrap();
        }
        if i % 20_000 == 19_999 && std::env::var_os("NO_FLUSH").is_none() {
            vault.flush().unwrap();
        }
        done.store(1400 + i + 1, Ordering::SeqCst);
    }
    vault.close().unwrap();
    eprintln!("vault: {total} sustained puts in {:?}", t.elapsed());
}

/// Raw sled's share of a vault write, number `i`: the record of key `i % 1000` and a
/// manifest-sized value, in one transaction (`transactional`) or as two plain inserts. Each
/// value differs from the one its key holds: sled skips a write of the stored value.
/// The same two writes as one `apply_batch` (atomic, within one tree, unconditional).
fn raw_batch(tree: &sled::Tree, i: u64) {
    let k = (i % 1000).to_le_bytes();
    let pick = (i / 1000 + i).is_multiple_of(2);
    let mut batch = sled::Batch::default();
    batch.insert(&k, vec![if pick { 7u8 } else { 8 }; 1590]);
    batch.insert(&[0u8], vec![if pick { 9u8 } else { 10 }; 300]);
    tree.apply_batch(batch).unwrap();
}

fn raw_write(tree: &sled::Tree, i: u64, transactional: bool) {
    let k = (i % 1000).to_le_bytes();
    let pick = (i / 1000 + i).is_multiple_of(2);
    let v = vec![if pick { 7u8 } else { 8 }; 1590];
    let m = vec![if pick { 9u8 } else { 10 }; 300];
    if transactional {
        let trees = [tree.clone()];
        let r: Result<(), sled::transaction::TransactionError<()>> =
            trees.as_slice().transaction(|tx| {
                std::hint::black_box((tx[0].get(k)?, tx[0].get([0u8])?));
                tx[0].insert(&k, v.as_slice())?;
                tx[0].insert(&[0u8], m.as_slice())?;
                Ok(())
            });
        r.unwrap();
    } else {
        tree.insert(k, v).unwrap();
        tree.insert([0u8], m).unwrap();
    }
}
