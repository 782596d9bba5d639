//! The authorizer after the refresher was called: whatever happens next (an answer too large
//! for a record, a storage failure while storing it or while marking the grant, an answer for
//! another user, a logout that fails), the refresh token that was sent is never presented
//! again, unless the policy says the server does not rotate refresh tokens.
//!
//! The refreshers here record every refresh token presented to them; storage faults are
//! injected into the real in-memory backend (`support::FaultyBackend`).

#![allow(clippy::unwrap_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use support::{raw_key, FaultyBackend};
use tokenvault::backend::MemoryBackend;
use tokenvault::format::MAX_RECORD_LEN;
use tokenvault::oauth::TokenError;
use tokenvault::oauth::{
    AmbiguousFailure, Authorizer, DeadGrant, ManualClock, RefreshError, RefreshErrorKind,
};
use tokenvault::secrecy::ExposeSecret;
use tokenvault::{Error, Namespace, Token, Vault};

const T0: u64 = 1_800_000_000;

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// The stored grant: alice's, expired, with a small extra field.
fn grant() -> Token {
    Token::new("at-0".into())
        .with_refresh_token("rt-0".into())
        .with_expires_at(at(T0 - 1))
        .with_scopes(["openid", "api"])
        .with_identity("alice")
        .with_resource_server("api.example.org")
        .with_extra_json(r#"{"id_token":"small-old-id-token"}"#.into())
}

/// Every refresh token presented, in order (`""` when nothing was stored).
type Presented = Arc<Mutex<Vec<String>>>;

/// A refresher that records what it is handed and answers `answer(n)` to its `n`th call.
fn recording(
    presented: &Presented,
    answer: impl Fn(usize) -> Result<Token, RefreshError> + Send + Sync + 'static,
) -> impl Fn(Option<&Token>) -> Result<Token, RefreshError> + Send + Sync + 'static {
    let presented = Arc::clone(presented);
    move |current: Option<&Token>| {
        let rt = current
            .and_then(Token::refresh_token)
            .map(|r| r.expose_secret().to_owned())
            .unwrap_or_default();
        let n = {
            let mut p = presented.lock().unwrap();
            p.push(rt);
            p.len()
        };
        answer(n)
    }
}

/// A rotating server's answer to its `n`th refresh: `at-n`, `rt-n`, valid 10,000 s per call.
fn rotated(n: usize) -> Token {
    Token::new(format!("at-{n}").into())
        .with_refresh_token(format!("rt-{n}").into())
        .with_expires_at(at(T0 + 10_000 * n as u64))
}

fn presented(p: &Presented) -> Vec<String> {
    p.lock().unwrap().clone()
}

fn access(token: &Token) -> String {
    token.access_token().expose_secret().to_owned()
}

fn authorizer(
    ns: &Namespace,
    clock: &ManualClock,
    refresher: impl Fn(Option<&Token>) -> Result<Token, RefreshError> + Send + Sync + 'static,
) -> tokenvault::oauth::AuthorizerBuilder {
    Authorizer::builder(ns, "api", refresher)
        .clock(clock.clone())
        .jitter(Duration::ZERO)
        .lease_poll(Duration::from_millis(1))
}

/// Alice's expired grant on a sled vault, a clock at `T0`, and no refresh token presented.
fn alice() -> (tempfile::TempDir, Vault, Namespace, ManualClock, Presented) {
    let (dir, vault) = sled_vault();
    let ns = vault.namespace("user/alice").unwrap();
    ns.put("api", &grant()).unwrap();
    (
        dir,
        vault,
        ns,
        ManualClock::new(at(T0)),
        Presented::default(),
    )
}

/// Another handle, one with a rotating refresher, finds the grant marked too, and `rt-0` is
/// the only refresh token ever presented.
fn assert_no_handle_presents_it_again(ns: &Namespace, clock: &ManualClock, p: &Presented) {
    let other = authorizer(ns, clock, recording(p, |n| Ok(rotated(n))))
        .build()
        .unwrap();
    assert!(is_reauth(&other.token()));
    assert_eq!(presented(p), ["rt-0"]);
}

fn sled_vault() -> (tempfile::TempDir, Vault) {
    let dir = tempfile::tempdir().unwrap();
    let vault = Vault::create(dir.path().join("v"), &raw_key(1)).unwrap();
    (dir, vault)
}

fn faulty_vault() -> (FaultyBackend, Vault) {
    let faulty = FaultyBackend::new(MemoryBackend::new());
    let vault = Vault::create_with_backend(faulty.clone(), &raw_key(1)).unwrap();
    (faulty, vault)
}

fn is_reauth(result: &Result<Token, TokenError>) -> bool {
    matches!(result, Err(TokenError::ReauthenticationRequired { .. }))
}

/// A rotating server answers with a 70 KB `id_token` next to a small field: merged, the token
/// exceeds the record limit. It is stored without the `id_token` (the small field kept), and
/// the old refresh token is never presented again, by this handle or another.
#[test]
fn an_answer_too_large_for_a_record_is_stored_without_the_fields_that_do_not_fit() {
    let (_dir, _vault, ns, clock, p) = alice();
    let huge = "I".repeat(70_000);
    assert!(huge.len() > MAX_RECORD_LEN);
    let auth = authorizer(
        &ns,
        &clock,
        recording(&p, move |n| {
            Ok(rotated(n).with_extra_json(
                format!(r#"{{"id_token":"{huge}","session_state":"s-{n}"}}"#).into(),
            ))
        }),
    )
    .build()
    .unwrap();

    let token = auth.token().unwrap();
    assert_eq!(access(&token), "at-1");
    assert_eq!(token.refresh_token().unwrap().expose_secret(), "rt-1");
    let extra = token.extra_json().unwrap().expose_secret().to_owned();
    assert_eq!(extra, r#"{"session_state":"s-1"}"#, "the id_token left out");
    // What is stored is what was served, the grant's identity and scopes kept.
    let stored: Token = ns.get("api").unwrap().unwrap();
    assert!(stored.same_as(&token));
    assert_eq!(stored.identity(), Some("alice"));
    assert_eq!(stored.scopes(), ["openid", "api"]);
    assert_eq!(ns.record_count().unwrap(), 1, "no lease left behind");

    assert_eq!(access(&auth.token().unwrap()), "at-1");
    let other = authorizer(&ns, &clock, recording(&p, |n| Ok(rotated(n))))
        .build()
        .unwrap();
    assert_eq!(access(&other.token().unwrap()), "at-1");
    assert_eq!(presented(&p), ["rt-0"]);

    // The next refresh presents rt-1, the rotated one.
    clock.set(at(T0 + 10_000 - 10));
    assert_eq!(access(&other.token().unwrap()), "at-2");
    assert_eq!(presented(&p), ["rt-0", "rt-1"]);
}

/// An answer that does not fit even without its extra fields (a 70 KB access token) is
/// served from memory and stays owed: the pending write keeps failing to encode, and nobody
/// presents rt-0 again, not this handle (even after its token needs refreshing) nor another.
/// A new login replaces it.
#[test]
fn an_answer_that_never_fits_is_kept_in_memory_and_its_predecessor_never_presented_again() {
    let (_dir, _vault, ns, clock, p) = alice();
    let big = "A".repeat(70_000);
    let auth = authorizer(
        &ns,
        &clock,
        recording(&p, move |n| {
            Ok(Token::new(big.clone().into())
                .with_refresh_token(format!("rt-{n}").into())
                .with_expires_at(at(T0 + 600)))
        }),
    )
    .build()
    .unwrap();

    let token = auth.token().unwrap();
    assert_eq!(token.access_token().expose_secret().len(), 70_000);
    assert_eq!(access(&ns.get::<Token>("api").unwrap().unwrap()), "at-0");
    assert_eq!(ns.record_count().unwrap(), 2, "the lease stays");

    // Within its refresh margin: the owed write fails to encode again; the token is served
    // from memory, and rt-0 is not presented.
    clock.set(at(T0 + 590));
    let again = auth.token().unwrap();
    assert_eq!(again.access_token().expose_secret().len(), 70_000);
    // Another handle finds the lease (expired by now): log in again, never a refresh.
    let other_p = Presented::default();
    let other = authorizer(&ns, &clock, recording(&other_p, |n| Ok(rotated(n))))
        .build()
        .unwrap();
    assert!(is_reauth(&other.token()));
    assert!(presented(&other_p).is_empty());

    // Expired and still unstorable: a typed error, never a refresh with rt-0.
    clock.set(at(T0 + 601));
    assert!(matches!(
        auth.token(),
        Err(TokenError::Vault(Error::TooLarge { .. }))
    ));
    assert_eq!(presented(&p), ["rt-0"]);

    // A new login replaces the grant: the owed token is dropped, the lease removed.
    ns.put("api", &rotated(9)).unwrap();
    clock.set(at(T0 + 700));
    assert_eq!(access(&auth.token().unwrap()), "at-9");
    assert_eq!(ns.record_count().unwrap(), 1);
    assert_eq!(presented(&p), ["rt-0"]);
}

/// The request may have been processed (a timeout after sending), and the store fails while
/// marking the grant possibly spent: the mark is kept in memory and written at the next call;
/// rt-0 is never presented again.
#[test]
fn a_failed_possibly_spent_mark_is_written_later_and_the_token_never_presented_again() {
    let (faulty, vault) = faulty_vault();
    let ns = vault.namespace("n").unwrap();
    ns.put("api", &grant()).unwrap();
    let clock = ManualClock::new(at(T0));
    let p = Presented::default();
    let auth = authorizer(
        &ns,
        &clock,
        recording(&p, |_| {
            Err(RefreshError::transient("timed out waiting for the answer")
                .with_request_possibly_processed())
        }),
    )
    .build()
    .unwrap();

    // The lease is written; the mark fails.
    faulty.fail_after(1);
    assert!(is_reauth(&auth.token()));
    faulty.fail_after(-1);
    clock.set(at(T0 + 120)); // past any backoff
    assert!(is_reauth(&auth.token()));
    assert_eq!(presented(&p), ["rt-0"]);

    // The mark is in the store now: another handle answers at once, without refreshing.
    let other_p = Presented::default();
    let other = authorizer(&ns, &clock, recording(&other_p, |n| Ok(rotated(n))))
        .build()
        .unwrap();
    assert!(is_reauth(&other.token()));
    assert!(presented(&other_p).is_empty());
    assert_eq!(ns.record_count().unwrap(), 2, "the grant and its mark");
}

/// `DeadGrant::Mark`, and the store fails while marking: written at the next call, and the
/// dead refresh token is not presented again.
#[test]
fn a_failed_dead_mark_is_written_later() {
    let (faulty, vault) = faulty_vault();
    let ns = vault.namespace("n").unwrap();
    ns.put("api", &grant()).unwrap();
    let clock = ManualClock::new(at(T0));
    let p = Presented::default();
    let auth = authorizer(
        &ns,
        &clock,
        recording(&p, |_| Err(RefreshError::invalid_grant("revoked"))),
    )
    .on_dead_grant(DeadGrant::Mark)
    .build()
    .unwrap();

    faulty.fail_after(1);
    match auth.token() {
        Err(TokenError::Refresh(e)) => assert!(e.is_invalid_grant()),
        other => panic!("expected the dead grant, got {other:?}"),
    }
    faulty.fail_after(-1);
    clock.set(at(T0 + 120));
    assert!(is_reauth(&auth.token()));
    assert_eq!(presented(&p), ["rt-0"]);
    let stored: Token = ns.get("api").unwrap().unwrap();
    assert_eq!(stored.identity(), Some("alice"), "kept for the next login");
}

/// `DeadGrant::Remove`, and the store fails while removing: the removal is written at the
/// next call; the dead refresh token is not presented again (the refresher is then asked
/// with nothing stored, as after any removal).
#[test]
fn a_failed_dead_grant_removal_is_written_later() {
    let (faulty, vault) = faulty_vault();
    let ns = vault.namespace("n").unwrap();
    ns.put("api", &grant()).unwrap();
    let clock = ManualClock::new(at(T0));
    let p = Presented::default();
    let auth = authorizer(
        &ns,
        &clock,
        recording(&p, |_| Err(RefreshError::invalid_grant("revoked"))),
    )
    .build()
    .unwrap();

    faulty.fail_after(1);
    assert!(matches!(auth.token(), Err(TokenError::Refresh(_))));
    faulty.fail_after(-1);
    clock.set(at(T0 + 120));
    assert!(matches!(auth.token(), Err(TokenError::Refresh(_))));
    assert_eq!(presented(&p), ["rt-0", ""]);
    assert!(ns.get::<Token>("api").unwrap().is_none());
    assert_eq!(ns.record_count().unwrap(), 0, "no lease left");
}

/// A refreshed token the store refused is owed; a logout whose removal fails must not forget
/// it (rt-0 stays guarded), and a logout that succeeds revokes the live token, the owed one.
#[test]
fn a_failed_logout_keeps_the_owed_token_and_a_logout_revokes_it() {
    let (faulty, vault) = faulty_vault();
    let ns = vault.namespace("n").unwrap();
    ns.put("api", &grant()).unwrap();
    let clock = ManualClock::new(at(T0));
    let p = Presented::default();
    let auth = authorizer(&ns, &clock, recording(&p, |n| Ok(rotated(n))))
        .build()
        .unwrap();

    faulty.fail_after(1); // the lease lands, the refreshed token does not
    assert_eq!(access(&auth.token().unwrap()), "at-1");
    faulty.fail_after(0);
    assert!(auth.logout(|_| Ok::<(), ()>(())).is_err());
    faulty.fail_after(-1);

    // The owed token is written first; its refresh presents rt-1, never rt-0.
    clock.set(at(T0 + 10_000 - 10));
    assert_eq!(access(&auth.token().unwrap()), "at-2");
    assert_eq!(presented(&p), ["rt-0", "rt-1"]);

    // Owed again (the store refuses at-3), then a logout: the hook gets the live grant.
    clock.set(at(T0 + 20_000 - 10));
    faulty.fail_after(1);
    assert_eq!(access(&auth.token().unwrap()), "at-3");
    faulty.fail_after(-1);
    let revoked = Arc::new(Mutex::new(None));
    let r = Arc::clone(&revoked);
    let logout = auth
        .logout(move |t: Token| {
            *r.lock().unwrap() = t.refresh_token().map(|s| s.expose_secret().to_owned());
            Ok::<(), ()>(())
        })
        .unwrap();
    assert!(logout.removed);
    assert_eq!(revoked.lock().unwrap().as_deref(), Some("rt-3"));
    assert_eq!(ns.record_count().unwrap(), 0);
}

/// A refresher answering with another user's token (a bug, or a hostile server): the answer
/// is neither stored nor served, and the grant is marked possibly spent (the server may have
/// rotated alice's refresh token when it answered).
#[test]
fn an_answer_for_another_identity_is_refused_and_never_stored() {
    let (_dir, _vault, ns, clock, p) = alice();
    let auth = authorizer(
        &ns,
        &clock,
        recording(&p, |n| Ok(rotated(n).with_identity("bob"))),
    )
    .build()
    .unwrap();

    match auth.token() {
        Err(TokenError::ReauthenticationRequired { reason, .. }) => {
            assert!(reason.contains("another identity"), "{reason}");
        }
        other => panic!("expected ReauthenticationRequired, got {other:?}"),
    }
    let stored: Token = ns.get("api").unwrap().unwrap();
    assert_eq!(access(&stored), "at-0");
    assert_eq!(stored.identity(), Some("alice"));

    clock.set(at(T0 + 120));
    assert!(is_reauth(&auth.token()));
    assert_no_handle_presents_it_again(&ns, &clock, &p);
}

/// With `AmbiguousFailure::Retry` (the server does not rotate refresh tokens), an answer for
/// another identity is refused as `Rejected`, the grant kept, and the refresh retried after
/// the backoff with the same refresh token.
#[test]
fn with_the_retry_policy_a_foreign_answer_is_rejected_and_retried() {
    let (_dir, _vault, ns, clock, p) = alice();
    let auth = authorizer(
        &ns,
        &clock,
        recording(&p, |n| Ok(rotated(n).with_identity("bob"))),
    )
    .on_ambiguous_failure(AmbiguousFailure::Retry)
    .build()
    .unwrap();

    match auth.token() {
        Err(TokenError::Refresh(e)) => assert_eq!(e.kind(), RefreshErrorKind::Rejected),
        other => panic!("expected a rejected refresh, got {other:?}"),
    }
    assert_eq!(
        ns.record_count().unwrap(),
        1,
        "the grant kept, the lease released"
    );
    clock.set(at(T0 + 120));
    assert!(matches!(auth.token(), Err(TokenError::Refresh(_))));
    assert_eq!(presented(&p), ["rt-0", "rt-0"]);
    assert_eq!(access(&ns.get::<Token>("api").unwrap().unwrap()), "at-0");
}

/// An answer for another resource server than the stored token's is refused the same way.
#[test]
fn an_answer_for_another_resource_server_is_refused() {
    let (_dir, _vault, ns, clock, p) = alice();
    let auth = authorizer(
        &ns,
        &clock,
        recording(&p, |n| {
            Ok(rotated(n).with_resource_server("other.example.org"))
        }),
    )
    .build()
    .unwrap();
    match auth.token() {
        Err(TokenError::ReauthenticationRequired { reason, .. }) => {
            assert!(reason.contains("another resource server"), "{reason}");
        }
        other => panic!("expected ReauthenticationRequired, got {other:?}"),
    }
    let stored: Token = ns.get("api").unwrap().unwrap();
    assert_eq!(stored.resource_server(), Some("api.example.org"));
    assert_eq!(access(&stored), "at-0");
}

/// A refresher that panics may have sent the request before it did: under the default policy
/// its refresh token is not presented again.
#[test]
fn a_refresher_that_panicked_does_not_get_the_same_refresh_token_again() {
    let (_dir, _vault, ns, clock, p) = alice();
    let auth = authorizer(
        &ns,
        &clock,
        recording(&p, |n| {
            if n == 1 {
                panic!("the refresher's own bug, after it sent the request");
            }
            Ok(rotated(n))
        }),
    )
    .retry_gap(Duration::from_secs(1), Duration::from_secs(1))
    .build()
    .unwrap();
    assert!(is_reauth(&auth.token()));
    clock.advance(Duration::from_secs(5));
    assert!(is_reauth(&auth.token()));
    // Another handle, after the lease, finds the mark too.
    assert_no_handle_presents_it_again(&ns, &clock, &p);
}

/// A grant without a refresh token (client credentials) has nothing to spend: an ambiguous
/// failure is retried after the backoff instead of demanding a login that cannot happen.
#[test]
fn an_ambiguous_failure_without_a_refresh_token_is_retried() {
    let (_dir, vault) = sled_vault();
    let ns = vault.namespace("service").unwrap();
    let clock = ManualClock::new(at(T0));
    let p = Presented::default();
    let auth = authorizer(
        &ns,
        &clock,
        recording(&p, |n| {
            if n == 1 {
                Err(RefreshError::transient("the answer was lost")
                    .with_request_possibly_processed())
            } else {
                Ok(Token::new(format!("minted-{n}").into()).with_expires_at(at(T0 + 3600)))
            }
        }),
    )
    .retry_gap(Duration::from_secs(1), Duration::from_secs(1))
    .build()
    .unwrap();
    match auth.token() {
        Err(TokenError::Refresh(e)) => assert_eq!(e.kind(), RefreshErrorKind::Transient),
        other => panic!("expected a transient refresh error, got {other:?}"),
    }
    clock.advance(Duration::from_secs(2));
    assert_eq!(access(&auth.token().unwrap()), "minted-2");
    assert_eq!(presented(&p), ["", ""]);
}

/// Regression (issue 13): a namespace whose only record is an authorizer's lease (here a
/// client-credentials mint refused as a dead grant, and marked) was listed by
/// `namespaces_with_records`, while `keys()` was empty.
#[test]
fn a_namespace_holding_only_a_lease_is_not_listed_as_holding_records() {
    let (_dir, vault) = sled_vault();
    let ns = vault.namespace("service").unwrap();
    let clock = ManualClock::new(at(T0));
    let p = Presented::default();
    let auth = authorizer(
        &ns,
        &clock,
        recording(&p, |_| Err(RefreshError::invalid_grant("client disabled"))),
    )
    .on_dead_grant(DeadGrant::Mark)
    .build()
    .unwrap();
    assert!(auth.token().is_err());
    assert!(ns.keys().unwrap().is_empty());
    assert!(vault.namespaces_with_records().unwrap().is_empty());
    // The manifest still counts the lease (format v1), as `record_count` documents.
    assert_eq!(ns.record_count().unwrap(), 1);
    assert_eq!(vault.namespaces().unwrap(), ["service"]);
}

/// Regression (issue 13): a grant marked dead and then removed with `remove_token` (instead
/// of `logout`) left its mark behind.
#[test]
fn removing_a_token_removes_its_lease_too() {
    use tokenvault::store::TokenStore;
    let (_dir, vault, ns, clock, p) = alice();
    let auth = authorizer(
        &ns,
        &clock,
        recording(&p, |_| Err(RefreshError::invalid_grant("revoked"))),
    )
    .on_dead_grant(DeadGrant::Mark)
    .build()
    .unwrap();
    assert!(auth.token().is_err());
    assert_eq!(ns.record_count().unwrap(), 2, "the token and its mark");
    assert!(ns.remove_token("api").unwrap());
    assert_eq!(ns.record_count().unwrap(), 0, "nothing left behind");
    assert!(vault.namespaces_with_records().unwrap().is_empty());
    assert!(!ns.remove_token("api").unwrap());
    // A new grant under the key is served without the old mark getting in the way.
    ns.put("api", &rotated(7)).unwrap();
    let auth = authorizer(&ns, &clock, recording(&p, |n| Ok(rotated(n))))
        .build()
        .unwrap();
    assert_eq!(access(&auth.token().unwrap()), "at-7");
}
