//! The authorizer: a valid token on demand, single flight, leases across handles and
//! processes, the failure policy, logout. Refreshers here are closures that count their calls
//! (the HTTP refresher has its own tests, and `tests/oauth/authorizer_http.rs` runs the two together
//! against a real endpoint).

#![allow(clippy::unwrap_used, clippy::panic)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use support::raw_key;
use tokenvault::oauth::TokenError;
use tokenvault::oauth::{
    Authorizer, Clock, DeadGrant, ManualClock, RefreshError, RefreshErrorKind,
};
use tokenvault::secrecy::ExposeSecret;
use tokenvault::{Error, Namespace, Token, Vault};

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

const T0: u64 = 1_800_000_000;

fn vault() -> (tempfile::TempDir, Vault) {
    let dir = tempfile::tempdir().unwrap();
    let vault = Vault::create(dir.path().join("v"), &raw_key(1)).unwrap();
    (dir, vault)
}

fn grant(access: &str, refresh: &str, expires: SystemTime) -> Token {
    Token::new(access.to_owned().into())
        .with_refresh_token(refresh.to_owned().into())
        .with_expires_at(expires)
        .with_scopes(["openid", "api"])
        .with_identity("alice")
}

/// A refresher that counts its calls, checks it is never handed a refresh token twice, and
/// issues `at-N` / `rt-N` tokens that live `lifetime` from the clock's now.
#[derive(Clone)]
struct Counting {
    calls: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<String>>>,
    clock: ManualClock,
    lifetime: Duration,
    delay: Duration,
    rotate: bool,
}

impl Counting {
    fn new(clock: &ManualClock) -> Self {
        Self {
            calls: Arc::default(),
            seen: Arc::default(),
            clock: clock.clone(),
            lifetime: Duration::from_secs(3600),
            delay: Duration::ZERO,
            rotate: true,
        }
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn refresher(&self) -> impl Fn(Option<&Token>) -> Result<Token, RefreshError> + Clone {
        let this = self.clone();
        move |current: Option<&Token>| {
            let n = this.calls.fetch_add(1, Ordering::SeqCst) + 1;
            let rt = current
                .and_then(Token::refresh_token)
                .map(|r| r.expose_secret().to_owned());
            if let Some(rt) = &rt {
                let mut seen = this.seen.lock().unwrap();
                assert!(!seen.contains(rt), "refresh token {rt} presented twice");
                seen.push(rt.clone());
            }
            std::thread::sleep(this.delay);
            let mut token = Token::new(format!("at-{n}").into())
                .with_expires_at(this.clock.now() + this.lifetime);
            if this.rotate {
                token = token.with_refresh_token(format!("rt-{n}").into());
            }
            Ok(token)
        }
    }
}

fn access(token: &Token) -> String {
    token.access_token().expose_secret().to_owned()
}

#[test]
fn serves_the_cache_until_the_margin_then_refreshes_once() {
    let (_dir, vault) = vault();
    let ns = vault.namespace("user/alice").unwrap();
    let clock = ManualClock::new(at(T0));
    ns.put("api", &grant("at-0", "rt-0", at(T0 + 3600)))
        .unwrap();
    let counting = Counting::new(&clock);
    let auth = Authorizer::builder(&ns, "api", counting.refresher())
        .clock(clock.clone())
        .margin(Duration::from_secs(60))
        .jitter(Duration::ZERO)
        .build()
        .unwrap();

    // Valid: served from the store, then from memory, without refreshing.
    for _ in 0..5 {
        assert_eq!(access(&auth.token().unwrap()), "at-0");
    }
    assert_eq!(counting.calls(), 0);

    // Inside the margin: one refresh, stored before it is returned, merged with the grant.
    clock.set(at(T0 + 3600 - 59));
    let token = auth.token().unwrap();
    assert_eq!(access(&token), "at-1");
    assert_eq!(counting.calls(), 1);
    let stored: Token = ns.get("api").unwrap().unwrap();
    assert!(stored.same_as(&token));
    assert_eq!(stored.refresh_token().unwrap().expose_secret(), "rt-1");
    assert_eq!(stored.identity(), Some("alice"));
    assert_eq!(stored.scopes(), ["openid", "api"]);
    for _ in 0..5 {
        assert_eq!(access(&auth.token().unwrap()), "at-1");
    }
    assert_eq!(counting.calls(), 1);
    assert_eq!(*counting.seen.lock().unwrap(), ["rt-0"]);
    // No lease is left behind, and the lease is not a user-visible key.
    assert_eq!(ns.keys().unwrap(), ["api"]);
    assert_eq!(ns.record_count().unwrap(), 1);
}

#[test]
fn a_lifetime_shorter_than_the_margin_does_not_refresh_on_every_call() {
    let (_dir, vault) = vault();
    let ns = vault.namespace("n").unwrap();
    let clock = ManualClock::new(at(T0));
    let mut counting = Counting::new(&clock);
    counting.lifetime = Duration::from_secs(20); // far below the 60 s margin
    let auth = Authorizer::builder(&ns, "api", counting.refresher())
        .clock(clock.clone())
        .margin(Duration::from_secs(60))
        .jitter(Duration::ZERO)
        .build()
        .unwrap();
    ns.put("api", &grant("at-0", "rt-0", at(T0))).unwrap();
    // 600 calls over 120 s, one every 200 ms.
    for _ in 0..600 {
        auth.token().unwrap();
        clock.advance(Duration::from_millis(200));
    }
    // Refreshed halfway through each 20 s life: about every 10 s, not 600 times.
    let calls = counting.calls();
    assert!((10..=14).contains(&calls), "{calls} refreshes");
}

#[test]
fn one_refresh_for_a_hundred_concurrent_callers() {
    let (_dir, vault) = vault();
    let ns = vault.namespace("n").unwrap();
    let clock = ManualClock::new(at(T0));
    ns.put("api", &grant("at-0", "rt-0", at(T0 - 1))).unwrap();
    let mut counting = Counting::new(&clock);
    counting.delay = Duration::from_millis(200);
    let auth = Authorizer::builder(&ns, "api", counting.refresher())
        .clock(clock.clone())
        .build()
        .unwrap();
    let barrier = Arc::new(Barrier::new(100));
    let handles: Vec<_> = (0..100)
        .map(|_| {
            let (auth, barrier) = (auth.clone(), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                access(&auth.token().unwrap())
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), "at-1");
    }
    assert_eq!(counting.calls(), 1);
}

#[test]
fn a_failure_reaches_every_waiter_and_does_not_poison_later_calls() {
    let (_dir, vault) = vault();
    let ns = vault.namespace("n").unwrap();
    let clock = ManualClock::new(at(T0));
    ns.put("api", &grant("at-0", "rt-0", at(T0 - 1))).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let fail = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let refresher = {
        let (calls, fail) = (Arc::clone(&calls), Arc::clone(&fail));
        move |_: Option<&Token>| -> Result<Token, RefreshError> {
            calls.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(100));
            if fail.load(Ordering::SeqCst) {
                Err(RefreshError::transient("HTTP 503"))
            } else {
                Ok(Token::new("at-ok".into()).with_expires_at(at(T0 + 7200)))
            }
        }
    };
    let auth = Authorizer::builder(&ns, "api", refresher)
        .clock(clock.clone())
        .retry_gap(Duration::from_secs(5), Duration::from_secs(60))
        .build()
        .unwrap();
    let barrier = Arc::new(Barrier::new(20));
    let handles: Vec<_> = (0..20)
        .map(|_| {
            let (auth, barrier) = (auth.clone(), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                auth.token()
            })
        })
        .collect();
    for h in handles {
        match h.join().unwrap() {
            Err(TokenError::Refresh(e)) => assert_eq!(e.kind(), RefreshErrorKind::Transient),
            other => panic!("expected the refresh error, got {other:?}"),
        }
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // The stored token is kept; no other kind of token appears.
    let stored: Token = ns.get("api").unwrap().unwrap();
    assert_eq!(access(&stored), "at-0");

    // Within the retry gap: the same error, without a new attempt.
    clock.advance(Duration::from_secs(4));
    assert!(matches!(auth.token(), Err(TokenError::Refresh(_))));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // After it: a new attempt. The second failure doubles the gap.
    clock.advance(Duration::from_secs(2));
    assert!(matches!(auth.token(), Err(TokenError::Refresh(_))));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    clock.advance(Duration::from_secs(6));
    assert!(matches!(auth.token(), Err(TokenError::Refresh(_))));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "10 s gap after two failures"
    );
    // Once the server recovers, the next attempt succeeds and is not poisoned.
    fail.store(false, Ordering::SeqCst);
    clock.advance(Duration::from_secs(5));
    assert_eq!(access(&auth.token().unwrap()), "at-ok");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[test]
fn a_transient_failure_still_serves_a_token_that_has_not_expired() {
    let (_dir, vault) = vault();
    let ns = vault.namespace("n").unwrap();
    let clock = ManualClock::new(at(T0));
    // Inside the 60 s margin, but still valid for 30 s.
    ns.put("api", &grant("at-0", "rt-0", at(T0 + 30))).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let refresher = {
        let calls = Arc::clone(&calls);
        move |_: Option<&Token>| -> Result<Token, RefreshError> {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(RefreshError::transient("timeout").with_retry_after(Duration::from_secs(10)))
        }
    };
    let auth = Authorizer::builder(&ns, "api", refresher)
        .clock(clock.clone())
        .build()
        .unwrap();
    assert_eq!(access(&auth.token().unwrap()), "at-0");
    assert_eq!(access(&auth.token().unwrap()), "at-0");
    assert_eq!(calls.load(Ordering::SeqCst), 1, "Retry-After: 10 s");
    clock.advance(Duration::from_secs(11));
    assert_eq!(access(&auth.token().unwrap()), "at-0");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    // Once it has expired, the failure is the answer.
    clock.advance(Duration::from_secs(30));
    assert!(matches!(auth.token(), Err(TokenError::Refresh(_))));
}

#[test]
fn different_keys_refresh_independently() {
    let (_dir, vault) = vault();
    let ns = vault.namespace("n").unwrap();
    let clock = ManualClock::new(at(T0));
    ns.put("slow", &grant("s-0", "rt-s", at(T0 - 1))).unwrap();
    ns.put("fast", &grant("f-0", "rt-f", at(T0 - 1))).unwrap();
    let release = Arc::new(Barrier::new(2));
    let slow_refresher = {
        let release = Arc::clone(&release);
        move |_: Option<&Token>| -> Result<Token, RefreshError> {
            release.wait(); // blocks until the fast key has been refreshed
            Ok(Token::new("s-1".into()).with_expires_at(at(T0 + 3600)))
        }
    };
    let slow = Authorizer::builder(&ns, "slow", slow_refresher)
        .clock(clock.clone())
        .build()
        .unwrap();
    let fast_counting = Counting::new(&clock);
    let fast = Authorizer::builder(&ns, "fast", fast_counting.refresher())
        .clock(clock.clone())
        .build()
        .unwrap();
    let waiting = std::thread::spawn(move || access(&slow.token().unwrap()));
    // The fast key refreshes while the slow one is still in its refresher.
    assert_eq!(access(&fast.token().unwrap()), "at-1");
    release.wait();
    assert_eq!(waiting.join().unwrap(), "s-1");
}

#[test]
fn two_handles_racing_cause_one_refresh() {
    let (_dir, vault) = vault();
    let clock = ManualClock::new(at(T0));
    vault
        .namespace("n")
        .unwrap()
        .put("api", &grant("at-0", "rt-0", at(T0 - 1)))
        .unwrap();
    let mut counting = Counting::new(&clock);
    counting.delay = Duration::from_millis(300);
    // Two independent authorizers (each its own single flight), on two clones of the vault.
    let build = |vault: &Vault| {
        Authorizer::builder(&vault.namespace("n").unwrap(), "api", counting.refresher())
            .clock(clock.clone())
            .build()
            .unwrap()
    };
    let (a, b) = (build(&vault.clone()), build(&vault.clone()));
    let barrier = Arc::new(Barrier::new(40));
    let handles: Vec<_> = (0..40)
        .map(|i| {
            let auth = if i % 2 == 0 { a.clone() } else { b.clone() };
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                access(&auth.token().unwrap())
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), "at-1");
    }
    assert_eq!(counting.calls(), 1);
    assert_eq!(*counting.seen.lock().unwrap(), ["rt-0"]);
}

#[test]
fn a_live_lease_is_waited_for_and_its_result_adopted() {
    let (_dir, vault) = vault();
    let ns = vault.namespace("n").unwrap();
    let clock = ManualClock::new(at(T0));
    ns.put("api", &grant("at-0", "rt-0", at(T0 - 1))).unwrap();
    let entered = Arc::new(Barrier::new(2));
    let a_refresher = {
        let entered = Arc::clone(&entered);
        move |_: Option<&Token>| -> Result<Token, RefreshError> {
            entered.wait();
            std::thread::sleep(Duration::from_millis(300));
            Ok(Token::new("at-from-a".into()).with_expires_at(at(T0 + 3600)))
        }
    };
    let a = Authorizer::builder(&ns, "api", a_refresher)
        .clock(clock.clone())
        .build()
        .unwrap();
    let a_thread = std::thread::spawn(move || access(&a.token().unwrap()));
    entered.wait();
    let b_counting = Counting::new(&clock);
    let b = Authorizer::builder(&ns, "api", b_counting.refresher())
        .clock(clock.clone())
        .lease_poll(Duration::from_millis(5))
        .build()
        .unwrap();
    assert_eq!(access(&b.token().unwrap()), "at-from-a");
    assert_eq!(a_thread.join().unwrap(), "at-from-a");
    assert_eq!(b_counting.calls(), 0);
}

#[test]
fn a_dead_grant_is_removed_by_default() {
    let (_dir, vault) = vault();
    let ns = vault.namespace("n").unwrap();
    let clock = ManualClock::new(at(T0));
    ns.put("api", &grant("at-0", "rt-0", at(T0 - 1))).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let refresher = {
        let calls = Arc::clone(&calls);
        move |current: Option<&Token>| -> Result<Token, RefreshError> {
            calls.fetch_add(1, Ordering::SeqCst);
            match current {
                Some(_) => {
                    Err(RefreshError::invalid_grant("HTTP 400").with_oauth_error("invalid_grant"))
                }
                None => Err(RefreshError::invalid_grant(
                    "no refresh token stored: log in again",
                )),
            }
        }
    };
    let auth = Authorizer::builder(&ns, "api", refresher)
        .clock(clock.clone())
        .build()
        .unwrap();
    match auth.token() {
        Err(TokenError::Refresh(e)) => {
            assert!(e.is_invalid_grant());
            assert_eq!(e.oauth_error(), Some("invalid_grant"));
        }
        other => panic!("{other:?}"),
    }
    assert!(ns.get::<Token>("api").unwrap().is_none(), "removed");
    assert_eq!(ns.record_count().unwrap(), 0, "no lease left either");
    clock.advance(Duration::from_secs(60));
    assert!(matches!(auth.token(), Err(TokenError::Refresh(e)) if e.is_invalid_grant()));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[test]
fn a_dead_grant_can_be_marked_instead() {
    let (_dir, vault) = vault();
    let ns = vault.namespace("n").unwrap();
    let clock = ManualClock::new(at(T0));
    ns.put("api", &grant("at-0", "rt-0", at(T0 - 1))).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let refresher = {
        let calls = Arc::clone(&calls);
        move |current: Option<&Token>| -> Result<Token, RefreshError> {
            calls.fetch_add(1, Ordering::SeqCst);
            let rt = current
                .unwrap()
                .refresh_token()
                .unwrap()
                .expose_secret()
                .to_owned();
            if rt == "rt-0" {
                Err(RefreshError::invalid_grant("revoked"))
            } else {
                Ok(Token::new("at-after-login".into()).with_expires_at(at(T0 + 9999)))
            }
        }
    };
    let auth = Authorizer::builder(&ns, "api", refresher)
        .clock(clock.clone())
        .on_dead_grant(DeadGrant::Mark)
        .build()
        .unwrap();
    assert!(matches!(auth.token(), Err(TokenError::Refresh(e)) if e.is_invalid_grant()));
    // Kept (identity and scopes survive for the next login), and marked: later calls fail
    // at once without calling the endpoint, even from another authorizer.
    let kept: Token = ns.get("api").unwrap().unwrap();
    assert_eq!(kept.identity(), Some("alice"));
    clock.advance(Duration::from_secs(120));
    assert!(matches!(
        auth.token(),
        Err(TokenError::ReauthenticationRequired { .. })
    ));
    let other = Authorizer::builder(
        &ns,
        "api",
        |_: Option<&Token>| -> Result<Token, RefreshError> { panic!("must not be called") },
    )
    .build()
    .unwrap();
    assert!(matches!(
        other.token(),
        Err(TokenError::ReauthenticationRequired { .. })
    ));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // A new grant clears the mark.
    ns.put("api", &grant("at-1", "rt-1", at(T0 - 1))).unwrap();
    clock.advance(Duration::from_secs(120));
    assert_eq!(access(&auth.token().unwrap()), "at-after-login");
    assert_eq!(ns.keys().unwrap(), ["api"]);
}

#[test]
fn logout_removes_first_then_revokes_and_reports() {
    let (_dir, vault) = vault();
    let ns = vault.namespace("n").unwrap();
    let clock = ManualClock::new(at(T0));
    ns.put("api", &grant("at-0", "rt-0", at(T0 + 3600)))
        .unwrap();
    let counting = Counting::new(&clock);
    let auth = Authorizer::builder(&ns, "api", counting.refresher())
        .clock(clock.clone())
        .build()
        .unwrap();
    assert_eq!(access(&auth.token().unwrap()), "at-0");
    let ns_in_hook = ns.clone();
    let logout = auth
        .logout(|token| {
            // The record is already gone when the hook runs.
            assert!(ns_in_hook.get::<Token>("api").unwrap().is_none());
            assert_eq!(token.refresh_token().unwrap().expose_secret(), "rt-0");
            Err("revocation endpoint unreachable")
        })
        .unwrap();
    assert!(logout.removed);
    assert_eq!(
        logout.revocation,
        Some(Err("revocation endpoint unreachable"))
    );
    // The cached token is forgotten too: the next call finds nothing stored.
    assert_eq!(access(&auth.token().unwrap()), "at-1");
    assert!(
        counting.seen.lock().unwrap().is_empty(),
        "minted without a refresh token"
    );
    // Logging out twice is a no-op that does not call the hook.
    assert!(auth.logout(|_| Ok::<(), ()>(())).unwrap().removed);
    let again = auth
        .logout(|_| -> Result<(), ()> { panic!("nothing to revoke") })
        .unwrap();
    assert!(!again.removed && again.revocation.is_none());
}

#[test]
fn invalidate_forces_one_refresh_of_the_refused_token() {
    let (_dir, vault) = vault();
    let ns = vault.namespace("n").unwrap();
    let clock = ManualClock::new(at(T0));
    ns.put("api", &grant("at-0", "rt-0", at(T0 + 3600)))
        .unwrap();
    let counting = Counting::new(&clock);
    let auth = Authorizer::builder(&ns, "api", counting.refresher())
        .clock(clock.clone())
        .build()
        .unwrap();
    let refused = auth.token().unwrap();
    // Many callers saw the same 401.
    for _ in 0..10 {
        auth.invalidate(&refused);
    }
    assert_eq!(access(&auth.token().unwrap()), "at-1");
    auth.invalidate(&refused); // a stale report about a token no longer in use
    assert_eq!(access(&auth.token().unwrap()), "at-1");
    assert_eq!(counting.calls(), 1);
}

#[test]
fn a_caller_that_gives_up_does_not_lose_the_rotated_token() {
    let (_dir, vault) = vault();
    let ns = vault.namespace("n").unwrap();
    let clock = ManualClock::new(at(T0));
    ns.put("api", &grant("at-0", "rt-0", at(T0 - 1))).unwrap();
    let mut counting = Counting::new(&clock);
    counting.delay = Duration::from_millis(500);
    let auth = Authorizer::builder(&ns, "api", counting.refresher())
        .clock(clock.clone())
        .build()
        .unwrap();
    match auth.token_timeout(Duration::from_millis(20)) {
        Err(TokenError::Refresh(e)) => assert!(e.is_transient()),
        other => panic!("{other:?}"),
    }
    drop(auth);
    // The refresh finishes on its own thread and stores the rotated grant.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let stored: Token = ns.get("api").unwrap().unwrap();
        if access(&stored) == "at-1" {
            assert_eq!(stored.refresh_token().unwrap().expose_secret(), "rt-1");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the refresh never landed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(counting.calls(), 1);
}

#[test]
fn client_credentials_mint_when_nothing_is_stored() {
    let (_dir, vault) = vault();
    let ns = vault.namespace("n").unwrap();
    let clock = ManualClock::new(at(T0));
    let counting = Counting::new(&clock);
    let auth = Authorizer::builder(&ns, "guest", counting.refresher())
        .clock(clock.clone())
        .build()
        .unwrap();
    assert_eq!(access(&auth.token().unwrap()), "at-1");
    let stored: Token = ns.get("guest").unwrap().unwrap();
    assert_eq!(access(&stored), "at-1");
}

#[test]
fn a_new_grant_stored_during_a_refresh_is_never_overwritten() {
    let (_dir, vault) = vault();
    let ns = vault.namespace("n").unwrap();
    let clock = ManualClock::new(at(T0));
    ns.put("api", &grant("at-0", "rt-0", at(T0 - 1))).unwrap();
    let ns2 = ns.clone();
    let refresher = move |_: Option<&Token>| -> Result<Token, RefreshError> {
        // A login stores a new grant while the refresh is at the server.
        ns2.put("api", &grant("at-login", "rt-login", at(T0 + 7200)))
            .unwrap();
        Ok(Token::new("at-refreshed".into()).with_expires_at(at(T0 + 3600)))
    };
    let auth = Authorizer::builder(&ns, "api", refresher)
        .clock(clock.clone())
        .build()
        .unwrap();
    assert_eq!(access(&auth.token().unwrap()), "at-login");
    let stored: Token = ns.get("api").unwrap().unwrap();
    assert_eq!(access(&stored), "at-login");
    assert_eq!(ns.keys().unwrap(), ["api"], "the lease is gone");
    assert_eq!(ns.record_count().unwrap(), 1);
}

#[test]
fn builder_refuses_reserved_and_overlong_keys() {
    let (_dir, vault) = vault();
    let ns: Namespace = vault.namespace("n").unwrap();
    let r =
        |_: Option<&Token>| -> Result<Token, RefreshError> { Err(RefreshError::transient("x")) };
    for key in ["", "\0x", &"k".repeat(1020)] {
        assert!(matches!(
            Authorizer::builder(&ns, key, r).build(),
            Err(Error::InvalidName { .. })
        ));
    }
    let debug = format!("{:?}", Authorizer::builder(&ns, "api", r).build().unwrap());
    assert!(debug.contains("api"), "{debug}");
}

#[test]
fn a_refreshed_token_the_store_refuses_is_served_and_stored_later() {
    let faulty = support::FaultyBackend::new(tokenvault::backend::MemoryBackend::new());
    let vault = Vault::create_with_backend(faulty.clone(), &raw_key(1)).unwrap();
    let ns = vault.namespace("n").unwrap();
    let clock = ManualClock::new(at(T0));
    ns.put("api", &grant("at-0", "rt-0", at(T0 - 1))).unwrap();
    let counting = Counting::new(&clock);
    let auth = Authorizer::builder(&ns, "api", counting.refresher())
        .clock(clock.clone())
        .jitter(Duration::ZERO)
        .build()
        .unwrap();
    // The lease is written; the commit of the refreshed token fails (a disk error).
    faulty.fail_after(1);
    let token = auth.token().unwrap();
    assert_eq!(access(&token), "at-1", "the rotated token is not lost");
    faulty.fail_after(-1);
    let stored: Token = ns.get("api").unwrap().unwrap();
    assert_eq!(access(&stored), "at-0", "not stored yet");
    // Another handle meanwhile (within the lease) must not spend rt-0: it waits.
    let other_counting = Counting::new(&clock);
    let other = Authorizer::builder(&ns, "api", other_counting.refresher())
        .clock(clock.clone())
        .lease_poll(Duration::from_millis(1))
        .build()
        .unwrap();
    assert!(matches!(
        other.token_timeout(Duration::from_millis(50)),
        Err(TokenError::Refresh(e)) if e.kind() == RefreshErrorKind::Transient
    ));
    assert_eq!(other_counting.calls(), 0);
    // (After the lease's end another handle would take it over: `tests/oauth/takeover.rs`.)
    // At its next transaction the authorizer stores the pending token first, then
    // refreshes it with its own refresh token, rt-1, never rt-0 again.
    clock.set(at(T0 + 3600 - 30));
    assert_eq!(access(&auth.token().unwrap()), "at-2");
    assert_eq!(*counting.seen.lock().unwrap(), ["rt-0", "rt-1"]);
    let stored: Token = ns.get("api").unwrap().unwrap();
    assert_eq!(access(&stored), "at-2");
    assert_eq!(ns.record_count().unwrap(), 1, "no lease left");
}

/// Storage whose clock stands at a fixed time, as a shared backend reports its server's.
#[derive(Debug, Clone)]
struct ServerClock {
    inner: tokenvault::backend::MemoryBackend,
    now: SystemTime,
}

impl tokenvault::backend::Backend for ServerClock {
    fn read_header(&self) -> Result<Option<Vec<u8>>, tokenvault::backend::BackendError> {
        self.inner.read_header()
    }
    fn write_header(
        &self,
        expected: Option<&[u8]>,
        bytes: &[u8],
    ) -> Result<bool, tokenvault::backend::BackendError> {
        self.inner.write_header(expected, bytes)
    }
    fn get(
        &self,
        tree: &[u8],
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, tokenvault::backend::BackendError> {
        self.inner.get(tree, key)
    }
    fn scan(
        &self,
        tree: &[u8],
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<tokenvault::backend::ScanPage, tokenvault::backend::BackendError> {
        self.inner.scan(tree, prefix, after, limit)
    }
    fn apply(
        &self,
        batch: &tokenvault::backend::Batch,
    ) -> Result<bool, tokenvault::backend::BackendError> {
        self.inner.apply(batch)
    }
    fn drop_tree(&self, tree: &[u8]) -> Result<(), tokenvault::backend::BackendError> {
        self.inner.drop_tree(tree)
    }
    fn trees(&self) -> Result<Vec<Vec<u8>>, tokenvault::backend::BackendError> {
        self.inner.trees()
    }
    fn flush(&self) -> Result<(), tokenvault::backend::BackendError> {
        self.inner.flush()
    }
    fn close(&self) -> Result<(), tokenvault::backend::BackendError> {
        self.inner.close()
    }
    fn now(&self) -> Result<SystemTime, tokenvault::backend::BackendError> {
        Ok(self.now)
    }
}

#[test]
fn without_a_clock_of_its_own_an_authorizer_uses_the_storages() {
    // The storage's clock is 10 days ahead of this machine's: a token this machine thinks
    // has a day left has expired by it, and the authorizer refreshes.
    let server_now = SystemTime::now() + Duration::from_secs(10 * 86_400);
    let storage = ServerClock {
        inner: tokenvault::backend::MemoryBackend::new(),
        now: server_now,
    };
    let vault = Vault::create_with_backend(storage, &raw_key(1)).unwrap();
    assert_eq!(vault.storage_time().unwrap(), server_now);
    let ns = vault.namespace("n").unwrap();
    let expires = SystemTime::now() + Duration::from_secs(86_400);
    ns.put("api", &grant("at-0", "rt-0", expires)).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let auth = Authorizer::builder(&ns, "api", move |_: Option<&Token>| {
        counted.fetch_add(1, Ordering::SeqCst);
        Ok::<_, RefreshError>(
            Token::new("at-1".to_owned().into())
                .with_expires_at(server_now + Duration::from_secs(3600)),
        )
    })
    .build()
    .unwrap();
    assert_eq!(access(&auth.token().unwrap()), "at-1");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // Given a clock of its own (this machine's), the same token is still valid.
    ns.put("api", &grant("at-0", "rt-0", expires)).unwrap();
    let local = Authorizer::builder(&ns, "api", |_: Option<&Token>| {
        Err::<Token, _>(RefreshError::transient("must not refresh"))
    })
    .clock(tokenvault::oauth::SystemClock)
    .build()
    .unwrap();
    assert_eq!(access(&local.token().unwrap()), "at-0");
}
