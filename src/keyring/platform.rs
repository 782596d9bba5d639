//! This platform's credential store, and the checks made before using it: on the Secret
//! Service, whether the collection is locked (asked without prompting).

use std::sync::Arc;

use keyring_core::CredentialStore;

use crate::error::{Error, KeyringFailure, Result};

/// What a call is about to do, for the checks before it.
#[derive(Clone, Copy)]
pub(super) enum Op<'a> {
    /// Read the entry `service`/`account`.
    Read(&'a str, &'a str),
    /// Write or delete an entry.
    Write,
}

/// [`Op`] with owned names, to move onto the call's thread.
pub(super) enum Check {
    Read(String, String),
    Write,
}

impl Op<'_> {
    pub(super) fn owned(self) -> Check {
        match self {
            Op::Read(service, account) => Check::Read(service.to_owned(), account.to_owned()),
            Op::Write => Check::Write,
        }
    }
}

fn failure(failure: KeyringFailure, entry: &str, detail: impl Into<String>) -> Error {
    Error::Keyring {
        failure,
        entry: Some(entry.to_owned()),
        detail: detail.into(),
    }
}

#[cfg(any(target_os = "linux", target_os = "freebsd"))]
mod imp {
    use std::collections::HashMap;
    use std::sync::Arc;

    use dbus_secret_service::{EncryptionType, Error as SsError, SecretService};
    use keyring_core::CredentialStore;

    use super::{failure, Check};
    use crate::error::{KeyringFailure, Result};

    /// The Secret Service store of keyring-core's `dbus-secret-service-keyring-store`.
    pub(super) fn connect() -> Result<Arc<CredentialStore>> {
        match dbus_secret_service_keyring_store::Store::new() {
            Ok(store) => Ok(store),
            Err(e) => Err(failure(
                KeyringFailure::Unavailable,
                "the Secret Service",
                e.to_string(),
            )),
        }
    }

    impl Check {
        /// Asks the Secret Service, with prompting disabled, whether the default collection
        /// (where entries are written) is locked, and for a read whether the entry is only
        /// in locked collections. The store itself would wait for an unlock prompt.
        pub(in crate::keyring) fn run(&self, entry: &str) -> Result<()> {
            let unavailable = |e: SsError| {
                failure(
                    KeyringFailure::Unavailable,
                    entry,
                    format!("no Secret Service on the D-Bus session bus: {e}"),
                )
            };
            if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_none_or(|a| a.is_empty()) {
                return Err(failure(
                    KeyringFailure::Unavailable,
                    entry,
                    "no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS is not set)",
                ));
            }
            let ss = SecretService::connect_with_max_prompt_timeout(EncryptionType::Plain, 0)
                .map_err(unavailable)?;
            match ss.get_default_collection() {
                Ok(collection) => {
                    if collection.is_locked().map_err(unavailable)? {
                        return Err(failure(
                            KeyringFailure::Locked,
                            entry,
                            "its default collection is locked",
                        ));
                    }
                }
                Err(SsError::NoResult) => {
                    if matches!(self, Check::Write) {
                        return Err(failure(
                            KeyringFailure::Prompt,
                            entry,
                            "the Secret Service has no default collection, and creating one \
                             needs a prompt",
                        ));
                    }
                }
                Err(e) => return Err(unavailable(e)),
            }
            if let Check::Read(service, account) = self {
                let found = ss
                    .search_items(HashMap::from([
                        ("service", service.as_str()),
                        ("username", account.as_str()),
                    ]))
                    .map_err(unavailable)?;
                if found.unlocked.is_empty() && !found.locked.is_empty() {
                    return Err(failure(
                        KeyringFailure::Locked,
                        entry,
                        "the entry is in a locked collection",
                    ));
                }
            }
            Ok(())
        }
    }
}

#[cfg(target_os = "macos")]
mod imp {
    use std::sync::Arc;

    use keyring_core::CredentialStore;

    use super::{failure, Check};
    use crate::error::{KeyringFailure, Result};

    /// The login keychain (untested by this project: no macOS target here).
    pub(super) fn connect() -> Result<Arc<CredentialStore>> {
        match apple_native_keyring_store::keychain::Store::new() {
            Ok(store) => Ok(store),
            Err(e) => Err(failure(
                KeyringFailure::Unavailable,
                "the keychain",
                e.to_string(),
            )),
        }
    }

    impl Check {
        /// No check before the call: the time limit bounds a prompt.
        pub(in crate::keyring) fn run(&self, _entry: &str) -> Result<()> {
            Ok(())
        }
    }
}

#[cfg(windows)]
mod imp {
    use std::sync::Arc;

    use keyring_core::CredentialStore;

    use super::{failure, Check};
    use crate::error::{KeyringFailure, Result};

    /// The Credential Manager (untested by this project: no Windows target here).
    pub(super) fn connect() -> Result<Arc<CredentialStore>> {
        match windows_native_keyring_store::Store::new() {
            Ok(store) => Ok(store),
            Err(e) => Err(failure(
                KeyringFailure::Unavailable,
                "the Credential Manager",
                e.to_string(),
            )),
        }
    }

    impl Check {
        /// No check before the call: the Credential Manager does not prompt.
        pub(in crate::keyring) fn run(&self, _entry: &str) -> Result<()> {
            Ok(())
        }
    }
}

#[cfg(not(any(
    target_os = "linux",
    target_os = "freebsd",
    target_os = "macos",
    windows
)))]
mod imp {
    use std::sync::Arc;

    use keyring_core::CredentialStore;

    use super::{failure, Check};
    use crate::error::{KeyringFailure, Result};

    pub(super) fn connect() -> Result<Arc<CredentialStore>> {
        Err(failure(
            KeyringFailure::Unavailable,
            "the OS keyring",
            "tokenvault has no keyring store for this platform; use Keyring::with_store",
        ))
    }

    impl Check {
        pub(in crate::keyring) fn run(&self, entry: &str) -> Result<()> {
            Err(failure(
                KeyringFailure::Unavailable,
                entry,
                "tokenvault has no keyring store for this platform; use Keyring::with_store",
            ))
        }
    }
}

/// Connects to this platform's store.
pub(super) fn connect() -> Result<Arc<CredentialStore>> {
    imp::connect()
}
