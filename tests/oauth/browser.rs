//! The authorization code grant with PKCE and a loopback redirect against the token server on
//! 127.0.0.1, the test playing the browser: `state` checked, a verifier mismatch refused by
//! the server, a denial, stray requests, no redirect in time, and the listener closed after
//! the one redirect it serves.
#![cfg(feature = "http")]
#![allow(clippy::unwrap_used, clippy::panic)]

use std::net::TcpStream;
use std::time::Duration;

use support::token_server::{Config, TokenServer};
use tokenvault::oauth::{GrantType, HttpRefresher, Provider, RefreshErrorKind};
use tokenvault::secrecy::ExposeSecret;

fn refresher(server: &TokenServer) -> HttpRefresher {
    Provider::new(&server.url(), "cli-app")
        .unwrap()
        .authorization_endpoint(&server.authorize_url())
        .unwrap()
        .refresher(GrantType::RefreshToken)
        .unwrap()
        .scopes(["openid"])
        .timeout(Duration::from_secs(5))
}

/// Plays the browser on another thread: opens the authorization URL, then follows the
/// redirect after `edit` changed it. Returns the loopback's status.
fn browse(url: String, edit: fn(String) -> String) -> std::thread::JoinHandle<u16> {
    std::thread::spawn(move || {
        let (status, location) = support::http_get(&url);
        assert_eq!(status, 302);
        support::http_get(&edit(location.unwrap())).0
    })
}

#[test]
fn a_code_exchanged_with_its_verifier_logs_in_and_the_listener_closes() {
    let server = TokenServer::start(Config::public("cli-app"));
    let refresher = refresher(&server);
    let login = refresher.browser_login(&server.authorize_url()).unwrap();
    let url = login.authorization_url().to_owned();
    assert!(url.contains("code_challenge_method=S256"));
    assert!(url.contains("response_type=code"));
    assert!(url.contains("scope=openid"));
    let redirect = login.redirect_uri().to_owned();
    assert!(redirect.starts_with("http://127.0.0.1:") && redirect.ends_with("/callback"));
    assert!(!format!("{login:?}").contains(&url[url.find("state=").unwrap() + 6..][..8]));

    // A stray request first (a favicon): answered 404, not the end of the login.
    let port = redirect
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let stray = format!("http://{port}/favicon.ico");
    let browser = std::thread::spawn(move || {
        let stray = support::http_get(&stray).0;
        let (status, location) = support::http_get(&url);
        assert_eq!(status, 302);
        (stray, support::http_get(&location.unwrap()).0)
    });
    let response = login.finish(&refresher, Duration::from_secs(10)).unwrap();
    assert_eq!(browser.join().unwrap(), (404, 200));
    let token = &response.tokens()[0];
    assert!(token
        .access_token()
        .expose_secret()
        .starts_with("issued-login-"));
    assert!(token.refresh_token().is_some());
    let exchange = server.last_request().unwrap();
    assert_eq!(exchange.grant_type.as_deref(), Some("authorization_code"));
    assert_eq!(exchange.field("redirect_uri"), Some(redirect.as_str()));
    assert_eq!(exchange.field("code_verifier").unwrap().len(), 43);
    // One redirect served: the listener is gone.
    assert!(TcpStream::connect(&port).is_err());
}

#[test]
fn a_wrong_state_a_denial_and_a_verifier_mismatch_are_refused() {
    let server = TokenServer::start(Config::public("cli-app"));
    let refresher = refresher(&server);

    // A redirect with another state (a forged one): refused, nothing exchanged.
    let login = refresher.browser_login(&server.authorize_url()).unwrap();
    let browser = browse(login.authorization_url().to_owned(), |location| {
        let at = location.find("state=").unwrap() + 6;
        format!("{}forged", &location[..at])
    });
    let err = login
        .finish(&refresher, Duration::from_secs(10))
        .unwrap_err();
    assert_eq!(browser.join().unwrap(), 400);
    assert!(err.message().contains("state"), "{err}");
    assert_eq!(server.issued_count(), 0);

    // The user denies.
    server.deny_next_authorization();
    let login = refresher.browser_login(&server.authorize_url()).unwrap();
    let browser = browse(login.authorization_url().to_owned(), |l| l);
    let err = login
        .finish(&refresher, Duration::from_secs(10))
        .unwrap_err();
    browser.join().unwrap();
    assert_eq!(err.oauth_error(), Some("access_denied"));

    // The server holds another challenge: the verifier does not match, the server refuses.
    server.corrupt_next_challenge();
    let login = refresher.browser_login(&server.authorize_url()).unwrap();
    let browser = browse(login.authorization_url().to_owned(), |l| l);
    let err = login
        .finish(&refresher, Duration::from_secs(10))
        .unwrap_err();
    browser.join().unwrap();
    assert_eq!(err.oauth_error(), Some("invalid_grant"));
    assert!(!err.to_string().contains("ac-"), "{err}");
    assert_eq!(server.issued_count(), 0);

    // No browser comes back: a bounded wait.
    let login = refresher.browser_login(&server.authorize_url()).unwrap();
    let err = login
        .finish(&refresher, Duration::from_millis(200))
        .unwrap_err();
    assert_eq!(err.kind(), RefreshErrorKind::Transient);
    assert_eq!(err.oauth_error(), Some("expired_token"));
}
