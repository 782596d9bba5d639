//! The authorizer with the HTTP refresher against a real token endpoint on 127.0.0.1 that
//! counts how often each refresh token is presented: it must never see one twice.

#![cfg(feature = "http")]
#![allow(clippy::unwrap_used, clippy::panic)]

use support::tls_front;
use support::token_server;

use std::sync::{Arc, Barrier};
use std::time::{Duration, SystemTime};

use support::raw_key;
use tls_front::{Cert, Mode, TlsFront, CA_PEM};
use token_server::{Config, Failure, TokenServer};
use tokenvault::oauth::TokenError;
use tokenvault::oauth::{AmbiguousFailure, Authorizer, ClientAuth, HttpRefresher, ManualClock};
use tokenvault::secrecy::{ExposeSecret, SecretString};
use tokenvault::{Namespace, Token, Vault};

struct Setup {
    _dir: tempfile::TempDir,
    vault: Vault,
    ns: Namespace,
    server: TokenServer,
    clock: ManualClock,
}

fn setup() -> Setup {
    let server = TokenServer::start(Config::default());
    server.seed_refresh_token("rt-0");
    let dir = tempfile::tempdir().unwrap();
    let vault = Vault::create(dir.path().join("v"), &raw_key(1)).unwrap();
    let ns = vault.namespace("user/alice").unwrap();
    let clock = ManualClock::new(SystemTime::now());
    ns.put(
        "api",
        &Token::new("at-0".into())
            .with_refresh_token("rt-0".into())
            .with_expires_at(clock.now() - Duration::from_secs(1))
            .with_identity("alice"),
    )
    .unwrap();
    Setup {
        _dir: dir,
        vault,
        ns,
        server,
        clock,
    }
}

use tokenvault::oauth::Clock as _;

fn refresher(s: &Setup, timeout: Duration) -> HttpRefresher {
    HttpRefresher::refresh_token_grant(&s.server.url(), "client-1")
        .unwrap()
        .client_secret(SecretString::from("secret-1"), ClientAuth::Basic)
        .timeout(timeout)
        .clock(s.clock.clone())
}

fn authorizer(s: &Setup, refresher: HttpRefresher) -> Authorizer {
    Authorizer::builder(&s.ns, "api", refresher)
        .clock(s.clock.clone())
        .lease_poll(Duration::from_millis(5))
        .build()
        .unwrap()
}

fn access(t: &Token) -> String {
    t.access_token().expose_secret().to_owned()
}

#[test]
fn rotation_across_many_refreshes_never_presents_a_token_twice() {
    let s = setup();
    let auth = authorizer(&s, refresher(&s, Duration::from_secs(5)));
    let mut seen = Vec::new();
    for _ in 0..10 {
        let token = auth.token().unwrap();
        seen.push(access(&token));
        // The stored grant is the rotated one, with the identity kept.
        let stored: Token = s.ns.get("api").unwrap().unwrap();
        assert!(stored.same_as(&token));
        assert_eq!(stored.identity(), Some("alice"));
        assert!(s
            .server
            .is_live(stored.refresh_token().unwrap().expose_secret()));
        s.clock.advance(Duration::from_secs(3600));
    }
    assert_eq!(s.server.refresh_count(), 10);
    seen.dedup();
    assert_eq!(seen.len(), 10);
    s.server.assert_no_reuse();
}

#[test]
fn a_hundred_callers_and_two_handles_one_request() {
    let s = setup();
    s.server.pause();
    let a = authorizer(&s, refresher(&s, Duration::from_secs(10)));
    let b = Authorizer::builder(
        &s.vault.clone().namespace("user/alice").unwrap(),
        "api",
        refresher(&s, Duration::from_secs(10)),
    )
    .clock(s.clock.clone())
    .lease_poll(Duration::from_millis(5))
    .build()
    .unwrap();
    let barrier = Arc::new(Barrier::new(100));
    let handles: Vec<_> = (0..100)
        .map(|i| {
            let auth = if i % 2 == 0 { a.clone() } else { b.clone() };
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                access(&auth.token().unwrap())
            })
        })
        .collect();
    assert!(s.server.wait_held(1, Duration::from_secs(10)));
    std::thread::sleep(Duration::from_millis(100)); // let every caller pile up
    s.server.resume();
    let tokens: Vec<String> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(tokens.iter().all(|t| t == &tokens[0]));
    assert_eq!(s.server.refresh_count(), 1);
    assert_eq!(s.server.presentations("rt-0"), 1);
}

#[test]
fn invalid_grant_removes_the_record() {
    let s = setup();
    s.server.revoke_refresh_token("rt-0");
    let auth = authorizer(&s, refresher(&s, Duration::from_secs(5)));
    match auth.token() {
        Err(TokenError::Refresh(e)) => {
            assert!(e.is_invalid_grant(), "{e}");
            assert_eq!(e.oauth_error(), Some("invalid_grant"));
        }
        other => panic!("{other:?}"),
    }
    assert!(s.ns.get::<Token>("api").unwrap().is_none());
    assert_eq!(s.server.presentations("rt-0"), 1);
}

#[test]
fn server_errors_are_retried_after_the_backoff_without_reuse() {
    let s = setup();
    s.server.fail_next(Failure::StatusRetryAfter(503, 7), 1);
    // A 500 with an OAuth error: the server says it issued nothing.
    s.server.fail_next(
        Failure::OAuthError {
            status: 500,
            code: "server_error".to_owned(),
            description: None,
        },
        1,
    );
    let auth = authorizer(&s, refresher(&s, Duration::from_secs(5)));
    assert!(matches!(auth.token(), Err(TokenError::Refresh(e)) if e.is_transient()));
    s.clock.advance(Duration::from_secs(3)); // inside Retry-After: no request
    assert!(auth.token().is_err());
    assert_eq!(s.server.request_count(), 1);
    s.clock.advance(Duration::from_secs(5));
    assert!(matches!(auth.token(), Err(TokenError::Refresh(e)) if e.is_transient()));
    s.clock.advance(Duration::from_secs(60));
    let token = auth.token().unwrap();
    assert!(access(&token).starts_with("issued-at-"));
    // The failed answers did not process the request: rt-0 stayed live and was presented
    // again, but exchanged once, and never presented after it was spent.
    assert_eq!(s.server.refresh_count(), 3);
    assert_eq!(s.server.presentations("rt-0"), 3);
    assert!(s.server.reuses().is_empty(), "{:?}", s.server.reuses());
    assert!(!s.server.is_live("rt-0"));
}

#[test]
fn a_gateway_timeout_is_never_followed_by_a_second_presentation() {
    let s = setup();
    // A gateway in front of the token endpoint gives up on a slow origin, which may still
    // have rotated the refresh token: 504 without an OAuth error.
    s.server.fail_next(Failure::Status(504), 1);
    let auth = authorizer(&s, refresher(&s, Duration::from_secs(5)));
    assert!(matches!(
        auth.token(),
        Err(TokenError::ReauthenticationRequired { .. })
    ));
    s.clock.advance(Duration::from_secs(120));
    assert!(matches!(
        auth.token(),
        Err(TokenError::ReauthenticationRequired { .. })
    ));
    assert_eq!(s.server.presentations("rt-0"), 1);
    assert!(s.server.reuses().is_empty(), "{:?}", s.server.reuses());
}

#[test]
fn a_slow_answer_is_never_followed_by_a_second_presentation() {
    let s = setup();
    // The server exchanges rt-0, but answers after the client gave up.
    s.server
        .fail_next(Failure::Slow(Duration::from_millis(1500)), 1);
    let auth = authorizer(&s, refresher(&s, Duration::from_millis(300)));
    match auth.token() {
        Err(TokenError::ReauthenticationRequired { reason, .. }) => {
            assert!(reason.contains("may have been spent"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    // Later calls, from this or another authorizer, do not present rt-0 again.
    s.clock.advance(Duration::from_secs(120));
    assert!(matches!(
        auth.token(),
        Err(TokenError::ReauthenticationRequired { .. })
    ));
    let other = authorizer(&s, refresher(&s, Duration::from_secs(5)));
    assert!(matches!(
        other.token(),
        Err(TokenError::ReauthenticationRequired { .. })
    ));
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(s.server.presentations("rt-0"), 1);
    s.server.assert_no_reuse();
}

#[test]
fn a_lost_answer_with_the_retry_policy_presents_the_token_again() {
    // The documented trade-off: `AmbiguousFailure::Retry` is for servers that do not rotate
    // refresh tokens. Against a rotating server it presents a spent token, which the server
    // refuses.
    let s = setup();
    s.server.fail_next(Failure::LostResponse, 1);
    let auth = Authorizer::builder(&s.ns, "api", refresher(&s, Duration::from_secs(5)))
        .clock(s.clock.clone())
        .on_ambiguous_failure(AmbiguousFailure::Retry)
        .build()
        .unwrap();
    assert!(matches!(auth.token(), Err(TokenError::Refresh(e)) if e.request_possibly_processed()));
    s.clock.advance(Duration::from_secs(120));
    assert!(matches!(auth.token(), Err(TokenError::Refresh(e)) if e.is_invalid_grant()));
    assert_eq!(s.server.presentations("rt-0"), 2);
}

#[test]
fn a_non_rotating_server_keeps_the_stored_refresh_token() {
    let s = setup();
    s.server.set_rotate(false);
    let auth = authorizer(&s, refresher(&s, Duration::from_secs(5)));
    for _ in 0..3 {
        auth.token().unwrap();
        let stored: Token = s.ns.get("api").unwrap().unwrap();
        assert_eq!(stored.refresh_token().unwrap().expose_secret(), "rt-0");
        s.clock.advance(Duration::from_secs(3600));
    }
    assert_eq!(s.server.presentations("rt-0"), 3);
}

#[test]
fn client_credentials_mint_and_renew_the_guest_token() {
    let s = setup();
    let cc = HttpRefresher::client_credentials_grant(&s.server.url(), "client-1")
        .unwrap()
        .client_secret(SecretString::from("secret-1"), ClientAuth::Post)
        .scopes(["market:all"])
        .clock(s.clock.clone());
    let auth = Authorizer::builder(&s.ns, "guest", cc)
        .clock(s.clock.clone())
        .build()
        .unwrap();
    let first = auth.token().unwrap();
    assert_eq!(first.scopes(), ["market:all"]);
    assert!(first.refresh_token().is_none());
    assert_eq!(access(&auth.token().unwrap()), access(&first), "cached");
    s.clock.advance(Duration::from_secs(3600));
    assert_ne!(access(&auth.token().unwrap()), access(&first));
    assert_eq!(s.server.client_credentials_count(), 2);
}

/// Finding 4 of issue 12: a certificate the client does not accept (an expired one, a
/// TLS-intercepting proxy's, an attacker's) fails the handshake before the request is
/// written. Under the default `AmbiguousFailure::RequireLogin` the grant must not be marked
/// spent: once the server is fixed, the next refresh presents the refresh token and works.
#[test]
fn an_untrusted_certificate_does_not_spend_the_grant() {
    let s = setup();
    let front = TlsFront::start(s.server.addr(), Mode::Serve(Cert::SelfSigned));
    let tls_refresher = || {
        HttpRefresher::refresh_token_grant(&front.url(), "client-1")
            .unwrap()
            .client_secret(SecretString::from("secret-1"), ClientAuth::Basic)
            .timeout(Duration::from_secs(5))
            .clock(s.clock.clone())
            .root_certificates_pem(CA_PEM)
            .unwrap()
    };
    let auth = authorizer(&s, tls_refresher());
    for cert in [Cert::SelfSigned, Cert::Expired] {
        front.set_mode(Mode::Serve(cert));
        match auth.token() {
            Err(TokenError::Refresh(e)) => {
                assert!(e.is_transient(), "{e}");
                assert!(!e.request_possibly_processed(), "{e}");
            }
            other => panic!("{cert:?}: {other:?}"),
        }
        s.clock.advance(Duration::from_secs(120));
    }
    // Another handle (another process, say) does not find the grant marked spent either.
    front.set_mode(Mode::Serve(Cert::Good));
    let other = authorizer(&s, tls_refresher());
    let token = other.token().unwrap();
    assert!(access(&token).starts_with("issued-at-"));
    assert_eq!(access(&auth.token().unwrap()), access(&token));
    assert_eq!(s.server.presentations("rt-0"), 1);
    assert_eq!(front.handshakes(), 1);
    s.server.assert_no_reuse();
}
