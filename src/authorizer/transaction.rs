//! The refresh transaction: one flight, its lease, the refresher's call and its outcome.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use super::answer;
use super::lease::{millis, Lease, LeaseState};
use super::owed::{Owed, Under, Verdict};
use super::{same_access, AmbiguousFailure, Cached, DeadGrant, Shared, ROUNDS};
use crate::batch::{BatchConflict, Written};
use crate::namespace::Version;
use crate::record::MAX_RECORD_LEN;
use crate::refresh::RefreshError;
use crate::token::Token;
use crate::token_error::{Result, TokenError};
use crate::trace::event;

const SPENT: &str = "a refresh request reached the server, or may have, without an \
                                answer that could be stored, so its refresh token may have been \
                                spent; it is not presented again: log in again";

/// One refresh transaction, and everyone waiting for it.
#[derive(Default)]
pub(super) struct Flight {
    result: Mutex<Option<Result<Token>>>,
    done: Condvar,
}

/// What a transaction ended with.
pub(super) enum Outcome {
    /// A token to serve; `fresh` when it was just issued (its lifetime is known).
    Token { token: Token, fresh: bool },
    /// A refreshed token that could not be stored (a storage error, or too large for a
    /// record): served from memory, and owed to the store (written first at the next
    /// transaction; its lease stays meanwhile).
    Unstored { token: Token, error: TokenError },
    /// A failure, and a token that is still valid (not expired) to serve meanwhile.
    Failed {
        error: TokenError,
        fallback: Option<Token>,
    },
}

impl Shared {
    /// The refresh thread: runs one transaction, records its outcome, wakes the waiters.
    pub(super) fn run_flight(&self, flight: &Flight) {
        let rejected = self.lock().rejected.take();
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            self.transaction(rejected.as_ref().map(|r| r.as_slice()))
        }))
        .unwrap_or_else(|_| Err(TokenError::backend("the refresh transaction panicked")));
        let now = self.clock.now();
        let mut st = self.lock();
        st.flight = None;
        let result = match outcome {
            Ok(Outcome::Token { token, fresh }) => {
                st.cached = Some(Cached {
                    refresh_at: self.refresh_point(&token, now, fresh),
                    token: token.clone(),
                });
                st.failures = 0;
                st.retry_at = None;
                st.last_error = None;
                Ok(token)
            }
            Ok(Outcome::Unstored { token, error }) => {
                event!(error, key = %self.key, error = %error, "the refreshed token could not be stored; serving it from memory and retrying the write");
                drop(error);
                st.cached = Some(Cached {
                    refresh_at: self.refresh_point(&token, now, true),
                    token: token.clone(),
                });
                Ok(token)
            }
            Ok(Outcome::Failed { error, fallback }) => {
                st.failures = st.failures.saturating_add(1);
                let retry_at = now + self.backoff(st.failures, &error);
                st.retry_at = Some(retry_at);
                st.last_error = Some(error.clone());
                match fallback {
                    Some(token) => {
                        let expiry = token.expires_at().unwrap_or(retry_at);
                        st.cached = Some(Cached {
                            refresh_at: retry_at.min(expiry),
                            token: token.clone(),
                        });
                        Ok(token)
                    }
                    None => {
                        st.cached = None;
                        Err(error)
                    }
                }
            }
            Err(error) => {
                // A storage error: nothing to back off from, retry on the next call. Whatever
                // a refresh left owed is still owed (`State::owed`), and written first then.
                st.cached = None;
                Err(error)
            }
        };
        drop(st);
        flight.finish(result);
    }

    /// The refresh transaction: settle what an earlier one left owed, read, check the lease,
    /// take it, refresh, store.
    fn transaction(&self, rejected: Option<&[u8]>) -> Result<Outcome> {
        if let Some(outcome) = self.settle_owed(rejected)? {
            return Ok(outcome);
        }
        let mut adopted_from_peer = false;
        for _ in 0..ROUNDS {
            let now = self.clock.now();
            let stored = self.ns.get_versioned::<Token>(&self.key)?;
            let token_version = stored.as_ref().map(|(_, v)| *v);
            // The fence of the lease to take, and the expired lease it takes over.
            let mut take = (1, None);
            if let Some((lease, lease_version)) = self.read_lease()? {
                if lease.token_version != token_version.map(Version::as_u64) {
                    // Taken on a record that has since been replaced (a new login): it guards
                    // nothing any more.
                    event!(debug, key = %self.key, "removing a stale lease");
                    self.remove_lease(lease_version)?;
                    continue;
                }
                if lease.holder == self.holder {
                    // Our own leftover: after a refresher call it stays only while something
                    // is owed, and what is owed was settled above, or the transaction ended
                    // there.
                    event!(debug, key = %self.key, "releasing our own leftover lease");
                    self.release_lease(&lease, lease_version)?;
                    continue;
                }
                match lease.state {
                    LeaseState::Refreshing => {}
                    LeaseState::Dead => {
                        return Err(self.reauth(
                            "the grant was refused as dead (invalid_grant) and marked; store a new grant",
                        ))
                    }
                    LeaseState::PossiblySpent => return Err(self.reauth(SPENT)),
                }
                if now < lease.until() {
                    event!(debug, key = %self.key, "waiting for another handle's refresh");
                    self.wait_for_lease(lease_version, lease.until())?;
                    adopted_from_peer = true;
                    continue;
                }
                take = (lease.fence.saturating_add(1), Some(lease_version));
            }
            if let Some((token, _)) = &stored {
                let refused = rejected.is_some_and(|r| same_access(token, r));
                if !refused && !self.needs_refresh(token, now, adopted_from_peer) {
                    event!(debug, key = %self.key, "serving the stored token");
                    return Ok(Outcome::Token {
                        token: token.clone(),
                        fresh: adopted_from_peer,
                    });
                }
            }
            let (fence, expired) = take;
            if expired.is_some() {
                event!(warn, key = %self.key, fence, "taking over a lease whose holder did not finish in time");
            }
            // Take the lease: only if nobody holds one, or over the expired one just read.
            let lease = Lease {
                holder: self.holder,
                until_ms: millis(now + self.config.lease_time),
                token_version: token_version.map(Version::as_u64),
                state: LeaseState::Refreshing,
                fence,
            };
            let Ok(lease_version) = self.put_lease(&lease, expired)? else {
                continue;
            };
            // The record may have changed between the read and the lease.
            let again = self.ns.get_versioned::<Token>(&self.key)?;
            if again.as_ref().map(|(_, v)| *v) != token_version {
                self.remove_lease(lease_version)?;
                continue;
            }
            // The lease must survive a crash before the refresh token leaves the process.
            self.make_durable()?;
            let current = stored.as_ref().map(|(t, _)| t);
            let under = Under {
                token_version,
                lease_version,
                fence,
            };
            // From here on the refresh token may be spent: until the outcome is settled in the
            // store, the lease stays and the memory says why (an error or a panic on the way
            // leaves `Unsettled`, which the next transaction treats as a possibly spent token).
            self.owe(Some(Owed::Unsettled(under)));
            event!(info, key = %self.key, "refreshing");
            // A refresher that panicked may have sent the request first: possibly processed.
            let answer = catch_unwind(AssertUnwindSafe(|| self.refresher.refresh(current)))
                .unwrap_or_else(|_| {
                    Err(RefreshError::transient(
                        "the refresher panicked; its request may have reached the server",
                    )
                    .with_request_possibly_processed())
                });
            return self.finish(current, under, answer);
        }
        Err(TokenError::backend(
            "the token record kept changing during the refresh; try again",
        ))
    }

    /// Settles a refresh's outcome under the lease. From the refresher's call on, no path
    /// leads to presenting the same refresh token again (unless the [`AmbiguousFailure`]
    /// policy says the server does not rotate): what cannot be written now stays owed, with
    /// the lease, and is written first at the next transaction.
    fn finish(
        &self,
        current: Option<&Token>,
        under: Under,
        answer: std::result::Result<Token, RefreshError>,
    ) -> Result<Outcome> {
        let now = self.clock.now();
        let new = match answer {
            Ok(new) => new,
            Err(e) if self.lease_taken(under) => {
                return self.defer_to_taker(current, under, TokenError::Refresh(e))
            }
            Err(e) => return Ok(self.failed(current, under, e, now)),
        };
        if let Some(reason) = current.and_then(|stored| answer::foreign(stored, &new)) {
            drop(new);
            event!(warn, key = %self.key, reason, "refusing the refresher's answer");
            if self.lease_taken(under) {
                let error = RefreshError::rejected(format!("{reason}; the answer is not stored"));
                return self.defer_to_taker(current, under, TokenError::Refresh(error));
            }
            return Ok(self.refuse(current, under, reason, now));
        }
        let merged = match current {
            Some(stored) => stored.refreshed_with(new),
            None => new,
        };
        let fitted = answer::fit(merged, &self.key);
        if fitted.dropped > 0 {
            event!(warn, key = %self.key, dropped = fitted.dropped, "the refreshed token is too large for a record; storing it without the extra fields that do not fit");
        }
        let token = fitted.token;
        self.owe(Some(Owed::Token {
            token: token.clone(),
            under,
        }));
        if !fitted.fits {
            let under = self.pin(under);
            self.owe(Some(Owed::Token {
                token: token.clone(),
                under,
            }));
            return Ok(Outcome::Unstored {
                token,
                error: TokenError::Vault(crate::Error::TooLarge {
                    what: "the refreshed token, even without its extra fields,",
                    limit: MAX_RECORD_LEN,
                }),
            });
        };
        match self.store_refreshed(&token, under) {
            Err(error) => Ok(Outcome::Unstored { token, error }),
            Ok(Ok(_)) => {
                self.owe(None);
                self.make_durable()?;
                #[cfg(feature = "tracing")]
                event!(info, key = %self.key, token = %crate::trace::short_hash(&token), "refreshed and stored");
                Ok(Outcome::Token { token, fresh: true })
            }
            Ok(Err(_)) => {
                // The record or the lease changed while we refreshed (a new grant was stored,
                // a logout, or another holder took the lease over after ours expired).
                if self.commit_refused(&token, under)?.is_some() {
                    return Ok(Outcome::Token { token, fresh: true });
                }
                drop(token);
                match self.ns.get_versioned::<Token>(&self.key)? {
                    Some((t, _)) if !self.needs_refresh(&t, now, true) => Ok(Outcome::Token {
                        token: t,
                        fresh: false,
                    }),
                    _ => Err(self
                        .reauth("the record was replaced or removed while it was being refreshed")),
                }
            }
        }
    }

    /// A refresher's failure: the [`DeadGrant`] policy for a dead grant, the
    /// [`AmbiguousFailure`] policy for a request that may have been processed, else the lease
    /// is released (the refresh token was not spent) and the record kept.
    fn failed(
        &self,
        current: Option<&Token>,
        under: Under,
        e: RefreshError,
        now: SystemTime,
    ) -> Outcome {
        if e.is_invalid_grant() {
            event!(warn, key = %self.key, "the grant is dead (invalid_grant)");
            // Under a lease taken over from a holder that stalled, the refusal may only mean
            // that holder's request was exchanged first: it is marked, never removed, so that
            // the holder, if it comes back with the answer, can store it over the mark.
            let verdict = match self.config.dead_grant {
                DeadGrant::Remove if under.fence <= 1 => Verdict::Remove,
                _ => Verdict::Mark(LeaseState::Dead),
            };
            self.give_verdict(verdict, under);
            return Outcome::Failed {
                error: TokenError::Refresh(e),
                fallback: None,
            };
        }
        // Only a refresh token can be spent: a grant without one (client credentials) loses
        // nothing by being retried.
        let spendable = current.is_some_and(|t| t.refresh_token().is_some());
        if e.request_possibly_processed()
            && spendable
            && self.config.ambiguous == AmbiguousFailure::RequireLogin
        {
            event!(warn, key = %self.key, "the refresh request may have reached the server without an answer; not presenting its refresh token again");
            self.give_verdict(Verdict::Mark(LeaseState::PossiblySpent), under);
            return Outcome::Failed {
                error: self.reauth(SPENT),
                fallback: unexpired(current, now),
            };
        }
        event!(warn, key = %self.key, kind = ?e.kind(), "the refresh failed; the stored token is kept");
        self.release(under);
        Outcome::Failed {
            error: TokenError::Refresh(e),
            fallback: unexpired(current, now),
        }
    }

    /// An answer that is not a refresh of the stored grant (another identity or resource
    /// server): never stored nor served. The server may have rotated the refresh token when
    /// it issued it, so the grant is marked possibly spent, unless the [`AmbiguousFailure`]
    /// policy says the server does not rotate or the grant has no refresh token (then the
    /// record is kept and the refresh retried after the backoff).
    fn refuse(
        &self,
        current: Option<&Token>,
        under: Under,
        reason: &str,
        now: SystemTime,
    ) -> Outcome {
        let spendable = current.is_some_and(|t| t.refresh_token().is_some());
        let error = match self.config.ambiguous {
            AmbiguousFailure::RequireLogin if spendable => {
                self.give_verdict(Verdict::Mark(LeaseState::PossiblySpent), under);
                self.reauth(&format!(
                    "{reason}; the answer is not stored, and the refresh token, which the \
                     server may have rotated, is not presented again: log in again"
                ))
            }
            _ => {
                self.release(under);
                TokenError::Refresh(RefreshError::rejected(format!(
                    "{reason}; the answer is not stored"
                )))
            }
        };
        Outcome::Failed {
            error,
            fallback: unexpired(current, now),
        }
    }

    /// Releases the lease after a refresh that did not spend the refresh token. A failure to
    /// remove it is harmless: nothing is owed, so the next transaction removes it as our own
    /// leftover.
    fn release(&self, under: Under) {
        self.owe(None);
        if let Err(error) = self.release_lease(&under.lease(self.holder), under.lease_version) {
            event!(warn, key = %self.key, error = %error, "could not release the lease; it is removed at the next call");
            drop(error);
        }
    }

    /// Stores the refreshed `token` and removes the lease, in one atomic write that applies
    /// only if neither changed since the refresh began (`under`).
    pub(super) fn store_refreshed(
        &self,
        token: &Token,
        under: Under,
    ) -> Result<std::result::Result<Vec<Written>, BatchConflict>> {
        self.store_over(token, under.token_version, Some(under.lease_version))
    }
}

/// `current` if it has not expired at `now`: served while a failure is reported.
pub(super) fn unexpired(current: Option<&Token>, now: SystemTime) -> Option<Token> {
    current
        .filter(|t| t.expires_at().is_some_and(|exp| now < exp))
        .cloned()
}

impl Flight {
    fn finish(&self, result: Result<Token>) {
        *self.result.lock().unwrap_or_else(PoisonError::into_inner) = Some(result);
        self.done.notify_all();
    }

    pub(super) fn wait(&self, wait: Option<Duration>) -> Result<Token> {
        let deadline = wait.map(|w| std::time::Instant::now() + w);
        let mut result = self.result.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(r) = result.as_ref() {
                return match r {
                    Ok(token) => Ok(token.clone()),
                    Err(e) => Err(e.clone()),
                };
            }
            result = match deadline {
                None => self
                    .done
                    .wait(result)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        return Err(TokenError::Refresh(RefreshError::transient(
                            "stopped waiting for the refresh; it goes on, and its result is \
                             stored for the next call",
                        )));
                    }
                    self.done
                        .wait_timeout(result, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
    }
}
