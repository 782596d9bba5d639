//! Where the time comes from: the system clock, or a clock a test moves by hand.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

/// A source of the current time. Everything in tokenvault that asks "what time is it?"
/// (expiry checks, `expires_in` arithmetic, validators) asks a `Clock`, so that expiry logic
/// can be tested without waiting.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use tokenvault::oauth::{Clock, ManualClock, SystemClock};
///
/// let before = SystemTime::now();
/// assert!(SystemClock.now() >= before);
///
/// let clock = ManualClock::new(SystemTime::UNIX_EPOCH);
/// clock.advance(Duration::from_secs(90));
/// assert_eq!(clock.now(), SystemTime::UNIX_EPOCH + Duration::from_secs(90));
/// ```
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current time.
    fn now(&self) -> SystemTime;

    /// Waits `duration` (a device login's polling interval). The default sleeps the thread;
    /// [`ManualClock`] moves its time forward instead, so that tests do not wait.
    fn sleep(&self, duration: Duration) {
        std::thread::sleep(duration);
    }
}

/// The system's wall clock ([`SystemTime::now`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// The clock of a vault's storage ([`Backend::now`](crate::backend::Backend::now)): what an
/// [`Authorizer`](crate::oauth::Authorizer) uses unless given another, so that every handle
/// sharing the storage times leases and expiries on one clock. If the storage cannot be
/// asked (closed, unreachable), this machine's clock answers; a lease write then fails on
/// the same storage anyway.
#[derive(Clone)]
pub(crate) struct StorageClock(pub(crate) Arc<crate::engine::Engine>);

impl fmt::Debug for StorageClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StorageClock")
    }
}

impl Clock for StorageClock {
    fn now(&self) -> SystemTime {
        self.0.now().unwrap_or_else(|_| SystemTime::now())
    }
}

/// A clock that only moves when told to: for tests. Clones share one time.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use tokenvault::oauth::{Clock, ManualClock};
///
/// let clock = ManualClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000));
/// let shared = clock.clone();
/// clock.set(SystemTime::UNIX_EPOCH);
/// assert_eq!(shared.now(), SystemTime::UNIX_EPOCH);
/// ```
#[derive(Clone, Debug)]
pub struct ManualClock(Arc<Mutex<SystemTime>>);

impl ManualClock {
    /// A clock standing at `now`.
    pub fn new(now: SystemTime) -> Self {
        Self(Arc::new(Mutex::new(now)))
    }

    /// Sets the time.
    pub fn set(&self, now: SystemTime) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = now;
    }

    /// Moves the time forward by `by` (saturating at the largest representable time).
    pub fn advance(&self, by: Duration) {
        let mut t = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(next) = t.checked_add(by) {
            *t = next;
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn sleep(&self, duration: Duration) {
        self.advance(duration);
    }
}

impl<C: Clock + ?Sized> Clock for &C {
    fn now(&self) -> SystemTime {
        (**self).now()
    }

    fn sleep(&self, duration: Duration) {
        (**self).sleep(duration);
    }
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> SystemTime {
        (**self).now()
    }
}

impl<C: Clock + ?Sized> Clock for Box<C> {
    fn now(&self) -> SystemTime {
        (**self).now()
    }
}
