//! What a refresh leaves owed to the store when it cannot be written at once, and how it is
//! settled.
//!
//! The rule: once the refresher has been called, nothing may lead to presenting that refresh
//! token again (unless the [`AmbiguousFailure`](super::AmbiguousFailure) policy says the server
//! does not rotate). So the outcome of a refresher call (the new token, or a mark on the grant)
//! is kept in memory ([`State::owed`](super::State)) from before the call until it is in the
//! store, and the lease stays meanwhile: other handles do not present the old refresh token,
//! and this one writes what it owes first at its next transaction. It is never dropped because
//! of a storage error, an encoding error or a panic.

use super::lease::{Lease, LeaseState};
use super::transaction::Outcome;
use super::{same_access, Shared};
use crate::namespace::Version;
use crate::token::Token;
use crate::token_error::Result;
use crate::trace::event;

/// A write this authorizer owes the store, under its own lease.
#[derive(Clone)]
pub(super) enum Owed {
    /// The refresher was called under the lease and its outcome is not settled yet. Set
    /// before the call; still there at the next transaction only if the outcome was lost (an
    /// error or a panic on the way): the refresh token may have been spent.
    Unsettled(Under),
    /// A refreshed token the store did not take (a storage error, or too large for a record).
    Token { token: Token, under: Under },
    /// A verdict on the grant: the refresh token is not to be presented again.
    Verdict { verdict: Verdict, under: Under },
}

/// The versions a refresh was made under.
#[derive(Clone, Copy)]
pub(super) struct Under {
    /// The token record's version when the lease was taken (`None`: no record).
    pub(super) token_version: Option<Version>,
    /// The lease's version.
    pub(super) lease_version: Version,
    /// The lease's fencing counter.
    pub(super) fence: u64,
}

impl Under {
    /// The lease as taken (the holder is `holder`), for releasing it.
    pub(super) fn lease(&self, holder: [u8; 16]) -> Lease {
        Lease {
            holder,
            until_ms: 0,
            token_version: self.token_version.map(Version::as_u64),
            state: LeaseState::Refreshing,
            fence: self.fence,
        }
    }
}

/// What becomes of the grant after a refresh that must not be repeated.
#[derive(Clone, Copy, Debug)]
pub(super) enum Verdict {
    /// Remove the record and the lease ([`DeadGrant::Remove`](super::DeadGrant::Remove)).
    Remove,
    /// Replace the lease by a mark that only a new grant clears (dead, or possibly spent).
    Mark(LeaseState),
}

impl Shared {
    /// Replaces what is owed.
    pub(super) fn owe(&self, owed: Option<Owed>) {
        self.lock().owed = owed;
    }

    /// Writes what an earlier refresh left owed, before anything else. `Some(outcome)`: a
    /// refreshed token could not be written again; the transaction ends with it (its lease
    /// stays). An error leaves everything owed as it was.
    pub(super) fn settle_owed(&self, rejected: Option<&[u8]>) -> Result<Option<Outcome>> {
        let Some(owed) = self.lock().owed.clone() else {
            return Ok(None);
        };
        match owed {
            Owed::Unsettled(under) => {
                event!(warn, key = %self.key, "the outcome of a refresh was lost before it was stored; its refresh token may have been spent");
                match self.config.ambiguous {
                    super::AmbiguousFailure::Retry => {
                        self.release_lease(&under.lease(self.holder), under.lease_version)?;
                        self.owe(None);
                    }
                    super::AmbiguousFailure::RequireLogin => {
                        let verdict = Verdict::Mark(LeaseState::PossiblySpent);
                        self.owe(Some(Owed::Verdict { verdict, under }));
                        self.write_verdict(verdict, under)?;
                    }
                }
                Ok(None)
            }
            Owed::Verdict { verdict, under } => {
                self.write_verdict(verdict, under)?;
                Ok(None)
            }
            Owed::Token { token, under } => self.settle_token(token, under, rejected),
        }
    }

    /// Writes an owed refreshed token. When the store still does not take it, and the grant
    /// was not replaced meanwhile, it is served from memory while it has not expired (and was
    /// not reported refused), and stays owed.
    fn settle_token(
        &self,
        token: Token,
        under: Under,
        rejected: Option<&[u8]>,
    ) -> Result<Option<Outcome>> {
        match self.store_refreshed(&token, under) {
            Ok(Ok(_)) => {
                self.owe(None);
                self.make_durable()?;
                event!(info, key = %self.key, "stored the refreshed token that an earlier write failed to store");
                Ok(None)
            }
            // The record or the lease was replaced meanwhile (a new login, a logout: that
            // wins), or the lease was taken over (stored over it if no successor was stored).
            // Either way the transaction goes on from what is stored now.
            Ok(Err(_)) => {
                self.commit_refused(&token, under)?;
                Ok(None)
            }
            Err(error) => {
                if self.superseded(under)? && self.commit_refused(&token, under).is_ok() {
                    return Ok(None);
                }
                let now = self.clock.now();
                let servable = token.expires_at().is_none_or(|exp| now < exp)
                    && !rejected.is_some_and(|r| same_access(&token, r));
                Ok(Some(if servable {
                    Outcome::Unstored { token, error }
                } else {
                    Outcome::Failed {
                        error,
                        fallback: None,
                    }
                }))
            }
        }
    }

    /// Whether the grant a refresh was made under has been replaced since (the record or the
    /// lease is no longer the one the refresh was made under).
    pub(super) fn superseded(&self, under: Under) -> Result<bool> {
        let token_version = self.ns.get_versioned::<Token>(&self.key)?.map(|(_, v)| v);
        let lease_version = self.read_lease()?.map(|(_, v)| v);
        Ok(token_version != under.token_version || lease_version != Some(under.lease_version))
    }

    /// Records `verdict` as owed and writes it; a failure to write it is reported and leaves
    /// it owed (and the lease in place), to be written at the next transaction.
    pub(super) fn give_verdict(&self, verdict: Verdict, under: Under) {
        self.owe(Some(Owed::Verdict { verdict, under }));
        if let Err(error) = self.write_verdict(verdict, under) {
            event!(error, key = %self.key, error = %error, verdict = ?verdict, "could not write the verdict on the grant; it is kept in memory and written at the next call, and the refresh token is not presented again meanwhile");
            drop(error);
        }
    }

    /// Writes `verdict` under the lease; settles it once the write landed (a conflict lands
    /// too: the record was replaced meanwhile, and the new one is left be).
    fn write_verdict(&self, verdict: Verdict, under: Under) -> Result<()> {
        let mut batch = self.ns.vault().batch();
        match verdict {
            Verdict::Remove => {
                batch.remove_if(&self.ns, &self.lease, under.lease_version)?;
                if let Some(version) = under.token_version {
                    batch.remove_if(&self.ns, &self.key, version)?;
                }
            }
            Verdict::Mark(state) => {
                let mark = Lease {
                    holder: [0; 16],
                    until_ms: u64::MAX,
                    token_version: under.token_version.map(Version::as_u64),
                    state,
                    fence: under.fence,
                };
                let record = Self::lease_record(&mark);
                batch.put_if(&self.ns, &self.lease, &record, Some(under.lease_version))?;
            }
        }
        let _ = batch.commit()?;
        self.owe(None);
        self.make_durable()
    }
}
