//! Validators wrapping token storage: each built-in on the memory store and on a vault
//! namespace on disk, all-or-nothing writes, what refusals say (and do not say), custom
//! validators, and the identity rules of Globus's validating storage done right.

#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use support::raw_key;
use tokenvault::oauth::TokenError;
use tokenvault::oauth::{Clock, ManualClock, TokenResponse};
use tokenvault::secrecy::ExposeSecret;
use tokenvault::store::{
    HasRefreshToken, IdentityBinding, MemoryStore, NotExpired, RequireScopes, RetrieveCheck,
    StoreCheck, TokenStore, UnchangingIdentity, ValidatingStore, ValidationError, Validator,
};
use tokenvault::{Token, Vault};

/// Far in the past of the real clock: if a validator asked the system clock instead of the
/// store's, every token below would look expired.
const T0: u64 = 1_600_000_000;

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// Runs `test` on a memory store and on a vault namespace on disk, both called "ns".
fn on_both(test: impl Fn(Arc<dyn TokenStore>)) {
    test(Arc::new(MemoryStore::named("ns")));

    let dir = tempfile::tempdir().unwrap();
    let vault = Vault::create(dir.path().join("v"), &raw_key(1)).unwrap();
    test(Arc::new(vault.namespace("ns").unwrap()));
}

/// A token whose secrets all contain "SECRET", so a leak is easy to find.
fn token(n: &str) -> Token {
    Token::new(format!("SECRET-AT-{n}").into())
        .with_refresh_token(format!("SECRET-RT-{n}").into())
        .with_extra_json(format!(r#"{{"id_token":"SECRET-ID-{n}"}}"#).into())
        .with_expires_at(at(T0 + 3600))
        .with_scopes(["openid", "email"])
}

/// Everything a store holds, read around any validators.
fn contents(store: &dyn TokenStore) -> Vec<(String, Token)> {
    store
        .token_keys()
        .unwrap()
        .into_iter()
        .map(|k| {
            let t = store.get_token(&k).unwrap().unwrap();
            (k, t)
        })
        .collect()
}

fn assert_same(before: &[(String, Token)], after: &[(String, Token)]) {
    assert_eq!(
        before.len(),
        after.len(),
        "the number of stored tokens changed"
    );
    for ((k1, t1), (k2, t2)) in before.iter().zip(after) {
        assert_eq!(k1, k2);
        assert!(t1.same_as(t2), "the token under {k1:?} changed");
    }
}

/// The validation error in `result`, checked to name `validator`, the namespace "ns" and
/// `key`, and to carry no secret.
fn refusal<T: std::fmt::Debug>(
    result: tokenvault::store::Result<T>,
    validator: &str,
    key: &str,
) -> ValidationError {
    let err = result.unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(!text.contains("SECRET"), "a secret leaked: {text}");
    assert!(
        matches!(err, TokenError::Validation(_)),
        "not a validation error: {err:?}"
    );
    let TokenError::Validation(e) = err else {
        unreachable!()
    };
    assert_eq!(e.validator, validator, "{e}");
    assert_eq!(e.namespace.as_deref(), Some("ns"), "{e}");
    assert_eq!(e.key, key, "{e}");
    assert!(text.contains(validator) && text.contains(key) && text.contains("\"ns\""));
    e
}

fn response(tokens: Vec<Token>) -> TokenResponse {
    TokenResponse::from_tokens(tokens)
}

#[test]
fn not_expired_refuses_reads_within_the_margin_against_the_stores_clock() {
    on_both(|inner| {
        let clock = ManualClock::new(at(T0));
        let store = ValidatingStore::new(Arc::clone(&inner))
            .with_clock(clock.clone())
            .with(NotExpired::new(Duration::from_secs(30)));
        let short = token("a").with_expires_at(at(T0 + 100));
        store.set_token("api", &short).unwrap();
        let forever = Token::new("SECRET-AT-F".into());
        store.set_token("forever", &forever).unwrap();

        clock.set(at(T0 + 69));
        assert!(store.get_token("api").unwrap().unwrap().same_as(&short));
        clock.set(at(T0 + 70));
        let e = refusal(store.get_token("api"), "not-expired", "api");
        assert!(e.reason.contains("30s margin"), "{e}");
        // Refused on read, still stored.
        assert!(inner.get_token("api").unwrap().unwrap().same_as(&short));
        // No expiry: never expired.
        clock.set(at(T0 + 1_000_000_000));
        assert!(store.get_token("forever").unwrap().is_some());

        // Storing an expired token is not refused (Globus checks on read only).
        let expired = token("b").with_expires_at(at(T0));
        store.set_token("old", &expired).unwrap();
        assert!(inner.get_token("old").unwrap().unwrap().same_as(&expired));
    });
}

#[test]
fn not_expired_without_margin_refuses_at_the_expiry_second() {
    on_both(|inner| {
        let clock = ManualClock::new(at(T0));
        let store = ValidatingStore::new(inner)
            .with_clock(clock.clone())
            .with(NotExpired::default());
        store
            .set_token("api", &token("a").with_expires_at(at(T0 + 10)))
            .unwrap();
        clock.set(at(T0 + 9));
        assert!(store.get_token("api").unwrap().is_some());
        clock.set(at(T0 + 10));
        let e = refusal(store.get_token("api"), "not-expired", "api");
        assert!(e.reason.contains(&(T0 + 10).to_string()), "{e}");
    });
}

#[test]
fn has_refresh_token_refuses_on_store_and_on_read() {
    on_both(|inner| {
        let store = ValidatingStore::new(Arc::clone(&inner)).with(HasRefreshToken);
        let bare = Token::new("SECRET-AT-bare".into());
        let e = refusal(store.set_token("api", &bare), "has-refresh-token", "api");
        assert_eq!(e.reason, "the token has no refresh token");
        assert!(inner.token_keys().unwrap().is_empty());

        // Written around the validator: refused when read through it.
        inner.set_token("api", &bare).unwrap();
        refusal(store.get_token("api"), "has-refresh-token", "api");

        store.set_token("api", &token("a")).unwrap();
        assert!(store
            .get_token("api")
            .unwrap()
            .unwrap()
            .same_as(&token("a")));
    });
}

#[test]
fn require_scopes_names_the_missing_scopes_per_key() {
    on_both(|inner| {
        let rules = RequireScopes::new()
            .require("auth", ["openid", "profile", "email"])
            .require("transfer", ["transfer:all"]);
        let store = ValidatingStore::new(Arc::clone(&inner)).with(rules);

        // token() has openid and email.
        let e = refusal(
            store.set_token("auth", &token("a")),
            "require-scopes",
            "auth",
        );
        assert_eq!(
            e.reason,
            r#"the token lacks the required scope(s) "profile""#
        );
        let e = refusal(
            store.set_token("transfer", &token("t")),
            "require-scopes",
            "transfer",
        );
        assert_eq!(
            e.reason,
            r#"the token lacks the required scope(s) "transfer:all""#
        );
        let e = refusal(
            store.set_token("auth", &Token::new("SECRET-AT-x".into())),
            "require-scopes",
            "auth",
        );
        assert_eq!(
            e.reason,
            r#"the token lacks the required scope(s) "openid", "profile", "email""#
        );
        assert!(inner.token_keys().unwrap().is_empty());

        // Keys without requirements are not checked; a token with all of them passes.
        store.set_token("other", &token("o")).unwrap();
        let full = token("a").with_scopes(["email", "profile", "openid", "extra"]);
        store.set_token("auth", &full).unwrap();
        assert!(store.get_token("auth").unwrap().unwrap().same_as(&full));

        // On read as well.
        inner.set_token("transfer", &token("t")).unwrap();
        refusal(store.get_token("transfer"), "require-scopes", "transfer");
    });
}

#[test]
fn a_refused_token_in_a_multi_resource_server_response_writes_nothing() {
    on_both(|inner| {
        let store = ValidatingStore::new(Arc::clone(&inner)).with(HasRefreshToken);
        store.set_token("auth", &token("old-auth")).unwrap();
        store.set_token("search", &token("old-search")).unwrap();
        let before = contents(inner.as_ref());

        // Three resource servers; only "transfer" lacks a refresh token (and has none
        // stored to inherit).
        let login = response(vec![
            token("new-auth").with_resource_server("auth"),
            token("new-search").with_resource_server("search"),
            Token::new("SECRET-AT-transfer".into()).with_resource_server("transfer"),
        ]);
        let e = refusal(
            store.store_response(&login),
            "has-refresh-token",
            "transfer",
        );
        assert_eq!(e.reason, "the token has no refresh token");
        assert_same(&before, &contents(inner.as_ref()));

        // Same through set_tokens directly.
        let (a, t) = (token("x"), Token::new("SECRET-AT-y".into()));
        refusal(
            store.set_tokens(&[("auth", &a), ("transfer", &t)]),
            "has-refresh-token",
            "transfer",
        );
        assert_same(&before, &contents(inner.as_ref()));

        // And the whole response goes in once it passes.
        let fixed = response(vec![
            token("new-auth").with_resource_server("auth"),
            token("new-transfer").with_resource_server("transfer"),
        ]);
        assert_eq!(store.store_response(&fixed).unwrap(), ["auth", "transfer"]);
        assert_eq!(inner.token_keys().unwrap(), ["auth", "search", "transfer"]);
    });
}

#[test]
fn a_refused_first_write_creates_no_namespace_in_the_vault() {
    let dir = tempfile::tempdir().unwrap();
    let vault = Vault::create(dir.path().join("v"), &raw_key(1)).unwrap();
    let store = ValidatingStore::new(vault.namespace("ns").unwrap()).with(HasRefreshToken);
    refusal(
        store.set_token("api", &Token::new("SECRET-AT".into())),
        "has-refresh-token",
        "api",
    );
    assert!(vault.namespaces().unwrap().is_empty());
    drop(store);
    drop(vault);
    let vault = Vault::open(dir.path().join("v"), &raw_key(1)).unwrap();
    assert!(vault.namespaces().unwrap().is_empty());
}

#[test]
fn getting_a_missing_key_runs_no_validator() {
    /// Refuses everything, and counts how often it was asked.
    #[derive(Default)]
    struct Counting(AtomicUsize);
    impl Validator for Counting {
        fn name(&self) -> &str {
            "counting"
        }
        fn after_retrieve(&self, _: &RetrieveCheck<'_>) -> Result<(), String> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Err("refuses everything".into())
        }
    }

    on_both(|inner| {
        let counting = Arc::new(Counting::default());
        let store = ValidatingStore::new(Arc::clone(&inner))
            .with_clock(ManualClock::new(at(T0)))
            .with(NotExpired::default())
            .with(Arc::clone(&counting));
        assert!(store.get_token("missing").unwrap().is_none());
        assert_eq!(counting.0.load(Ordering::SeqCst), 0);

        inner.set_token("present", &token("p")).unwrap();
        refusal(store.get_token("present"), "counting", "present");
        assert_eq!(counting.0.load(Ordering::SeqCst), 1);
    });
}

#[test]
fn an_expired_stored_token_can_be_refreshed_while_not_expired_is_installed() {
    on_both(|inner| {
        let clock = ManualClock::new(at(T0));
        let store = ValidatingStore::new(Arc::clone(&inner))
            .with_clock(clock.clone())
            .with(NotExpired::new(Duration::from_secs(60)))
            .with(HasRefreshToken);
        let login = token("1")
            .with_resource_server("auth")
            .with_identity("user-1")
            .with_expires_at(at(T0 + 3600));
        store.store_response(&response(vec![login])).unwrap();

        clock.set(at(T0 + 7200));
        refusal(store.get_token("auth"), "not-expired", "auth");

        // The refresh answer: a new access token, no refresh token, no scope, no identity.
        let body = br#"{"access_token":"SECRET-AT-2","token_type":"Bearer","expires_in":3600,
                        "resource_server":"auth"}"#;
        let answer = TokenResponse::from_json(body, clock.now()).unwrap();
        store.store_response(&answer).unwrap();

        let t = store.get_token("auth").unwrap().unwrap();
        assert_eq!(t.access_token().expose_secret(), "SECRET-AT-2");
        assert_eq!(t.refresh_token().unwrap().expose_secret(), "SECRET-RT-1");
        assert_eq!(t.identity(), Some("user-1"));
        assert_eq!(t.expires_at(), Some(at(T0 + 7200 + 3600)));
    });
}

#[test]
fn a_custom_validator_refuses_with_its_own_name_and_reason() {
    /// Only bearer tokens.
    struct BearerOnly;
    impl Validator for BearerOnly {
        fn name(&self) -> &str {
            "bearer-only"
        }
        fn before_store(&self, check: &StoreCheck<'_>) -> Result<(), String> {
            if check.token().token_type().eq_ignore_ascii_case("bearer") {
                Ok(())
            } else {
                Err(format!("token_type is {:?}", check.token().token_type()))
            }
        }
    }

    /// Never lets a token be replaced by one with another refresh token unless the stored
    /// one had none: uses the stored token and the batch.
    struct KeepsRefreshToken(Mutex<Vec<usize>>);
    impl Validator for KeepsRefreshToken {
        fn name(&self) -> &str {
            "keeps-refresh-token"
        }
        fn before_store(&self, check: &StoreCheck<'_>) -> Result<(), String> {
            self.0.lock().unwrap().push(check.batch().len());
            let stored = check.stored().and_then(Token::refresh_token);
            match (stored, check.token().refresh_token()) {
                (Some(old), Some(new)) if old.expose_secret() != new.expose_secret() => {
                    Err("the refresh token would change".into())
                }
                _ => Ok(()),
            }
        }
    }

    on_both(|inner| {
        let keeps = Arc::new(KeepsRefreshToken(Mutex::new(Vec::new())));
        let store = ValidatingStore::new(Arc::clone(&inner))
            .with(BearerOnly)
            .with(Arc::clone(&keeps));
        assert_eq!(
            store.validator_names(),
            ["bearer-only", "keeps-refresh-token"]
        );
        let e = refusal(
            store.set_token("api", &token("a").with_token_type("DPoP")),
            "bearer-only",
            "api",
        );
        assert_eq!(e.reason, "token_type is \"DPoP\"");
        // The first refusal stops the checks: the second validator never ran.
        assert!(keeps.0.lock().unwrap().is_empty());

        store.set_token("api", &token("a")).unwrap();
        let e = refusal(
            store.set_tokens(&[("new", &token("n")), ("api", &token("b"))]),
            "keeps-refresh-token",
            "api",
        );
        assert_eq!(e.reason, "the refresh token would change");
        assert_eq!(*keeps.0.lock().unwrap(), [1, 2, 2]);
        assert_eq!(inner.token_keys().unwrap(), ["api"]);
    });
}

#[test]
fn a_failed_read_during_checks_fails_the_write() {
    /// A store whose listing fails.
    struct NoListing(MemoryStore);
    impl TokenStore for NoListing {
        fn get_token(&self, key: &str) -> tokenvault::store::Result<Option<Token>> {
            self.0.get_token(key)
        }
        fn set_token(&self, key: &str, token: &Token) -> tokenvault::store::Result<()> {
            self.0.set_token(key, token)
        }
        fn remove_token(&self, key: &str) -> tokenvault::store::Result<bool> {
            self.0.remove_token(key)
        }
        fn token_keys(&self) -> tokenvault::store::Result<Vec<String>> {
            Err(TokenError::store("listing is down"))
        }
    }

    let memory = MemoryStore::new();
    let store = ValidatingStore::new(NoListing(memory.clone())).with(UnchangingIdentity);
    let err = store.set_token("api", &token("a")).unwrap_err();
    assert!(matches!(err, TokenError::Store(_)), "{err:?}");
    assert!(memory.token_keys().unwrap().is_empty());
    // Validators that read nothing are unaffected.
    let store = ValidatingStore::new(NoListing(memory.clone())).with(HasRefreshToken);
    store.set_token("api", &token("a")).unwrap();
    assert_eq!(memory.token_keys().unwrap(), ["api"]);
}

#[test]
fn a_refresh_without_identity_keeps_the_stored_identity() {
    // Globus issue #1050: refresh answers carry no id_token, and the validator refused them.
    on_both(|inner| {
        let store = ValidatingStore::new(Arc::clone(&inner)).with(UnchangingIdentity);
        let login = br#"{"access_token":"SECRET-AT-1","token_type":"Bearer",
            "refresh_token":"SECRET-RT-1","resource_server":"auth.globus.org",
            "other_tokens":[{"access_token":"SECRET-AT-T1","token_type":"Bearer",
            "refresh_token":"SECRET-RT-T1","resource_server":"transfer.api.globus.org"}]}"#;
        let login = TokenResponse::from_json(login, at(T0))
            .unwrap()
            .with_identity("user-1");
        store.store_response(&login).unwrap();

        let refresh = br#"{"access_token":"SECRET-AT-2","token_type":"Bearer",
            "expires_in":60,"resource_server":"auth.globus.org"}"#;
        let refresh = TokenResponse::from_json(refresh, at(T0)).unwrap();
        assert!(refresh.tokens()[0].identity().is_none());
        store.store_response(&refresh).unwrap();

        let t = inner.get_token("auth.globus.org").unwrap().unwrap();
        assert_eq!(t.access_token().expose_secret(), "SECRET-AT-2");
        assert_eq!(t.identity(), Some("user-1"));
        assert_eq!(t.refresh_token().unwrap().expose_secret(), "SECRET-RT-1");
    });
}

#[test]
fn another_identity_is_refused_and_changes_nothing() {
    on_both(|inner| {
        let store = ValidatingStore::new(Arc::clone(&inner)).with(UnchangingIdentity);
        store
            .set_token("auth", &token("1").with_identity("user-1"))
            .unwrap();
        let before = contents(inner.as_ref());

        // Same key, other key, through store_response (the merge does not carry over the
        // stored fields of another identity): all refused.
        for key in ["auth", "transfer"] {
            let e = refusal(
                store.set_token(key, &token("2").with_identity("user-2")),
                "unchanging-identity",
                key,
            );
            assert!(e.reason.contains("another identity"), "{e}");
            assert!(!e.reason.contains("user-"), "identities stay out: {e}");
        }
        let other = response(vec![token("2")
            .with_resource_server("auth")
            .with_identity("user-2")]);
        refusal(store.store_response(&other), "unchanging-identity", "auth");
        assert_same(&before, &contents(inner.as_ref()));

        // The same identity is still welcome.
        store
            .set_token("transfer", &token("3").with_identity("user-1"))
            .unwrap();
        assert_eq!(inner.token_keys().unwrap(), ["auth", "transfer"]);
    });
}

#[test]
fn a_new_token_without_identity_is_refused_only_in_a_bound_namespace() {
    on_both(|inner| {
        let store = ValidatingStore::new(Arc::clone(&inner)).with(UnchangingIdentity);

        // Unbound: accepted, and the namespace is now bound to "no identity".
        store.set_token("client", &token("c")).unwrap();
        let e = refusal(
            store.set_token("user", &token("u").with_identity("user-1")),
            "unchanging-identity",
            "user",
        );
        assert!(e.reason.contains("name none"), "{e}");
        store.remove_token("client").unwrap();

        // Bound to user-1: a dependent token without identity is refused (Globus's
        // MissingIdentityError) until the identity is set on it.
        store
            .set_token("auth", &token("a").with_identity("user-1"))
            .unwrap();
        let e = refusal(
            store.set_token("dependent", &token("d")),
            "unchanging-identity",
            "dependent",
        );
        assert!(e.reason.contains("names no identity"), "{e}");
        let dependent = response(vec![token("d").with_resource_server("dependent")]);
        refusal(
            store.store_response(&dependent),
            "unchanging-identity",
            "dependent",
        );
        store
            .store_response(&dependent.with_identity("user-1"))
            .unwrap();
        assert_eq!(inner.token_keys().unwrap(), ["auth", "dependent"]);
    });
}

#[test]
fn a_refused_store_does_not_adopt_the_refused_identity() {
    // Globus's storage takes the identity of the tokens being stored before its validators
    // run, so a refused store still rebinds it.
    on_both(|inner| {
        let store = ValidatingStore::new(Arc::clone(&inner))
            .with(HasRefreshToken)
            .with(UnchangingIdentity);

        // Empty namespace: user-2's login is refused for another reason...
        let no_rt = Token::new("SECRET-AT-2".into()).with_identity("user-2");
        refusal(store.set_token("auth", &no_rt), "has-refresh-token", "auth");
        // ...and the namespace is not bound to user-2 for it.
        store
            .set_token("auth", &token("1").with_identity("user-1"))
            .unwrap();

        // Bound to user-1: a refused user-2 token leaves it bound to user-1.
        refusal(
            store.set_token("x", &token("2").with_identity("user-2")),
            "unchanging-identity",
            "x",
        );
        store
            .set_token("x", &token("3").with_identity("user-1"))
            .unwrap();
        refusal(
            store.set_token("y", &token("4").with_identity("user-2")),
            "unchanging-identity",
            "y",
        );
    });
}

#[test]
fn disagreeing_stored_tokens_refuse_every_store_naming_the_keys() {
    on_both(|inner| {
        // Written around the validator.
        inner
            .set_token("a", &token("a").with_identity("user-1"))
            .unwrap();
        inner
            .set_token("b", &token("b").with_identity("user-2"))
            .unwrap();
        let store = ValidatingStore::new(Arc::clone(&inner)).with(UnchangingIdentity);
        let before = contents(inner.as_ref());
        for identity in ["user-1", "user-2"] {
            let e = refusal(
                store.set_token("c", &token("c").with_identity(identity)),
                "unchanging-identity",
                "c",
            );
            assert!(e.reason.contains(r#""a" and "b""#), "{e}");
        }
        assert_same(&before, &contents(inner.as_ref()));
        // Reads are not affected; removing the wrong token makes the namespace usable.
        assert!(store.get_token("b").unwrap().is_some());
        store.remove_token("b").unwrap();
        store
            .set_token("c", &token("c").with_identity("user-1"))
            .unwrap();
    });
}

#[test]
fn the_tokens_of_one_store_must_agree_in_an_empty_namespace() {
    on_both(|inner| {
        let store = ValidatingStore::new(Arc::clone(&inner)).with(UnchangingIdentity);
        let mixed = response(vec![
            token("a")
                .with_resource_server("auth")
                .with_identity("user-1"),
            token("t")
                .with_resource_server("transfer")
                .with_identity("user-2"),
        ]);
        let e = refusal(store.store_response(&mixed), "unchanging-identity", "auth");
        assert!(e.reason.contains(r#""auth" and "transfer""#), "{e}");
        assert!(inner.token_keys().unwrap().is_empty());

        let agreeing = response(vec![
            token("a").with_resource_server("auth"),
            token("t").with_resource_server("transfer"),
        ])
        .with_identity("user-1");
        store.store_response(&agreeing).unwrap();
    });
}

#[test]
fn logout_unbinds_the_namespace() {
    on_both(|inner| {
        let store = ValidatingStore::new(Arc::clone(&inner)).with(UnchangingIdentity);
        let seen = Arc::new(Spy::default());
        let spying = ValidatingStore::new(Arc::clone(&inner)).with(Arc::clone(&seen));

        store
            .set_token("auth", &token("1").with_identity("user-1"))
            .unwrap();
        spying
            .set_token("probe", &token("p").with_identity("user-1"))
            .unwrap();
        refusal(
            store.set_token("auth", &token("2").with_identity("user-2")),
            "unchanging-identity",
            "auth",
        );

        for key in inner.token_keys().unwrap() {
            store.remove_token(&key).unwrap();
        }
        spying
            .set_token("probe", &token("p").with_identity("user-2"))
            .unwrap();
        store.remove_token("probe").unwrap();
        store
            .set_token("auth", &token("2").with_identity("user-2"))
            .unwrap();
        assert_eq!(
            *seen.0.lock().unwrap(),
            [
                IdentityBinding::Bound(Some("user-1".into())),
                IdentityBinding::Unbound
            ]
        );
    });
}

/// Records the binding each store call saw.
#[derive(Default)]
struct Spy(Mutex<Vec<IdentityBinding>>);

impl Validator for Spy {
    fn name(&self) -> &str {
        "spy"
    }
    fn before_store(&self, check: &StoreCheck<'_>) -> Result<(), String> {
        self.0.lock().unwrap().push(check.bound_identity().clone());
        Ok(())
    }
}

#[test]
fn checks_see_the_namespace_key_clock_and_stored_token() {
    /// Records what it was shown.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);
    impl Validator for Recorder {
        fn name(&self) -> &str {
            "recorder"
        }
        fn before_store(&self, c: &StoreCheck<'_>) -> Result<(), String> {
            self.0.lock().unwrap().push(format!(
                "store {:?} {} {:?} stored={}",
                c.namespace(),
                c.key(),
                c.now(),
                c.stored().is_some()
            ));
            Ok(())
        }
        fn after_retrieve(&self, c: &RetrieveCheck<'_>) -> Result<(), String> {
            self.0.lock().unwrap().push(format!(
                "read {:?} {} {:?} {}",
                c.namespace(),
                c.key(),
                c.now(),
                c.token().access_token().expose_secret()
            ));
            Ok(())
        }
    }

    on_both(|inner| {
        let recorder = Arc::new(Recorder::default());
        let store = ValidatingStore::new(inner)
            .with_clock(ManualClock::new(at(T0)))
            .with(Arc::clone(&recorder));
        store.set_token("k", &token("1")).unwrap();
        store.set_token("k", &token("2")).unwrap();
        store.get_token("k").unwrap();
        // Debug of the store and of a check shows no secrets.
        assert!(!format!("{store:?}").contains("SECRET"));
        let now = at(T0);
        assert_eq!(
            *recorder.0.lock().unwrap(),
            [
                format!("store Some(\"ns\") k {now:?} stored=false"),
                format!("store Some(\"ns\") k {now:?} stored=true"),
                format!("read Some(\"ns\") k {now:?} SECRET-AT-2"),
            ]
        );
    });
}

#[test]
fn into_inner_and_inner_bypass_the_checks() {
    let store = ValidatingStore::new(MemoryStore::named("ns")).with(HasRefreshToken);
    store
        .inner()
        .set_token("k", &Token::new("SECRET-AT".into()))
        .unwrap();
    refusal(store.get_token("k"), "has-refresh-token", "k");
    let inner = store.into_inner();
    assert!(inner.get_token("k").unwrap().is_some());
}
