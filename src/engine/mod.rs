//! The engine both handles share: the backend, the unlocked key state, the locks and group
//! commit. [`Vault`](crate::Vault) and [`Namespace`](crate::Namespace) are handles on one
//! `Engine`; every backend call goes through [`Engine::call`] (closed vault, errors, panics)
//! and every header change through [`Engine::update_state`].

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard};

use subtle::ConstantTimeEq;

use crate::backend::{Backend, BackendError, BackendErrorKind};
use crate::error::{Error, Result};
use crate::format::NS_ID_LEN;
use crate::header::{Header, Slot, VmkKeys};
use crate::options::{Durability, VaultOptions};

mod anchor;
mod entries;
mod group_commit;
mod key_state;
mod unlock;

pub(crate) use self::anchor::seal_anchor;
pub(crate) use self::entries::marker;
use self::entries::EntryCache;
use self::group_commit::GroupCommit;
pub(crate) use self::key_state::{anchor_prf, Ewk, KeyState, LastWrite, NsState};
pub(crate) use self::unlock::{new_slot, try_slot, unlock_slot};

/// How often a header change is re-applied on a header another handle changed meanwhile.
const HEADER_RETRIES: usize = 16;

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
    entries: EntryCache,
    /// Writes applied through this handle, and their count at the last checkpoint.
    written: AtomicU64,
    checkpointed: AtomicU64,
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
            entries: EntryCache::default(),
            written: AtomicU64::new(0),
            checkpointed: AtomicU64::new(0),
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
    /// durably, if storage still holds the header this handle read, then installs the copy.
    /// Nothing changes if any step fails. When another handle changed the header meanwhile,
    /// this handle takes in the new header ([`Engine::refresh_header`]) and applies the
    /// change again to it.
    pub(crate) fn update_state<T>(
        &self,
        mut f: impl FnMut(&mut KeyState) -> Result<T>,
    ) -> Result<T> {
        let _guard = lock(&self.header_write);
        // Header changes are rare and may depend on the keyslots: start from the header as
        // storage holds it now (one read), not from what this handle read at open.
        self.refresh_locked()?;
        for _ in 0..HEADER_RETRIES {
            let mut draft = self.read_state()?.duplicate()?;
            let out = f(&mut draft)?;
            draft.header.seqid = draft.header.seqid.wrapping_add(1);
            let bytes = draft.header.encode(&draft.vmk_keys)?;
            let written = self.call(|b| b.write_header(Some(&draft.header_bytes), &bytes))?;
            if written {
                draft.header_bytes = bytes;
                *self
                    .state
                    .write()
                    .map_err(|_| Error::backend("vault state lock poisoned"))? = draft;
                return Ok(out);
            }
            self.refresh_locked()?;
        }
        Err(Error::Reopen)
    }

    /// Takes in the header as storage holds it now, if another handle changed it: a new
    /// checkpoint epoch, keyslots, entry keys, or a new master key (unwrapped with a slot
    /// secret this handle knows). Returns whether it changed.
    ///
    /// # Errors
    /// [`Error::Reopen`] when this handle can no longer unlock the new header (its keyslots
    /// were removed or changed, and the master key with them); [`Error::Damaged`] for a
    /// header that does not authenticate under any key this handle knows.
    pub(crate) fn refresh_header(&self) -> Result<bool> {
        let _guard = lock(&self.header_write);
        self.refresh_locked()
    }

    fn refresh_locked(&self) -> Result<bool> {
        let bytes = self
            .call(|b| b.read_header())?
            .ok_or_else(|| Error::header("the header file is gone"))?;
        let current = self.read_state()?;
        if bytes == current.header_bytes {
            return Ok(false);
        }
        let header = Header::parse(&bytes)?;
        if header.vault_id != current.header.vault_id {
            return Err(Error::Reopen);
        }
        if header.version != crate::format::FORMAT_VERSION {
            return Err(Error::Reopen);
        }
        // The same master key, or a new one under a slot whose secret this handle knows.
        let mut vmk = None;
        if Header::verify_mac(&bytes, &current.vmk_keys).is_ok() {
            vmk = Some(current.vmk.duplicate());
        } else {
            for slot in &header.slots {
                let Some(kek) = current.keks.get(&slot.id) else {
                    continue;
                };
                let aad = Slot::aad(&header.vault_id, slot.id, slot.kind_code, &slot.params);
                if let Some(key) = kek.cipher().unwrap_key(&aad, &slot.wrapped_vmk) {
                    let keys = VmkKeys::new(&key, &header.vault_id)?;
                    if Header::verify_mac(&bytes, &keys).is_ok() {
                        vmk = Some(key);
                        break;
                    }
                }
            }
        }
        let vmk = vmk.ok_or(Error::Reopen)?;
        let vmk_keys = VmkKeys::new(&vmk, &header.vault_id)?;
        let index_key = vmk_keys
            .wrap
            .unwrap_key(&header.index_key_aad(), &header.wrapped_index_key)
            .ok_or_else(|| Error::header("the name-index key does not unwrap"))?;
        if !bool::from(index_key.bytes().ct_eq(current.index_key.bytes())) {
            return Err(Error::header("the name-index key changed"));
        }
        // Slot secrets this handle knows stay known only while their slot still wraps this
        // master key under the same KEK.
        let keks: HashMap<u32, crate::crypto::Key> = current
            .keks
            .iter()
            .filter(|(id, kek)| {
                header.slots.iter().any(|slot| {
                    slot.id == **id
                        && kek
                            .cipher()
                            .unwrap_key(
                                &Slot::aad(&header.vault_id, slot.id, slot.kind_code, &slot.params),
                                &slot.wrapped_vmk,
                            )
                            .is_some()
                })
            })
            .map(|(id, k)| (*id, k.duplicate()))
            .collect();
        if keks.is_empty() {
            return Err(Error::Reopen);
        }
        let ewks = KeyState::unwrap_ewks(&header, &vmk_keys)?;
        let next = KeyState {
            anchor: current.anchor.clone(),
            index: current.index.clone(),
            index_key,
            kdf_limit: current.kdf_limit,
            header,
            header_bytes: bytes,
            vmk,
            vmk_keys,
            keks,
            unlocked: current.unlocked,
            ewks,
        };
        drop(current);
        *self
            .state
            .write()
            .map_err(|_| Error::backend("vault state lock poisoned"))? = next;
        Ok(true)
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

    /// The storage's clock ([`Backend::now`]).
    pub(crate) fn now(&self) -> Result<std::time::SystemTime> {
        self.call(|b| b.now())
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
