//! An encrypted, embedded vault for OAuth access and refresh tokens.
//!
//! Tokens are sealed with XChaCha20-Poly1305 under keys that a passphrase (Argon2id) or a
//! raw key unlocks, stored by name-hiding HMAC'd keys in a [`Backend`] (sled on disk by
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
//! - **Vaults and namespaces.** [`Vault`] (create, open, keyslots, key rotation, `verify`,
//!   close), [`VaultOptions`] (Argon2 parameters, durability, the sled backend's
//!   [`SledOptions`]), [`Namespace`] (get, put, compare-and-swap with [`Version`]s, remove,
//!   list).
//! - **What is stored.** [`Token`] (access and refresh token, expiry, scopes, identity, extra
//!   fields kept as secret JSON) and [`Secret`] (any small secret), both [`Record`]s.
//! - **Keys.** [`KeySource`] (passphrase, raw key, key file) and [`KdfParams`] (the Argon2id
//!   policy). A vault holds up to [`MAX_KEYSLOTS`] keyslots, LUKS-style.
//! - **A valid token on demand.** [`Authorizer`] refreshes a token once however many threads,
//!   handles or processes ask, through a [`Refresher`] (a closure, or `HttpRefresher` with
//!   the `http` feature), and never presents a spent refresh token twice.
//! - **Token-store semantics.** [`TokenStore`] (implemented by [`Namespace`] and
//!   [`MemoryStore`]), [`TokenResponse`] (RFC 6749 answers with absolute expiries),
//!   [`ValidatingStore`] with [`Validator`]s, and [`Sessions`] for guest and user tokens.
//! - **Moving in.** [`Import`] reads the token files of the Globus and Sharetribe SDKs, all or
//!   nothing.
//! - **Storage.** [`Backend`], [`SledBackend`], [`MemoryBackend`]: the vault hands a backend
//!   only ciphertext and HMAC'd names.
//! - **Errors.** [`Error`], with [`Error::kind`] to classify any of them ([`ErrorKind`]).
//!
//! `SECURITY.md` (the threat model) and `docs/format.md` (the format, byte by byte) are in
//! the repository; the README there is the project's page.
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod authorizer;
mod backend;
mod bytes;
mod classify;
mod clock;
mod crypto;
mod engine;
mod error;
mod format;
mod header;
#[cfg(feature = "http")]
mod http;
mod import;
mod keys;
mod maintenance;
mod namespace;
mod options;
mod orphans;
mod record;
mod refresh;
mod response;
mod session;
mod store;
mod token;
mod trace;
mod validate;
mod vault;

// The public interface is:

// Opening and using a vault.
pub use crate::namespace::{Conflict, Namespace, Version, MAX_NAME_LEN};
pub use crate::options::{Durability, VaultOptions};
pub use crate::vault::{KeyslotInfo, Vault};

// What a vault stores.
pub use crate::format::MAX_RECORD_LEN;
pub use crate::record::{Record, RecordType};
pub use crate::token::{Secret, Token};

// Token-store semantics.
pub use crate::clock::{Clock, ManualClock, SystemClock};
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use crate::http::{ClientAuth, GrantType, HttpRefresher};
pub use crate::import::{
    Import, ImportError, ImportErrorKind, ImportFormat, ImportReport, ImportedRecord, SkippedEntry,
    MAX_IMPORT_DATABASE_LEN, MAX_IMPORT_FILE_LEN, MAX_IMPORT_RECORDS,
};
pub use crate::refresh::{RefreshError, RefreshErrorKind, Refresher};

// Refreshing.
pub use crate::authorizer::{
    AmbiguousFailure, Authorizer, AuthorizerBuilder, DeadGrant, Logout, DEFAULT_JITTER,
    DEFAULT_LEASE_TIME, DEFAULT_MARGIN, DEFAULT_MAX_RETRY_GAP, DEFAULT_MIN_RETRY_GAP,
};
pub use crate::response::{TokenResponse, MAX_RESPONSE_LEN};
pub use crate::session::{Principal, Sessions};
pub use crate::store::{MemoryStore, TokenStore};
pub use crate::validate::{
    HasRefreshToken, IdentityBinding, NotExpired, RequireScopes, RetrieveCheck, StoreCheck,
    UnchangingIdentity, ValidatingStore, Validator,
};

// Keys.
pub use crate::format::MAX_KEYSLOTS;
pub use crate::keys::{KdfParams, KeySource, SlotKind};

// Maintenance.
pub use crate::maintenance::{
    DamagedRecord, NamespaceReport, Progress, RotationReport, VerifyReport,
};

// Storage.
pub use crate::backend::{
    Backend, BackendError, BackendErrorKind, Batch, Condition, MemoryBackend, ScanPage,
    SledBackend, SledOptions, Write, DEFAULT_CACHE_CAPACITY, DEFAULT_LOCK_TIMEOUT,
};

// Errors.
pub use crate::error::{Damage, Error, ErrorKind, Result, ValidationError};

// Re-export crates used in our public API.
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
