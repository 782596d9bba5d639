//! The refresh transaction end to end, against a real OAuth 2.0 token endpoint on 127.0.0.1
//! (the in-test server from `tests/support/src/token_server.rs`, which rotates refresh tokens and
//! counts how often each one is presented).
//!
//! ```text
//! cargo run --example refresh_local --features http
//! ```
//!
//! It stores an expired grant in a new vault, then asks an `Authorizer` with an
//! `HttpRefresher` for a valid token: from 20 threads at once (one refresh), again after the
//! token expires (rotation), and finally logs out, revoking the refresh token at the server
//! after the local record is gone.

use support::token_server;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokenvault::oauth::{Authorizer, ClientAuth, Clock, HttpRefresher, ManualClock};
use tokenvault::secrecy::{ExposeSecret, SecretBox, SecretString};
use tokenvault::{KeySource, Token, Vault};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = token_server::TokenServer::start(token_server::Config::default());
    server.seed_refresh_token("rt-from-login");
    println!("token endpoint: {}", server.url());

    let dir = tempfile::tempdir()?;
    let key = KeySource::raw_key(SecretBox::new(Box::new([42u8; 32])));
    let vault = Vault::create(dir.path().join("vault"), &key)?;
    let ns = vault.namespace("user/alice")?;
    // A clock we can move, to show expiry without waiting an hour.
    let clock = ManualClock::new(SystemTime::now());
    ns.put(
        "api",
        &Token::new("expired-access-token".into())
            .with_refresh_token("rt-from-login".into())
            .with_expires_at(SystemTime::now() - Duration::from_secs(1))
            .with_identity("alice"),
    )?;

    let refresher = HttpRefresher::refresh_token_grant(&server.url(), "client-1")?
        .client_secret(SecretString::from("secret-1"), ClientAuth::Basic)
        .timeout(Duration::from_secs(5))
        .revocation_url(&server.revocation_url())?
        .clock(clock.clone());
    let revoker = refresher.clone();
    let auth = Authorizer::builder(&ns, "api", refresher)
        .clock(clock.clone())
        .build()?;

    // 20 threads want a token at once: one refresh.
    let auth = Arc::new(auth);
    let threads: Vec<_> = (0..20)
        .map(|_| {
            let auth = Arc::clone(&auth);
            std::thread::spawn(move || auth.token().map(|t| t.access_token().expose_secret().len()))
        })
        .collect();
    for t in threads {
        t.join().map_err(|_| "a thread panicked")??;
    }
    println!(
        "20 concurrent callers: {} refresh request(s) at the server",
        server.refresh_count()
    );
    let stored: Token = ns.get("api")?.ok_or("the refreshed token was not stored")?;
    println!(
        "stored: a new access token expiring in {:?}, identity {:?}, a rotated refresh token",
        stored
            .expires_at()
            .and_then(|e| e.duration_since(clock.now()).ok())
            .map(|d| Duration::from_secs(d.as_secs())),
        stored.identity()
    );

    // An hour later the token is due: one more refresh, with the rotated refresh token.
    clock.advance(Duration::from_secs(3600));
    auth.token()?;
    println!(
        "after expiry: {} refresh requests; most presentations of any refresh token: {}",
        server.refresh_count(),
        server.max_presentations()
    );
    assert_eq!(server.refresh_count(), 2);
    assert_eq!(server.max_presentations(), 1);

    // Logout: the record goes first, then the refresh token is revoked at the server.
    let logout = auth.logout(|token| revoker.revoke(&token))?;
    println!(
        "logged out: record removed = {}, revocation = {:?}, revoked at the server: {}",
        logout.removed,
        logout.revocation,
        server.revocations().len()
    );
    assert!(ns.get::<Token>("api")?.is_none());
    vault.close()?;
    Ok(())
}
