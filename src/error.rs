//! The crate's one error type.

use std::fmt;
use std::path::PathBuf;

use crate::format::RecordType;

/// A `Result` whose error is this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the vault.
///
/// No variant ever carries secret material: messages name paths, namespaces, record keys and
/// slot ids, never token values, passphrases or keys.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Error {
    /// A vault already exists at this path (or in this backend);
    /// [`Vault::create`](crate::Vault::create) never overwrites one. Open it instead, or
    /// choose another path.
    AlreadyExists {
        /// The vault directory, or `None` for a vault on a [`Backend`](crate::backend::Backend) given
        /// to [`Vault::create_with_backend`](crate::Vault::create_with_backend).
        path: Option<PathBuf>,
    },
    /// The storage backend failed (an I/O error, or an error or panic inside sled): the
    /// [`BackendError`](crate::backend::BackendError), with the vault's directory as its
    /// path when it names none, is this error's [source](std::error::Error::source); the
    /// message shows it and its sources on one line.
    ///
    /// What was already stored is unaffected; the operation that failed may or may not have
    /// taken effect and is safe to retry.
    Backend(crate::backend::BackendError),
    /// This handle's view of the vault is out of date: another handle sharing the storage
    /// changed the header (a keyslot, a namespace, a key rotation) after this handle read
    /// it. Nothing was changed; open the vault again and retry.
    Reopen,
    /// The vault handle was closed with [`Vault::close`](crate::Vault::close); open the vault
    /// again to keep using it.
    Closed,
    /// Stored bytes failed authentication or did not parse: the vault has been damaged or
    /// tampered with. [`Damage`] says what is affected.
    Damaged(Damage),
    /// The secret given for a new keyslot already opens keyslot `slot`
    /// ([`Vault::add_keyslot`](crate::Vault::add_keyslot) refuses duplicates).
    KeyslotExists {
        /// The keyslot that the secret already opens.
        slot: u32,
    },
    /// A vault holds at most [`MAX_KEYSLOTS`](crate::format::MAX_KEYSLOTS) keyslots.
    KeyslotLimit,
    /// The key source could not supply a key: an unreadable, malformed or badly protected key
    /// file, or an empty passphrase. The vault never falls back to another source.
    KeySource {
        /// Why the key could not be obtained (never the key itself).
        reason: String,
    },
    /// The OS keyring could not supply a keyring keyslot's key, or store a new one
    /// (feature `keyring`): [`KeyringFailure`] says what happened, `entry` names the keyring
    /// entry (service and account, never a secret) when one is concerned. Never
    /// [`Error::WrongKey`], and never followed by a fallback to another key source.
    Keyring {
        /// What happened.
        failure: KeyringFailure,
        /// The entry concerned, as `account@service`, if any.
        entry: Option<String>,
        /// The platform's own words (a D-Bus error, say), or what was expected; never a
        /// secret.
        detail: String,
    },
    /// An OAuth provider cannot be used (feature `http`): there is none of that name in the
    /// namespace, or its stored settings are unusable.
    Provider {
        /// The provider's name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// A recovery key that is not one: a group of digits whose check fails (a typo), or not
    /// 48 digits. Never [`Error::WrongKey`]: a well-formed recovery key that opens no keyslot
    /// is that.
    RecoveryKeyTypo {
        /// The group (1 to 8) whose check fails; `None` when the number of digits is wrong or
        /// a character is neither a digit, a dash nor white space.
        group: Option<usize>,
    },
    /// Argon2 parameters were refused: below the creation floor (OWASP: 19 MiB, t = 2) or
    /// above the bounds this library will run.
    KdfParams {
        /// Which bound was violated.
        reason: String,
    },
    /// The last keyslot cannot be removed: nothing could unlock the vault afterwards.
    LastKeyslot,
    /// A namespace or record key name was rejected (empty or too long).
    InvalidName {
        /// Why the name is invalid.
        reason: &'static str,
    },
    /// Another process (or another handle in this process) holds the vault, and did not let
    /// go within the lock timeout ([`SledOptions::lock_timeout`](crate::backend::SledOptions::lock_timeout)).
    Locked {
        /// The vault directory.
        path: PathBuf,
    },
    /// The vault has no keyslot with this id (removed, or never there).
    NoSuchKeyslot {
        /// The slot id that was asked for.
        slot: u32,
    },
    /// The master key cannot be rotated while some keyslots' secrets are unknown to this
    /// handle; pass them to [`Vault::rotate_master_key_with`](crate::Vault::rotate_master_key_with).
    SlotSecretsMissing {
        /// The slots this handle cannot re-wrap.
        slots: Vec<u32>,
    },
    /// No vault exists at this path (or in this backend).
    NotFound {
        /// The vault directory, or `None` for a [`Backend`](crate::backend::Backend) given to
        /// [`Vault::open_with_backend`](crate::Vault::open_with_backend).
        path: Option<PathBuf>,
    },
    /// The path holds data but no vault header, or files a vault does not make:
    /// [`Vault::create`](crate::Vault::create) makes a vault only in a new or empty directory
    /// and never removes what it finds (a vault whose header file was lost keeps its records
    /// for a restored header).
    NotEmpty {
        /// The directory, or `None` for a [`Backend`](crate::backend::Backend) given to
        /// [`Vault::create_with_backend`](crate::Vault::create_with_backend).
        path: Option<PathBuf>,
        /// What was found there.
        reason: String,
    },
    /// A file or directory of the vault is unsafe to use: the vault directory is owned by
    /// another user or writable by group or others, or a link or a non-regular file stands
    /// where one of the vault's files belongs. Nothing was read or written through it.
    UnsafePath {
        /// The file or directory.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A passphrase keyslot asks for a more costly Argon2 derivation than the caller accepts
    /// ([`VaultOptions::kdf_limit`](crate::VaultOptions::kdf_limit)): nothing was derived. A
    /// tampered header can ask for up to 4 GiB; on a system that overcommits memory such an
    /// allocation "succeeds" and the process is killed later, so it is refused up front.
    KdfLimit {
        /// The keyslot.
        slot: u32,
        /// What the slot asks for.
        asked: crate::KdfParams,
        /// The limit in force.
        limit: crate::KdfParams,
    },
    /// A record or name is larger than the format allows.
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// The limit, in bytes.
        limit: usize,
    },
    /// The vault was written by a newer version of tokenvault (or a different program);
    /// upgrade tokenvault to open it.
    UnsupportedVersion {
        /// The format version found on disk.
        found: u16,
        /// The newest version this library reads.
        supported: u16,
    },
    /// The record exists but holds another type of secret (for example a [`Secret`](crate::Secret)
    /// read as a [`Token`](crate::Token)).
    WrongRecordType {
        /// The type the caller asked for.
        expected: RecordType,
        /// The type stored.
        found: RecordType,
    },
    /// No keyslot accepts this key or passphrase.
    WrongKey,
    /// The vault is at an older format version and the options say not to upgrade it
    /// ([`VaultOptions::upgrade`](crate::VaultOptions::upgrade)). Nothing was changed.
    UpgradeRequired {
        /// The vault's format version.
        found: u16,
    },
}

/// What a [`Error::Damaged`] error found damaged.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Damage {
    /// The header file: the keyslots and wrapped keys.
    Header {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A namespace's wrapped keys or its manifest.
    Namespace {
        /// The namespace name (not a secret).
        namespace: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The storage as a whole: it holds an older state than the last checkpoint made
    /// durable (sled fell back to an earlier state of its log after damage, or the storage
    /// was restored from an older backup without the header), so records written before that
    /// checkpoint may be missing or stale. Opening refuses such a vault unless
    /// [`VaultOptions::accept_rollback`](crate::VaultOptions::accept_rollback) is set.
    Rollback {
        /// The checkpoint epoch the storage's anchor holds (`None`: the anchor is missing or
        /// does not authenticate).
        found: Option<u64>,
        /// The epoch the header recorded at the last checkpoint.
        expected: u64,
    },
    /// One stored record.
    Record {
        /// The namespace name.
        namespace: String,
        /// The record key, when known (a damaged record found by a scan has only its hashed id).
        key: Option<String>,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AlreadyExists { path: Some(path) } => write!(
                f,
                "a vault already exists at {}; open it instead of creating it",
                path.display()
            ),
            Self::AlreadyExists { path: None } => f.write_str(
                "a vault already exists in this storage backend; open it instead of creating it",
            ),
            Self::Backend(e) => write!(f, "storage backend error: {}", e.chain()),
            Self::Closed => f.write_str("the vault was closed; open it again"),
            Self::Reopen => f.write_str(
                "another handle changed the vault header after this handle read it; nothing \
                 was changed: open the vault again and retry",
            ),
            Self::Damaged(damage) => write!(f, "{damage}"),
            Self::UpgradeRequired { found } => write!(
                f,
                "the vault is at format version {found}; open it with upgrading allowed (the \
                 default, or `tokenvault upgrade`) to move it to format version {}",
                crate::format::FORMAT_VERSION
            ),
            Self::KeyslotExists { slot } => {
                write!(f, "keyslot {slot} already opens with this secret")
            }
            Self::KeyslotLimit => write!(
                f,
                "the vault already has {} keyslots; remove one first",
                crate::format::MAX_KEYSLOTS
            ),
            Self::KeySource { reason } => write!(f, "the key source is unusable: {reason}"),
            Self::Provider { name, reason } => write!(f, "provider {name:?}: {reason}"),
            Self::Keyring {
                failure,
                entry,
                detail,
            } => {
                f.write_str(failure.summary())?;
                if let Some(entry) = entry {
                    write!(f, " (entry {entry})")?;
                }
                if !detail.is_empty() {
                    write!(f, ": {detail}")?;
                }
                write!(f, "; {}", failure.hint())
            }
            Self::RecoveryKeyTypo { group: Some(g) } => write!(
                f,
                "the recovery key has a typo in group {g} (its digits fail their check); \
                 compare it with what was written down"
            ),
            Self::RecoveryKeyTypo { group: None } => f.write_str(
                "the recovery key must be 48 digits, in 8 groups of 6 (dashes and spaces \
                 between them are ignored)",
            ),
            Self::KdfParams { reason } => write!(f, "Argon2 parameters refused: {reason}"),
            Self::LastKeyslot => {
                f.write_str("refusing to remove the last keyslot; add another keyslot first")
            }
            Self::InvalidName { reason } => write!(f, "invalid name: {reason}"),
            Self::Locked { path } => write!(
                f,
                "the vault at {} is in use by another process or handle; close it there and retry",
                path.display()
            ),
            Self::NoSuchKeyslot { slot } => write!(f, "the vault has no keyslot {slot}"),
            Self::NotEmpty {
                path: Some(path),
                reason,
            } => write!(
                f,
                "{} is not empty ({reason}); a vault is created only in a new or empty \
                 directory, and nothing there is removed",
                path.display()
            ),
            Self::NotEmpty { path: None, reason } => write!(
                f,
                "the storage backend is not empty ({reason}); a vault is created only in \
                 empty storage, and nothing there is removed"
            ),
            Self::UnsafePath { path, reason } => {
                write!(f, "refusing to use {}: it {reason}", path.display())
            }
            Self::KdfLimit { slot, asked, limit } => write!(
                f,
                "keyslot {slot} asks for Argon2id with m = {} KiB, t = {}, p = {}, above the \
                 accepted limit (m <= {} KiB, m x t <= that x {}, p <= {}); raise the limit \
                 only if the vault is trusted and this machine has the memory",
                asked.m_kib(),
                asked.t(),
                asked.p(),
                limit.m_kib(),
                limit.t(),
                limit.p()
            ),
            Self::SlotSecretsMissing { slots } => write!(
                f,
                "cannot rotate the master key: the secrets of keyslots {slots:?} are not known \
                 to this handle; pass them to rotate_master_key_with or remove those slots"
            ),
            Self::NotFound { path: Some(path) } => write!(
                f,
                "no vault at {}; create one with Vault::create",
                path.display()
            ),
            Self::NotFound { path: None } => f.write_str(
                "the storage backend holds no vault; create one with Vault::create_with_backend",
            ),
            Self::TooLarge { what, limit } => {
                write!(f, "{what} exceeds the limit of {limit} bytes")
            }
            Self::UnsupportedVersion { found, supported } => write!(
                f,
                "vault format version {found} is newer than the newest this library reads \
                 ({supported}); upgrade tokenvault"
            ),
            Self::WrongRecordType { expected, found } => write!(
                f,
                "the record holds a {found}, not a {expected}; read it with the matching type"
            ),
            Self::WrongKey => f.write_str("wrong key or passphrase: no keyslot accepts it"),
        }
    }
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Header { reason } => write!(
                f,
                "the vault header is damaged or was tampered with ({reason}); restore the \
                 vault directory from a backup"
            ),
            Self::Namespace { namespace, reason } => write!(
                f,
                "namespace {namespace:?} is damaged ({reason}); run verify and restore from a \
                 backup"
            ),
            Self::Rollback { found, expected } => {
                match found {
                    Some(found) => write!(
                        f,
                        "the storage was rolled back: it holds checkpoint {found}, the header \
                         recorded checkpoint {expected}"
                    )?,
                    None => write!(
                        f,
                        "the storage's checkpoint anchor is missing or damaged (the header \
                         recorded checkpoint {expected})"
                    )?,
                }
                f.write_str(
                    "; records written before it may be missing or stale: restore the vault \
                     from a backup, or open it with accept_rollback to run verify and export",
                )
            }
            Self::Record {
                namespace,
                key: Some(key),
                reason,
            } => write!(
                f,
                "record {key:?} in namespace {namespace:?} is damaged ({reason}); remove it \
                 and store it again"
            ),
            Self::Record {
                namespace,
                key: None,
                reason,
            } => write!(
                f,
                "a record in namespace {namespace:?} is damaged ({reason}); run verify"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Backend(e) => Some(e),
            _ => None,
        }
    }
}

/// What went wrong with the OS keyring ([`Error::Keyring`]). Each has a hint in the error's
/// message.
///
/// ```
/// use tokenvault::{Error, ErrorKind, KeyringFailure};
///
/// let err = Error::Keyring { failure: KeyringFailure::NoEntry, entry: None, detail: String::new() };
/// assert_eq!(err.kind(), ErrorKind::NotFound);
/// assert_ne!(err.kind(), ErrorKind::WrongKey);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyringFailure {
    /// No keyring to talk to: no D-Bus session bus (`DBUS_SESSION_BUS_ADDRESS` unset or
    /// dead), no Secret Service provider on it, a platform without a supported store, or a
    /// tokenvault built without the `keyring` feature.
    Unavailable,
    /// The keyring (its collection) is locked; unlocking it would need a prompt, which
    /// tokenvault never triggers.
    Locked,
    /// The platform wants to show a prompt (to create a collection, or to confirm access):
    /// refused rather than waited for.
    Prompt,
    /// The keyslot's entry is not in the keyring (deleted, or this is another user or
    /// machine).
    NoEntry,
    /// The entry is there but does not open its keyslot: it was overwritten, or belongs to
    /// another copy of the vault.
    Mismatch,
    /// The keyring did not answer within the time limit
    /// ([`Keyring::timeout`](crate::Keyring::timeout), 10 s by default).
    Timeout,
    /// Any other failure the platform reported.
    Failed,
}

impl KeyringFailure {
    /// The kind of error this failure makes: [`ErrorKind::NotFound`] for a missing entry,
    /// [`ErrorKind::InvalidInput`] for a mismatched one, [`ErrorKind::Transient`] for the
    /// rest (a keyring that is locked, absent or slow may be fine later).
    pub fn kind(self) -> ErrorKind {
        match self {
            Self::NoEntry => ErrorKind::NotFound,
            Self::Mismatch => ErrorKind::InvalidInput,
            Self::Unavailable | Self::Locked | Self::Prompt | Self::Timeout | Self::Failed => {
                ErrorKind::Transient
            }
        }
    }

    fn summary(self) -> &'static str {
        match self {
            Self::Unavailable => "the OS keyring is unavailable",
            Self::Locked => "the OS keyring is locked",
            Self::Prompt => {
                "the OS keyring wants to show a prompt, which tokenvault never waits for"
            }
            Self::NoEntry => "the keyring keyslot's entry is missing from the OS keyring",
            Self::Mismatch => "the keyring entry does not open its keyslot",
            Self::Timeout => "the OS keyring did not answer in time",
            Self::Failed => "the OS keyring failed",
        }
    }

    fn hint(self) -> &'static str {
        match self {
            Self::Unavailable => {
                "start a Secret Service provider (gnome-keyring-daemon, KWallet) in a D-Bus \
                 session, or unlock the vault with another keyslot"
            }
            Self::Locked => {
                "unlock the keyring (log in to the desktop, or `gnome-keyring-daemon --unlock`), \
                 then retry"
            }
            Self::Prompt => {
                "prepare the keyring from the desktop (create or unlock its default \
                 collection), then retry"
            }
            Self::NoEntry => {
                "unlock the vault with another keyslot, remove this one and add a new keyring \
                 keyslot"
            }
            Self::Mismatch => {
                "the entry was changed by another program; unlock with another keyslot and \
                 replace the keyring keyslot"
            }
            Self::Timeout => "check that the keyring daemon is responsive, then retry",
            Self::Failed => "retry, or unlock the vault with another keyslot",
        }
    }
}

/// What kind of failure an error is: enough to decide what to do without matching every
/// variant. [`Error::kind`] classifies a vault error, [`ErrorKind::of`] any error of this
/// crate (an [`ImportError`](crate::import::ImportError), a
/// [`RefreshError`](crate::oauth::RefreshError), a [`BackendError`](crate::backend::BackendError), or one
/// of these behind a `Box<dyn Error>`).
///
/// ```
/// use tokenvault::{ErrorKind, KeySource, Vault};
/// use tokenvault::secrecy::SecretBox;
///
/// # let dir = tempfile::tempdir()?;
/// let key = |byte| KeySource::raw_key(SecretBox::new(Box::new([byte; 32])));
/// Vault::create(dir.path().join("v"), &key(1))?.close()?;
/// let err = Vault::open(dir.path().join("v"), &key(2)).unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::WrongKey);
/// let err = Vault::open(dir.path().join("nothing here"), &key(1)).unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::NotFound);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Stored bytes are damaged or were tampered with (a record, a namespace, the header, a
    /// file that does not read back): run `verify`, restore from a backup.
    Damaged,
    /// No keyslot accepts the key or passphrase.
    WrongKey,
    /// Another process or handle holds the vault: retry later.
    Locked,
    /// Nothing is there: no vault at the path, no such keyslot.
    NotFound,
    /// A failure that may pass: storage (I/O) errors, temporary refresh failures. The
    /// operation is safe to retry.
    Transient,
    /// The caller's input or configuration is refused: a name, parameters, a key source, a
    /// size, a token response, a validator's verdict, a refresh refused as misconfigured.
    InvalidInput,
    /// The user must log in again: the grant is dead, or its refresh token may be spent.
    Reauthenticate,
    /// The vault's state forbids the operation: it exists already, holds data, is closed,
    /// was written by a newer version, or its files are unsafe; a keyslot limit or rule.
    Refused,
    /// An error from code tokenvault does not know (a user-written store or validator).
    Other,
    /// This handle is out of date (another handle changed the vault): open the vault again,
    /// then retry.
    Reopen,
}

impl Error {
    /// The kind of this error (see [`ErrorKind`]).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Damaged(_) => ErrorKind::Damaged,
            Self::WrongKey => ErrorKind::WrongKey,
            Self::Locked { .. } => ErrorKind::Locked,
            Self::NotFound { .. } | Self::NoSuchKeyslot { .. } => ErrorKind::NotFound,
            Self::Backend(e) => backend_kind(e.kind()),
            Self::Reopen => ErrorKind::Reopen,
            Self::UpgradeRequired { .. } => ErrorKind::Refused,
            Self::Keyring { failure, .. } => failure.kind(),
            Self::Provider { .. } => ErrorKind::InvalidInput,
            Self::KeySource { .. }
            | Self::RecoveryKeyTypo { .. }
            | Self::KdfParams { .. }
            | Self::InvalidName { .. }
            | Self::TooLarge { .. }
            | Self::WrongRecordType { .. } => ErrorKind::InvalidInput,
            Self::AlreadyExists { .. }
            | Self::NotEmpty { .. }
            | Self::UnsafePath { .. }
            | Self::Closed
            | Self::UnsupportedVersion { .. }
            | Self::KeyslotExists { .. }
            | Self::KeyslotLimit
            | Self::LastKeyslot
            | Self::SlotSecretsMissing { .. }
            | Self::KdfLimit { .. } => ErrorKind::Refused,
        }
    }
}

/// How a storage backend's error is classified: a lock, damage and a missing vault as
/// themselves, a refusal (closed, not empty, an unsafe path) as refused, anything else (I/O)
/// as transient.
pub(crate) fn backend_kind(kind: crate::backend::BackendErrorKind) -> ErrorKind {
    use crate::backend::BackendErrorKind as B;
    match kind {
        B::Damaged => ErrorKind::Damaged,
        B::Locked => ErrorKind::Locked,
        B::NotFound => ErrorKind::NotFound,
        B::Closed | B::NotEmpty | B::UnsafePath => ErrorKind::Refused,
        _ => ErrorKind::Transient,
    }
}

impl From<Damage> for Error {
    fn from(damage: Damage) -> Self {
        Self::Damaged(damage)
    }
}

impl Error {
    pub(crate) fn backend(message: impl Into<String>) -> Self {
        Self::Backend(crate::backend::BackendError::new(
            crate::backend::BackendErrorKind::Other,
            message.into(),
        ))
    }

    pub(crate) fn header(reason: &'static str) -> Self {
        Self::Damaged(Damage::Header { reason })
    }
}
