//! The refresh transaction across processes sharing one vault on PostgreSQL (issue 15), against
//! the counting token endpoint on 127.0.0.1 (a rotating server that counts every presentation
//! of a refresh token and records every reuse):
//!
//! - **Herd:** 8 processes with 8 threads each ask at once for a token that has just expired,
//!   round after round: exactly one presentation per refresh token, over at least 20
//!   rotations, and every process ends with the newest token.
//! - **Paused holder:** a process takes the lease, sends its request (which the endpoint
//!   holds), and is SIGSTOPped past its lease's end; the other processes take the lease over
//!   and move on through several rotations; the held request is then processed (a reuse:
//!   refused) and the process SIGCONTed: it writes nothing and ends with the newest token.
//!   Bound: a refresh token is presented once per holder of its lease, so twice here.
//! - **Paused after the exchange:** the same, but the endpoint processes the paused process's
//!   request first: the others' presentation is the reuse, refused, and they cannot move on;
//!   the paused process, resumed with the only valid successor, stores it over their mark, and
//!   they serve it then. No token the endpoint issued is lost.
//!
//! The test binary runs itself as the child processes (`--exact child_main`, selected by the
//! environment variables below); the parent talks to them over their stdin and stdout.
#![cfg(all(feature = "postgres", feature = "http", unix))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::process::Command;
use std::sync::{Arc, Barrier};
use std::time::{Duration, SystemTime};

use support::child::Piped;
use support::token_server::{Config, TokenServer};
use support::{postgres_test_url, raw_key, unique_name};
use tokenvault::backend::PostgresOptions;
use tokenvault::oauth::{Authorizer, ClientAuth, HttpRefresher, TokenError};
use tokenvault::secrecy::{ExposeSecret, SecretString};
use tokenvault::{Token, Vault};

const ENV_VAULT: &str = "TOKENVAULT_PG_REFRESH_VAULT";
const ENV_TOKEN_URL: &str = "TOKENVAULT_PG_REFRESH_TOKEN_URL";
const ENV_THREADS: &str = "TOKENVAULT_PG_REFRESH_THREADS";
const ENV_LEASE_MS: &str = "TOKENVAULT_PG_REFRESH_LEASE_MS";

/// One outcome per line: `TOKEN <access>` or `ERROR <kind>`.
fn outcome(result: &Result<Token, TokenError>) -> String {
    match result {
        Ok(token) => format!("TOKEN {}", token.access_token().expose_secret()),
        Err(TokenError::ReauthenticationRequired { .. }) => "ERROR reauth".to_owned(),
        Err(TokenError::Refresh(e)) if e.is_invalid_grant() => "ERROR invalid_grant".to_owned(),
        Err(e) => format!("ERROR {e}"),
    }
}

/// The child: opens the vault, builds an authorizer with the HTTP refresher, then for each
/// `GO` line on stdin has its threads ask for a token at once and prints their outcomes on
/// one line (`ROUND o1|o2|...`); ends at `END` or end of input.
#[test]
fn child_main() {
    let (Ok(name), Ok(token_url)) = (std::env::var(ENV_VAULT), std::env::var(ENV_TOKEN_URL)) else {
        return;
    };
    let threads: usize = std::env::var(ENV_THREADS).unwrap().parse().unwrap();
    let lease_ms: u64 = std::env::var(ENV_LEASE_MS).unwrap().parse().unwrap();
    let url = postgres_test_url().unwrap();
    let backend = PostgresOptions::new().connect(&url, &name).unwrap();
    let vault = Vault::open_with_backend(backend, &raw_key(1)).unwrap();
    let ns = vault.namespace("tenant").unwrap();
    let refresher = HttpRefresher::refresh_token_grant(&token_url, "client-1")
        .unwrap()
        .client_secret(SecretString::from("secret-1"), ClientAuth::Basic);
    let auth = Authorizer::builder(&ns, "api", refresher)
        .margin(Duration::ZERO)
        .jitter(Duration::ZERO)
        .lease_time(Duration::from_millis(lease_ms))
        .lease_poll(Duration::from_millis(5))
        .retry_gap(Duration::from_millis(100), Duration::from_millis(100))
        .build()
        .unwrap();
    let stdout = std::io::stdout();
    writeln!(stdout.lock(), "READY").unwrap();
    for line in std::io::stdin().lines() {
        let line = line.unwrap();
        if line != "GO" {
            break;
        }
        let barrier = Arc::new(Barrier::new(threads));
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (auth, barrier) = (auth.clone(), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    barrier.wait();
                    outcome(&auth.token())
                })
            })
            .collect();
        let outcomes: Vec<String> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        writeln!(stdout.lock(), "ROUND {}", outcomes.join("|")).unwrap();
        stdout.lock().flush().unwrap();
    }
    drop(auth);
    vault.close().unwrap();
}

/// A child process: one vault handle and its authorizer, driven line by line.
struct Worker(Piped);

impl Worker {
    fn spawn(vault: &str, token_url: &str, threads: usize, lease: Duration) -> Self {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .args(["--exact", "child_main", "--nocapture", "--test-threads=1"])
            .env(ENV_VAULT, vault)
            .env(ENV_TOKEN_URL, token_url)
            .env(ENV_THREADS, threads.to_string())
            .env(ENV_LEASE_MS, lease.as_millis().to_string());
        let mut worker = Self(Piped::spawn(command));
        worker.0.after("READY");
        worker
    }

    fn go(&mut self) {
        self.0.send("GO");
    }

    /// The outcomes of the round started by [`go`](Self::go).
    fn round(&mut self) -> Vec<String> {
        self.0
            .after("ROUND")
            .split('|')
            .map(str::to_owned)
            .collect()
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.0.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn end(mut self) {
        self.0.send("END");
        assert!(self.0.finish(), "the child failed");
    }
}

/// A vault on the test server holding an expired grant with refresh token `rt-0`, which
/// the endpoint knows.
fn setup(server: &TokenServer) -> Option<String> {
    let url = postgres_test_url()?;
    let name = unique_name("refresh");
    let backend = PostgresOptions::new().connect(&url, &name).unwrap();
    let vault = Vault::create_with_backend(backend, &raw_key(1)).unwrap();
    let grant = Token::new("at-0".into())
        .with_refresh_token("rt-0".into())
        .with_expires_at(SystemTime::now() - Duration::from_secs(1));
    vault
        .namespace("tenant")
        .unwrap()
        .put("api", &grant)
        .unwrap();
    vault.close().unwrap();
    server.seed_refresh_token("rt-0");
    Some(name)
}

/// What is stored under the key, and how many records the namespace holds (2: a lease or a
/// mark is left beside the token).
fn stored(name: &str) -> (Token, u64) {
    let backend = PostgresOptions::new()
        .connect(&postgres_test_url().unwrap(), name)
        .unwrap();
    let vault = Vault::open_with_backend(backend, &raw_key(1)).unwrap();
    let ns = vault.namespace("tenant").unwrap();
    let token = ns.get::<Token>("api").unwrap().unwrap();
    let count = ns.record_count().unwrap();
    vault.close().unwrap();
    (token, count)
}

fn access(token: &Token) -> String {
    token.access_token().expose_secret().to_owned()
}

/// Waits until the newest token has expired (the endpoint issues one-second tokens).
fn let_expire() {
    std::thread::sleep(Duration::from_millis(1_100));
}

#[test]
fn herd_of_eight_processes_presents_each_refresh_token_once() {
    const PROCESSES: usize = 8;
    const THREADS: usize = 8;
    const ROUNDS: usize = 22;
    let server = TokenServer::start(Config {
        expires_in: Some(1),
        ..Config::default()
    });
    let Some(name) = setup(&server) else { return };
    let mut workers: Vec<Worker> = (0..PROCESSES)
        .map(|_| Worker::spawn(&name, &server.url(), THREADS, Duration::from_secs(30)))
        .collect();
    for round in 0..ROUNDS {
        if round == ROUNDS - 1 {
            // The last token lives long enough to be compared everywhere.
            server.set_expires_in(Some(3600));
        }
        for w in &mut workers {
            w.go();
        }
        let outcomes: Vec<String> = workers.iter_mut().flat_map(Worker::round).collect();
        assert_eq!(outcomes.len(), PROCESSES * THREADS);
        assert!(
            outcomes.iter().all(|o| o.starts_with("TOKEN ")),
            "round {round}: {outcomes:?}"
        );
        if round < ROUNDS - 1 {
            let_expire();
        } else {
            let newest = server.issued_access_tokens().last().cloned().unwrap();
            let expected = format!("TOKEN {newest}");
            assert!(
                outcomes.iter().all(|o| *o == expected),
                "every process ends with the newest token: {outcomes:?}"
            );
        }
    }
    for w in workers {
        w.end();
    }
    server.assert_no_reuse();
    assert_eq!(server.max_presentations(), 1);
    let rotations = server.issued_refresh_tokens().len();
    assert!(rotations >= 20, "{rotations} rotations");
    let (token, count) = stored(&name);
    assert_eq!(
        token.refresh_token().unwrap().expose_secret(),
        server.issued_refresh_tokens().last().unwrap()
    );
    assert_eq!(count, 1, "no lease left behind");
    eprintln!("herd: {rotations} rotations, each refresh token presented once");
}

/// Starts the paused holder: a process whose refresh request the endpoint holds, then
/// SIGSTOPped there. Its lease lasts `lease`.
fn paused_holder(server: &TokenServer, name: &str, lease: Duration) -> Worker {
    server.hold_next();
    let mut holder = Worker::spawn(name, &server.url(), 1, lease);
    holder.go();
    assert!(
        server.wait_held(1, Duration::from_secs(30)),
        "no request held"
    );
    holder.signal("-STOP");
    holder
}

#[test]
fn a_paused_holder_is_fenced_off_and_adopts_what_the_others_stored() {
    let lease = Duration::from_secs(2);
    let server = TokenServer::start(Config {
        expires_in: Some(1),
        ..Config::default()
    });
    let Some(name) = setup(&server) else { return };
    let mut holder = paused_holder(&server, &name, lease);

    // The others wait for the lease, take it over after its end and move on.
    let mut others: Vec<Worker> = (0..3)
        .map(|_| Worker::spawn(&name, &server.url(), 4, lease))
        .collect();
    for round in 0..6 {
        if round == 5 {
            server.set_expires_in(Some(3600));
        }
        for w in &mut others {
            w.go();
        }
        let outcomes: Vec<String> = others.iter_mut().flat_map(Worker::round).collect();
        assert!(
            outcomes.iter().all(|o| o.starts_with("TOKEN ")),
            "round {round}: {outcomes:?}"
        );
        if round < 5 {
            let_expire();
        }
    }
    let rotations = server.issued_refresh_tokens().len();
    assert!(rotations >= 5, "the others moved on: {rotations} rotations");
    let newest = server.issued_access_tokens().last().cloned().unwrap();

    // The held request reaches the server now: rt-0 was spent by the first taker, so it is
    // refused. The resumed holder writes nothing and adopts the stored winner.
    server.release_held();
    holder.signal("-CONT");
    assert_eq!(holder.round(), [format!("TOKEN {newest}")]);
    holder.end();
    for w in others {
        w.end();
    }

    assert_eq!(
        server.presentations("rt-0"),
        2,
        "one per holder of its lease"
    );
    assert_eq!(
        server.reuses(),
        ["rt-0"],
        "the paused holder's, and only it"
    );
    for rt in server.issued_refresh_tokens() {
        assert!(server.presentations(&rt) <= 1, "{rt} presented twice");
    }
    let (token, count) = stored(&name);
    assert_eq!(access(&token), newest);
    let live = token.refresh_token().unwrap().expose_secret().to_owned();
    assert!(
        server.is_live(&live),
        "the stored refresh token is the live one"
    );
    assert_eq!(count, 1, "no lease or mark left");
}

#[test]
fn a_holder_paused_after_the_exchange_stores_the_only_valid_answer() {
    let lease = Duration::from_secs(2);
    let server = TokenServer::start(Config {
        expires_in: Some(3600),
        ..Config::default()
    });
    let Some(name) = setup(&server) else { return };
    let mut holder = paused_holder(&server, &name, lease);
    // The endpoint exchanges rt-0 for the paused holder now; its answer waits in the socket.
    server.release_held();
    assert!(
        wait_until(|| server.issued_refresh_tokens().len() == 1),
        "the held request was not processed"
    );

    // After the lease's end another process takes it over: rt-0 is spent, so it is refused,
    // and the grant is marked (never removed) under the taken-over lease.
    let mut other = Worker::spawn(&name, &server.url(), 2, lease);
    other.go();
    assert_eq!(
        other.round(),
        ["ERROR invalid_grant", "ERROR invalid_grant"]
    );
    let (token, count) = stored(&name);
    assert_eq!(access(&token), "at-0");
    assert_eq!(count, 2, "the mark stays beside the record");

    // The holder, resumed with the only valid successor, stores it over the mark.
    holder.signal("-CONT");
    let issued = server.issued_access_tokens();
    assert_eq!(holder.round(), [format!("TOKEN {}", issued[0])]);
    holder.end();
    std::thread::sleep(Duration::from_millis(150)); // past the other's retry gap
    other.go();
    let expected = format!("TOKEN {}", issued[0]);
    assert_eq!(other.round(), [expected.clone(), expected]);
    other.end();

    assert_eq!(server.presentations("rt-0"), 2);
    let (token, count) = stored(&name);
    let live = token.refresh_token().unwrap().expose_secret().to_owned();
    assert!(
        server.is_live(&live),
        "the stored refresh token is the live one"
    );
    assert_eq!(count, 1);
}

fn wait_until(condition: impl Fn() -> bool) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}
