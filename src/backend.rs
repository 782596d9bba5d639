//! The byte-level storage interface under the vault, and its implementations.
//!
//! A backend stores opaque bytes: the vault hands it only ciphertext, HMAC'd names and the
//! header file, so a backend never needs any cryptography. Two ship with the crate:
//! [`SledBackend`] (the embedded default, one directory on disk, tuned with [`SledOptions`])
//! and [`MemoryBackend`]; with the `postgres` feature, a third, `PostgresBackend`: one
//! database that every process and machine of a service shares.

mod dir;
mod error;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
mod sled;

use std::fmt;

pub use self::error::{BackendError, BackendErrorKind};
pub use self::memory::MemoryBackend;
#[cfg(feature = "postgres")]
pub use self::postgres::{
    postgres_url_has_password, PostgresBackend, PostgresOptions, Replication, Standby,
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_POOL_SIZE,
};
pub(crate) use self::sled::HEADER_FILE;
pub use self::sled::{SledBackend, SledOptions, DEFAULT_CACHE_CAPACITY, DEFAULT_LOCK_TIMEOUT};

/// One page of a [`Backend::scan`]: `(key, value)` pairs in key order.
pub type ScanPage = Vec<(Vec<u8>, Vec<u8>)>;

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

/// Byte-level storage for a vault: exactly the calls the vault makes. A single write is a
/// [`Batch`] of one, and a failure is a [`BackendError`] whose [`BackendErrorKind`] decides
/// how the vault reports it.
///
/// ```
/// use tokenvault::backend::{Backend, Batch, MemoryBackend};
///
/// let storage = MemoryBackend::new();
/// let applied = storage.apply(&Batch::new().write(b"tree", b"key", Some(b"value".to_vec())))?;
/// assert!(applied);
/// assert_eq!(storage.get(b"tree", b"key")?, Some(b"value".to_vec()));
/// # Ok::<(), tokenvault::backend::BackendError>(())
/// ```
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
///   the old one is gone: a backend must not keep old header versions around), and only if
///   the header is still the one the caller read: the comparison and the write are one step,
///   so that two handles sharing storage never overwrite each other's header changes.
/// - Reads see every applied write, flushed or not.
/// - Methods may be called from many threads at once. A backend may panic on damaged storage
///   (sled does); the vault catches panics and reports [`Error::Backend`](crate::Error::Backend).
/// - Storage may be shared: several handles (in this process or others) may apply batches
///   to it at once, and every write the vault makes is conditional, so they never overwrite
///   each other's changes. A backend that knows it is the storage's only writer while open
///   says so through [`exclusive`](Backend::exclusive).
pub trait Backend: fmt::Debug + Send + Sync + 'static {
    /// The header file, or `None` if no vault was ever created here.
    fn read_header(&self) -> Result<Option<Vec<u8>>, BackendError>;

    /// Replaces the header atomically and durably with `bytes`, if its current bytes are
    /// still `expected` (`None`: only if there is no header yet). Returns whether it was
    /// written; `false` changes nothing.
    fn write_header(&self, expected: Option<&[u8]>, bytes: &[u8]) -> Result<bool, BackendError>;

    /// The value of `key` in `tree` (`None` if either is missing).
    fn get(&self, tree: &[u8], key: &[u8]) -> Result<Option<Vec<u8>>, BackendError>;

    /// The values of several `(tree, key)` pairs, in order (`None` for each one missing).
    /// The default calls [`get`](Self::get) for each; a backend that pays a network round
    /// trip per call answers them in one (the vault's write path reads a namespace's
    /// manifest and a record together). It need not be a snapshot: each value is one that
    /// key held at some moment during the call.
    ///
    /// ```
    /// use tokenvault::backend::{Backend, Batch, MemoryBackend};
    ///
    /// let storage = MemoryBackend::new();
    /// storage.apply(&Batch::new().write(b"t", b"a", Some(b"1".to_vec())))?;
    /// let got = storage.get_many(&[(b"t", b"a"), (b"t", b"b")])?;
    /// assert_eq!(got, vec![Some(b"1".to_vec()), None]);
    /// # Ok::<(), tokenvault::backend::BackendError>(())
    /// ```
    fn get_many(&self, keys: &[(&[u8], &[u8])]) -> Result<Vec<Option<Vec<u8>>>, BackendError> {
        keys.iter().map(|(tree, key)| self.get(tree, key)).collect()
    }

    /// Up to `limit` entries of `tree` whose keys start with `prefix` (every key: an empty
    /// prefix), in key order, starting after `after` (from the first such key when `None`).
    /// An empty result means the scan is complete.
    fn scan(
        &self,
        tree: &[u8],
        prefix: &[u8],
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

    /// The storage's clock: what every handle sharing this storage uses for lease times and
    /// expiry decisions, so that they agree whatever their own machines' clocks say. The
    /// default is this machine's clock, right for storage that one machine holds (sled, the
    /// memory backend); a backend shared by several machines returns its server's time.
    fn now(&self) -> Result<std::time::SystemTime, BackendError> {
        Ok(std::time::SystemTime::now())
    }

    /// Whether this backend is the only writer of its storage until it is closed: no other
    /// handle, in this process or another, applies batches to it meanwhile (sled holds its
    /// directory's lock). The vault then stores a new record with single-key writes instead of
    /// an atomic batch with its namespace's manifest, which is safe only against writers that
    /// share the vault handle's locks. The default, `false`, is always safe.
    ///
    /// ```
    /// use tokenvault::backend::{Backend, MemoryBackend};
    ///
    /// // A memory backend can be shared by several handles (clones share their storage).
    /// assert!(!MemoryBackend::new().exclusive());
    /// ```
    fn exclusive(&self) -> bool {
        false
    }

    /// Flushes and releases the storage (locks, files). Returns only once another holder
    /// could open it. Later calls on this backend fail.
    fn close(&self) -> Result<(), BackendError>;
}
