//! The refresh transaction: one flight, its lease, the refresher's call and its commit.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Duration;

use secrecy::ExposeSecret;

use super::lease::{millis, Lease, LeaseState};
use super::{AmbiguousFailure, Cached, DeadGrant, Pending, Shared, ROUNDS};
use crate::error::{Error, Result};
use crate::namespace::{commit, Expect, Op, Version};
use crate::record::{sealed::Sealed, RecordType};
use crate::refresh::RefreshError;
use crate::token::Token;
use crate::trace::event;

const SPENT: &str = "a refresh request may have reached the server without an answer, so its \
                     refresh token may have been spent; it is not presented again: log in again";

/// One refresh transaction, and everyone waiting for it.
#[derive(Default)]
pub(super) struct Flight {
    result: Mutex<Option<Result<Token>>>,
    done: Condvar,
}

/// What a transaction ended with.
enum Outcome {
    /// A token to serve; `fresh` when it was just issued (its lifetime is known).
    Token { token: Token, fresh: bool },
    /// A refreshed token that could not be stored (a storage error): served, and kept to be
    /// written at the next transaction.
    Unstored { pending: Pending, error: Error },
    /// A failure, and a token that is still valid (not expired) to serve meanwhile.
    Failed {
        error: Error,
        fallback: Option<Token>,
    },
}

impl Shared {
    /// The refresh thread: runs one transaction, records its outcome, wakes the waiters.
    pub(super) fn run_flight(&self, flight: &Flight) {
        let (rejected, pending) = {
            let mut st = self.lock();
            (st.rejected.take(), st.pending.take())
        };
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            self.transaction(rejected.as_ref().map(|r| r.as_slice()), pending)
        }))
        .unwrap_or_else(|_| Err(Error::backend("the refresh transaction panicked")));
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
            Ok(Outcome::Unstored { pending, error }) => {
                event!(error, key = %self.key, error = %error, "the refreshed token could not be stored; serving it from memory and retrying the write");
                drop(error);
                let token = pending.token.clone();
                st.cached = Some(Cached {
                    refresh_at: self.refresh_point(&token, now, true),
                    token: token.clone(),
                });
                st.pending = Some(pending);
                Ok(token)
            }
            Ok(Outcome::Failed { error, fallback }) => {
                st.failures = st.failures.saturating_add(1);
                let retry_at = now + self.backoff(st.failures, &error);
                st.retry_at = Some(retry_at);
                st.last_error = Some(error.duplicate());
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
                // A storage error: nothing to back off from, retry on the next call.
                st.cached = None;
                Err(error)
            }
        };
        drop(st);
        flight.finish(result);
    }

    /// The refresh transaction: read, check the lease, take it, refresh, commit.
    fn transaction(&self, rejected: Option<&[u8]>, pending: Option<Pending>) -> Result<Outcome> {
        if let Some(p) = pending {
            // First, the refreshed token the store did not take last time.
            let ops = vec![
                self.token_op(Some(&p.token), Expect::Exactly(p.token_version))?,
                self.lease_op(None, Expect::Exactly(Some(p.lease_version)))?,
            ];
            match commit(self.ns.vault(), ops) {
                Ok(Ok(_)) => {
                    self.make_durable()?;
                    event!(info, key = %self.key, "stored the refreshed token that an earlier write failed to store");
                }
                // The record was replaced meanwhile (a new login): that grant wins.
                Ok(Err(_)) => self.remove_lease_if_ours()?,
                Err(error) => return Ok(Outcome::Unstored { pending: p, error }),
            }
        }
        let mut adopted_from_peer = false;
        for _ in 0..ROUNDS {
            let now = self.clock.now();
            let stored = self.ns.get_unchecked::<Token>(&self.key)?;
            let token_version = stored.as_ref().map(|(_, v)| *v);
            if let Some((lease, lease_version)) = self.read_lease()? {
                if lease.token_version != token_version.map(Version::as_u64)
                    || lease.holder == self.holder
                {
                    // Taken on a record that has since been replaced (a new login), or our own
                    // leftover: it guards nothing any more.
                    event!(debug, key = %self.key, "removing a stale lease");
                    self.remove_lease(lease_version)?;
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
                event!(warn, key = %self.key, "found a lease left by a refresh that did not finish");
                return Err(self.reauth(
                    "a refresh by another handle did not finish before its lease expired; its \
                     refresh token may have been spent, so it is not used again: log in again",
                ));
            }
            if let Some((token, _)) = &stored {
                let refused =
                    rejected.is_some_and(|r| token.access_token().expose_secret().as_bytes() == r);
                if !refused && !self.needs_refresh(token, now, adopted_from_peer) {
                    event!(debug, key = %self.key, "serving the stored token");
                    return Ok(Outcome::Token {
                        token: token.clone(),
                        fresh: adopted_from_peer,
                    });
                }
            }
            // Take the lease: only if nobody holds one.
            let lease = Lease {
                holder: self.holder,
                until_ms: millis(now + self.config.lease_time),
                token_version: token_version.map(Version::as_u64),
                state: LeaseState::Refreshing,
            };
            let Ok(lease_version) = self.put_lease(&lease, None)? else {
                continue;
            };
            // The record may have changed between the read and the lease.
            let again = self.ns.get_unchecked::<Token>(&self.key)?;
            if again.as_ref().map(|(_, v)| *v) != token_version {
                self.remove_lease(lease_version)?;
                continue;
            }
            // The lease must survive a crash before the refresh token leaves the process.
            self.make_durable()?;
            let current = stored.as_ref().map(|(t, _)| t);
            event!(info, key = %self.key, "refreshing");
            let answer = catch_unwind(AssertUnwindSafe(|| self.refresher.refresh(current)))
                .unwrap_or_else(|_| Err(RefreshError::transient("the refresher panicked")));
            return self.finish(current, token_version, lease_version, answer);
        }
        Err(Error::backend(
            "the token record kept changing during the refresh; try again",
        ))
    }

    /// Commits a refresh's outcome under the lease.
    fn finish(
        &self,
        current: Option<&Token>,
        token_version: Option<Version>,
        lease_version: Version,
        answer: std::result::Result<Token, RefreshError>,
    ) -> Result<Outcome> {
        let now = self.clock.now();
        match answer {
            Ok(new) => {
                let token = match current {
                    Some(stored) => stored.refreshed_with(new),
                    None => new,
                };
                let ops = vec![
                    self.token_op(Some(&token), Expect::Exactly(token_version))?,
                    self.lease_op(None, Expect::Exactly(Some(lease_version)))?,
                ];
                let committed = match commit(self.ns.vault(), ops) {
                    Ok(c) => c,
                    Err(error) => {
                        return Ok(Outcome::Unstored {
                            pending: Pending {
                                token,
                                token_version,
                                lease_version,
                            },
                            error,
                        })
                    }
                };
                match committed {
                    Ok(_) => {
                        self.make_durable()?;
                        #[cfg(feature = "tracing")]
                        event!(info, key = %self.key, token = %crate::trace::short_hash(&token), "refreshed and stored");
                        Ok(Outcome::Token { token, fresh: true })
                    }
                    Err(_) => {
                        // The record changed while we refreshed (a new grant was stored): never
                        // overwrite it. Serve it if it is good.
                        event!(warn, key = %self.key, "the record was replaced during the refresh; keeping the replacement");
                        self.remove_lease_if_ours()?;
                        match self.ns.get_unchecked::<Token>(&self.key)? {
                            Some((t, _)) if !self.needs_refresh(&t, now, true) => {
                                Ok(Outcome::Token {
                                    token: t,
                                    fresh: false,
                                })
                            }
                            _ => Err(self.reauth(
                                "the record was replaced or removed while it was being refreshed",
                            )),
                        }
                    }
                }
            }
            Err(e) if e.is_invalid_grant() => {
                event!(warn, key = %self.key, "the grant is dead (invalid_grant)");
                let ops = match self.config.dead_grant {
                    DeadGrant::Remove => {
                        let mut ops =
                            vec![self.lease_op(None, Expect::Exactly(Some(lease_version)))?];
                        if token_version.is_some() {
                            ops.push(self.token_op(None, Expect::Exactly(token_version))?);
                        }
                        ops
                    }
                    DeadGrant::Mark => {
                        let dead = Lease {
                            holder: [0; 16],
                            until_ms: u64::MAX,
                            token_version: token_version.map(Version::as_u64),
                            state: LeaseState::Dead,
                        };
                        vec![self.lease_op(Some(&dead), Expect::Exactly(Some(lease_version)))?]
                    }
                };
                // A conflict means the record was replaced meanwhile: leave the new one be.
                let _ = commit(self.ns.vault(), ops)?;
                self.make_durable()?;
                Ok(Outcome::Failed {
                    error: Error::Refresh(e),
                    fallback: None,
                })
            }
            Err(e)
                if e.request_possibly_processed()
                    && self.config.ambiguous == AmbiguousFailure::RequireLogin =>
            {
                event!(warn, key = %self.key, "the refresh request may have reached the server without an answer; not presenting its refresh token again");
                let spent = Lease {
                    holder: [0; 16],
                    until_ms: u64::MAX,
                    token_version: token_version.map(Version::as_u64),
                    state: LeaseState::PossiblySpent,
                };
                let op = self.lease_op(Some(&spent), Expect::Exactly(Some(lease_version)))?;
                // A conflict means the record was replaced meanwhile: leave the new one be.
                let _ = commit(self.ns.vault(), vec![op])?;
                self.make_durable()?;
                let fallback = current
                    .filter(|t| t.expires_at().is_some_and(|exp| now < exp))
                    .cloned();
                Ok(Outcome::Failed {
                    error: self.reauth(SPENT),
                    fallback,
                })
            }
            Err(e) => {
                event!(warn, key = %self.key, kind = ?e.kind(), "the refresh failed; the stored token is kept");
                self.remove_lease(lease_version)?;
                let fallback = current
                    .filter(|t| t.expires_at().is_some_and(|exp| now < exp))
                    .cloned();
                Ok(Outcome::Failed {
                    error: Error::Refresh(e),
                    fallback,
                })
            }
        }
    }

    // ---- records ----

    pub(super) fn token_op(&self, token: Option<&Token>, expect: Expect) -> Result<Op<'_>> {
        Ok(Op {
            ns: &self.ns,
            key: &self.key,
            body: token.map(|t| t.encode_body(&self.key)).transpose()?,
            record_type: RecordType::Token,
            expect,
        })
    }
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
                    Err(e) => Err(e.duplicate()),
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
                        return Err(Error::Refresh(RefreshError::transient(
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
