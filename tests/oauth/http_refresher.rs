//! The HTTP refresher against a real token endpoint on 127.0.0.1 (tests/support/src/token_server.rs).
//! Run with `cargo test --features http --test http_refresher`.
#![cfg(feature = "http")]
#![allow(clippy::unwrap_used)]

use support::token_server;

use std::time::{Duration, Instant, SystemTime};

use token_server::{AuthMethod, Config, Failure, TokenServer};
use tokenvault::oauth::{
    ClientAuth, GrantType, HttpRefresher, ManualClock, RefreshError, RefreshErrorKind, Refresher,
    MAX_RESPONSE_LEN,
};
use tokenvault::secrecy::ExposeSecret;
use tokenvault::Token;

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

/// A refresher for the default server's confidential client.
fn refresher(server: &TokenServer) -> HttpRefresher {
    HttpRefresher::refresh_token_grant(&server.url(), "client-1")
        .unwrap()
        .client_secret("secret-1".into(), ClientAuth::Basic)
        .timeout(Duration::from_secs(5))
}

fn stored(refresh_token: &str) -> Token {
    Token::new("old-access".into()).with_refresh_token(refresh_token.to_owned().into())
}

fn refresh_err(r: &HttpRefresher, current: Option<&Token>) -> RefreshError {
    r.refresh(current).unwrap_err()
}

/// Everything an error shows to people.
fn shown(e: &RefreshError) -> String {
    format!("{e} | {e:?} | {}", e.message())
}

#[test]
fn refresh_token_grant_counts_expiry_from_the_send_time() {
    let server = TokenServer::start(Config::default());
    server.seed_refresh_token("rt-0");
    let clock = ManualClock::new(at(1_700_000_000));
    let r = refresher(&server).clock(clock.clone());

    let token = r.refresh(Some(&stored("rt-0"))).unwrap();
    assert_eq!(token.access_token().expose_secret(), "issued-at-1");
    assert_eq!(
        token.refresh_token().unwrap().expose_secret(),
        "issued-rt-1"
    );
    assert_eq!(token.token_type(), "Bearer");
    assert_eq!(token.expires_at(), Some(at(1_700_000_000 + 3600)));

    let seen = server.last_request().unwrap();
    assert_eq!(seen.path, "/token");
    assert_eq!(seen.grant_type.as_deref(), Some("refresh_token"));
    assert_eq!(seen.field("refresh_token"), Some("rt-0"));
    assert_eq!(seen.field("scope"), None);
    assert_eq!(seen.auth, Some(AuthMethod::Basic));
    assert_eq!(seen.field("client_secret"), None);
    assert_eq!(
        seen.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(server.presentations("rt-0"), 1);
    assert_eq!(server.refresh_count(), 1);
}

#[test]
fn expiry_counts_from_sending_not_from_the_answer() {
    let server = TokenServer::start(Config::default());
    server.seed_refresh_token("rt-0");
    server.set_expires_in(Some(60));
    let clock = ManualClock::new(at(1_000_000));
    let r = refresher(&server).clock(clock.clone());
    // The clock moves on by an hour while the server holds the request.
    server.pause();
    let token = std::thread::scope(|s| {
        let handle = s.spawn(|| r.refresh(Some(&stored("rt-0"))));
        assert!(server.wait_held(1, Duration::from_secs(5)));
        clock.advance(Duration::from_secs(3600));
        server.resume();
        handle.join().unwrap().unwrap()
    });
    assert_eq!(token.expires_at(), Some(at(1_000_000 + 60)));

    // No expires_in: no expiry.
    server.set_expires_in(None);
    let token = r.refresh(Some(&token)).unwrap();
    assert_eq!(token.expires_at(), None);
}

#[test]
fn rotation_presents_each_refresh_token_exactly_once() {
    let server = TokenServer::start(Config::default());
    server.seed_refresh_token("rt-0");
    let r = refresher(&server);
    let mut current = stored("rt-0");
    let mut presented = vec!["rt-0".to_owned()];
    for _ in 0..5 {
        let answer = r.refresh(Some(&current)).unwrap();
        let new_rt = answer.refresh_token().unwrap().expose_secret().to_owned();
        assert!(!presented.contains(&new_rt));
        current = current.refreshed_with(answer);
        assert_eq!(current.refresh_token().unwrap().expose_secret(), new_rt);
        presented.push(new_rt);
    }
    for rt in &presented[..5] {
        assert_eq!(server.presentations(rt), 1, "{rt}");
        assert!(!server.is_live(rt), "{rt}");
    }
    assert_eq!(server.presentations(&presented[5]), 0);
    assert_eq!(
        server.live_successor("rt-0").as_deref(),
        Some(&*presented[5])
    );
    assert_eq!(server.issued_refresh_tokens(), presented[1..]);
    server.assert_no_reuse();

    // The server does notice a reuse (the check above can fail), and answers invalid_grant.
    let e = refresh_err(&r, Some(&stored("rt-0")));
    assert!(e.is_invalid_grant(), "{e}");
    assert_eq!(server.reuses(), ["rt-0"]);
}

#[test]
fn a_reuse_can_revoke_the_family() {
    let server = TokenServer::start(Config {
        revoke_family_on_reuse: true,
        ..Config::default()
    });
    server.seed_refresh_token("rt-0");
    let r = refresher(&server);
    let next = r.refresh(Some(&stored("rt-0"))).unwrap();
    assert!(r
        .refresh(Some(&stored("rt-0")))
        .unwrap_err()
        .is_invalid_grant());
    // The successor died with the reuse.
    assert!(r.refresh(Some(&next)).unwrap_err().is_invalid_grant());
}

#[test]
fn a_non_rotating_server_returns_no_refresh_token() {
    let server = TokenServer::start(Config {
        rotate: false,
        refresh_scope: Some("openid email".to_owned()),
        ..Config::default()
    });
    server.seed_refresh_token("rt-0");
    let r = refresher(&server);
    let answer = r.refresh(Some(&stored("rt-0"))).unwrap();
    assert!(answer.refresh_token().is_none());
    assert_eq!(answer.scopes(), ["openid", "email"]);
    // Keeping the stored refresh token is the merge's job (the authorizer's).
    let merged = stored("rt-0").refreshed_with(answer);
    assert_eq!(merged.refresh_token().unwrap().expose_secret(), "rt-0");
    r.refresh(Some(&merged)).unwrap();
    assert_eq!(server.presentations("rt-0"), 2);
    assert!(server.reuses().is_empty());
}

#[test]
fn invalid_grant_is_a_dead_grant() {
    let server = TokenServer::start(Config::default());
    server.seed_refresh_token("rt-0");
    let r = refresher(&server);

    // Unknown to the server.
    let e = refresh_err(&r, Some(&stored("rt-unknown")));
    assert_eq!(e.kind(), RefreshErrorKind::InvalidGrant);
    assert_eq!(e.oauth_error(), Some("invalid_grant"));
    assert!(e.message().contains("HTTP 400"), "{e}");
    assert!(
        e.message().contains("unknown or spent refresh token"),
        "{e}"
    );

    // Revoked.
    server.revoke_refresh_token("rt-0");
    assert!(refresh_err(&r, Some(&stored("rt-0"))).is_invalid_grant());

    // Scripted, also with a 401 status.
    server.fail_next(Failure::InvalidGrant, 1);
    server.fail_next(
        Failure::OAuthError {
            status: 401,
            code: "invalid_grant".to_owned(),
            description: None,
        },
        1,
    );
    assert!(refresh_err(&r, Some(&stored("x"))).is_invalid_grant());
    assert!(refresh_err(&r, Some(&stored("x"))).is_invalid_grant());
}

#[test]
fn nothing_to_refresh_with_sends_nothing() {
    let server = TokenServer::start(Config::default());
    let r = refresher(&server);
    for current in [None, Some(&Token::new("access-only".into()))] {
        let e = refresh_err(&r, current);
        assert_eq!(e.kind(), RefreshErrorKind::InvalidGrant);
        assert!(e.message().contains("no refresh token stored"), "{e}");
    }
    assert_eq!(server.request_count(), 0);
}

#[test]
fn server_errors_and_throttling_are_transient() {
    let server = TokenServer::start(Config::default());
    server.seed_refresh_token("rt-0");
    let r = refresher(&server);
    let current = stored("rt-0");

    // A 500, 502 or 504 without an OAuth error may come after the server committed (a
    // gateway that timed out on a slow origin): possibly processed.
    for status in [500, 502, 504] {
        server.fail_next(Failure::Status(status), 1);
        let e = refresh_err(&r, Some(&current));
        assert_eq!(e.kind(), RefreshErrorKind::Transient);
        assert_eq!(e.retry_after(), None);
        assert!(e.message().contains(&format!("HTTP {status}")), "{e}");
        assert!(e.request_possibly_processed(), "{e}");
    }

    // 503, 429 and 408 say the request was not taken on.
    for (status, secs) in [(503, 7), (429, 2), (408, 0)] {
        server.fail_next(Failure::StatusRetryAfter(status, secs), 1);
        let e = refresh_err(&r, Some(&current));
        assert_eq!(e.kind(), RefreshErrorKind::Transient, "{e}");
        assert_eq!(e.retry_after(), Some(Duration::from_secs(secs)));
        assert!(e.message().contains(&format!("HTTP {status}")), "{e}");
        assert!(!e.request_possibly_processed(), "{e}");
    }
    // A 502 asking to come back later keeps its wait.
    server.fail_next(Failure::StatusRetryAfter(502, 5), 1);
    let e = refresh_err(&r, Some(&current));
    assert_eq!(e.retry_after(), Some(Duration::from_secs(5)));

    // An absurd Retry-After is capped at an hour.
    server.fail_next(Failure::StatusRetryAfter(503, 10_000_000), 1);
    let e = refresh_err(&r, Some(&current));
    assert_eq!(e.retry_after(), Some(Duration::from_secs(3600)));

    // OAuth errors that say "later", with a 4xx or a 5xx status: the server answered with an
    // error, so it issued nothing.
    for status in [400, 500] {
        for code in ["temporarily_unavailable", "server_error"] {
            server.fail_next(
                Failure::OAuthError {
                    status,
                    code: code.to_owned(),
                    description: None,
                },
                1,
            );
            let e = refresh_err(&r, Some(&current));
            assert_eq!(e.kind(), RefreshErrorKind::Transient, "{e}");
            assert_eq!(e.oauth_error(), Some(code));
            assert!(!e.request_possibly_processed(), "{e}");
        }
    }

    // None of it spent the refresh token: the next try works.
    assert!(server.is_live("rt-0"));
    r.refresh(Some(&current)).unwrap();
    assert!(server.reuses().is_empty());
}

#[test]
fn client_errors_are_rejections() {
    let server = TokenServer::start(Config::default());
    server.seed_refresh_token("rt-0");
    let current = stored("rt-0");

    // A wrong client secret.
    let wrong = HttpRefresher::refresh_token_grant(&server.url(), "client-1")
        .unwrap()
        .client_secret("not-the-secret".into(), ClientAuth::Basic);
    let e = refresh_err(&wrong, Some(&current));
    assert_eq!(e.kind(), RefreshErrorKind::Rejected);
    assert_eq!(e.oauth_error(), Some("invalid_client"));
    assert!(e.message().contains("HTTP 401"), "{e}");

    // A public client where the server wants authentication.
    let public = HttpRefresher::refresh_token_grant(&server.url(), "client-1").unwrap();
    assert_eq!(
        refresh_err(&public, Some(&current)).oauth_error(),
        Some("invalid_client")
    );

    let r = refresher(&server);
    server.fail_next(Failure::InvalidClient, 1);
    for code in [
        "unauthorized_client",
        "invalid_scope",
        "unsupported_grant_type",
        "invalid_request",
        "some_new_error",
    ] {
        server.fail_next(
            Failure::OAuthError {
                status: 400,
                code: code.to_owned(),
                description: Some("Nope.".to_owned()),
            },
            1,
        );
    }
    for code in [
        "invalid_client",
        "unauthorized_client",
        "invalid_scope",
        "unsupported_grant_type",
        "invalid_request",
        "some_new_error",
    ] {
        let e = refresh_err(&r, Some(&current));
        assert_eq!(e.kind(), RefreshErrorKind::Rejected, "{e}");
        assert_eq!(e.oauth_error(), Some(code));
    }

    // Statuses without an OAuth error, and a redirect (not followed).
    for status in [404, 403, 302, 307] {
        server.fail_next(Failure::Status(status), 1);
        let e = refresh_err(&r, Some(&current));
        assert_eq!(e.kind(), RefreshErrorKind::Rejected, "{status}: {e}");
        assert_eq!(e.oauth_error(), None);
        assert!(e.message().contains(&format!("HTTP {status}")), "{e}");
    }
    assert!(server.is_live("rt-0"));
    assert_eq!(server.presentations("rt-0"), 12);
}

#[test]
fn unreadable_answers_are_rejections() {
    let server = TokenServer::start(Config::default());
    server.seed_refresh_token("rt-0");
    let r = refresher(&server);
    let current = stored("rt-0");

    // A success status that carries no usable token: the server processed the request and
    // may have rotated the refresh token, so the failure is also possibly processed (the
    // authorizer then does not present that refresh token again by default).
    server.fail_next(Failure::Garbage, 1);
    let e = refresh_err(&r, Some(&current));
    assert_eq!(e.kind(), RefreshErrorKind::Rejected);
    assert!(e.message().contains("not valid JSON"), "{e}");
    assert!(!e.message().contains("Service Unavailable"), "{e}");
    assert!(e.request_possibly_processed(), "{e}");

    server.fail_next(Failure::NotATokenResponse, 1);
    let e = refresh_err(&r, Some(&current));
    assert_eq!(e.kind(), RefreshErrorKind::Rejected);
    assert!(e.message().contains("access_token"), "{e}");
    assert!(e.request_possibly_processed(), "{e}");

    server.fail_next(Failure::Huge(MAX_RESPONSE_LEN + 1), 1);
    let e = refresh_err(&r, Some(&current));
    assert_eq!(e.kind(), RefreshErrorKind::Rejected);
    assert!(e.message().contains("larger than"), "{e}");
    assert!(e.request_possibly_processed(), "{e}");

    // An OAuth error in a 200 answer (some providers do that) is still an OAuth error.
    server.fail_next(
        Failure::Body(200, r#"{"error":"invalid_grant"}"#.to_owned()),
        1,
    );
    assert!(refresh_err(&r, Some(&current)).is_invalid_grant());
}

#[test]
fn a_slow_server_times_out_as_transient() {
    let server = TokenServer::start(Config::default());
    server.seed_refresh_token("rt-0");
    let timeout = Duration::from_millis(300);
    let r = refresher(&server).timeout(timeout);
    server.fail_next(Failure::Slow(Duration::from_secs(20)), 1);
    let started = Instant::now();
    let e = refresh_err(&r, Some(&stored("rt-0")));
    let took = started.elapsed();
    assert_eq!(e.kind(), RefreshErrorKind::Transient, "{e}");
    assert!(e.message().contains("may have reached the server"), "{e}");
    assert!(took < timeout * 10, "took {took:?}");
    // The ambiguity is real: the server did exchange (and spend) the refresh token.
    assert!(!server.is_live("rt-0"));
}

#[test]
fn a_lost_answer_is_transient() {
    let server = TokenServer::start(Config::default());
    server.seed_refresh_token("rt-0");
    let r = refresher(&server);
    server.fail_next(Failure::LostResponse, 1);
    let e = refresh_err(&r, Some(&stored("rt-0")));
    assert_eq!(e.kind(), RefreshErrorKind::Transient, "{e}");
    assert!(e.request_possibly_processed(), "{e}");
    assert_eq!(server.issued_count(), 1);
}

/// Sending the client's credentials again spends nothing: a lost answer to a
/// client-credentials grant is not ambiguous (the authorizer would otherwise ask for a login
/// that does not exist for it).
#[test]
fn a_lost_client_credentials_answer_is_not_possibly_processed() {
    let server = TokenServer::start(Config::default());
    server.fail_next(Failure::LostResponse, 1);
    let r = HttpRefresher::client_credentials_grant(&server.url(), "client-1")
        .unwrap()
        .client_secret("secret-1".into(), ClientAuth::Post);
    let e = refresh_err(&r, None);
    assert_eq!(e.kind(), RefreshErrorKind::Transient, "{e}");
    assert!(!e.request_possibly_processed(), "{e}");
    assert_eq!(server.client_credentials_count(), 1);
    r.refresh(None).unwrap();
}

#[test]
fn a_closed_port_is_transient() {
    // Port 1 (tcpmux) has no listener here; a port freed by a dropped test server could be
    // taken by another test's server meanwhile.
    let r = HttpRefresher::refresh_token_grant("http://127.0.0.1:1/token", "client-1").unwrap();
    let e = refresh_err(&r, Some(&stored("rt-0")));
    assert_eq!(e.kind(), RefreshErrorKind::Transient, "{e}");
    assert!(e.message().contains("refused"), "{e}");
}

const ODD_ID: &str = "client id:1&é+%";
const ODD_SECRET: &str = "s3cr+t/%:= x&y?";

fn odd_server(method: AuthMethod) -> TokenServer {
    let server = TokenServer::start(Config {
        client_id: ODD_ID.to_owned(),
        client_secret: Some(ODD_SECRET.to_owned()),
        client_auth: Some(method),
        ..Config::default()
    });
    server.seed_refresh_token("rt-0");
    server
}

#[test]
fn client_secret_basic_form_encodes_id_and_secret() {
    let server = odd_server(AuthMethod::Basic);
    let r = HttpRefresher::refresh_token_grant(&server.url(), ODD_ID)
        .unwrap()
        .client_secret(ODD_SECRET.into(), ClientAuth::Basic);
    r.refresh(Some(&stored("rt-0"))).unwrap();
    let seen = server.last_request().unwrap();
    assert_eq!(seen.auth, Some(AuthMethod::Basic));
    assert_eq!(seen.client_id.as_deref(), Some(ODD_ID));
    assert_eq!(seen.client_secret.as_deref(), Some(ODD_SECRET));
    assert_eq!(seen.field("client_id"), None);
    assert_eq!(seen.field("client_secret"), None);
    // The header carries the encoded forms (RFC 6749 section 2.3.1), not the raw ones.
    let header = seen.header("authorization").unwrap();
    let decoded = token_server::base64_decode(header.strip_prefix("Basic ").unwrap()).unwrap();
    assert_eq!(
        String::from_utf8(decoded).unwrap(),
        "client+id%3A1%26%C3%A9%2B%25:s3cr%2Bt%2F%25%3A%3D+x%26y%3F"
    );

    // The server refuses the other method.
    let post = HttpRefresher::refresh_token_grant(&server.url(), ODD_ID)
        .unwrap()
        .client_secret(ODD_SECRET.into(), ClientAuth::Post);
    let e = refresh_err(&post, Some(&stored("issued-rt-1")));
    assert_eq!(e.oauth_error(), Some("invalid_client"));
}

#[test]
fn client_secret_post_sends_id_and_secret_in_the_body() {
    let server = odd_server(AuthMethod::Post);
    let r = HttpRefresher::refresh_token_grant(&server.url(), ODD_ID)
        .unwrap()
        .client_secret(ODD_SECRET.into(), ClientAuth::Post);
    r.refresh(Some(&stored("rt-0"))).unwrap();
    let seen = server.last_request().unwrap();
    assert_eq!(seen.auth, Some(AuthMethod::Post));
    assert_eq!(seen.field("client_id"), Some(ODD_ID));
    assert_eq!(seen.field("client_secret"), Some(ODD_SECRET));
    assert_eq!(seen.header("authorization"), None);
}

#[test]
fn a_public_client_sends_its_id() {
    let server = TokenServer::start(Config::public("public-app"));
    server.seed_refresh_token("rt-0");
    let r = HttpRefresher::refresh_token_grant(&server.url(), "public-app")
        .unwrap()
        .scopes(["openid", "offline_access"]);
    r.refresh(Some(&stored("rt-0"))).unwrap();
    let seen = server.last_request().unwrap();
    assert_eq!(seen.auth, None);
    assert_eq!(seen.field("client_id"), Some("public-app"));
    assert_eq!(seen.field("scope"), Some("openid offline_access"));
    assert_eq!(seen.header("authorization"), None);
}

#[test]
fn client_credentials_with_scopes() {
    let server = TokenServer::start(Config::default());
    let r = HttpRefresher::client_credentials_grant(&server.url(), "client-1")
        .unwrap()
        .client_secret("secret-1".into(), ClientAuth::Post)
        .scopes(["reports:read", "reports:write"])
        .extra_param("audience", "https://api.example.org");
    assert_eq!(r.grant(), GrantType::ClientCredentials);

    // Nothing stored, or a stored token (whose secrets are ignored).
    let first = r.refresh(None).unwrap();
    assert_eq!(first.access_token().expose_secret(), "issued-cc-1");
    assert!(first.refresh_token().is_none());
    assert_eq!(first.scopes(), ["reports:read", "reports:write"]);
    let second = r.refresh(Some(&stored("rt-ignored"))).unwrap();
    assert_eq!(second.access_token().expose_secret(), "issued-cc-2");

    let seen = server.last_request().unwrap();
    assert_eq!(seen.grant_type.as_deref(), Some("client_credentials"));
    assert_eq!(seen.field("scope"), Some("reports:read reports:write"));
    assert_eq!(seen.field("audience"), Some("https://api.example.org"));
    assert_eq!(seen.field("refresh_token"), None);
    assert_eq!(server.client_credentials_count(), 2);
    assert_eq!(server.refresh_count(), 0);

    // Without authentication the server refuses.
    let anonymous = HttpRefresher::client_credentials_grant(&server.url(), "client-1").unwrap();
    assert_eq!(
        refresh_err(&anonymous, None).kind(),
        RefreshErrorKind::Rejected
    );
}

#[test]
fn an_extra_param_cannot_override_the_grant() {
    let server = TokenServer::start(Config::default());
    let r = HttpRefresher::client_credentials_grant(&server.url(), "client-1")
        .unwrap()
        .extra_param("grant_type", "password");
    let e = refresh_err(&r, None);
    assert_eq!(e.kind(), RefreshErrorKind::Rejected);
    assert!(e.message().contains("grant_type"), "{e}");
    assert_eq!(server.request_count(), 0);
}

#[test]
fn a_multi_token_answer_gives_the_stored_resource_server() {
    let server = TokenServer::start(Config::default());
    let r = refresher(&server);
    let body = r#"{"access_token":"at-auth","token_type":"Bearer","expires_in":60,
        "resource_server":"auth.example.org","refresh_token":"rt-auth",
        "other_tokens":[{"access_token":"at-transfer","token_type":"Bearer","expires_in":60,
        "resource_server":"transfer.example.org","refresh_token":"rt-transfer"}]}"#;
    let current = stored("rt-0").with_resource_server("transfer.example.org");
    server.fail_next(Failure::Body(200, body.to_owned()), 1);
    let token = r.refresh(Some(&current)).unwrap();
    assert_eq!(token.access_token().expose_secret(), "at-transfer");
    assert_eq!(token.resource_server(), Some("transfer.example.org"));

    // Without a resource server stored: the top-level token, resource server kept.
    server.fail_next(Failure::Body(200, body.to_owned()), 1);
    let token = r.refresh(Some(&stored("rt-0"))).unwrap();
    assert_eq!(token.access_token().expose_secret(), "at-auth");
    assert_eq!(token.resource_server(), Some("auth.example.org"));

    // A stored resource server the answer does not have.
    server.fail_next(Failure::Body(200, body.to_owned()), 1);
    let other = stored("rt-0").with_resource_server("elsewhere.example.org");
    let e = refresh_err(&r, Some(&other));
    assert_eq!(e.kind(), RefreshErrorKind::Rejected);
    assert!(e.message().contains("elsewhere.example.org"), "{e}");
    // The server issued tokens (and may have rotated the refresh token): not to be retried
    // with the same refresh token.
    assert!(e.request_possibly_processed(), "{e}");
}

#[test]
fn plain_http_is_refused_except_to_loopback() {
    for url in [
        "http://auth.example.org/token",
        "http://192.168.1.10/token",
        "ftp://auth.example.org/token",
        "https://user:pw@auth.example.org/token",
        "auth.example.org/token",
        "http://localhost.example.org/token",
    ] {
        let e = HttpRefresher::refresh_token_grant(url, "app").unwrap_err();
        assert_eq!(e.kind(), RefreshErrorKind::Rejected, "{url}");
        let e = HttpRefresher::client_credentials_grant(url, "app").unwrap_err();
        assert_eq!(e.kind(), RefreshErrorKind::Rejected, "{url}");
    }
    for url in [
        "https://auth.example.org/token",
        "http://127.0.0.1:1/token",
        "http://[::1]:1/token",
        "http://[::ffff:127.0.0.1]:1/token",
    ] {
        HttpRefresher::refresh_token_grant(url, "app").unwrap();
    }
    // A name is not a literal loopback address: it could resolve anywhere.
    for url in ["http://localhost:1/token", "http://LOCALHOST/token"] {
        let e = HttpRefresher::refresh_token_grant(url, "app").unwrap_err();
        assert_eq!(e.kind(), RefreshErrorKind::Rejected, "{url}");
        assert!(e.message().contains("127.0.0.1"), "{e}");
    }
    HttpRefresher::refresh_token_grant("https://localhost/token", "app").unwrap();
    let r = HttpRefresher::refresh_token_grant("https://auth.example.org/token", "app").unwrap();
    assert!(r.revocation_url("http://auth.example.org/revoke").is_err());
}

#[test]
fn secrets_never_show() {
    const SECRET: &str = "CLIENT-SECRET-QZX";
    const RT: &str = "REFRESH-TOKEN-QZX";
    const ASSERTION: &str = "ASSERTION-QZX";
    let server = TokenServer::start(Config {
        client_secret: Some(SECRET.to_owned()),
        ..Config::default()
    });
    server.seed_refresh_token(RT);
    let r = HttpRefresher::refresh_token_grant(&server.url(), "client-1")
        .unwrap()
        .client_secret(SECRET.into(), ClientAuth::Post)
        .extra_param("client_assertion", ASSERTION)
        .timeout(Duration::from_millis(300));
    let debug = format!("{r:?} {r:#?}");
    assert!(
        debug.contains(&server.url()) && debug.contains("client-1"),
        "{debug}"
    );
    assert!(
        debug.contains("Post") && debug.contains("RefreshToken"),
        "{debug}"
    );
    for needle in [SECRET, ASSERTION] {
        assert!(!debug.contains(needle), "{debug}");
    }

    let current = stored(RT);
    let echo = |code: &str, description: String| Failure::OAuthError {
        status: 400,
        code: code.to_owned(),
        description: Some(description),
    };
    server.fail_next(
        echo("invalid_grant", format!("refresh token {RT} has expired")),
        1,
    );
    server.fail_next(echo("invalid_client", format!("bad secret {SECRET}")), 1);
    server.fail_next(echo("invalid_grant", "Token expired.".to_owned()), 1);
    server.fail_next(Failure::Body(200, format!(r#"{{"token_type":"{RT}"}}"#)), 1);
    server.fail_next(Failure::Body(500, format!(r#"{{"error":"{RT}"}}"#)), 1);
    server.fail_next(Failure::Slow(Duration::from_secs(5)), 1);
    let mut errors = Vec::new();
    for _ in 0..6 {
        errors.push(refresh_err(&r, Some(&current)));
    }
    // A description that repeats a secret is left out; an innocent one is kept.
    assert!(!errors[0].message().contains("expired"), "{}", errors[0]);
    assert!(
        errors[2].message().contains("Token expired."),
        "{}",
        errors[2]
    );
    for e in &errors {
        let text = shown(e);
        for needle in [SECRET, RT, ASSERTION, "issued-"] {
            assert!(!text.contains(needle), "{text}");
        }
    }
}

/// Issue 12, finding 6: a server's words are checked for encoded and partial copies of the
/// secrets too, not only for exact ones; the error code as well as the description.
#[test]
fn encoded_and_partial_secrets_never_show() {
    const SECRET: &str = "Cl/ent+Secret=QZX";
    const RT: &str = "Refresh-Token-QZX-0123456789";
    let server = TokenServer::start(Config {
        client_secret: Some(SECRET.to_owned()),
        ..Config::default()
    });
    server.seed_refresh_token(RT);
    let r = HttpRefresher::refresh_token_grant(&server.url(), "client-1")
        .unwrap()
        .client_secret(SECRET.into(), ClientAuth::Basic)
        .timeout(Duration::from_secs(5));
    let b64 = |bytes: &[u8]| {
        use base64ct::Encoding as _;
        let mut buf = vec![0u8; base64ct::Base64::encoded_len(bytes)];
        base64ct::Base64::encode(bytes, &mut buf)
            .unwrap()
            .to_owned()
    };
    let basic = b64(b"client-1:Cl%2Fent%2BSecret%3DQZX");
    let echoes = [
        format!("Authorization: Basic {basic} is not valid"),
        "client_secret=Cl%2Fent%2BSecret%3DQZX is wrong".to_owned(),
        "client_secret=Cl%2fent%2bSecret%3dQZX is wrong".to_owned(),
        format!("refresh token {}... is unknown", &RT[..8]),
        format!(
            "refresh_token={} is unknown",
            b64(RT.as_bytes())
                .replace('+', "-")
                .replace('/', "_")
                .trim_end_matches('=')
        ),
        format!("grant {} revoked", b64(format!("x{RT}").as_bytes())),
    ];
    for echo in &echoes {
        server.fail_next(
            Failure::OAuthError {
                status: 400,
                code: "invalid_request".to_owned(),
                description: Some(echo.clone()),
            },
            1,
        );
    }
    server.fail_next(
        Failure::OAuthError {
            status: 400,
            code: RT.to_owned(),
            description: None,
        },
        1,
    );
    for echo in &echoes {
        let e = refresh_err(&r, Some(&stored(RT)));
        let text = shown(&e);
        assert!(
            !text.contains("is wrong")
                && !text.contains("unknown")
                && !text.contains("revoked")
                && !text.contains("not valid"),
            "{echo} -> {text}"
        );
        assert_eq!(e.oauth_error(), Some("invalid_request"));
    }
    let e = refresh_err(&r, Some(&stored(RT)));
    let text = shown(&e);
    assert!(!text.contains(&RT[..8]), "{text}");
    assert_eq!(e.kind(), RefreshErrorKind::Rejected, "{text}");
}

#[test]
fn revoke_posts_the_refresh_token() {
    let server = TokenServer::start(Config::default());
    server.seed_refresh_token("rt-0");
    let r = refresher(&server);
    assert_eq!(
        r.revoke(&stored("rt-0")).unwrap_err().kind(),
        RefreshErrorKind::Rejected
    );
    let r = r.revocation_url(&server.revocation_url()).unwrap();
    r.revoke(&stored("rt-0")).unwrap();
    assert_eq!(server.revocations(), ["rt-0"]);
    assert!(!server.is_live("rt-0"));
    let seen = server.last_request().unwrap();
    assert_eq!(seen.field("token_type_hint"), Some("refresh_token"));
    assert_eq!(seen.auth, Some(AuthMethod::Basic));
    assert!(r
        .refresh(Some(&stored("rt-0")))
        .unwrap_err()
        .is_invalid_grant());

    // An access token when there is no refresh token; failures map as for refreshes.
    r.revoke(&Token::new("at-1".into())).unwrap();
    assert_eq!(
        server.last_request().unwrap().field("token_type_hint"),
        Some("access_token")
    );
    server.fail_next(Failure::StatusRetryAfter(503, 3), 1);
    let e = r.revoke(&stored("rt-x")).unwrap_err();
    assert!(e.is_transient());
    assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
}

#[test]
fn the_test_server_holds_requests_while_paused() {
    let server = TokenServer::start(Config::default());
    server.seed_refresh_token("rt-0");
    let r = refresher(&server);
    server.pause();
    std::thread::scope(|s| {
        let handle = s.spawn(|| r.refresh(Some(&stored("rt-0"))));
        assert!(server.wait_held(1, Duration::from_secs(5)));
        assert_eq!(server.issued_count(), 0);
        server.resume();
        handle.join().unwrap().unwrap();
    });
    assert_eq!(server.issued_count(), 1);
    assert_eq!(server.held(), 0);
}
