//! The authorizer across processes: processes taking turns on one vault directory refresh a
//! grant once, and a process killed in the middle of a refresh leaves a lease that the next
//! one takes over after its end.
//!
//! The test binary runs itself as the child processes (`--exact child_main`, selected by the
//! environment variables below). Each child's refresher appends a line to a shared counter
//! file before "calling the server", so the parent counts refreshes across processes.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};

use support::raw_key;
use tokenvault::backend::SledOptions;
use tokenvault::oauth::TokenError;
use tokenvault::oauth::{Authorizer, RefreshError};
use tokenvault::secrecy::ExposeSecret;
use tokenvault::{Token, Vault, VaultOptions};

const ENV_DIR: &str = "TOKENVAULT_AUTH_CHILD_DIR";
const ENV_MODE: &str = "TOKENVAULT_AUTH_CHILD_MODE";

fn counter(dir: &Path) -> PathBuf {
    dir.join("refreshes.log")
}

fn refreshes(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(counter(dir))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The child: opens the vault (waiting for the directory while another process holds it),
/// asks its authorizer for a token, prints the outcome, closes the vault.
#[test]
fn child_main() {
    let (Ok(dir), Ok(mode)) = (std::env::var(ENV_DIR), std::env::var(ENV_MODE)) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let vault = VaultOptions::new()
        .sled(SledOptions::new().lock_timeout(Duration::from_secs(60)))
        .open(dir.join("vault"), &raw_key(1))
        .unwrap();
    let ns = vault.namespace("n").unwrap();
    let log = counter(&dir);
    let die = mode == "die";
    let refresher = move |current: Option<&Token>| -> Result<Token, RefreshError> {
        let rt = current
            .and_then(Token::refresh_token)
            .map(|r| r.expose_secret().to_owned())
            .unwrap_or_default();
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        writeln!(f, "{} presented {rt}", std::process::id()).unwrap();
        f.sync_all().unwrap();
        if die {
            println!("IN_REFRESH");
            std::io::stdout().flush().unwrap();
            loop {
                std::thread::sleep(Duration::from_secs(60));
            }
        }
        std::thread::sleep(Duration::from_millis(200));
        let pid = std::process::id();
        Ok(Token::new(format!("at-{pid}").into())
            .with_refresh_token(format!("rt-{pid}").into())
            .with_expires_at(SystemTime::now() + Duration::from_secs(3600)))
    };
    let auth = Authorizer::builder(&ns, "api", refresher)
        .lease_time(Duration::from_secs(2))
        .lease_poll(Duration::from_millis(10))
        .build()
        .unwrap();
    match auth.token() {
        Ok(token) => println!("TOKEN {}", token.access_token().expose_secret()),
        Err(TokenError::ReauthenticationRequired { .. }) => println!("REAUTH"),
        Err(e) => println!("ERROR {e}"),
    }
    drop(auth);
    vault.close().unwrap();
}

fn spawn(dir: &Path, mode: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_main", "--nocapture", "--test-threads=1"])
        .env(ENV_DIR, dir)
        .env(ENV_MODE, mode)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// The child's outcome line (`TOKEN ...`, `REAUTH`, `ERROR ...`).
fn outcome(child: Child) -> String {
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "child failed: {output:?}");
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| l.trim_start_matches("test child_main ... ").to_owned())
        .find(|l| l.starts_with("TOKEN") || l.starts_with("REAUTH") || l.starts_with("ERROR"))
        .unwrap_or_else(|| panic!("no outcome line"))
}

fn setup(expired_grant: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let vault = Vault::create(dir.path().join("vault"), &raw_key(1)).unwrap();
    store_grant(&vault, expired_grant);
    vault.close().unwrap();
    dir
}

fn store_grant(vault: &Vault, rt: &str) {
    vault
        .namespace("n")
        .unwrap()
        .put(
            "api",
            &Token::new("at-0".into())
                .with_refresh_token(rt.to_owned().into())
                .with_expires_at(SystemTime::now() - Duration::from_secs(1)),
        )
        .unwrap();
}

#[test]
fn two_processes_taking_turns_refresh_once() {
    let dir = setup("rt-0");
    let (a, b) = (spawn(dir.path(), "normal"), spawn(dir.path(), "normal"));
    let (a, b) = (outcome(a), outcome(b));
    assert!(a.starts_with("TOKEN at-"), "{a}");
    assert_eq!(a, b, "the second process uses the first one's refresh");
    let log = refreshes(dir.path());
    assert_eq!(log.len(), 1, "{log:?}");
    assert!(log[0].ends_with("presented rt-0"), "{log:?}");
}

#[test]
fn a_process_killed_mid_refresh_has_its_lease_taken_over_after_its_end() {
    let dir = setup("rt-0");
    // The first process takes the lease, "calls the server", and is killed there.
    let mut dying = spawn(dir.path(), "die");
    let stdout = dying.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    loop {
        let line = lines.next().expect("the child ended early").unwrap();
        if line.contains("IN_REFRESH") {
            break;
        }
    }
    dying.kill().unwrap();
    dying.wait().unwrap();

    // The next process finds the lease, waits for its end, takes it over and refreshes: rt-0
    // is presented once per holder of its lease, the bound when a holder dies mid-refresh.
    let next = outcome(spawn(dir.path(), "normal"));
    assert!(next.starts_with("TOKEN at-"), "{next}");
    let log = refreshes(dir.path());
    assert_eq!(log.len(), 2, "{log:?}");
    assert!(log.iter().all(|l| l.ends_with("presented rt-0")), "{log:?}");

    // The one after serves the stored token without refreshing.
    let after = outcome(spawn(dir.path(), "normal"));
    assert_eq!(after, next);
    assert_eq!(refreshes(dir.path()).len(), 2);
}
