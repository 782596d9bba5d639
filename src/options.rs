//! How to create or open a vault: [`VaultOptions`] and [`Durability`].

use crate::backend::SledOptions;
use crate::keys::KdfParams;

/// How durable a mutating call is when it returns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Durability {
    /// Every mutating call returns only after its change is on stable storage (sled flush
    /// plus `fdatasync`). Concurrent writers share one flush. The default.
    #[default]
    Durable,
    /// Mutating calls return once the change is applied in memory; it reaches disk within
    /// about half a second, on [`Vault::flush`](crate::Vault::flush), or on [`Vault::close`](crate::Vault::close). A crash or power loss
    /// can lose the last writes (never half of one). Header changes (keyslots, master-key
    /// rotation, shred, checkpoints), namespace removals and namespace-key rotations stay
    /// durable; a namespace's creation is part of its first write and is buffered with it.
    Buffered,
}

/// How to create or open a vault: Argon2 policy, durability, keyslot choice, and the
/// [`SledOptions`] of the directory that [`create`](Self::create) and [`open`](Self::open)
/// use.
///
/// ```
/// use std::time::Duration;
/// use tokenvault::{Durability, KdfParams, VaultOptions};
/// use tokenvault::backend::SledOptions;
///
/// let options = VaultOptions::new()
///     .kdf(KdfParams::STRONG)
///     .sled(SledOptions::new().lock_timeout(Duration::from_secs(10)))
///     .durability(Durability::Durable);
/// # let _ = options;
/// ```
#[derive(Clone, Debug)]
pub struct VaultOptions {
    pub(crate) kdf: KdfParams,
    pub(crate) durability: Durability,
    pub(crate) slot: Option<u32>,
    pub(crate) upgrade_weak_slots: bool,
    pub(crate) sled: SledOptions,
    pub(crate) kdf_limit: KdfParams,
    pub(crate) entry_cache: usize,
    pub(crate) upgrade: bool,
    pub(crate) accept_rollback: bool,
}

/// How many namespace entries an open vault keeps in memory by default.
pub(crate) const DEFAULT_ENTRY_CACHE: usize = 4096;

impl Default for VaultOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl VaultOptions {
    /// The defaults: [`KdfParams::RFC9106_SECOND`], [`Durability::Durable`], any keyslot,
    /// no automatic KDF upgrade, the default [`SledOptions`] (a 2-second lock timeout).
    pub fn new() -> Self {
        Self {
            kdf: KdfParams::default(),
            durability: Durability::Durable,
            slot: None,
            upgrade_weak_slots: false,
            sled: SledOptions::new(),
            kdf_limit: KdfParams::DEFAULT_LIMIT,
            entry_cache: DEFAULT_ENTRY_CACHE,
            upgrade: true,
            accept_rollback: false,
        }
    }

    /// The Argon2 parameters for passphrase keyslots this handle creates (at create, on
    /// [`Vault::add_keyslot`](crate::Vault::add_keyslot) and [`Vault::change_passphrase`](crate::Vault::change_passphrase)).
    #[must_use]
    pub fn kdf(mut self, kdf: KdfParams) -> Self {
        self.kdf = kdf;
        self
    }

    /// When mutating calls return; see [`Durability`].
    #[must_use]
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// The options of the [`SledBackend`](crate::backend::SledBackend) that [`create`](Self::create)
    /// and [`open`](Self::open) build in the vault directory: its page cache and lock
    /// timeout (default [`SledOptions::new`]). A backend given to
    /// [`create_with_backend`](Self::create_with_backend) or
    /// [`open_with_backend`](Self::open_with_backend) comes with its own options.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tokenvault::VaultOptions;
    /// use tokenvault::backend::SledOptions;
    ///
    /// let options = VaultOptions::new().sled(
    ///     SledOptions::new()
    ///         .cache_capacity(512 * 1024 * 1024)
    ///         .lock_timeout(Duration::from_secs(10)),
    /// );
    /// # let _ = options;
    /// ```
    #[must_use]
    pub fn sled(mut self, options: SledOptions) -> Self {
        self.sled = options;
        self
    }

    /// The costliest Argon2 derivation this handle runs (default
    /// [`KdfParams::DEFAULT_LIMIT`]: m ≤ 2 GiB, p ≤ 16, m × t ≤ 2 GiB × 4). A passphrase
    /// keyslot whose stored parameters ask for more memory, more lanes or more work
    /// (memory × passes) than `limit` is not derived: it is skipped
    /// at open (another slot may still open the vault), and [`Error::KdfLimit`](crate::Error::KdfLimit) is returned
    /// if no slot opened it; a new slot above the limit is refused with the same error.
    ///
    /// The parameters come from the header file, which an attacker who can write it
    /// chooses: without a limit below what the machine has, a header asking for 4 GiB gets
    /// the process killed on a system that overcommits memory instead of an error.
    ///
    /// ```
    /// use tokenvault::{KdfParams, VaultOptions};
    ///
    /// // A small container: at most 256 MiB, and the work of 256 MiB with t = 4.
    /// let options = VaultOptions::new().kdf_limit(KdfParams::new(256 * 1024, 4, 4)?);
    /// # let _ = options;
    /// # Ok::<(), tokenvault::Error>(())
    /// ```
    #[must_use]
    pub fn kdf_limit(mut self, limit: KdfParams) -> Self {
        self.kdf_limit = limit;
        self
    }

    /// Try only keyslot `id` at open: exactly one key derivation, wrong key or not.
    #[must_use]
    pub fn slot(mut self, id: u32) -> Self {
        self.slot = Some(id);
        self
    }

    /// At open, if the passphrase slot used is weaker than [`VaultOptions::kdf`], re-wrap it
    /// with those parameters and a new salt (one more derivation, one header write).
    #[must_use]
    pub fn upgrade_weak_slots(mut self, upgrade: bool) -> Self {
        self.upgrade_weak_slots = upgrade;
        self
    }

    /// How many namespaces' unwrapped entries (their data keys) the open vault keeps in
    /// memory (default 4,096, at least 1). The least recently used are
    /// dropped (and wiped) beyond it and read again from storage when next used, so the
    /// memory of an open vault does not grow with the number of namespaces.
    ///
    /// ```
    /// use tokenvault::VaultOptions;
    ///
    /// let options = VaultOptions::new().entry_cache(100_000);
    /// # let _ = options;
    /// ```
    #[must_use]
    pub fn entry_cache(mut self, entries: usize) -> Self {
        self.entry_cache = entries.max(1);
        self
    }

    /// Whether opening a vault of format version 1 upgrades it to the current format
    /// (default `true`; `docs/format.md`, "Upgrading from format 1"). The upgrade re-seals
    /// every record and resumes where it stopped if interrupted; the vault keeps its keys,
    /// keyslots and names. With `false`, opening a version-1 vault fails with
    /// [`Error::UpgradeRequired`](crate::Error::UpgradeRequired) and changes nothing.
    ///
    /// ```
    /// use tokenvault::VaultOptions;
    ///
    /// let options = VaultOptions::new().upgrade(false);
    /// # let _ = options;
    /// ```
    #[must_use]
    pub fn upgrade(mut self, upgrade: bool) -> Self {
        self.upgrade = upgrade;
        self
    }

    /// Open a vault whose storage holds an older state than its last checkpoint
    /// ([`Damage::Rollback`](crate::Damage::Rollback)) instead of refusing it, to run
    /// [`Vault::verify`](crate::Vault::verify) and export what is left (default `false`).
    /// Records written before the checkpoint may be missing or hold older values; the next
    /// checkpoint accepts the storage as it is.
    ///
    /// ```
    /// use tokenvault::VaultOptions;
    ///
    /// let options = VaultOptions::new().accept_rollback(true);
    /// # let _ = options;
    /// ```
    #[must_use]
    pub fn accept_rollback(mut self, accept: bool) -> Self {
        self.accept_rollback = accept;
        self
    }
}
