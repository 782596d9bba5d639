//! What a [`Validator`](super::Validator) sees: [`StoreCheck`] before a write,
//! [`RetrieveCheck`] after a read, and the identity the stored tokens are bound to.

use std::cell::{OnceCell, RefCell};
use std::fmt;
use std::time::SystemTime;

use crate::token::Token;
use crate::token_error::{Result, TokenError};
use crate::token_store::TokenStore;

/// What [`Validator::before_store`](super::Validator::before_store) sees: the token to be written, where, when, and what the
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
/// use tokenvault::Token;
/// use tokenvault::store::{MemoryStore, StoreCheck, TokenStore, ValidatingStore, Validator};
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
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct StoreCheck<'a> {
    pub(super) namespace: Option<&'a str>,
    pub(super) key: &'a str,
    pub(super) token: &'a Token,
    pub(super) batch: &'a [(&'a str, &'a Token)],
    pub(super) now: SystemTime,
    pub(super) stored: OnceCell<Option<Token>>,
    pub(super) snapshot: &'a Snapshot<'a>,
}

/// What [`Validator::after_retrieve`](super::Validator::after_retrieve) sees: the token read, where, and when.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use std::time::SystemTime;
/// use tokenvault::store::TokenError;
/// use tokenvault::{Error, Token};
/// use tokenvault::oauth::ManualClock;
/// use tokenvault::store::{MemoryStore, RetrieveCheck, TokenStore, ValidatingStore, Validator};
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
/// let Err(TokenError::Validation(e)) = store.get_token("admin") else { panic!() };
/// assert_eq!(e.namespace.as_deref(), Some("web"));
/// store.get_token("api")?;
/// assert_eq!(*log.0.lock().unwrap(), [("api".to_owned(), SystemTime::UNIX_EPOCH, false)]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct RetrieveCheck<'a> {
    pub(super) namespace: Option<&'a str>,
    pub(super) key: &'a str,
    pub(super) token: &'a Token,
    pub(super) now: SystemTime,
}

/// The identity a namespace is bound to, as [`StoreCheck::bound_identity`] finds it in the
/// tokens stored there: what [`UnchangingIdentity`](super::UnchangingIdentity) keeps from changing.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use tokenvault::Token;
/// use tokenvault::store::{IdentityBinding, MemoryStore, StoreCheck, TokenStore, ValidatingStore, Validator};
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
/// # Ok::<(), Box<dyn std::error::Error>>(())
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
    /// use tokenvault::Token;
    /// use tokenvault::store::{MemoryStore, StoreCheck, TokenStore, ValidatingStore, Validator};
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
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn batch(&self) -> &[(&str, &Token)] {
        self.batch
    }

    /// The time, from the store's clock (the same for every check of one call).
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use tokenvault::store::TokenError;
    /// use tokenvault::{Error, Token};
    /// use tokenvault::oauth::ManualClock;
    /// use tokenvault::store::{MemoryStore, StoreCheck, TokenStore, ValidatingStore, Validator};
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
    /// let Err(TokenError::Validation(e)) = store.set_token("api", &short) else { panic!() };
    /// assert_eq!(e.reason, r#"less than 5 minutes left for api in Some("app")"#);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
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

/// What a store call has read of the inner store, shared by its checks; a failed read is
/// kept here and becomes the call's error.
pub(super) struct Snapshot<'a> {
    pub(super) store: &'a dyn TokenStore,
    pub(super) binding: OnceCell<IdentityBinding>,
    pub(super) failure: RefCell<Option<TokenError>>,
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
pub(super) fn binding_of(store: &dyn TokenStore) -> Result<IdentityBinding> {
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
