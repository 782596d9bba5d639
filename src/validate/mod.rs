//! Validators: checks a token store runs on every token it writes and reads.
//!
//! [`ValidatingStore`] wraps a store and runs [`Validator`]s; what a validator sees is in
//! `check.rs` ([`StoreCheck`], [`RetrieveCheck`]), the validators tokenvault ships in
//! `builtin.rs`.

mod builtin;
mod check;

pub use self::builtin::{HasRefreshToken, NotExpired, RequireScopes, UnchangingIdentity};
use self::check::Snapshot;
pub use self::check::{IdentityBinding, RetrieveCheck, StoreCheck};

use std::cell::{OnceCell, RefCell};
use std::fmt;
use std::sync::Arc;

use crate::clock::{Clock, SystemClock};
use crate::token::Token;
use crate::token_error::{Result, TokenError, ValidationError};
use crate::token_store::TokenStore;

/// A token store that checks tokens with [`Validator`]s: before it writes them and after it
/// reads them. It wraps any [`TokenStore`] and is one itself, as Globus's
/// `ValidatingTokenStorage` wraps a storage.
///
/// - [`get_token`](TokenStore::get_token) runs every validator's
///   [`after_retrieve`](Validator::after_retrieve) on the token it read; a refusal is
///   [`TokenError::Validation`]. A missing key is `Ok(None)`, without running validators.
/// - [`set_token`](TokenStore::set_token), [`set_tokens`](TokenStore::set_tokens) and so
///   [`store_response`](TokenStore::store_response) run every validator's
///   [`before_store`](Validator::before_store) on every token *before* writing anything: if
///   one token is refused, none is written (a multi-resource-server response is stored whole
///   or not at all).
/// - [`merged_with_stored`](TokenStore::merged_with_stored), the read side of
///   `store_response`, reads the inner store without the after-retrieve checks, so a stored
///   token that has expired can still be refreshed while [`NotExpired`] is installed.
/// - Removing and listing pass through unchecked.
///
/// A refusal names the validator, the namespace and the key, and says why, never with token
/// values ([`ValidationError`]). Time comes from the store's [`Clock`] ([`SystemClock`]
/// unless set with [`with_clock`](Self::with_clock)).
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use tokenvault::store::TokenError;
/// use tokenvault::{Error, Token};
/// use tokenvault::oauth::{Clock, ManualClock};
/// use tokenvault::store::{HasRefreshToken, MemoryStore, NotExpired, TokenStore, ValidatingStore};
///
/// let clock = ManualClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000));
/// let store = ValidatingStore::new(MemoryStore::named("app"))
///     .with_clock(clock.clone())
///     .with(NotExpired::new(Duration::from_secs(60)))
///     .with(HasRefreshToken);
///
/// // Refused before anything is written: no refresh token.
/// let err = store.set_token("api", &Token::new("at".into())).unwrap_err();
/// assert!(matches!(err, TokenError::Validation(ref e) if e.validator == "has-refresh-token"));
/// assert!(store.token_keys()?.is_empty());
///
/// let token = Token::new("at".into())
///     .with_refresh_token("rt".into())
///     .with_expires_at(clock.now() + Duration::from_secs(3600));
/// store.set_token("api", &token)?;
/// assert!(store.get_token("api")?.is_some());
///
/// // Less than the 60 s margin left: reading it is refused, but it stays stored.
/// clock.advance(Duration::from_secs(3550));
/// let Err(TokenError::Validation(e)) = store.get_token("api") else { panic!() };
/// assert_eq!((e.validator.as_str(), e.namespace.as_deref(), e.key.as_str()),
///            ("not-expired", Some("app"), "api"));
/// assert_eq!(store.token_keys()?, ["api"]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ValidatingStore<S> {
    inner: S,
    clock: Box<dyn Clock>,
    validators: Vec<Box<dyn Validator>>,
}

/// A check on tokens written to and read from a [`ValidatingStore`]. Both methods accept
/// everything unless overridden; a refusal is the reason, as text that names fields, keys
/// or scopes and never carries token values (the store adds the validator's name, the
/// namespace and the key).
///
/// Write your own for rules of your application. A validator that needs state across calls
/// keeps it behind its own lock (validators are shared between threads).
///
/// ```
/// use tokenvault::store::TokenError;
/// use tokenvault::{Error, Token};
/// use tokenvault::store::{MemoryStore, StoreCheck, TokenStore, ValidatingStore, Validator};
///
/// /// Only bearer tokens: this client cannot make DPoP proofs.
/// struct BearerOnly;
///
/// impl Validator for BearerOnly {
///     fn name(&self) -> &str {
///         "bearer-only"
///     }
///     fn before_store(&self, check: &StoreCheck<'_>) -> Result<(), String> {
///         match check.token().token_type() {
///             t if t.eq_ignore_ascii_case("bearer") => Ok(()),
///             other => Err(format!("token_type is {other:?}, not \"Bearer\"")),
///         }
///     }
/// }
///
/// let store = ValidatingStore::new(MemoryStore::new()).with(BearerOnly);
/// store.set_token("api", &Token::new("at".into()))?;
/// let dpop = Token::new("at2".into()).with_token_type("DPoP");
/// let Err(TokenError::Validation(e)) = store.set_token("api", &dpop) else { panic!() };
/// assert_eq!(e.validator, "bearer-only");
/// assert_eq!(e.reason, "token_type is \"DPoP\", not \"Bearer\"");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait Validator: Send + Sync {
    /// A short name for error messages, such as `not-expired`.
    fn name(&self) -> &str;

    /// Checks a token about to be written. A refusal means that nothing of the call is
    /// written.
    ///
    /// # Errors
    /// Why the token is refused.
    fn before_store(&self, check: &StoreCheck<'_>) -> Result<(), String> {
        let _ = check;
        Ok(())
    }

    /// Checks a token just read. A refusal makes the read fail; the token stays stored.
    ///
    /// # Errors
    /// Why the token is refused.
    fn after_retrieve(&self, check: &RetrieveCheck<'_>) -> Result<(), String> {
        let _ = check;
        Ok(())
    }
}

impl<S: TokenStore> ValidatingStore<S> {
    /// Wraps `inner`, with no validators yet and the [`SystemClock`].
    ///
    /// ```
    /// use tokenvault::Token;
    /// use tokenvault::store::{MemoryStore, TokenStore, ValidatingStore};
    ///
    /// let store = ValidatingStore::new(MemoryStore::new()); // checks nothing yet
    /// store.set_token("k", &Token::new("at".into()))?;
    /// assert_eq!(store.inner().token_keys()?, ["k"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            clock: Box::new(SystemClock),
            validators: Vec::new(),
        }
    }

    /// Uses `clock` for the time validators see ([`StoreCheck::now`],
    /// [`RetrieveCheck::now`]).
    ///
    /// ```
    /// use std::time::SystemTime;
    /// use tokenvault::oauth::ManualClock;
    /// use tokenvault::store::{MemoryStore, ValidatingStore};
    ///
    /// let store = ValidatingStore::new(MemoryStore::new())
    ///     .with_clock(ManualClock::new(SystemTime::UNIX_EPOCH));
    /// ```
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Box::new(clock);
        self
    }

    /// Adds a validator. Validators run in the order they were added; the first refusal is
    /// the one reported.
    ///
    /// ```
    /// use tokenvault::store::{HasRefreshToken, MemoryStore, NotExpired, ValidatingStore};
    ///
    /// let store = ValidatingStore::new(MemoryStore::new())
    ///     .with(NotExpired::default())
    ///     .with(HasRefreshToken);
    /// assert_eq!(store.validator_names(), ["not-expired", "has-refresh-token"]);
    /// ```
    #[must_use]
    pub fn with(mut self, validator: impl Validator + 'static) -> Self {
        self.validators.push(Box::new(validator));
        self
    }

    /// The names of the validators, in the order they run.
    ///
    /// ```
    /// use tokenvault::store::{MemoryStore, UnchangingIdentity, ValidatingStore};
    ///
    /// let store = ValidatingStore::new(MemoryStore::new()).with(UnchangingIdentity);
    /// assert_eq!(store.validator_names(), ["unchanging-identity"]);
    /// ```
    pub fn validator_names(&self) -> Vec<&str> {
        self.validators.iter().map(|v| v.name()).collect()
    }

    /// The wrapped store: reads and writes through it are not checked.
    ///
    /// ```
    /// use tokenvault::Token;
    /// use tokenvault::store::{HasRefreshToken, MemoryStore, TokenStore, ValidatingStore};
    ///
    /// let store = ValidatingStore::new(MemoryStore::new()).with(HasRefreshToken);
    /// store.inner().set_token("k", &Token::new("at".into()))?; // not checked
    /// assert!(store.get_token("k").is_err()); // checked
    /// assert!(store.inner().get_token("k")?.is_some());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Unwraps the store.
    ///
    /// ```
    /// use tokenvault::store::{MemoryStore, TokenStore, ValidatingStore};
    ///
    /// let store = ValidatingStore::new(MemoryStore::named("app"));
    /// assert_eq!(store.into_inner().namespace(), Some("app"));
    /// ```
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// Runs every `before_store` on every token; the first refusal, or the first failed
    /// read of the inner store, is the error.
    fn check_before_store(&self, tokens: &[(&str, &Token)]) -> Result<()> {
        if self.validators.is_empty() {
            return Ok(());
        }
        let snapshot = Snapshot {
            store: &self.inner,
            binding: OnceCell::new(),
            failure: RefCell::new(None),
        };
        let namespace = self.inner.namespace();
        let now = self.clock.now();
        for (key, token) in tokens {
            let check = StoreCheck {
                namespace,
                key,
                token,
                batch: tokens,
                now,
                stored: OnceCell::new(),
                snapshot: &snapshot,
            };
            for validator in &self.validators {
                let verdict = validator.before_store(&check);
                if let Some(error) = snapshot.failure.take() {
                    return Err(error);
                }
                verdict.map_err(|reason| self.refusal(validator.as_ref(), key, reason))?;
            }
        }
        Ok(())
    }

    fn refusal(&self, validator: &dyn Validator, key: &str, reason: String) -> TokenError {
        TokenError::Validation(ValidationError::new(
            validator.name(),
            self.inner.namespace(),
            key,
            reason,
        ))
    }
}

impl<S: TokenStore> TokenStore for ValidatingStore<S> {
    fn get_token(&self, key: &str) -> Result<Option<Token>> {
        let Some(token) = self.inner.get_token(key)? else {
            return Ok(None);
        };
        if !self.validators.is_empty() {
            let check = RetrieveCheck {
                namespace: self.inner.namespace(),
                key,
                token: &token,
                now: self.clock.now(),
            };
            for validator in &self.validators {
                validator
                    .after_retrieve(&check)
                    .map_err(|reason| self.refusal(validator.as_ref(), key, reason))?;
            }
        }
        Ok(Some(token))
    }

    fn set_token(&self, key: &str, token: &Token) -> Result<()> {
        self.check_before_store(&[(key, token)])?;
        self.inner.set_token(key, token)
    }

    fn remove_token(&self, key: &str) -> Result<bool> {
        self.inner.remove_token(key)
    }

    fn token_keys(&self) -> Result<Vec<String>> {
        self.inner.token_keys()
    }

    /// Checks every token, then stores them all with the inner store's `set_tokens` (so as
    /// atomically as it does); one refusal and nothing is written.
    fn set_tokens(&self, tokens: &[(&str, &Token)]) -> Result<()> {
        self.check_before_store(tokens)?;
        self.inner.set_tokens(tokens)
    }

    fn namespace(&self) -> Option<&str> {
        self.inner.namespace()
    }

    /// Reads the stored token without the after-retrieve checks: an expired token must
    /// still be refreshable.
    fn merged_with_stored(&self, key: &str, token: &Token) -> Result<Token> {
        self.inner.merged_with_stored(key, token)
    }
}

/// Shows the namespace, the clock and the validators' names (any store, `Debug` or not).
impl<S: TokenStore> fmt::Debug for ValidatingStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.validators.iter().map(|v| v.name()).collect();
        f.debug_struct("ValidatingStore")
            .field("namespace", &self.inner.namespace())
            .field("clock", &self.clock)
            .field("validators", &names)
            .finish()
    }
}

/// A shared validator validates, so that one validator (and its state) can serve several
/// stores.
impl<V: Validator + ?Sized> Validator for Arc<V> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn before_store(&self, check: &StoreCheck<'_>) -> Result<(), String> {
        (**self).before_store(check)
    }
    fn after_retrieve(&self, check: &RetrieveCheck<'_>) -> Result<(), String> {
        (**self).after_retrieve(check)
    }
}
