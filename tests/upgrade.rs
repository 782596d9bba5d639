//! The upgrade from format 1 under process kills: a format-1 vault on disk (2,000 tokens in
//! 20 namespaces, written as tokenvault before format 2 wrote them) is opened by a child
//! process, which upgrades it, and the child is killed with SIGKILL at a random moment of
//! the upgrade; sometimes a second child, opening the interrupted state, is killed too (a
//! crash during the recovery). Then the parent opens the vault: the upgrade resumes, every
//! token is there with its value, nothing is damaged, and what an interrupted upgrade left
//! behind is only what `purge_orphans` removes.
//!
//! `TOKENVAULT_UPGRADE_KILLS=N` sets the number of kills (default 24).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use support::{copy_dir, raw_key};
use tokenvault::backend::{Backend, SledBackend, SledOptions};
use tokenvault::secrecy::ExposeSecret;
use tokenvault::test_hooks::format_v1::write_v1_vault;
use tokenvault::{Error, Token, Vault, VaultOptions};

const ENV_DIR: &str = "TOKENVAULT_UPGRADE_CHILD_DIR";
const NAMESPACES: usize = 20;
const PER_NAMESPACE: usize = 100;

fn token(ns: usize, i: usize) -> Token {
    Token::new(format!("at-{ns}-{i}").into())
        .with_refresh_token(format!("rt-{ns}-{i}").into())
        .with_scopes(["openid"])
}

fn names() -> Vec<String> {
    (0..NAMESPACES).map(|n| format!("tenant-{n:02}")).collect()
}

/// The child: opens (and so upgrades) the vault, says so, closes it.
#[test]
fn child_main() {
    let Ok(dir) = std::env::var(ENV_DIR) else {
        return;
    };
    println!("@OPENING");
    let vault = VaultOptions::new()
        .sled(SledOptions::new().lock_timeout(Duration::from_secs(30)))
        .open(PathBuf::from(dir), &raw_key(1))
        .unwrap();
    println!("@UPGRADED {}", vault.format_version());
    vault.close().unwrap();
}

fn spawn(dir: &Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_main", "--nocapture", "--test-threads=1"])
        .env(ENV_DIR, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Runs a child to the end; returns how long its open took.
fn run_to_end(dir: &Path) -> Duration {
    let mut child = spawn(dir);
    let out = BufReader::new(child.stdout.take().unwrap());
    let mut opening = None;
    let mut took = None;
    for line in out.lines() {
        let line = line.unwrap();
        if line.contains("@OPENING") {
            opening = Some(Instant::now());
        }
        if line.contains("@UPGRADED") {
            took = opening.map(|t| t.elapsed());
        }
    }
    assert!(child.wait().unwrap().success());
    took.expect("the child upgraded")
}

/// Spawns a child and kills it `after` its open began.
fn kill_during_open(dir: &Path, after: Duration) {
    let mut child = spawn(dir);
    let mut out = BufReader::new(child.stdout.take().unwrap());
    // libtest's own lines come first ("running 1 test", "test child_main ... ").
    loop {
        let mut line = String::new();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "the child ended early"
        );
        if line.contains("@OPENING") {
            break;
        }
    }
    std::thread::sleep(after);
    let _ = child.kill();
    let _ = child.wait();
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Checks the vault at `dir` after the kills; returns whether it was still format 1.
fn check(dir: &Path) -> bool {
    let still_v1 = matches!(
        VaultOptions::new().upgrade(false).open(dir, &raw_key(1)),
        Err(Error::UpgradeRequired { found: 1 })
    );
    let vault = Vault::open(dir, &raw_key(1)).unwrap();
    assert_eq!(vault.format_version(), 2);
    assert_eq!(vault.namespaces().unwrap(), names());
    for (n, name) in names().iter().enumerate() {
        let ns = vault.namespace(name).unwrap();
        assert_eq!(ns.keys().unwrap().len(), PER_NAMESPACE, "{name}");
        for i in (0..PER_NAMESPACE).step_by(7) {
            let t: Token = ns.get(&format!("k{i:03}")).unwrap().unwrap();
            assert!(t.same_as(&token(n, i)), "{name}/k{i:03}");
            assert_eq!(
                t.refresh_token().unwrap().expose_secret(),
                &format!("rt-{n}-{i}")
            );
        }
    }
    // Only format-1 trees the upgrade did not drop may be left, and nothing is damaged.
    let report = vault.verify(|_| {}).unwrap();
    assert_eq!(report.orphans, 0, "{report}");
    assert!(report.damaged_entries.is_empty(), "{report}");
    assert!(
        report
            .namespaces
            .iter()
            .all(|n| n.damaged.is_empty() && n.missing == 0 && n.manifest_damaged.is_none()),
        "{report}"
    );
    vault.purge_orphans().unwrap();
    assert!(vault.verify(|_| {}).unwrap().is_clean());
    vault.close().unwrap();
    still_v1
}

#[test]
fn an_upgrade_killed_at_any_moment_resumes_and_loses_nothing() {
    if std::env::var(ENV_DIR).is_ok() {
        return;
    }
    let kills: usize = std::env::var("TOKENVAULT_UPGRADE_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(24);
    let tmp = tempfile::tempdir().unwrap();
    let pristine = tmp.path().join("pristine");
    {
        let backend = SledBackend::create(&pristine).unwrap();
        let content: Vec<(String, Vec<(String, Token)>)> = names()
            .into_iter()
            .enumerate()
            .map(|(n, name)| {
                let tokens = (0..PER_NAMESPACE)
                    .map(|i| (format!("k{i:03}"), token(n, i)))
                    .collect();
                (name, tokens)
            })
            .collect();
        write_v1_vault(&backend, &raw_key(1), &content).unwrap();
        backend.close().unwrap();
    }
    // How long a whole upgrade takes in a child, to spread the kills over it.
    let work = tmp.path().join("work");
    copy_dir(&pristine, &work);
    let full = run_to_end(&work);
    assert!(!check(&work));
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    let mut rng = Rng(seed);
    let (mut before_switch, mut after_switch) = (0, 0);
    for round in 0..kills {
        let work = tmp.path().join(format!("round-{round}"));
        copy_dir(&pristine, &work);
        let span = full.as_micros() as u64 + 1;
        kill_during_open(&work, Duration::from_micros(rng.next() % span));
        if rng.next().is_multiple_of(3) {
            // A crash while recovering from the crash.
            kill_during_open(&work, Duration::from_micros(rng.next() % span));
        }
        if check(&work) {
            before_switch += 1;
        } else {
            after_switch += 1;
        }
        std::fs::remove_dir_all(&work).unwrap();
    }
    eprintln!(
        "upgrade kills: {kills} (seed {seed}, a whole upgrade {full:?}): {before_switch} left \
         format 1, {after_switch} format 2; every token there each time"
    );
    assert!(
        before_switch > 0,
        "no kill landed before the header switched"
    );
}
