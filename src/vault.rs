//! The vault handle: creating and opening a vault, its namespaces, master-key rotation,
//! checkpoints and closing. Keyslot changes are in `keyslots`; the shared state in
//! `crate::engine`.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::backend::{Backend, Batch};
use crate::crypto::{fill_random, Key, Prf};
use crate::engine::{
    anchor_prf, backend_error, guarded, marker, new_slot, seal_anchor, unlock_slot, Engine, Ewk,
    KeyState,
};
use crate::entry::entry_clear;
use crate::error::{Error, Result};
use crate::format::{
    ANCHOR_KEY, ENTRIES_TREE, FORMAT_V1, FORMAT_VERSION, MANIFESTS_TREE, NAMESPACE_ID_LABEL,
    RECORDS_TREE, VAULT_ID_LEN,
};
use crate::header::{Header, SlotParams, VmkKeys};
use crate::keys::{KdfParams, KeySource, Material, SlotKind};
use crate::namespace::{validate_namespace, Namespace, WriteBatch};
use crate::options::{Durability, VaultOptions};

mod keyslots;
mod listing;
mod master_key;
mod shred;

pub use self::listing::{NamespaceCursor, NamespacePage};

/// Records removed per batch when a namespace's storage is cleared.
const SWEEP_PAGE: usize = 256;

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
    /// The OS keyring entry that holds its key, for a keyring slot.
    pub keyring_entry: Option<KeyringEntry>,
}

/// The keyring entry of a keyring keyslot, as [`KeyslotInfo`](crate::KeyslotInfo) reports
/// it: what to look for in the platform's keyring tool (`secret-tool search service
/// tokenvault`, Keychain Access, Credential Manager). Names only, never the secret.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct KeyringEntry {
    /// The service name: `tokenvault`.
    pub service: String,
    /// The account (user) name: `vault-<vault id in hex>-<8 hex digits>`.
    pub account: String,
}

impl fmt::Display for KeyringEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.account, self.service)
    }
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

    /// Removes a namespace and every record in it. Its entry (with its data keys) and its
    /// manifest go first, in one batch: from then on a write of any handle to the namespace
    /// creates a new incarnation of it (an overwrite that was already under way may still
    /// land in the old one, and is removed with it). Then its records are removed page by
    /// page. Returns whether the namespace existed.
    ///
    /// The entry's bytes may live on in the storage engine's log (and in a database's WAL
    /// and backups) until [`shred`](Self::shred) replaces the key they are sealed under: run
    /// it after removals that must be unrecoverable.
    ///
    /// # Errors
    /// Backend errors; [`Error::InvalidName`]. A failure after the first batch leaves records
    /// that no entry names: [`verify`](Self::verify) counts them and
    /// [`purge_orphans`](Self::purge_orphans) removes them.
    pub fn remove_namespace(&self, name: &str) -> Result<bool> {
        let ns = self.namespace(name)?;
        let _maintenance = self.engine.lock_maintenance();
        let _guard = self.engine.lock_ns(&ns.id);
        for _ in 0..64 {
            // Read as stored, not opened: a namespace whose entry is damaged can be removed
            // too (its incarnation, in the clear, locates its records).
            let Some(stored) = self.engine.call(|b| b.get(ENTRIES_TREE, &ns.id))? else {
                self.engine.forget(&ns.id);
                return Ok(false);
            };
            let prefix = entry_clear(&stored).ok().map(|(_, incarnation)| {
                let mut prefix = ns.id.to_vec();
                prefix.extend_from_slice(&incarnation);
                prefix
            });
            let mut batch = Batch::new()
                .expect(ENTRIES_TREE, &ns.id, Some(&stored))
                .write(ENTRIES_TREE, &ns.id, None);
            if let Some(prefix) = &prefix {
                let manifest = self.engine.call(|b| b.get(MANIFESTS_TREE, prefix))?;
                batch = batch
                    .expect(MANIFESTS_TREE, prefix, manifest.as_deref())
                    .write(MANIFESTS_TREE, prefix, None);
            }
            if self.engine.call(|b| b.apply(&batch))? {
                self.engine.forget(&ns.id);
                self.engine.note_write();
                if let Some(prefix) = &prefix {
                    self.sweep(prefix)?;
                }
                self.engine.sync_now()?;
                return Ok(true);
            }
        }
        Err(Error::backend(
            "the namespace kept changing under its removal; retry it",
        ))
    }

    /// Removes every record stored under `prefix` (a namespace incarnation no entry names).
    pub(crate) fn sweep(&self, prefix: &[u8]) -> Result<u64> {
        let mut removed = 0;
        loop {
            let page = self
                .engine
                .call(|b| b.scan(RECORDS_TREE, prefix, None, SWEEP_PAGE))?;
            if page.is_empty() {
                return Ok(removed);
            }
            let mut batch = Batch::new();
            for (key, _) in &page {
                batch = batch.write(RECORDS_TREE, key, None);
            }
            self.engine.call(|b| b.apply(&batch))?;
            removed += page.len() as u64;
        }
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

    /// Makes every write so far durable, then records that point in storage (the anchor)
    /// and in the header (the epoch), so that storage rolled back behind it is detected:
    /// sled, finding a damaged entry in the middle of its log, silently opens at the state
    /// before it. Opening such a vault then fails with
    /// [`Damage::Rollback`](crate::Damage::Rollback) instead of serving older data.
    /// [`close`](Self::close) checkpoints; a long-running service can call this periodically.
    /// Writes nothing when this handle wrote nothing since its last checkpoint.
    ///
    /// # Errors
    /// A failed flush, anchor write or header write.
    pub fn checkpoint(&self) -> Result<()> {
        self.engine.checkpoint()
    }

    /// The time by the storage's clock ([`Backend::now`]): this machine's for a vault on
    /// disk, the server's for storage that several machines share. Authorizers time leases
    /// and expiries by it unless given another [`Clock`](crate::oauth::Clock).
    ///
    /// ```
    /// # use tokenvault::{KeySource, Vault};
    /// # use tokenvault::secrecy::SecretBox;
    /// # let dir = tempfile::tempdir()?;
    /// let vault = Vault::create(dir.path().join("v"), &KeySource::raw_key(SecretBox::new(Box::new([1; 32]))))?;
    /// let before = std::time::SystemTime::now();
    /// assert!(vault.storage_time()? >= before);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Closed`]; the backend's errors.
    pub fn storage_time(&self) -> Result<std::time::SystemTime> {
        self.engine.now()
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
    /// `tokenvault info`. An open vault is always at the version this library writes: a
    /// vault of an older version is upgraded when it opens ([`VaultOptions::upgrade`]).
    ///
    /// ```
    /// # use tokenvault::{KeySource, Vault};
    /// # use tokenvault::secrecy::SecretBox;
    /// # let dir = tempfile::tempdir()?;
    /// let vault = Vault::create(dir.path().join("v"), &KeySource::raw_key(SecretBox::new(Box::new([1; 32]))))?;
    /// assert_eq!(vault.format_version(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn format_version(&self) -> u16 {
        u16::from(FORMAT_VERSION)
    }

    /// How many namespace entries this handle holds in memory (bounded by
    /// [`VaultOptions::entry_cache`]).
    ///
    /// ```
    /// # use tokenvault::{KeySource, Token, Vault, VaultOptions};
    /// # use tokenvault::backend::MemoryBackend;
    /// # use tokenvault::secrecy::SecretBox;
    /// let key = KeySource::raw_key(SecretBox::new(Box::new([1; 32])));
    /// let vault = VaultOptions::new()
    ///     .entry_cache(8)
    ///     .create_with_backend(MemoryBackend::new(), &key)?;
    /// for i in 0..100 {
    ///     vault.namespace(&format!("tenant-{i}"))?.put("api", &Token::new("at".into()))?;
    /// }
    /// assert!(vault.cached_namespaces() <= 8);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn cached_namespaces(&self) -> usize {
        self.engine.cached_entries()
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
            if !guarded(backend.as_ref(), |b| b.scan(&tree, &[], None, 1))?.is_empty() {
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
        // A keyring source writes its entry here; `settle` keeps it once the header is
        // written, and deletes it on every way out before that.
        let settle = SettleOnDrop(key, vault_id);
        let (slot, kek) = new_slot(&vault_id, 0, key, &self.kdf, &self.kdf_limit, &vmk)?;
        let vmk_keys = VmkKeys::new(&vmk, &vault_id)?;
        let mut header = Header {
            version: FORMAT_VERSION,
            vault_id,
            seqid: 1,
            next_slot_id: 1,
            slots: vec![slot],
            wrapped_index_key: [0u8; crate::crypto::WRAPPED_KEY_LEN],
            namespaces: Vec::new(),
            epoch: 0,
            active_ewk: 1,
            ewks: Vec::new(),
        };
        header.wrapped_index_key = vmk_keys
            .wrap
            .wrap_key(&header.index_key_aad(), &index_key)?;
        let ewk = Ewk::new(1, Key::random()?, &vault_id)?;
        let mut state = KeyState {
            anchor: anchor_prf(&index_key, &vault_id)?,
            header,
            header_bytes: Vec::new(),
            vmk,
            vmk_keys,
            index: Prf::new(&index_key)?,
            index_key,
            keks: HashMap::from([(0, kek)]),
            unlocked: 0,
            kdf_limit: self.kdf_limit,
            ewks: vec![ewk],
        };
        state.wrap_ewks()?;
        let bytes = state.header.encode(&state.vmk_keys)?;
        let written = guarded(backend.as_ref(), |b| {
            b.flush()?;
            b.write_header(None, &bytes)
        })?;
        if !written {
            // Another handle created a vault here meanwhile.
            return Err(Error::AlreadyExists { path });
        }
        state.header_bytes = bytes;
        settle.keep(&state.header);
        let vault = Vault {
            engine: Arc::new(Engine::new(backend, state, self, path)),
        };
        // The entry-key marker and the anchor follow the header: a creation interrupted
        // before them is completed at open.
        vault.complete_storage()?;
        vault.engine.sync_now()?;
        Ok(vault)
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
        if header.version == FORMAT_V1 {
            if !self.upgrade {
                return Err(Error::UpgradeRequired {
                    found: u16::from(FORMAT_V1),
                });
            }
            let (header, bytes) = crate::upgrade::upgrade(
                backend.as_ref(),
                header,
                &bytes,
                &vmk,
                &vmk_keys,
                &index_key,
            )?;
            return self.open_unlocked(backend, key, path, header, bytes, (slot_id, kek, vmk));
        }
        self.open_unlocked(backend, key, path, header, bytes, (slot_id, kek, vmk))
    }

    /// Opens a format-2 vault whose master key `unlocked` holds.
    fn open_unlocked(
        self,
        backend: Box<dyn Backend>,
        key: &KeySource,
        path: Option<PathBuf>,
        header: Header,
        bytes: Vec<u8>,
        unlocked: (u32, Key, Key),
    ) -> Result<Vault> {
        let (slot_id, kek, vmk) = unlocked;
        let vmk_keys = VmkKeys::new(&vmk, &header.vault_id)?;
        let index_key = vmk_keys
            .wrap
            .unwrap_key(&header.index_key_aad(), &header.wrapped_index_key)
            .ok_or_else(|| Error::header("the name-index key does not unwrap"))?;
        let ewks = KeyState::unwrap_ewks(&header, &vmk_keys)?;
        let state = KeyState {
            anchor: anchor_prf(&index_key, &header.vault_id)?,
            header,
            header_bytes: bytes,
            vmk,
            vmk_keys,
            index: Prf::new(&index_key)?,
            index_key,
            keks: HashMap::from([(slot_id, kek)]),
            unlocked: slot_id,
            kdf_limit: self.kdf_limit,
            ewks,
        };
        let upgrade = self.upgrade_weak_slots;
        let policy = self.kdf;
        let vault = Vault {
            engine: Arc::new(Engine::new(backend, state, self, path)),
        };
        vault.engine.check_anchor()?;
        vault.complete_storage()?;
        if upgrade {
            vault.upgrade_slot(slot_id, key, &policy)?;
        }
        vault.resume_rotations()?;
        Ok(vault)
    }
}

impl Vault {
    /// Writes the entry-key marker and the anchor if they are missing (a creation
    /// interrupted after its header), and sets the marker to the header's active entry key
    /// if a shred was interrupted between its header write and its marker write.
    fn complete_storage(&self) -> Result<()> {
        let (active, prf, vault_id) = {
            let s = self.engine.read_state()?;
            (s.header.active_ewk, s.anchor.clone(), s.header.vault_id)
        };
        let want = marker(active);
        let current = self.engine.call(|b| b.get(ENTRIES_TREE, ANCHOR_KEY))?;
        if current.as_deref() != Some(want.as_slice()) {
            let batch = Batch::new()
                .expect(ENTRIES_TREE, ANCHOR_KEY, current.as_deref())
                .write(ENTRIES_TREE, ANCHOR_KEY, Some(want));
            self.engine.call(|b| b.apply(&batch))?;
        }
        if self
            .engine
            .call(|b| b.get(MANIFESTS_TREE, ANCHOR_KEY))?
            .is_none()
        {
            let batch = Batch::new().expect(MANIFESTS_TREE, ANCHOR_KEY, None).write(
                MANIFESTS_TREE,
                ANCHOR_KEY,
                Some(seal_anchor(&prf, &vault_id, 0)),
            );
            self.engine.call(|b| b.apply(&batch))?;
        }
        Ok(())
    }
}

/// Settles a keyring source's new entries when a creation ends: kept if the header was
/// written ([`keep`](Self::keep)), deleted if not (on drop).
#[cfg_attr(not(feature = "keyring"), allow(dead_code))]
struct SettleOnDrop<'a>(&'a KeySource, [u8; VAULT_ID_LEN]);

impl SettleOnDrop<'_> {
    fn keep(self, header: &Header) {
        #[cfg(feature = "keyring")]
        if let Some(keyring) = self.0.as_keyring() {
            keyring.settle(&self.1, &keyslots::keyring_accounts(header));
        }
        #[cfg(not(feature = "keyring"))]
        let _ = header;
    }
}

impl Drop for SettleOnDrop<'_> {
    fn drop(&mut self) {
        #[cfg(feature = "keyring")]
        if let Some(keyring) = self.0.as_keyring() {
            keyring.settle(&self.1, &[]);
        }
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
