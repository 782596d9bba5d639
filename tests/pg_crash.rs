//! PostgreSQL clusters of the tests' own (initdb in a temporary directory, as the
//! `postgres` user when run as root), for what the shared test server must not go through:
//! a standby (reported as asynchronous until it is made synchronous), and the server killed
//! under load (issue 15): 4 writer processes
//! writing acknowledged, increasing values to one vault and refreshing one shared grant
//! (one-second tokens from the counting token endpoint on 127.0.0.1), and the whole cluster
//! killed with SIGKILL (every process of it, so that the restart does not trip over the old
//! shared memory) at least 50 times, restarted each time. Afterwards: every write acknowledged
//! before a kill is there, no refresh token was presented twice and the stored one is the
//! newest the endpoint issued, nothing is reported damaged, and the writers recovered without
//! being restarted.
//!
//! Needs Debian's PostgreSQL 15 server programs, which `scripts/pg-test-server start` names
//! in `TOKENVAULT_TEST_PG_BIN` (`.ci/run` starts it); without them the test fails under
//! `CI=true` and is skipped otherwise. `TOKENVAULT_PG_KILLS` sets the number of kills.
#![cfg(all(feature = "postgres", feature = "http", unix))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::token_server::{Config, TokenServer};
use support::{raw_key, small_token};
use tokenvault::backend::PostgresOptions;
use tokenvault::oauth::{Authorizer, ClientAuth, HttpRefresher, TokenError};
use tokenvault::secrecy::{ExposeSecret, SecretString};
use tokenvault::{Token, Vault};

const ENV_CHILD: &str = "TOKENVAULT_PG_CRASH_CHILD";
const ENV_URL: &str = "TOKENVAULT_PG_CRASH_URL";
const ENV_TOKEN_URL: &str = "TOKENVAULT_PG_CRASH_TOKEN_URL";
const WRITERS: usize = 4;

/// A cluster of the test's own.
struct Cluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
}

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

/// A TCP port free on 127.0.0.1 now.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Makes `dir` the `postgres` user's when running as root (its server programs refuse root).
fn give_to_postgres(dir: &Path) {
    if is_root() {
        let status = Command::new("chown")
            .args(["-R", "postgres:"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(status.success());
    }
}

fn as_owner(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

impl Cluster {
    fn create(bin: PathBuf) -> Self {
        Self::create_with(bin, "")
    }

    /// A cluster whose `postgresql.conf` ends with `extra`.
    fn create_with(bin: PathBuf, extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        give_to_postgres(dir.path());
        let data = dir.path().join("data");
        let out = as_owner(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let conf = format!(
            "listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\n\
             fsync = on\nsynchronous_commit = on\n{extra}",
            dir.path().display()
        );
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .unwrap();
        std::io::Write::write_all(&mut file, conf.as_bytes()).unwrap();
        let cluster = Self { bin, dir, port };
        cluster.start();
        cluster
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn start(&self) {
        let out = as_owner(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.path().join("server.log"))
            .args(["-w", "-t", "60", "start"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl start: {}{}",
            String::from_utf8_lossy(&out.stdout),
            std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
        );
    }

    /// SIGKILL to every process of the cluster: the postmaster and all its children.
    fn kill(&self) {
        let pid_file = std::fs::read_to_string(self.data().join("postmaster.pid")).unwrap();
        let postmaster: i32 = pid_file.lines().next().unwrap().trim().parse().unwrap();
        let children = Command::new("pgrep")
            .args(["-P", &postmaster.to_string()])
            .output()
            .unwrap();
        let mut pids = vec![postmaster];
        pids.extend(
            String::from_utf8_lossy(&children.stdout)
                .lines()
                .filter_map(|l| l.trim().parse::<i32>().ok()),
        );
        for pid in &pids {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
        // Wait until they are all gone.
        let deadline = Instant::now() + Duration::from_secs(10);
        while pids
            .iter()
            .any(|pid| Path::new(&format!("/proc/{pid}")).exists())
        {
            assert!(Instant::now() < deadline, "the cluster did not die");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres?sslmode=disable",
            self.port
        )
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = as_owner(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

/// A writer: writes records 1, 2, 3, ... (a new key each, holding its number), each until
/// acknowledged, and prints each acknowledged number; errors while the server is down are
/// retried with the same record. After every fifth write it asks its authorizer for the shared
/// grant's token and prints the access token it got.
#[test]
fn child_main() {
    let Ok(n) = std::env::var(ENV_CHILD) else {
        return;
    };
    let url = std::env::var(ENV_URL).unwrap();
    let options = PostgresOptions::new().connect_timeout(Duration::from_secs(2));
    let vault = loop {
        if let Ok(backend) = options.connect(&url, "crash") {
            if let Ok(vault) = Vault::open_with_backend(backend, &raw_key(1)) {
                break vault;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let ns = vault.namespace(&format!("writer-{n}")).unwrap();
    let refresher =
        HttpRefresher::refresh_token_grant(&std::env::var(ENV_TOKEN_URL).unwrap(), "client-1")
            .unwrap()
            .client_secret(SecretString::from("secret-1"), ClientAuth::Basic);
    let auth = Authorizer::builder(&vault.namespace("shared").unwrap(), "api", refresher)
        .margin(Duration::ZERO)
        .jitter(Duration::ZERO)
        .lease_poll(Duration::from_millis(5))
        .retry_gap(Duration::from_millis(50), Duration::from_millis(200))
        .build()
        .unwrap();
    let mut value = 1u64;
    loop {
        match ns.put(&format!("k{value}"), &small_token(&value.to_string())) {
            Ok(_) => {
                println!("ack {value}");
                if value.is_multiple_of(5) {
                    match auth.token() {
                        Ok(token) => println!("token {}", token.access_token().expose_secret()),
                        Err(e @ TokenError::ReauthenticationRequired { .. }) => {
                            panic!("writer {n}: {e}")
                        }
                        Err(TokenError::Vault(e @ tokenvault::Error::Damaged(_))) => {
                            panic!("writer {n}: damage reported: {e}")
                        }
                        Err(_) => {}
                    }
                }
                value += 1;
            }
            Err(e) => {
                assert!(
                    !matches!(e, tokenvault::Error::Damaged(_)),
                    "writer {n}: damage reported: {e}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

struct Writer {
    child: Child,
    acked: Arc<Mutex<u64>>,
    /// The access tokens its authorizer served, in order.
    tokens: Arc<Mutex<Vec<String>>>,
}

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_writer(n: usize, url: &str, token_url: &str) -> Writer {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_main", "--nocapture", "--test-threads=1"])
        .env(ENV_CHILD, n.to_string())
        .env(ENV_URL, url)
        .env(ENV_TOKEN_URL, token_url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let acked = Arc::new(Mutex::new(0u64));
    let tokens = Arc::new(Mutex::new(Vec::new()));
    let stdout = child.stdout.take().unwrap();
    let (seen, served) = (acked.clone(), tokens.clone());
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(v) = line.strip_prefix("ack ") {
                *seen.lock().unwrap() = v.trim().parse().unwrap();
            } else if let Some(t) = line.strip_prefix("token ") {
                served.lock().unwrap().push(t.trim().to_owned());
            }
        }
    });
    Writer {
        child,
        acked,
        tokens,
    }
}

/// `tokenvault doctor` on a vault of `cluster`: its output, after checking its exit code.
#[cfg(feature = "cli")]
fn doctor(cluster: &Cluster, expect: i32) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_tokenvault"))
        .args(["doctor", "--vault"])
        .arg(format!("{}&vault=standby", cluster.url()))
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(expect), "{all}");
    all
}

/// The server programs (`TOKENVAULT_TEST_PG_BIN`), or `None` outside CI without them.
fn server_programs() -> Option<PathBuf> {
    match std::env::var("TOKENVAULT_TEST_PG_BIN") {
        Ok(bin) => Some(PathBuf::from(bin)),
        Err(_) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("TOKENVAULT_TEST_PG_BIN is not set: run scripts/pg-test-server start")
        }
        Err(_) => {
            eprintln!("skipped: no PostgreSQL server programs (scripts/pg-test-server start)");
            None
        }
    }
}

#[test]
fn an_asynchronous_standby_is_reported_until_it_is_synchronous() {
    if std::env::var(ENV_CHILD).is_ok() {
        return;
    }
    let Some(bin) = server_programs() else { return };
    let primary = Cluster::create_with(bin.clone(), "wal_level = replica\n");
    let backend = PostgresOptions::new()
        .connect(&primary.url(), "standby")
        .unwrap();
    let none = backend.replication().unwrap();
    assert!(none.standbys.is_empty(), "{none:?}");

    // A streaming standby of it, in a directory of its own, on another port.
    let standby_dir = tempfile::tempdir().unwrap();
    give_to_postgres(standby_dir.path());
    let data = standby_dir.path().join("data");
    let out = as_owner(&bin.join("pg_basebackup"))
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &primary.port.to_string(),
            "-U",
            "postgres",
            "-R",
            "-D",
        ])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pg_basebackup: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let port = free_port();
    let conf = format!(
        "port = {port}\nunix_socket_directories = '{}'\ncluster_name = 'standby_one'\n",
        standby_dir.path().display()
    );
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(data.join("postgresql.conf"))
        .unwrap();
    std::io::Write::write_all(&mut file, conf.as_bytes()).unwrap();
    let standby = Cluster {
        bin: bin.clone(),
        dir: standby_dir,
        port,
    };
    standby.start();

    // Asynchronous: a failover could lose acknowledged commits.
    let deadline = Instant::now() + Duration::from_secs(30);
    let report = loop {
        let report = backend.replication().unwrap();
        if !report.standbys.is_empty() {
            break report;
        }
        assert!(Instant::now() < deadline, "the standby never connected");
        std::thread::sleep(Duration::from_millis(50));
    };
    let flagged: Vec<_> = report.asynchronous_standbys().collect();
    assert_eq!(flagged.len(), 1, "{report:?}");
    assert_eq!(flagged[0].name, "standby_one");
    assert_eq!(flagged[0].sync_state, "async");
    // `tokenvault doctor` says so, with exit code 1.
    #[cfg(feature = "cli")]
    assert!(doctor(&primary, 1).contains("1 asynchronous standby"));

    // Made synchronous: nothing left to report.
    let mut admin = postgres::Config::new();
    admin
        .host("127.0.0.1")
        .port(primary.port)
        .user("postgres")
        .dbname("postgres");
    let mut admin = admin.connect(postgres::NoTls).unwrap();
    admin
        .batch_execute("ALTER SYSTEM SET synchronous_standby_names = 'standby_one'")
        .unwrap();
    admin.batch_execute("SELECT pg_reload_conf()").unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let report = backend.replication().unwrap();
        if report.asynchronous_standbys().next().is_none() {
            assert_eq!(report.synchronous_standby_names, "standby_one");
            assert_eq!(report.standbys[0].sync_state, "sync");
            #[cfg(feature = "cli")]
            assert!(doctor(&primary, 0).contains("standby_one (sync)"));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the standby never became synchronous: {report:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn every_acknowledged_write_survives_server_kills() {
    if std::env::var(ENV_CHILD).is_ok() {
        return;
    }
    let Some(bin) = server_programs() else { return };
    let kills: usize = std::env::var("TOKENVAULT_PG_KILLS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(50);
    let cluster = Cluster::create(bin);
    let url = cluster.url();
    let server = TokenServer::start(Config {
        expires_in: Some(1),
        ..Config::default()
    });
    server.seed_refresh_token("rt-0");
    let vault = Vault::create_with_backend(
        PostgresOptions::new().connect(&url, "crash").unwrap(),
        &raw_key(1),
    )
    .unwrap();
    let grant = Token::new("at-0".into())
        .with_refresh_token("rt-0".into())
        .with_expires_at(std::time::SystemTime::now() - Duration::from_secs(1));
    vault
        .namespace("shared")
        .unwrap()
        .put("api", &grant)
        .unwrap();
    vault.close().unwrap();
    let writers: Vec<Writer> = (0..WRITERS)
        .map(|n| spawn_writer(n, &url, &server.url()))
        .collect();
    let total =
        |writers: &[Writer]| -> u64 { writers.iter().map(|w| *w.acked.lock().unwrap()).sum() };
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    for kill in 0..kills {
        // Let the writers get some writes in, then kill at a pseudo-random moment.
        let before = total(&writers);
        let deadline = Instant::now() + Duration::from_secs(60);
        while total(&writers) < before + WRITERS as u64 {
            assert!(
                Instant::now() < deadline,
                "the writers made no progress after kill {kill}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        std::thread::sleep(Duration::from_millis(x % 150));
        cluster.kill();
        cluster.start();
    }
    // The writers recovered from the last kill on their own.
    let after_last = total(&writers);
    let deadline = Instant::now() + Duration::from_secs(60);
    while total(&writers) < after_last + WRITERS as u64 {
        assert!(
            Instant::now() < deadline,
            "the writers did not recover from the last kill"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let refreshed_before_the_end = server.issued_refresh_tokens().len();
    // The last tokens live an hour: once every writer has been served the newest one, no
    // refresh is in flight, and the writers can be stopped.
    server.set_expires_in(Some(3600));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let newest = server.issued_access_tokens().last().cloned();
        let settled = server.issued_refresh_tokens().len() > refreshed_before_the_end
            && writers
                .iter()
                .all(|w| w.tokens.lock().unwrap().last() == newest.as_ref());
        if settled {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the writers' refreshes did not recover from the last kill"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Stop them, then read: every acknowledged record is there with its value (the one in
    // flight at the stop may have landed too, or not).
    let served: usize = writers.iter().map(|w| w.tokens.lock().unwrap().len()).sum();
    let acked: Vec<u64> = writers
        .into_iter()
        .map(|mut w| {
            let _ = w.child.kill();
            let _ = w.child.wait();
            let v = *w.acked.lock().unwrap();
            v
        })
        .collect();
    let vault = Vault::open_with_backend(
        PostgresOptions::new().connect(&url, "crash").unwrap(),
        &raw_key(1),
    )
    .unwrap();
    for (n, acked) in acked.iter().enumerate() {
        let ns = vault.namespace(&format!("writer-{n}")).unwrap();
        for value in 1..=*acked {
            let stored: Token = ns
                .get(&format!("k{value}"))
                .unwrap()
                .unwrap_or_else(|| panic!("writer {n}: acknowledged record {value} is gone"));
            assert_eq!(stored.access_token().expose_secret(), value.to_string());
        }
        let keys = ns.keys().unwrap().len() as u64;
        assert!(
            keys == *acked || keys == acked + 1,
            "writer {n}: {keys} records, {acked} acknowledged"
        );
    }
    // No refresh token was presented twice, and the stored one is the newest issued.
    server.assert_no_reuse();
    let rotations = server.issued_refresh_tokens().len();
    assert!(rotations >= 10, "only {rotations} refreshes");
    let stored: Token = vault
        .namespace("shared")
        .unwrap()
        .get("api")
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.refresh_token().unwrap().expose_secret(),
        server.issued_refresh_tokens().last().unwrap()
    );
    let report = vault.verify(|_| {}).unwrap();
    assert!(report.is_clean(), "{report}");
    eprintln!(
        "{kills} kills; acknowledged writes per writer: {acked:?}; {rotations} refreshes, \
         {served} tokens served, each refresh token presented once; all there, nothing damaged"
    );
}
