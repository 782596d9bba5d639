//! Atomic writes: several records, in one namespace or several of one vault, written all or
//! none, each with or without a condition on its current [`Version`](crate::Version).
//!
//! [`Vault::batch`](crate::Vault::batch) starts a [`WriteBatch`]. Layers built on the vault
//! (the crate's own [`oauth`](crate::oauth) and [`store`](crate::store) layers, or yours)
//! keep their own records beside a caller's under an [`InternalKey`]: never listed, never
//! writable through a caller's key, and written in the same batch as the record they
//! belong to.

pub use crate::namespace::{BatchConflict, InternalKey, RecordKey, WriteBatch, Written};
