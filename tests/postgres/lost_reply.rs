//! Lost replies: a TCP proxy on 127.0.0.1 between the backend and the server that, when
//! armed, forwards a commit (the `Sync` after a write statement, or a `COMMIT`) and then cuts
//! the connection without passing the server's answer on. The backend must settle what
//! happened by reading back: no write lost, none applied twice.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::{raw_key, small_token};
use tokenvault::backend::PostgresOptions;
use tokenvault::secrecy::ExposeSecret;
use tokenvault::{Token, Vault};

use super::{server_url, unique_vault};

/// The proxy: how many commits to cut still, and how many it cut.
struct Proxy {
    port: u16,
    armed: Arc<AtomicUsize>,
    cut: Arc<AtomicUsize>,
}

impl Proxy {
    fn start(server_port: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let armed = Arc::new(AtomicUsize::new(0));
        let cut = Arc::new(AtomicUsize::new(0));
        let (a, c) = (armed.clone(), cut.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let server = TcpStream::connect(("127.0.0.1", server_port)).unwrap();
                relay(client, server, a.clone(), c.clone());
            }
        });
        Self { port, armed, cut }
    }

    fn arm(&self, commits: usize) {
        self.armed.store(commits, Ordering::SeqCst);
    }
}

/// Reads one frontend message: (type, whole message bytes). The first message of a
/// connection (startup, or a TLS/cancel request) has no type byte.
// PostgreSQL's wire protocol frames its messages with big-endian lengths.
#[allow(clippy::big_endian_bytes)]
fn read_message(stream: &mut TcpStream, first: bool) -> Option<(u8, Vec<u8>)> {
    let mut head = vec![0u8; if first { 4 } else { 5 }];
    stream.read_exact(&mut head).ok()?;
    let len_at = usize::from(!first);
    let len = u32::from_be_bytes(head[len_at..len_at + 4].try_into().unwrap()) as usize;
    let mut body = vec![0u8; len - 4];
    stream.read_exact(&mut body).ok()?;
    let kind = if first { 0 } else { head[0] };
    head.extend_from_slice(&body);
    Some((kind, head))
}

/// The NUL-terminated string at the start of `bytes`.
fn cstr(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

fn is_write(sql: &str) -> bool {
    let sql = sql.trim_start().to_ascii_uppercase();
    ["INSERT", "UPDATE", "DELETE"]
        .iter()
        .any(|w| sql.starts_with(w))
}

fn relay(client: TcpStream, server: TcpStream, armed: Arc<AtomicUsize>, cut: Arc<AtomicUsize>) {
    // Message by message, without Nagle's delay (40 ms per exchange otherwise).
    client.set_nodelay(true).unwrap();
    server.set_nodelay(true).unwrap();
    let silenced = Arc::new(AtomicBool::new(false));
    // Server to client: bytes as they come, unless the connection is being cut.
    {
        let (mut from, mut to) = (server.try_clone().unwrap(), client.try_clone().unwrap());
        let silenced = silenced.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 16 * 1024];
            while let Ok(n) = from.read(&mut buf) {
                if n == 0 || silenced.load(Ordering::SeqCst) || to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            let _ = to.shutdown(Shutdown::Both);
        });
    }
    // Client to server: message by message, watching for commits.
    std::thread::spawn(move || {
        let (mut from, mut to) = (client, server);
        let statements: Mutex<HashMap<String, String>> = Mutex::default();
        let mut pending_write = false;
        let mut in_transaction = false;
        let mut first = true;
        while let Some((kind, message)) = read_message(&mut from, first) {
            first = false;
            let body = &message[5.min(message.len())..];
            let mut commit = false;
            match kind {
                // Parse: statement name, then its SQL.
                b'P' => {
                    let name = cstr(body);
                    let sql = cstr(&body[name.len() + 1..]);
                    statements.lock().unwrap().insert(name, sql);
                }
                // Bind: portal name, then statement name.
                b'B' => {
                    let portal = cstr(body);
                    let name = cstr(&body[portal.len() + 1..]);
                    if statements
                        .lock()
                        .unwrap()
                        .get(&name)
                        .is_some_and(|s| is_write(s))
                    {
                        pending_write = true;
                    }
                }
                // A Sync commits a write outside an explicit transaction.
                b'S' => commit = std::mem::take(&mut pending_write) && !in_transaction,
                b'Q' => {
                    let sql = cstr(body).trim().to_ascii_uppercase();
                    if sql.starts_with("BEGIN") || sql.starts_with("START TRANSACTION") {
                        in_transaction = true;
                    } else if sql == "COMMIT" || sql == "ROLLBACK" {
                        in_transaction = false;
                        commit = sql == "COMMIT";
                    }
                }
                _ => {}
            }
            let cutting = commit
                && armed
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
            if cutting {
                silenced.store(true, Ordering::SeqCst);
                cut.fetch_add(1, Ordering::SeqCst);
            }
            if to.write_all(&message).is_err() {
                break;
            }
            if cutting {
                // Let the server commit, then drop the connection before any answer.
                std::thread::sleep(Duration::from_millis(100));
                break;
            }
        }
        let _ = from.shutdown(Shutdown::Both);
        let _ = to.shutdown(Shutdown::Both);
    });
}

fn through_proxy(url: &str) -> (Proxy, String) {
    let port: u16 = url
        .split("@127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|p| p.parse().ok())
        .expect("the test server's URL names 127.0.0.1:port");
    let proxy = Proxy::start(port);
    // The password file names the server's port: give it the proxy's as well.
    let proxied = url.replace(&format!(":{port}/"), &format!(":{}/", proxy.port));
    (proxy, proxied)
}

fn proxied_password_file(proxy: &Proxy, dir: &std::path::Path) -> std::path::PathBuf {
    let original = std::fs::read_to_string(std::env::var("PGPASSFILE").unwrap()).unwrap();
    let password = original.trim_end().rsplit(':').next().unwrap().to_owned();
    let path = dir.join("pgpass");
    std::fs::write(
        &path,
        format!("127.0.0.1:{}:*:tokenvault:{password}\n", proxy.port),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

fn access(vault: &Vault, ns: &str, key: &str) -> Option<String> {
    vault
        .namespace(ns)
        .unwrap()
        .get::<Token>(key)
        .unwrap()
        .map(|t| t.access_token().expose_secret().to_owned())
}

#[test]
fn writes_whose_reply_is_lost_are_settled_by_reading_back() {
    let Some(url) = server_url() else { return };
    let (proxy, proxied) = through_proxy(&url);
    let dir = tempfile::tempdir().unwrap();
    let options = PostgresOptions::new().password_file(proxied_password_file(&proxy, dir.path()));
    let name = unique_vault("lost");
    let vault =
        Vault::create_with_backend(options.connect(&proxied, &name).unwrap(), &raw_key(1)).unwrap();
    let ns = vault.namespace("t").unwrap();
    ns.put("n", &small_token("0")).unwrap();

    // Compare-and-swap increments, each commit's answer lost: a write applied twice, or
    // reported as not applied and done again, would skip or repeat a number.
    let rounds = 12;
    for i in 1..=rounds {
        proxy.arm(1);
        let (t, v) = ns.get_versioned::<Token>("n").unwrap().unwrap();
        let n: u32 = t.access_token().expose_secret().parse().unwrap();
        assert_eq!(n, i - 1);
        let written = ns
            .compare_and_swap("n", Some(v), &small_token(&i.to_string()))
            .unwrap()
            .expect("the write applied: reading back says so");
        assert!(written > v);
    }
    assert_eq!(
        proxy.cut.load(Ordering::SeqCst),
        rounds as usize,
        "every reply was cut"
    );
    assert_eq!(access(&vault, "t", "n"), Some(rounds.to_string()));

    // A batch across namespaces (a transaction's COMMIT), a new namespace, a removal and a
    // header change, each with its answer lost.
    let cut_before = proxy.cut.load(Ordering::SeqCst);
    proxy.arm(1);
    let mut batch = vault.batch();
    batch
        .put(&vault.namespace("a").unwrap(), "k", &small_token("a"))
        .unwrap()
        .put(&vault.namespace("b").unwrap(), "k", &small_token("b"))
        .unwrap();
    batch.commit().unwrap().unwrap();
    proxy.arm(1);
    vault
        .namespace("c")
        .unwrap()
        .put("k", &small_token("c"))
        .unwrap();
    proxy.arm(1);
    assert!(vault.namespace("a").unwrap().remove("k").unwrap());
    proxy.arm(1);
    vault.add_keyslot(&raw_key(7)).unwrap();
    assert_eq!(proxy.cut.load(Ordering::SeqCst) - cut_before, 4);
    assert_eq!(access(&vault, "a", "k"), None);
    assert_eq!(access(&vault, "b", "k").as_deref(), Some("b"));
    assert_eq!(access(&vault, "c", "k").as_deref(), Some("c"));
    let report = vault.verify(|_| {}).unwrap();
    assert!(report.is_clean(), "{report}");
    vault.close().unwrap();

    // Another handle, straight to the server, reads the same, and the new keyslot opens it.
    let direct = Vault::open_with_backend(
        PostgresOptions::new().connect(&url, &name).unwrap(),
        &raw_key(7),
    )
    .unwrap();
    assert_eq!(access(&direct, "t", "n"), Some(rounds.to_string()));
    assert_eq!(access(&direct, "b", "k").as_deref(), Some("b"));
}
