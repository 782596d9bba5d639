//! Importing the plaintext token files of other SDKs into a vault.

use std::fmt;
use std::path::PathBuf;

/// An import that failed, and why. Nothing was written to the vault.
#[derive(Debug)]
#[non_exhaustive]
pub struct ImportError {
    /// The file being imported.
    pub path: PathBuf,
    /// What went wrong.
    pub kind: ImportErrorKind,
}

/// What went wrong in an import.
#[derive(Debug)]
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
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot import {}: ", self.path.display())?;
        match &self.kind {
            ImportErrorKind::Io { message } => write!(f, "{message}"),
            ImportErrorKind::Malformed { reason } => write!(f, "{reason}"),
        }
    }
}

impl std::error::Error for ImportError {}
