//! A user-written token store: a write-through memory cache in front of a vault namespace
//! (what Commerce Layer users build with `createCompositeStorage([memory, redis])`), and
//! application code that takes "a token store" without caring which one it gets.
//!
//! Run with `cargo run --example custom_store`.

use std::time::{Duration, SystemTime};

use tokenvault::oauth::TokenResponse;
use tokenvault::secrecy::{ExposeSecret, SecretBox};
use tokenvault::store::{self, MemoryStore, TokenError, TokenStore};
use tokenvault::{KeySource, Token, Vault};

/// Reads are served from memory when possible; every write goes to the vault first (so a
/// crash never loses a token that was handed out) and then to memory. Unlike a cache that
/// is filled only on reads, a removal clears both tiers, so a removed token is never served.
struct CachedStore<S> {
    cache: MemoryStore,
    durable: S,
}

impl<S: TokenStore> TokenStore for CachedStore<S> {
    fn get_token(&self, key: &str) -> store::Result<Option<Token>> {
        if let Some(token) = self.cache.get_token(key)? {
            return Ok(Some(token));
        }
        let token = self.durable.get_token(key)?;
        if let Some(token) = &token {
            self.cache.set_token(key, token)?;
        }
        Ok(token)
    }

    fn set_token(&self, key: &str, token: &Token) -> store::Result<()> {
        self.durable.set_token(key, token)?;
        self.cache.set_token(key, token)
    }

    fn remove_token(&self, key: &str) -> store::Result<bool> {
        self.cache.remove_token(key)?;
        self.durable.remove_token(key)
    }

    fn token_keys(&self) -> store::Result<Vec<String>> {
        self.durable.token_keys()
    }

    // Several tokens at once: atomic in the vault, then cached.
    fn set_tokens(&self, tokens: &[(&str, &Token)]) -> store::Result<()> {
        self.durable.set_tokens(tokens)?;
        self.cache.set_tokens(tokens)
    }

    fn namespace(&self) -> Option<&str> {
        self.durable.namespace()
    }
}

/// Application code: it takes any store.
fn bearer_header(store: &dyn TokenStore, resource_server: &str) -> store::Result<String> {
    let token = store
        .get_token(resource_server)?
        .ok_or_else(|| TokenError::store(format!("no token for {resource_server}")))?;
    if token.is_expired_at(SystemTime::now(), Duration::from_secs(60)) {
        return Err(TokenError::store("the token has expired: log in again"));
    }
    Ok(format!("Bearer {}", token.access_token().expose_secret()))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    // A raw key for the example; see examples/quickstart.rs for a passphrase.
    let key = KeySource::raw_key(SecretBox::new(Box::new([42u8; 32])));
    let vault = Vault::create(dir.path().join("vault"), &key)?;

    let store = CachedStore {
        cache: MemoryStore::new(),
        durable: vault.namespace("DEFAULT")?,
    };

    // A Globus-style login response: one record per resource server.
    let sent = SystemTime::now();
    let body = br#"{"access_token":"example-at-auth","token_type":"Bearer","expires_in":3600,
        "resource_server":"auth.globus.org","refresh_token":"example-rt","scope":"openid",
        "other_tokens":[{"access_token":"example-at-transfer","token_type":"Bearer",
        "expires_in":3600,"resource_server":"transfer.api.globus.org"}]}"#;
    let keys = store.store_response(&TokenResponse::from_json(body, sent)?)?;
    println!("stored {keys:?} in namespace {:?}", store.namespace());

    let header = bearer_header(&store, "transfer.api.globus.org")?;
    println!("authorization header ready ({} characters)", header.len());

    // The same application code works on the bare namespace or an in-memory store.
    let bare = vault.namespace("DEFAULT")?;
    assert_eq!(bearer_header(&bare, "transfer.api.globus.org")?, header);
    assert!(bearer_header(&MemoryStore::new(), "transfer.api.globus.org").is_err());

    assert!(store.remove_token("transfer.api.globus.org")?);
    assert!(bearer_header(&store, "transfer.api.globus.org").is_err());
    println!(
        "removed from both tiers; remaining: {:?}",
        store.token_keys()?
    );
    vault.close()?;
    Ok(())
}
