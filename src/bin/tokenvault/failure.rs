//! Failures: the exit codes, and the one line (plus one hint) printed on standard error.
//!
//! Messages name paths, namespaces, keys, flags and variable names, never a secret: the
//! library's errors carry none, and the messages made here are built from names only.

use std::fmt::Display;
use std::io::Write;
use std::process::ExitCode;

use tokenvault::import::{ImportError, ImportErrorKind};
use tokenvault::oauth::TokenError;
use tokenvault::{Damage, Error, KeyringFailure};

/// The exit codes (docs/cli.md, `tokenvault --help`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Exit {
    /// Any error without a code of its own.
    Other = 1,
    /// Bad flags or arguments, or no usable secret source (clap uses 2 as well).
    Usage = 2,
    /// No keyslot accepts the passphrase or key.
    WrongKey = 3,
    /// Another process holds the vault.
    Locked = 4,
    /// No such vault, namespace, record, keyslot or input file.
    NotFound = 5,
    /// The vault or some records failed authentication.
    Damaged = 6,
    /// A vault, record or file is already there.
    Exists = 7,
    /// The user must log in again: the grant is dead or revoked (`token`, `login`).
    Reauthenticate = 8,
    /// The provider (or the storage) is temporarily unavailable: retry later.
    Unavailable = 9,
}

/// Why a command failed: its exit code, a one-line message and a hint.
#[derive(Debug)]
pub(crate) struct Failure {
    code: Exit,
    message: String,
    hint: Option<String>,
}

/// What a command returns.
pub(crate) type Outcome<T = ()> = Result<T, Failure>;

impl Failure {
    /// A failure with `code` and `message`.
    pub(crate) fn new(code: Exit, message: impl Display) -> Self {
        Self {
            code,
            message: message.to_string(),
            hint: None,
        }
    }

    /// A usage error: exit code 2.
    pub(crate) fn usage(message: impl Display) -> Self {
        Self::new(Exit::Usage, message)
    }

    /// Any other error: exit code 1.
    pub(crate) fn other(message: impl Display) -> Self {
        Self::new(Exit::Other, message)
    }

    /// Sets the hint line.
    #[must_use]
    pub(crate) fn hint(mut self, hint: impl Display) -> Self {
        self.hint = Some(hint.to_string());
        self
    }

    /// Prints `tokenvault: error: ...` and `hint: ...` on standard error; the exit code.
    pub(crate) fn report(&self) -> ExitCode {
        let hint = self.hint.as_deref().unwrap_or(match self.code {
            Exit::Usage => "see `tokenvault COMMAND --help` for the flags",
            Exit::NotFound => "check the name or path; `tokenvault ls` lists the namespaces",
            Exit::Exists => "choose another name or path",
            Exit::Damaged => "run `tokenvault verify` to see what is damaged",
            _ => "see `tokenvault --help`; docs/cli.md describes every command and exit code",
        });
        let text = format!(
            "tokenvault: error: {}\nhint: {}\n",
            one_line(&self.message),
            one_line(hint)
        );
        // Nothing more can be done if standard error is gone.
        let _ = std::io::stderr().lock().write_all(text.as_bytes());
        ExitCode::from(self.code as u8)
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        let message = error.to_string();
        match &error {
            Error::WrongKey => Self::new(Exit::WrongKey, WRONG_KEY).hint(WRONG_KEY_HINT),
            Error::Locked { path } => Self::new(
                Exit::Locked,
                format!(
                    "the vault at {} is in use by another process",
                    path.display()
                ),
            )
            .hint(LOCKED_HINT),
            Error::NotFound { path: Some(path) } => {
                Self::new(Exit::NotFound, format!("no vault at {}", path.display()))
                    .hint(NO_VAULT_HINT)
            }
            // In a database: the URL's `vault` option names it.
            Error::NotFound { path: None } => {
                Self::new(Exit::NotFound, "no vault by that name in the database")
                    .hint("create one with `tokenvault init`, or check the URL's vault= option")
            }
            Error::AlreadyExists { path: Some(path) } => Self::new(
                Exit::Exists,
                format!("a vault already exists at {}", path.display()),
            )
            .hint("use it as it is, or choose another directory with --vault"),
            // In a database: the URL's `vault` option names it.
            Error::AlreadyExists { path: None } => Self::new(Exit::Exists, message)
                .hint("use it as it is, or choose another name with the URL's vault= option"),
            Error::NotEmpty { .. } => Self::new(Exit::Exists, message)
                .hint("choose a new or empty directory with --vault; nothing was changed"),
            Error::UnsafePath { .. } => Self::other(message).hint(
                "the vault directory must be yours and writable only by you (chmod 700); \
                 remove the link or file named in the message",
            ),
            Error::KdfLimit { .. } => Self::other(message)
                .hint("the header may have been tampered with; if this machine has the memory and the vault is trusted, raise --max-kdf-mib"),
            Error::NoSuchKeyslot { .. } => Self::new(Exit::NotFound, message)
                .hint("list the keyslots with `tokenvault keyslot ls`"),
            Error::LastKeyslot => Self::other(message).hint(
                "`tokenvault keyslot ls` lists the keyslots; `tokenvault keyslot add` adds one",
            ),
            Error::KeyslotExists { .. } => Self::new(Exit::Exists, message).hint(
                "that secret already opens the vault; choose another, or change that keyslot \
                 with `tokenvault passwd --slot ID`",
            ),
            Error::KeyslotLimit => {
                Self::other(message).hint("remove a keyslot with `tokenvault keyslot rm ID` first")
            }
            Error::Damaged(Damage::Header { .. }) => {
                Self::new(Exit::Damaged, message).hint("restore the vault directory from a backup")
            }
            Error::Damaged(_) => Self::new(Exit::Damaged, message).hint(DAMAGED_HINT),
            Error::InvalidName { .. } | Error::KdfParams { .. } => Self::usage(message),
            Error::KeySource { .. } => Self::usage(message).hint(KEY_SOURCE_HINT),
            Error::Keyring {
                failure: KeyringFailure::NoEntry,
                ..
            } => Self::new(Exit::NotFound, message).hint(KEYRING_HINT),
            Error::Keyring { .. } => Self::other(message).hint(KEYRING_HINT),
            Error::Provider { .. } => Self::other(message)
                .hint("list the providers with `tokenvault provider ls NAMESPACE`"),
            Error::RecoveryKeyTypo { .. } => Self::usage(message).hint(
                "a recovery key is 48 digits in 8 groups of 6; each group carries a check, so \
                 a mistyped digit is caught before any key is tried",
            ),
            Error::UnsupportedVersion { .. } => {
                Self::other(message).hint("upgrade tokenvault to a version that reads this vault")
            }
            _ => Self::other(message),
        }
    }
}

impl From<TokenError> for Failure {
    /// A token-layer failure; the vault's own errors as they are.
    fn from(error: TokenError) -> Self {
        match error {
            TokenError::Vault(e) => Self::from(e),
            TokenError::InvalidResponse { .. } => Self::other(error.to_string()).hint(
                "the file must hold an OAuth 2.0 token response (RFC 6749 section 5.1) as JSON",
            ),
            _ => Self::other(error.to_string()),
        }
    }
}

impl From<ImportError> for Failure {
    /// An import's failure, by its kind; the vault's own errors as they are.
    fn from(error: ImportError) -> Self {
        let message = error.to_string();
        import_failure(error.kind, message)
    }
}

fn import_failure(kind: ImportErrorKind, message: String) -> Failure {
    match kind {
        ImportErrorKind::Vault(e) => Failure::from(e),
        ImportErrorKind::Exists { .. } => Failure::new(Exit::Exists, message)
            .hint("pass --overwrite to replace the records in the vault (or remove them first)"),
        ImportErrorKind::VerifyFailed { .. } => Failure::new(Exit::Damaged, message)
            .hint("the source file was kept; run `tokenvault verify`"),
        ImportErrorKind::UnrecognizedFormat => Failure::other(message)
            .hint("name the format with --format globus-json, globus-sqlite or sharetribe"),
        ImportErrorKind::FeatureDisabled { .. } => Failure::other(message),
        _ => Failure::other(message).hint(
            "nothing was imported; check the file, or see what would be imported with --dry-run",
        ),
    }
}

/// `text` on one line, safe on a terminal: escaped as stored strings are in text output
/// (control characters, newlines among them, and bidirectional-text controls).
fn one_line(text: &str) -> String {
    crate::output::escaped(text).into_owned()
}

/// An I/O failure on `what` (a file, named): not found (5) or other (1).
pub(crate) fn io_failure(what: impl Display, error: &std::io::Error) -> Failure {
    let code = match error.kind() {
        std::io::ErrorKind::NotFound => Exit::NotFound,
        std::io::ErrorKind::AlreadyExists => Exit::Exists,
        _ => Exit::Other,
    };
    Failure::new(code, format!("{what}: {error}"))
}

const KEYRING_HINT: &str = "nothing falls back to another key source: to use another keyslot, \
                            pass --passphrase-file, --key-file, --recovery-key or another secret \
                            flag instead of --keyring";
/// The message of [`Error::WrongKey`], which never says which secret was tried.
const WRONG_KEY: &str = "wrong passphrase or key: no keyslot accepts it";
const WRONG_KEY_HINT: &str = "a passphrase opens only passphrase keyslots and a key file only \
                              raw-key keyslots; check which secret this vault was given";
const LOCKED_HINT: &str =
    "retry when that process has finished, or wait longer with --lock-timeout SECONDS";
/// The hint for a missing vault.
pub(crate) const NO_VAULT_HINT: &str = "create one with `tokenvault init`, or point --vault or \
                                        TOKENVAULT_VAULT at an existing vault";
const DAMAGED_HINT: &str = "run `tokenvault verify` to list what is damaged; restore from a \
                            backup, or remove and store the records again";
const KEY_SOURCE_HINT: &str = "a key file holds 32 raw bytes or 64 hex digits and must be mode \
                               0600; a passphrase may not be empty";
