//! The token-store interface: the same behaviour from the vault's namespaces, the memory
//! store and a user-written store; token responses with an injected clock; refresh merges;
//! namespaces as Globus uses them.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use support::{full_token, raw_key, FaultyBackend};
use tokenvault::backend::MemoryBackend;
use tokenvault::oauth::TokenError;
use tokenvault::oauth::{Clock, ManualClock, TokenResponse};
use tokenvault::secrecy::ExposeSecret;
use tokenvault::store::{MemoryStore, TokenStore};
use tokenvault::{Error, Token, Vault};

/// A user-written store: tokens kept as `(access, refresh)` pairs only, to show that the
/// trait does not need to know about vaults.
#[derive(Default)]
struct PairStore(Mutex<BTreeMap<String, (String, Option<String>)>>);

impl TokenStore for PairStore {
    fn get_token(&self, key: &str) -> tokenvault::store::Result<Option<Token>> {
        Ok(self.0.lock().unwrap().get(key).map(|(a, r)| {
            let t = Token::new(a.clone().into());
            match r {
                Some(r) => t.with_refresh_token(r.clone().into()),
                None => t,
            }
        }))
    }
    fn set_token(&self, key: &str, token: &Token) -> tokenvault::store::Result<()> {
        if key == "refuse" {
            return Err(TokenError::store("this store refuses the key \"refuse\""));
        }
        self.0.lock().unwrap().insert(
            key.to_owned(),
            (
                token.access_token().expose_secret().to_owned(),
                token.refresh_token().map(|r| r.expose_secret().to_owned()),
            ),
        );
        Ok(())
    }
    fn remove_token(&self, key: &str) -> tokenvault::store::Result<bool> {
        Ok(self.0.lock().unwrap().remove(key).is_some())
    }
    fn token_keys(&self) -> tokenvault::store::Result<Vec<String>> {
        Ok(self.0.lock().unwrap().keys().cloned().collect())
    }
}

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// The contract every store keeps.
fn exercise(store: &dyn TokenStore) {
    assert!(store.get_token("a").unwrap().is_none());
    assert!(store.token_keys().unwrap().is_empty());
    assert!(!store.remove_token("a").unwrap());

    store
        .set_token(
            "a",
            &Token::new("at-a".into()).with_refresh_token("rt-a".into()),
        )
        .unwrap();
    let a = store.get_token("a").unwrap().unwrap();
    assert_eq!(a.access_token().expose_secret(), "at-a");
    assert_eq!(a.refresh_token().unwrap().expose_secret(), "rt-a");

    // Replacing overwrites.
    store.set_token("a", &Token::new("at-a2".into())).unwrap();
    let a = store.get_token("a").unwrap().unwrap();
    assert_eq!(a.access_token().expose_secret(), "at-a2");
    assert!(a.refresh_token().is_none());

    let (b, c) = (Token::new("at-b".into()), Token::new("at-c".into()));
    store.set_tokens(&[("b", &b), ("c", &c)]).unwrap();
    assert_eq!(store.token_keys().unwrap(), ["a", "b", "c"]);

    // Remove says whether something was removed, and removes only that key.
    assert!(store.remove_token("b").unwrap());
    assert!(!store.remove_token("b").unwrap());
    assert_eq!(store.token_keys().unwrap(), ["a", "c"]);
    assert_eq!(
        store
            .get_token("c")
            .unwrap()
            .unwrap()
            .access_token()
            .expose_secret(),
        "at-c"
    );
}

#[test]
fn every_store_keeps_the_same_contract() {
    exercise(&MemoryStore::new());
    exercise(&PairStore::default());

    let dir = tempfile::tempdir().unwrap();
    let vault = Vault::create(dir.path().join("v"), &raw_key(1)).unwrap();
    exercise(&vault.namespace("DEFAULT").unwrap());

    // Boxed, shared and borrowed stores forward everything.
    let boxed: Box<dyn TokenStore> = Box::new(vault.namespace("boxed").unwrap());
    exercise(&boxed);
    let shared: Arc<dyn TokenStore> = Arc::new(MemoryStore::new());
    exercise(&shared);
    assert_eq!(boxed.namespace(), Some("boxed"));
}

#[test]
fn a_user_store_error_is_passed_through() {
    let err = PairStore::default()
        .set_token("refuse", &Token::new("x".into()))
        .unwrap_err();
    assert!(matches!(err, TokenError::Store(_)), "{err:?}");
    assert!(err.to_string().contains("refuses"), "{err}");
    assert!(std::error::Error::source(&err).is_some());
}

#[test]
fn vault_token_keys_leave_out_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let vault = Vault::create(dir.path().join("v"), &raw_key(1)).unwrap();
    let ns = vault.namespace("n").unwrap();
    ns.put("client-secret", &tokenvault::Secret::from_text("s".into()))
        .unwrap();
    ns.set_token("rs", &Token::new("at".into())).unwrap();
    assert_eq!(ns.keys().unwrap(), ["client-secret", "rs"]);
    assert_eq!(ns.token_keys().unwrap(), ["rs"]);
    assert!(matches!(
        ns.get_token("client-secret"),
        Err(TokenError::Vault(Error::WrongRecordType { .. }))
    ));
}

const GLOBUS_LOGIN: &[u8] = br#"{
    "access_token": "AT-AUTH-1", "token_type": "Bearer", "expires_in": 172800,
    "resource_server": "auth.globus.org", "scope": "openid email profile",
    "refresh_token": "RT-AUTH-1", "id_token": "ID-TOKEN-1", "state": "_default",
    "other_tokens": [
        {"access_token": "AT-TRANSFER-1", "token_type": "Bearer", "expires_in": 3600,
         "resource_server": "transfer.api.globus.org",
         "scope": "urn:globus:auth:scope:transfer.api.globus.org:all",
         "refresh_token": "RT-TRANSFER-1", "state": "_default"}
    ]
}"#;

#[test]
fn a_multi_resource_server_response_is_one_record_per_resource_server() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v");
    let clock = ManualClock::new(at(1_800_000_000));
    let vault = Vault::create(&path, &raw_key(1)).unwrap();
    let ns = vault.namespace("user/alice").unwrap();

    // The expiry counts from when the request was sent, not from when it was parsed.
    let sent = clock.now();
    clock.advance(Duration::from_secs(7));
    let response = TokenResponse::from_json(GLOBUS_LOGIN, sent)
        .unwrap()
        .with_identity("alice-id");
    assert_eq!(
        ns.store_response(&response).unwrap(),
        ["auth.globus.org", "transfer.api.globus.org"]
    );
    vault.close().unwrap();

    let vault = Vault::open(&path, &raw_key(1)).unwrap();
    let ns = vault.namespace("user/alice").unwrap();
    assert_eq!(
        ns.token_keys().unwrap(),
        ["auth.globus.org", "transfer.api.globus.org"]
    );
    let auth = ns.get_token("auth.globus.org").unwrap().unwrap();
    assert_eq!(auth.access_token().expose_secret(), "AT-AUTH-1");
    assert_eq!(auth.expires_at(), Some(at(1_800_000_000 + 172_800)));
    assert_eq!(auth.scopes(), ["openid", "email", "profile"]);
    assert_eq!(auth.identity(), Some("alice-id"));
    let extra: serde_json::Value =
        serde_json::from_str(auth.extra_json().unwrap().expose_secret()).unwrap();
    assert_eq!(
        extra,
        serde_json::json!({"id_token": "ID-TOKEN-1", "state": "_default"})
    );
    let transfer = ns.get_token("transfer.api.globus.org").unwrap().unwrap();
    assert_eq!(transfer.access_token().expose_secret(), "AT-TRANSFER-1");
    assert_eq!(transfer.expires_at(), Some(at(1_800_000_000 + 3600)));
    assert_eq!(transfer.resource_server(), Some("transfer.api.globus.org"));

    // Expiry checks use the injected clock.
    clock.set(at(1_800_000_000 + 3000));
    assert!(!transfer.is_expired_at(clock.now(), Duration::ZERO));
    assert!(transfer.is_expired_at(clock.now(), Duration::from_secs(600)));
    assert!(!auth.is_expired_at(clock.now(), Duration::from_secs(600)));
}

#[test]
fn a_refresh_keeps_what_the_answer_leaves_out() {
    let dir = tempfile::tempdir().unwrap();
    let vault = Vault::create(dir.path().join("v"), &raw_key(1)).unwrap();
    let ns = vault.namespace("DEFAULT").unwrap();
    ns.store_response(
        &TokenResponse::from_json(GLOBUS_LOGIN, at(1000))
            .unwrap()
            .with_identity("alice-id"),
    )
    .unwrap();

    // A refresh answer: no refresh token, no scope, no identity, no id_token.
    let refresh = br#"{"access_token":"AT-TRANSFER-2","token_type":"Bearer","expires_in":3600,
        "resource_server":"transfer.api.globus.org"}"#;
    ns.store_response(&TokenResponse::from_json(refresh, at(5000)).unwrap())
        .unwrap();
    let t = ns.get_token("transfer.api.globus.org").unwrap().unwrap();
    assert_eq!(t.access_token().expose_secret(), "AT-TRANSFER-2");
    assert_eq!(t.refresh_token().unwrap().expose_secret(), "RT-TRANSFER-1");
    assert_eq!(
        t.scopes(),
        ["urn:globus:auth:scope:transfer.api.globus.org:all"]
    );
    assert_eq!(t.identity(), Some("alice-id"));
    assert_eq!(t.expires_at(), Some(at(5000 + 3600)));
    // The other resource server's record is untouched.
    let auth = ns.get_token("auth.globus.org").unwrap().unwrap();
    assert_eq!(auth.access_token().expose_secret(), "AT-AUTH-1");

    // A rotating server's answer replaces the refresh token; extra fields merge.
    let rotated =
        br#"{"access_token":"AT-AUTH-2","token_type":"Bearer","refresh_token":"RT-AUTH-2",
        "id_token":"ID-TOKEN-2"}"#;
    ns.store_response_as(
        "auth.globus.org",
        &TokenResponse::from_json(rotated, at(6000)).unwrap(),
    )
    .unwrap();
    let auth = ns.get_token("auth.globus.org").unwrap().unwrap();
    assert_eq!(auth.refresh_token().unwrap().expose_secret(), "RT-AUTH-2");
    assert_eq!(auth.resource_server(), Some("auth.globus.org"));
    assert_eq!(auth.expires_at(), None, "the answer gave no expires_in");
    let extra: serde_json::Value =
        serde_json::from_str(auth.extra_json().unwrap().expose_secret()).unwrap();
    assert_eq!(
        extra,
        serde_json::json!({"id_token": "ID-TOKEN-2", "state": "_default"})
    );
}

#[test]
fn a_response_that_cannot_be_stored_writes_nothing() {
    let store = MemoryStore::new();
    store.set_token("kept", &full_token(1)).unwrap();
    // No resource server: store_response refuses, store_response_as takes it.
    let plain = br#"{"access_token":"AT","token_type":"Bearer"}"#;
    let response = TokenResponse::from_json(plain, at(0)).unwrap();
    assert!(matches!(
        store.store_response(&response),
        Err(TokenError::InvalidResponse { .. })
    ));
    // Two tokens for one resource server.
    let twice = br#"{"access_token":"A1","token_type":"Bearer","resource_server":"rs",
        "other_tokens":[{"access_token":"A2","token_type":"Bearer","resource_server":"rs"}]}"#;
    let response = TokenResponse::from_json(twice, at(0)).unwrap();
    let err = store.store_response(&response).unwrap_err();
    assert!(err.to_string().contains("two tokens"), "{err}");
    assert!(matches!(
        store.store_response_as("x", &response),
        Err(TokenError::InvalidResponse { .. })
    ));
    assert_eq!(store.token_keys().unwrap(), ["kept"]);
    store
        .store_response_as("plain", &TokenResponse::from_json(plain, at(0)).unwrap())
        .unwrap();
    assert_eq!(store.token_keys().unwrap(), ["kept", "plain"]);
}

#[test]
fn a_multi_record_write_is_all_or_nothing() {
    let faulty = FaultyBackend::new(MemoryBackend::new());
    let vault = Vault::create_with_backend(faulty.clone(), &raw_key(1)).unwrap();
    let ns = vault.namespace("DEFAULT").unwrap();
    ns.set_token("auth.globus.org", &full_token(1)).unwrap();
    let before = support::records(&faulty.inner);

    // The batch fails: neither record changes, none is added.
    faulty.fail_after(0);
    let response = TokenResponse::from_json(GLOBUS_LOGIN, at(0)).unwrap();
    assert!(ns.store_response(&response).is_err());
    faulty.fail_after(-1);
    assert_eq!(support::records(&faulty.inner), before);
    assert!(full_token(1).same_as(&ns.get_token("auth.globus.org").unwrap().unwrap()));
    assert_eq!(ns.token_keys().unwrap(), ["auth.globus.org"]);

    // Into a namespace that does not exist yet: the namespace is created by the same atomic
    // batch as the records, so a failed write leaves no namespace behind.
    let fresh = vault.namespace("user/bob").unwrap();
    faulty.fail_once_after(0);
    assert!(fresh.store_response(&response).is_err());
    assert_eq!(vault.namespaces().unwrap(), ["DEFAULT"]);
    assert!(fresh.token_keys().unwrap().is_empty());
    faulty.fail_after(0);
    assert!(fresh.store_response(&response).is_err());
    faulty.fail_after(-1);
    assert_eq!(vault.namespaces().unwrap(), ["DEFAULT"]);
    fresh.store_response(&response).unwrap();
    assert_eq!(vault.namespaces().unwrap(), ["DEFAULT", "user/bob"]);
    assert!(vault.remove_namespace("user/bob").unwrap());

    // And with no failure, both land in one write.
    let applies = faulty.applies.load(std::sync::atomic::Ordering::SeqCst);
    ns.store_response(&response).unwrap();
    assert_eq!(
        faulty.applies.load(std::sync::atomic::Ordering::SeqCst),
        applies + 1
    );
    assert_eq!(
        ns.token_keys().unwrap(),
        ["auth.globus.org", "transfer.api.globus.org"]
    );
}

#[test]
fn namespaces_as_globus_uses_them() {
    let dir = tempfile::tempdir().unwrap();
    let vault = Vault::create(dir.path().join("v"), &raw_key(1)).unwrap();
    let default = vault.namespace("DEFAULT").unwrap();
    let alice = vault.namespace("user/alice").unwrap();
    default
        .set_token("auth.globus.org", &full_token(1))
        .unwrap();
    alice.set_token("auth.globus.org", &full_token(2)).unwrap();
    alice.set_token("flows.globus.org", &full_token(3)).unwrap();

    // Records are isolated per namespace, keyed by resource server.
    assert!(full_token(1).same_as(&default.get_token("auth.globus.org").unwrap().unwrap()));
    assert!(full_token(2).same_as(&alice.get_token("auth.globus.org").unwrap().unwrap()));
    assert!(default.get_token("flows.globus.org").unwrap().is_none());

    // Two handles (another namespace handle, a clone of the vault) see writes at once.
    let other = vault.clone().namespace("DEFAULT").unwrap();
    default.set_token("transfer", &full_token(4)).unwrap();
    assert!(full_token(4).same_as(&other.get_token("transfer").unwrap().unwrap()));
    assert!(other.remove_token("transfer").unwrap());
    assert!(default.get_token("transfer").unwrap().is_none());

    // Listing: with and without namespaces whose records were all removed.
    assert!(default.remove_token("auth.globus.org").unwrap());
    assert_eq!(vault.namespaces().unwrap(), ["DEFAULT", "user/alice"]);
    assert_eq!(vault.namespaces_with_records().unwrap(), ["user/alice"]);
    assert_eq!(alice.record_count().unwrap(), 2);

    // Removing a namespace removes its records and says whether it existed.
    assert!(vault.remove_namespace("user/alice").unwrap());
    assert!(!vault.remove_namespace("user/alice").unwrap());
    assert!(alice.get_token("auth.globus.org").unwrap().is_none());
    assert_eq!(vault.namespaces().unwrap(), ["DEFAULT"]);
}

#[test]
fn memory_store_clones_share_and_replacements_do_not_leak() {
    let store = MemoryStore::named("tests");
    let clone = store.clone();
    store.set_token("k", &full_token(1)).unwrap();
    assert!(full_token(1).same_as(&clone.get_token("k").unwrap().unwrap()));
    assert_eq!(clone.namespace(), Some("tests"));
    let debug = format!("{store:?}");
    assert!(
        debug.contains("tokens: 1") && !debug.contains("access-token"),
        "{debug}"
    );
}
