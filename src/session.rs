//! Guest and user tokens: one record per principal, so that a shared store never serves one
//! user's token to another visitor.

use std::fmt;

use crate::response::TokenResponse;
use crate::token::Token;
use crate::token_error::{Result, TokenError, ValidationError};
use crate::token_store::TokenStore;

/// Whose token a record holds: the client's own guest token (a client-credentials grant,
/// shared by every anonymous visitor) or one user's token.
///
/// ```
/// use tokenvault::store::Principal;
///
/// let alice = Principal::user("alice");
/// assert_eq!(alice, Principal::User("alice".to_owned()));
/// assert_eq!(alice.user_id(), Some("alice"));
/// assert_eq!(Principal::Guest.user_id(), None);
/// assert_eq!(alice.to_string(), r#"user "alice""#);
/// assert_eq!(Principal::Guest.to_string(), "guest");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Principal {
    /// The client's own token, tied to no user: Commerce Layer's guest token, Sharetribe's
    /// anonymous token, any client-credentials grant.
    Guest,
    /// The token of the user with this id (the id your login flow established). The id must
    /// not be empty: an empty id is a missing session, not a user, and [`Sessions`] refuses
    /// it rather than let every visitor without a session share one record.
    User(String),
}

impl Principal {
    /// The user with id `id`.
    ///
    /// ```
    /// use tokenvault::store::Principal;
    ///
    /// assert_eq!(Principal::user("u-1"), Principal::User("u-1".into()));
    /// ```
    pub fn user(id: impl Into<String>) -> Self {
        Self::User(id.into())
    }

    /// The user id, or `None` for the guest.
    ///
    /// ```
    /// use tokenvault::store::Principal;
    ///
    /// assert_eq!(Principal::user("u-1").user_id(), Some("u-1"));
    /// assert_eq!(Principal::Guest.user_id(), None);
    /// ```
    pub fn user_id(&self) -> Option<&str> {
        match self {
            Self::Guest => None,
            Self::User(id) => Some(id),
        }
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Guest => f.write_str("guest"),
            Self::User(id) => write!(f, "user {id:?}"),
        }
    }
}

/// The guest token and the user tokens of one OAuth client and scope, kept in any
/// [`TokenStore`] as one record per [`Principal`].
///
/// This is Commerce Layer's guest and customer slots done so that a shared store is safe:
/// - **A user's record is keyed by the user's id.** Commerce Layer's default key
///   `cl_${type}-${clientId}-${scope}` has none, so a store shared by a server hands the
///   last customer's token to every visitor. Here [`get_token`](Self::get_token) returns exactly
///   the asked principal's record, never another user's and never the guest's.
/// - **Falling back to the guest token is explicit.** [`token_or_guest`](Self::token_or_guest)
///   returns the user's token if the user has a record, else the guest token, and says
///   which one it is. It falls back only when the user has *no* record: an expired user token
///   is still returned as the user's, so a failed refresh is an error for the caller to
///   handle (re-authenticate), never a silent downgrade to the guest token.
/// - **Keys use the configured scope.** Every key is built from the client id and the
///   scope given to [`new`](Self::new), never from the scope a token response echoes back
///   (Commerce Layer writes under the echoed scope and reads under the configured one, so
///   every read misses when the server answers with a different scope string).
/// - **Tokens are checked against the principal.** A user token that names another identity
///   is refused; one that names none is stored with the user's id as its identity. A guest
///   token may name no identity or the client id, never a user's. A record that fails these
///   checks on read (written past `Sessions`, straight into the store) is an error, not a
///   token. A refused write writes nothing.
///
/// # Record keys
///
/// [`key`](Self::key) gives the record key, built from the kind, then each part prefixed with
/// its length in bytes:
///
/// ```text
/// guest/<len>:<client id>/<len>:<scope>
/// user/<len>:<client id>/<len>:<scope>/<len>:<user id>
/// ```
///
/// so that no two different (kind, client id, scope, user id) give the same key, whatever
/// characters the ids hold (`/`, `:`, digits, any Unicode). A vault [`Namespace`](crate::Namespace)
/// accepts keys up to [`MAX_NAME_LEN`](crate::format::MAX_NAME_LEN) bytes; longer ids are refused
/// with [`Error::InvalidName`](crate::Error::InvalidName) by the namespace.
///
/// Keys are names, not secrets, but a key that holds a user id shows that the user has a
/// session. A vault stores record names only as HMACs (the real names live inside the sealed
/// records), so the user ids are not visible in its files; a store of your own should do the
/// same or keep its storage private.
///
/// # Examples
///
/// Over a vault namespace (one namespace per client or tenant):
///
/// ```
/// use tokenvault::{KeySource, Token, Vault};
/// use tokenvault::store::{Principal, Sessions};
/// use tokenvault::secrecy::{ExposeSecret, SecretBox};
///
/// # let dir = tempfile::tempdir()?;
/// let vault = Vault::create(dir.path().join("v"), &KeySource::raw_key(SecretBox::new(Box::new([7u8; 32]))))?;
/// let sessions = Sessions::new(vault.namespace("shop-eu")?, "client-1", "market:all");
///
/// sessions.set_token(&Principal::Guest, &Token::new("guest-at".into()))?;
/// sessions.set_token(&Principal::user("alice"), &Token::new("alice-at".into()))?;
///
/// let alice = sessions.get_token(&Principal::user("alice"))?.unwrap();
/// assert_eq!(alice.access_token().expose_secret(), "alice-at");
/// assert_eq!(alice.identity(), Some("alice")); // filled in from the principal
/// // Bob has no token: not Alice's, not the guest's.
/// assert!(sessions.get_token(&Principal::user("bob"))?.is_none());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// Over a [`MemoryStore`](crate::store::MemoryStore), with the explicit fallback to the guest token:
///
/// ```
/// use tokenvault::Token;
/// use tokenvault::store::{MemoryStore, Principal, Sessions};
/// use tokenvault::secrecy::ExposeSecret;
///
/// let sessions = Sessions::new(MemoryStore::new(), "client-1", "market:all");
/// sessions.set_token(&Principal::Guest, &Token::new("guest-at".into()))?;
///
/// let (whose, token) = sessions.token_or_guest("bob")?.unwrap();
/// assert_eq!(whose, Principal::Guest);
/// assert_eq!(token.access_token().expose_secret(), "guest-at");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct Sessions<S> {
    store: S,
    client_id: String,
    scope: String,
}

impl<S: TokenStore> Sessions<S> {
    /// The sessions of OAuth client `client_id` for `scope` (the scope you request, as one
    /// string), kept in `store`. Both are part of every record key, so two `Sessions` with
    /// another client id or scope on one store never see each other's tokens.
    ///
    /// ```
    /// use tokenvault::Token;
    /// use tokenvault::store::{MemoryStore, Principal, Sessions};
    ///
    /// let store = MemoryStore::new();
    /// let shop_a = Sessions::new(store.clone(), "client-a", "market:all");
    /// let shop_b = Sessions::new(store, "client-b", "market:all");
    /// shop_a.set_token(&Principal::Guest, &Token::new("a".into()))?;
    /// assert!(shop_b.get_token(&Principal::Guest)?.is_none());
    /// assert_eq!(shop_b.client_id(), "client-b");
    /// assert_eq!(shop_b.scope(), "market:all");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(store: S, client_id: impl Into<String>, scope: impl Into<String>) -> Self {
        Self {
            store,
            client_id: client_id.into(),
            scope: scope.into(),
        }
    }

    /// The token stored for `principal`: exactly that principal's record, never another
    /// user's and never the guest's.
    ///
    /// ```
    /// use tokenvault::Token;
    /// use tokenvault::store::{MemoryStore, Principal, Sessions};
    /// use tokenvault::secrecy::ExposeSecret;
    ///
    /// let sessions = Sessions::new(MemoryStore::new(), "client-1", "market:all");
    /// sessions.set_token(&Principal::Guest, &Token::new("guest-at".into()))?;
    /// sessions.set_token(&Principal::user("alice"), &Token::new("alice-at".into()))?;
    ///
    /// let guest = sessions.get_token(&Principal::Guest)?.unwrap();
    /// assert_eq!(guest.access_token().expose_secret(), "guest-at");
    /// assert!(sessions.get_token(&Principal::user("bob"))?.is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`TokenError::Validation`] (validator `principal`) for an empty user id, or if the stored
    /// record names another identity than `principal` (it was written past `Sessions`);
    /// whatever the store fails with.
    pub fn get_token(&self, principal: &Principal) -> Result<Option<Token>> {
        let key = self.checked_key(principal)?;
        match self.store.get_token(&key)? {
            Some(token) => {
                self.check_identity(principal, &key, &token, Stage::Read)?;
                Ok(Some(token))
            }
            None => Ok(None),
        }
    }

    /// The token of `user` if the user has a record, else the guest token: the explicit,
    /// opt-in fallback. The result says whose token it is.
    ///
    /// The fallback happens only when the user has no record at all. An expired user token
    /// is returned as the user's (refresh it, or send the user to log in again): a failed
    /// refresh must not quietly turn a signed-in user into a guest.
    ///
    /// ```
    /// use tokenvault::Token;
    /// use tokenvault::store::{MemoryStore, Principal, Sessions};
    ///
    /// let sessions = Sessions::new(MemoryStore::new(), "client-1", "market:all");
    /// assert!(sessions.token_or_guest("alice")?.is_none()); // nothing at all
    ///
    /// sessions.set_token(&Principal::Guest, &Token::new("guest-at".into()))?;
    /// let (whose, _) = sessions.token_or_guest("alice")?.unwrap();
    /// assert_eq!(whose, Principal::Guest);
    ///
    /// sessions.set_token(&Principal::user("alice"), &Token::new("alice-at".into()))?;
    /// let (whose, _) = sessions.token_or_guest("alice")?.unwrap();
    /// assert_eq!(whose, Principal::user("alice"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`get_token`](Self::get_token), for the user and then the guest: an error reading the
    /// user's record is returned, never answered with the guest token.
    pub fn token_or_guest(&self, user: &str) -> Result<Option<(Principal, Token)>> {
        let principal = Principal::user(user);
        if let Some(token) = self.get_token(&principal)? {
            return Ok(Some((principal, token)));
        }
        Ok(self
            .get_token(&Principal::Guest)?
            .map(|token| (Principal::Guest, token)))
    }

    /// Stores `token` as `principal`'s, replacing what was stored. A user token without an
    /// identity is stored with the user's id as its identity.
    ///
    /// ```
    /// use tokenvault::store::TokenError;
    /// use tokenvault::{Error, Token};
    /// use tokenvault::store::{MemoryStore, Principal, Sessions};
    ///
    /// let sessions = Sessions::new(MemoryStore::new(), "client-1", "market:all");
    /// let bob = Principal::user("bob");
    /// sessions.set_token(&bob, &Token::new("bob-at".into()))?;
    /// assert_eq!(sessions.get_token(&bob)?.unwrap().identity(), Some("bob"));
    ///
    /// // Alice's token is not filed as Bob's, nor as the shared guest token.
    /// let alices = Token::new("alice-at".into()).with_identity("alice");
    /// assert!(matches!(sessions.set_token(&bob, &alices), Err(TokenError::Validation(_))));
    /// assert!(matches!(sessions.set_token(&Principal::Guest, &alices), Err(TokenError::Validation(_))));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`TokenError::Validation`] (validator `principal`), with nothing written, for an empty user
    /// id, a user token that names another identity, or a guest token that names an identity
    /// other than the client id; whatever the store fails with.
    pub fn set_token(&self, principal: &Principal, token: &Token) -> Result<()> {
        let key = self.checked_key(principal)?;
        let token = self.owned_token(principal, &key, token)?;
        self.store.set_token(&key, &token)
    }

    /// Stores a token response (one token) as `principal`'s, merged with the token stored
    /// for it by the refresh rules of [`Token::refreshed_with`] (through the store's
    /// [`store_response_as`](TokenStore::store_response_as)): a refresh answer without a
    /// refresh token keeps the stored one, and so on. The key uses the configured scope
    /// whatever scope the response echoes; the token keeps the echoed scopes.
    ///
    /// ```
    /// use std::time::SystemTime;
    /// use tokenvault::oauth::TokenResponse;
    /// use tokenvault::store::{MemoryStore, Principal, Sessions};
    /// use tokenvault::secrecy::ExposeSecret;
    ///
    /// let sessions = Sessions::new(MemoryStore::new(), "client-1", "market:all");
    /// let alice = Principal::user("alice");
    /// let login = br#"{"access_token":"a1","token_type":"Bearer","refresh_token":"r1",
    ///     "scope":"market:id:xYz"}"#;
    /// sessions.store_response(&alice, &TokenResponse::from_json(login, SystemTime::now())?)?;
    ///
    /// let refresh = br#"{"access_token":"a2","token_type":"Bearer"}"#;
    /// sessions.store_response(&alice, &TokenResponse::from_json(refresh, SystemTime::now())?)?;
    ///
    /// // Found under the configured scope, although the server echoed another one.
    /// let token = sessions.get_token(&alice)?.unwrap();
    /// assert_eq!(token.access_token().expose_secret(), "a2");
    /// assert_eq!(token.refresh_token().unwrap().expose_secret(), "r1");
    /// assert_eq!(token.scopes(), ["market:id:xYz"]);
    /// assert_eq!(token.identity(), Some("alice"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`set_token`](Self::set_token); [`TokenError::InvalidResponse`] if the response does not hold
    /// exactly one token.
    pub fn store_response(&self, principal: &Principal, response: &TokenResponse) -> Result<()> {
        let key = self.checked_key(principal)?;
        let [token] = response.tokens() else {
            return Err(TokenError::invalid_response(format!(
                "a session takes a response with one token, not {}",
                response.len()
            )));
        };
        let token = self.owned_token(principal, &key, token)?;
        self.store
            .store_response_as(&key, &TokenResponse::from_tokens(vec![token]))
    }

    /// Removes `principal`'s token (a local logout); returns whether there was one. Other
    /// principals' records are untouched.
    ///
    /// ```
    /// use tokenvault::Token;
    /// use tokenvault::store::{MemoryStore, Principal, Sessions};
    ///
    /// let sessions = Sessions::new(MemoryStore::new(), "client-1", "market:all");
    /// let alice = Principal::user("alice");
    /// sessions.set_token(&alice, &Token::new("alice-at".into()))?;
    /// sessions.set_token(&Principal::Guest, &Token::new("guest-at".into()))?;
    /// assert!(sessions.remove_token(&alice)?);
    /// assert!(!sessions.remove_token(&alice)?);
    /// assert!(sessions.get_token(&Principal::Guest)?.is_some());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`TokenError::Validation`] for an empty user id; whatever the store fails with.
    pub fn remove_token(&self, principal: &Principal) -> Result<bool> {
        let key = self.checked_key(principal)?;
        self.store.remove_token(&key)
    }

    /// The record key of `principal`'s token (see [Record keys](Sessions#record-keys)).
    ///
    /// ```
    /// use tokenvault::store::{MemoryStore, Principal, Sessions};
    ///
    /// let sessions = Sessions::new(MemoryStore::new(), "shop/1", "market:all");
    /// assert_eq!(sessions.key(&Principal::Guest), "guest/6:shop/1/10:market:all");
    /// assert_eq!(sessions.key(&Principal::user("ann")), "user/6:shop/1/10:market:all/3:ann");
    /// ```
    pub fn key(&self, principal: &Principal) -> String {
        let user = principal.user_id();
        let mut key = String::with_capacity(
            KEY_OVERHEAD + self.client_id.len() + self.scope.len() + user.map_or(0, str::len),
        );
        key.push_str(match principal {
            Principal::Guest => GUEST,
            Principal::User(_) => USER,
        });
        push_part(&mut key, &self.client_id);
        push_part(&mut key, &self.scope);
        if let Some(user) = user {
            push_part(&mut key, user);
        }
        key
    }

    /// The OAuth client id given to [`new`](Self::new).
    ///
    /// ```
    /// use tokenvault::store::{MemoryStore, Sessions};
    ///
    /// assert_eq!(Sessions::new(MemoryStore::new(), "c", "s").client_id(), "c");
    /// ```
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The configured scope given to [`new`](Self::new): the one every key is built from.
    ///
    /// ```
    /// use tokenvault::store::{MemoryStore, Sessions};
    ///
    /// assert_eq!(Sessions::new(MemoryStore::new(), "c", "s").scope(), "s");
    /// ```
    pub fn scope(&self) -> &str {
        &self.scope
    }

    /// The underlying store.
    ///
    /// ```
    /// use tokenvault::Token;
    /// use tokenvault::store::{MemoryStore, Principal, Sessions, TokenStore};
    ///
    /// let sessions = Sessions::new(MemoryStore::new(), "c", "s");
    /// sessions.set_token(&Principal::Guest, &Token::new("at".into()))?;
    /// assert_eq!(sessions.inner().token_keys()?, [sessions.key(&Principal::Guest)]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn inner(&self) -> &S {
        &self.store
    }

    /// The record key, after refusing an empty user id.
    fn checked_key(&self, principal: &Principal) -> Result<String> {
        let key = self.key(principal);
        if principal.user_id() == Some("") {
            return Err(self.refusal(
                &key,
                "the user id is empty: an empty id is a missing session, not a user",
            ));
        }
        Ok(key)
    }

    /// `token` as it is stored for `principal`: checked, and with the user's id as identity.
    fn owned_token(&self, principal: &Principal, key: &str, token: &Token) -> Result<Token> {
        self.check_identity(principal, key, token, Stage::Write)?;
        Ok(match (principal, token.identity()) {
            (Principal::User(id), None) => token.clone().with_identity(id.as_str()),
            _ => token.clone(),
        })
    }

    /// Refuses a token whose identity is not `principal`'s.
    fn check_identity(
        &self,
        principal: &Principal,
        key: &str,
        token: &Token,
        stage: Stage,
    ) -> Result<()> {
        let (ok, what) = match (principal, token.identity()) {
            (_, None) => (true, ""),
            (Principal::User(id), Some(identity)) => (
                identity == id,
                "names another identity than the user it is filed under",
            ),
            (Principal::Guest, Some(identity)) => (
                identity == self.client_id,
                "names an identity other than the client id: a user's token is never the \
                 shared guest token",
            ),
        };
        if ok {
            return Ok(());
        }
        let whose = match stage {
            Stage::Write => "the token",
            Stage::Read => "the stored record (written past Sessions)",
        };
        Err(self.refusal(key, &format!("{whose} {what}")))
    }

    fn refusal(&self, key: &str, reason: &str) -> TokenError {
        TokenError::Validation(ValidationError::new(
            VALIDATOR,
            self.store.namespace(),
            key,
            reason,
        ))
    }
}

/// Whether a token is being stored or was read back.
#[derive(Clone, Copy)]
enum Stage {
    Write,
    Read,
}

/// Appends `/<len>:<part>`, the length in bytes: what makes the key encoding injective.
fn push_part(key: &mut String, part: &str) {
    key.push('/');
    key.push_str(&part.len().to_string());
    key.push(':');
    key.push_str(part);
}

/// The validator name of the errors `Sessions` returns.
const VALIDATOR: &str = "principal";
/// The kind that starts a guest record's key.
const GUEST: &str = "guest";
/// The kind that starts a user record's key.
const USER: &str = "user";
/// Room for the kind and three `/<len>:` prefixes (a length has at most 20 digits).
const KEY_OVERHEAD: usize = 5 + 3 * 22;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token_store::MemoryStore;

    /// Decodes a key back into (kind, parts): that it always can is what makes keys unique.
    fn decode(key: &str) -> Option<(&str, Vec<&str>)> {
        let (kind, mut rest) = key.split_once('/')?;
        let mut parts = Vec::new();
        loop {
            let (len, after) = rest.split_once(':')?;
            let len: usize = len.parse().ok()?;
            parts.push(after.get(..len)?);
            match after.get(len..)? {
                "" => return Some((kind, parts)),
                tail => rest = tail.strip_prefix('/')?,
            }
        }
    }

    #[test]
    fn keys_decode_to_their_parts() {
        let s = Sessions::new(MemoryStore::new(), "a/1:b", "é/0:");
        assert_eq!(
            decode(&s.key(&Principal::Guest)),
            Some(("guest", vec!["a/1:b", "é/0:"]))
        );
        assert_eq!(
            decode(&s.key(&Principal::user("/3:x"))),
            Some(("user", vec!["a/1:b", "é/0:", "/3:x"]))
        );
        assert_eq!(
            decode(&Sessions::new(MemoryStore::new(), "", "").key(&Principal::user(""))),
            Some(("user", vec!["", "", ""]))
        );
    }

    #[test]
    fn refusals_name_the_key_not_the_token() {
        let s = Sessions::new(MemoryStore::named("ns"), "c", "s");
        let token = Token::new("SECRET-AT".into()).with_identity("mallory");
        let Err(TokenError::Validation(e)) = s.set_token(&Principal::user("bob"), &token) else {
            panic!("expected a validation error");
        };
        assert_eq!(e.validator, VALIDATOR);
        assert_eq!(e.namespace.as_deref(), Some("ns"));
        assert_eq!(e.key, s.key(&Principal::user("bob")));
        let text = TokenError::Validation(e).to_string();
        assert!(
            !text.contains("SECRET-AT") && !text.contains("mallory"),
            "{text}"
        );
    }
}
