//! The token-store interface, and the in-memory store.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use crate::error::Error;
use crate::format::RecordType;
use crate::namespace::{InternalKey, Namespace};
use crate::response::TokenResponse;
use crate::token::Token;
use crate::token_error::{Result, TokenError};

/// A place that keeps tokens by key: what application code takes when it should not care
/// where tokens live.
///
/// Implemented by a vault [`Namespace`] (encrypted, durable), by [`MemoryStore`] (wiped on
/// drop, for tests and short-lived processes), by [`ValidatingStore`](crate::store::ValidatingStore)
/// around any store, and by your own types. It is Sharetribe's `setToken` / `getToken` /
/// `removeToken` with a key, as Globus keys its records by resource server.
///
/// The calls are blocking. A store reached over the network blocks the calling thread; call
/// it from `spawn_blocking` in async code.
///
/// ```
/// use tokenvault::Token;
/// use tokenvault::store::{MemoryStore, TokenStore};
/// use tokenvault::secrecy::ExposeSecret;
///
/// // Code that takes "a token store", whichever it is.
/// fn remember(store: &dyn TokenStore, token: &Token) -> tokenvault::store::Result<()> {
///     store.set_token("api.example.org", token)
/// }
///
/// let store = MemoryStore::new();
/// remember(&store, &Token::new("at".into()))?;
/// let token = store.get_token("api.example.org")?.unwrap();
/// assert_eq!(token.access_token().expose_secret(), "at");
/// assert!(store.remove_token("api.example.org")?);
/// assert!(!store.remove_token("api.example.org")?);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// A store of your own implements the four required methods; `examples/custom_store.rs`
/// shows one.
pub trait TokenStore: Send + Sync {
    /// The token stored under `key`, if any.
    ///
    /// # Errors
    /// Whatever the store fails with ([`TokenError::Store`] for a user-written store).
    fn get_token(&self, key: &str) -> Result<Option<Token>>;

    /// Stores `token` under `key`, replacing what was there.
    ///
    /// # Errors
    /// Whatever the store fails with.
    fn set_token(&self, key: &str, token: &Token) -> Result<()>;

    /// Removes the token under `key`; returns whether there was one.
    ///
    /// # Errors
    /// Whatever the store fails with.
    fn remove_token(&self, key: &str) -> Result<bool>;

    /// The keys that hold tokens, sorted. On a vault [`Namespace`], this leaves out records
    /// of other types ([`Secret`](crate::Secret)s), which [`Namespace::keys`] lists too.
    ///
    /// # Errors
    /// Whatever the store fails with.
    fn token_keys(&self) -> Result<Vec<String>>;

    /// Stores several tokens. The vault's namespaces and [`MemoryStore`] store them
    /// atomically (all or none); this default stores them one by one, so a store that can do
    /// better should override it.
    ///
    /// # Errors
    /// Whatever the store fails with.
    fn set_tokens(&self, tokens: &[(&str, &Token)]) -> Result<()> {
        for (key, token) in tokens {
            self.set_token(key, token)?;
        }
        Ok(())
    }

    /// The namespace this store stands for, if it has one: used in error messages.
    fn namespace(&self) -> Option<&str> {
        None
    }

    /// Stores a token response: one record per resource server, keyed by the resource server,
    /// each merged with the record already stored there by the refresh rules of
    /// [`Token::refreshed_with`] (a response without a refresh token keeps the stored one,
    /// and so on). All the response's records are written together (atomically where the
    /// store's [`set_tokens`](Self::set_tokens) is). Returns the keys written.
    ///
    /// ```
    /// use std::time::SystemTime;
    /// use tokenvault::oauth::TokenResponse;
    /// use tokenvault::store::{MemoryStore, TokenStore};
    /// use tokenvault::secrecy::ExposeSecret;
    ///
    /// let store = MemoryStore::new();
    /// let login = br#"{"access_token":"a1","token_type":"Bearer","resource_server":"auth",
    ///     "refresh_token":"r1","scope":"openid","other_tokens":[
    ///     {"access_token":"a2","token_type":"Bearer","resource_server":"transfer"}]}"#;
    /// let keys = store.store_response(&TokenResponse::from_json(login, SystemTime::now())?)?;
    /// assert_eq!(keys, ["auth", "transfer"]);
    ///
    /// // A refresh answer without refresh token or scope keeps the stored ones.
    /// let refresh = br#"{"access_token":"a3","token_type":"Bearer","resource_server":"auth"}"#;
    /// store.store_response(&TokenResponse::from_json(refresh, SystemTime::now())?)?;
    /// let auth = store.get_token("auth")?.unwrap();
    /// assert_eq!(auth.access_token().expose_secret(), "a3");
    /// assert_eq!(auth.refresh_token().unwrap().expose_secret(), "r1");
    /// assert_eq!(auth.scopes(), ["openid"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`TokenError::InvalidResponse`] if a token in the response has no resource server (store
    /// such a response with [`store_response_as`](Self::store_response_as)) or two tokens
    /// name the same one; whatever the store fails with.
    fn store_response(&self, response: &TokenResponse) -> Result<Vec<String>> {
        let mut keyed = Vec::with_capacity(response.len());
        for token in response.tokens() {
            let key = token.resource_server().ok_or_else(|| {
                TokenError::invalid_response(
                    "a token in the response names no resource_server; store it with \
                     store_response_as",
                )
            })?;
            if keyed.iter().any(|(k, _): &(&str, Token)| *k == key) {
                return Err(TokenError::invalid_response(format!(
                    "the response holds two tokens for resource server {key:?}"
                )));
            }
            keyed.push((key, self.merged_with_stored(key, token)?));
        }
        let refs: Vec<(&str, &Token)> = keyed.iter().map(|(k, t)| (*k, t)).collect();
        self.set_tokens(&refs)?;
        Ok(keyed.iter().map(|(k, _)| (*k).to_owned()).collect())
    }

    /// Stores a response that holds one token under `key`, merged with the token stored
    /// there by the refresh rules of [`Token::refreshed_with`]: for plain RFC 6749 responses,
    /// which name no resource server.
    ///
    /// # Errors
    /// [`TokenError::InvalidResponse`] if the response does not hold exactly one token; whatever
    /// the store fails with.
    fn store_response_as(&self, key: &str, response: &TokenResponse) -> Result<()> {
        let [token] = response.tokens() else {
            return Err(TokenError::invalid_response(format!(
                "store_response_as takes a response with one token, not {}",
                response.len()
            )));
        };
        let merged = self.merged_with_stored(key, token)?;
        self.set_token(key, &merged)
    }

    /// `token` merged with what is stored under `key` by [`Token::refreshed_with`]: the
    /// read side of [`store_response`](Self::store_response). A store that checks tokens on
    /// read (as [`ValidatingStore`](crate::store::ValidatingStore) does) overrides it to read
    /// without the checks, so that an expired stored token can still be refreshed.
    ///
    /// # Errors
    /// Whatever the store fails with.
    fn merged_with_stored(&self, key: &str, token: &Token) -> Result<Token> {
        Ok(match self.get_token(key)? {
            Some(stored) => stored.refreshed_with(token.clone()),
            None => token.clone(),
        })
    }
}

macro_rules! forward_store {
    ($($ty:ty),*) => {$(
        impl<S: TokenStore + ?Sized> TokenStore for $ty {
            fn get_token(&self, key: &str) -> Result<Option<Token>> {
                (**self).get_token(key)
            }
            fn set_token(&self, key: &str, token: &Token) -> Result<()> {
                (**self).set_token(key, token)
            }
            fn remove_token(&self, key: &str) -> Result<bool> {
                (**self).remove_token(key)
            }
            fn token_keys(&self) -> Result<Vec<String>> {
                (**self).token_keys()
            }
            fn set_tokens(&self, tokens: &[(&str, &Token)]) -> Result<()> {
                (**self).set_tokens(tokens)
            }
            fn namespace(&self) -> Option<&str> {
                (**self).namespace()
            }
            fn store_response(&self, response: &TokenResponse) -> Result<Vec<String>> {
                (**self).store_response(response)
            }
            fn store_response_as(&self, key: &str, response: &TokenResponse) -> Result<()> {
                (**self).store_response_as(key, response)
            }
            fn merged_with_stored(&self, key: &str, token: &Token) -> Result<Token> {
                (**self).merged_with_stored(key, token)
            }
        }
    )*};
}

forward_store!(&S, Box<S>, Arc<S>);

/// A vault namespace is a token store: keys are record keys, and writes are durable and
/// atomic (several tokens: all or none).
impl TokenStore for Namespace {
    fn get_token(&self, key: &str) -> Result<Option<Token>> {
        Ok(self.get::<Token>(key)?)
    }

    fn set_token(&self, key: &str, token: &Token) -> Result<()> {
        self.put(key, token)?;
        Ok(())
    }

    /// Removes the token and, in the same atomic write, the refresh lease or dead-grant mark
    /// an [`Authorizer`](crate::oauth::Authorizer) keeps beside it: a removed token leaves nothing
    /// behind.
    fn remove_token(&self, key: &str) -> Result<bool> {
        let lease = InternalKey::new(crate::authorizer::LEASE_LAYER, key)?;
        let mut batch = self.vault().batch();
        batch.remove(self, key)?.remove(self, &lease)?;
        match batch.commit()? {
            Ok(written) => Ok(written.first().is_some_and(|w| w.existed)),
            Err(_) => Err(Error::backend("internal: unconditional removal did not apply").into()),
        }
    }

    fn token_keys(&self) -> Result<Vec<String>> {
        Ok(self.keys_of_type(RecordType::Token)?)
    }

    fn set_tokens(&self, tokens: &[(&str, &Token)]) -> Result<()> {
        let mut batch = self.vault().batch();
        for (key, token) in tokens {
            batch.put(self, *key, *token)?;
        }
        match batch.commit()? {
            Ok(_) => Ok(()),
            Err(_) => Err(Error::backend("internal: unconditional write did not apply").into()),
        }
    }

    fn namespace(&self) -> Option<&str> {
        Some(self.name())
    }
}

/// Tokens in process memory, behind a mutex: for tests, and for short-lived processes that
/// must not write tokens anywhere. Tokens are wiped when they are replaced, removed, or the
/// last clone of the store is dropped. Clones share the same tokens.
///
/// ```
/// use tokenvault::Token;
/// use tokenvault::store::{MemoryStore, TokenStore};
///
/// let store = MemoryStore::named("tests");
/// let other_handle = store.clone();
/// store.set_token("k", &Token::new("at".into()))?;
/// assert_eq!(other_handle.token_keys()?, ["k"]);
/// assert_eq!(store.namespace(), Some("tests"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Default)]
pub struct MemoryStore {
    tokens: Arc<Mutex<BTreeMap<String, Token>>>,
    name: Option<Arc<str>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store that calls itself `name` in error messages (see
    /// [`TokenStore::namespace`]).
    pub fn named(name: &str) -> Self {
        Self {
            tokens: Arc::default(),
            name: Some(name.into()),
        }
    }

    fn tokens(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Token>> {
        // A panic while holding the lock cannot leave the map half-updated: every update is
        // one insert or remove.
        self.tokens.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl TokenStore for MemoryStore {
    fn get_token(&self, key: &str) -> Result<Option<Token>> {
        Ok(self.tokens().get(key).cloned())
    }

    fn set_token(&self, key: &str, token: &Token) -> Result<()> {
        self.tokens().insert(key.to_owned(), token.clone());
        Ok(())
    }

    fn remove_token(&self, key: &str) -> Result<bool> {
        Ok(self.tokens().remove(key).is_some())
    }

    fn token_keys(&self) -> Result<Vec<String>> {
        Ok(self.tokens().keys().cloned().collect())
    }

    fn set_tokens(&self, tokens: &[(&str, &Token)]) -> Result<()> {
        let mut map = self.tokens();
        for (key, token) in tokens {
            map.insert((*key).to_owned(), (*token).clone());
        }
        Ok(())
    }

    fn namespace(&self) -> Option<&str> {
        self.name.as_deref()
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("name", &self.name)
            .field("tokens", &self.tokens().len())
            .finish()
    }
}
