//! The errors of the token layer (stores, validators, sessions, the authorizer, token
//! responses): [`TokenError`], and a validator's refusal, [`ValidationError`].

use std::fmt;
use std::sync::Arc;

use crate::error::{Error, ErrorKind};
use crate::refresh::RefreshError;

/// Why a token-layer operation failed: a [`TokenStore`](crate::store::TokenStore), a
/// [`ValidatingStore`](crate::store::ValidatingStore), [`Sessions`](crate::store::Sessions),
/// an [`Authorizer`](crate::oauth::Authorizer), or reading a
/// [`TokenResponse`](crate::oauth::TokenResponse).
///
/// The vault's own errors are [`TokenError::Vault`], also the
/// [source](std::error::Error::source); [`kind`](Self::kind) classifies any of them.
/// Messages name namespaces, keys, validators and fields, never a secret.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use tokenvault::store::{NotExpired, TokenError, TokenStore, ValidatingStore};
/// use tokenvault::{ErrorKind, KeySource, Token, Vault};
/// use tokenvault::secrecy::SecretBox;
///
/// # let dir = tempfile::tempdir()?;
/// let vault = Vault::create(dir.path().join("v"), &KeySource::raw_key(SecretBox::new(Box::new([7; 32]))))?;
/// let store = ValidatingStore::new(vault.namespace("tenant-42")?).with(NotExpired::new(Duration::ZERO));
/// let expired = Token::new("at".into()).with_expires_at(SystemTime::now() - Duration::from_secs(60));
/// store.set_token("api", &expired)?; // stored; refused when read
/// let err = store.get_token("api").unwrap_err();
/// assert!(matches!(&err, TokenError::Validation(v) if v.validator == "not-expired"));
/// assert_eq!(err.kind(), ErrorKind::InvalidInput);
///
/// vault.clone().close()?;
/// let err = store.get_token("api").unwrap_err();
/// assert!(matches!(err, TokenError::Vault(tokenvault::Error::Closed)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum TokenError {
    /// The vault failed: its [`Error`] (closed, damaged, a storage error, a name or size it
    /// refuses, ...).
    Vault(Error),
    /// A token response could not be read as an OAuth 2.0 token response (RFC 6749 section
    /// 5.1). The reason names the field, never its value.
    InvalidResponse {
        /// What is wrong with the response.
        reason: String,
    },
    /// A [`Validator`](crate::store::Validator) refused a token: nothing was written.
    Validation(ValidationError),
    /// An error from a user-written [`TokenStore`](crate::store::TokenStore) or validator,
    /// passed through unchanged ([`TokenError::store`]). Its messages must not carry
    /// secrets: that is up to the code that made it.
    Store(Arc<dyn std::error::Error + Send + Sync + 'static>),
    /// The authorizer cannot produce a valid token without the user logging in again: the
    /// grant is dead, marked dead, or a refresh was interrupted with its refresh token
    /// possibly spent (a lease left behind by a handle that died). Store a new grant (from a
    /// new login) under the key to recover.
    ReauthenticationRequired {
        /// The namespace.
        namespace: String,
        /// The record key.
        key: String,
        /// Why (never a secret).
        reason: String,
    },
    /// A refresh failed: [`RefreshError::kind`] says whether the grant is dead, the failure
    /// transient, or the request refused.
    Refresh(RefreshError),
}

/// The result of a token-layer operation: [`TokenError`] by default.
pub type Result<T, E = TokenError> = std::result::Result<T, E>;

impl TokenError {
    /// Wraps an error from a user-written store or validator as [`TokenError::Store`].
    pub fn store(error: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Self {
        Self::Store(Arc::from(error.into()))
    }

    /// The kind of this error: a vault error's [`Error::kind`]; a refusal of the input
    /// (a response, a validator's verdict) [`InvalidInput`](ErrorKind::InvalidInput); a
    /// needed login [`Reauthenticate`](ErrorKind::Reauthenticate); a refresh by its
    /// [`RefreshError::error_kind`]; a user-written store's error
    /// [`Other`](ErrorKind::Other).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Vault(e) => e.kind(),
            Self::InvalidResponse { .. } | Self::Validation(_) => ErrorKind::InvalidInput,
            Self::Store(_) => ErrorKind::Other,
            Self::ReauthenticationRequired { .. } => ErrorKind::Reauthenticate,
            Self::Refresh(e) => e.error_kind(),
        }
    }

    /// A vault storage error ([`Error::Backend`]) with `message`.
    pub(crate) fn backend(message: impl Into<String>) -> Self {
        Self::Vault(Error::backend(message))
    }

    pub(crate) fn invalid_response(reason: impl Into<String>) -> Self {
        Self::InvalidResponse {
            reason: reason.into(),
        }
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Vault(e) => write!(f, "{e}"),
            Self::InvalidResponse { reason } => write!(f, "invalid token response: {reason}"),
            Self::Validation(e) => write!(f, "{e}"),
            Self::Store(e) => write!(f, "token store error: {e}"),
            Self::ReauthenticationRequired {
                namespace,
                key,
                reason,
            } => write!(
                f,
                "the token {key:?} in namespace {namespace:?} needs a new login: {reason}"
            ),
            Self::Refresh(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for TokenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Vault(e) => Some(e),
            Self::Validation(e) => Some(e),
            Self::Store(e) => Some(e.as_ref()),
            Self::Refresh(e) => Some(e),
            _ => None,
        }
    }
}

impl From<Error> for TokenError {
    fn from(e: Error) -> Self {
        Self::Vault(e)
    }
}

impl From<ValidationError> for TokenError {
    fn from(e: ValidationError) -> Self {
        Self::Validation(e)
    }
}

impl From<RefreshError> for TokenError {
    fn from(e: RefreshError) -> Self {
        Self::Refresh(e)
    }
}

/// A token refused by a [`Validator`](crate::store::Validator): which validator, where, and why.
///
/// Never holds token values: the reason is written by the validator, and the built-in ones
/// name fields and scopes, never secrets.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ValidationError {
    /// The validator's name (for example `not-expired`).
    pub validator: String,
    /// The namespace of the store, when the store has one.
    pub namespace: Option<String>,
    /// The record key.
    pub key: String,
    /// Why the token was refused.
    pub reason: String,
}

impl ValidationError {
    /// A refusal by `validator` of the token at `key` in `namespace`, for `reason`.
    pub fn new(
        validator: impl Into<String>,
        namespace: Option<&str>,
        key: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Self {
            validator: validator.into(),
            namespace: namespace.map(str::to_owned),
            key: key.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "validator {} refused the token {:?}",
            self.validator, self.key
        )?;
        if let Some(ns) = &self.namespace {
            write!(f, " in namespace {ns:?}")?;
        }
        write!(f, ": {}", self.reason)
    }
}

impl std::error::Error for ValidationError {}
