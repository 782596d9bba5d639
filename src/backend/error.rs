//! What a backend reports when it fails: a kind, what went wrong, where, and the error
//! underneath.

use std::borrow::Cow;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A failure inside a [`Backend`](super::Backend): an I/O error, a database error, a lock
/// held by someone else, an unsafe file.
///
/// [`kind`](Self::kind) says what kind of failure it is, [`path`](Self::path) names the file
/// or directory when there is one, and [`source`](std::error::Error::source) gives the error
/// underneath (an I/O or database error), which `Display` does not repeat. Messages name
/// paths and what went wrong, never stored bytes. Cheap to clone (the source is shared).
///
/// A backend of your own builds its errors with [`new`](Self::new):
///
/// ```
/// use std::error::Error as _;
/// use std::io;
/// use tokenvault::backend::{BackendError, BackendErrorKind};
///
/// let e = BackendError::new(BackendErrorKind::Io, "cannot read the header")
///     .with_path("/srv/vault/tokenvault.header")
///     .with_source(io::Error::from(io::ErrorKind::PermissionDenied));
/// assert_eq!(e.kind(), BackendErrorKind::Io);
/// assert_eq!(e.to_string(), "/srv/vault/tokenvault.header: cannot read the header");
/// assert!(e.source().is_some());
/// ```
#[derive(Clone, Debug)]
pub struct BackendError {
    kind: BackendErrorKind,
    reason: Cow<'static, str>,
    path: Option<PathBuf>,
    source: Option<Arc<dyn std::error::Error + Send + Sync + 'static>>,
}

/// What kind of failure a [`BackendError`] is.
///
/// The vault reports [`Locked`](Self::Locked), [`NotEmpty`](Self::NotEmpty) and
/// [`UnsafePath`](Self::UnsafePath) as [`Error::Locked`](crate::Error::Locked),
/// [`Error::NotEmpty`](crate::Error::NotEmpty) and
/// [`Error::UnsafePath`](crate::Error::UnsafePath), and every other kind as
/// [`Error::Backend`](crate::Error::Backend).
///
/// ```
/// use tokenvault::backend::{BackendError, BackendErrorKind};
///
/// let e = BackendError::new(BackendErrorKind::Closed, "the backend is closed");
/// assert!(matches!(e.kind(), BackendErrorKind::Closed));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BackendErrorKind {
    /// The backend was closed ([`Backend::close`](super::Backend::close)) and refuses further
    /// calls.
    Closed,
    /// The storage is damaged: the database refuses its own files.
    Damaged,
    /// The operating system reported an I/O error (the source is the
    /// [`std::io::Error`]).
    Io,
    /// Another holder has the storage locked and did not let go in time.
    Locked,
    /// The storage holds data that a new vault must not overwrite (files that are not a
    /// vault's, or records without a header).
    NotEmpty,
    /// The storage to open is missing, or lacks a part it must have.
    NotFound,
    /// Anything else: an error inside the database, a poisoned lock, a timeout.
    Other,
    /// The storage is of a version or kind this build does not support (a database schema
    /// of another version), or is set up so that its promises do not hold (a database
    /// server running without `fsync`).
    Unsupported,
    /// A file or directory of the storage is unsafe to use: a directory that another user
    /// owns or that group or others can write, a link where a file belongs, a file that is
    /// not a regular file.
    UnsafePath,
}

impl BackendError {
    /// An error of `kind`, described by `reason` (without secrets).
    ///
    /// For [`Locked`](BackendErrorKind::Locked) and
    /// [`UnsafePath`](BackendErrorKind::UnsafePath) errors with a path, `reason` reads after
    /// the path (`"is a symbolic link"`); for the others it reads on its own.
    ///
    /// ```
    /// use tokenvault::backend::{BackendError, BackendErrorKind};
    ///
    /// let e = BackendError::new(BackendErrorKind::UnsafePath, "is a symbolic link")
    ///     .with_path("/srv/vault/tokenvault.lock");
    /// assert_eq!(e.to_string(), "/srv/vault/tokenvault.lock is a symbolic link");
    /// assert_eq!(e.reason(), "is a symbolic link");
    /// ```
    pub fn new(kind: BackendErrorKind, reason: impl Into<Cow<'static, str>>) -> Self {
        Self {
            kind,
            reason: reason.into(),
            path: None,
            source: None,
        }
    }

    /// This error, about the file or directory `path`.
    ///
    /// ```
    /// use std::path::Path;
    /// use tokenvault::backend::{BackendError, BackendErrorKind};
    ///
    /// let e = BackendError::new(BackendErrorKind::NotFound, "is missing its data directory")
    ///     .with_path("/srv/vault");
    /// assert_eq!(e.path(), Some(Path::new("/srv/vault")));
    /// ```
    #[must_use]
    pub fn with_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.path = Some(path.into());
        self
    }

    /// This error, caused by `source` (an I/O or database error, without secrets).
    ///
    /// ```
    /// use std::error::Error as _;
    /// use tokenvault::backend::{BackendError, BackendErrorKind};
    ///
    /// let e = BackendError::new(BackendErrorKind::Other, "the database failed")
    ///     .with_source("disk quota exceeded");
    /// assert_eq!(e.source().map(|s| s.to_string()).as_deref(), Some("disk quota exceeded"));
    /// ```
    #[must_use]
    pub fn with_source(
        mut self,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        self.source = Some(Arc::from(source.into()));
        self
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> BackendErrorKind {
        self.kind
    }

    /// What went wrong, in words (without the path and the source).
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// The file or directory concerned, when there is one.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// This error and every source under it, joined by `": "` (one line for a message).
    pub(crate) fn chain(&self) -> String {
        let mut text = self.to_string();
        let mut next = std::error::Error::source(self);
        while let Some(e) = next {
            text.push_str(": ");
            text.push_str(&e.to_string());
            next = e.source();
        }
        text
    }
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reason = &self.reason;
        match (&self.path, self.kind) {
            (Some(p), BackendErrorKind::Locked | BackendErrorKind::UnsafePath) => {
                write!(f, "{} {reason}", p.display())
            }
            (Some(p), BackendErrorKind::NotEmpty) => {
                write!(f, "{} is not empty: {reason}", p.display())
            }
            (Some(p), _) => write!(f, "{}: {reason}", p.display()),
            (None, _) => f.write_str(reason),
        }
    }
}

impl std::error::Error for BackendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<std::io::Error> for BackendError {
    fn from(e: std::io::Error) -> Self {
        Self::new(BackendErrorKind::Io, "I/O error").with_source(e)
    }
}
