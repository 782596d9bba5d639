//! How a sled directory is opened: [`SledOptions`], and the checks and steps of an open.

use std::collections::HashMap;
use std::fs::{self, File};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use super::{
    sled_err, sync_dir, Open, SledBackend, DATA_DIR, HEADER_FILE, HEADER_TMP_FILE, LOCK_FILE,
    SLED_BLOBS_DIR, SLED_DATA_FILE,
};
use crate::backend::{dir, BackendError, BackendErrorKind};

/// The default size of sled's page cache, in bytes (64 MiB): about 30,000 records of a
/// typical token.
pub const DEFAULT_CACHE_CAPACITY: u64 = 64 * 1024 * 1024;
/// The default time to wait for another holder of a vault directory to let go (2 s).
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(2);

/// How to open a [`SledBackend`]: the size of sled's page cache and how long to wait for
/// another holder of the directory. The defaults are [`DEFAULT_CACHE_CAPACITY`] and
/// [`DEFAULT_LOCK_TIMEOUT`].
///
/// Build a backend with [`create`](Self::create) or [`open`](Self::open), or give the
/// options to [`VaultOptions::sled`](crate::VaultOptions::sled) for the backend that
/// [`Vault::create`](crate::Vault::create) and [`Vault::open`](crate::Vault::open) build:
///
/// ```
/// use std::time::Duration;
/// use tokenvault::secrecy::SecretBox;
/// use tokenvault::{KeySource, VaultOptions};
/// use tokenvault::backend::SledOptions;
///
/// # let dir = tempfile::tempdir()?;
/// let key = KeySource::raw_key(SecretBox::new(Box::new([3u8; 32])));
/// let sled = SledOptions::new()
///     .cache_capacity(512 * 1024 * 1024)
///     .lock_timeout(Duration::from_secs(10));
/// let vault = VaultOptions::new().sled(sled.clone()).create(dir.path().join("v"), &key)?;
/// vault.close()?;
/// let backend = sled.open(dir.path().join("v"))?;
/// # drop(backend);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SledOptions {
    cache_capacity: u64,
    lock_timeout: Duration,
}

impl SledOptions {
    /// The defaults: a page cache of [`DEFAULT_CACHE_CAPACITY`] bytes, and a lock timeout
    /// of [`DEFAULT_LOCK_TIMEOUT`].
    ///
    /// ```
    /// use tokenvault::backend::{SledOptions, DEFAULT_CACHE_CAPACITY, DEFAULT_LOCK_TIMEOUT};
    ///
    /// let defaults = SledOptions::new()
    ///     .cache_capacity(DEFAULT_CACHE_CAPACITY)
    ///     .lock_timeout(DEFAULT_LOCK_TIMEOUT);
    /// assert_eq!(defaults, SledOptions::new());
    /// ```
    pub fn new() -> Self {
        Self {
            cache_capacity: DEFAULT_CACHE_CAPACITY,
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
        }
    }

    /// The size of sled's page cache, in bytes (default [`DEFAULT_CACHE_CAPACITY`],
    /// 64 MiB). The cache holds ciphertext only. Reads of records outside it decode their
    /// node from sled's log, so a service reading many records at random should size it to
    /// its working set (a 1,590-byte sealed token takes about 2.2 KB; `BENCHMARKS.md`,
    /// "Scale").
    ///
    /// ```
    /// use tokenvault::backend::SledOptions;
    ///
    /// let options = SledOptions::new().cache_capacity(512 * 1024 * 1024);
    /// # let _ = options;
    /// ```
    #[must_use]
    pub fn cache_capacity(mut self, bytes: u64) -> Self {
        self.cache_capacity = bytes;
        self
    }

    /// How long to wait for another holder of the vault directory (another process, or
    /// another open backend in this one) before a [`BackendErrorKind::Locked`] error
    /// ([`Error::Locked`](crate::Error::Locked) from the vault). Default
    /// [`DEFAULT_LOCK_TIMEOUT`], 2 s; zero tries once.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tokenvault::backend::SledOptions;
    ///
    /// let options = SledOptions::new().lock_timeout(Duration::from_secs(10));
    /// # let _ = options;
    /// ```
    #[must_use]
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// Creates the directory `dir` (mode 0700) if needed, takes tokenvault's lock file in
    /// it, then creates or opens sled inside it. An existing directory must be this user's,
    /// writable by no one else, and hold nothing a vault does not make.
    ///
    /// # Errors
    /// [`BackendErrorKind::Locked`] past the lock timeout;
    /// [`BackendErrorKind::UnsafePath`] for a directory or file that is unsafe to use;
    /// [`BackendErrorKind::NotEmpty`] for a directory holding other files; I/O and sled
    /// errors.
    ///
    /// ```
    /// use tokenvault::backend::SledOptions;
    ///
    /// # let dir = tempfile::tempdir()?;
    /// let backend = SledOptions::new().create(dir.path().join("v"))?;
    /// assert_eq!(backend.path(), dir.path().join("v"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn create(&self, dir: impl AsRef<Path>) -> Result<SledBackend, BackendError> {
        open_dir(dir.as_ref(), self, Mode::Create)
    }

    /// Takes tokenvault's lock file in an existing vault directory, then opens sled inside
    /// it.
    ///
    /// # Errors
    /// [`BackendErrorKind::Locked`] past the lock timeout;
    /// [`BackendErrorKind::NotFound`] if the directory has no sled data;
    /// [`BackendErrorKind::UnsafePath`] for a directory or file that is unsafe to use; I/O
    /// and sled errors.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tokenvault::backend::{BackendErrorKind, SledOptions};
    ///
    /// # let dir = tempfile::tempdir()?;
    /// let options = SledOptions::new().lock_timeout(Duration::ZERO);
    /// let first = options.create(dir.path().join("v"))?;
    /// let second = options.open(dir.path().join("v")).unwrap_err();
    /// assert_eq!(second.kind(), BackendErrorKind::Locked);
    /// # drop(first);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(&self, dir: impl AsRef<Path>) -> Result<SledBackend, BackendError> {
        open_dir(dir.as_ref(), self, Mode::Open)
    }
}

impl Default for SledOptions {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether [`open_dir`] may make a new vault directory.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Create,
    Open,
}

/// Opens the vault directory `dir` (with [`Mode::Create`], makes it first, or checks that
/// it is fit for a new vault): checks who owns it, takes the lock, opens sled.
fn open_dir(dir: &Path, options: &SledOptions, mode: Mode) -> Result<SledBackend, BackendError> {
    if mode == Mode::Create {
        // Nothing about an existing directory changes before it is found fit: this
        // user's, and empty of anything a vault does not make.
        make_dir(dir)?;
        dir::check_owner(dir)?;
        check_empty_for_create(dir)?;
        tighten_dir(dir)?;
    }
    dir::check_private_dir(dir)?;
    let lock = acquire_lock(dir, options.lock_timeout)?;
    let data_dir = dir.join(DATA_DIR);
    let fresh = !data_dir.exists();
    if fresh && mode == Mode::Open {
        return Err(
            BackendError::new(BackendErrorKind::NotFound, "is missing its data directory")
                .with_path(dir),
        );
    }
    if !fresh {
        remove_interrupted_snapshots(&data_dir)?;
    }
    let config = sled::Config::new()
        .path(&data_dir)
        .cache_capacity(options.cache_capacity)
        .flush_every_ms(Some(500));
    let db = catch_unwind(AssertUnwindSafe(|| config.open()))
        .map_err(|_| {
            BackendError::new(
                BackendErrorKind::Damaged,
                "sled panicked while opening its files",
            )
        })?
        .map_err(sled_err)?;
    let data_file = File::open(data_dir.join(SLED_DATA_FILE))?;
    if fresh {
        db.flush().map_err(sled_err)?;
        data_file.sync_all()?;
        sync_dir(&data_dir)?;
        sync_dir(dir)?;
    }
    // A header write interrupted by a crash leaves only the temporary file behind.
    if dir::remove_if_present(&dir.join(HEADER_TMP_FILE))? {
        sync_dir(dir)?;
    }
    Ok(SledBackend {
        dir: dir.to_path_buf(),
        lock: Mutex::new(Some(lock)),
        header: Mutex::new(None),
        db: RwLock::new(Some(Open {
            db,
            data_file,
            blobs_dir: data_dir.join(SLED_BLOBS_DIR),
            last_flush: Mutex::new(SystemTime::UNIX_EPOCH),
            blobs_listed: Mutex::new(None),
            batch_gate: Mutex::new(0),
            trees: Mutex::new(HashMap::new()),
        })),
    })
}

/// Creates `dir` (and missing parents) with mode 0700; an existing one is left as it is.
fn make_dir(dir: &Path) -> Result<(), BackendError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)?;
    Ok(())
}

/// Sets `dir`'s mode to 0700 (once it is known to be this user's and fit for a new vault).
fn tighten_dir(dir: &Path) -> Result<(), BackendError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Refuses to create a vault in a directory that holds anything a vault does not make (a
/// vault is created in a new or empty directory; an interrupted create leaves only the lock
/// file, sled's directory and the header's temporary file). Whether sled's directory holds
/// records is for the vault to check.
fn check_empty_for_create(dir: &Path) -> Result<(), BackendError> {
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let ours = [LOCK_FILE, HEADER_TMP_FILE, DATA_DIR, HEADER_FILE];
        if !ours.iter().any(|n| name.as_os_str() == *n) {
            return Err(BackendError::new(
                BackendErrorKind::NotEmpty,
                format!(
                    "it holds {:?}, which is not a vault's",
                    name.to_string_lossy()
                ),
            )
            .with_path(dir));
        }
    }
    Ok(())
}

fn acquire_lock(dir: &Path, timeout: Duration) -> Result<File, BackendError> {
    let file = dir::open_lock_file(&dir.join(LOCK_FILE))?;
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(fs::TryLockError::WouldBlock) => {
                if Instant::now() >= deadline {
                    return Err(BackendError::new(
                        BackendErrorKind::Locked,
                        "is locked by another holder",
                    )
                    .with_path(dir));
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            Err(fs::TryLockError::Error(e)) => return Err(e.into()),
        }
    }
}

/// Removes the `snap.*.generating` files that a process killed while sled wrote a snapshot
/// leaves behind. sled 0.34.7 writes a snapshot to `snap.<lsn>.generating`, syncs it and
/// renames it to `snap.<lsn>`; but at open it reads the highest-numbered `snap.*` file,
/// leftovers included, and refuses to open with "Read corrupted data" when that is an
/// interrupted one (sled issue #1527). A leftover is never the authoritative snapshot (the
/// previous snapshot and the log are), so removing it is what sled itself should do.
/// Called with the directory lock held.
fn remove_interrupted_snapshots(data_dir: &Path) -> Result<(), BackendError> {
    let mut removed = false;
    for entry in fs::read_dir(data_dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            fs::remove_file(entry.path())?;
            removed = true;
        }
    }
    if removed {
        sync_dir(data_dir)?;
    }
    Ok(())
}
