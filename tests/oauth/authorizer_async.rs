//! The async wrappers (feature `async`): many tasks, one refresh; a dropped future does not
//! lose the rotated token.

#![cfg(feature = "async")]
#![allow(clippy::unwrap_used, clippy::panic)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use support::raw_key;
use tokenvault::oauth::{Authorizer, RefreshError};
use tokenvault::secrecy::ExposeSecret;
use tokenvault::{Token, Vault};

fn setup() -> (tempfile::TempDir, Vault) {
    let dir = tempfile::tempdir().unwrap();
    let vault = Vault::create(dir.path().join("v"), &raw_key(1)).unwrap();
    vault
        .namespace("n")
        .unwrap()
        .put(
            "api",
            &Token::new("at-0".into())
                .with_refresh_token("rt-0".into())
                .with_expires_at(SystemTime::now() - Duration::from_secs(1)),
        )
        .unwrap();
    (dir, vault)
}

fn slow_refresher(calls: &Arc<AtomicUsize>, delay: Duration) -> impl tokenvault::oauth::Refresher {
    let calls = Arc::clone(calls);
    move |current: Option<&Token>| -> Result<Token, RefreshError> {
        assert_eq!(
            current.unwrap().refresh_token().unwrap().expose_secret(),
            "rt-0"
        );
        let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
        std::thread::sleep(delay);
        Ok(Token::new(format!("at-{n}").into())
            .with_refresh_token(format!("rt-{n}").into())
            .with_expires_at(SystemTime::now() + Duration::from_secs(3600)))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_tasks_one_refresh() {
    let (_dir, vault) = setup();
    let calls = Arc::new(AtomicUsize::new(0));
    let auth = Authorizer::builder(
        &vault.namespace("n").unwrap(),
        "api",
        slow_refresher(&calls, Duration::from_millis(200)),
    )
    .build()
    .unwrap();
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let auth = auth.clone();
            tokio::spawn(async move { auth.token_async().await })
        })
        .collect();
    for task in tasks {
        let token = task.await.unwrap().unwrap();
        assert_eq!(token.access_token().expose_secret(), "at-1");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_future_does_not_lose_the_rotated_token() {
    let (_dir, vault) = setup();
    let ns = vault.namespace("n").unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let auth = Authorizer::builder(
        &ns,
        "api",
        slow_refresher(&calls, Duration::from_millis(400)),
    )
    .build()
    .unwrap();
    let gave_up = tokio::time::timeout(Duration::from_millis(20), auth.token_async()).await;
    assert!(gave_up.is_err(), "the caller gave up first");
    drop(auth);
    for _ in 0..400 {
        let stored: Token = ns.get("api").unwrap().unwrap();
        if stored.access_token().expose_secret() == "at-1" {
            assert_eq!(stored.refresh_token().unwrap().expose_secret(), "rt-1");
            assert_eq!(calls.load(Ordering::SeqCst), 1);
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the rotated token was never stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_logout_revokes_after_removing() {
    let (_dir, vault) = setup();
    let ns = vault.namespace("n").unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let auth = Authorizer::builder(&ns, "api", slow_refresher(&calls, Duration::ZERO))
        .build()
        .unwrap();
    let ns2 = ns.clone();
    let logout = auth
        .logout_async(|token| async move {
            assert!(ns2.get::<Token>("api").unwrap().is_none());
            assert_eq!(token.refresh_token().unwrap().expose_secret(), "rt-0");
            Err::<(), _>("revocation failed")
        })
        .await
        .unwrap();
    assert!(logout.removed);
    assert_eq!(logout.revocation, Some(Err("revocation failed")));
}
