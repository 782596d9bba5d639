//! The vault handle: creating and opening a vault, its namespaces, master-key rotation,
//! checkpoints and closing. Keyslot changes are in `keyslots`; the shared state in
//! `crate::engine`.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::backend::Backend;
use crate::crypto::{fill_random, Key, Prf};
use crate::engine::{
    backend_error, guarded, new_slot, unlock_slot, Engine, Generations, KeyState, NsState,
};
use crate::error::{Damage, Error, Result};
use crate::format::{NAMESPACE_ID_LABEL, NS_ID_LEN, VAULT_ID_LEN};
use crate::header::{open_ns, Header, SlotParams, VmkKeys};
use crate::keys::{KdfParams, KeySource, Material, SlotKind};
use crate::namespace::{validate_namespace, Namespace, WriteBatch};
use crate::options::{Durability, VaultOptions};

mod keyslots;
mod master_key;

/// An open vault: tokens and secrets for many namespaces, sealed on disk.
///
/// `Vault` is `Send + Sync` and cheap to clone (clones share one open vault); share it across
/// threads freely. Every mutating call returns only once its change is durable, unless the
/// vault was opened with [`Durability::Buffered`](crate::Durability::Buffered).
///
/// ```
/// use tokenvault::{KeySource, Token, Vault};
/// use tokenvault::secrecy::{ExposeSecret, SecretBox};
///
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("vault");
/// let key = KeySource::raw_key(SecretBox::new(Box::new([42u8; 32])));
/// let vault = Vault::create(&path, &key)?;
/// vault.namespace("tenant-42")?.put("api.example.org", &Token::new("at-1".into()))?;
/// vault.close()?;
///
/// let vault = Vault::open(&path, &key)?;
/// let token: Token = vault.namespace("tenant-42")?.get("api.example.org")?.unwrap();
/// assert_eq!(token.access_token().expose_secret(), "at-1");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Vault {
    pub(crate) engine: Arc<Engine>,
}

/// A keyslot as [`Vault::keyslots`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyslotInfo {
    /// The slot id, stable for the slot's life and never reused.
    pub id: u32,
    /// What kind of secret unlocks it.
    pub kind: SlotKind,
    /// Its Argon2 parameters, for a passphrase slot.
    pub kdf: Option<KdfParams>,
}

impl Vault {
    /// Creates a new vault in directory `path` (made with mode 0700 if missing), with one
    /// keyslot for `key` and the default options.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`] if a vault is there; [`Error::Locked`] if another process
    /// holds the directory; [`Error::KeySource`] if the key cannot be read; I/O errors as
    /// [`Error::Backend`].
    pub fn create(path: impl AsRef<Path>, key: &KeySource) -> Result<Self> {
        VaultOptions::new().create(path, key)
    }

    /// Opens the vault in directory `path` with the default options.
    ///
    /// # Errors
    /// [`Error::NotFound`] if there is no vault; [`Error::WrongKey`] if no keyslot accepts
    /// `key`; [`Error::Damaged`] if the header is damaged or was tampered with;
    /// [`Error::Locked`] if another process holds it past the lock timeout
    /// ([`DEFAULT_LOCK_TIMEOUT`](crate::backend::DEFAULT_LOCK_TIMEOUT); see [`VaultOptions::sled`]);
    /// [`Error::UnsupportedVersion`] if a newer tokenvault wrote it.
    pub fn open(path: impl AsRef<Path>, key: &KeySource) -> Result<Self> {
        VaultOptions::new().open(path, key)
    }

    /// Creates a vault on any [`Backend`], for example a [`MemoryBackend`](crate::backend::MemoryBackend).
    ///
    /// # Errors
    /// As [`Vault::create`].
    pub fn create_with_backend(backend: impl Backend, key: &KeySource) -> Result<Self> {
        VaultOptions::new().create_with_backend(backend, key)
    }

    /// Opens a vault on any [`Backend`].
    ///
    /// # Errors
    /// As [`Vault::open`].
    pub fn open_with_backend(backend: impl Backend, key: &KeySource) -> Result<Self> {
        VaultOptions::new().open_with_backend(backend, key)
    }

    /// A handle on the namespace `name`: any non-empty UTF-8 name of at most
    /// [`MAX_NAME_LEN`](crate::format::MAX_NAME_LEN) bytes, validated here once. The namespace is
    /// created (with its own random data key) by its first write; reading a namespace that
    /// does not exist finds nothing.
    ///
    /// # Errors
    /// [`Error::InvalidName`] for an empty or too long name.
    pub fn namespace(&self, name: &str) -> Result<Namespace> {
        validate_namespace(name)?;
        let id = self
            .engine
            .read_state()?
            .index
            .mac(&[NAMESPACE_ID_LABEL, name.as_bytes()]);
        Ok(Namespace::new(Arc::clone(&self.engine), name, id))
    }

    /// Starts a [`WriteBatch`]: writes to this vault's namespaces applied atomically, each
    /// with or without a condition on its record's version.
    pub fn batch(&self) -> WriteBatch {
        WriteBatch::new(Arc::clone(&self.engine))
    }

    /// The names of all namespaces, sorted. A namespace exists from its first write until
    /// [`Vault::remove_namespace`], even while it holds no records.
    ///
    /// # Errors
    /// [`Error::Closed`] after [`Vault::close`].
    pub fn namespaces(&self) -> Result<Vec<String>> {
        let state = self.engine.read_state()?;
        let mut names: Vec<String> = state.namespaces.values().map(|n| n.name.clone()).collect();
        names.sort_unstable();
        Ok(names)
    }

    /// The names of the namespaces that hold at least one record, sorted: what Globus's
    /// `iter_namespaces` lists. Records tokenvault keeps for itself (an authorizer's refresh
    /// lease) do not count. [`Vault::namespaces`] also lists namespaces whose records
    /// were all removed.
    ///
    /// ```
    /// # use tokenvault::{KeySource, Token, Vault};
    /// # use tokenvault::secrecy::SecretBox;
    /// # let dir = tempfile::tempdir()?;
    /// # let vault = Vault::create(dir.path().join("v"), &KeySource::raw_key(SecretBox::new(Box::new([1; 32]))))?;
    /// vault.namespace("alice")?.put("rs", &Token::new("at".into()))?;
    /// let bob = vault.namespace("bob")?;
    /// bob.put("rs", &Token::new("at".into()))?;
    /// bob.remove("rs")?;
    /// assert_eq!(vault.namespaces()?, ["alice", "bob"]);
    /// assert_eq!(vault.namespaces_with_records()?, ["alice"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Damaged`] if a namespace's manifest fails authentication.
    pub fn namespaces_with_records(&self) -> Result<Vec<String>> {
        let mut names = Vec::new();
        for name in self.namespaces()? {
            if self.namespace(&name)?.holds_records()? {
                names.push(name);
            }
        }
        Ok(names)
    }

    /// Removes a namespace and every record in it. Its data key is destroyed first (the
    /// header is rewritten without it), so whatever sled's log still holds of the records is
    /// undecryptable. Returns whether the namespace existed.
    ///
    /// # Errors
    /// Backend errors; [`Error::InvalidName`].
    pub fn remove_namespace(&self, name: &str) -> Result<bool> {
        let ns = self.namespace(name)?;
        let _maintenance = self.engine.lock_maintenance();
        let _guard = self.engine.lock_ns(&ns.id);
        if !self.engine.read_state()?.namespaces.contains_key(&ns.id) {
            return Ok(false);
        }
        let existed = self.engine.update_state(|s| Ok(s.drop_namespace(&ns.id)))?;
        self.engine.call(|b| b.drop_tree(&ns.id))?;
        self.engine.sync_now()?;
        Ok(existed)
    }

    /// Makes every change so far durable (useful with [`Durability::Buffered`](crate::Durability::Buffered)).
    ///
    /// # Errors
    /// Backend errors.
    pub fn flush(&self) -> Result<()> {
        self.engine.sync_now()
    }

    /// Flushes, [checkpoints](Self::checkpoint) and closes the vault, releasing the
    /// directory: when this returns, the vault can be opened again, by this process or
    /// another. Other clones of this handle get [`Error::Closed`] afterwards. Dropping the last
    /// clone closes too, but skips the checkpoint and cannot report errors.
    ///
    /// # Errors
    /// A failed final flush, checkpoint or release (the vault is closed in any case).
    pub fn close(self) -> Result<()> {
        let checkpointed = if self.engine.is_closed() {
            Ok(())
        } else {
            self.checkpoint()
        };
        let closed = self.engine.shutdown();
        checkpointed.and(closed)
    }

    /// Records each namespace's current write generation in the header (after a flush), so
    /// that storage rolled back behind it is detected: sled, finding a damaged entry in the
    /// middle of its log, silently opens at the state before it. Reads, writes and
    /// [`verify`](Self::verify) then report [`Error::Damaged`] for such a namespace instead of
    /// serving older data. [`close`](Self::close) checkpoints; a long-running service can call
    /// this periodically. Writes nothing when no namespace changed since the last checkpoint.
    ///
    /// # Errors
    /// A failed flush or header write.
    pub fn checkpoint(&self) -> Result<()> {
        let due: Vec<([u8; NS_ID_LEN], String, Arc<Generations>, u64)> = {
            let state = self.engine.read_state()?;
            state
                .namespaces
                .iter()
                .filter_map(|(id, ns)| {
                    let written = ns.gens.written.load(Ordering::SeqCst);
                    (written > ns.gens.checkpointed.load(Ordering::SeqCst))
                        .then(|| (*id, ns.name.clone(), Arc::clone(&ns.gens), written))
                })
                .collect()
        };
        if due.is_empty() {
            return Ok(());
        }
        // Each namespace written since the last checkpoint gets its manifest written again
        // with a generation above every one given out, which becomes its floor: storage
        // rolled back to any state before that write holds a lower one. A namespace that
        // fails (damaged, rolled back) keeps its floor; the others still get theirs, and the
        // first failure is reported at the end.
        let mut floors = Vec::with_capacity(due.len());
        let mut failed = None;
        for (id, name, gens, written) in due {
            match Namespace::new(Arc::clone(&self.engine), &name, id).raise_manifest(&gens) {
                Ok(Some(floor)) => floors.push((id, gens, floor, written)),
                Ok(None) => {}
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        if !floors.is_empty() {
            // Only durable manifests may become floors.
            self.engine.sync_now()?;
            self.engine.update_state(|s| {
                for (id, gens, floor, _) in &floors {
                    // The same namespace, not one removed and created again since.
                    let same = s
                        .namespaces
                        .get(id)
                        .is_some_and(|ns| Arc::ptr_eq(&ns.gens, gens));
                    if let (true, Some(mut keys)) = (same, s.namespace_keys(id)) {
                        if *floor > keys.floor {
                            keys.floor = *floor;
                            s.set_namespace(*id, keys)?;
                        }
                    }
                }
                Ok(())
            })?;
            for (_, gens, _, written) in floors {
                gens.checkpointed.fetch_max(written, Ordering::SeqCst);
            }
        }
        failed.map_or(Ok(()), Err)
    }

    /// The vault directory, for a vault on disk.
    pub fn path(&self) -> Option<&Path> {
        self.engine.path()
    }

    /// How durable this handle's writes are when they return (from its
    /// [`VaultOptions::durability`]).
    ///
    /// ```
    /// # use tokenvault::{Durability, KeySource, Vault};
    /// # use tokenvault::secrecy::SecretBox;
    /// # let dir = tempfile::tempdir()?;
    /// let vault = Vault::create(dir.path().join("v"), &KeySource::raw_key(SecretBox::new(Box::new([1; 32]))))?;
    /// assert_eq!(vault.durability(), Durability::Durable);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn durability(&self) -> Durability {
        self.engine.options.durability
    }

    /// The on-disk format version of this vault (`docs/format.md`), for diagnostics such as
    /// `tokenvault info`. A vault opens only at a format version this library reads, so an
    /// open vault is always at the version this library writes.
    ///
    /// ```
    /// # use tokenvault::{KeySource, Vault};
    /// # use tokenvault::secrecy::SecretBox;
    /// # let dir = tempfile::tempdir()?;
    /// let vault = Vault::create(dir.path().join("v"), &KeySource::raw_key(SecretBox::new(Box::new([1; 32]))))?;
    /// assert_eq!(vault.format_version(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn format_version(&self) -> u16 {
        u16::from(crate::format::FORMAT_VERSION)
    }

    /// The header's sequence number: incremented by exactly one on every header change.
    ///
    /// # Errors
    /// [`Error::Closed`] after [`Vault::close`].
    pub fn header_seqid(&self) -> Result<u64> {
        Ok(self.engine.read_state()?.header.seqid)
    }
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vault")
            .field("path", &self.engine.path())
            .field("options", &self.engine.options)
            .finish_non_exhaustive()
    }
}

impl VaultOptions {
    /// Creates a vault in directory `path`; see [`Vault::create`].
    ///
    /// # Errors
    /// As [`Vault::create`].
    pub fn create(self, path: impl AsRef<Path>, key: &KeySource) -> Result<Vault> {
        let path = path.as_ref();
        // Resolve the key first: a bad key source must not leave a half-made vault behind.
        let material = key.material()?;
        let backend = self
            .sled
            .create(path)
            .map_err(|e| backend_error(e, Some(path)))?;
        if guarded(&backend, |b| b.read_header())?.is_some() {
            return Err(Error::AlreadyExists {
                path: Some(path.to_path_buf()),
            });
        }
        self.create_inner(Box::new(backend), key, material, Some(path.to_path_buf()))
    }

    /// Opens the vault in directory `path`; see [`Vault::open`].
    ///
    /// # Errors
    /// As [`Vault::open`].
    pub fn open(self, path: impl AsRef<Path>, key: &KeySource) -> Result<Vault> {
        let path = path.as_ref();
        if !path.join(crate::backend::HEADER_FILE).is_file() {
            return Err(Error::NotFound {
                path: Some(path.to_path_buf()),
            });
        }
        let backend = self
            .sled
            .open(path)
            .map_err(|e| backend_error(e, Some(path)))?;
        self.open_inner(Box::new(backend), key, Some(path.to_path_buf()))
    }

    /// Creates a vault on any [`Backend`].
    ///
    /// # Errors
    /// As [`Vault::create`].
    pub fn create_with_backend(self, backend: impl Backend, key: &KeySource) -> Result<Vault> {
        let material = key.material()?;
        if guarded(&backend, |b| b.read_header())?.is_some() {
            return Err(Error::AlreadyExists { path: None });
        }
        self.create_inner(Box::new(backend), key, material, None)
    }

    /// Opens a vault on any [`Backend`].
    ///
    /// # Errors
    /// As [`Vault::open`].
    pub fn open_with_backend(self, backend: impl Backend, key: &KeySource) -> Result<Vault> {
        self.open_inner(Box::new(backend), key, None)
    }

    fn create_inner(
        self,
        backend: Box<dyn Backend>,
        key: &KeySource,
        material: Material<'_>,
        path: Option<PathBuf>,
    ) -> Result<Vault> {
        // A create writes nothing before its header: records without a header are a vault
        // whose header file was lost (or another program's data). Never remove them.
        for tree in guarded(backend.as_ref(), |b| b.trees())? {
            if !guarded(backend.as_ref(), |b| b.scan(&tree, None, 1))?.is_empty() {
                return Err(Error::NotEmpty {
                    path: path.clone(),
                    reason: "its storage holds records but no vault header; restore the \
                             header file from a backup to open them"
                        .into(),
                });
            }
        }
        drop(material);
        let mut vault_id = [0u8; VAULT_ID_LEN];
        fill_random(&mut vault_id)?;
        let vmk = Key::random()?;
        let index_key = Key::random()?;
        let (slot, kek) = new_slot(&vault_id, 0, key, &self.kdf, &self.kdf_limit, &vmk)?;
        let vmk_keys = VmkKeys::new(&vmk, &vault_id)?;
        let mut header = Header {
            vault_id,
            seqid: 1,
            next_slot_id: 1,
            slots: vec![slot],
            wrapped_index_key: [0u8; crate::crypto::WRAPPED_KEY_LEN],
            namespaces: Vec::new(),
        };
        header.wrapped_index_key = vmk_keys
            .wrap
            .wrap_key(&header.index_key_aad(), &index_key)?;
        let bytes = header.encode(&vmk_keys)?;
        let written = guarded(backend.as_ref(), |b| {
            b.flush()?;
            b.write_header(None, &bytes)
        })?;
        if !written {
            // Another handle created a vault here meanwhile.
            return Err(Error::AlreadyExists { path });
        }
        let state = KeyState {
            header,
            header_bytes: bytes,
            vmk,
            vmk_keys,
            index: Prf::new(&index_key)?,
            index_key,
            keks: HashMap::from([(0, kek)]),
            kdf_limit: self.kdf_limit,
            namespaces: HashMap::new(),
        };
        Ok(Vault {
            engine: Arc::new(Engine::new(backend, state, self, path)),
        })
    }

    fn open_inner(
        self,
        backend: Box<dyn Backend>,
        key: &KeySource,
        path: Option<PathBuf>,
    ) -> Result<Vault> {
        let bytes = guarded(backend.as_ref(), |b| b.read_header())?
            .ok_or_else(|| Error::NotFound { path: path.clone() })?;
        let header = Header::parse(&bytes)?;
        let (slot_id, kek, vmk) = unlock_slot(&header, key, self.slot, &self.kdf_limit)?;
        let vmk_keys = VmkKeys::new(&vmk, &header.vault_id)?;
        Header::verify_mac(&bytes, &vmk_keys)?;
        let index_key = vmk_keys
            .wrap
            .unwrap_key(&header.index_key_aad(), &header.wrapped_index_key)
            .ok_or_else(|| Error::header("the name-index key does not unwrap"))?;
        let index = Prf::new(&index_key)?;
        let mut namespaces = HashMap::with_capacity(header.namespaces.len());
        for entry in &header.namespaces {
            let keys = open_ns(&vmk_keys.wrap, &header.vault_id, entry)
                .map_err(|reason| Error::Damaged(Damage::Header { reason }))?;
            if validate_namespace(&keys.name).is_err() {
                return Err(Error::header("a namespace entry holds an invalid name"));
            }
            if index.mac(&[NAMESPACE_ID_LABEL, keys.name.as_bytes()]) != entry.id {
                return Err(Error::header(
                    "a namespace entry is filed under another name's id",
                ));
            }
            namespaces.insert(entry.id, Arc::new(NsState::new(keys)));
        }
        let state = KeyState {
            header,
            header_bytes: bytes,
            vmk,
            vmk_keys,
            index,
            index_key,
            keks: HashMap::from([(slot_id, kek)]),
            kdf_limit: self.kdf_limit,
            namespaces,
        };
        let upgrade = self.upgrade_weak_slots;
        let policy = self.kdf;
        let vault = Vault {
            engine: Arc::new(Engine::new(backend, state, self, path)),
        };
        if upgrade {
            vault.upgrade_slot(slot_id, key, &policy)?;
        }
        vault.resume_rotations();
        Ok(vault)
    }
}

impl Vault {
    fn upgrade_slot(&self, id: u32, key: &KeySource, policy: &KdfParams) -> Result<()> {
        let weak = {
            let state = self.engine.read_state()?;
            state.header.slots.iter().any(|slot| {
                slot.id == id
                    && matches!(
                        slot.parse_params(),
                        Ok(SlotParams::Passphrase { kdf, .. }) if kdf.weaker_than(policy)
                    )
            })
        };
        if !weak {
            return Ok(());
        }
        self.engine.update_state(|s| {
            let (slot, kek) = s.new_slot(id, key, policy)?;
            if let Some(existing) = s.header.slots.iter_mut().find(|slot| slot.id == id) {
                *existing = slot;
            }
            s.keks.insert(id, kek);
            Ok(())
        })
    }
}

impl Namespace {
    /// The vault this namespace belongs to (a handle on the same open vault).
    ///
    /// ```
    /// # use tokenvault::{KeySource, Vault};
    /// # use tokenvault::secrecy::SecretBox;
    /// # let dir = tempfile::tempdir()?;
    /// let vault = Vault::create(dir.path().join("v"), &KeySource::raw_key(SecretBox::new(Box::new([1; 32]))))?;
    /// let ns = vault.namespace("tenant-42")?;
    /// assert_eq!(ns.vault().path(), vault.path());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn vault(&self) -> Vault {
        Vault {
            engine: Arc::clone(self.engine()),
        }
    }
}
