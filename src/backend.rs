//! The byte-level storage interface under the vault, and its implementations.
//!
//! A backend stores opaque bytes: the vault hands it only ciphertext, HMAC'd names and the
//! header file, so a backend never needs any cryptography. Two ship with the crate:
//! [`SledBackend`] (the embedded default, one directory on disk) and [`MemoryBackend`].

mod dir;
mod memory;
mod sled;

use std::fmt;

pub use self::memory::MemoryBackend;
pub(crate) use self::sled::HEADER_FILE;
pub use self::sled::{SledBackend, DEFAULT_CACHE_CAPACITY};

/// One page of a [`Backend::scan`]: `(key, value)` pairs in key order.
pub type ScanPage = Vec<(Vec<u8>, Vec<u8>)>;

/// A failure inside a backend: an I/O error, a database error, a lost lock.
#[derive(Debug)]
#[non_exhaustive]
pub enum BackendError {
    /// Another holder has the storage locked.
    Locked(std::path::PathBuf),
    /// A file or directory of the storage is unsafe to use: a directory that another user
    /// owns or that group or others can write, a link where a file belongs, a file that is
    /// not a regular file.
    Permissions {
        /// The file or directory.
        path: std::path::PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The storage holds data that a new vault must not overwrite (files that are not a
    /// vault's, or records without a header).
    NotEmpty {
        /// The directory.
        path: std::path::PathBuf,
        /// What was found.
        reason: String,
    },
    /// Anything else, described in words without secrets.
    Other(String),
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Locked(p) => write!(f, "{} is locked by another holder", p.display()),
            Self::Permissions { path, reason } => write!(f, "{} {reason}", path.display()),
            Self::NotEmpty { path, reason } => {
                write!(f, "{} is not empty: {reason}", path.display())
            }
            Self::Other(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for BackendError {}

impl From<std::io::Error> for BackendError {
    fn from(e: std::io::Error) -> Self {
        Self::Other(format!("I/O error: {e}"))
    }
}

/// One write in a [`Batch`]: set `key` in `tree` to `value`, or remove it when `value` is
/// `None`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Write {
    /// The tree (created on first write).
    pub tree: Vec<u8>,
    /// The key inside the tree.
    pub key: Vec<u8>,
    /// The new value, or `None` to remove the key.
    pub value: Option<Vec<u8>>,
}

/// A precondition of a [`Batch`]: `key` in `tree` currently holds exactly `expected` (`None`:
/// is absent).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    /// The tree.
    pub tree: Vec<u8>,
    /// The key inside the tree.
    pub key: Vec<u8>,
    /// The bytes the key must hold, or `None` if it must be absent.
    pub expected: Option<Vec<u8>>,
}

/// An atomic, conditional group of writes, possibly across trees: either every condition
/// holds and every write is applied, or nothing is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    /// What must hold for the batch to apply.
    pub conditions: Vec<Condition>,
    /// What the batch writes.
    pub writes: Vec<Write>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a precondition.
    #[must_use]
    pub fn expect(mut self, tree: &[u8], key: &[u8], expected: Option<&[u8]>) -> Self {
        self.conditions.push(Condition {
            tree: tree.to_vec(),
            key: key.to_vec(),
            expected: expected.map(<[u8]>::to_vec),
        });
        self
    }

    /// Adds a write (`None` removes the key).
    #[must_use]
    pub fn write(mut self, tree: &[u8], key: &[u8], value: Option<Vec<u8>>) -> Self {
        self.writes.push(Write {
            tree: tree.to_vec(),
            key: key.to_vec(),
            value,
        });
        self
    }
}

/// Byte-level storage for a vault.
///
/// # Contract
///
/// - `apply` is atomic: after a crash, either all of a batch's writes are visible or none;
///   concurrent `apply` calls are linearizable (a batch whose conditions held when it applied
///   saw no interleaved write).
/// - A write is durable once `flush` returns after it: it survives a process kill and a power
///   loss. Before that it may be lost (but never half-applied), and writes are lost only from
///   the end: storage found after a crash holds every write applied before any write it
///   holds (a prefix). The vault relies on this order: a namespace's manifest reserving
///   generations is applied before the records that carry them.
/// - `apply` returning an error may have applied the batch or not; the vault reads the state
///   again before relying on it.
/// - `write_header` replaces the header atomically and durably (old or new, never a mix, and
///   the old one is gone: a backend must not keep old header versions around).
/// - Reads see every applied write, flushed or not.
/// - Methods may be called from many threads at once. A backend may panic on damaged storage
///   (sled does); the vault catches panics and reports [`Error::Backend`](crate::Error::Backend).
/// - A backend holds exclusive access to its storage between `open` and `close`.
pub trait Backend: fmt::Debug + Send + Sync + 'static {
    /// The header file, or `None` if no vault was ever created here.
    fn read_header(&self) -> Result<Option<Vec<u8>>, BackendError>;

    /// Replaces the header atomically and durably.
    fn write_header(&self, bytes: &[u8]) -> Result<(), BackendError>;

    /// The value of `key` in `tree` (`None` if either is missing).
    fn get(&self, tree: &[u8], key: &[u8]) -> Result<Option<Vec<u8>>, BackendError>;

    /// Up to `limit` entries of `tree` in key order, starting after `after` (from the first
    /// key when `None`). An empty result means the scan is complete.
    fn scan(
        &self,
        tree: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<ScanPage, BackendError>;

    /// Applies `batch` atomically if all its conditions hold. Returns whether it applied.
    fn apply(&self, batch: &Batch) -> Result<bool, BackendError>;

    /// Removes a tree and everything in it (no error if it does not exist).
    fn drop_tree(&self, tree: &[u8]) -> Result<(), BackendError>;

    /// The names of all trees.
    fn trees(&self) -> Result<Vec<Vec<u8>>, BackendError>;

    /// Makes every write applied so far durable.
    fn flush(&self) -> Result<(), BackendError>;

    /// Flushes and releases the storage (locks, files). Returns only once another holder
    /// could open it. Later calls on this backend fail.
    fn close(&self) -> Result<(), BackendError>;

    /// Sets `key` in `tree` to `value`, unconditionally.
    fn put(&self, tree: &[u8], key: &[u8], value: Vec<u8>) -> Result<(), BackendError> {
        self.apply(&Batch::new().write(tree, key, Some(value)))
            .map(|_| ())
    }

    /// Removes `key` from `tree`, unconditionally.
    fn remove(&self, tree: &[u8], key: &[u8]) -> Result<(), BackendError> {
        self.apply(&Batch::new().write(tree, key, None)).map(|_| ())
    }

    /// Sets `key` to `new` (or removes it) only if it holds exactly `expected` now.
    fn compare_and_swap(
        &self,
        tree: &[u8],
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<Vec<u8>>,
    ) -> Result<bool, BackendError> {
        self.apply(
            &Batch::new()
                .expect(tree, key, expected)
                .write(tree, key, new),
        )
    }
}
