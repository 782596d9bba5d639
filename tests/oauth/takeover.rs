//! A holder that outlives its lease (a paused process, a partition, a storage outage): after
//! the lease's end another holder takes it over, and the stalled holder's commit is refused
//! only if that happened; then the stored winner is adopted, unless none was stored, and then
//! the stalled holder's answer (the only valid successor on a rotating server) is stored.
//!
//! The "server" here is a rotating one that refuses a reused refresh token (`invalid_grant`)
//! and counts every presentation; the stalled holder's refresher blocks on barriers before or
//! after the exchange.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use support::{raw_key, FaultyBackend};
use tokenvault::backend::MemoryBackend;
use tokenvault::oauth::{Authorizer, Clock, ManualClock, RefreshError, TokenError};
use tokenvault::secrecy::ExposeSecret;
use tokenvault::{Namespace, Token, Vault};

const T0: u64 = 1_800_000_000;

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn access(token: &Token) -> String {
    token.access_token().expose_secret().to_owned()
}

/// A rotating token endpoint: one live refresh token; presenting it issues `at-N`/`rt-N`
/// and retires it; presenting any other is refused as a dead grant.
#[derive(Clone)]
struct Rotating {
    state: Arc<Mutex<(String, usize, Vec<String>)>>,
    clock: ManualClock,
}

impl Rotating {
    fn new(live: &str, clock: &ManualClock) -> Self {
        Self {
            state: Arc::new(Mutex::new((live.to_owned(), 0, Vec::new()))),
            clock: clock.clone(),
        }
    }

    fn exchange(&self, current: Option<&Token>) -> Result<Token, RefreshError> {
        let rt = current
            .and_then(Token::refresh_token)
            .map(|r| r.expose_secret().to_owned())
            .unwrap_or_default();
        let mut st = self.state.lock().unwrap();
        st.2.push(rt.clone());
        if rt != st.0 {
            return Err(RefreshError::invalid_grant(
                "the refresh token was already used",
            ));
        }
        st.1 += 1;
        let n = st.1;
        st.0 = format!("rt-{n}");
        Ok(Token::new(format!("at-{n}").into())
            .with_refresh_token(format!("rt-{n}").into())
            .with_expires_at(self.clock.now() + Duration::from_secs(3600)))
    }

    fn presentations(&self) -> Vec<String> {
        self.state.lock().unwrap().2.clone()
    }

    fn live(&self) -> String {
        self.state.lock().unwrap().0.clone()
    }

    fn refresher(&self) -> impl Fn(Option<&Token>) -> Result<Token, RefreshError> + Clone {
        let this = self.clone();
        move |current: Option<&Token>| this.exchange(current)
    }
}

fn expired_grant() -> Token {
    Token::new("at-0".into())
        .with_refresh_token("rt-0".into())
        .with_expires_at(at(T0 - 1))
}

fn setup() -> (tempfile::TempDir, Namespace, ManualClock, Rotating) {
    let dir = tempfile::tempdir().unwrap();
    let vault = Vault::create(dir.path().join("v"), &raw_key(1)).unwrap();
    let ns = vault.namespace("n").unwrap();
    ns.put("api", &expired_grant()).unwrap();
    let clock = ManualClock::new(at(T0));
    let server = Rotating::new("rt-0", &clock);
    (dir, ns, clock, server)
}

/// Where the stalled holder's refresher blocks.
#[derive(Clone, Copy, PartialEq)]
enum Stall {
    /// Before its request reaches the server.
    BeforeTheServer,
    /// After the server exchanged its refresh token, before the answer comes back.
    AfterTheServer,
}

/// Handle A: takes the lease and stalls inside its refresher until `resume` is passed.
fn stalled(
    ns: &Namespace,
    clock: &ManualClock,
    server: &Rotating,
    stall: Stall,
) -> (
    Arc<Barrier>,
    Arc<Barrier>,
    std::thread::JoinHandle<Result<Token, TokenError>>,
) {
    let (entered, resume) = (Arc::new(Barrier::new(2)), Arc::new(Barrier::new(2)));
    let refresher = {
        let (entered, resume, server) = (Arc::clone(&entered), Arc::clone(&resume), server.clone());
        move |current: Option<&Token>| -> Result<Token, RefreshError> {
            let answer = (stall == Stall::AfterTheServer).then(|| server.exchange(current));
            entered.wait();
            resume.wait();
            answer.unwrap_or_else(|| server.exchange(current))
        }
    };
    let a = Authorizer::builder(ns, "api", refresher)
        .clock(clock.clone())
        .lease_time(Duration::from_secs(30))
        .lease_poll(Duration::from_millis(2))
        .jitter(Duration::ZERO)
        .build()
        .unwrap();
    let thread = std::thread::spawn(move || a.token());
    entered.wait();
    (entered, resume, thread)
}

fn taker(ns: &Namespace, clock: &ManualClock, server: &Rotating) -> Authorizer {
    Authorizer::builder(ns, "api", server.refresher())
        .clock(clock.clone())
        .lease_time(Duration::from_secs(30))
        .lease_poll(Duration::from_millis(2))
        .retry_gap(Duration::from_secs(1), Duration::from_secs(1))
        .jitter(Duration::ZERO)
        .build()
        .unwrap()
}

/// A paused before sending: B takes the lease over after its end and refreshes; A, resumed,
/// presents rt-0 a second time (refused by the server), its verdict is refused in turn, and it
/// adopts B's token. Two presentations of rt-0: one per holder of its lease.
#[test]
fn a_holder_paused_before_sending_adopts_the_takers_token() {
    let (_dir, ns, clock, server) = setup();
    let (_, resume, a) = stalled(&ns, &clock, &server, Stall::BeforeTheServer);

    let b = taker(&ns, &clock, &server);
    clock.advance(Duration::from_secs(20));
    // Still A's lease: B waits for it; with the clock standing still it would wait forever,
    // so the clock moves on from another thread.
    let mover = {
        let clock = clock.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            clock.advance(Duration::from_secs(11));
        })
    };
    assert_eq!(access(&b.token().unwrap()), "at-1");
    mover.join().unwrap();
    assert_eq!(server.presentations(), ["rt-0"]);

    resume.wait();
    let a_token = a.join().unwrap().expect("A adopts the stored winner");
    assert_eq!(access(&a_token), "at-1");
    assert_eq!(
        server.presentations(),
        ["rt-0", "rt-0"],
        "the bound: one per lease holder"
    );
    let stored: Token = ns.get("api").unwrap().unwrap();
    assert_eq!(access(&stored), "at-1");
    assert_eq!(
        stored.refresh_token().unwrap().expose_secret(),
        &server.live()
    );
    assert_eq!(ns.record_count().unwrap(), 1, "no lease or mark left");
}

/// A paused after the server exchanged rt-0: B's presentation is refused as a reuse, and B
/// marks the grant (never removes it, under a taken-over lease). A, resumed with the only
/// valid successor, has its commit refused, finds no successor stored, and stores its answer
/// over the mark: nothing the server issued is lost, and B then serves it too.
#[test]
fn a_holder_paused_after_the_exchange_stores_its_answer_over_the_takers_mark() {
    let (_dir, ns, clock, server) = setup();
    let (_, resume, a) = stalled(&ns, &clock, &server, Stall::AfterTheServer);

    let b = taker(&ns, &clock, &server);
    clock.advance(Duration::from_secs(31));
    match b.token() {
        Err(TokenError::Refresh(e)) => assert!(e.is_invalid_grant(), "{e}"),
        other => panic!("expected the server's refusal, got {other:?}"),
    }
    assert_eq!(
        ns.record_count().unwrap(),
        2,
        "the record and B's mark stay"
    );

    resume.wait();
    let a_token = a.join().unwrap().expect("A stores its answer");
    assert_eq!(access(&a_token), "at-1");
    let stored: Token = ns.get("api").unwrap().unwrap();
    assert_eq!(access(&stored), "at-1");
    assert_eq!(stored.refresh_token().unwrap().expose_secret(), "rt-1");
    assert_eq!(server.live(), "rt-1");
    assert_eq!(ns.record_count().unwrap(), 1, "the mark is gone");

    clock.advance(Duration::from_secs(2)); // past B's retry gap
    assert_eq!(access(&b.token().unwrap()), "at-1");
    assert_eq!(server.presentations(), ["rt-0", "rt-0"]);
}

/// A holder past its lease's end whose lease nobody took commits its late answer: dropping it
/// would lose the only valid refresh token.
#[test]
fn a_late_answer_is_stored_when_nobody_took_the_lease() {
    let (_dir, ns, clock, server) = setup();
    let (_, resume, a) = stalled(&ns, &clock, &server, Stall::AfterTheServer);
    clock.advance(Duration::from_secs(300));
    resume.wait();
    assert_eq!(access(&a.join().unwrap().unwrap()), "at-1");
    let stored: Token = ns.get("api").unwrap().unwrap();
    assert_eq!(stored.refresh_token().unwrap().expose_secret(), "rt-1");
    assert_eq!(ns.record_count().unwrap(), 1);
    assert_eq!(server.presentations(), ["rt-0"]);
}

/// Two takeovers in a row (A and B both stall): the third holder refreshes, and both stalled
/// holders, resumed, adopt its token. rt-0 is presented at most once per holder of its lease.
#[test]
fn two_stalled_holders_both_adopt_the_third_holders_token() {
    let (_dir, ns, clock, server) = setup();
    let (_, resume_a, a) = stalled(&ns, &clock, &server, Stall::BeforeTheServer);
    clock.advance(Duration::from_secs(31));
    let (_, resume_b, b) = stalled(&ns, &clock, &server, Stall::BeforeTheServer);
    clock.advance(Duration::from_secs(31));
    let c = taker(&ns, &clock, &server);
    assert_eq!(access(&c.token().unwrap()), "at-1");
    resume_b.wait();
    assert_eq!(access(&b.join().unwrap().unwrap()), "at-1");
    resume_a.wait();
    assert_eq!(access(&a.join().unwrap().unwrap()), "at-1");
    let presented = server.presentations();
    assert_eq!(presented.len(), 3, "{presented:?}");
    assert!(presented.iter().all(|rt| rt == "rt-0"));
    assert_eq!(ns.record_count().unwrap(), 1);
    assert_eq!(access(&ns.get::<Token>("api").unwrap().unwrap()), "at-1");
}

/// A refreshed token the store refused (a disk error) stays owed with its lease. After the
/// lease's end another handle takes it over; the server refuses the reused rt-0 and that
/// handle marks the grant. The owing handle's next call stores its token over the mark.
#[test]
fn an_owed_token_is_stored_over_a_takers_mark() {
    let faulty = FaultyBackend::new(MemoryBackend::new());
    let vault = Vault::create_with_backend(faulty.clone(), &raw_key(1)).unwrap();
    let ns = vault.namespace("n").unwrap();
    ns.put("api", &expired_grant()).unwrap();
    let clock = ManualClock::new(at(T0));
    let server = Rotating::new("rt-0", &clock);
    let a = taker(&ns, &clock, &server);
    // The lease is written; the commit of the refreshed token fails.
    faulty.fail_after(1);
    assert_eq!(access(&a.token().unwrap()), "at-1", "served from memory");
    faulty.fail_after(-1);
    assert_eq!(access(&ns.get::<Token>("api").unwrap().unwrap()), "at-0");

    clock.advance(Duration::from_secs(31));
    let b = taker(&ns, &clock, &server);
    assert!(matches!(b.token(), Err(TokenError::Refresh(e)) if e.is_invalid_grant()));

    // A's next transaction (its token is within the margin) stores what it owes first.
    clock.set(at(T0 + 3600 - 30));
    assert_eq!(access(&a.token().unwrap()), "at-2");
    assert_eq!(server.presentations(), ["rt-0", "rt-0", "rt-1"]);
    let stored: Token = ns.get("api").unwrap().unwrap();
    assert_eq!(access(&stored), "at-2");
    assert_eq!(ns.record_count().unwrap(), 1);
    assert_eq!(access(&b.token().unwrap()), "at-2");
}
