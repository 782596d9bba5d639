//! The device authorization grant (RFC 8628) against the token server on 127.0.0.1: polling
//! on the refresher's clock (a `ManualClock`, so no test waits), `authorization_pending`,
//! `slow_down` (+5 s each), `access_denied`, `expired_token` and the code's own expiry.
#![cfg(feature = "http")]
#![allow(clippy::unwrap_used)]

use std::time::{Duration, SystemTime};

use support::token_server::{Config, DevicePoll, TokenServer};
use tokenvault::oauth::{Clock, HttpRefresher, ManualClock, Provider, RefreshErrorKind};
use tokenvault::secrecy::ExposeSecret;

fn start() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

/// A public client's refresher for the device grant, on a manual clock.
fn refresher(server: &TokenServer, clock: &ManualClock) -> HttpRefresher {
    Provider::new(&server.url(), "cli-app")
        .unwrap()
        .device_authorization_endpoint(&server.device_url())
        .unwrap()
        .scopes(["openid", "offline_access"])
        .refresher(tokenvault::oauth::GrantType::RefreshToken)
        .unwrap()
        .scopes(["openid", "offline_access"])
        .clock(clock.clone())
        .timeout(Duration::from_secs(5))
}

#[test]
fn pending_and_slow_down_then_approval() {
    let server = TokenServer::start(Config::public("cli-app"));
    server.set_device_interval(5);
    server.script_device(&[
        DevicePoll::Pending,
        DevicePoll::SlowDown,
        DevicePoll::Pending,
        DevicePoll::SlowDown,
        DevicePoll::Approve,
    ]);
    let clock = ManualClock::new(start());
    let refresher = refresher(&server, &clock);
    let mut auth = refresher
        .device_authorization(&server.device_url())
        .unwrap();
    assert!(auth.user_code().starts_with("WDJB-"));
    assert!(auth.verification_uri().ends_with("/activate"));
    assert!(auth
        .verification_uri_complete()
        .unwrap()
        .contains(auth.user_code()));
    assert_eq!(auth.interval(), Duration::from_secs(5));
    assert!(!format!("{auth:?}").contains("dc-"));
    let request = server.last_request().unwrap();
    assert_eq!(request.field("client_id"), Some("cli-app"));
    assert_eq!(request.field("scope"), Some("openid offline_access"));

    let response = refresher.poll_device(&mut auth).unwrap();
    let token = &response.tokens()[0];
    assert!(token
        .access_token()
        .expose_secret()
        .starts_with("issued-login-"));
    assert!(token.refresh_token().is_some());
    // Five polls, each after the interval: 5, 5, 10 (after the first slow_down), 10, 15.
    assert_eq!(server.device_polls(), 5);
    assert_eq!(
        clock.now(),
        start() + Duration::from_secs(5 + 5 + 10 + 10 + 15)
    );
    assert_eq!(auth.interval(), Duration::from_secs(15));
    let poll = server.last_request().unwrap();
    assert_eq!(
        poll.grant_type.as_deref(),
        Some("urn:ietf:params:oauth:grant-type:device_code")
    );
    assert!(poll.field("device_code").unwrap().starts_with("dc-"));
}

#[test]
fn denial_and_expiry_end_the_polling() {
    let server = TokenServer::start(Config::public("cli-app"));
    let clock = ManualClock::new(start());
    let refresher = refresher(&server, &clock);

    server.script_device(&[DevicePoll::Pending, DevicePoll::Deny]);
    let mut auth = refresher
        .device_authorization(&server.device_url())
        .unwrap();
    let err = refresher.poll_device(&mut auth).unwrap_err();
    assert_eq!(err.oauth_error(), Some("access_denied"));
    assert_eq!(err.kind(), RefreshErrorKind::Rejected);

    server.script_device(&[DevicePoll::Pending, DevicePoll::Expire]);
    let mut auth = refresher
        .device_authorization(&server.device_url())
        .unwrap();
    let err = refresher.poll_device(&mut auth).unwrap_err();
    assert_eq!(err.oauth_error(), Some("expired_token"));

    // The code's own lifetime: the client stops without asking once it has passed.
    server.set_device_expires_in(12);
    server.set_device_interval(5);
    server.script_device(&[DevicePoll::Pending; 10]);
    let polls = server.device_polls();
    let mut auth = refresher
        .device_authorization(&server.device_url())
        .unwrap();
    let err = refresher.poll_device(&mut auth).unwrap_err();
    assert_eq!(err.oauth_error(), Some("expired_token"));
    assert_eq!(server.device_polls() - polls, 2);
}

#[test]
fn a_server_failure_while_polling_is_transient() {
    let server = TokenServer::start(Config::public("cli-app"));
    let clock = ManualClock::new(start());
    let refresher = refresher(&server, &clock);
    let mut auth = refresher
        .device_authorization(&server.device_url())
        .unwrap();
    server.fail_next(support::token_server::Failure::Status(503), 1);
    let err = refresher.poll_device(&mut auth).unwrap_err();
    assert_eq!(err.kind(), RefreshErrorKind::Transient);
    // Polling again with the same authorization goes on.
    assert!(refresher.poll_device(&mut auth).is_ok());
}
