//! Validators: checks a token store runs on every token it writes and reads.

use std::cell::{OnceCell, RefCell};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::clock::{Clock, SystemClock};
use crate::error::{Error, Result, ValidationError};
use crate::store::TokenStore;
use crate::token::Token;

/// A token store that checks tokens with [`Validator`]s: before it writes them and after it
/// reads them. It wraps any [`TokenStore`] and is one itself, as Globus's
/// `ValidatingTokenStorage` wraps a storage.
///
/// - [`get_token`](TokenStore::get_token) runs every validator's
///   [`after_retrieve`](Validator::after_retrieve) on the token it read; a refusal is
///   [`Error::Validation`]. A missing key is `Ok(None)`, without running validators.
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
/// use tokenvault::{
///     Clock, Error, HasRefreshToken, ManualClock, MemoryStore, NotExpired, Token, TokenStore,
///     ValidatingStore,
/// };
///
/// let clock = ManualClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000));
/// let store = ValidatingStore::new(MemoryStore::named("app"))
///     .with_clock(clock.clone())
///     .with(NotExpired::new(Duration::from_secs(60)))
///     .with(HasRefreshToken);
///
/// // Refused before anything is written: no refresh token.
/// let err = store.set_token("api", &Token::new("at".into())).unwrap_err();
/// assert!(matches!(err, Error::Validation(ref e) if e.validator == "has-refresh-token"));
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
/// let Err(Error::Validation(e)) = store.get_token("api") else { panic!() };
/// assert_eq!((e.validator.as_str(), e.namespace.as_deref(), e.key.as_str()),
///            ("not-expired", Some("app"), "api"));
/// assert_eq!(store.token_keys()?, ["api"]);
/// # Ok::<(), tokenvault::Error>(())
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
/// use tokenvault::{Error, MemoryStore, StoreCheck, Token, TokenStore, ValidatingStore, Validator};
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
/// let Err(Error::Validation(e)) = store.set_token("api", &dpop) else { panic!() };
/// assert_eq!(e.validator, "bearer-only");
/// assert_eq!(e.reason, "token_type is \"DPoP\", not \"Bearer\"");
/// # Ok::<(), tokenvault::Error>(())
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

/// What [`Validator::before_store`] sees: the token to be written, where, when, and what the
/// store holds already.
///
/// What the store holds is read only when asked for ([`stored`](Self::stored),
/// [`bound_identity`](Self::bound_identity)), so validators that do not ask cost no reads.
/// If such a read fails, the write fails with that error, whatever the validator answers.
///
/// A custom validator that uses the stored token: never replace a token with one that
/// expires sooner (an answer that arrives late, after a newer one was stored).
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use tokenvault::{MemoryStore, StoreCheck, Token, TokenStore, ValidatingStore, Validator};
///
/// struct NoOlder;
///
/// impl Validator for NoOlder {
///     fn name(&self) -> &str {
///         "no-older"
///     }
///     fn before_store(&self, check: &StoreCheck<'_>) -> Result<(), String> {
///         let stored = check.stored().and_then(Token::expires_at);
///         match (stored, check.token().expires_at()) {
///             (Some(old), Some(new)) if new < old => {
///                 Err("the token expires before the one stored".into())
///             }
///             _ => Ok(()),
///         }
///     }
/// }
///
/// let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
/// let store = ValidatingStore::new(MemoryStore::new()).with(NoOlder);
/// store.set_token("api", &Token::new("new".into()).with_expires_at(t0 + Duration::from_secs(60)))?;
/// let late = Token::new("old".into()).with_expires_at(t0);
/// assert!(store.set_token("api", &late).is_err());
/// assert!(store.set_token("other", &late).is_ok());
/// # Ok::<(), tokenvault::Error>(())
/// ```
pub struct StoreCheck<'a> {
    namespace: Option<&'a str>,
    key: &'a str,
    token: &'a Token,
    batch: &'a [(&'a str, &'a Token)],
    now: SystemTime,
    stored: OnceCell<Option<Token>>,
    snapshot: &'a Snapshot<'a>,
}

/// What [`Validator::after_retrieve`] sees: the token read, where, and when.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use std::time::SystemTime;
/// use tokenvault::{
///     Error, ManualClock, MemoryStore, RetrieveCheck, Token, TokenStore, ValidatingStore,
///     Validator,
/// };
///
/// /// Refuses to hand out tokens of the "admin" key outside the admin namespace.
/// struct AdminOnlyInAdmin;
///
/// impl Validator for AdminOnlyInAdmin {
///     fn name(&self) -> &str {
///         "admin-only-in-admin"
///     }
///     fn after_retrieve(&self, check: &RetrieveCheck<'_>) -> Result<(), String> {
///         if check.key() == "admin" && check.namespace() != Some("admin") {
///             return Err("the admin token is only served from the admin namespace".into());
///         }
///         Ok(())
///     }
/// }
///
/// /// Records when each key was last handed out.
/// #[derive(Default)]
/// struct LastUse(Mutex<Vec<(String, SystemTime, bool)>>);
///
/// impl Validator for LastUse {
///     fn name(&self) -> &str {
///         "last-use"
///     }
///     fn after_retrieve(&self, check: &RetrieveCheck<'_>) -> Result<(), String> {
///         let has_rt = check.token().refresh_token().is_some();
///         self.0.lock().unwrap().push((check.key().to_owned(), check.now(), has_rt));
///         Ok(())
///     }
/// }
///
/// let log = Arc::new(LastUse::default());
/// let store = ValidatingStore::new(MemoryStore::named("web"))
///     .with_clock(ManualClock::new(SystemTime::UNIX_EPOCH))
///     .with(AdminOnlyInAdmin)
///     .with(Arc::clone(&log));
/// store.set_token("admin", &Token::new("at".into()))?;
/// store.set_token("api", &Token::new("at".into()))?;
/// let Err(Error::Validation(e)) = store.get_token("admin") else { panic!() };
/// assert_eq!(e.namespace.as_deref(), Some("web"));
/// store.get_token("api")?;
/// assert_eq!(*log.0.lock().unwrap(), [("api".to_owned(), SystemTime::UNIX_EPOCH, false)]);
/// # Ok::<(), tokenvault::Error>(())
/// ```
#[derive(Debug)]
pub struct RetrieveCheck<'a> {
    namespace: Option<&'a str>,
    key: &'a str,
    token: &'a Token,
    now: SystemTime,
}

/// The identity a namespace is bound to, as [`StoreCheck::bound_identity`] finds it in the
/// tokens stored there: what [`UnchangingIdentity`] keeps from changing.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use tokenvault::{IdentityBinding, MemoryStore, StoreCheck, Token, TokenStore, ValidatingStore, Validator};
///
/// /// Records what each store call saw (shared through an `Arc`, so the test can look).
/// #[derive(Default)]
/// struct Spy(Mutex<Vec<IdentityBinding>>);
///
/// impl Validator for Spy {
///     fn name(&self) -> &str {
///         "spy"
///     }
///     fn before_store(&self, check: &StoreCheck<'_>) -> Result<(), String> {
///         self.0.lock().unwrap().push(check.bound_identity().clone());
///         Ok(())
///     }
/// }
///
/// let inner = MemoryStore::new();
/// let spy = Arc::new(Spy::default());
/// let store = ValidatingStore::new(inner.clone()).with(Arc::clone(&spy));
/// store.set_token("a", &Token::new("at".into()).with_identity("user-1"))?;
/// store.set_token("b", &Token::new("at".into()).with_identity("user-1"))?;
/// inner.set_token("c", &Token::new("at".into()))?; // written around the validators
/// store.set_token("d", &Token::new("at".into()))?;
/// assert_eq!(*spy.0.lock().unwrap(), [
///     IdentityBinding::Unbound,
///     IdentityBinding::Bound(Some("user-1".into())),
///     IdentityBinding::Conflict { first: "a".into(), second: "c".into() },
/// ]);
/// # Ok::<(), tokenvault::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdentityBinding {
    /// The namespace holds no token: nothing binds it yet.
    Unbound,
    /// Every stored token names this identity, or (`None`) every stored token names none.
    Bound(Option<String>),
    /// The tokens stored under these two keys name different identities (or one names none
    /// and the other one does): the namespace mixes identities.
    Conflict {
        /// The first key, in key order, of one identity.
        first: String,
        /// The first key of another.
        second: String,
    },
}

/// Refuses to hand out a token that has expired, or expires within `margin` (read by
/// [`Token::is_expired_at`] against the store's clock). A token without an expiry is not
/// expired.
///
/// Checks on read only, as Globus's `NotExpiredValidator` does: storing an expired token is
/// allowed, because a refresh answer, or a stored grant being refreshed, must not be lost
/// (its refresh token still works). The margin is how much life a token must have left to
/// be worth handing out; [`NotExpired::default`] has none.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use tokenvault::{Error, ManualClock, MemoryStore, NotExpired, Token, TokenStore, ValidatingStore};
///
/// let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
/// let clock = ManualClock::new(t0);
/// let store = ValidatingStore::new(MemoryStore::new())
///     .with_clock(clock.clone())
///     .with(NotExpired::new(Duration::from_secs(30)));
/// store.set_token("api", &Token::new("at".into()).with_expires_at(t0 + Duration::from_secs(100)))?;
/// store.set_token("forever", &Token::new("at".into()))?;
///
/// clock.advance(Duration::from_secs(69));
/// assert!(store.get_token("api")?.is_some()); // 31 s left
/// clock.advance(Duration::from_secs(1));
/// let Err(Error::Validation(e)) = store.get_token("api") else { panic!() }; // 30 s left
/// assert_eq!(e.validator, "not-expired");
/// assert!(store.get_token("forever")?.is_some());
///
/// // Storing an expired token is not refused.
/// store.set_token("old", &Token::new("at".into()).with_expires_at(t0))?;
/// # Ok::<(), tokenvault::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NotExpired {
    margin: Duration,
}

/// Refuses a token without a refresh token, both when it is stored and when it is read: for
/// applications that must be able to renew their tokens without the user.
///
/// Globus's `HasRefreshTokensValidator` checks on read only; checking on store as well makes
/// a login that got no refresh token (a missing `offline_access` scope, say) fail at once,
/// instead of at the first read. A refresh answer without a refresh token passes when
/// stored with [`store_response`](TokenStore::store_response), which keeps the stored one.
///
/// ```
/// use std::time::SystemTime;
/// use tokenvault::{Error, HasRefreshToken, MemoryStore, Token, TokenResponse, TokenStore, ValidatingStore};
///
/// let store = ValidatingStore::new(MemoryStore::new()).with(HasRefreshToken);
/// let Err(Error::Validation(e)) = store.set_token("api", &Token::new("at".into())) else {
///     panic!()
/// };
/// assert_eq!(e.reason, "the token has no refresh token");
///
/// store.set_token("api", &Token::new("at".into()).with_refresh_token("rt".into()))?;
/// let refresh = br#"{"access_token":"at2","token_type":"Bearer"}"#;
/// store.store_response_as("api", &TokenResponse::from_json(refresh, SystemTime::now())?)?;
/// assert!(store.get_token("api")?.unwrap().refresh_token().is_some());
/// # Ok::<(), tokenvault::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HasRefreshToken;

/// Refuses a token that lacks a scope required for its key (the resource server), when it is
/// stored and when it is read. Keys without requirements are not checked. The reason names
/// the missing scopes (scope names are not secrets).
///
/// A token whose response omitted `scope` has the scopes of the token it refreshed (RFC 6749
/// section 5.1, kept by [`store_response`](TokenStore::store_response)); a brand-new token
/// without scopes lacks them all.
///
/// ```
/// use tokenvault::{Error, MemoryStore, RequireScopes, Token, TokenStore, ValidatingStore};
///
/// let store = ValidatingStore::new(MemoryStore::new())
///     .with(RequireScopes::new().require("auth.example.org", ["openid", "email"]));
/// let partial = Token::new("at".into()).with_scopes(["openid", "profile"]);
/// let Err(Error::Validation(e)) = store.set_token("auth.example.org", &partial) else {
///     panic!()
/// };
/// assert_eq!(e.reason, r#"the token lacks the required scope(s) "email""#);
///
/// store.set_token("auth.example.org", &partial.clone().with_scopes(["openid", "email"]))?;
/// store.set_token("other.example.org", &partial)?; // no requirements there
/// # Ok::<(), tokenvault::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequireScopes {
    required: BTreeMap<String, Vec<String>>,
}

/// Keeps a namespace to one identity: a token is stored only if it names the identity the
/// namespace's tokens name ([`StoreCheck::bound_identity`]). Checks on store only.
///
/// - The binding is read from the stored tokens at every store, never cached: a refused
///   store changes nothing (Globus's storage adopts the new identity before its validators
///   run, so a refused store still rebinds it), writes through other handles are seen, and
///   a namespace whose tokens were all removed (logout) is unbound again.
/// - An unbound (empty) namespace takes any identity, but the tokens of one store call
///   must agree.
/// - A token of another identity is refused (Globus: `IdentityMismatchError`).
/// - A refresh answer names no identity, but [`store_response`](TokenStore::store_response)
///   merges the stored identity in ([`Token::refreshed_with`]), so a refresh passes (the
///   fix of Globus issue #1050).
/// - A new token without identity in a namespace bound to one is refused (Globus:
///   `MissingIdentityError`): it could be anyone's. Set the identity you established with
///   [`TokenResponse::with_identity`](crate::TokenResponse::with_identity). The reverse
///   holds too: a namespace whose tokens name no identity takes no token that names one.
/// - If the stored tokens already disagree (written around the validator), every store is
///   refused with a reason naming two keys that disagree; remove the wrong tokens. Globus
///   raises this when its storage is constructed.
///
/// To bind a namespace to another identity, remove its tokens first. The check is not
/// atomic with the write: two handles storing different identities into an empty namespace
/// at the same moment can both pass.
///
/// ```
/// use std::time::SystemTime;
/// use tokenvault::{Error, MemoryStore, Token, TokenResponse, TokenStore, UnchangingIdentity, ValidatingStore};
/// use tokenvault::secrecy::ExposeSecret;
///
/// let store = ValidatingStore::new(MemoryStore::new()).with(UnchangingIdentity);
/// let login = br#"{"access_token":"a1","token_type":"Bearer","refresh_token":"r1",
///                  "resource_server":"auth"}"#;
/// let login = TokenResponse::from_json(login, SystemTime::now())?.with_identity("user-1");
/// store.store_response(&login)?;
///
/// // A refresh answer carries no identity: the stored one is kept.
/// let refresh = br#"{"access_token":"a2","token_type":"Bearer","resource_server":"auth"}"#;
/// store.store_response(&TokenResponse::from_json(refresh, SystemTime::now())?)?;
/// assert_eq!(store.get_token("auth")?.unwrap().identity(), Some("user-1"));
///
/// // Another user's login is refused, and nothing changes.
/// let other = br#"{"access_token":"b1","token_type":"Bearer","resource_server":"auth"}"#;
/// let other = TokenResponse::from_json(other, SystemTime::now())?.with_identity("user-2");
/// let Err(Error::Validation(e)) = store.store_response(&other) else { panic!() };
/// assert_eq!(e.validator, "unchanging-identity");
/// assert_eq!(store.get_token("auth")?.unwrap().access_token().expose_secret(), "a2");
///
/// // After logout the namespace is free again.
/// store.remove_token("auth")?;
/// store.store_response(&other)?;
/// # Ok::<(), tokenvault::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UnchangingIdentity;

impl<S: TokenStore> ValidatingStore<S> {
    /// Wraps `inner`, with no validators yet and the [`SystemClock`].
    ///
    /// ```
    /// use tokenvault::{MemoryStore, Token, TokenStore, ValidatingStore};
    ///
    /// let store = ValidatingStore::new(MemoryStore::new()); // checks nothing yet
    /// store.set_token("k", &Token::new("at".into()))?;
    /// assert_eq!(store.inner().token_keys()?, ["k"]);
    /// # Ok::<(), tokenvault::Error>(())
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
    /// use tokenvault::{ManualClock, MemoryStore, ValidatingStore};
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
    /// use tokenvault::{HasRefreshToken, MemoryStore, NotExpired, ValidatingStore};
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
    /// use tokenvault::{MemoryStore, UnchangingIdentity, ValidatingStore};
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
    /// use tokenvault::{HasRefreshToken, MemoryStore, Token, TokenStore, ValidatingStore};
    ///
    /// let store = ValidatingStore::new(MemoryStore::new()).with(HasRefreshToken);
    /// store.inner().set_token("k", &Token::new("at".into()))?; // not checked
    /// assert!(store.get_token("k").is_err()); // checked
    /// assert!(store.inner().get_token("k")?.is_some());
    /// # Ok::<(), tokenvault::Error>(())
    /// ```
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Unwraps the store.
    ///
    /// ```
    /// use tokenvault::{MemoryStore, TokenStore, ValidatingStore};
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

    fn refusal(&self, validator: &dyn Validator, key: &str, reason: String) -> Error {
        Error::Validation(ValidationError::new(
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

impl StoreCheck<'_> {
    /// The namespace of the store, if it has one ([`TokenStore::namespace`]).
    pub fn namespace(&self) -> Option<&str> {
        self.namespace
    }

    /// The key the token is to be stored under.
    pub fn key(&self) -> &str {
        self.key
    }

    /// The token to be stored (after the refresh merge, when stored by `store_response`).
    pub fn token(&self) -> &Token {
        self.token
    }

    /// Every token of this store call, this one included, in order: they are written
    /// together or not at all.
    ///
    /// ```
    /// use tokenvault::{MemoryStore, StoreCheck, Token, TokenStore, ValidatingStore, Validator};
    ///
    /// /// Refuses responses that carry tokens for more than two resource servers.
    /// struct AtMostTwo;
    ///
    /// impl Validator for AtMostTwo {
    ///     fn name(&self) -> &str {
    ///         "at-most-two"
    ///     }
    ///     fn before_store(&self, check: &StoreCheck<'_>) -> Result<(), String> {
    ///         match check.batch().len() {
    ///             0..=2 => Ok(()),
    ///             n => Err(format!("{n} tokens in one store call")),
    ///         }
    ///     }
    /// }
    ///
    /// let store = ValidatingStore::new(MemoryStore::new()).with(AtMostTwo);
    /// let t = Token::new("at".into());
    /// store.set_tokens(&[("a", &t), ("b", &t)])?;
    /// assert!(store.set_tokens(&[("a", &t), ("b", &t), ("c", &t)]).is_err());
    /// assert_eq!(store.token_keys()?, ["a", "b"]);
    /// # Ok::<(), tokenvault::Error>(())
    /// ```
    pub fn batch(&self) -> &[(&str, &Token)] {
        self.batch
    }

    /// The time, from the store's clock (the same for every check of one call).
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use tokenvault::{Error, ManualClock, MemoryStore, StoreCheck, Token, TokenStore, ValidatingStore, Validator};
    ///
    /// /// Refuses tokens with less than five minutes to live, naming where they were headed.
    /// struct FiveMinutes;
    ///
    /// impl Validator for FiveMinutes {
    ///     fn name(&self) -> &str {
    ///         "five-minutes"
    ///     }
    ///     fn before_store(&self, check: &StoreCheck<'_>) -> Result<(), String> {
    ///         if check.token().is_expired_at(check.now(), Duration::from_secs(300)) {
    ///             return Err(format!(
    ///                 "less than 5 minutes left for {} in {:?}",
    ///                 check.key(),
    ///                 check.namespace()
    ///             ));
    ///         }
    ///         Ok(())
    ///     }
    /// }
    ///
    /// let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    /// let store = ValidatingStore::new(MemoryStore::named("app"))
    ///     .with_clock(ManualClock::new(t0))
    ///     .with(FiveMinutes);
    /// let short = Token::new("at".into()).with_expires_at(t0 + Duration::from_secs(299));
    /// let Err(Error::Validation(e)) = store.set_token("api", &short) else { panic!() };
    /// assert_eq!(e.reason, r#"less than 5 minutes left for api in Some("app")"#);
    /// # Ok::<(), tokenvault::Error>(())
    /// ```
    pub fn now(&self) -> SystemTime {
        self.now
    }

    /// The token stored under [`key`](Self::key) now, which this one would replace. Read
    /// from the inner store when first asked for.
    pub fn stored(&self) -> Option<&Token> {
        self.stored
            .get_or_init(|| {
                self.snapshot
                    .read(|store| store.get_token(self.key))
                    .flatten()
            })
            .as_ref()
    }

    /// The identity the namespace is bound to: what its stored tokens name, read from the
    /// inner store (every token of it, with its `token_keys` and `get_token`) when first
    /// asked for in a store call.
    pub fn bound_identity(&self) -> &IdentityBinding {
        self.snapshot.binding.get_or_init(|| {
            self.snapshot
                .read(binding_of)
                .unwrap_or(IdentityBinding::Unbound)
        })
    }
}

impl fmt::Debug for StoreCheck<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreCheck")
            .field("namespace", &self.namespace)
            .field("key", &self.key)
            .field("token", self.token)
            .field("batch", &self.batch.len())
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

impl RetrieveCheck<'_> {
    /// The namespace of the store, if it has one ([`TokenStore::namespace`]).
    pub fn namespace(&self) -> Option<&str> {
        self.namespace
    }

    /// The key the token was read from.
    pub fn key(&self) -> &str {
        self.key
    }

    /// The token read.
    pub fn token(&self) -> &Token {
        self.token
    }

    /// The time, from the store's clock.
    pub fn now(&self) -> SystemTime {
        self.now
    }
}

impl NotExpired {
    /// Refuses tokens that expire within `margin` from now.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tokenvault::NotExpired;
    ///
    /// assert_eq!(NotExpired::new(Duration::from_secs(60)).margin(), Duration::from_secs(60));
    /// assert_eq!(NotExpired::default().margin(), Duration::ZERO);
    /// ```
    pub fn new(margin: Duration) -> Self {
        Self { margin }
    }

    /// How long before its expiry a token counts as expired.
    pub fn margin(&self) -> Duration {
        self.margin
    }
}

impl Validator for NotExpired {
    fn name(&self) -> &str {
        "not-expired"
    }

    fn after_retrieve(&self, check: &RetrieveCheck<'_>) -> Result<(), String> {
        let token = check.token();
        if !token.is_expired_at(check.now(), self.margin) {
            return Ok(());
        }
        let at = token.expires_at().map_or(0, unix_secs);
        Err(if self.margin.is_zero() {
            format!(
                "the token expired at Unix time {at} (now {})",
                unix_secs(check.now())
            )
        } else {
            format!(
                "the token expires at Unix time {at}, within the {}s margin of now ({})",
                self.margin.as_secs(),
                unix_secs(check.now())
            )
        })
    }
}

impl HasRefreshToken {
    fn check(token: &Token) -> Result<(), String> {
        match token.refresh_token() {
            Some(_) => Ok(()),
            None => Err("the token has no refresh token".to_owned()),
        }
    }
}

impl Validator for HasRefreshToken {
    fn name(&self) -> &str {
        "has-refresh-token"
    }

    fn before_store(&self, check: &StoreCheck<'_>) -> Result<(), String> {
        Self::check(check.token())
    }

    fn after_retrieve(&self, check: &RetrieveCheck<'_>) -> Result<(), String> {
        Self::check(check.token())
    }
}

impl RequireScopes {
    /// No requirements yet.
    ///
    /// ```
    /// use tokenvault::RequireScopes;
    ///
    /// let rules = RequireScopes::new();
    /// assert!(rules.required("api").is_empty());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Requires `scopes` of the tokens under `key`; adds to what was required there before.
    ///
    /// ```
    /// use tokenvault::RequireScopes;
    ///
    /// let rules = RequireScopes::new()
    ///     .require("auth.globus.org", ["openid"])
    ///     .require("auth.globus.org", ["email", "openid"]);
    /// assert_eq!(rules.required("auth.globus.org"), ["openid", "email"]);
    /// ```
    #[must_use]
    pub fn require<I, T>(mut self, key: impl Into<String>, scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        let required = self.required.entry(key.into()).or_default();
        for scope in scopes {
            let scope = scope.into();
            if !required.contains(&scope) {
                required.push(scope);
            }
        }
        self
    }

    /// The scopes required under `key`, in the order they were first required.
    pub fn required(&self, key: &str) -> &[String] {
        self.required.get(key).map_or(&[], Vec::as_slice)
    }

    fn check(&self, key: &str, token: &Token) -> Result<(), String> {
        let missing: Vec<String> = self
            .required(key)
            .iter()
            .filter(|scope| !token.scopes().contains(scope))
            .map(|scope| format!("{scope:?}"))
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "the token lacks the required scope(s) {}",
                missing.join(", ")
            ))
        }
    }
}

impl Validator for RequireScopes {
    fn name(&self) -> &str {
        "require-scopes"
    }

    fn before_store(&self, check: &StoreCheck<'_>) -> Result<(), String> {
        self.check(check.key(), check.token())
    }

    fn after_retrieve(&self, check: &RetrieveCheck<'_>) -> Result<(), String> {
        self.check(check.key(), check.token())
    }
}

impl Validator for UnchangingIdentity {
    fn name(&self) -> &str {
        "unchanging-identity"
    }

    fn before_store(&self, check: &StoreCheck<'_>) -> Result<(), String> {
        let identity = check.token().identity();
        match check.bound_identity() {
            IdentityBinding::Unbound => {
                match check
                    .batch()
                    .iter()
                    .find(|(_, other)| other.identity() != identity)
                {
                    Some((other, _)) => Err(format!(
                        "the tokens stored together under {:?} and {other:?} name different \
                         identities",
                        check.key()
                    )),
                    None => Ok(()),
                }
            }
            IdentityBinding::Bound(bound) => match (bound.as_deref(), identity) {
                (a, b) if a == b => Ok(()),
                (Some(_), None) => Err("the token names no identity, and the namespace's tokens \
                                        name one; set it with TokenResponse::with_identity"
                    .to_owned()),
                (None, _) => Err("the token names an identity, and the namespace's tokens \
                                  name none; remove them first"
                    .to_owned()),
                (Some(_), Some(_)) => Err("the token names another identity than the \
                                           namespace's tokens; remove them (log out) first"
                    .to_owned()),
            },
            IdentityBinding::Conflict { first, second } => Err(format!(
                "the tokens stored under {first:?} and {second:?} name different identities; \
                 remove the wrong ones"
            )),
        }
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

/// What a store call has read of the inner store, shared by its checks; a failed read is
/// kept here and becomes the call's error.
struct Snapshot<'a> {
    store: &'a dyn TokenStore,
    binding: OnceCell<IdentityBinding>,
    failure: RefCell<Option<Error>>,
}

impl Snapshot<'_> {
    /// `read(store)`, or `None` with the error kept for the caller.
    fn read<T>(&self, read: impl FnOnce(&dyn TokenStore) -> Result<T>) -> Option<T> {
        match read(self.store) {
            Ok(value) => Some(value),
            Err(error) => {
                let mut failure = self.failure.borrow_mut();
                if failure.is_none() {
                    *failure = Some(error);
                }
                None
            }
        }
    }
}

/// The identity the tokens stored in `store` name.
fn binding_of(store: &dyn TokenStore) -> Result<IdentityBinding> {
    let mut seen: Option<(String, Option<String>)> = None;
    for key in store.token_keys()? {
        let Some(token) = store.get_token(&key)? else {
            continue; // removed since it was listed
        };
        let identity = token.identity();
        match &seen {
            None => seen = Some((key, identity.map(str::to_owned))),
            Some((first, bound)) if bound.as_deref() != identity => {
                return Ok(IdentityBinding::Conflict {
                    first: first.clone(),
                    second: key,
                })
            }
            Some(_) => {}
        }
    }
    Ok(match seen {
        None => IdentityBinding::Unbound,
        Some((_, identity)) => IdentityBinding::Bound(identity),
    })
}

/// Seconds since the Unix epoch (negative before it): for messages.
fn unix_secs(t: SystemTime) -> i128 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i128::from(d.as_secs()),
        Err(e) => -i128::from(e.duration().as_secs()),
    }
}
