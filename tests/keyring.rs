//! OS keyring keyslots against a real Secret Service: gnome-keyring-daemon in a private
//! D-Bus session that `scripts/keyring-test-session` starts (inside `dbus-run-session`),
//! checked independently with `secret-tool`. Without that session these tests are skipped,
//! except under `CI=true`, where they fail.
//!
//! The tests lock the keyring, stop its daemon and delete entries behind the vault's back, so
//! they take turns (one lock for the whole file).

#![cfg(feature = "cli")]
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokenvault::secrecy::{ExposeSecret, SecretBox, SecretString};
use tokenvault::{
    Error, ErrorKind, KdfParams, KeySource, Keyring, KeyringFailure, SlotKind, Token, VaultOptions,
};

const BIN: &str = env!("CARGO_BIN_EXE_tokenvault");
/// Generous: each failure below comes back in milliseconds; this only catches a hang.
const QUICK: Duration = Duration::from_secs(5);

/// The keyring session's password, with the lock that makes these tests take turns.
struct Session {
    password: String,
    _turn: MutexGuard<'static, ()>,
}

fn session() -> Option<Session> {
    static TURN: Mutex<()> = Mutex::new(());
    let password = support::keyring_test_password()?;
    let turn = TURN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    Some(Session {
        password,
        _turn: turn,
    })
}

impl Session {
    /// Locks the login collection through D-Bus, as a screen lock would.
    fn lock(&self) {
        let out = Command::new("dbus-send")
            .args([
                "--session",
                "--print-reply",
                "--dest=org.freedesktop.secrets",
                "/org/freedesktop/secrets",
                "org.freedesktop.Secret.Service.Lock",
                "array:objpath:/org/freedesktop/secrets/collection/login",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }

    /// Unlocks it again: a new daemon, unlocked with the password on standard input.
    fn unlock(&self) {
        let mut child = Command::new("gnome-keyring-daemon")
            .args(["--replace", "--unlock", "--components=secrets"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(self.password.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success());
        let deadline = Instant::now() + QUICK;
        while secret_tool(&["search", "--all", "service", "tokenvault-probe"], None)
            .status
            .code()
            .is_none()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn secret_tool(args: &[&str], input: Option<&[u8]>) -> Output {
    let mut child = Command::new("secret-tool")
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = input {
        use std::io::Write as _;
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    child.wait_with_output().unwrap()
}

/// The accounts of every `tokenvault` entry in the keyring, as `secret-tool` sees them.
fn tokenvault_accounts() -> Vec<String> {
    let out = secret_tool(&["search", "--all", "service", "tokenvault"], None);
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let mut accounts: Vec<String> = text
        .lines()
        .filter_map(|line| line.strip_prefix("attribute.username = "))
        .map(str::to_owned)
        .collect();
    accounts.sort();
    accounts
}

/// The secret `secret-tool` reads for an account, if there is an entry.
fn lookup(account: &str) -> Option<Vec<u8>> {
    let out = secret_tool(
        &["lookup", "service", "tokenvault", "username", account],
        None,
    );
    out.status.success().then_some(out.stdout)
}

fn passphrase(text: &str) -> KeySource {
    KeySource::passphrase(SecretString::from(text.to_owned()))
}

fn fast() -> VaultOptions {
    VaultOptions::new().kdf(KdfParams::insecure_for_tests())
}

fn keyring() -> KeySource {
    KeySource::keyring(&Keyring::platform())
}

fn keyring_failure(err: &Error) -> Option<KeyringFailure> {
    match err {
        Error::Keyring { failure, .. } => Some(*failure),
        _ => None,
    }
}

/// A vault with a passphrase slot (0) and a keyring slot (1): its directory, and the
/// keyring entry's account.
fn vault_with_keyring_slot(dir: &Path) -> String {
    let path = dir.join("vault");
    let vault = fast()
        .create(&path, &passphrase("first passphrase"))
        .unwrap();
    vault
        .namespace("ns")
        .unwrap()
        .put("k", &Token::new("access".into()))
        .unwrap();
    assert_eq!(vault.add_keyslot(&keyring()).unwrap(), 1);
    let slots = vault.keyslots().unwrap();
    assert_eq!(slots[1].kind, SlotKind::Keyring);
    let entry = slots[1].keyring_entry.clone().unwrap();
    vault.close().unwrap();
    assert_eq!(entry.service, "tokenvault");
    entry.account
}

#[test]
fn a_keyring_slot_round_trips_through_the_secret_service() {
    let Some(_session) = session() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vault");
    let account = vault_with_keyring_slot(dir.path());

    // The entry is there, seen by another client, named after the vault, holding 32 bytes.
    assert!(tokenvault_accounts().contains(&account));
    assert!(account.starts_with("vault-") && account.len() == 6 + 32 + 1 + 8);
    assert_eq!(lookup(&account).unwrap().len(), 32);

    // The keyring alone opens the vault, through slot 1.
    let vault = fast().open(&path, &keyring()).unwrap();
    assert_eq!(vault.unlocked_keyslot().unwrap(), 1);
    let token: Token = vault.namespace("ns").unwrap().get("k").unwrap().unwrap();
    assert_eq!(ExposeSecret::expose_secret(token.access_token()), "access");

    // Passphrase slots change around it; the keyring slot keeps working.
    assert_eq!(
        vault
            .change_passphrase(&passphrase("first passphrase"), &passphrase("second"))
            .unwrap(),
        vec![0]
    );
    let third = vault.add_keyslot(&passphrase("third")).unwrap();
    vault.remove_keyslot(0).unwrap();
    vault.close().unwrap();
    assert!(matches!(
        fast().open(&path, &passphrase("second")),
        Err(Error::WrongKey)
    ));
    let vault = fast().open(&path, &keyring()).unwrap();
    assert_eq!(vault.unlocked_keyslot().unwrap(), 1);
    assert!(lookup(&account).is_some());

    // Removing the keyring slot removes its entry.
    vault
        .remove_keyring_keyslot(1, &Keyring::platform())
        .unwrap();
    assert!(lookup(&account).is_none());
    assert!(!tokenvault_accounts().contains(&account));
    assert_eq!(vault.keyslots().unwrap().len(), 1);
    vault.close().unwrap();
    assert!(matches!(
        fast().open(&path, &keyring()),
        Err(Error::WrongKey)
    ));
    fast()
        .open(&path, &passphrase("third"))
        .unwrap()
        .close()
        .unwrap();
    let _ = third;
}

#[test]
fn a_keyring_slot_can_replace_a_passphrase_and_be_replaced() {
    let Some(_session) = session() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vault");
    let raw = || KeySource::raw_key(SecretBox::new(Box::new([3u8; 32])));
    let vault = fast().create(&path, &raw()).unwrap();
    let before = tokenvault_accounts();

    // The raw key's slot becomes a keyring slot (same id), and back again: each change
    // writes a new entry, and the entry of the slot replaced is deleted.
    vault.change_keyslot(0, &raw(), &keyring()).unwrap();
    let entry = vault.keyslots().unwrap()[0].keyring_entry.clone().unwrap();
    assert!(lookup(&entry.account).is_some());
    vault.close().unwrap();
    assert!(matches!(fast().open(&path, &raw()), Err(Error::WrongKey)));
    let vault = fast().open(&path, &keyring()).unwrap();
    vault.change_keyslot(0, &keyring(), &keyring()).unwrap();
    let second = vault.keyslots().unwrap()[0].keyring_entry.clone().unwrap();
    assert_ne!(second.account, entry.account);
    assert!(lookup(&entry.account).is_none());
    vault.change_passphrase(&keyring(), &raw()).unwrap();
    assert!(lookup(&second.account).is_none());
    assert_eq!(tokenvault_accounts(), before);
    vault.close().unwrap();

    // A creation that fails after writing its entry deletes it again.
    assert!(matches!(
        fast().create(&path, &keyring()),
        Err(Error::AlreadyExists { .. })
    ));
    assert_eq!(tokenvault_accounts(), before);
}

#[test]
fn keyring_failures_are_typed_quick_and_never_wrong_key() {
    let Some(session) = session() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vault");
    let account = vault_with_keyring_slot(dir.path());

    // Locked through D-Bus: refused without a prompt.
    session.lock();
    let start = Instant::now();
    let err = fast().open(&path, &keyring()).unwrap_err();
    assert!(start.elapsed() < QUICK);
    assert_eq!(keyring_failure(&err), Some(KeyringFailure::Locked), "{err}");
    assert_eq!(err.kind(), ErrorKind::Transient);
    // A new keyring slot is refused too, and nothing is written.
    let vault = fast().open(&path, &passphrase("first passphrase")).unwrap();
    let err = vault.add_keyslot(&keyring()).unwrap_err();
    assert_eq!(keyring_failure(&err), Some(KeyringFailure::Locked), "{err}");
    assert_eq!(vault.keyslots().unwrap().len(), 2);
    vault.close().unwrap();
    session.unlock();
    fast().open(&path, &keyring()).unwrap().close().unwrap();

    // An entry overwritten by another program: a mismatch, not a wrong key.
    for other in [&b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"[..], b"short"] {
        let out = secret_tool(
            &[
                "store",
                "--label=overwritten",
                "service",
                "tokenvault",
                "username",
                &account,
            ],
            Some(other),
        );
        assert!(out.status.success(), "{out:?}");
        let err = fast().open(&path, &keyring()).unwrap_err();
        assert_eq!(
            keyring_failure(&err),
            Some(KeyringFailure::Mismatch),
            "{err}"
        );
        assert!(err.to_string().contains(&account));
    }

    // The entry deleted behind the vault's back: a missing entry, not a wrong key.
    let out = secret_tool(
        &["clear", "service", "tokenvault", "username", &account],
        None,
    );
    assert!(out.status.success());
    let start = Instant::now();
    let err = fast().open(&path, &keyring()).unwrap_err();
    assert!(start.elapsed() < QUICK);
    assert_eq!(
        keyring_failure(&err),
        Some(KeyringFailure::NoEntry),
        "{err}"
    );
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(!matches!(err, Error::WrongKey));

    // A daemon that does not answer (stopped): abandoned at the time limit.
    let pids = daemon_pids();
    assert!(!pids.is_empty());
    signal(&pids, "STOP");
    let start = Instant::now();
    let slow = KeySource::keyring(&Keyring::platform().timeout(Duration::from_millis(500)));
    let err = fast().open(&path, &slow);
    signal(&pids, "CONT");
    let err = err.unwrap_err();
    assert!(start.elapsed() < QUICK);
    assert_eq!(
        keyring_failure(&err),
        Some(KeyringFailure::Timeout),
        "{err}"
    );

    // The other slots still open the vault; removing the keyring slot without its entry is
    // not an error.
    let vault = fast().open(&path, &passphrase("first passphrase")).unwrap();
    vault
        .remove_keyring_keyslot(1, &Keyring::platform())
        .unwrap();
    let err = vault
        .remove_keyring_keyslot(0, &Keyring::platform())
        .unwrap_err();
    assert!(matches!(err, Error::KeySource { .. }), "{err}");
    vault.close().unwrap();
}

fn daemon_pids() -> Vec<String> {
    let out = Command::new("pgrep")
        .args(["-u", &rustix_uid(), "gnome-keyring-d"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

fn rustix_uid() -> String {
    let out = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Sends `signal` to each of `pids` (a daemon replaced meanwhile may be gone); at least one
/// must take it.
fn signal(pids: &[String], signal: &str) {
    let sent = pids
        .iter()
        .filter(|pid| {
            Command::new("kill")
                .arg(format!("-{signal}"))
                .arg(pid.as_str())
                .stderr(Stdio::null())
                .status()
                .unwrap()
                .success()
        })
        .count();
    assert!(sent > 0, "no keyring daemon took SIG{signal}: {pids:?}");
}

/// Runs the command line with the keyring session's environment; `no_bus` removes the
/// session bus address.
fn cli(dir: &Path, args: &[&str], no_bus: bool) -> (Output, Duration) {
    let mut cmd = Command::new(BIN);
    cmd.arg("--vault")
        .arg(dir.join("vault"))
        .args(args)
        .stdin(Stdio::null())
        .env_remove("TOKENVAULT_KEY_FILE")
        .env_remove("TOKENVAULT_PASSPHRASE_FILE")
        .env_remove("TOKENVAULT_VAULT");
    if no_bus {
        cmd.env_remove("DBUS_SESSION_BUS_ADDRESS");
    }
    let start = Instant::now();
    let out = cmd.output().unwrap();
    (out, start.elapsed())
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn the_command_line_creates_opens_and_removes_keyring_slots_in_new_processes() {
    let Some(_session) = session() else { return };
    let dir = tempfile::tempdir().unwrap();
    let before = tokenvault_accounts();

    // init --keyring --with-recovery-key: slot 0 in the keyring, slot 1 a recovery key.
    let (out, _) = cli(
        dir.path(),
        &["--json", "init", "--keyring", "--with-recovery-key"],
        false,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let init: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(init["keyslot"]["kind"], "keyring");
    let entry = init["keyslot"]["keyring_entry"]
        .as_str()
        .unwrap()
        .to_owned();
    let account = entry.strip_suffix("@tokenvault").unwrap().to_owned();
    assert!(lookup(&account).is_some());
    let recovery = init["recovery_key"].as_str().unwrap().to_owned();
    let recovery_file = dir.path().join("recovery.txt");
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&recovery_file)
            .unwrap();
        std::io::Write::write_all(&mut file, recovery.as_bytes()).unwrap();
    }
    let recovery_file = recovery_file.to_str().unwrap().to_owned();

    // A new process opens it with the keyring, and says so.
    let (out, _) = cli(dir.path(), &["--json", "keyslot", "ls", "--keyring"], false);
    assert!(out.status.success(), "{}", stderr(&out));
    let ls: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ls["unlocked_keyslot"], 0);
    assert_eq!(ls["keyslots"][0]["keyring_entry"], entry.as_str());
    let (out, _) = cli(dir.path(), &["info", "--keyring"], false);
    assert!(out.status.success(), "{}", stderr(&out));
    let info = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        info.contains("keyring") && info.contains(&account),
        "{info}"
    );

    // No session bus: unavailable, at once, and never a prompt for a passphrase.
    let (out, took) = cli(dir.path(), &["keyslot", "ls", "--keyring"], true);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(took < QUICK);
    assert!(stderr(&out).contains("unavailable"), "{}", stderr(&out));

    // A second keyring slot, then `keyslot rm` of the first deletes its entry.
    let (out, _) = cli(
        dir.path(),
        &[
            "keyslot",
            "add",
            "--recovery-key-file",
            &recovery_file,
            "--new-keyring",
        ],
        false,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let (out, _) = cli(
        dir.path(),
        &["keyslot", "rm", "0", "--recovery-key-file", &recovery_file],
        false,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(lookup(&account).is_none());
    let (out, _) = cli(dir.path(), &["--json", "keyslot", "ls", "--keyring"], false);
    assert!(out.status.success(), "{}", stderr(&out));
    let ls: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ls["unlocked_keyslot"], 2);
    let second = ls["keyslots"][1]["keyring_entry"].as_str().unwrap();
    let second = second.strip_suffix("@tokenvault").unwrap().to_owned();

    // --keep-keyring-entry removes a slot and leaves its entry.
    let (out, _) = cli(
        dir.path(),
        &[
            "--json",
            "keyslot",
            "add",
            "--recovery-key-file",
            &recovery_file,
            "--new-keyring",
        ],
        false,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let added: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(added["keyslot"]["id"], 3);
    let third = added["keyslot"]["keyring_entry"].as_str().unwrap();
    let third = third.strip_suffix("@tokenvault").unwrap().to_owned();
    let (out, _) = cli(
        dir.path(),
        &[
            "keyslot",
            "rm",
            "3",
            "--keep-keyring-entry",
            "--recovery-key-file",
            &recovery_file,
        ],
        false,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(lookup(&third).is_some());
    secret_tool(
        &["clear", "service", "tokenvault", "username", &third],
        None,
    );

    // A missing entry is exit code 5 (not found), never 3 (wrong key).
    secret_tool(
        &["clear", "service", "tokenvault", "username", &second],
        None,
    );
    let (out, took) = cli(dir.path(), &["keyslot", "ls", "--keyring"], false);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(took < QUICK);
    assert!(stderr(&out).contains("missing"), "{}", stderr(&out));
    assert_eq!(tokenvault_accounts(), before);
}

#[test]
fn a_keyring_that_would_prompt_is_refused_at_once() {
    let Some(_session) = session() else { return };
    // A Secret Service of its own, in a bus of its own, with no login collection: writing
    // a new entry would need a prompt to create one.
    let dir = tempfile::tempdir().unwrap();
    let script = format!(
        "set -e; export XDG_DATA_HOME={d}/data XDG_RUNTIME_DIR={d}/run; \
         mkdir -p -m 700 {d}/data {d}/run; \
         gnome-keyring-daemon --start --components=secrets >/dev/null 2>&1; sleep 0.3; \
         exec {BIN} --vault {d}/vault init --keyring </dev/null",
        d = dir.path().display()
    );
    let start = Instant::now();
    let out = Command::new("dbus-run-session")
        .args(["--", "sh", "-c", &script])
        .output()
        .unwrap();
    assert!(start.elapsed() < QUICK + Duration::from_secs(5));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("prompt"), "{}", stderr(&out));
    assert!(!dir.path().join("vault").join("tokenvault.header").exists());
}

#[test]
fn a_session_bus_without_a_secret_service_is_unavailable_at_once() {
    let Some(_session) = session() else { return };
    // A session bus of its own that knows no service (no activation files), so nothing
    // provides org.freedesktop.secrets.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bus.conf");
    std::fs::write(
        &config,
        r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:tmpdir=/tmp</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#,
    )
    .unwrap();
    let start = Instant::now();
    let out = Command::new("dbus-run-session")
        .arg(format!("--config-file={}", config.display()))
        .args(["--", BIN, "--vault"])
        .arg(dir.path().join("vault"))
        .args(["init", "--keyring"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(start.elapsed() < QUICK);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("unavailable") && err.contains("org.freedesktop.secrets"),
        "{err}"
    );
    assert!(!dir.path().join("vault").join("tokenvault.header").exists());
}
