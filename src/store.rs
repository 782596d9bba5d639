//! Token-store semantics, for code written against an SDK's token storage.
//!
//! [`TokenStore`] is the interface that SDK token stores share (get, set, remove and list
//! tokens by key, store a token endpoint's answer): [`Namespace`](crate::Namespace)
//! implements it on a vault, [`MemoryStore`] in memory. Its verbs (`get_token`,
//! `set_token`, ...) are this layer's; a [`Namespace`](crate::Namespace)'s own
//! (`get`, `put`, ...) store any [`Record`](crate::Record). [`ValidatingStore`] runs
//! [`Validator`]s on every token written and read; [`Sessions`] keeps guest and user tokens
//! apart.
//!
//! ```
//! use std::time::Duration;
//! use tokenvault::store::{NotExpired, TokenStore, ValidatingStore};
//! use tokenvault::secrecy::SecretBox;
//! use tokenvault::{KeySource, Token, Vault};
//!
//! # let dir = tempfile::tempdir()?;
//! let vault = Vault::create(dir.path().join("v"), &KeySource::raw_key(SecretBox::new(Box::new([7; 32]))))?;
//! let store = ValidatingStore::new(vault.namespace("tenant-42")?).with(NotExpired::new(Duration::ZERO));
//! store.set_token("api", &Token::new("at".into()))?; // no expiry: never expired
//! assert_eq!(store.token_keys()?, ["api"]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub use crate::session::{Principal, Sessions};
pub use crate::token_error::{Result, TokenError, ValidationError};
pub use crate::token_store::{MemoryStore, TokenStore};
pub use crate::validate::{
    HasRefreshToken, IdentityBinding, NotExpired, RequireScopes, RetrieveCheck, StoreCheck,
    UnchangingIdentity, ValidatingStore, Validator,
};
