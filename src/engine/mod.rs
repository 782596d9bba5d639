//! The engine both handles share: the backend, the unlocked key state, the locks and group
//! commit. [`Vault`](crate::Vault) and [`Namespace`](crate::Namespace) are handles on one
//! `Engine`; every backend call goes through [`Engine::call`] (closed vault, errors, panics)
//! and every header change through [`Engine::update_state`].

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard};

use crate::backend::{Backend, BackendError, BackendErrorKind};
use crate::error::{Error, Result};
use crate::format::NS_ID_LEN;
use crate::options::{Durability, VaultOptions};

mod group_commit;
mod key_state;
mod set_aside;
mod unlock;

use self::group_commit::GroupCommit;
pub(crate) use self::key_state::{Generations, KeyState, NsState};
pub(crate) use self::unlock::{new_slot, try_slot, unlock_slot};

const NS_LOCK_SHARDS: usize = 64;

/// One open vault's shared state.
pub(crate) struct Engine {
    backend: RwLock<Option<Box<dyn Backend>>>,
    path: Option<PathBuf>,
    state: RwLock<KeyState>,
    header_write: Mutex<()>,
    /// Serializes key rotations and namespace removals: two rotations of one namespace at
    /// once could each drop a key the other just re-sealed records under.
    maintenance: Mutex<()>,
    ns_locks: Vec<Mutex<()>>,
    commit: GroupCommit,
    pub(crate) options: VaultOptions,
}

impl Engine {
    pub(crate) fn new(
        backend: Box<dyn Backend>,
        state: KeyState,
        options: VaultOptions,
        path: Option<PathBuf>,
    ) -> Self {
        Self {
            backend: RwLock::new(Some(backend)),
            path,
            state: RwLock::new(state),
            header_write: Mutex::new(()),
            maintenance: Mutex::new(()),
            ns_locks: (0..NS_LOCK_SHARDS).map(|_| Mutex::new(())).collect(),
            commit: GroupCommit::default(),
            options,
        }
    }

    /// The vault directory, for a vault on disk.
    pub(crate) fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    pub(crate) fn read_state(&self) -> Result<RwLockReadGuard<'_, KeyState>> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        self.state
            .read()
            .map_err(|_| Error::backend("vault state lock poisoned"))
    }

    /// Applies a change to a copy of the key state, writes the resulting header (seqid + 1)
    /// durably, then installs the copy. Nothing changes if any step fails.
    pub(crate) fn update_state<T>(&self, f: impl FnOnce(&mut KeyState) -> Result<T>) -> Result<T> {
        let _guard = lock(&self.header_write);
        let mut draft = self.read_state()?.duplicate()?;
        let out = f(&mut draft)?;
        draft.header.seqid = draft.header.seqid.wrapping_add(1);
        let bytes = draft.header.encode(&draft.vmk_keys)?;
        let written = self.call(|b| b.write_header(Some(&draft.header_bytes), &bytes))?;
        if !written {
            return Err(Error::Reopen);
        }
        draft.header_bytes = bytes;
        *self
            .state
            .write()
            .map_err(|_| Error::backend("vault state lock poisoned"))? = draft;
        Ok(out)
    }

    /// Runs a backend call, turning a closed vault, backend errors and panics into errors.
    pub(crate) fn call<T>(
        &self,
        f: impl FnOnce(&dyn Backend) -> Result<T, BackendError>,
    ) -> Result<T> {
        let guard = self
            .backend
            .read()
            .map_err(|_| Error::backend("backend lock poisoned"))?;
        let backend = guard.as_deref().ok_or(Error::Closed)?;
        guarded(backend, f)
    }

    /// Waits until the write committed as `ticket` is durable (no wait when buffered).
    pub(crate) fn sync(&self, ticket: u64) -> Result<()> {
        if self.options.durability == Durability::Buffered {
            return Ok(());
        }
        self.commit
            .wait_durable(ticket, || self.call(|b| b.flush()))
    }

    /// Takes a commit ticket for a write that has just been applied.
    pub(crate) fn committed(&self) -> u64 {
        self.commit.ticket()
    }

    /// Flushes now, whatever the durability mode.
    pub(crate) fn sync_now(&self) -> Result<()> {
        let ticket = self.committed();
        self.commit
            .wait_durable(ticket, || self.call(|b| b.flush()))
    }

    pub(crate) fn lock_maintenance(&self) -> MutexGuard<'_, ()> {
        lock(&self.maintenance)
    }

    pub(crate) fn lock_ns(&self, id: &[u8; NS_ID_LEN]) -> MutexGuard<'_, ()> {
        let shard = usize::from(id[0]) % self.ns_locks.len();
        lock(&self.ns_locks[shard])
    }

    /// Locks the shards of several namespaces, each once, in ascending order (the lock order
    /// that keeps writers spanning namespaces from deadlocking each other).
    pub(crate) fn lock_shards(&self, ids: &[[u8; NS_ID_LEN]]) -> Vec<MutexGuard<'_, ()>> {
        let mut shards: Vec<usize> = ids
            .iter()
            .map(|id| usize::from(id[0]) % self.ns_locks.len())
            .collect();
        shards.sort_unstable();
        shards.dedup();
        shards
            .into_iter()
            .map(|s| lock(&self.ns_locks[s]))
            .collect()
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.backend.read().map(|b| b.is_none()).unwrap_or(true)
    }

    pub(crate) fn shutdown(&self) -> Result<()> {
        let backend = self
            .backend
            .write()
            .map_err(|_| Error::backend("backend lock poisoned"))?
            .take();
        match backend {
            Some(backend) => {
                let flushed = guarded(backend.as_ref(), |b| b.flush());
                let closed = guarded(backend.as_ref(), |b| b.close());
                flushed.and(closed)
            }
            None => Ok(()),
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // Best effort; `Vault::close` is the way to see errors.
        let _ = self.shutdown();
    }
}

/// Runs a backend call with panics caught.
pub(crate) fn guarded<T>(
    backend: &dyn Backend,
    f: impl FnOnce(&dyn Backend) -> Result<T, BackendError>,
) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(|| f(backend))) {
        Ok(result) => result.map_err(|e| backend_error(e, None)),
        Err(_) => Err(Error::backend(
            "the storage backend panicked (its files may be damaged); run verify",
        )),
    }
}

/// A backend's error as the vault reports it: a lock, an unsafe path and a directory that is
/// not empty as their own variants (about the backend's path, else the vault's `path`),
/// everything else as [`Error::Backend`] holding it (with the vault's `path` when it names
/// none).
pub(crate) fn backend_error(e: BackendError, path: Option<&Path>) -> Error {
    let at = e.path().or(path).map(Path::to_path_buf);
    match (e.kind(), at) {
        (BackendErrorKind::Locked, Some(path)) => Error::Locked { path },
        (BackendErrorKind::UnsafePath, Some(path)) => Error::UnsafePath {
            path,
            reason: e.reason().to_owned(),
        },
        (BackendErrorKind::NotEmpty, path) => Error::NotEmpty {
            path,
            reason: e.reason().to_owned(),
        },
        (_, at) => Error::Backend(match (e.path(), at) {
            (None, Some(path)) => e.with_path(path),
            _ => e,
        }),
    }
}

fn lock(m: &Mutex<()>) -> MutexGuard<'_, ()> {
    // The mutexes guard no data, so a poisoned one is still usable.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
