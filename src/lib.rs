#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod backend;
mod crypto;
mod error;
mod header;
mod keys;
mod maintenance;
mod namespace;
mod record;
mod token;
mod vault;

// The public interface is:

// Opening and using a vault.
pub use crate::namespace::{Conflict, Namespace, Version, MAX_NAME_LEN};
pub use crate::vault::{Durability, KeyslotInfo, Vault, VaultOptions, DEFAULT_LOCK_TIMEOUT};

// What a vault stores.
pub use crate::record::{Record, RecordType, MAX_RECORD_LEN};
pub use crate::token::{Secret, Token};

// Keys.
pub use crate::header::MAX_KEYSLOTS;
pub use crate::keys::{KdfParams, KeySource, SlotKind};

// Maintenance.
pub use crate::maintenance::{
    DamagedRecord, NamespaceReport, Progress, RotationReport, VerifyReport,
};

// Storage.
pub use crate::backend::{
    Backend, BackendError, Batch, Condition, MemoryBackend, ScanPage, SledBackend, Write,
};

// Errors.
pub use crate::error::{Damage, Error, Result};

// Re-export crates used in our public API.
pub use secrecy;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;
