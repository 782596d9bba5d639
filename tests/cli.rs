//! The `tokenvault` command, end to end: every test runs the built binary on a real vault in
//! a temporary directory, with standard input from `/dev/null` unless it feeds it, a cleared
//! `TOKENVAULT_*` environment, and a time limit on the child (a hang fails the test).
//!
//! Most vaults are unlocked with key files (no key derivation to wait for); passphrase tests
//! use the hidden `--insecure-fast-kdf`, and one test uses the real default Argon2id cost.

#![cfg(feature = "cli")]
#![allow(clippy::unwrap_used, clippy::panic)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::BackendExt;
use tokenvault::backend::{Backend, SledOptions};
use tokenvault::{Token, Vault, VaultOptions};

const BIN: &str = env!("CARGO_BIN_EXE_tokenvault");
/// A hang guard, not a timing assertion: every command here takes well under a second.
const CHILD_LIMIT: Duration = Duration::from_secs(120);
const PEER_FILES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/peer-token-files");
const EXIT_USAGE: i32 = 2;
const EXIT_WRONG_KEY: i32 = 3;
const EXIT_LOCKED: i32 = 4;
const EXIT_NOT_FOUND: i32 = 5;
const EXIT_DAMAGED: i32 = 6;
const EXIT_EXISTS: i32 = 7;

/// What a run of the binary gave.
#[derive(Debug)]
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn ok(self) -> Self {
        assert_eq!(self.code, 0, "{self:#?}");
        self
    }

    fn code(self, code: i32) -> Self {
        assert_eq!(self.code, code, "{self:#?}");
        self
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {self:#?}"))
    }

    /// The failure format: exactly one error line and one hint line on stderr.
    fn one_line_error(&self, contains: &str) {
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 2, "{self:#?}");
        assert!(lines[0].starts_with("tokenvault: error: "), "{self:#?}");
        assert!(lines[0].contains(contains), "{self:#?}");
        assert!(lines[1].starts_with("hint: "), "{self:#?}");
    }

    fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// A temporary directory with a key file, and the vault path inside it.
struct Env {
    dir: tempfile::TempDir,
    vault: PathBuf,
    key: PathBuf,
}

impl Env {
    /// A key file of 32 bytes `7` (the raw key `support::raw_key(7)`), no vault yet.
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("vault.key");
        write_private(&key, "07".repeat(32).as_bytes());
        let vault = dir.path().join("vault");
        Self { dir, vault, key }
    }

    /// A vault created with the key file.
    fn with_vault() -> Self {
        let env = Self::new();
        env.run(&["init", "--key-file", env.key.to_str().unwrap()])
            .ok();
        env
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The binary, on this vault, with nothing inherited that could unlock it.
    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.arg("--vault").arg(&self.vault).args(args);
        for var in [
            "TOKENVAULT_VAULT",
            "TOKENVAULT_KEY_FILE",
            "TOKENVAULT_PASSPHRASE_FILE",
        ] {
            cmd.env_remove(var);
        }
        cmd
    }

    /// Runs `args` with no secret flag added.
    fn run(&self, args: &[&str]) -> Out {
        run(self.cmd(args), None)
    }

    /// Runs `args` unlocked with the key file.
    fn key(&self, args: &[&str]) -> Out {
        let mut cmd = self.cmd(args);
        cmd.arg("--key-file").arg(&self.key);
        run(cmd, None)
    }

    /// Runs `args` unlocked with the key file, feeding `input` on standard input.
    fn key_stdin(&self, args: &[&str], input: &str) -> Out {
        let mut cmd = self.cmd(args);
        cmd.arg("--key-file").arg(&self.key);
        run(cmd, Some(input.as_bytes()))
    }
}

/// Runs `cmd` to completion within [`CHILD_LIMIT`], feeding `input` (else `/dev/null`).
fn run(mut cmd: Command, input: Option<&[u8]>) -> Out {
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if let Some(input) = input {
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input).unwrap();
    }
    let reader = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            r.read_to_string(&mut s).unwrap();
            s
        })
    };
    let stdout = reader(Box::new(child.stdout.take().unwrap()));
    let stderr = reader(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + CHILD_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("tokenvault hung: {cmd:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Out {
        code: status.code().unwrap_or(-1),
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

fn write_private(path: &Path, contents: &[u8]) {
    std::fs::write(path, contents).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

// ---------------------------------------------------------------------------------------
// Help.

#[test]
fn help_for_every_command_exits_zero_and_names_its_key_flags() {
    let env = Env::new();
    let top = env.run(&["--help"]).ok();
    for needle in [
        "init",
        "verify",
        "Exit codes",
        "TOKENVAULT_VAULT",
        "--passphrase-file",
        "docs/cli.md",
    ] {
        assert!(
            top.stdout.contains(needle),
            "--help lacks {needle}: {}",
            top.stdout
        );
    }
    let commands: &[(&[&str], &[&str])] = &[
        (
            &["init"],
            &[
                "--generate-key-file",
                "--passphrase-file",
                "--kdf",
                "Examples",
            ],
        ),
        (
            &["put"],
            &[
                "--access-token-file",
                "--access-token-stdin",
                "--refresh-token-env",
                "--response-file",
                "--expires-in",
                "--if-absent",
            ],
        ),
        (&["get"], &["--reveal", "--print-secret", "--json"]),
        (&["ls"], &["--long", "NAMESPACE"]),
        (&["rm"], &["--yes", "--force"]),
        (
            &["passwd"],
            &[
                "--new-passphrase-file",
                "--new-passphrase-fd",
                "--passphrase-env",
            ],
        ),
        (
            &["keyslot", "add"],
            &["--generate-key-file", "--new-key-file"],
        ),
        (&["keyslot", "rm"], &["<ID>"]),
        (&["keyslot", "ls"], &["--key-file", "--slot"]),
        (&["rotate"], &["--all"]),
        (
            &["import"],
            &[
                "--dry-run",
                "--format",
                "--remove-source",
                "--overwrite",
                "--namespace",
            ],
        ),
        (&["verify"], &["code 6", "--lock-timeout"]),
        (&["info"], &["format version", "--json"]),
    ];
    for (command, needles) in commands {
        let mut args = command.to_vec();
        args.push("--help");
        let out = env.run(&args).ok();
        for needle in *needles {
            assert!(
                out.stdout.contains(needle),
                "{command:?} --help lacks {needle}: {}",
                out.stdout
            );
        }
        assert!(!out.stdout.contains("insecure-fast-kdf"), "{}", out.stdout);
    }
}

/// The variables behind `--vault`, `--key-file` and `--passphrase-file` (clap's `env`) are
/// named in `--help`, never their values.
#[test]
fn help_names_the_environment_variables_but_never_their_values() {
    let vars = [
        ("TOKENVAULT_VAULT", "/vault-VALUE-1"),
        ("TOKENVAULT_KEY_FILE", "/key-VALUE-2"),
        ("TOKENVAULT_PASSPHRASE_FILE", "/passphrase-VALUE-3"),
    ];
    for args in [
        &["--help"][..],
        &["-h"],
        &["init", "--help"],
        &["ls", "--help"],
        &["passwd", "-h"],
        &["keyslot", "add", "--help"],
    ] {
        let mut cmd = Command::new(BIN);
        cmd.args(args);
        for (name, value) in vars {
            cmd.env(name, value);
        }
        let out = run(cmd, None).ok();
        // The top level has no secret flags: it names only TOKENVAULT_VAULT.
        let named = if args.len() == 1 {
            &vars[..1]
        } else {
            &vars[..]
        };
        for (name, _) in named {
            assert!(
                out.stdout.contains(name),
                "{args:?} lacks {name}: {}",
                out.stdout
            );
        }
        for (_, value) in vars {
            assert!(
                !out.stdout.contains(value) && !out.stderr.contains(value),
                "{args:?} shows {value}: {}",
                out.stdout
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Storing and reading tokens.

#[test]
fn put_get_ls_rm_with_fields_and_key_file() {
    let env = Env::with_vault();
    let at = env.path("at.txt");
    std::fs::write(&at, "at-SECRET-1\n").unwrap();
    let mut cmd = env.cmd(&[
        "put",
        "tenant-42",
        "api.example.org",
        "--access-token-file",
        at.to_str().unwrap(),
        "--refresh-token-env",
        "TV_RT",
        "--expires-at",
        "2030-01-01T00:00:00Z",
        "--scope",
        "openid email",
        "--scope",
        "transfer",
        "--identity",
        "alice",
        "--resource-server",
        "api.example.org",
        "--key-file",
        env.key.to_str().unwrap(),
    ]);
    cmd.env("TV_RT", "rt-SECRET-1");
    let out = run(cmd, None).ok();
    assert!(
        out.stdout.contains("stored \"api.example.org\""),
        "{out:#?}"
    );

    // Redacted by default, in text and in JSON.
    let text = env.key(&["get", "tenant-42", "api.example.org"]).ok();
    assert!(!text.all().contains("SECRET"), "{text:#?}");
    assert!(text.stdout.contains("[REDACTED]") && text.stdout.contains("2030-01-01T00:00:00Z"));
    let json = env
        .key(&["get", "tenant-42", "api.example.org", "--json"])
        .ok();
    assert!(!json.all().contains("SECRET"));
    let v = json.json();
    assert_eq!(v["type"], "token");
    assert_eq!(v["revealed"], false);
    assert_eq!(v["access_token"], Value::Null);
    assert_eq!(v["refresh_token"], Value::Null);
    assert_eq!(v["has_refresh_token"], true);
    assert_eq!(
        v["scopes"],
        serde_json::json!(["openid", "email", "transfer"])
    );
    assert_eq!(v["identity"], "alice");
    assert_eq!(v["expires_at"], "2030-01-01T00:00:00Z");
    assert_eq!(v["expires_at_unix"], 1_893_456_000);
    assert_eq!(v["expired"], false);

    // Secrets only with an explicit flag.
    let v = env
        .key(&["get", "tenant-42", "api.example.org", "--json", "--reveal"])
        .ok()
        .json();
    assert_eq!(v["access_token"], "at-SECRET-1");
    assert_eq!(v["refresh_token"], "rt-SECRET-1");
    let text = env
        .key(&["get", "tenant-42", "api.example.org", "--reveal"])
        .ok();
    assert!(text.stdout.contains("at-SECRET-1") && text.stdout.contains("rt-SECRET-1"));
    let raw = env
        .key(&[
            "get",
            "tenant-42",
            "api.example.org",
            "--print-secret",
            "access-token",
        ])
        .ok();
    assert_eq!(raw.stdout, "at-SECRET-1\n");
    env.key(&[
        "get",
        "tenant-42",
        "api.example.org",
        "--print-secret",
        "extra-json",
    ])
    .code(EXIT_NOT_FOUND);

    // Listing.
    env.key_stdin(&["put", "other", "k2", "--access-token-stdin"], "at-2")
        .ok();
    assert_eq!(env.key(&["ls"]).ok().stdout, "other\ntenant-42\n");
    assert_eq!(
        env.key(&["ls", "--long"]).ok().stdout,
        "other\t1\ntenant-42\t1\n"
    );
    let v = env.key(&["ls", "--json"]).ok().json();
    assert_eq!(
        v["namespaces"][1],
        serde_json::json!({"name": "tenant-42", "records": 1})
    );
    let v = env.key(&["ls", "tenant-42", "--json"]).ok().json();
    assert_eq!(
        v,
        serde_json::json!({"namespace": "tenant-42", "keys": ["api.example.org"]})
    );
    env.key(&["ls", "nowhere"]).code(EXIT_NOT_FOUND);

    // Removing a record, then a namespace.
    env.key(&["rm", "tenant-42", "api.example.org"]).ok();
    let gone = env
        .key(&["get", "tenant-42", "api.example.org"])
        .code(EXIT_NOT_FOUND);
    gone.one_line_error("no record \"api.example.org\"");
    env.key(&["rm", "tenant-42", "api.example.org"])
        .code(EXIT_NOT_FOUND);
    env.key(&["rm", "tenant-42", "api.example.org", "--force"])
        .ok();
    let unconfirmed = env.key(&["rm", "other"]).code(EXIT_USAGE);
    unconfirmed.one_line_error("confirmation");
    assert_eq!(env.key(&["ls", "other"]).ok().stdout, "k2\n");
    let v = env.key(&["rm", "other", "--yes", "--json"]).ok().json();
    assert_eq!(
        v,
        serde_json::json!({"namespace": "other", "key": null, "removed": true})
    );
    assert_eq!(env.key(&["ls", "--non-empty"]).ok().stdout, "");
}

#[test]
fn put_token_responses_and_refuses_bad_input() {
    let env = Env::with_vault();
    // A Globus response: one record per resource server, from standard input.
    let login = r#"{"access_token":"at-auth","token_type":"Bearer","expires_in":3600,
        "resource_server":"auth.globus.org","refresh_token":"rt-auth","scope":"openid",
        "other_tokens":[{"access_token":"at-transfer","token_type":"Bearer",
        "resource_server":"transfer.api.globus.org","expires_in":3600}]}"#;
    let v = env
        .key_stdin(
            &["put", "user/alice", "--response-file", "-", "--json"],
            login,
        )
        .ok()
        .json();
    assert_eq!(
        v["keys"],
        serde_json::json!(["auth.globus.org", "transfer.api.globus.org"])
    );

    // A refresh answer without a refresh token keeps the stored one (refresh merge rules).
    let refresh = env.path("refresh.json");
    std::fs::write(
        &refresh,
        r#"{"access_token":"at-auth-2","token_type":"Bearer"}"#,
    )
    .unwrap();
    env.key(&[
        "put",
        "user/alice",
        "auth.globus.org",
        "--response-file",
        refresh.to_str().unwrap(),
    ])
    .ok();
    let v = env
        .key(&["get", "user/alice", "auth.globus.org", "--json", "--reveal"])
        .ok()
        .json();
    assert_eq!(v["access_token"], "at-auth-2");
    assert_eq!(v["refresh_token"], "rt-auth");
    assert_eq!(v["scopes"], serde_json::json!(["openid"]));

    // --if-absent refuses to replace.
    let exists = env
        .key_stdin(
            &[
                "put",
                "user/alice",
                "auth.globus.org",
                "--access-token-stdin",
                "--if-absent",
            ],
            "x",
        )
        .code(EXIT_EXISTS);
    exists.one_line_error("already holds");
    // An OAuth error response is not a token response; its values never appear.
    let err = env
        .key_stdin(
            &["put", "a", "k", "--response-file", "-"],
            r#"{"error":"invalid_grant","error_description":"VALUE-123"}"#,
        )
        .code(1);
    assert!(!err.all().contains("VALUE-123"), "{err:#?}");
    // Usage errors: no access token, two readers of standard input, fields with a response.
    env.key(&["put", "a", "k"])
        .code(EXIT_USAGE)
        .one_line_error("no access token");
    env.key_stdin(
        &[
            "put",
            "a",
            "k",
            "--access-token-stdin",
            "--refresh-token-file",
            "-",
        ],
        "x",
    )
    .code(EXIT_USAGE);
    env.key(&["put", "a", "k", "--response-file", "-", "--scope", "x"])
        .code(EXIT_USAGE);
    env.key_stdin(&["put", "a", "--access-token-stdin"], "x")
        .code(EXIT_USAGE)
        .one_line_error("no record key");
}

// ---------------------------------------------------------------------------------------
// Secrets: passphrase sources, wrong passphrases, passwd, keyslots.

#[test]
fn passphrase_sources_passwd_and_wrong_passphrase() {
    let env = Env::new();
    let old = env.path("old.txt");
    let new = env.path("new.txt");
    write_private(&old, b"old correct horse\n");
    write_private(&new, b"new battery staple\n");
    let old_arg = old.to_str().unwrap();
    env.run(&["init", "--passphrase-file", old_arg, "--insecure-fast-kdf"])
        .ok();

    // From a named environment variable (the trailing newline of the file was stripped).
    let mut cmd = env.cmd(&["ls", "--passphrase-env", "TV_PASS"]);
    cmd.env("TV_PASS", "old correct horse");
    run(cmd, None).ok();
    // From descriptor 0, a pipe.
    run(
        env.cmd(&["ls", "--passphrase-fd", "0"]),
        Some(b"old correct horse\n"),
    )
    .ok();
    // From descriptor 3, a pipe set up by the shell.
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg(r#"printf '%s\n' "$TV_PASS" | "$0" --vault "$1" info --passphrase-fd 3 3<&0"#)
        .arg(BIN)
        .arg(&env.vault)
        .env("TV_PASS", "old correct horse");
    assert!(run(sh, None).ok().stdout.contains("format_version"));

    // A wrong passphrase: exit code 3, one line and a hint, and the passphrase never shown.
    let mut cmd = env.cmd(&["ls", "--passphrase-env", "TV_PASS"]);
    cmd.env("TV_PASS", "WRONG-PASSPHRASE-42");
    let wrong = run(cmd, None).code(EXIT_WRONG_KEY);
    wrong.one_line_error("wrong passphrase or key");
    assert!(wrong.stdout.is_empty() && !wrong.all().contains("WRONG-PASSPHRASE-42"));

    // passwd: the old passphrase stops working, the new one opens the vault.
    let out = env
        .run(&[
            "passwd",
            "--passphrase-file",
            old_arg,
            "--new-passphrase-file",
            new.to_str().unwrap(),
            "--insecure-fast-kdf",
        ])
        .ok();
    assert!(out.stdout.contains("keyslot 0"), "{out:#?}");
    assert!(!out.all().contains("horse") && !out.all().contains("staple"));
    env.run(&["ls", "--passphrase-file", old_arg])
        .code(EXIT_WRONG_KEY);
    env.run(&["ls", "--passphrase-file", new.to_str().unwrap()])
        .ok();
    // Two secret flags at once are a usage error.
    env.run(&["ls", "--passphrase-file", old_arg, "--key-file", old_arg])
        .code(EXIT_USAGE);
}

#[test]
fn real_kdf_passphrase_vault() {
    let env = Env::new();
    let pass = env.path("pass.txt");
    write_private(&pass, b"a real passphrase\n");
    env.run(&["init", "--passphrase-file", pass.to_str().unwrap()])
        .ok();
    let v = env
        .run(&[
            "info",
            "--json",
            "--passphrase-file",
            pass.to_str().unwrap(),
        ])
        .ok()
        .json();
    assert_eq!(
        v["keyslots"][0],
        serde_json::json!({"id": 0, "kind": "passphrase",
            "kdf": {"algorithm": "argon2id", "m_kib": 65536, "t": 3, "p": 4, "insecure": false}})
    );
}

#[test]
fn keyslot_add_ls_rm() {
    let env = Env::with_vault();
    let recovery = env.path("recovery.key");
    let v = env
        .key(&[
            "keyslot",
            "add",
            "--generate-key-file",
            recovery.to_str().unwrap(),
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(v["keyslot"]["id"], 1);
    assert_eq!(v["keyslot"]["kind"], "raw-key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&recovery).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // The generated key opens the vault; an existing file is never replaced.
    let slots = env
        .run(&[
            "keyslot",
            "ls",
            "--json",
            "--key-file",
            recovery.to_str().unwrap(),
        ])
        .ok()
        .json();
    assert_eq!(slots["keyslots"].as_array().unwrap().len(), 2);
    env.key(&[
        "keyslot",
        "add",
        "--generate-key-file",
        recovery.to_str().unwrap(),
    ])
    .code(EXIT_EXISTS);
    assert_eq!(
        env.key(&["keyslot", "ls"]).ok().stdout,
        "keyslot 0: raw-key (opened it)\nkeyslot 1: raw-key\n"
    );

    env.key(&["keyslot", "rm", "1"]).ok();
    env.run(&["ls", "--key-file", recovery.to_str().unwrap()])
        .code(EXIT_WRONG_KEY);
    env.key(&["keyslot", "rm", "9"]).code(EXIT_NOT_FOUND);
    env.key(&["keyslot", "rm", "0"])
        .code(1)
        .one_line_error("last keyslot");
}

// ---------------------------------------------------------------------------------------
// Maintenance: rotate, info, import, verify.

#[test]
fn rotate_and_info() {
    let env = Env::with_vault();
    for (ns, key) in [("a", "k1"), ("a", "k2"), ("b", "k3")] {
        env.key_stdin(&["put", ns, key, "--access-token-stdin"], "at")
            .ok();
    }
    let out = env.key(&["rotate", "a", "--json"]).ok();
    assert_eq!(out.stderr, "", "no progress bar without a terminal");
    let v = out.json();
    assert_eq!(v["rotated"][0]["namespace"], "a");
    assert_eq!(v["rotated"][0]["key_id"], 2);
    let v = env.key(&["rotate", "--all", "--json"]).ok().json();
    assert_eq!(v["rotated"].as_array().unwrap().len(), 2);
    env.key(&["rotate", "nowhere"]).code(EXIT_NOT_FOUND);
    env.key(&["rotate"]).code(EXIT_USAGE);
    assert_eq!(
        env.key(&["get", "a", "k2", "--print-secret", "access-token"])
            .ok()
            .stdout,
        "at\n"
    );

    let v = env.key(&["info", "--json"]).ok().json();
    assert_eq!(v["format_version"], 2);
    assert_eq!(v["namespaces"], 2);
    assert_eq!(v["records"], 3);
    assert_eq!(v["keyslots"][0]["kind"], "raw-key");
    assert!(v["size_bytes"].as_u64().unwrap() > 0 && v["files"].as_u64().unwrap() > 0);
    let text = env.key(&["info"]).ok().stdout;
    assert!(
        text.contains("format_version   2") && text.contains("records          3"),
        "{text}"
    );
}

#[test]
fn import_peer_token_files() {
    let env = Env::with_vault();
    let v2 = format!("{PEER_FILES}/globus-v2.json");
    let dry = env.key(&["import", &v2, "--dry-run", "--json"]).ok();
    let v = dry.json();
    assert_eq!(
        (v["dry_run"].clone(), v["format"].clone()),
        (Value::Bool(true), "globus-json".into())
    );
    assert_eq!(v["imported"].as_array().unwrap().len(), 5);
    assert!(
        !dry.all().contains("AgEPyYngFb51"),
        "no token value in a report"
    );
    assert_eq!(env.key(&["ls"]).ok().stdout, "", "a dry run writes nothing");

    let out = env.key(&["import", &v2]).ok();
    assert_eq!(out.stderr, "", "no spinner without a terminal");
    assert!(out.stdout.contains("imported 5 records") && !out.all().contains("AgEPyYngFb51"));
    let at = env
        .key(&[
            "get",
            "DEFAULT",
            "auth.globus.org",
            "--print-secret",
            "access-token",
        ])
        .ok();
    assert!(
        at.stdout.starts_with("AgEPyYngFb51yBMWXaSCrUZoL8g5"),
        "{at:#?}"
    );
    env.key(&["import", &v2])
        .code(EXIT_EXISTS)
        .one_line_error("already holds");
    let v = env
        .key(&["import", &v2, "--overwrite", "--json"])
        .ok()
        .json();
    assert_eq!(v["imported"][0]["replaced"], true);

    // SQLite (legacy, with a skipped settings row), detected from the contents.
    let v = env
        .key(&[
            "import",
            &format!("{PEER_FILES}/globus-legacy.sqlite"),
            "--legacy-namespace",
            "legacy",
            "--overwrite",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(v["format"], "globus-sqlite");
    assert_eq!(v["skipped"][0]["key"], "cli_settings");

    // Sharetribe: needs a namespace and key; --remove-source unlinks the copy and says what
    // unlinking does not do.
    let copy = env.path("file-store-token.json");
    std::fs::copy(
        format!("{PEER_FILES}/sharetribe-file-store-token.json"),
        &copy,
    )
    .unwrap();
    let copy_arg = copy.to_str().unwrap();
    env.key(&["import", copy_arg])
        .code(EXIT_USAGE)
        .one_line_error("Sharetribe");
    let out = env
        .key(&[
            "import",
            copy_arg,
            "--format",
            "sharetribe",
            "--namespace",
            "mk",
            "--key",
            "integration",
            "--remove-source",
        ])
        .ok();
    assert!(out.stdout.contains("does not erase"), "{out:#?}");
    assert!(!copy.exists());
    env.key(&["import", copy_arg]).code(EXIT_NOT_FOUND);
    let ls = env.key(&["ls"]).ok().stdout;
    assert!(ls.contains("mk\n") && ls.contains("DEFAULT\n"), "{ls}");
}

#[test]
fn verify_reports_damaged_records_and_get_names_their_key() {
    let env = Env::with_vault();
    for key in ["alpha", "beta"] {
        env.key_stdin(&["put", "tenant-7", key, "--access-token-stdin"], "at")
            .ok();
    }
    let clean = env.key(&["verify"]).ok();
    assert_eq!(clean.stderr, "", "no progress bar without a terminal");
    assert!(
        clean.stdout.contains("every record authenticates"),
        "{clean:#?}"
    );
    assert_eq!(env.key(&["verify", "--json"]).ok().json()["damaged"], false);

    // A flipped byte: the record fails authentication. Its key is sealed inside it, so
    // verify names the namespace and the storage id; `get` names the key.
    let records = namespace_records(&env.vault);
    let (id, mut bytes) = records[0].clone();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    rewrite_record(&env.vault, &id, bytes);
    let out = env.key(&["verify"]).code(EXIT_DAMAGED);
    let expected = format!(
        "namespace \"tenant-7\", key unknown (storage id {})",
        hex(&id[48..])
    );
    assert!(out.stdout.contains(&expected), "{out:#?}");
    assert!(
        out.stdout.contains("\"tenant-7\": 1 ok, 1 damaged"),
        "{out:#?}"
    );
    out.one_line_error("the vault is damaged");
    assert!(out.stderr.contains("\"tenant-7\""), "{out:#?}");
    let v = env.key(&["verify", "--json"]).code(EXIT_DAMAGED).json();
    assert_eq!(v["damaged"], true);
    assert_eq!(v["records_damaged"], 1);
    let damaged = &v["namespaces"][0]["damaged"][0];
    assert_eq!(damaged["storage_id"], hex(&id[48..]));
    assert_eq!(damaged["key"], Value::Null);
    let gets: Vec<Out> = ["alpha", "beta"]
        .iter()
        .map(|k| env.key(&["get", "tenant-7", k]))
        .collect();
    let failed: Vec<&Out> = gets.iter().filter(|o| o.code == EXIT_DAMAGED).collect();
    assert_eq!(failed.len(), 1, "{gets:#?}");
    assert!(gets.iter().any(|o| o.code == 0), "{gets:#?}");
    assert!(
        failed[0]
            .stderr
            .contains("in namespace \"tenant-7\" is damaged"),
        "{gets:#?}"
    );
}

#[test]
fn damaged_header_is_the_damaged_exit_code() {
    let env = Env::with_vault();
    let header = env.vault.join("tokenvault.header");
    let mut bytes = std::fs::read(&header).unwrap();
    bytes[20] ^= 0x01;
    std::fs::write(&header, bytes).unwrap();
    let out = env.key(&["ls"]).code(EXIT_DAMAGED);
    out.one_line_error("damaged");
}

// ---------------------------------------------------------------------------------------
// Locks, terminals, usage.

#[test]
fn locked_vault_is_the_locked_exit_code() {
    let env = Env::with_vault();
    let holder = VaultOptions::new()
        .open(&env.vault, &support::raw_key(7))
        .unwrap();
    let out = env.key(&["ls", "--lock-timeout", "0.2"]).code(EXIT_LOCKED);
    out.one_line_error("in use by another process");
    assert!(out.stderr.contains("--lock-timeout"));
    holder.close().unwrap();
    env.key(&["ls"]).ok();
}

#[test]
fn no_terminal_and_no_secret_source_fails_at_once() {
    let env = Env::with_vault();
    // Standard input is /dev/null: no prompt, a usage error naming the flags.
    for args in [&["ls"][..], &["get", "a", "b"], &["verify"]] {
        let out = env.run(args).code(EXIT_USAGE);
        out.one_line_error("no passphrase source");
        assert!(out.stderr.contains("--passphrase-file") && out.stderr.contains("--key-file"));
    }
    let fresh = Env::new();
    fresh.run(&["init"]).code(EXIT_USAGE);
    assert!(
        !fresh.vault.exists(),
        "a refused init leaves nothing behind"
    );
    let out = env.key(&["passwd"]).code(EXIT_USAGE);
    assert!(out.stderr.contains("--new-passphrase-file"), "{out:#?}");
    // The environment variables stand in for the flags.
    let mut cmd = env.cmd(&["ls"]);
    cmd.env("TOKENVAULT_KEY_FILE", &env.key);
    run(cmd, None).ok();
}

/// A secret flag overrides `TOKENVAULT_KEY_FILE` and `TOKENVAULT_PASSPHRASE_FILE`; without one,
/// setting both is a usage error; a variable set but empty counts as unset.
#[test]
fn secret_flags_override_the_environment_and_empty_variables_are_unset() {
    let env = Env::with_vault();
    let pass = env.path("pass.txt");
    write_private(&pass, b"a passphrase\n");
    let with = |vars: &[(&str, &Path)], args: &[&str]| {
        let mut cmd = env.cmd(args);
        for (name, value) in vars {
            cmd.env(name, value);
        }
        run(cmd, None)
    };
    let missing = env.path("missing");
    let key = env.key.as_path();
    let both = [
        ("TOKENVAULT_KEY_FILE", key),
        ("TOKENVAULT_PASSPHRASE_FILE", pass.as_path()),
    ];
    with(&both, &["ls"])
        .code(EXIT_USAGE)
        .one_line_error("both TOKENVAULT_KEY_FILE and TOKENVAULT_PASSPHRASE_FILE are set");
    let key_arg = key.to_str().unwrap();
    with(&both, &["ls", "--key-file", key_arg]).ok();
    // The flag is used, not the variable (which names no file).
    with(
        &[("TOKENVAULT_KEY_FILE", &missing)],
        &["ls", "--key-file", key_arg],
    )
    .ok();
    with(&[("TOKENVAULT_KEY_FILE", &missing)], &["ls"])
        .code(EXIT_USAGE)
        .one_line_error("missing");
    // Empty: as if unset (here, no secret source at all, and no terminal).
    let empty = Path::new("");
    with(
        &[
            ("TOKENVAULT_KEY_FILE", key),
            ("TOKENVAULT_PASSPHRASE_FILE", empty),
        ],
        &["ls"],
    )
    .ok();
    with(
        &[
            ("TOKENVAULT_KEY_FILE", empty),
            ("TOKENVAULT_PASSPHRASE_FILE", empty),
        ],
        &["ls"],
    )
    .code(EXIT_USAGE)
    .one_line_error("no passphrase source");
    // `--vault` overrides TOKENVAULT_VAULT, which counts as unset when empty.
    let mut cmd = Command::new(BIN);
    cmd.args(["ls", "--key-file", key_arg, "--vault"])
        .arg(&env.vault)
        .env("TOKENVAULT_VAULT", &missing);
    run(cmd, None).ok();
    let mut cmd = Command::new(BIN);
    cmd.args(["ls", "--key-file", key_arg])
        .env("TOKENVAULT_VAULT", "")
        .env("XDG_CONFIG_HOME", env.path("config"));
    if cfg!(all(unix, not(target_os = "macos"))) {
        run(cmd, None)
            .code(EXIT_NOT_FOUND)
            .one_line_error("config/tokenvault/vault");
    }
}

#[test]
fn vault_location_errors_and_defaults() {
    let env = Env::new();
    let out = env.key(&["ls"]).code(EXIT_NOT_FOUND);
    out.one_line_error("no vault at");
    assert!(out.stderr.contains("tokenvault init"));
    // TOKENVAULT_VAULT names the vault when --vault is absent.
    let mut cmd = Command::new(BIN);
    cmd.args(["init", "--key-file"])
        .arg(&env.key)
        .env("TOKENVAULT_VAULT", &env.vault);
    run(cmd, None).ok();
    assert!(env.vault.is_dir());
    env.key(&["init"])
        .code(EXIT_EXISTS)
        .one_line_error("already exists");
    // Without either, the XDG configuration directory.
    let mut cmd = Command::new(BIN);
    cmd.args(["init", "--key-file"])
        .arg(&env.key)
        .env_remove("TOKENVAULT_VAULT")
        .env("XDG_CONFIG_HOME", env.path("config"));
    if cfg!(all(unix, not(target_os = "macos"))) {
        run(cmd, None).ok();
        assert!(env.path("config/tokenvault/vault").is_dir());
    }
    env.run(&["get"]).code(EXIT_USAGE);
    env.run(&["frobnicate"]).code(EXIT_USAGE);
}

#[test]
fn secret_records_are_shown_redacted() {
    let env = Env::with_vault();
    let vault = Vault::open(&env.vault, &support::raw_key(7)).unwrap();
    let ns = vault.namespace("apps").unwrap();
    ns.put(
        "client-secret",
        &tokenvault::Secret::from_text("cs-SECRET".into()),
    )
    .unwrap();
    ns.put("token", &Token::new("at".into())).unwrap();
    vault.close().unwrap();
    let out = env.key(&["get", "apps", "client-secret"]).ok();
    assert!(
        out.stdout.contains("secret") && !out.stdout.contains("cs-SECRET"),
        "{out:#?}"
    );
    let v = env
        .key(&["get", "apps", "client-secret", "--json", "--reveal"])
        .ok()
        .json();
    assert_eq!(
        (v["type"].clone(), v["value"].clone()),
        ("secret".into(), "cs-SECRET".into())
    );
    assert_eq!(
        env.key(&["get", "apps", "client-secret", "--print-secret", "value"])
            .ok()
            .stdout,
        "cs-SECRET\n"
    );
    env.key(&[
        "get",
        "apps",
        "client-secret",
        "--print-secret",
        "access-token",
    ])
    .code(1);
}

// ---------------------------------------------------------------------------------------
// Issue 12: passwd and shared secrets, private passphrase files, escaped output.

/// Regression (issue 12, finding 2): `passwd --slot N` changed another slot and reported N;
/// `passwd` without `--slot` changed one slot of a shared secret and left the other working.
#[test]
fn passwd_honours_slot_and_changes_every_slot_of_the_old_secret() {
    let file = |env: &Env, name: &str, text: &str| {
        let path = env.path(name);
        write_private(&path, text.as_bytes());
        path.to_str().unwrap().to_owned()
    };
    let fast = "--insecure-fast-kdf";
    // A vault whose header an older tokenvault wrote: slots 0 and 2 open with "shared",
    // slot 1 with "other" (tests/data/duplicate-slots/README.md).
    let duplicate_slots = || {
        let env = Env::new();
        let shared = file(&env, "shared.txt", "shared\n");
        env.run(&["init", "--passphrase-file", &shared, fast]).ok();
        std::fs::copy(
            "tests/data/duplicate-slots/passphrase.header",
            env.vault.join("tokenvault.header"),
        )
        .unwrap();
        env
    };
    let env = duplicate_slots();
    let shared = file(&env, "shared.txt", "shared\n");
    let c = file(&env, "c.txt", "pass-c\n");
    let d = file(&env, "d.txt", "pass-d\n");
    let opens = |env: &Env, slot: &str, pass: &str| {
        env.run(&["keyslot", "ls", "--slot", slot, "--passphrase-file", pass])
            .code
    };
    assert_eq!(
        (opens(&env, "0", &shared), opens(&env, "2", &shared)),
        (0, 0)
    );

    // `--slot 2` changes slot 2, and only it; a note says that slot 0 still has the secret.
    let out = env.run(&[
        "passwd",
        "--slot",
        "2",
        "--passphrase-file",
        &shared,
        "--new-passphrase-file",
        &c,
        fast,
        "--json",
    ]);
    assert!(out.stderr.contains("still opens keyslot(s) 0"), "{out:#?}");
    let v = out.ok().json();
    assert_eq!(v["keyslot"]["id"], 2);
    assert_eq!(v["keyslots"].as_array().unwrap().len(), 1);
    assert_eq!(opens(&env, "2", &c), 0);
    assert_eq!(opens(&env, "2", &shared), EXIT_WRONG_KEY);
    assert_eq!(opens(&env, "0", &shared), 0, "slot 0 keeps its secret");

    // A new secret that another slot already has is refused: nothing changes.
    env.run(&[
        "passwd",
        "--slot",
        "2",
        "--passphrase-file",
        &c,
        "--new-passphrase-file",
        &shared,
        fast,
    ])
    .code(EXIT_EXISTS)
    .one_line_error("keyslot 0");
    assert_eq!(opens(&env, "2", &c), 0);

    // Without `--slot`, every slot that the old passphrase opens is changed and named.
    let env = duplicate_slots();
    let shared = file(&env, "shared.txt", "shared\n");
    let d2 = file(&env, "d.txt", "pass-d\n");
    let out = env
        .run(&[
            "passwd",
            "--passphrase-file",
            &shared,
            "--new-passphrase-file",
            &d2,
            fast,
        ])
        .ok();
    let changed: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(changed.len(), 2, "{out:#?}");
    assert!(
        changed[0].starts_with("changed the secret of keyslot 0: "),
        "{out:#?}"
    );
    assert!(
        changed[1].starts_with("changed the secret of keyslot 2: "),
        "{out:#?}"
    );
    env.run(&["ls", "--passphrase-file", &shared])
        .code(EXIT_WRONG_KEY);
    for slot in ["0", "2"] {
        assert_eq!(opens(&env, slot, &shared), EXIT_WRONG_KEY, "slot {slot}");
        assert_eq!(opens(&env, slot, &d2), 0, "slot {slot}");
    }
    // A slot that does not exist: not found, nothing changed.
    env.run(&[
        "passwd",
        "--slot",
        "7",
        "--passphrase-file",
        &d2,
        "--new-passphrase-file",
        &d,
        fast,
    ])
    .code(EXIT_NOT_FOUND);
}

/// Regression (issue 12, finding 2): `keyslot add` accepted a secret that already opens a
/// keyslot.
#[test]
fn keyslot_add_refuses_a_secret_that_already_opens_a_slot() {
    let env = Env::with_vault();
    let copy = env.path("copy.key");
    write_private(&copy, &[7u8; 32]); // the same key, raw instead of hex
    let out = env
        .key(&["keyslot", "add", "--new-key-file", copy.to_str().unwrap()])
        .code(EXIT_EXISTS);
    out.one_line_error("keyslot 0 already opens with this secret");
    assert_eq!(
        env.key(&["keyslot", "ls"]).ok().stdout,
        "keyslot 0: raw-key (opened it)\n"
    );
}

/// Regression (issue 12, finding 6): passphrase files were accepted when others could read
/// them, and a FIFO hung the command. They now follow the key files' rules: a regular file,
/// mode 0600 (or stricter), owned by the user or root. A FIFO (or device) is refused without
/// opening it, as a key file too.
#[cfg(unix)]
#[test]
fn passphrase_files_must_be_private_regular_files() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    let pass = env.path("pass.txt");
    write_private(&pass, b"a passphrase\n");
    let pass_arg = pass.to_str().unwrap();
    env.run(&["init", "--passphrase-file", pass_arg, "--insecure-fast-kdf"])
        .ok();
    // A raw-key slot too, so that a key file is read (only slots of its kind are tried).
    let key_arg = env.key.to_str().unwrap();
    env.run(&[
        "keyslot",
        "add",
        "--passphrase-file",
        pass_arg,
        "--new-key-file",
        key_arg,
    ])
    .ok();

    let group = env.path("group.txt");
    std::fs::write(&group, b"a passphrase\n").unwrap();
    std::fs::set_permissions(&group, std::fs::Permissions::from_mode(0o640)).unwrap();
    let group_arg = group.to_str().unwrap();
    env.run(&["ls", "--passphrase-file", group_arg])
        .code(EXIT_USAGE)
        .one_line_error("mode 640 lets group or others access it");
    // The same for the new passphrase, and for TOKENVAULT_PASSPHRASE_FILE.
    env.run(&[
        "passwd",
        "--passphrase-file",
        pass_arg,
        "--new-passphrase-file",
        group_arg,
    ])
    .code(EXIT_USAGE);
    let mut cmd = env.cmd(&["ls"]);
    cmd.env("TOKENVAULT_PASSPHRASE_FILE", &group);
    run(cmd, None).code(EXIT_USAGE);
    // A missing file is still "not found".
    env.run(&[
        "ls",
        "--passphrase-file",
        env.path("missing").to_str().unwrap(),
    ])
    .code(EXIT_NOT_FOUND);

    // A FIFO, as passphrase file or key file: refused at once (a hang fails `run`).
    let fifo = env.path("fifo");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let fifo_arg = fifo.to_str().unwrap();
    for flag in ["--passphrase-file", "--key-file"] {
        let out = env.run(&["ls", flag, fifo_arg]).code(EXIT_USAGE);
        out.one_line_error("not a regular file");
    }
    env.run(&["ls", "--passphrase-file", "/dev/zero"])
        .code(EXIT_USAGE);

    // Owned by another user: only root can make such a file (CI runs as root).
    if !rustix::process::geteuid().is_root() {
        eprintln!("not root: cannot chown a passphrase file to another user; skipped that part");
        return;
    }
    std::os::unix::fs::chown(&pass, Some(65534), Some(65534)).unwrap();
    env.run(&["ls", "--passphrase-file", pass_arg])
        .code(EXIT_USAGE)
        .one_line_error("owned by user id 65534");
    std::os::unix::fs::chown(&env.key, Some(65534), Some(65534)).unwrap();
    env.run(&["ls", "--key-file", env.key.to_str().unwrap()])
        .code(EXIT_USAGE)
        .one_line_error("owned by user id 65534");
    std::os::unix::fs::chown(&pass, Some(0), Some(0)).unwrap();
    env.run(&["ls", "--passphrase-file", pass_arg]).ok();
}

/// Regression (issue 12, finding 6): names and fields were printed raw, so a planted record
/// could send escape sequences to the terminal. Text output escapes them; JSON keeps them
/// exact (and escapes the C1 controls serde_json leaves raw).
#[test]
fn ls_get_and_errors_escape_control_characters() {
    let env = Env::with_vault();
    let ns = "evil\u{1b}[2J\u{1b}]0;owned\u{7}";
    let key = "key\u{9b}31m\u{202e}gpj.exe";
    let vault = Vault::open(&env.vault, &support::raw_key(7)).unwrap();
    let token = Token::new("at".to_owned().into())
        .with_token_type("Bearer\u{1b}[0m")
        .with_scopes(["read\u{1b}[5m"])
        .with_identity("alice\rbob")
        .with_resource_server("rs\u{2028}x");
    vault.namespace(ns).unwrap().put(key, &token).unwrap();
    vault.close().unwrap();
    let raw = |text: &str| {
        text.chars().any(|c| {
            c.is_control() && c != '\n' && c != '\t' || matches!(c, '\u{202e}' | '\u{2028}')
        })
    };

    let out = env.key(&["ls"]).ok();
    assert_eq!(out.stdout, "evil\\u{1b}[2J\\u{1b}]0;owned\\u{7}\n");
    let out = env.key(&["ls", "--long"]).ok();
    assert_eq!(out.stdout, "evil\\u{1b}[2J\\u{1b}]0;owned\\u{7}\t1\n");
    let out = env.key(&["ls", ns]).ok();
    assert_eq!(out.stdout, "key\\u{9b}31m\\u{202e}gpj.exe\n");
    let out = env.key(&["get", ns, key]).ok();
    assert!(!raw(&out.all()), "{out:#?}");
    for shown in [
        "evil\\u{1b}[2J",
        "key\\u{9b}31m",
        "Bearer\\u{1b}[0m",
        "read\\u{1b}[5m",
        "alice\\rbob",
        "rs\\u{2028}x",
    ] {
        assert!(out.stdout.contains(shown), "{shown}: {out:#?}");
    }
    // Error messages that quote the names.
    let out = env
        .key(&["get", ns, "missing\u{1b}[1m"])
        .code(EXIT_NOT_FOUND);
    assert!(!raw(&out.all()), "{out:#?}");
    out.one_line_error("no record \"missing\\u{1b}[1m\" in namespace \"evil\\u{1b}[2J");

    // JSON: exact names once parsed; no raw C1 control or line separator in the bytes.
    let out = env.key(&["ls", ns, "--json"]).ok();
    assert!(!raw(&out.stdout), "{out:#?}");
    assert!(out.stdout.contains("\\u009b"), "{out:#?}");
    assert_eq!(out.json()["keys"][0], key);
    let out = env.key(&["get", ns, key, "--json"]).ok();
    assert!(!raw(&out.stdout), "{out:#?}");
    assert_eq!(out.json()["resource_server"], "rs\u{2028}x");
    assert_eq!(out.json()["namespace"], ns);
}

// ---------------------------------------------------------------------------------------
// Helpers that reach into the storage, as tests/engine/tamper.rs does.

/// The (storage key, stored bytes) of every record of the vault's only namespace. The
/// storage key is the namespace id and incarnation (48 bytes) followed by the record's
/// storage id.
fn namespace_records(vault: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let backend = SledOptions::new()
        .lock_timeout(Duration::from_secs(5))
        .open(vault)
        .unwrap();
    let records = backend.scan(b"r", &[], None, 100).unwrap();
    assert!(records.iter().all(|(k, _)| k[..48] == records[0].0[..48]));
    backend.close().unwrap();
    records
}

/// Replaces the stored bytes of the record under storage key `key`.
fn rewrite_record(vault: &Path, key: &[u8], bytes: Vec<u8>) {
    let backend = SledOptions::new()
        .lock_timeout(Duration::from_secs(5))
        .open(vault)
        .unwrap();
    backend.put(b"r", key, bytes).unwrap();
    backend.flush().unwrap();
    backend.close().unwrap();
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn init_refuses_data_and_orphans_are_kept_until_purged() {
    // `init` on a directory holding other files: exit 7, the directory untouched.
    let env = Env::new();
    std::fs::create_dir(&env.vault).unwrap();
    std::fs::write(env.vault.join("notes.txt"), b"mine").unwrap();
    let out = env
        .run(&["init", "--key-file", env.key.to_str().unwrap()])
        .code(EXIT_EXISTS);
    out.one_line_error("not empty");
    assert_eq!(std::fs::read(env.vault.join("notes.txt")).unwrap(), b"mine");

    // A namespace removal that stopped after its first batch (entry and manifest gone,
    // records left): reported by verify (not damage), removed only by purge-orphans.
    let env = Env::with_vault();
    let at = env.path("at.txt");
    write_private(&at, b"at-1\n");
    for key in ["rs", "rs2"] {
        env.key(&[
            "put",
            "tenant",
            key,
            "--access-token-file",
            at.to_str().unwrap(),
        ])
        .ok();
    }
    let records = namespace_records(&env.vault);
    {
        let backend = SledOptions::new()
            .lock_timeout(Duration::from_secs(5))
            .open(&env.vault)
            .unwrap();
        backend.remove(b"e", &records[0].0[..32]).unwrap();
        backend.remove(b"m", &records[0].0[..48]).unwrap();
        backend.flush().unwrap();
        backend.close().unwrap();
    }
    let json = env.key(&["--json", "verify"]).ok().json();
    assert_eq!(json["orphans"], 1);
    assert_eq!(json["orphan_trees"], 0);
    assert_eq!(json["set_aside_trees"], 0);
    assert_eq!(json["clean"], false);
    let text = env.key(&["verify"]).ok().stdout;
    assert!(text.contains("1 orphaned namespace storage(s)"), "{text}");
    assert!(text.contains("purge-orphans"), "{text}");
    let json = env.key(&["--json", "purge-orphans"]).ok().json();
    assert_eq!(json["dropped"], 1);
    assert_eq!(json["dropped_set_aside"], 0);
    let json = env.key(&["--json", "verify"]).ok().json();
    assert_eq!(json["orphans"], 0);
    assert_eq!(json["clean"], true);
}

#[test]
fn shred_re_seals_every_entry_and_the_vault_keeps_working() {
    let env = Env::with_vault();
    for (ns, key) in [("a", "k1"), ("b", "k2"), ("gone", "k3")] {
        env.key_stdin(&["put", ns, key, "--access-token-stdin"], "at")
            .ok();
    }
    env.key(&["rm", "gone", "--yes"]).ok();
    let v = env.key(&["shred", "--json"]).ok().json();
    assert_eq!(v["resealed"], 2);
    let text = env.key(&["shred"]).ok().stdout;
    assert!(text.contains("2 namespace entries re-sealed"), "{text}");
    assert_eq!(
        env.key(&["get", "b", "k2", "--print-secret", "access-token"])
            .ok()
            .stdout,
        "at\n"
    );
    assert_eq!(env.key(&["ls"]).ok().stdout, "a\nb\n");
    let v = env.key(&["--json", "verify"]).ok().json();
    assert_eq!(v["clean"], true);
}

/// Issue 15: `--vault` (and `TOKENVAULT_VAULT`) take a `postgres://` URL, the vault's name in
/// the database as its `vault` option; a URL holding a password is refused and never shown.
#[test]
fn a_postgres_url_is_a_vault_location_and_a_password_in_it_is_refused() {
    let Some(url) = support::postgres_test_url() else {
        return;
    };
    let mut env = Env::new();
    let name = support::unique_name("cli");
    env.vault = PathBuf::from(format!("{url}&vault={name}"));
    env.key(&["init"]).ok();
    env.key(&["init"]).code(EXIT_EXISTS);
    let at = env.path("at.txt");
    std::fs::write(&at, "at-SECRET-pg\n").unwrap();
    env.key(&[
        "put",
        "tenant-1",
        "api",
        "--access-token-file",
        at.to_str().unwrap(),
    ])
    .ok();
    let ls = env.key(&["ls", "--json"]).ok().json();
    assert!(ls.to_string().contains("tenant-1"), "{ls}");
    let shown = env.key(&["get", "tenant-1", "api", "--reveal"]).ok();
    assert!(shown.stdout.contains("at-SECRET-pg"), "{shown:#?}");
    let info = env.key(&["info", "--json"]).ok().json();
    assert!(info["vault"].as_str().unwrap().contains(&name), "{info}");
    assert_eq!(info["size_bytes"], 0);
    // Another vault name in the same database is another vault.
    let mut other = Env::new();
    other.vault = PathBuf::from(format!("{url}&vault={name}-other"));
    other.key(&["ls"]).code(EXIT_NOT_FOUND);

    // A password in the URL: refused before anything connects, and not repeated.
    let with_password = url.replace("tokenvault@", "tokenvault:hunter2@");
    let mut leaky = Env::new();
    leaky.vault = PathBuf::from(format!("{with_password}&vault={name}"));
    for args in [&["ls"][..], &["init"], &["info"]] {
        let out = leaky.key(args).code(EXIT_USAGE);
        assert!(!out.all().contains("hunter2"), "{out:#?}");
        assert!(out.all().contains("password file"), "{out:#?}");
    }
}

/// `tokenvault doctor`: what a vault's durability rests on, without unlocking it.
#[test]
fn doctor_reports_the_storage_without_unlocking() {
    let env = Env::with_vault();
    let out = env.run(&["doctor"]).ok();
    assert!(out.stdout.contains("storage: directory"), "{out:#?}");
    let Some(url) = support::postgres_test_url() else {
        return;
    };
    let mut pg = Env::new();
    pg.vault = PathBuf::from(format!("{url}&vault={}", support::unique_name("doctor")));
    let json = pg.run(&["doctor", "--json"]).ok().json();
    assert_eq!(json["storage"], "postgresql");
    // The test server has no standby.
    assert_eq!(json["standbys"].as_array().map(Vec::len), Some(0), "{json}");
    assert_eq!(json["asynchronous_standbys"], 0);
}

// ---------------------------------------------------------------------------------------
// Key sources from the system: recovery keys and systemd credentials.

/// `init --with-recovery-key` and `keyslot add --new-recovery-key` print a recovery key once; it
/// unlocks the vault from a file or the prompt's standard input, a typo is reported as a
/// typo (not a wrong key), and `info` and `keyslot ls` name the kind and the slot used.
#[test]
fn recovery_keys_are_printed_once_and_unlock_their_keyslot() {
    let env = Env::new();
    let out = env
        .run(&[
            "init",
            "--key-file",
            env.key.to_str().unwrap(),
            "--with-recovery-key",
        ])
        .ok();
    let printed = out
        .stdout
        .lines()
        .find(|l| l.trim().len() == 55 && l.trim().bytes().all(|b| b.is_ascii_digit() || b == b'-'))
        .unwrap_or_else(|| panic!("no recovery key printed: {out:#?}"))
        .trim()
        .to_owned();
    assert!(out.stdout.contains("keyslot 1: recovery-key"), "{out:#?}");
    assert!(!out.stderr.contains(&printed));

    let file = env.path("recovery.txt");
    write_private(&file, format!("{printed}\n").as_bytes());
    let info = env
        .run(&[
            "info",
            "--json",
            "--recovery-key-file",
            file.to_str().unwrap(),
        ])
        .ok()
        .json();
    assert_eq!(info["unlocked_keyslot"], 1);
    assert_eq!(info["keyslots"][1]["kind"], "recovery-key");
    let text = env
        .run(&["info", "--recovery-key-file", file.to_str().unwrap()])
        .ok()
        .stdout;
    assert!(
        text.contains("keyslot 1: recovery-key (opened it)"),
        "{text}"
    );

    // A typo names its group; a well-formed other key is a wrong key.
    let mut typo = printed.clone().into_bytes();
    typo[14] = if typo[14] == b'0' { b'1' } else { b'0' };
    write_private(&file, &typo);
    let out = env.run(&["ls", "--recovery-key-file", file.to_str().unwrap()]);
    assert_ne!(out.code, EXIT_WRONG_KEY, "{out:#?}");
    assert!(!out.all().contains(std::str::from_utf8(&typo).unwrap()));
    out.code(EXIT_USAGE).one_line_error("typo in group 3");

    // `keyslot add --new-recovery-key` adds a second one, printed once in JSON too.
    let v = env
        .key(&["keyslot", "add", "--new-recovery-key", "--json"])
        .ok()
        .json();
    assert_eq!(v["keyslot"]["kind"], "recovery-key");
    let second = v["recovery_key"].as_str().unwrap().to_owned();
    assert_ne!(second, printed);
    write_private(&file, second.as_bytes());
    env.run(&["ls", "--recovery-key-file", file.to_str().unwrap()])
        .ok();
    assert_eq!(
        env.key(&["keyslot", "ls"]).ok().stdout,
        "keyslot 0: raw-key (opened it)\nkeyslot 1: recovery-key\nkeyslot 2: recovery-key\n"
    );
}

/// `--credential NAME` reads a raw key from `$CREDENTIALS_DIRECTORY/NAME`, with a key file's
/// checks; every failure is a clear key-source error.
#[test]
fn systemd_credentials_unlock_with_a_key_files_checks() {
    let env = Env::with_vault();
    let creds = env.path("credentials");
    std::fs::create_dir(&creds).unwrap();
    write_private(&creds.join("vault-key"), "07".repeat(32).as_bytes());
    let with_creds = |args: &[&str], dir: Option<&Path>| {
        let mut cmd = env.cmd(args);
        match dir {
            Some(dir) => cmd.env("CREDENTIALS_DIRECTORY", dir),
            None => cmd.env_remove("CREDENTIALS_DIRECTORY"),
        };
        run(cmd, None)
    };
    with_creds(&["ls", "--credential", "vault-key"], Some(&creds)).ok();
    with_creds(&["ls", "--credential", "vault-key"], None)
        .code(EXIT_USAGE)
        .one_line_error("CREDENTIALS_DIRECTORY is not set");
    with_creds(&["ls", "--credential", "missing"], Some(&creds))
        .code(EXIT_USAGE)
        .one_line_error("no such credential");
    with_creds(&["ls", "--credential", "../vault.key"], Some(&creds))
        .code(EXIT_USAGE)
        .one_line_error("not a credential name");
    write_private(&creds.join("short"), b"0707");
    with_creds(&["ls", "--credential", "short"], Some(&creds))
        .code(EXIT_USAGE)
        .one_line_error("32 raw bytes");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let open = creds.join("open");
        write_private(&open, "07".repeat(32).as_bytes());
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
        with_creds(&["ls", "--credential", "open"], Some(&creds))
            .code(EXIT_USAGE)
            .one_line_error("chmod 600");
    }
    // Another key in a credential is a wrong key, not a key-source error.
    write_private(&creds.join("other"), "08".repeat(32).as_bytes());
    with_creds(&["ls", "--credential", "other"], Some(&creds)).code(EXIT_WRONG_KEY);
}
