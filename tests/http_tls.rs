//! The HTTP refresher against a real TLS server on 127.0.0.1 (tests/support/src/tls_front.rs in
//! front of tests/support/src/token_server.rs), and through a real CONNECT proxy: a failure
//! before the request was written (the handshake, its certificate checks, a proxy) cannot
//! have been processed; one after may have been.
#![cfg(feature = "http")]
#![allow(clippy::unwrap_used)]

use support::tls_front;
use support::token_server;

use std::time::Duration;

use tls_front::{Cert, ConnectProxy, Mode, ProxyMode, TlsFront, CA_PEM};
use token_server::{Config, Failure, TokenServer};
use tokenvault::oauth::{ClientAuth, HttpRefresher, RefreshError, RefreshErrorKind, Refresher};
use tokenvault::secrecy::ExposeSecret;
use tokenvault::Token;

fn stored(refresh_token: &str) -> Token {
    Token::new("old-access".into()).with_refresh_token(refresh_token.to_owned().into())
}

/// A refresher for the default server's client at `url`, trusting the test CA.
fn refresher(url: &str) -> HttpRefresher {
    HttpRefresher::refresh_token_grant(url, "client-1")
        .unwrap()
        .client_secret("secret-1".into(), ClientAuth::Basic)
        .timeout(Duration::from_secs(5))
        .root_certificates_pem(CA_PEM)
        .unwrap()
}

fn setup(mode: Mode) -> (TokenServer, TlsFront) {
    let server = TokenServer::start(Config::default());
    server.seed_refresh_token("rt-0");
    let front = TlsFront::start(server.addr(), mode);
    (server, front)
}

/// A transient failure that says the request was not sent.
fn assert_not_sent(e: &RefreshError) {
    assert_eq!(e.kind(), RefreshErrorKind::Transient, "{e}");
    assert!(!e.request_possibly_processed(), "{e}");
    assert!(e.message().contains("not sent"), "{e}");
}

/// A transient failure marked possibly processed.
fn assert_possibly_processed(e: &RefreshError) {
    assert_eq!(e.kind(), RefreshErrorKind::Transient, "{e}");
    assert!(e.request_possibly_processed(), "{e}");
    assert!(e.message().contains("may have reached the server"), "{e}");
}

#[test]
fn a_trusted_certificate_refreshes() {
    let (server, front) = setup(Mode::Serve(Cert::Good));
    let token = refresher(&front.url())
        .refresh(Some(&stored("rt-0")))
        .unwrap();
    assert!(token
        .access_token()
        .expose_secret()
        .starts_with("issued-at-"));
    assert_eq!(server.presentations("rt-0"), 1);
    assert_eq!(front.handshakes(), 1);
}

#[test]
fn certificates_the_client_does_not_accept_fail_before_sending() {
    for (cert, trust_ca, why) in [
        (Cert::SelfSigned, true, "self-signed"),
        (Cert::Good, false, "test CA not among the Mozilla roots"),
        (Cert::Expired, true, "expired"),
        (Cert::OtherHost, true, "issued for another host"),
    ] {
        let (server, front) = setup(Mode::Serve(cert));
        let r = if trust_ca {
            refresher(&front.url())
        } else {
            HttpRefresher::refresh_token_grant(&front.url(), "client-1").unwrap()
        };
        let e = r.refresh(Some(&stored("rt-0"))).unwrap_err();
        assert_not_sent(&e);
        assert!(e.message().contains("certificate"), "{why}: {e}");
        assert_eq!(front.connections(), 1, "{why}");
        assert_eq!(front.handshakes(), 0, "{why}");
        assert_eq!(server.request_count(), 0, "{why}");
        assert!(server.is_live("rt-0"), "{why}");
    }
}

#[test]
fn an_expired_certificate_is_named() {
    let (_server, front) = setup(Mode::Serve(Cert::Expired));
    let e = refresher(&front.url())
        .refresh(Some(&stored("rt-0")))
        .unwrap_err();
    assert!(e.message().contains("expired"), "{e}");
}

#[test]
fn a_handshake_cut_short_fails_before_sending() {
    for mode in [
        Mode::ResetInHandshake,
        Mode::CloseInHandshake,
        Mode::Garbage,
    ] {
        let (server, front) = setup(mode);
        let e = refresher(&front.url())
            .refresh(Some(&stored("rt-0")))
            .unwrap_err();
        assert_not_sent(&e);
        assert_eq!(front.connections(), 1, "{mode:?}");
        assert_eq!(server.request_count(), 0, "{mode:?}");
    }
}

#[test]
fn a_lost_answer_over_tls_is_possibly_processed() {
    let (server, front) = setup(Mode::Serve(Cert::Good));
    server.fail_next(Failure::LostResponse, 1);
    let e = refresher(&front.url())
        .refresh(Some(&stored("rt-0")))
        .unwrap_err();
    assert_possibly_processed(&e);
    // The ambiguity is real: the server exchanged (and spent) the refresh token.
    assert_eq!(front.relayed(), 1);
    assert_eq!(server.issued_count(), 1);
    assert!(!server.is_live("rt-0"));
}

#[test]
fn a_slow_answer_over_tls_is_possibly_processed() {
    let (server, front) = setup(Mode::Serve(Cert::Good));
    server.fail_next(Failure::Slow(Duration::from_secs(20)), 1);
    let e = refresher(&front.url())
        .timeout(Duration::from_millis(500))
        .refresh(Some(&stored("rt-0")))
        .unwrap_err();
    assert_possibly_processed(&e);
    assert_eq!(front.handshakes(), 1);
}

/// Through a CONNECT proxy from the environment (this is the only test that sets it: the
/// others use loopback addresses, which never go through a proxy). The proxy tunnels every
/// CONNECT to the TLS front, whose `OtherHost` certificate is for `auth.example.org`.
#[test]
fn through_a_proxy_only_the_token_request_counts() {
    for name in [
        "NO_PROXY",
        "no_proxy",
        "all_proxy",
        "HTTPS_PROXY",
        "https_proxy",
    ] {
        std::env::remove_var(name);
    }
    let url = "https://auth.example.org/token";

    // The proxy resets the connection while reading the CONNECT request: the token
    // request was never written.
    let proxy = ConnectProxy::start(ProxyMode::ResetInConnect);
    std::env::set_var("ALL_PROXY", proxy.url());
    let e = refresher(url).refresh(Some(&stored("rt-0"))).unwrap_err();
    assert_not_sent(&e);
    assert_eq!(proxy.connects(), 1);

    // The tunnel is up (the CONNECT request was written and answered), then the TLS
    // handshake is cut short: the token request was never written either.
    let (server, front) = setup(Mode::CloseInHandshake);
    let proxy = ConnectProxy::start(ProxyMode::TunnelTo(front.addr()));
    std::env::set_var("ALL_PROXY", proxy.url());
    let e = refresher(url).refresh(Some(&stored("rt-0"))).unwrap_err();
    assert_not_sent(&e);
    assert_eq!((proxy.connects(), front.connections()), (1, 1));
    assert_eq!(server.request_count(), 0);

    // The token request is written through the tunnel and its answer lost.
    front.set_mode(Mode::Serve(Cert::OtherHost));
    server.fail_next(Failure::LostResponse, 1);
    let e = refresher(url).refresh(Some(&stored("rt-0"))).unwrap_err();
    assert_possibly_processed(&e);
    assert_eq!(server.issued_count(), 1);

    // And a good exchange through the tunnel.
    let rt = server.live_successor("rt-0").unwrap();
    let token = refresher(url).refresh(Some(&stored(&rt))).unwrap();
    assert!(token.refresh_token().is_some());
    assert_eq!(proxy.connects(), 3);
    std::env::remove_var("ALL_PROXY");
}
