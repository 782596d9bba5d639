//! The refresher: what turns a stored grant into a fresh token (a refresh-token grant, a
//! client-credentials grant, or any custom exchange), and how it fails.

use std::fmt;
use std::time::Duration;

use crate::token::Token;

/// Exchanges a stored grant for a new token: the one thing an
/// [`Authorizer`](crate::oauth::Authorizer) cannot do by itself.
///
/// `current` is the token stored under the authorizer's key (`None` when nothing is stored:
/// a client-credentials refresher mints a token then; a refresh-token refresher cannot, and
/// fails with [`RefreshErrorKind::InvalidGrant`]). The refresher returns the token the
/// server issued, with its absolute expiry (count `expires_in` from when the request was
/// sent: [`TokenResponse::from_json`](crate::oauth::TokenResponse::from_json) does). The
/// authorizer merges it with the stored token ([`Token::refreshed_with`]: a server that does
/// not rotate refresh tokens does not make you lose yours) and stores it durably before
/// anyone sees it. An answer that names another identity or resource server than the stored
/// token is refused, never stored nor served.
///
/// A refresher is called by one thread at a time per key, on a thread the authorizer owns,
/// under a lease that keeps other handles and processes from calling it for the same grant.
/// It must not take longer than the authorizer's lease time
/// ([`AuthorizerBuilder::lease_time`](crate::oauth::AuthorizerBuilder::lease_time)): give its HTTP
/// client a shorter timeout.
///
/// Closures are refreshers:
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use tokenvault::Token;
/// use tokenvault::oauth::{RefreshError, Refresher};
///
/// let refresher = |current: Option<&Token>| -> Result<Token, RefreshError> {
///     let Some(_refresh_token) = current.and_then(Token::refresh_token) else {
///         return Err(RefreshError::invalid_grant("no refresh token stored: log in again"));
///     };
///     // ... POST grant_type=refresh_token to the token endpoint ...
///     Ok(Token::new("new-access-token".into())
///         .with_expires_at(SystemTime::now() + Duration::from_secs(3600)))
/// };
/// let stored = Token::new("old".into()).with_refresh_token("rt".into());
/// assert!(refresher.refresh(Some(&stored)).is_ok());
/// assert!(refresher.refresh(None).unwrap_err().is_invalid_grant());
/// ```
pub trait Refresher: Send + Sync + 'static {
    /// Exchanges `current` (the stored token, if any) for a new token.
    ///
    /// # Errors
    /// A [`RefreshError`] saying whether the grant is dead, the failure transient, or the
    /// request refused for another reason.
    fn refresh(&self, current: Option<&Token>) -> Result<Token, RefreshError>;
}

impl<F> Refresher for F
where
    F: Fn(Option<&Token>) -> Result<Token, RefreshError> + Send + Sync + 'static,
{
    fn refresh(&self, current: Option<&Token>) -> Result<Token, RefreshError> {
        self(current)
    }
}

/// A failed refresh: what kind of failure, and a message for people.
///
/// The message must not carry secrets (never put a token or a response body in it); the
/// built-in HTTP refresher puts the HTTP status and the OAuth error code there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefreshError {
    kind: RefreshErrorKind,
    message: String,
    oauth_error: Option<String>,
    retry_after: Option<Duration>,
    possibly_processed: bool,
}

/// What kind of failure a [`RefreshError`] is: the authorizer's policy follows from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RefreshErrorKind {
    /// The grant is dead (OAuth `invalid_grant`: the refresh token expired, was revoked or
    /// was already used), or there is nothing to refresh with. Retrying cannot help: the
    /// user must log in again. The authorizer applies its
    /// [`DeadGrant`](crate::oauth::DeadGrant) policy to the stored record.
    InvalidGrant,
    /// The server refused the request for a reason retrying will not fix either, but that
    /// says nothing about the grant (`invalid_client`, `unauthorized_client`,
    /// `invalid_scope`, `unsupported_grant_type`, an unreadable answer): a configuration
    /// problem. The stored record is kept.
    Rejected,
    /// Temporary: a network error, a timeout, a 5xx or 429 answer. The stored record is
    /// kept, and the authorizer retries after a backoff.
    Transient,
}

impl RefreshError {
    /// A dead grant ([`RefreshErrorKind::InvalidGrant`]).
    pub fn invalid_grant(message: impl Into<String>) -> Self {
        Self::new(RefreshErrorKind::InvalidGrant, message)
    }

    /// A refusal retrying will not fix ([`RefreshErrorKind::Rejected`]).
    pub fn rejected(message: impl Into<String>) -> Self {
        Self::new(RefreshErrorKind::Rejected, message)
    }

    /// A temporary failure ([`RefreshErrorKind::Transient`]).
    pub fn transient(message: impl Into<String>) -> Self {
        Self::new(RefreshErrorKind::Transient, message)
    }

    /// The kind of failure, as [`ErrorKind::of`](crate::ErrorKind::of) classifies it: a dead
    /// grant needs a login ([`Reauthenticate`](crate::ErrorKind::Reauthenticate)), a
    /// temporary failure may pass ([`Transient`](crate::ErrorKind::Transient)), every other
    /// refusal is about the request ([`InvalidInput`](crate::ErrorKind::InvalidInput)).
    pub fn error_kind(&self) -> crate::ErrorKind {
        match self.kind() {
            RefreshErrorKind::InvalidGrant => crate::ErrorKind::Reauthenticate,
            RefreshErrorKind::Transient => crate::ErrorKind::Transient,
            _ => crate::ErrorKind::InvalidInput,
        }
    }

    /// A failure of the given kind.
    pub fn new(kind: RefreshErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            oauth_error: None,
            retry_after: None,
            possibly_processed: false,
        }
    }

    /// Records the OAuth error code of the server's answer (`invalid_grant`, ...).
    #[must_use]
    pub fn with_oauth_error(mut self, code: impl Into<String>) -> Self {
        self.oauth_error = Some(code.into());
        self
    }

    /// Records how long the server asked to wait (HTTP `Retry-After`); the authorizer
    /// waits at least that long before trying again.
    #[must_use]
    pub fn with_retry_after(mut self, wait: Duration) -> Self {
        self.retry_after = Some(wait);
        self
    }

    /// Records that the request may have reached the server although no answer came back (a
    /// timeout or a lost connection after the request was sent): the server may have
    /// exchanged, and so spent, the refresh token. The authorizer then does not present that
    /// refresh token again unless told to ([`AmbiguousFailure`](crate::oauth::AmbiguousFailure)).
    #[must_use]
    pub fn with_request_possibly_processed(mut self) -> Self {
        self.possibly_processed = true;
        self
    }

    /// Whether the request may have reached the server (see
    /// [`with_request_possibly_processed`](Self::with_request_possibly_processed)).
    pub fn request_possibly_processed(&self) -> bool {
        self.possibly_processed
    }

    /// The kind of failure.
    pub fn kind(&self) -> RefreshErrorKind {
        self.kind
    }

    /// Whether the grant is dead: the user must log in again.
    pub fn is_invalid_grant(&self) -> bool {
        self.kind == RefreshErrorKind::InvalidGrant
    }

    /// Whether the failure is temporary.
    pub fn is_transient(&self) -> bool {
        self.kind == RefreshErrorKind::Transient
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The OAuth error code, if the server sent one.
    pub fn oauth_error(&self) -> Option<&str> {
        self.oauth_error.as_deref()
    }

    /// How long the server asked to wait, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

impl fmt::Display for RefreshError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            RefreshErrorKind::InvalidGrant => "the grant is dead; log in again",
            RefreshErrorKind::Rejected => "refused; retrying will not help",
            RefreshErrorKind::Transient => "temporary failure; will retry",
        };
        write!(f, "refresh failed ({kind}): {}", self.message)?;
        if let Some(code) = &self.oauth_error {
            write!(f, " [{code}]")?;
        }
        Ok(())
    }
}

impl std::error::Error for RefreshError {}
