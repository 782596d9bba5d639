//! Providers, `login --client-credentials`, `token` and `logout` through the `tokenvault`
//! command, against the test token server on 127.0.0.1: what is stored, what is sent, the exit
//! codes that tell "log in again" from "temporarily unavailable", one refresh for 16 parallel
//! `token` processes, and no secret in any output or argument list.

#![cfg(feature = "cli")]
#![allow(clippy::unwrap_used, clippy::panic)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use support::token_server::{Config, DevicePoll, Failure, TokenServer};

const BIN: &str = env!("CARGO_BIN_EXE_tokenvault");
const CLIENT_SECRET: &str = "secret-1";

/// A vault directory with a key file, and the command line pointed at them.
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        let env = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        write_private(&env.key_file(), &[5u8; 32]);
        let out = env.run(&["init", "--key-file", env.key_str()], &[]);
        assert!(out.status.success(), "{}", stderr(&out));
        env
    }

    fn key_file(&self) -> PathBuf {
        self.dir.path().join("vault.key")
    }

    fn key_str(&self) -> &'static str {
        Box::leak(
            self.key_file()
                .to_str()
                .unwrap()
                .to_owned()
                .into_boxed_str(),
        )
    }

    fn command(&self, args: &[&str], envs: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.arg("--vault")
            .arg(self.dir.path().join("vault"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env_remove("TOKENVAULT_KEY_FILE")
            .env_remove("TOKENVAULT_PASSPHRASE_FILE")
            .env_remove("TOKENVAULT_VAULT");
        for (name, value) in envs {
            cmd.env(name, value);
        }
        cmd
    }

    /// Runs the command line with the key file appended.
    fn run(&self, args: &[&str], envs: &[(&str, &str)]) -> Output {
        let mut all: Vec<&str> = args.to_vec();
        if !args.contains(&"--key-file") {
            all.extend(["--key-file", self.key_str()]);
        }
        self.command(&all, envs).output().unwrap()
    }

    /// `provider add NS NAME` for the token server, confidential (secret from the environment).
    fn add_provider(&self, server: &TokenServer, ns: &str, name: &str) {
        let url = server.url();
        let revoke = server.revocation_url();
        let out = self.run(
            &[
                "provider",
                "add",
                ns,
                name,
                "--token-endpoint",
                &url,
                "--revocation-endpoint",
                &revoke,
                "--client-id",
                "client-1",
                "--client-auth",
                "basic",
                "--client-secret-env",
                "IDP_SECRET",
                "--scope",
                "reports:read",
            ],
            &[("IDP_SECRET", CLIENT_SECRET)],
        );
        assert!(out.status.success(), "{}", stderr(&out));
    }
}

fn write_private(path: &Path, contents: &[u8]) {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap()
        .write_all(contents)
        .unwrap();
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts that no output of `out` holds any of `secrets`.
fn assert_no_secret(out: &Output, secrets: &[&str]) {
    for secret in secrets {
        assert!(
            !stdout(out).contains(secret) && !stderr(out).contains(secret),
            "a secret was printed: {}{}",
            stdout(out),
            stderr(out)
        );
    }
}

#[test]
fn providers_are_stored_listed_and_removed_without_secrets_on_the_command_line() {
    let server = TokenServer::start(Config::default());
    let env = Env::new();
    env.add_provider(&server, "svc", "idp");

    // Listed without the secret; the namespace's keys do not show it.
    let out = env.run(&["--json", "provider", "ls", "svc"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["name"], "idp");
    assert_eq!(list[0]["client_auth"], "basic");
    assert_eq!(list[0]["token_endpoint"], server.url().as_str());
    assert_eq!(list[0]["scopes"][0], "reports:read");
    assert_no_secret(&out, &[CLIENT_SECRET]);
    let out = env.run(&["ls", "svc"], &[]);
    assert_eq!(stdout(&out).trim(), "", "{}", stdout(&out));

    // No flag takes the secret itself; without a source and a terminal it fails at once.
    let url = server.url();
    let base = [
        "provider",
        "add",
        "svc",
        "other",
        "--token-endpoint",
        url.as_str(),
        "--client-id",
        "client-1",
        "--client-auth",
        "post",
    ];
    let mut with_value = base.to_vec();
    with_value.extend(["--client-secret", "s3cret-on-argv"]);
    let out = env.run(&with_value, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = env.run(&base, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--client-secret-file"),
        "{}",
        stderr(&out)
    );

    // From a file (mode 0600) and from a descriptor.
    let file = env.dir.path().join("secret.txt");
    write_private(&file, b"from-a-file\n");
    let mut from_file = base.to_vec();
    from_file.extend(["--client-secret-file", file.to_str().unwrap()]);
    let out = env.run(&from_file, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut from_fd = base.to_vec();
    from_fd.extend(["--client-secret-fd", "0", "--key-file", env.key_str()]);
    let mut child = env
        .command(&from_fd, &[])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"from-a-pipe")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));

    // An endpoint that is not https (nor loopback http) is refused before anything is stored.
    let out = env.run(
        &[
            "provider",
            "add",
            "svc",
            "plain",
            "--token-endpoint",
            "http://auth.example.org/token",
            "--client-id",
            "x",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    let out = env.run(&["provider", "rm", "svc", "other"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = env.run(&["provider", "rm", "svc", "other"], &[]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let out = env.run(&["--json", "provider", "ls", "svc"], &[]);
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
}

#[test]
fn client_credentials_login_then_token_reminted_when_expired() {
    let server = TokenServer::start(Config::default());
    let env = Env::new();
    env.add_provider(&server, "svc", "idp");

    let out = env.run(
        &[
            "--json",
            "login",
            "svc",
            "--provider",
            "idp",
            "--client-credentials",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let login: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(login["key"], "idp");
    assert_eq!(server.client_credentials_count(), 1);
    let request = server.last_request().unwrap();
    assert_eq!(request.field("scope"), Some("reports:read"));
    let issued = server.issued_access_tokens();
    assert_no_secret(&out, &[CLIENT_SECRET, issued[0].as_str()]);

    // `token` prints exactly the stored access token.
    let out = env.run(&["token", "svc", "idp"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("{}\n", issued[0]));
    assert_eq!(server.client_credentials_count(), 1);

    // Once it has expired, it is minted again.
    let out = env.run(
        &[
            "put",
            "svc",
            "idp",
            "--access-token-env",
            "AT",
            "--expires-at",
            "2020-01-01T00:00:00Z",
        ],
        &[("AT", "an-expired-one")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = env.run(&["--json", "token", "svc", "idp"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let second = json["access_token"].as_str().unwrap();
    assert_eq!(server.client_credentials_count(), 2);
    assert_eq!(server.issued_access_tokens()[1], second);
    assert!(json["expires_at"].as_str().unwrap().ends_with('Z'));

    // The exec credential plugin protocol of client-go (kubectl).
    let out = env.run(
        &["token", "svc", "idp", "--exec-credential"],
        &[(
            "KUBERNETES_EXEC_INFO",
            r#"{"apiVersion":"client.authentication.k8s.io/v1beta1","kind":"ExecCredential"}"#,
        )],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let credential: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(credential["kind"], "ExecCredential");
    assert_eq!(
        credential["apiVersion"],
        "client.authentication.k8s.io/v1beta1"
    );
    assert!(credential["status"]["token"].as_str().is_some());
    assert!(credential["status"]["expirationTimestamp"]
        .as_str()
        .is_some());
}

/// Stores an expired token with a live refresh token, bound to the provider.
fn expired_bound_token(env: &Env, server: &TokenServer, refresh: &str) {
    server.seed_refresh_token(refresh);
    let out = env.run(
        &[
            "put",
            "alice",
            "api",
            "--access-token-env",
            "AT",
            "--refresh-token-env",
            "RT",
            "--expires-at",
            "2020-01-01T00:00:00Z",
            "--provider",
            "idp",
        ],
        &[("AT", "expired-access-token"), ("RT", refresh)],
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn sixteen_parallel_token_processes_refresh_once() {
    let server = TokenServer::start(Config::default());
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("vault.key");
    write_private(&key, &[5u8; 32]);
    let cli = cli_for(
        dir.path().join("vault").to_str().unwrap(),
        "--key-file",
        key.to_str().unwrap(),
    );
    token_herd(&server, &cli, "rt-parallel-0");
}

#[test]
fn dead_and_unavailable_grants_have_exit_codes_of_their_own() {
    let server = TokenServer::start(Config::default());
    let env = Env::new();
    env.add_provider(&server, "alice", "idp");

    // The provider is down: 9, and the stored token is kept.
    expired_bound_token(&env, &server, "rt-dead-0");
    server.fail_next(Failure::Status(503), 1);
    let out = env.run(&["token", "alice", "api"], &[]);
    assert_eq!(out.status.code(), Some(9), "{}", stderr(&out));
    assert!(stderr(&out).contains("retry later"), "{}", stderr(&out));
    assert_no_secret(&out, &["rt-dead-0", CLIENT_SECRET]);

    // The grant was revoked: 8, "log in again".
    server.revoke_refresh_token("rt-dead-0");
    let out = env.run(&["token", "alice", "api", "--lock-timeout", "5"], &[]);
    assert_eq!(out.status.code(), Some(8), "{}", stderr(&out));
    assert!(stderr(&out).contains("log in again"), "{}", stderr(&out));
    assert_no_secret(&out, &["rt-dead-0", CLIENT_SECRET]);

    // A token bound to nothing, and no token at all: not found.
    let out = env.run(&["token", "alice", "nothing"], &[]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
}

#[test]
fn logout_removes_locally_then_revokes() {
    let server = TokenServer::start(Config::default());
    let env = Env::new();
    env.add_provider(&server, "alice", "idp");
    expired_bound_token(&env, &server, "rt-logout-0");

    let out = env.run(&["--json", "logout", "alice", "api"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["removed"], true);
    assert_eq!(json["revocation"], "revoked");
    assert_eq!(server.revocations(), ["rt-logout-0"]);
    assert_no_secret(&out, &["rt-logout-0", CLIENT_SECRET]);
    let out = env.run(&["get", "alice", "api"], &[]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));

    // A revocation endpoint that is down: the token is gone here all the same, exit 9.
    expired_bound_token(&env, &server, "rt-logout-1");
    server.fail_next(Failure::Status(503), 1);
    let out = env.run(&["logout", "alice", "api"], &[]);
    assert_eq!(out.status.code(), Some(9), "{}", stderr(&out));
    let out = env.run(&["get", "alice", "api"], &[]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
}

#[test]
fn device_login_shows_the_code_polls_and_stores_the_grant() {
    let server = TokenServer::start(Config::public("cli-app"));
    let env = Env::new();
    let (url, device) = (server.url(), server.device_url());
    let out = env.run(
        &[
            "provider",
            "add",
            "alice",
            "gh",
            "--token-endpoint",
            &url,
            "--device-endpoint",
            &device,
            "--client-id",
            "cli-app",
            "--scope",
            "repo",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));

    // Pending once, then approved: no terminal needed, the code on standard error.
    server.script_device(&[DevicePoll::Pending, DevicePoll::Approve]);
    let out = env.run(
        &["--json", "login", "alice", "--provider", "gh", "--device"],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let said = stderr(&out);
    assert!(
        said.contains("/activate") && said.contains("WDJB-"),
        "{said}"
    );
    assert_eq!(server.device_polls(), 2);
    let login: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(login["grant"], "device_code");
    assert_eq!(login["key"], "gh");
    let issued = server.issued_access_tokens();
    let refresh = server.issued_refresh_tokens();
    assert_no_secret(&out, &[issued[0].as_str(), refresh[0].as_str()]);
    let request = server.requests()[0].clone();
    assert_eq!(request.field("scope"), Some("repo"));

    // The stored grant serves `token`, and is refreshed through the provider when due.
    let out = env.run(&["token", "alice", "gh"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("{}\n", issued[0]));

    // While a login waits for the user, the vault is not held: another command opens it.
    server.script_device(&[
        DevicePoll::Pending,
        DevicePoll::Pending,
        DevicePoll::Approve,
    ]);
    let started = server.device_authorizations();
    let login = env
        .command(
            &[
                "login",
                "alice",
                "--provider",
                "gh",
                "--device",
                "--key",
                "second",
                "--key-file",
                env.key_str(),
            ],
            &[],
        )
        .spawn()
        .unwrap();
    while server.device_authorizations() == started {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = env.run(&["ls", "alice", "--lock-timeout", "0.5"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = login.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = env.run(&["ls", "alice"], &[]);
    assert!(stdout(&out).contains("second"), "{}", stdout(&out));

    // A denial is "log in again".
    server.script_device(&[DevicePoll::Deny]);
    let out = env.run(
        &[
            "login",
            "alice",
            "--provider",
            "gh",
            "--device",
            "--key",
            "other",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(8), "{}", stderr(&out));
    assert!(stderr(&out).contains("denied"), "{}", stderr(&out));
}

/// Runs `login --browser --no-browser`, reads the URL it prints, and plays the browser
/// (the redirect's `state` replaced when `forge`). Returns the command's output.
///
/// With `browser_argv`, the command starts a "browser" (`$BROWSER`, a script that records
/// its argument list in that file) and the URL is taken from there: what any process could
/// see with `ps`.
fn browser_login(
    env: &Env,
    key: &str,
    forge: bool,
    browser_argv: Option<&Path>,
) -> (Output, String) {
    use std::io::BufRead as _;
    let mut args = vec![
        "login",
        "alice",
        "--provider",
        "web",
        "--browser",
        "--key",
        key,
        "--wait",
        "20",
        "--key-file",
        env.key_str(),
    ];
    let script = env.dir.path().join("browser.sh");
    let script_path = script.to_str().unwrap().to_owned();
    let mut envs = Vec::new();
    match browser_argv {
        Some(file) => {
            let text = format!("#!/bin/sh\nprintf '%s\\n' \"$@\" >> '{}'\n", file.display());
            std::fs::write(&script, text).unwrap();
            std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o700))
                .unwrap();
            envs.push(("BROWSER", script_path.as_str()));
        }
        None => args.push("--no-browser"),
    }
    let mut child = env.command(&args, &envs).spawn().unwrap();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut said = String::new();
    let mut url = loop {
        let mut line = String::new();
        assert!(
            err.read_line(&mut line).unwrap() > 0,
            "no URL printed: {said}"
        );
        said.push_str(&line);
        if let Some(at) = line.find("http://") {
            break line[at..].trim().to_owned();
        }
    };
    if let Some(file) = browser_argv {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let argv = std::fs::read_to_string(file).unwrap_or_default();
            if let Some(line) = argv.lines().next() {
                url = line.to_owned();
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the browser was not started"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    let (status, location) = support::http_get(&url);
    assert_eq!(status, 302);
    let mut location = location.unwrap();
    if forge {
        let at = location.find("state=").unwrap() + 6;
        location = format!("{}forged", &location[..at]);
    }
    support::http_get(&location);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
    said.push_str(&rest);
    let out = child.wait_with_output().unwrap();
    (out, said)
}

#[test]
fn browser_login_with_pkce_and_a_loopback_redirect() {
    let server = TokenServer::start(Config::public("cli-app"));
    let env = Env::new();
    let (url, authorize) = (server.url(), server.authorize_url());
    let out = env.run(
        &[
            "provider",
            "add",
            "alice",
            "web",
            "--token-endpoint",
            &url,
            "--authorization-endpoint",
            &authorize,
            "--client-id",
            "cli-app",
            "--scope",
            "openid",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));

    let argv = env.dir.path().join("browser-argv.txt");
    let (out, said) = browser_login(&env, "web", false, Some(&argv));
    assert!(out.status.success(), "{said}");
    assert!(said.contains("A browser was started"), "{said}");
    let argv = std::fs::read_to_string(&argv).unwrap();
    assert!(said.contains("code_challenge_method=S256"), "{said}");
    let exchange = server.last_request().unwrap();
    assert_eq!(exchange.grant_type.as_deref(), Some("authorization_code"));
    let code = exchange.field("code").unwrap().to_owned();
    let verifier = exchange.field("code_verifier").unwrap().to_owned();
    let issued = server.issued_access_tokens();
    for secret in [code.as_str(), verifier.as_str(), issued[0].as_str()] {
        assert!(!said.contains(secret) && !stdout(&out).contains(secret));
        assert!(
            !argv.contains(secret),
            "the browser's argument list shows a secret"
        );
    }
    let out = env.run(&["token", "alice", "web"], &[]);
    assert_eq!(stdout(&out), format!("{}\n", issued[0]));

    // A forged redirect (another state) is refused; nothing is stored.
    let (out, said) = browser_login(&env, "forged", true, None);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("state"), "{said}");
    let out = env.run(&["get", "alice", "forged"], &[]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
}

#[test]
fn imported_tokens_are_bound_with_provider() {
    let server = TokenServer::start(Config::default());
    let env = Env::new();
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/peer-token-files/sharetribe-file-store-token.json"
    );
    let import = [
        "import",
        file,
        "--format",
        "sharetribe",
        "--namespace",
        "mk",
        "--key",
        "integration",
        "--provider",
        "idp",
    ];
    // No provider "idp" in "mk" yet: refused before anything is written.
    let out = env.run(&import, &[]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let out = env.run(&["ls", "mk"], &[]);
    assert_eq!(stdout(&out).trim(), "", "{}", stdout(&out));

    env.add_provider(&server, "mk", "idp");
    let out = env.run(&import, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Bound: `token` serves it (a token bound to no provider is exit code 5).
    let out = env.run(&["token", "mk", "integration"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stdout(&out).trim().is_empty());
    let out = env.run(
        &["put", "mk", "unbound", "--access-token-env", "AT"],
        &[("AT", "at")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = env.run(&["token", "mk", "unbound"], &[]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
}

/// The same on PostgreSQL: 16 processes open the one vault at once (no directory lock to
/// queue on), and the authorizer's lease in the database lets one of them refresh.
#[test]
fn sixteen_parallel_token_processes_refresh_once_on_postgres() {
    let Some(url) = support::postgres_test_url() else {
        return;
    };
    let server = TokenServer::start(Config::default());
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("vault.key");
    write_private(&key, &[6u8; 32]);
    let vault = format!("{url}&vault={}", support::unique_name("token-herd"));
    let cli = cli_for(&vault, "--key-file", key.to_str().unwrap());
    token_herd(&server, &cli, "rt-pg-0");
}

/// With a passphrase at the default Argon2id cost, each `token` holds the vault's directory
/// lock for a key derivation: 16 of them take longer than the usual 2 s lock wait, which
/// `token` raises to 30 s, so that none fails with "locked" (exit code 4).
#[test]
fn sixteen_parallel_token_processes_with_a_passphrase_queue_on_the_lock() {
    let server = TokenServer::start(Config::default());
    let dir = tempfile::tempdir().unwrap();
    let pass = dir.path().join("pass.txt");
    write_private(&pass, b"a passphrase for sixteen processes");
    let pass = pass.to_str().unwrap().to_owned();
    let cli = cli_for(
        dir.path().join("vault").to_str().unwrap(),
        "--passphrase-file",
        &pass,
    );
    token_herd(&server, &cli, "rt-pass-0");
}

/// Builds a command line from its arguments and extra environment variables.
type CommandFor = dyn Fn(&[&str], &[(&str, &str)]) -> Command;

/// On a fresh vault that `cli` reaches: a provider, an expired token bound to it with the
/// live refresh token `refresh`, then 16 parallel `token` processes: all succeed, with the one
/// token issued by the one refresh.
fn token_herd(server: &TokenServer, cli: &CommandFor, refresh: &str) {
    let ok = |mut cmd: Command| {
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    };
    ok(cli(&["init"], &[]));
    let token_url = server.url();
    ok(cli(
        &[
            "provider",
            "add",
            "alice",
            "idp",
            "--token-endpoint",
            &token_url,
            "--client-id",
            "client-1",
            "--client-auth",
            "basic",
            "--client-secret-env",
            "IDP_SECRET",
        ],
        &[("IDP_SECRET", CLIENT_SECRET)],
    ));
    server.seed_refresh_token(refresh);
    ok(cli(
        &[
            "put",
            "alice",
            "api",
            "--access-token-env",
            "AT",
            "--refresh-token-env",
            "RT",
            "--expires-at",
            "2020-01-01T00:00:00Z",
            "--provider",
            "idp",
        ],
        &[("AT", "expired"), ("RT", refresh)],
    ));
    let children: Vec<_> = (0..16)
        .map(|_| cli(&["token", "alice", "api"], &[]).spawn().unwrap())
        .collect();
    let outputs: Vec<Output> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    for out in &outputs {
        assert!(out.status.success(), "{}", stderr(out));
    }
    assert_eq!(server.refresh_count(), 1);
    server.assert_no_reuse();
    let issued = server.issued_access_tokens();
    assert_eq!(issued.len(), 1);
    for out in &outputs {
        assert_eq!(stdout(out), format!("{}\n", issued[0]));
    }
}

/// Command lines for the vault `vault`, unlocked with `flag value` (appended last).
fn cli_for(vault: &str, flag: &str, value: &str) -> impl Fn(&[&str], &[(&str, &str)]) -> Command {
    let (vault, flag, value) = (vault.to_owned(), flag.to_owned(), value.to_owned());
    move |args: &[&str], envs: &[(&str, &str)]| {
        let mut cmd = Command::new(BIN);
        cmd.arg("--vault")
            .arg(&vault)
            .args(args)
            .args([&flag, &value])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env_remove("TOKENVAULT_KEY_FILE")
            .env_remove("TOKENVAULT_PASSPHRASE_FILE")
            .env_remove("TOKENVAULT_VAULT");
        for (name, value) in envs {
            cmd.env(name, value);
        }
        cmd
    }
}
