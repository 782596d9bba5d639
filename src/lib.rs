#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod authorizer;
mod backend;
mod bytes;
mod clock;
mod crypto;
mod error;
mod format;
mod header;
#[cfg(feature = "http")]
mod http;
mod import;
mod keys;
mod maintenance;
mod namespace;
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
pub use crate::vault::{Durability, KeyslotInfo, Vault, VaultOptions};

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

// Hooks for the fuzz targets, the known-answer and counting tests and the benchmarks: not for
// users, outside semver, and compiled only with the non-default feature `test-hooks`.
#[cfg(feature = "test-hooks")]
#[doc(hidden)]
pub mod test_hooks;
