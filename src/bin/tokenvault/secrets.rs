//! The flags that name a secret, and the key sources they give: one family to unlock a vault
//! (`--passphrase-file`, `--passphrase-fd`, `--passphrase-env`, `--key-file`), one for a new
//! secret (`--new-passphrase-file`, ..., `--generate-key-file`).

use std::path::{Path, PathBuf};

use clap::Args;
use tokenvault::secrecy::ExposeSecret;
use tokenvault::{KeySource, Keyring, RecoveryKey};

use crate::environment::{PathArg, PathOrEnv, KEY_FILE_ENV, PASSPHRASE_FILE_ENV};
use crate::failure::{Failure, Outcome};
use crate::input::{generate_key_file, secret, Input, MAX_PASSPHRASE_LEN};
use crate::terminal::prompt;

/// How to get the secret that unlocks the vault.
#[derive(Debug, Args)]
#[command(next_help_heading = "Unlocking the vault (give at most one; else a prompt)")]
pub(crate) struct UnlockArgs {
    /// Read the passphrase from this file (less one trailing newline)
    #[arg(
        long,
        value_name = "PATH",
        env = PASSPHRASE_FILE_ENV,
        hide_env_values = true,
        value_parser = PathOrEnv
    )]
    passphrase_file: Option<PathArg>,
    /// Read the passphrase from this open file descriptor (Unix), e.g. 3 with `3<file`
    #[arg(long, value_name = "N")]
    passphrase_fd: Option<u32>,
    /// Read the passphrase from the environment variable with this NAME (not its value)
    #[arg(long, value_name = "NAME")]
    passphrase_env: Option<String>,
    /// Use a key file: 32 raw bytes or 64 hex digits, mode 0600
    #[arg(
        long,
        value_name = "PATH",
        env = KEY_FILE_ENV,
        hide_env_values = true,
        value_parser = PathOrEnv
    )]
    key_file: Option<PathArg>,
    /// Use the systemd credential NAME: a key file in $CREDENTIALS_DIRECTORY, which
    /// LoadCredential= or LoadCredentialEncrypted= provide to a service
    #[arg(long, value_name = "NAME")]
    credential: Option<String>,
    /// Use a recovery key, typed at a prompt (48 digits in groups of 6)
    #[arg(long)]
    recovery_key: bool,
    /// Use the recovery key written in this file
    #[arg(long, value_name = "PATH")]
    recovery_key_file: Option<PathBuf>,
    /// Use the OS keyring (the Secret Service on Linux): the keyring keyslot's key is read
    /// from its entry, without a prompt
    #[arg(long)]
    keyring: bool,
}

/// How to open an existing vault: the secret, and optionally the keyslot to try.
#[derive(Debug, Args)]
#[command(next_help_heading = "Unlocking the vault (give at most one; else a prompt)")]
pub(crate) struct OpenArgs {
    #[command(flatten)]
    pub(crate) secret: UnlockArgs,
    /// Try only keyslot ID (one key derivation instead of one per keyslot)
    #[arg(long, value_name = "ID")]
    pub(crate) slot: Option<u32>,
}

/// How to get a new secret, for `passwd` and `keyslot add`.
#[derive(Debug, Args)]
#[command(next_help_heading = "The new secret (give at most one; else a prompt, asked twice)")]
pub(crate) struct NewSecretArgs {
    /// Read the new passphrase from this file (less one trailing newline)
    #[arg(long, value_name = "PATH")]
    new_passphrase_file: Option<PathBuf>,
    /// Read the new passphrase from this open file descriptor (Unix)
    #[arg(long, value_name = "N")]
    new_passphrase_fd: Option<u32>,
    /// Read the new passphrase from the environment variable with this NAME
    #[arg(long, value_name = "NAME")]
    new_passphrase_env: Option<String>,
    /// Use this existing key file as the new secret
    #[arg(long, value_name = "PATH")]
    new_key_file: Option<PathBuf>,
    /// Write a new random key file here (mode 0600, never replacing a file) and use it
    #[arg(long, value_name = "PATH")]
    generate_key_file: Option<PathBuf>,
    /// Generate a recovery key (128 random bits) and print it once, to be written down
    #[arg(long)]
    new_recovery_key: bool,
    /// Generate a random key, store it in the OS keyring and use it (a keyring keyslot)
    #[arg(long)]
    new_keyring: bool,
}

/// A secret named by one flag of a family.
enum Spec {
    Passphrase(Input),
    KeyFile(PathBuf),
    Generate(PathBuf),
    Credential(String),
    /// A recovery key: from a file, or (`None`) typed at the prompt.
    Recovery(Option<PathBuf>),
    GenerateRecovery,
    /// The OS keyring: its entry for an existing slot, or a new entry for a new one.
    Keyring,
    Prompt,
}

/// A new secret, and the key file made for it, if any (removed again if the command fails),
/// or the recovery key generated for it (printed once the command succeeded).
pub(crate) struct NewSecret {
    pub(crate) key: KeySource,
    generated: Option<PathBuf>,
    recovery: Option<RecoveryKey>,
}

impl NewSecret {
    /// Removes a key file generated for a command that then failed.
    pub(crate) fn discard(&self) {
        if let Some(path) = &self.generated {
            let _ = std::fs::remove_file(path);
        }
    }

    /// The generated key file, if one was written.
    pub(crate) fn generated(&self) -> Option<&Path> {
        self.generated.as_deref()
    }

    /// The generated recovery key, if one was made.
    pub(crate) fn recovery(&self) -> Option<&RecoveryKey> {
        self.recovery.as_ref()
    }
}

impl UnlockArgs {
    /// The key source that unlocks the vault at `vault`.
    pub(crate) fn key_source(&self, vault: &str) -> Outcome<KeySource> {
        let label = format!("Passphrase for {vault}: ");
        Ok(self
            .resolve(None)?
            .into_secret(&label, false, UNLOCK_HINT)?
            .key)
    }

    /// Whether the secret is read from standard input (`--passphrase-fd 0`).
    pub(crate) fn reads_stdin(&self) -> bool {
        self.passphrase_fd == Some(0)
    }

    /// The first secret of a new vault at `vault` (the prompt asks twice), or a key file
    /// generated at `generate`.
    pub(crate) fn initial_secret(
        &self,
        generate: Option<&Path>,
        vault: &str,
    ) -> Outcome<NewSecret> {
        let label = format!("New passphrase for {vault}: ");
        self.resolve(generate)?
            .into_secret(&label, true, UNLOCK_HINT)
    }

    fn resolve(&self, generate: Option<&Path>) -> Outcome<Spec> {
        let flag =
            |arg: &Option<PathArg>| arg.as_ref().and_then(PathArg::flag).map(Path::to_path_buf);
        let given = [
            flag(&self.passphrase_file).map(|p| Spec::Passphrase(Input::PassphraseFile(p))),
            self.passphrase_fd.map(|fd| Spec::Passphrase(Input::Fd(fd))),
            self.passphrase_env
                .as_ref()
                .map(|n| Spec::Passphrase(Input::Env(n.clone()))),
            flag(&self.key_file).map(Spec::KeyFile),
            self.credential.clone().map(Spec::Credential),
            self.recovery_key.then_some(Spec::Recovery(None)),
            self.recovery_key_file
                .as_ref()
                .map(|p| Spec::Recovery(Some(p.clone()))),
            self.keyring.then_some(Spec::Keyring),
            generate.map(|p| Spec::Generate(p.to_path_buf())),
        ];
        let flags = "--passphrase-file, --passphrase-fd, --passphrase-env, --key-file, \
                     --credential, --recovery-key, --recovery-key-file, --keyring";
        match one_of(given, flags)? {
            Some(spec) => Ok(spec),
            None => self.environment_spec(),
        }
    }

    /// `TOKENVAULT_KEY_FILE` or `TOKENVAULT_PASSPHRASE_FILE`, else the prompt: when no secret
    /// flag is on the command line.
    fn environment_spec(&self) -> Outcome<Spec> {
        let env =
            |arg: &Option<PathArg>| arg.as_ref().and_then(PathArg::env).map(Path::to_path_buf);
        match (env(&self.key_file), env(&self.passphrase_file)) {
            (Some(_), Some(_)) => Err(Failure::usage(format!(
                "both {KEY_FILE_ENV} and {PASSPHRASE_FILE_ENV} are set"
            ))
            .hint("unset one of them, or pass a secret flag, which takes precedence")),
            (Some(key_file), None) => Ok(Spec::KeyFile(key_file)),
            (None, Some(passphrase_file)) => {
                Ok(Spec::Passphrase(Input::PassphraseFile(passphrase_file)))
            }
            (None, None) => Ok(Spec::Prompt),
        }
    }
}

impl NewSecretArgs {
    /// The new secret these flags name, or one asked for twice on the terminal.
    pub(crate) fn new_secret(&self) -> Outcome<NewSecret> {
        let given = [
            self.new_passphrase_file
                .as_ref()
                .map(|p| Spec::Passphrase(Input::PassphraseFile(p.clone()))),
            self.new_passphrase_fd
                .map(|fd| Spec::Passphrase(Input::Fd(fd))),
            self.new_passphrase_env
                .as_ref()
                .map(|n| Spec::Passphrase(Input::Env(n.clone()))),
            self.new_key_file.as_ref().map(|p| Spec::KeyFile(p.clone())),
            self.generate_key_file
                .as_ref()
                .map(|p| Spec::Generate(p.clone())),
            self.new_recovery_key.then_some(Spec::GenerateRecovery),
            self.new_keyring.then_some(Spec::Keyring),
        ];
        let flags = "--new-passphrase-file, --new-passphrase-fd, --new-passphrase-env, \
                     --new-key-file, --generate-key-file, --new-recovery-key, --new-keyring";
        one_of(given, flags)?.unwrap_or(Spec::Prompt).into_secret(
            "New passphrase: ",
            true,
            NEW_HINT,
        )
    }
}

impl Spec {
    fn into_secret(self, label: &str, confirm: bool, hint: &str) -> Outcome<NewSecret> {
        let mut recovery = None;
        let (key, generated) = match self {
            Self::Passphrase(input) => {
                let text = input.read_text(MAX_PASSPHRASE_LEN, "passphrase")?;
                if text.is_empty() {
                    return Err(Failure::usage("the passphrase is empty"));
                }
                (KeySource::passphrase(secret(&text)), None)
            }
            Self::KeyFile(path) => (KeySource::key_file(path), None),
            Self::Generate(path) => {
                generate_key_file(&path)?;
                (KeySource::key_file(path.clone()), Some(path))
            }
            Self::Credential(name) => (KeySource::systemd_credential(name), None),
            Self::Recovery(file) => {
                let text = match file {
                    Some(path) => secret(
                        &Input::PassphraseFile(path).read_text(MAX_RECOVERY_LEN, "recovery key")?,
                    ),
                    None => prompt("Recovery key: ", false, hint)?,
                };
                let key = RecoveryKey::parse(text.expose_secret())?;
                (KeySource::recovery_key(&key), None)
            }
            Self::GenerateRecovery => {
                let key = RecoveryKey::generate()?;
                let source = KeySource::recovery_key(&key);
                recovery = Some(key);
                (source, None)
            }
            Self::Keyring => (KeySource::keyring(&keyring()), None),
            Self::Prompt => (KeySource::passphrase(prompt(label, confirm, hint)?), None),
        };
        Ok(NewSecret {
            key,
            generated,
            recovery,
        })
    }
}

/// The platform's keyring, with the time limit from `TOKENVAULT_KEYRING_TIMEOUT_MS` if set.
pub(crate) fn keyring() -> Keyring {
    let keyring = Keyring::platform();
    match std::env::var(KEYRING_TIMEOUT_ENV)
        .ok()
        .and_then(|ms| ms.trim().parse::<u64>().ok())
    {
        Some(ms) => keyring.timeout(std::time::Duration::from_millis(ms)),
        None => keyring,
    }
}

/// The environment variable that sets the keyring's time limit per call, in milliseconds.
pub(crate) const KEYRING_TIMEOUT_ENV: &str = "TOKENVAULT_KEYRING_TIMEOUT_MS";

/// The one flag given, if any; more than one is a usage error.
fn one_of<const N: usize>(given: [Option<Spec>; N], flags: &str) -> Outcome<Option<Spec>> {
    let mut given = given.into_iter().flatten();
    let first = given.next();
    if given.next().is_some() {
        return Err(Failure::usage(format!("give only one of {flags}")));
    }
    Ok(first)
}

const UNLOCK_HINT: &str = "pass --passphrase-file PATH, --passphrase-fd N, --passphrase-env NAME, \
                           --key-file PATH, --credential NAME, --recovery-key-file PATH or \
                           --keyring, or \
                           set TOKENVAULT_KEY_FILE or TOKENVAULT_PASSPHRASE_FILE";
/// The longest recovery-key text read from a file: 48 digits with generous separators.
const MAX_RECOVERY_LEN: usize = 256;
const NEW_HINT: &str = "pass --new-passphrase-file PATH, --new-passphrase-fd N, \
                        --new-passphrase-env NAME, --new-key-file PATH, --generate-key-file PATH, \
                        --new-recovery-key or --new-keyring";
