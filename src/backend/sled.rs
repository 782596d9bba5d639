//! The embedded default backend: a sled database plus the header file, in one directory.
//!
//! ```text
//! <dir>/                    0700
//! <dir>/tokenvault.lock     0600  tokenvault's own lock (flock), taken before sled opens
//! <dir>/tokenvault.header   0600  the header file, replaced atomically
//! <dir>/data/               sled's directory (its files inherit the umask inside <dir>)
//! ```
//!
//! Opening one (the options, the checks, the lock) is in `options.rs`; this file is the
//! open backend.

mod options;

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{Read, Write as _};
use std::ops::Bound;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};

use super::{dir, Backend, BackendError, BackendErrorKind, Batch, ScanPage};
use crate::format::MAX_HEADER_LEN;

pub use self::options::{SledOptions, DEFAULT_CACHE_CAPACITY, DEFAULT_LOCK_TIMEOUT};

/// The lock file's name inside the vault directory.
pub(crate) const LOCK_FILE: &str = "tokenvault.lock";
/// The header file's name inside the vault directory.
pub(crate) const HEADER_FILE: &str = "tokenvault.header";
const HEADER_TMP_FILE: &str = "tokenvault.header.tmp";
/// Multi-key batches applied between two of sled's log writes: each batch queues at most one
/// write on sled's pool of seven threads, so at most this many are ever queued by the vault
/// (see `apply` and BENCHMARKS.md, "The write stall").
const BATCHES_PER_LOG_WRITE: usize = 4;
/// sled's directory inside the vault directory.
pub(crate) const DATA_DIR: &str = "data";
/// sled's main data file, which it locks and which a durable flush `fdatasync`s.
const SLED_DATA_FILE: &str = "db";
const SLED_DEFAULT_TREE: &[u8] = b"__sled__default";
/// Where sled puts log items too large for its segments.
const SLED_BLOBS_DIR: &str = "blobs";
/// How long `close` waits for sled's threads to release the directory.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(30);

/// A [`Backend`] on a directory: sled for records, a separate file for the header.
///
/// [`Vault::create`](crate::Vault::create) and [`Vault::open`](crate::Vault::open) use it.
/// Open it directly to wrap it in a backend of your own (instrumentation, fault injection)
/// and pass that to [`Vault::open_with_backend`](crate::Vault::open_with_backend); tune it
/// with [`SledOptions`]:
///
/// ```
/// use tokenvault::secrecy::SecretBox;
/// use tokenvault::{KeySource, Vault};
/// use tokenvault::backend::SledBackend;
///
/// # let dir = tempfile::tempdir()?;
/// let key = KeySource::raw_key(SecretBox::new(Box::new([3u8; 32])));
/// let backend = SledBackend::create(dir.path().join("v"))?;
/// let vault = Vault::create_with_backend(backend, &key)?;
/// vault.close()?;
/// let backend = SledBackend::open(dir.path().join("v"))?;
/// let vault = Vault::open_with_backend(backend, &key)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SledBackend {
    dir: PathBuf,
    lock: Mutex<Option<File>>,
    /// The SHA-256 of the header as this backend last read or wrote it (`None` inside: no
    /// header), if known: what a conditional header write compares with. The directory lock
    /// keeps other processes out, so only this backend changes the file.
    header: Mutex<Option<Option<[u8; 32]>>>,
    db: RwLock<Option<Open>>,
}

struct Open {
    db: sled::Db,
    data_file: File,
    blobs_dir: PathBuf,
    /// When the last durable flush started: blob files modified since then are synced.
    last_flush: Mutex<SystemTime>,
    /// The blob directory's modification time when it was last listed, and when that
    /// listing started (see `sync_new_blobs`).
    blobs_listed: Mutex<Option<(SystemTime, SystemTime)>>,
    /// Held across each multi-key batch and the log write that may follow it (see `apply`);
    /// counts the batches applied since the last log write.
    batch_gate: Mutex<usize>,
    trees: Mutex<HashMap<Vec<u8>, sled::Tree>>,
}

impl SledBackend {
    /// Creates the directory (mode 0700) if needed, takes tokenvault's lock file (waiting up
    /// to [`DEFAULT_LOCK_TIMEOUT`] for another holder), then creates or opens sled inside it,
    /// with the default [`SledOptions`].
    ///
    /// # Errors
    /// As [`SledOptions::create`].
    pub fn create(dir: impl AsRef<Path>) -> Result<Self, BackendError> {
        SledOptions::new().create(dir)
    }

    /// Takes tokenvault's lock file in an existing vault directory (waiting up to
    /// [`DEFAULT_LOCK_TIMEOUT`]), then opens sled inside it, with the default
    /// [`SledOptions`].
    ///
    /// # Errors
    /// As [`SledOptions::open`].
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, BackendError> {
        SledOptions::new().open(dir)
    }

    /// The vault directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn with_open<T>(
        &self,
        f: impl FnOnce(&Open) -> Result<T, BackendError>,
    ) -> Result<T, BackendError> {
        let guard = self.db.read().map_err(poisoned)?;
        match guard.as_ref() {
            Some(open) => f(open),
            None => Err(BackendError::new(
                BackendErrorKind::Closed,
                "the backend is closed",
            )),
        }
    }

    fn release(&self) -> Result<(), BackendError> {
        let open = self.db.write().map_err(poisoned)?.take();
        if let Some(open) = open {
            let flushed = open.flush();
            drop(open);
            wait_for_release(&self.dir.join(DATA_DIR).join(SLED_DATA_FILE))?;
            flushed?;
        }
        let lock = self.lock.lock().map_err(poisoned)?.take();
        if let Some(lock) = lock {
            lock.unlock()?;
        }
        Ok(())
    }
}

impl Open {
    fn tree(&self, name: &[u8]) -> Result<sled::Tree, BackendError> {
        let mut trees = self.trees.lock().map_err(poisoned)?;
        if let Some(t) = trees.get(name) {
            return Ok(t.clone());
        }
        let tree = self.db.open_tree(name).map_err(sled_err)?;
        trees.insert(name.to_vec(), tree.clone());
        Ok(tree)
    }

    fn existing_tree(&self, name: &[u8]) -> Result<Option<sled::Tree>, BackendError> {
        let cached = self.trees.lock().map_err(poisoned)?.get(name).cloned();
        if cached.is_some() {
            return Ok(cached);
        }
        let exists = self.db.tree_names().iter().any(|n| n.as_ref() == name);
        if exists {
            self.tree(name).map(Some)
        } else {
            Ok(None)
        }
    }

    fn flush(&self) -> Result<(), BackendError> {
        let started = SystemTime::now();
        let since = *self.last_flush.lock().map_err(poisoned)?;
        // sled's flush ends in sync_file_range, which survives a killed process but not a
        // power loss; fdatasync the data file as well.
        self.db.flush().map_err(sled_err)?;
        self.data_file.sync_data()?;
        self.sync_new_blobs(since)?;
        if let Ok(mut last) = self.last_flush.lock() {
            *last = (*last).max(started);
        }
        Ok(())
    }

    /// A batch of one write, conditional at most on the key it writes, as one sled operation
    /// on that key (`insert`, `remove` or `compare_and_swap`): atomic and linearizable like a
    /// transaction, without the separate log write sled makes for every multi-key batch.
    /// `None` for any other batch.
    fn apply_single(&self, batch: &Batch) -> Result<Option<bool>, BackendError> {
        let [write] = batch.writes.as_slice() else {
            return Ok(None);
        };
        let condition = match batch.conditions.as_slice() {
            [] => None,
            [c] if c.tree == write.tree && c.key == write.key => Some(c),
            _ => return Ok(None),
        };
        let tree = self.tree(&write.tree)?;
        let key = write.key.as_slice();
        match condition {
            None => {
                match &write.value {
                    Some(v) => tree.insert(key, v.as_slice()).map_err(sled_err)?,
                    None => tree.remove(key).map_err(sled_err)?,
                };
                Ok(Some(true))
            }
            Some(c) => {
                let swapped = tree
                    .compare_and_swap(key, c.expected.as_deref(), write.value.as_deref())
                    .map_err(sled_err)?;
                Ok(Some(swapped.is_ok()))
            }
        }
    }

    /// sled writes log items over about 128 KiB (a node holding several large records) to
    /// files under `blobs/` and never syncs them: sync those modified since `since` (with a
    /// margin for coarse timestamps), and the directory that names them.
    fn sync_new_blobs(&self, since: SystemTime) -> Result<(), BackendError> {
        let threshold = since
            .checked_sub(Duration::from_secs(2))
            .unwrap_or(SystemTime::UNIX_EPOCH);
        // sled writes each blob file once, as a new file, which changes the directory's
        // modification time: an unchanged directory means no blob to sync (one `stat`
        // instead of a listing on every flush).
        let dir_modified = match fs::metadata(&self.blobs_dir).and_then(|m| m.modified()) {
            Ok(modified) if modified < threshold => return Ok(()),
            Ok(modified) => modified,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        // Within the margin the directory is listed again on every flush, unless it is
        // unchanged since a listing that started a timestamp tick after its change: a file
        // created after that listing started would have moved the directory's time past it.
        // A tick is a jiffy (at most 10 ms) where times carry nanoseconds; up to 2 s where
        // they are whole seconds (coarse file systems).
        let tick = if dir_modified
            .duration_since(SystemTime::UNIX_EPOCH)
            .is_ok_and(|d| d.subsec_nanos() == 0)
        {
            Duration::from_secs(2)
        } else {
            Duration::from_millis(100)
        };
        let listed = *self.blobs_listed.lock().map_err(poisoned)?;
        if let Some((modified, started)) = listed {
            if modified == dir_modified && started >= dir_modified + tick {
                return Ok(());
            }
        }
        let listing = SystemTime::now();
        let entries = match fs::read_dir(&self.blobs_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let mut synced = false;
        for entry in entries {
            let entry = entry?;
            let modified = entry.metadata()?.modified()?;
            if modified >= threshold {
                match File::open(entry.path()) {
                    Ok(f) => f.sync_data()?,
                    // sled removes blobs it no longer needs; a vanished one needs no sync.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e.into()),
                }
                synced = true;
            }
        }
        if synced {
            sync_dir(&self.blobs_dir)?;
        }
        *self.blobs_listed.lock().map_err(poisoned)? = Some((dir_modified, listing));
        Ok(())
    }
}

impl Backend for SledBackend {
    /// sled's directory lock keeps every other process out, and a second open in this
    /// process fails on the same lock.
    fn exclusive(&self) -> bool {
        true
    }

    fn read_header(&self) -> Result<Option<Vec<u8>>, BackendError> {
        let mut known = lock_header(&self.header);
        let bytes = read_header_file(&self.dir.join(HEADER_FILE))?;
        *known = Some(bytes.as_deref().map(digest));
        Ok(bytes)
    }

    fn write_header(&self, expected: Option<&[u8]>, bytes: &[u8]) -> Result<bool, BackendError> {
        let mut known = lock_header(&self.header);
        let current = match *known {
            Some(current) => current,
            None => read_header_file(&self.dir.join(HEADER_FILE))?
                .as_deref()
                .map(digest),
        };
        if current != expected.map(digest) {
            *known = Some(current);
            return Ok(false);
        }
        // Unknown until the new file is in place: a failed write may have replaced it or not.
        *known = None;
        let tmp = self.dir.join(HEADER_TMP_FILE);
        let mut file = dir::create_new_private(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, self.dir.join(HEADER_FILE))?;
        sync_dir(&self.dir)?;
        *known = Some(Some(digest(bytes)));
        Ok(true)
    }

    fn get(&self, tree: &[u8], key: &[u8]) -> Result<Option<Vec<u8>>, BackendError> {
        self.with_open(|o| match o.existing_tree(tree)? {
            Some(t) => Ok(t.get(key).map_err(sled_err)?.map(|v| v.to_vec())),
            None => Ok(None),
        })
    }

    fn scan(
        &self,
        tree: &[u8],
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<ScanPage, BackendError> {
        self.with_open(|o| {
            let Some(t) = o.existing_tree(tree)? else {
                return Ok(Vec::new());
            };
            let start = match after {
                Some(k) if k >= prefix => Bound::Excluded(k),
                _ => Bound::Included(prefix),
            };
            t.range::<&[u8], _>((start, Bound::Unbounded))
                .take_while(|kv| kv.as_ref().map_or(true, |(k, _)| k.starts_with(prefix)))
                .take(limit)
                .map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(sled_err))
                .collect()
        })
    }

    fn apply(&self, batch: &Batch) -> Result<bool, BackendError> {
        self.with_open(|o| {
            if let Some(applied) = o.apply_single(batch)? {
                return Ok(applied);
            }
            let mut names: Vec<&[u8]> = batch
                .conditions
                .iter()
                .map(|c| c.tree.as_slice())
                .chain(batch.writes.iter().map(|w| w.tree.as_slice()))
                .collect();
            names.sort_unstable();
            names.dedup();
            let trees = names
                .iter()
                .map(|n| o.tree(n))
                .collect::<Result<Vec<_>, _>>()?;
            let refs: Vec<&sled::Tree> = trees.iter().collect();
            let index = |name: &[u8]| names.binary_search(&name).unwrap_or(0);
            // sled 0.34.7 can deadlock under a sustained run of atomic batches: each one
            // seals a log buffer and queues its write on sled's thread pool; once the pool's
            // threads all wait for the segment accountant's lock, whose holder waits for a
            // file truncation queued behind them, nothing moves again (BENCHMARKS.md, "The
            // write stall"). One batch at a time, and after every BATCHES_PER_LOG_WRITE of them
            // sled's own (non-durable) flush, which waits until their log writes are done,
            // keeps that queue shorter than the pool's seven threads.
            let mut since_log_write = o.batch_gate.lock().map_err(poisoned)?;
            let result = refs.as_slice().transaction(|tx| {
                for c in &batch.conditions {
                    let current = tx[index(&c.tree)].get(&c.key)?;
                    if current.as_deref() != c.expected.as_deref() {
                        return Err(ConflictableTransactionError::Abort(()));
                    }
                }
                for w in &batch.writes {
                    let t = &tx[index(&w.tree)];
                    match &w.value {
                        Some(v) => {
                            t.insert(w.key.as_slice(), v.as_slice())?;
                        }
                        None => {
                            t.remove(w.key.as_slice())?;
                        }
                    }
                }
                Ok(())
            });
            match result {
                Ok(()) => {
                    *since_log_write += 1;
                    if *since_log_write >= BATCHES_PER_LOG_WRITE {
                        *since_log_write = 0;
                        // The batch is applied whatever this returns; a failing log write
                        // shows again at the next durable flush, which reports it.
                        let _ = o.db.flush();
                    }
                    Ok(true)
                }
                Err(TransactionError::Abort(())) => Ok(false),
                Err(TransactionError::Storage(e)) => Err(sled_err(e)),
            }
        })
    }

    fn drop_tree(&self, tree: &[u8]) -> Result<(), BackendError> {
        self.with_open(|o| {
            o.trees.lock().map_err(poisoned)?.remove(tree);
            o.db.drop_tree(tree).map_err(sled_err)?;
            Ok(())
        })
    }

    fn trees(&self) -> Result<Vec<Vec<u8>>, BackendError> {
        self.with_open(|o| {
            Ok(o.db
                .tree_names()
                .into_iter()
                .filter(|n| n.as_ref() != SLED_DEFAULT_TREE)
                .map(|n| n.to_vec())
                .collect())
        })
    }

    fn flush(&self) -> Result<(), BackendError> {
        self.with_open(Open::flush)
    }

    fn close(&self) -> Result<(), BackendError> {
        self.release()
    }
}

impl std::fmt::Debug for SledBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledBackend")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Drop for SledBackend {
    fn drop(&mut self) {
        // Best effort: an error here has nowhere to go. `Vault::close` reports it instead.
        let _ = catch_unwind(AssertUnwindSafe(|| self.release()));
    }
}

fn sled_err(e: sled::Error) -> BackendError {
    let kind = match &e {
        sled::Error::Io(_) => BackendErrorKind::Io,
        sled::Error::Corruption { .. } => BackendErrorKind::Damaged,
        _ => BackendErrorKind::Other,
    };
    BackendError::new(kind, "sled").with_source(e)
}

/// A lock poisoned by a panic in another thread.
fn poisoned<T>(_: std::sync::PoisonError<T>) -> BackendError {
    BackendError::new(BackendErrorKind::Other, "backend lock poisoned")
}

/// Waits until sled's lock on its data file is gone (sled's threads may outlive `Db`'s drop).
fn wait_for_release(data_file: &Path) -> Result<(), BackendError> {
    let file = match File::open(data_file) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let deadline = Instant::now() + RELEASE_TIMEOUT;
    loop {
        match file.try_lock() {
            Ok(()) => {
                file.unlock()?;
                return Ok(());
            }
            Err(fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(fs::TryLockError::WouldBlock) => {
                return Err(BackendError::new(
                    BackendErrorKind::Other,
                    "sled did not release its files within 30 s",
                ))
            }
            Err(fs::TryLockError::Error(e)) => return Err(e.into()),
        }
    }
}

fn sync_dir(dir: &Path) -> Result<(), BackendError> {
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// The SHA-256 of a header, to compare headers without keeping them.
fn digest(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).into()
}

fn lock_header(
    m: &Mutex<Option<Option<[u8; 32]>>>,
) -> std::sync::MutexGuard<'_, Option<Option<[u8; 32]>>> {
    // The digest is replaced whole, so a poisoned lock still holds a consistent value.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn read_header_file(path: &Path) -> Result<Option<Vec<u8>>, BackendError> {
    let Some(file) = dir::open_regular(path)? else {
        return Ok(None);
    };
    let mut buf = Vec::new();
    file.take(MAX_HEADER_LEN as u64 + 1).read_to_end(&mut buf)?;
    Ok(Some(buf))
}
