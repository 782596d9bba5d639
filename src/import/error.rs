//! Why an import failed, and how its errors show names from a hostile file.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind};

/// An import that failed, and why. Nothing was written to the vault, except after
/// [`ImportErrorKind::VerifyFailed`] (the records were written but did not read back as
/// written, and the source was kept).
///
/// Names files, namespaces, keys and fields, never a token value.
///
/// ```
/// use tokenvault::{KeySource, Vault};
/// use tokenvault::import::{Import, ImportErrorKind};
/// use tokenvault::secrecy::SecretBox;
///
/// # let dir = tempfile::tempdir()?;
/// let file = dir.path().join("tokens.json");
/// std::fs::write(&file, r#"{"format_version": "3.0", "data": {}}"#)?;
/// let vault = Vault::create(dir.path().join("vault"), &KeySource::raw_key(SecretBox::new(Box::new([7u8; 32]))))?;
///
/// let Err(e) = Import::globus_json(&file).run(&vault) else { panic!() };
/// assert_eq!(e.path, file);
/// assert!(matches!(&e.kind, ImportErrorKind::UnsupportedVersion { found } if found == "3.0"));
/// assert!(e.to_string().contains("3.0"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ImportError {
    /// The file being imported.
    pub path: PathBuf,
    /// What went wrong.
    pub kind: ImportErrorKind,
}

/// What went wrong in an import.
///
/// ```
/// use tokenvault::{KeySource, Vault};
/// use tokenvault::import::{Import, ImportErrorKind};
/// use tokenvault::secrecy::SecretBox;
///
/// # let dir = tempfile::tempdir()?;
/// let file = dir.path().join("tokens.json");
/// std::fs::write(&file, r#"{"format_version": "2.0", "data": {"DEFAULT": {"rs":
///     {"resource_server": "rs", "access_token": "secret-at", "scope": "", "expires_at_seconds": "soon"}}}}"#)?;
/// let vault = Vault::create(dir.path().join("vault"), &KeySource::raw_key(SecretBox::new(Box::new([7u8; 32]))))?;
///
/// match Import::globus_json(&file).run(&vault) {
///     Err(e) => match &e.kind {
///         ImportErrorKind::InvalidRecord { namespace, key, reason } => {
///             assert_eq!((namespace.as_str(), key.as_str()), ("DEFAULT", "rs"));
///             assert!(reason.contains("expires_at_seconds"));
///             assert!(!e.to_string().contains("secret-at"));
///         }
///         other => panic!("{other}"),
///     },
///     Ok(report) => panic!("{report}"),
/// }
/// assert!(vault.namespaces()?.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum ImportErrorKind {
    /// The file could not be read.
    Io {
        /// The I/O error's message.
        message: String,
    },
    /// The file does not hold what its format requires.
    Malformed {
        /// What is wrong (never a token value).
        reason: String,
    },
    /// The file declares a format or schema version this importer does not read.
    UnsupportedVersion {
        /// The version found (printable ASCII only, at most 32 characters).
        found: String,
    },
    /// The file is larger than any token file of its format should be.
    TooLarge {
        /// The limit, in bytes.
        limit: u64,
    },
    /// The file holds more than [`MAX_IMPORT_RECORDS`](crate::import::MAX_IMPORT_RECORDS) records.
    TooManyRecords {
        /// The limit.
        limit: usize,
    },
    /// The file is none of the formats [`ImportFormat`](crate::import::ImportFormat) lists.
    UnrecognizedFormat,
    /// One record of the file is invalid.
    InvalidRecord {
        /// Its namespace (cut to 128 characters if longer).
        namespace: String,
        /// Its key (cut to 128 characters if longer).
        key: String,
        /// What is wrong: the field, never its value.
        reason: String,
    },
    /// One record is larger than a vault record may be ([`MAX_RECORD_LEN`](crate::format::MAX_RECORD_LEN)).
    RecordTooLarge {
        /// Its namespace.
        namespace: String,
        /// Its key.
        key: String,
        /// The limit, in bytes.
        limit: usize,
    },
    /// The vault already holds a record under this namespace and key; use
    /// [`Import::overwrite`](crate::import::Import::overwrite) to replace it.
    Exists {
        /// The namespace.
        namespace: String,
        /// The key.
        key: String,
    },
    /// SQLite could not read the database.
    Sqlite {
        /// SQLite's message (it names tables and columns, never row values).
        message: String,
    },
    /// Reading this format needs a cargo feature of tokenvault that this build lacks.
    FeatureDisabled {
        /// The feature to enable.
        feature: &'static str,
    },
    /// A record did not read back from the vault as it was written. The records were
    /// written, the source file was kept.
    VerifyFailed {
        /// The namespace.
        namespace: String,
        /// The key.
        key: String,
    },
    /// The vault failed (closed, damaged, a storage error, ...): the vault's own
    /// [`Error`], also the [source](std::error::Error::source) of the [`ImportError`].
    /// Nothing was imported.
    Vault(Error),
}

impl From<Error> for ImportErrorKind {
    fn from(e: Error) -> Self {
        Self::Vault(e)
    }
}

impl ImportError {
    /// The kind of failure, as [`ErrorKind::of`] classifies it: I/O errors are
    /// [`Transient`](ErrorKind::Transient), a record the vault holds already
    /// [`Refused`](ErrorKind::Refused), a record that did not read back
    /// [`Damaged`](ErrorKind::Damaged), the vault's own errors as [`Error::kind`] says,
    /// everything else about the file [`InvalidInput`](ErrorKind::InvalidInput).
    pub fn error_kind(&self) -> ErrorKind {
        match &self.kind {
            ImportErrorKind::Io { .. } => ErrorKind::Transient,
            ImportErrorKind::Exists { .. } => ErrorKind::Refused,
            ImportErrorKind::VerifyFailed { .. } => ErrorKind::Damaged,
            ImportErrorKind::Vault(e) => e.kind(),
            _ => ErrorKind::InvalidInput,
        }
    }

    pub(super) fn new(path: &Path, kind: ImportErrorKind) -> Self {
        Self {
            path: path.to_owned(),
            kind,
        }
    }
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot import {}: {}", self.path.display(), self.kind)
    }
}

impl fmt::Display for ImportErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { message } => write!(f, "{message}"),
            Self::Malformed { reason } => write!(f, "{reason}"),
            Self::UnsupportedVersion { found } => write!(
                f,
                "format version {found:?} is not one this importer reads (Globus JSON 1.0 and \
                 2.0, Globus SQLite schema 1 and 2)"
            ),
            Self::TooLarge { limit } => write!(
                f,
                "the file is larger than {limit} bytes, more than a token file of its format holds"
            ),
            Self::TooManyRecords { limit } => {
                write!(f, "the file holds more than {limit} records")
            }
            Self::UnrecognizedFormat => f.write_str(
                "not a token file this importer reads (Globus SDK JSON or SQLite token \
                 storage, Sharetribe file store)",
            ),
            Self::InvalidRecord {
                namespace,
                key,
                reason,
            } => write!(f, "record {key:?} in namespace {namespace:?}: {reason}"),
            Self::RecordTooLarge {
                namespace,
                key,
                limit,
            } => write!(
                f,
                "record {key:?} in namespace {namespace:?} is larger than a vault record may \
                 be ({limit} bytes)"
            ),
            Self::Exists { namespace, key } => write!(
                f,
                "the vault already holds record {key:?} in namespace {namespace:?}; nothing \
                 was imported (import with overwrite to replace it)"
            ),
            Self::Sqlite { message } => write!(f, "SQLite: {message}"),
            Self::FeatureDisabled { feature } => write!(
                f,
                "reading this format needs tokenvault's `{feature}` cargo feature"
            ),
            Self::VerifyFailed { namespace, key } => write!(
                f,
                "record {key:?} in namespace {namespace:?} did not read back as written; the \
                 records were written, the source file was kept"
            ),
            Self::Vault(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ImportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            ImportErrorKind::Vault(e) => Some(e),
            _ => None,
        }
    }
}

pub(super) fn io(e: std::io::Error) -> ImportErrorKind {
    ImportErrorKind::Io {
        message: e.to_string(),
    }
}

/// An error about one record. Names are cut to 128 characters: a hostile file can hold
/// names of any length.
pub(super) fn invalid_record(namespace: &str, key: &str, reason: &str) -> ImportErrorKind {
    ImportErrorKind::InvalidRecord {
        namespace: shown(namespace),
        key: shown(key),
        reason: reason.to_owned(),
    }
}

/// A name as errors show it: cut to 128 characters.
pub(super) fn shown(name: &str) -> String {
    cut(name, 128)
}

/// `text` cut to `max` characters, with `...` when cut.
pub(super) fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}...", text.get(..end).unwrap_or_default()),
        None => text.to_owned(),
    }
}

/// A version string from a file as errors show it: printable ASCII, at most 32 characters.
pub(super) fn shown_version(found: &str) -> String {
    found
        .chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_in_errors_are_cut() {
        let long = "n".repeat(5000);
        let ImportErrorKind::InvalidRecord { namespace, key, .. } = invalid_record(&long, "k", "r")
        else {
            unreachable!()
        };
        assert_eq!(namespace.len(), 128 + 3);
        assert_eq!(key, "k");
        assert_eq!(shown_version("2.0\n\u{1b}[31mX"), "2.0[31mX");
        assert_eq!(shown_version(&"9".repeat(100)).len(), 32);
    }
}
