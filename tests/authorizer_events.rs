//! The authorizer's `tracing` events (feature `tracing`): one for each cache hit, refresh,
//! lease wait and failure, and never a secret in any of them.

#![cfg(feature = "tracing")]
#![allow(clippy::unwrap_used, clippy::panic)]

use std::fmt::Write as _;
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use support::raw_key;
use tokenvault::oauth::{Authorizer, ManualClock, RefreshError};
use tokenvault::{Token, Vault};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata};

/// A subscriber that keeps every event as one line of text.
#[derive(Clone, Default)]
struct Collect(Arc<Mutex<Vec<String>>>);

struct Line(String);

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={value:?}", field.name());
    }
}

impl tracing::Subscriber for Collect {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let meta = event.metadata();
        let mut line = Line(format!("{} {}", meta.level(), meta.target()));
        event.record(&mut line);
        self.0.lock().unwrap().push(line.0);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

const AT0: &str = "SECRET-ACCESS-zero-7f3a9c";
const RT0: &str = "SECRET-REFRESH-zero-b81e44";

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

#[test]
fn events_cover_the_refresh_path_and_carry_no_secret() {
    let events = Collect::default();
    tracing::subscriber::set_global_default(events.clone()).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let vault = Vault::create(dir.path().join("v"), &raw_key(1)).unwrap();
    let ns = vault.namespace("n").unwrap();
    let clock = ManualClock::new(at(1_800_000_000));
    ns.put(
        "api",
        &Token::new(AT0.into())
            .with_refresh_token(RT0.into())
            .with_expires_at(at(1_800_000_000 - 1)),
    )
    .unwrap();
    let issued = Arc::new(Mutex::new(Vec::new()));
    let fail = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let entered = Arc::new(Barrier::new(2));
    let make = |first: bool| {
        let (issued, fail, entered) =
            (Arc::clone(&issued), Arc::clone(&fail), Arc::clone(&entered));
        move |_: Option<&Token>| -> Result<Token, RefreshError> {
            if fail.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(RefreshError::transient("HTTP 503"));
            }
            if first {
                entered.wait();
                std::thread::sleep(Duration::from_millis(200));
            }
            let n = issued.lock().unwrap().len();
            let (a, r) = (
                format!("SECRET-ACCESS-{n}-c0ffee"),
                format!("SECRET-REFRESH-{n}-d00d"),
            );
            issued.lock().unwrap().extend([a.clone(), r.clone()]);
            Ok(Token::new(a.into())
                .with_refresh_token(r.into())
                .with_expires_at(at(1_800_003_600)))
        }
    };
    let a = Authorizer::builder(&ns, "api", make(true))
        .clock(clock.clone())
        .build()
        .unwrap();
    let b = Authorizer::builder(&ns, "api", make(false))
        .clock(clock.clone())
        .lease_poll(Duration::from_millis(5))
        .build()
        .unwrap();
    // A refreshes while B waits for A's lease; then cache hits; then a failure; then logout.
    let a_thread = {
        let a = a.clone();
        std::thread::spawn(move || a.token().unwrap())
    };
    entered.wait();
    b.token().unwrap();
    a_thread.join().unwrap();
    a.token().unwrap();
    a.token().unwrap();
    fail.store(true, std::sync::atomic::Ordering::SeqCst);
    clock.advance(Duration::from_secs(3600));
    assert!(a.token().is_err());
    assert!(a.logout(|_| Ok::<(), ()>(())).unwrap().removed);

    let lines = events.0.lock().unwrap().clone();
    let all = lines.join("\n");
    for expected in [
        "refreshing",
        "refreshed and stored",
        "waiting for another handle's refresh",
        "cache hit",
        "the refresh failed",
        "logged out",
    ] {
        assert!(all.contains(expected), "no {expected:?} event in:\n{all}");
    }
    assert!(lines.iter().all(|l| l.contains(" tokenvault ")), "{all}");
    // The refreshed-and-stored event names the token by a short hash only.
    let stored = lines
        .iter()
        .find(|l| l.contains("refreshed and stored"))
        .unwrap();
    assert!(stored.contains("token="), "{stored}");
    let mut secrets = vec![AT0.to_owned(), RT0.to_owned()];
    secrets.extend(issued.lock().unwrap().iter().cloned());
    for secret in &secrets {
        assert!(
            !all.contains(secret.as_str()),
            "{secret} appears in:\n{all}"
        );
        assert!(!all.contains("SECRET-"), "{all}");
    }
}
