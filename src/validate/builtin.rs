//! The validators tokenvault ships: [`NotExpired`], [`HasRefreshToken`],
//! [`RequireScopes`], [`UnchangingIdentity`].

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::token::Token;
use crate::token_error::Result;

use super::{IdentityBinding, RetrieveCheck, StoreCheck, Validator};

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
/// use tokenvault::store::TokenError;
/// use tokenvault::{Error, Token};
/// use tokenvault::oauth::ManualClock;
/// use tokenvault::store::{MemoryStore, NotExpired, TokenStore, ValidatingStore};
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
/// let Err(TokenError::Validation(e)) = store.get_token("api") else { panic!() }; // 30 s left
/// assert_eq!(e.validator, "not-expired");
/// assert!(store.get_token("forever")?.is_some());
///
/// // Storing an expired token is not refused.
/// store.set_token("old", &Token::new("at".into()).with_expires_at(t0))?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
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
/// stored with [`store_response`](crate::store::TokenStore::store_response), which keeps the stored one.
///
/// ```
/// use std::time::SystemTime;
/// use tokenvault::store::TokenError;
/// use tokenvault::{Error, Token};
/// use tokenvault::oauth::TokenResponse;
/// use tokenvault::store::{HasRefreshToken, MemoryStore, TokenStore, ValidatingStore};
///
/// let store = ValidatingStore::new(MemoryStore::new()).with(HasRefreshToken);
/// let Err(TokenError::Validation(e)) = store.set_token("api", &Token::new("at".into())) else {
///     panic!()
/// };
/// assert_eq!(e.reason, "the token has no refresh token");
///
/// store.set_token("api", &Token::new("at".into()).with_refresh_token("rt".into()))?;
/// let refresh = br#"{"access_token":"at2","token_type":"Bearer"}"#;
/// store.store_response_as("api", &TokenResponse::from_json(refresh, SystemTime::now())?)?;
/// assert!(store.get_token("api")?.unwrap().refresh_token().is_some());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HasRefreshToken;

/// Refuses a token that lacks a scope required for its key (the resource server), when it is
/// stored and when it is read. Keys without requirements are not checked. The reason names
/// the missing scopes (scope names are not secrets).
///
/// A token whose response omitted `scope` has the scopes of the token it refreshed (RFC 6749
/// section 5.1, kept by [`store_response`](crate::store::TokenStore::store_response)); a brand-new token
/// without scopes lacks them all.
///
/// ```
/// use tokenvault::store::TokenError;
/// use tokenvault::{Error, Token};
/// use tokenvault::store::{MemoryStore, RequireScopes, TokenStore, ValidatingStore};
///
/// let store = ValidatingStore::new(MemoryStore::new())
///     .with(RequireScopes::new().require("auth.example.org", ["openid", "email"]));
/// let partial = Token::new("at".into()).with_scopes(["openid", "profile"]);
/// let Err(TokenError::Validation(e)) = store.set_token("auth.example.org", &partial) else {
///     panic!()
/// };
/// assert_eq!(e.reason, r#"the token lacks the required scope(s) "email""#);
///
/// store.set_token("auth.example.org", &partial.clone().with_scopes(["openid", "email"]))?;
/// store.set_token("other.example.org", &partial)?; // no requirements there
/// # Ok::<(), Box<dyn std::error::Error>>(())
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
/// - A refresh answer names no identity, but [`store_response`](crate::store::TokenStore::store_response)
///   merges the stored identity in ([`Token::refreshed_with`]), so a refresh passes (the
///   fix of Globus issue #1050).
/// - A new token without identity in a namespace bound to one is refused (Globus:
///   `MissingIdentityError`): it could be anyone's. Set the identity you established with
///   [`TokenResponse::with_identity`](crate::oauth::TokenResponse::with_identity). The reverse
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
/// use tokenvault::store::TokenError;
/// use tokenvault::{Error, Token};
/// use tokenvault::oauth::TokenResponse;
/// use tokenvault::store::{MemoryStore, TokenStore, UnchangingIdentity, ValidatingStore};
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
/// let Err(TokenError::Validation(e)) = store.store_response(&other) else { panic!() };
/// assert_eq!(e.validator, "unchanging-identity");
/// assert_eq!(store.get_token("auth")?.unwrap().access_token().expose_secret(), "a2");
///
/// // After logout the namespace is free again.
/// store.remove_token("auth")?;
/// store.store_response(&other)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UnchangingIdentity;

impl NotExpired {
    /// Refuses tokens that expire within `margin` from now.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tokenvault::store::NotExpired;
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
    /// use tokenvault::store::RequireScopes;
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
    /// use tokenvault::store::RequireScopes;
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

/// Seconds since the Unix epoch (negative before it): for messages.
fn unix_secs(t: SystemTime) -> i128 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i128::from(d.as_secs()),
        Err(e) => -i128::from(e.duration().as_secs()),
    }
}
