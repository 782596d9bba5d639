//! The PostgreSQL backend against its floors (issue 15's goals), on the test server that
//! `scripts/pg-test-server start` starts:
//!
//! ```sh
//! eval "$(bash scripts/pg-test-server start)"
//! cargo bench --bench pg_report --features postgres            # about two minutes
//! cargo bench --bench pg_report --features postgres -- --quick
//! ```
//!
//! - get: a vault get, against a prepared `SELECT` of the same stored bytes by primary key on
//!   a connection of its own (goal: at most 1.3x);
//! - durable put: a vault overwrite, against a prepared conditional `UPDATE` of the same
//!   bytes (goal: at most 1.3x), measured in alternation;
//! - 8 processes against 1: durable puts (goal: at least 4x) and gets (at least 1.7x), each
//!   process its own vault handle on its own connections, on its own namespace; and, as the
//!   puts' floor, 8 processes against 1 doing prepared conditional `UPDATE`s of rows of their
//!   own.

#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tokenvault::backend::PostgresOptions;
use tokenvault::{Token, Vault};
use workload::{paired, per_op, raw_key, token, KEY, NS};

const CHILD: &str = "TOKENVAULT_PG_REPORT_CHILD";

fn url() -> String {
    std::env::var("TOKENVAULT_TEST_PG_URL")
        .expect("TOKENVAULT_TEST_PG_URL: run eval \"$(bash scripts/pg-test-server start)\" first")
}

/// A direct client of the test server (the floors' connection).
fn client(url: &str) -> postgres::Client {
    let url = url.replace("?sslmode=disable", "");
    let mut config: postgres::Config = url.parse().unwrap();
    let file = std::fs::read_to_string(std::env::var("PGPASSFILE").unwrap()).unwrap();
    config.password(file.trim_end().rsplit(':').next().unwrap());
    config.connect(postgres::NoTls).unwrap()
}

fn open(url: &str, vault: &str) -> Vault {
    let backend = PostgresOptions::new().connect(url, vault).unwrap();
    Vault::open_with_backend(backend, &raw_key()).unwrap()
}

/// A child process: `put` or `get` on its own namespace for the given time; prints its count.
fn child(mode: &str) {
    let url = url();
    let vault_name = std::env::var("TOKENVAULT_PG_REPORT_VAULT").unwrap();
    let seconds: u64 = std::env::var("TOKENVAULT_PG_REPORT_SECONDS")
        .unwrap()
        .parse()
        .unwrap();
    let n: u32 = std::env::var("TOKENVAULT_PG_REPORT_N")
        .unwrap()
        .parse()
        .unwrap();
    if mode == "update" {
        return println!("{}", floor_updates(&url, &vault_name, n, seconds));
    }
    let vault = open(&url, &vault_name);
    let ns = vault.namespace(&format!("proc-{n}")).unwrap();
    let t = token(u64::from(n));
    ns.put(KEY, &t).unwrap();
    let until = Instant::now() + Duration::from_secs(seconds);
    let mut done = 0u64;
    while Instant::now() < until {
        if mode == "put" {
            ns.put(KEY, &t).unwrap();
        } else {
            black_box(ns.get::<Token>(KEY).unwrap());
        }
        done += 1;
    }
    println!("{done}");
}

/// The floor of the durable puts' scaling: prepared conditional `UPDATE`s of a row of a
/// record's size (this process's own), on a connection of its own, for `seconds`.
fn floor_updates(url: &str, vault: &str, n: u32, seconds: u64) -> u64 {
    let mut db = client(url);
    let key = format!("floor-{n}").into_bytes();
    let (a, mut b) = (vec![7u8; 300], vec![7u8; 300]);
    b[40] ^= 1;
    db.execute(
        "INSERT INTO tokenvault_items (vault, tree, key, value) VALUES ($1, 'f'::bytea, $2, $3) \
         ON CONFLICT (vault, tree, key) DO UPDATE SET value = EXCLUDED.value",
        &[&vault, &key, &a],
    )
    .unwrap();
    let update = db
        .prepare(
            "UPDATE tokenvault_items SET value = $3 WHERE vault = $1 AND tree = 'f'::bytea \
             AND key = $2 AND value = $4",
        )
        .unwrap();
    let until = Instant::now() + Duration::from_secs(seconds);
    let mut done = 0u64;
    while Instant::now() < until {
        let (next, current) = if done % 2 == 0 { (&b, &a) } else { (&a, &b) };
        assert_eq!(
            db.execute(&update, &[&vault, &key, next, current]).unwrap(),
            1
        );
        done += 1;
    }
    done
}

/// Operations per second of `procs` processes doing `mode` at once.
fn throughput(mode: &str, procs: u32, vault: &str, seconds: u64) -> f64 {
    let children: Vec<_> = (0..procs)
        .map(|n| {
            Command::new(std::env::current_exe().unwrap())
                .env(CHILD, mode)
                .env("TOKENVAULT_PG_REPORT_VAULT", vault)
                .env("TOKENVAULT_PG_REPORT_SECONDS", seconds.to_string())
                .env("TOKENVAULT_PG_REPORT_N", n.to_string())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let total: u64 = children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert!(out.status.success());
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse::<u64>()
                .unwrap()
        })
        .sum();
    total as f64 / seconds as f64
}

fn main() {
    if let Ok(mode) = std::env::var(CHILD) {
        return child(&mode);
    }
    let quick = std::env::args().any(|a| a == "--quick");
    let url = url();
    let budget = Duration::from_millis(if quick { 500 } else { 3000 });
    let (samples, calls) = if quick { (5, 50) } else { (9, 200) };
    let vault_name = support_name();
    let vault = {
        let backend = PostgresOptions::new().connect(&url, &vault_name).unwrap();
        Vault::create_with_backend(backend, &raw_key()).unwrap()
    };
    let ns = vault.namespace(NS).unwrap();
    let t = token(1);
    ns.put(KEY, &t).unwrap();

    // The stored row of the token record, for the floors.
    let mut db = client(&url);
    let row = db
        .query_one(
            "SELECT tree, key, value FROM tokenvault_items WHERE vault = $1 AND tree = 'r'::bytea",
            &[&vault_name],
        )
        .unwrap();
    let (tree, key, value): (Vec<u8>, Vec<u8>, Vec<u8>) = (row.get(0), row.get(1), row.get(2));
    let select = db
        .prepare("SELECT value FROM tokenvault_items WHERE vault = $1 AND tree = $2 AND key = $3")
        .unwrap();
    let update = db
        .prepare(
            "UPDATE tokenvault_items SET value = $4 WHERE vault = $1 AND tree = $2 AND key = $3 \
             AND value = $5",
        )
        .unwrap();
    // A second row of the same size for the UPDATE floor to swap.
    let floor_key = [key.clone(), b"-floor".to_vec()].concat();
    db.execute(
        "INSERT INTO tokenvault_items (vault, tree, key, value) VALUES ($1, $2, $3, $4)",
        &[&vault_name, &tree, &floor_key, &value],
    )
    .unwrap();

    let select_floor = per_op(budget, samples, || {
        black_box(db.query_opt(&select, &[&vault_name, &tree, &key]).unwrap());
    });
    let get = per_op(budget, samples, || {
        black_box(ns.get::<Token>(KEY).unwrap().unwrap());
    });
    let mut current = value.clone();
    let mut other = value.clone();
    other[40] ^= 1;
    let (update_floor, put) = paired(
        samples,
        calls,
        || {
            let next = if current == value {
                other.clone()
            } else {
                value.clone()
            };
            let n = db
                .execute(&update, &[&vault_name, &tree, &floor_key, &next, &current])
                .unwrap();
            assert_eq!(n, 1);
            current = next;
        },
        || {
            ns.put(KEY, &t).unwrap();
        },
    );
    vault.close().unwrap();
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    println!("| operation | vault | floor | ratio | goal |");
    println!("| --- | --- | --- | --- | --- |");
    println!(
        "| get | {get:?} | {select_floor:?} (prepared SELECT) | {:.2}x | 1.3x |",
        ratio(get, select_floor)
    );
    println!(
        "| durable put | {put:?} | {update_floor:?} (prepared conditional UPDATE, in alternation) | {:.2}x | 1.3x |",
        ratio(put, update_floor)
    );
    let seconds = if quick { 3 } else { 10 };
    for (mode, goal) in [
        ("put", "at least 4x"),
        ("update", "(floor)"),
        ("get", "at least 1.7x"),
    ] {
        let one = throughput(mode, 1, &vault_name, seconds);
        let eight = throughput(mode, 8, &vault_name, seconds);
        println!(
            "| {mode}: 8 processes / 1 | {eight:.0}/s | {one:.0}/s | {:.2}x | {goal} |",
            eight / one
        );
    }
}

fn support_name() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("bench-{}-{nanos}", std::process::id())
}
