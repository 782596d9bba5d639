//! An encrypted, embedded vault for OAuth access and refresh tokens.
//!
//! Tokens are sealed with XChaCha20-Poly1305 under keys that a passphrase (Argon2id) or a
//! raw key unlocks, stored by name-hiding HMAC'd keys in a [`backend`] (sled on disk by
//! default), and wiped from memory after use. A vault survives crashes, refuses damaged or
//! tampered data with a typed [`Error`], and never writes a secret to a log or a message.
//!
//! # Open a vault, store a token, read it back
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use tokenvault::secrecy::{ExposeSecret, SecretBox};
//! use tokenvault::{KeySource, Token, Vault};
//!
//! # let dir = tempfile::tempdir()?;
//! # let path = dir.path().join("vault");
//! // A raw 32-byte key (from a KMS, a key file, systemd credentials), or a passphrase:
//! let key = KeySource::raw_key(SecretBox::new(Box::new([7u8; 32])));
//! let vault = Vault::create(&path, &key)?; // later: Vault::open(&path, &key)
//!
//! // One namespace per tenant or user; records keyed by resource server.
//! let alice = vault.namespace("user/alice")?;
//! alice.put("api.example.org", &Token::new("access-token".into())
//!     .with_refresh_token("refresh-token".into())
//!     .with_expires_at(SystemTime::now() + Duration::from_secs(3600)))?; // durable now
//!
//! let token: Token = alice.get("api.example.org")?.expect("stored above");
//! assert_eq!(token.access_token().expose_secret(), "access-token");
//! vault.close()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # The rest of the API, by task
//!
//! At the crate root, the common case:
//!
//! - **Vaults and namespaces.** [`Vault`] (create, open, keyslots, key rotation, `verify`,
//!   close), [`VaultOptions`] (Argon2 parameters, [`Durability`], the sled directory's
//!   options), [`Namespace`] (get, put, compare-and-swap with [`Version`]s, remove, list).
//! - **What is stored.** [`Token`] (access and refresh token, expiry, scopes, identity, extra
//!   fields kept as secret JSON) and [`Secret`] (any small secret), both [`Record`]s.
//! - **Keys.** [`KeySource`] (passphrase, raw key, key file) and [`KdfParams`] (the Argon2id
//!   policy). A vault holds several keyslots ([`KeyslotInfo`], [`SlotKind`]), LUKS-style.
//! - **Errors.** [`Error`] is the vault's, with [`Error::kind`] ([`ErrorKind`]) to classify
//!   it without matching every variant. Each layer above has its own error, with the
//!   vault's as its source: [`store::TokenError`] (stores, sessions, the authorizer),
//!   [`import::ImportError`]; [`ErrorKind::of`] classifies any of them, also behind a
//!   `Box<dyn Error>`.
//!
//! In modules, by layer:
//!
//! - [`batch`]: atomic writes across records and namespaces ([`batch::WriteBatch`], from
//!   [`Vault::batch`]), with conditions, and the internal records a layer keeps beside a
//!   caller's ([`batch::InternalKey`]).
//! - [`oauth`]: a valid token on demand. [`oauth::Authorizer`] refreshes a token once
//!   however many threads, handles or processes ask, through a [`oauth::Refresher`] (a
//!   closure, or `HttpRefresher` with the `http` feature), and never presents a spent
//!   refresh token twice.
//! - [`store`]: token-store semantics. [`store::TokenStore`] (implemented by [`Namespace`]
//!   and [`store::MemoryStore`]), [`store::ValidatingStore`] with validators, and
//!   [`store::Sessions`] for guest and user tokens.
//! - [`import`]: [`import::Import`] reads the token files of the Globus and Sharetribe
//!   SDKs, all or nothing.
//! - [`maintenance`]: the reports of [`Vault::verify`] and key rotation.
//! - [`backend`]: the storage trait [`backend::Backend`] and its implementations (sled on
//!   disk, memory); the vault hands a backend only ciphertext and HMAC'd names.
//! - [`format`](mod@format): the format's limits ([`format::MAX_RECORD_LEN`], ...) and record types.
//!
//! `SECURITY.md` (the threat model) and `docs/format.md` (the format, byte by byte) are in
//! the repository; the README there is the project's page.
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod authorizer;
pub mod backend;
pub mod batch;
mod bytes;
mod classify;
mod clock;
mod crypto;
mod engine;
mod entry;
mod error;
pub mod format;
mod header;
#[cfg(feature = "http")]
mod http;
pub mod import;
#[cfg(feature = "keyring")]
mod keyring;
mod keys;
pub mod maintenance;
mod merge;
mod namespace;
pub mod oauth;
mod options;
mod orphans;
#[cfg(feature = "http")]
mod provider;
mod record;
mod recovery;
mod refresh;
mod response;
mod session;
pub mod store;
mod token;
mod token_error;
mod token_store;
mod trace;
mod upgrade;
mod validate;
mod vault;

// The common case: a vault, its namespaces, what they store, keys, errors.
pub use crate::error::{Damage, Error, ErrorKind, KeyringFailure, Result};
#[cfg(feature = "keyring")]
pub use crate::keyring::Keyring;
pub use crate::keys::{KdfParams, KeySource, SlotKind};
pub use crate::namespace::{Conflict, Namespace, Version};
pub use crate::options::{Durability, VaultOptions};
pub use crate::record::Record;
pub use crate::recovery::{RecoveryKey, RECOVERY_KEY_LEN};
pub use crate::token::{Secret, Token};
pub use crate::vault::KeyringEntry;
pub use crate::vault::{KeyslotInfo, NamespaceCursor, NamespacePage, Vault};

// Re-export crates used in our public API.
/// The `keyring-core` crate (feature `keyring`), re-exported so that a store given to
/// [`Keyring::with_store`] has the version this crate was built with.
#[cfg(feature = "keyring")]
pub use keyring_core;
pub use secrecy;

// The README's examples are tested with the crate's documentation.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

// Hooks for the fuzz targets, the known-answer and counting tests and the benchmarks: not for
// users, outside semver, and compiled only with the non-default feature `test-hooks`.
#[cfg(feature = "test-hooks")]
#[doc(hidden)]
pub mod test_hooks;
