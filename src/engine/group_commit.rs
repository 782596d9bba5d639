//! Group commit: concurrent writers share one durable flush instead of each paying for its
//! own.

use std::sync::{Condvar, Mutex};
use std::time::Duration;

use crate::error::Result;

/// Group commit: writers take a ticket after applying; one of them flushes for all tickets
/// issued before its flush started, the others wait for it.
///
/// With several writers, the one that flushes first waits (at most [`GATHER`]) until as
/// many writes are pending as its previous flush covered: the others are still applying
/// their next writes when a flush ends, and a flush started at once would cover one or two
/// of them, leaving the rest to the next flush.
pub(super) struct GroupCommit {
    state: Mutex<CommitState>,
    done: Condvar,
    /// Signalled on every ticket while a flusher is gathering.
    ticketed: Condvar,
    /// How long a flusher gathers at most ([`GATHER`]).
    gather: Duration,
}

impl Default for GroupCommit {
    fn default() -> Self {
        Self {
            state: Mutex::default(),
            done: Condvar::new(),
            ticketed: Condvar::new(),
            gather: GATHER,
        }
    }
}

#[derive(Default)]
struct CommitState {
    issued: u64,
    durable: u64,
    flushing: bool,
    /// A flusher is waiting for more tickets.
    gathering: bool,
    /// How many tickets the previous flush covered.
    last_covered: u64,
}

/// How long a flusher waits at most for more writes to cover (a durable flush takes hundreds
/// of microseconds on the machines measured in BENCHMARKS.md).
const GATHER: Duration = Duration::from_micros(200);

impl GroupCommit {
    pub(super) fn ticket(&self) -> u64 {
        let mut s = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        s.issued += 1;
        if s.gathering {
            self.ticketed.notify_one();
        }
        s.issued
    }

    pub(super) fn wait_durable(&self, ticket: u64, flush: impl Fn() -> Result<()>) -> Result<()> {
        let mut s = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        loop {
            if s.durable >= ticket {
                return Ok(());
            }
            if !s.flushing {
                s.flushing = true;
                if s.last_covered > 1 {
                    s.gathering = true;
                    let deadline = std::time::Instant::now() + self.gather;
                    while s.issued - s.durable < s.last_covered {
                        let now = std::time::Instant::now();
                        if now >= deadline {
                            break;
                        }
                        s = self
                            .ticketed
                            .wait_timeout(s, deadline - now)
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .0;
                    }
                    s.gathering = false;
                }
                let target = s.issued;
                s.last_covered = target - s.durable;
                drop(s);
                let result = flush();
                s = self
                    .state
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                s.flushing = false;
                if result.is_ok() {
                    s.durable = s.durable.max(target);
                }
                self.done.notify_all();
                result?;
                continue;
            }
            s = self
                .done
                .wait(s)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn a_flusher_waits_for_as_many_writers_as_its_last_flush_covered() {
        let gc = Arc::new(GroupCommit {
            gather: Duration::from_secs(5),
            ..GroupCommit::default()
        });
        let flushes = Arc::new(AtomicUsize::new(0));
        let flush = {
            let flushes = flushes.clone();
            move || {
                flushes.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        };
        // Two writes pending: the first flush covers both.
        let (t1, t2) = (gc.ticket(), gc.ticket());
        gc.wait_durable(t1, &flush).unwrap();
        gc.wait_durable(t2, &flush).unwrap();
        assert_eq!(flushes.load(Ordering::SeqCst), 1);
        // The next flusher waits for a second write before it flushes.
        let t3 = gc.ticket();
        let leader = {
            let gc = gc.clone();
            let flush = flush.clone();
            std::thread::spawn(move || gc.wait_durable(t3, &flush))
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !gc.state.lock().unwrap().gathering {
            assert!(
                std::time::Instant::now() < deadline && !leader.is_finished(),
                "the flusher never waited for a second writer"
            );
            std::thread::yield_now();
        }
        assert_eq!(
            flushes.load(Ordering::SeqCst),
            1,
            "flushed without gathering"
        );
        let t4 = gc.ticket();
        leader.join().unwrap().unwrap();
        gc.wait_durable(t4, &flush).unwrap();
        assert_eq!(
            flushes.load(Ordering::SeqCst),
            2,
            "one flush for the two writes"
        );
        // Fewer writers than last time: the flusher waits for the missing one until its
        // deadline, then flushes, and expects as many as it got from then on.
        let fast = GroupCommit {
            gather: Duration::from_millis(1),
            ..GroupCommit::default()
        };
        fast.state.lock().unwrap().last_covered = 2;
        let t = fast.ticket();
        fast.wait_durable(t, &flush).unwrap();
        assert_eq!(fast.state.lock().unwrap().last_covered, 1);
    }

    #[test]
    fn group_commit_shares_flushes() {
        let gc = Arc::new(GroupCommit::default());
        let flushes = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let gc = gc.clone();
                let flushes = flushes.clone();
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        let t = gc.ticket();
                        gc.wait_durable(t, || {
                            flushes.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(Duration::from_millis(2));
                            Ok(())
                        })
                        .unwrap();
                        assert!(gc.state.lock().unwrap().durable >= t);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let n = flushes.load(Ordering::SeqCst);
        assert!(n < 400, "{n} flushes for 400 writes");
    }

    #[test]
    fn failed_flush_is_reported_and_retried() {
        let gc = GroupCommit::default();
        let t = gc.ticket();
        assert!(gc
            .wait_durable(t, || Err(Error::backend("disk on fire")))
            .is_err());
        gc.wait_durable(t, || Ok(())).unwrap();
    }
}
