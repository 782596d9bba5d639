//! Guest and user tokens (`Sessions`, `Principal`): distinct records per principal, no
//! lookup ever answered with another user's or the guest's token unless asked, keys built
//! from the configured scope, and an injective key encoding. Every behaviour runs on a
//! `MemoryStore` and on a real vault namespace on disk.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use proptest::prelude::*;
use support::{all_files, raw_key};
use tempfile::TempDir;
use tokenvault::oauth::TokenError;
use tokenvault::oauth::TokenResponse;
use tokenvault::secrecy::ExposeSecret;
use tokenvault::store::{MemoryStore, Principal, Sessions, TokenStore};
use tokenvault::{Error, Namespace, Token, Vault};

const CLIENT: &str = "client-1";
const SCOPE: &str = "market:all";

/// A vault on disk and one namespace of it. The directory lives as long as the pair.
fn vault_ns() -> (TempDir, Namespace) {
    let dir = tempfile::tempdir().unwrap();
    let vault = Vault::create(dir.path().join("v"), &raw_key(1)).unwrap();
    let ns = vault.namespace("shop-eu").unwrap();
    (dir, ns)
}

/// Runs `check` on a fresh `MemoryStore` and on a fresh vault namespace.
fn on_both(check: impl Fn(&dyn TokenStore)) {
    check(&MemoryStore::named("memory"));
    let (_dir, ns) = vault_ns();
    check(&ns);
}

fn at(token: &Token) -> &str {
    token.access_token().expose_secret()
}

fn user(id: &str) -> Principal {
    Principal::user(id)
}

fn is_principal_refusal(err: &TokenError) -> bool {
    matches!(err, TokenError::Validation(e) if e.validator == "principal")
}

#[test]
fn guest_and_user_tokens_are_distinct_records() {
    on_both(|store| {
        let s = Sessions::new(store, CLIENT, SCOPE);
        s.set_token(&Principal::Guest, &Token::new("guest-at".into()))
            .unwrap();
        s.set_token(&user("alice"), &Token::new("alice-at".into()))
            .unwrap();

        let mut keys = vec![s.key(&Principal::Guest), s.key(&user("alice"))];
        keys.sort();
        assert_ne!(keys[0], keys[1]);
        assert_eq!(store.token_keys().unwrap(), keys);

        let guest = s.get_token(&Principal::Guest).unwrap().unwrap();
        assert_eq!(at(&guest), "guest-at");
        assert_eq!(guest.identity(), None);
        let alice = s.get_token(&user("alice")).unwrap().unwrap();
        assert_eq!(at(&alice), "alice-at");
        assert_eq!(alice.identity(), Some("alice"));

        // Replacing the guest token leaves the user's alone, and the reverse.
        s.set_token(&Principal::Guest, &Token::new("guest-at-2".into()))
            .unwrap();
        assert_eq!(
            at(&s.get_token(&user("alice")).unwrap().unwrap()),
            "alice-at"
        );
        s.set_token(&user("alice"), &Token::new("alice-at-2".into()))
            .unwrap();
        assert_eq!(
            at(&s.get_token(&Principal::Guest).unwrap().unwrap()),
            "guest-at-2"
        );
    });
}

/// A deterministic shuffle (xorshift), so the interleaving differs per seed but a failure
/// reproduces.
fn shuffled<T>(mut items: Vec<T>, seed: u64) -> Vec<T> {
    let mut x = seed | 1;
    for i in (1..items.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let j = usize::try_from(x % (i as u64 + 1)).unwrap();
        items.swap(i, j);
    }
    items
}

#[test]
fn many_users_interleaved_each_read_their_own_token() {
    for seed in [1, 0x9e37_79b9_7f4a_7c15, 42] {
        on_both(|store| {
            let s = Sessions::new(store, CLIENT, SCOPE);
            let users: Vec<String> = (0..50).map(|i| format!("user-{i}")).collect();
            // Every user twice (a first token, then a replacement) and the guest, in random
            // order; the second write of a user must win wherever it lands after the first.
            let mut writes: Vec<(Option<usize>, u32)> = vec![(None, 0)];
            for i in 0..users.len() {
                writes.push((Some(i), 0));
                writes.push((Some(i), 1));
            }
            let mut generation = vec![None; users.len()];
            for (who, n) in shuffled(writes, seed) {
                match who {
                    None => s
                        .set_token(&Principal::Guest, &Token::new("guest-at".into()))
                        .unwrap(),
                    Some(i) => {
                        let access = format!("at-{}-{n}", users[i]);
                        s.set_token(&user(&users[i]), &Token::new(access.into()))
                            .unwrap();
                        generation[i] = Some(n);
                    }
                }
            }
            for id in &shuffled(users.clone(), seed ^ 0xff) {
                let n = generation[users.iter().position(|u| u == id).unwrap()].unwrap();
                let token = s.get_token(&user(id)).unwrap().unwrap();
                assert_eq!(at(&token), format!("at-{id}-{n}"), "seed {seed}");
                assert_eq!(token.identity(), Some(id.as_str()));
                let (whose, token) = s.token_or_guest(id).unwrap().unwrap();
                assert_eq!(whose, user(id));
                assert_eq!(at(&token), format!("at-{id}-{n}"));
            }
            assert_eq!(store.token_keys().unwrap().len(), users.len() + 1);
            assert_eq!(
                at(&s.get_token(&Principal::Guest).unwrap().unwrap()),
                "guest-at"
            );
        });
    }
}

#[test]
fn a_missing_user_token_is_none_whatever_else_is_stored() {
    on_both(|store| {
        let s = Sessions::new(store, CLIENT, SCOPE);
        assert!(s.get_token(&user("carol")).unwrap().is_none());

        s.set_token(&Principal::Guest, &Token::new("guest-at".into()))
            .unwrap();
        assert!(s.get_token(&user("carol")).unwrap().is_none());

        for id in ["alice", "bob", "carol2", "caro", "Carol"] {
            s.set_token(&user(id), &Token::new(format!("at-{id}").into()))
                .unwrap();
        }
        assert!(s.get_token(&user("carol")).unwrap().is_none());
    });
}

#[test]
fn token_or_guest_falls_back_to_the_guest_and_says_so() {
    on_both(|store| {
        let s = Sessions::new(store, CLIENT, SCOPE);
        assert!(s.token_or_guest("carol").unwrap().is_none());

        s.set_token(&Principal::Guest, &Token::new("guest-at".into()))
            .unwrap();
        s.set_token(&user("alice"), &Token::new("alice-at".into()))
            .unwrap();
        let (whose, token) = s.token_or_guest("carol").unwrap().unwrap();
        assert_eq!(whose, Principal::Guest);
        assert_eq!(at(&token), "guest-at");
        assert_eq!(token.identity(), None);

        let (whose, token) = s.token_or_guest("alice").unwrap().unwrap();
        assert_eq!(whose, user("alice"));
        assert_eq!(at(&token), "alice-at");
    });
}

#[test]
fn an_expired_user_token_is_still_the_users_not_the_guests() {
    on_both(|store| {
        let s = Sessions::new(store, CLIENT, SCOPE);
        let past = SystemTime::now() - Duration::from_secs(3600);
        s.set_token(&Principal::Guest, &Token::new("guest-at".into()))
            .unwrap();
        s.set_token(
            &user("alice"),
            &Token::new("alice-at".into()).with_expires_at(past),
        )
        .unwrap();
        let (whose, token) = s.token_or_guest("alice").unwrap().unwrap();
        assert_eq!(whose, user("alice"));
        assert!(token.is_expired_at(SystemTime::now(), Duration::ZERO));
    });
}

#[test]
fn keys_use_the_configured_scope_not_the_echoed_one() {
    on_both(|store| {
        let s = Sessions::new(store, CLIENT, SCOPE);
        let alice = user("alice");
        // The server answers with another scope string than the one configured.
        let login = br#"{"access_token":"a1","token_type":"Bearer","refresh_token":"r1",
            "scope":"market:id:xYz market:all"}"#;
        s.store_response(
            &alice,
            &TokenResponse::from_json(login, SystemTime::now()).unwrap(),
        )
        .unwrap();
        // A token built by hand with other scopes lands under the configured scope too.
        s.set_token(
            &Principal::Guest,
            &Token::new("g1".into()).with_scopes(["market:id:abc"]),
        )
        .unwrap();

        let mut expected = vec![s.key(&alice), s.key(&Principal::Guest)];
        expected.sort();
        assert_eq!(store.token_keys().unwrap(), expected);
        for key in &expected {
            assert!(key.contains("/10:market:all"), "{key}");
            assert!(!key.contains("xYz") && !key.contains("abc"), "{key}");
        }

        let token = s.get_token(&alice).unwrap().unwrap();
        assert_eq!(at(&token), "a1");
        assert_eq!(token.scopes(), ["market:id:xYz", "market:all"]);
        let guest = s.get_token(&Principal::Guest).unwrap().unwrap();
        assert_eq!(guest.scopes(), ["market:id:abc"]);

        // Sessions configured with the echoed scope are other sessions: they see nothing.
        let echoed = Sessions::new(store, CLIENT, "market:id:xYz market:all");
        assert!(echoed.get_token(&alice).unwrap().is_none());
        assert!(echoed.get_token(&Principal::Guest).unwrap().is_none());
    });
}

#[test]
fn store_response_merges_with_the_principals_own_record() {
    on_both(|store| {
        let s = Sessions::new(store, CLIENT, SCOPE);
        let now = SystemTime::now();
        let login = br#"{"access_token":"a1","token_type":"Bearer","refresh_token":"r1",
            "scope":"market:all","expires_in":3600}"#;
        s.store_response(
            &user("alice"),
            &TokenResponse::from_json(login, now).unwrap(),
        )
        .unwrap();
        let bob = br#"{"access_token":"b1","token_type":"Bearer","refresh_token":"rb"}"#;
        s.store_response(&user("bob"), &TokenResponse::from_json(bob, now).unwrap())
            .unwrap();

        // A refresh answer without refresh token or scope keeps Alice's, not Bob's.
        let refresh = br#"{"access_token":"a2","token_type":"Bearer","expires_in":3600}"#;
        s.store_response(
            &user("alice"),
            &TokenResponse::from_json(refresh, now).unwrap(),
        )
        .unwrap();
        let alice = s.get_token(&user("alice")).unwrap().unwrap();
        assert_eq!(at(&alice), "a2");
        assert_eq!(alice.refresh_token().unwrap().expose_secret(), "r1");
        assert_eq!(alice.scopes(), ["market:all"]);
        assert_eq!(alice.identity(), Some("alice"));
        let bob = s.get_token(&user("bob")).unwrap().unwrap();
        assert_eq!(at(&bob), "b1");
        assert_eq!(bob.identity(), Some("bob"));

        // A response with two tokens is refused, and nothing is written.
        let before = store.token_keys().unwrap();
        let two = TokenResponse::from_tokens(vec![Token::new("x".into()), Token::new("y".into())]);
        let err = s.store_response(&user("carol"), &two).unwrap_err();
        assert!(matches!(err, TokenError::InvalidResponse { .. }), "{err}");
        assert_eq!(store.token_keys().unwrap(), before);
    });
}

#[test]
fn a_token_of_another_identity_is_refused_and_nothing_is_written() {
    on_both(|store| {
        let s = Sessions::new(store, CLIENT, SCOPE);
        let bobs = Token::new("bob-at".into()).with_refresh_token("bob-rt".into());
        s.set_token(&user("bob"), &bobs).unwrap();
        let stored_bob = s.get_token(&user("bob")).unwrap().unwrap();
        let keys = store.token_keys().unwrap();

        let alices = Token::new("alice-at".into()).with_identity("alice");
        // Filed as Bob's: refused, by store and by store_response.
        let err = s.set_token(&user("bob"), &alices).unwrap_err();
        assert!(is_principal_refusal(&err), "{err}");
        let TokenError::Validation(v) = &err else {
            unreachable!()
        };
        assert_eq!(v.key, s.key(&user("bob")));
        assert!(!err.to_string().contains("alice-at"));
        let response = TokenResponse::from_tokens(vec![alices.clone()]);
        let err = s.store_response(&user("bob"), &response).unwrap_err();
        assert!(is_principal_refusal(&err), "{err}");
        // Filed under a user who has no record yet: refused too.
        let err = s.set_token(&user("carol"), &alices).unwrap_err();
        assert!(is_principal_refusal(&err), "{err}");
        // Filed as the shared guest token: refused.
        let err = s.set_token(&Principal::Guest, &alices).unwrap_err();
        assert!(is_principal_refusal(&err), "{err}");
        let err = s.store_response(&Principal::Guest, &response).unwrap_err();
        assert!(is_principal_refusal(&err), "{err}");

        assert_eq!(store.token_keys().unwrap(), keys);
        assert!(s
            .get_token(&user("bob"))
            .unwrap()
            .unwrap()
            .same_as(&stored_bob));
        assert!(s.get_token(&user("carol")).unwrap().is_none());
        assert!(s.get_token(&Principal::Guest).unwrap().is_none());

        // The user's own identity, and the client's own id on the guest token, are fine.
        s.set_token(&user("alice"), &alices).unwrap();
        let client_token = Token::new("g".into()).with_identity(CLIENT);
        s.set_token(&Principal::Guest, &client_token).unwrap();
        assert_eq!(
            s.get_token(&Principal::Guest).unwrap().unwrap().identity(),
            Some(CLIENT)
        );
    });
}

#[test]
fn a_record_of_another_identity_written_past_sessions_is_an_error_on_read() {
    on_both(|store| {
        let s = Sessions::new(store, CLIENT, SCOPE);
        s.set_token(&Principal::Guest, &Token::new("guest-at".into()))
            .unwrap();
        // Someone writes Alice's token straight into the store, under Bob's key.
        store
            .set_token(
                &s.key(&user("bob")),
                &Token::new("alice-at".into()).with_identity("alice"),
            )
            .unwrap();
        let err = s.get_token(&user("bob")).unwrap_err();
        assert!(is_principal_refusal(&err), "{err}");
        // And no fallback to the guest token hides it.
        let err = s.token_or_guest("bob").unwrap_err();
        assert!(is_principal_refusal(&err), "{err}");

        // A user's token written under the guest key is refused on read as well.
        store
            .set_token(
                &s.key(&Principal::Guest),
                &Token::new("alice-at".into()).with_identity("alice"),
            )
            .unwrap();
        let err = s.get_token(&Principal::Guest).unwrap_err();
        assert!(is_principal_refusal(&err), "{err}");
        let err = s.token_or_guest("carol").unwrap_err();
        assert!(is_principal_refusal(&err), "{err}");
    });
}

#[test]
fn an_empty_user_id_is_refused_everywhere() {
    on_both(|store| {
        let s = Sessions::new(store, CLIENT, SCOPE);
        s.set_token(&Principal::Guest, &Token::new("guest-at".into()))
            .unwrap();
        let keys = store.token_keys().unwrap();
        let empty = user("");
        let token = Token::new("at".into());
        assert!(is_principal_refusal(
            &s.set_token(&empty, &token).unwrap_err()
        ));
        let response = TokenResponse::from_tokens(vec![token]);
        assert!(is_principal_refusal(
            &s.store_response(&empty, &response).unwrap_err()
        ));
        assert!(is_principal_refusal(&s.get_token(&empty).unwrap_err()));
        assert!(is_principal_refusal(&s.remove_token(&empty).unwrap_err()));
        // A missing session is not answered with the guest token.
        assert!(is_principal_refusal(&s.token_or_guest("").unwrap_err()));
        assert_eq!(store.token_keys().unwrap(), keys);
    });
}

#[test]
fn sessions_of_other_clients_on_one_store_do_not_see_each_other() {
    on_both(|store| {
        let a = Sessions::new(store, "client-a", SCOPE);
        let b = Sessions::new(store, "client-b", SCOPE);
        a.set_token(&Principal::Guest, &Token::new("a-guest".into()))
            .unwrap();
        a.set_token(&user("alice"), &Token::new("a-alice".into()))
            .unwrap();
        assert!(b.get_token(&Principal::Guest).unwrap().is_none());
        assert!(b.get_token(&user("alice")).unwrap().is_none());
        assert!(b.token_or_guest("alice").unwrap().is_none());

        b.set_token(&Principal::Guest, &Token::new("b-guest".into()))
            .unwrap();
        b.set_token(&user("alice"), &Token::new("b-alice".into()))
            .unwrap();
        assert_eq!(
            at(&a.get_token(&Principal::Guest).unwrap().unwrap()),
            "a-guest"
        );
        assert_eq!(
            at(&a.get_token(&user("alice")).unwrap().unwrap()),
            "a-alice"
        );
        assert_eq!(
            at(&b.get_token(&Principal::Guest).unwrap().unwrap()),
            "b-guest"
        );
        assert_eq!(
            at(&b.get_token(&user("alice")).unwrap().unwrap()),
            "b-alice"
        );

        assert!(b.remove_token(&user("alice")).unwrap());
        assert_eq!(
            at(&a.get_token(&user("alice")).unwrap().unwrap()),
            "a-alice"
        );
        assert_eq!(store.token_keys().unwrap().len(), 3);
    });
}

#[test]
fn remove_says_whether_it_removed_and_removes_only_that_principal() {
    on_both(|store| {
        let s = Sessions::new(store, CLIENT, SCOPE);
        assert!(!s.remove_token(&user("alice")).unwrap());
        assert!(!s.remove_token(&Principal::Guest).unwrap());

        s.set_token(&Principal::Guest, &Token::new("guest-at".into()))
            .unwrap();
        for id in ["alice", "bob"] {
            s.set_token(&user(id), &Token::new(format!("{id}-at").into()))
                .unwrap();
        }
        assert!(s.remove_token(&user("alice")).unwrap());
        assert!(!s.remove_token(&user("alice")).unwrap());
        assert!(s.get_token(&user("alice")).unwrap().is_none());
        assert_eq!(at(&s.get_token(&user("bob")).unwrap().unwrap()), "bob-at");
        assert_eq!(
            at(&s.get_token(&Principal::Guest).unwrap().unwrap()),
            "guest-at"
        );
        // Logged out, Alice gets the guest token from the explicit fallback only.
        assert_eq!(
            s.token_or_guest("alice").unwrap().unwrap().0,
            Principal::Guest
        );

        assert!(s.remove_token(&Principal::Guest).unwrap());
        assert_eq!(at(&s.get_token(&user("bob")).unwrap().unwrap()), "bob-at");
        let mut keys = store.token_keys().unwrap();
        keys.retain(|k| k != &s.key(&user("bob")));
        assert!(keys.is_empty(), "{keys:?}");
    });
}

#[test]
fn vault_sessions_survive_reopen_and_user_ids_stay_off_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v");
    let ids: Vec<String> = (0..10)
        .map(|i| format!("customer-QZXW{i:04}@shop.example"))
        .collect();
    {
        let vault = Vault::create(&path, &raw_key(1)).unwrap();
        let s = Sessions::new(vault.namespace("shop-eu").unwrap(), CLIENT, SCOPE);
        s.set_token(&Principal::Guest, &Token::new("guest-at".into()))
            .unwrap();
        for id in &ids {
            s.set_token(&user(id), &Token::new(format!("at-{id}").into()))
                .unwrap();
        }
        vault.close().unwrap();
    }
    // Neither the user ids nor the keys that hold them appear in any file of the vault.
    let s = Sessions::new(MemoryStore::new(), CLIENT, SCOPE);
    for file in all_files(&path) {
        let bytes = std::fs::read(&file).unwrap();
        for id in &ids {
            for needle in [id.as_str(), "QZXW", &s.key(&user(id))] {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                    "{needle} found in {}",
                    file.display()
                );
            }
        }
    }

    let vault = Vault::open(&path, &raw_key(1)).unwrap();
    let s = Sessions::new(vault.namespace("shop-eu").unwrap(), CLIENT, SCOPE);
    for id in &ids {
        let token = s.get_token(&user(id)).unwrap().unwrap();
        assert_eq!(at(&token), format!("at-{id}"));
        assert_eq!(token.identity(), Some(id.as_str()));
    }
    assert_eq!(
        at(&s.get_token(&Principal::Guest).unwrap().unwrap()),
        "guest-at"
    );
}

#[test]
fn over_long_ids_are_refused_by_a_namespace_and_nothing_is_written() {
    let (_dir, ns) = vault_ns();
    let s = Sessions::new(&ns, CLIENT, SCOPE);
    let long = "u".repeat(tokenvault::format::MAX_NAME_LEN);
    let err = s
        .set_token(&user(&long), &Token::new("at".into()))
        .unwrap_err();
    assert!(
        matches!(err, TokenError::Vault(Error::InvalidName { .. })),
        "{err}"
    );
    assert!(ns.token_keys().unwrap().is_empty());
}

#[test]
fn keys_are_distinct_for_look_alike_tuples() {
    // Tuples that a naive `kind/client/scope/user` join would confuse.
    let tuples: [(&str, &str, Option<&str>); 8] = [
        ("a/b", "c", Some("d")),
        ("a", "b/c", Some("d")),
        ("a", "b", Some("c/d")),
        ("a", "b/c/d", None),
        ("a/b/c", "d", None),
        ("1:a", "", Some("")),
        ("", "1:a", Some("")),
        ("", "", Some("1:a")),
    ];
    let mut seen = HashMap::new();
    for (client, scope, who) in tuples {
        let principal = who.map_or(Principal::Guest, user);
        let key = Sessions::new(MemoryStore::new(), client, scope).key(&principal);
        assert!(
            seen.insert(key.clone(), (client, scope, who)).is_none(),
            "{key} is given twice"
        );
    }
}

/// Short ids, mostly made of separators and digits (and some Unicode): with few distinct
/// ids, many tuples share parts, which is where a careless encoding collides (a plain
/// `/`-join fails this test within a few cases).
fn id() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            3 => Just('a'),
            3 => Just('/'),
            2 => Just(':'),
            2 => Just('1'),
            1 => Just('0'),
            1 => Just('é'),
            1 => Just('🦀'),
            1 => any::<char>(),
        ],
        0..4,
    )
    .prop_map(|chars| chars.into_iter().collect())
}

fn principal() -> impl Strategy<Value = Principal> {
    prop_oneof![Just(Principal::Guest), id().prop_map(Principal::User)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn distinct_tuples_give_distinct_keys(
        tuples in proptest::collection::vec((id(), id(), principal()), 2..64)
    ) {
        let mut seen: HashMap<String, (String, String, Principal)> = HashMap::new();
        for (client, scope, who) in tuples {
            let key = Sessions::new(MemoryStore::new(), client.as_str(), scope.as_str()).key(&who);
            let tuple = (client, scope, who);
            if let Some(earlier) = seen.insert(key.clone(), tuple.clone()) {
                prop_assert_eq!(&earlier, &tuple, "two tuples share the key {:?}", key);
            }
        }
    }
}
