//! OS keyring keyslots (feature `keyring`): a random 32-byte slot key kept in the platform's
//! credential store, unlocking a keyslot of its own (`docs/format.md`, section 4.2.2).
//!
//! The vault's own keys never go into the keyring: only the slot key does, under the service
//! `tokenvault` and an account naming the vault (`vault-<vault id in hex>-<8 hex digits>`),
//! so that a user recognises the entry and a second keyring slot of the same vault gets an
//! entry of its own. Every call to the keyring runs on a thread of its own and is abandoned
//! after [`Keyring::timeout`], so a keyring that hangs (a prompt nobody answers, a daemon
//! that does not reply) gives [`KeyringFailure::Timeout`], never a hang.

mod call;
mod platform;

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keyring_core::{CredentialStore, Entry};
use zeroize::{Zeroize, Zeroizing};

use crate::crypto::{fill_random, Key, KEY_LEN};
use crate::error::{Error, KeyringFailure, Result};
use crate::vault::KeyringEntry;

/// The OS keyring: where keyring keyslots keep their slot keys.
///
/// [`Keyring::platform`] is this platform's own store, built when first used: the Secret
/// Service over the D-Bus session bus on Linux and FreeBSD (gnome-keyring, KWallet; tested),
/// the login keychain on macOS and the Credential Manager on Windows (built only on those
/// platforms and untested by this project). [`Keyring::with_store`] takes any
/// [`keyring_core`](https://docs.rs/keyring-core) store the caller built. tokenvault never
/// uses or sets keyring-core's process-wide default store.
///
/// ```no_run
/// use tokenvault::{KeySource, Keyring, Vault};
/// use tokenvault::secrecy::SecretString;
///
/// # let path = std::path::Path::new("/tmp/vault");
/// let vault = Vault::open(path, &KeySource::passphrase(SecretString::from("...")))?;
/// let keyring = Keyring::platform();
/// let slot = vault.add_keyslot(&KeySource::keyring(&keyring))?; // writes the keyring entry
/// vault.close()?;
///
/// // From now on this user's session opens the vault without a prompt:
/// let vault = Vault::open(path, &KeySource::keyring(&keyring))?;
/// assert_eq!(vault.unlocked_keyslot()?, slot);
/// # Ok::<(), tokenvault::Error>(())
/// ```
///
/// Failures are [`Error::Keyring`] with a [`KeyringFailure`]: no keyring, a locked one, a
/// prompt the platform wants to show (refused, never waited for), a missing entry, an entry
/// that does not open its slot, no answer in time. None of them is [`Error::WrongKey`], and
/// none makes the vault try another key source.
#[derive(Clone)]
pub struct Keyring {
    inner: Arc<Inner>,
    timeout: Duration,
}

struct Inner {
    store: Source,
    /// Accounts of entries this source wrote for keyslots that no header holds yet: kept
    /// when the header that names them is written, deleted otherwise.
    written: Mutex<Vec<String>>,
}

enum Source {
    /// The caller's store.
    Given(Arc<CredentialStore>),
    /// This platform's store, connected on first use (in a bounded call).
    Platform(Mutex<Option<Arc<CredentialStore>>>),
}

impl Keyring {
    /// The service name of every entry tokenvault writes.
    pub const SERVICE: &'static str = "tokenvault";
    /// How long one keyring call may take before it is abandoned
    /// ([`KeyringFailure::Timeout`]).
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

    /// This platform's keyring: the Secret Service on Linux and FreeBSD, the login keychain
    /// on macOS, the Credential Manager on Windows. Nothing is contacted until the keyring
    /// is used; on any other platform every use fails with
    /// [`KeyringFailure::Unavailable`].
    ///
    /// On the Secret Service, tokenvault first asks (without prompting) whether the default
    /// collection is locked and refuses with [`KeyringFailure::Locked`] if it is; it never
    /// triggers an unlock prompt.
    ///
    /// ```
    /// use tokenvault::{KeySource, Keyring, SlotKind};
    ///
    /// let source = KeySource::keyring(&Keyring::platform());
    /// assert_eq!(source.kind(), SlotKind::Keyring);
    /// ```
    pub fn platform() -> Self {
        Self::new(Source::Platform(Mutex::new(None)))
    }

    /// A keyring on the caller's own `keyring-core` store (for example one built with
    /// options of its own, or another platform store crate). tokenvault calls it with the
    /// same time limit, but cannot check a lock before calling: whether such a store
    /// prompts is up to it.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tokenvault::Keyring;
    ///
    /// // keyring-core's own in-memory store, for illustration (not persistent):
    /// use tokenvault::keyring_core::{mock, CredentialStore};
    /// let store: Arc<CredentialStore> = mock::Store::new()?;
    /// let keyring = Keyring::with_store(store);
    /// # let _ = keyring;
    /// # Ok::<(), tokenvault::keyring_core::Error>(())
    /// ```
    pub fn with_store(store: Arc<CredentialStore>) -> Self {
        Self::new(Source::Given(store))
    }

    fn new(store: Source) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                written: Mutex::new(Vec::new()),
            }),
            timeout: Self::DEFAULT_TIMEOUT,
        }
    }

    /// The same keyring with another time limit per call (at least 1 ms).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tokenvault::Keyring;
    ///
    /// let keyring = Keyring::platform().timeout(Duration::from_secs(2));
    /// assert_eq!(keyring.time_limit(), Duration::from_secs(2));
    /// ```
    #[must_use]
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = limit.max(Duration::from_millis(1));
        self
    }

    /// The time limit per call.
    pub fn time_limit(&self) -> Duration {
        self.timeout
    }

    /// Deletes the keyring entry of a keyring keyslot, for example one whose slot was removed
    /// with [`Vault::remove_keyslot`](crate::Vault::remove_keyslot) on a machine without
    /// this keyring. Returns whether there was an entry.
    /// ([`Vault::remove_keyring_keyslot`](crate::Vault::remove_keyring_keyslot) removes the
    /// slot and its entry together.)
    ///
    /// # Errors
    /// [`Error::Keyring`] if the keyring cannot be reached in time, is locked, or refuses.
    pub fn delete_entry(&self, entry: &KeyringEntry) -> Result<bool> {
        self.delete(&entry.service, &entry.account)
    }

    /// The slot key in the entry `service`/`account`.
    pub(crate) fn read_slot_key(&self, service: &str, account: &str) -> Result<Key> {
        let name = entry_label(service, account);
        let (service_owned, account_owned) = (service.to_owned(), account.to_owned());
        let secret = self.bounded(&name, platform::Op::Read(service, account), move |store| {
            let entry = Entry::new_in_store(store, &service_owned, &account_owned)?;
            entry.get_secret().map(Zeroizing::new)
        })?;
        if secret.len() != KEY_LEN {
            return Err(Error::Keyring {
                failure: KeyringFailure::Mismatch,
                entry: Some(name),
                detail: format!("it holds {} bytes, not a {KEY_LEN}-byte key", secret.len()),
            });
        }
        Key::from_slice(&secret).ok_or_else(|| Error::backend("internal: key length"))
    }

    /// A new random slot key, written to a new entry for the vault `vault_id`: returns the
    /// key and the entry's (service, account). The entry is remembered until
    /// [`settle`](Self::settle) keeps or deletes it.
    pub(crate) fn write_slot_key(&self, vault_id: &[u8]) -> Result<(Key, String, String)> {
        let mut tag = [0u8; 4];
        fill_random(&mut tag)?;
        let account = format!("{}{}", account_prefix(vault_id), hex(&tag));
        let key = new_slot_key()?;
        let name = entry_label(Self::SERVICE, &account);
        // On the heap, so that moving the closure (boxed by the thread spawn) moves only a
        // pointer: a value captured inline would be copied out of the box, and the box freed
        // with the key still in it.
        let mut secret = Zeroizing::new(Vec::with_capacity(KEY_LEN));
        secret.extend_from_slice(key.bytes());
        let account_owned = account.clone();
        self.bounded(&name, platform::Op::Write, move |store| {
            let entry = Entry::new_in_store(store, Self::SERVICE, &account_owned)?;
            entry.set_secret(&secret[..])
        })?;
        self.journal().push(account.clone());
        Ok((key, Self::SERVICE.to_owned(), account))
    }

    /// Of the entries this source wrote for vault `vault_id`, keeps those that `kept` names
    /// (accounts of the header now stored) and deletes the others (best effort: a keyring
    /// that fails now leaves an entry that unlocks nothing).
    pub(crate) fn settle(&self, vault_id: &[u8], kept: &[&str]) {
        let prefix = account_prefix(vault_id);
        let settled: Vec<String> = {
            let mut journal = self.journal();
            let (mine, others) = journal
                .drain(..)
                .partition(|account: &String| account.starts_with(&prefix));
            *journal = others;
            mine
        };
        for account in settled {
            if !kept.contains(&account.as_str()) {
                let _ = self.delete(Self::SERVICE, &account);
            }
        }
    }

    /// Forgets the entries this source wrote for vault `vault_id` without deleting any (when
    /// it cannot be known whether a header names them).
    pub(crate) fn settle_keeping_all(&self, vault_id: &[u8]) {
        let prefix = account_prefix(vault_id);
        self.journal()
            .retain(|account| !account.starts_with(&prefix));
    }

    /// Deletes an entry; `Ok(false)` if there was none.
    pub(crate) fn delete(&self, service: &str, account: &str) -> Result<bool> {
        let name = entry_label(service, account);
        let (service_owned, account_owned) = (service.to_owned(), account.to_owned());
        match self.bounded(&name, platform::Op::Write, move |store| {
            Entry::new_in_store(store, &service_owned, &account_owned)?.delete_credential()
        }) {
            Ok(()) => Ok(true),
            Err(Error::Keyring {
                failure: KeyringFailure::NoEntry,
                ..
            }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn journal(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        self.inner
            .written
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs `f` on the store, on a thread of its own, within the time limit: first the
    /// platform's checks (connecting, and on the Secret Service the lock check), then `f`.
    fn bounded<T: Send + 'static>(
        &self,
        entry: &str,
        op: platform::Op<'_>,
        f: impl FnOnce(&Arc<CredentialStore>) -> keyring_core::Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = Arc::clone(&self.inner);
        let check = op.owned();
        let entry_name = entry.to_owned();
        call::bounded(self.timeout, entry, move || {
            let store = match &inner.store {
                Source::Given(store) => Arc::clone(store),
                Source::Platform(slot) => {
                    check.run(&entry_name)?;
                    let mut slot = slot
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    match &*slot {
                        Some(store) => Arc::clone(store),
                        None => {
                            let store = platform::connect()?;
                            *slot = Some(Arc::clone(&store));
                            store
                        }
                    }
                }
            };
            f(&store).map_err(|e| map_error(e, &entry_name))
        })
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let store = match &self.inner.store {
            Source::Given(_) => "given",
            Source::Platform(_) => "platform",
        };
        f.debug_struct("Keyring")
            .field("store", &store)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// A new slot key: random (or, with `test-hooks`, the one set for this thread).
fn new_slot_key() -> Result<Key> {
    #[cfg(feature = "test-hooks")]
    if let Some(key) = NEXT_SLOT_KEY.with(|next| next.borrow_mut().take()) {
        return Key::from_slice(&key[..]).ok_or_else(|| Error::backend("internal: key length"));
    }
    Key::random()
}

#[cfg(feature = "test-hooks")]
thread_local! {
    static NEXT_SLOT_KEY: std::cell::RefCell<Option<Zeroizing<[u8; KEY_LEN]>>> =
        const { std::cell::RefCell::new(None) };
}

/// See `test_hooks::set_next_keyring_slot_key`.
#[cfg(feature = "test-hooks")]
pub(crate) fn set_next_slot_key(key: &[u8; KEY_LEN]) {
    NEXT_SLOT_KEY.with(|next| *next.borrow_mut() = Some(Zeroizing::new(*key)));
}

/// The start of the accounts of vault `vault_id`'s entries: `vault-<id in hex>-`.
fn account_prefix(vault_id: &[u8]) -> String {
    format!("vault-{}-", hex(vault_id))
}

/// `account@service`, as errors name an entry.
fn entry_label(service: &str, account: &str) -> String {
    format!("{account}@{service}")
}

fn hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// keyring-core's error as ours. Its `BadEncoding` and `BadDataFormat` carry the entry's
/// bytes: they are wiped here, never shown.
fn map_error(e: keyring_core::Error, entry: &str) -> Error {
    use keyring_core::Error as K;
    let (failure, detail) = match e {
        K::NoEntry => (KeyringFailure::NoEntry, String::new()),
        K::NoStorageAccess(e) => (KeyringFailure::Locked, e.to_string()),
        K::PlatformFailure(e) => (KeyringFailure::Failed, e.to_string()),
        K::BadEncoding(mut bytes) => {
            bytes.zeroize();
            (
                KeyringFailure::Mismatch,
                "it does not hold a key".to_owned(),
            )
        }
        K::BadDataFormat(mut bytes, _) => {
            bytes.zeroize();
            (
                KeyringFailure::Mismatch,
                "it does not hold a key".to_owned(),
            )
        }
        K::Ambiguous(found) => (
            KeyringFailure::Mismatch,
            format!("{} entries match its name", found.len()),
        ),
        K::NoDefaultStore => (KeyringFailure::Unavailable, "no store".to_owned()),
        K::NotSupportedByStore(what) => (KeyringFailure::Unavailable, what),
        K::BadStoreFormat(what) => (KeyringFailure::Failed, what),
        K::TooLong(what, limit) => (
            KeyringFailure::Failed,
            format!("{what} is longer than the store's limit of {limit}"),
        ),
        K::Invalid(what, why) => (KeyringFailure::Failed, format!("{what} {why}")),
        _ => (
            KeyringFailure::Failed,
            "an unknown keyring error".to_owned(),
        ),
    };
    Error::Keyring {
        failure,
        entry: Some(entry.to_owned()),
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_in_keyring_errors_are_not_shown() {
        let err = map_error(
            keyring_core::Error::BadEncoding(b"s3cret-bytes".to_vec()),
            "a@b",
        );
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(matches!(
            err,
            Error::Keyring {
                failure: KeyringFailure::Mismatch,
                ..
            }
        ));
    }

    #[test]
    fn entry_names_are_recognisable() {
        assert_eq!(hex(&[0, 0xab, 0x10]), "00ab10");
        assert_eq!(entry_label("tokenvault", "vault-00"), "vault-00@tokenvault");
    }
}
