//! A holder that outlived its lease: another holder may have taken the lease over since.
//!
//! The commit of a refreshed token is conditional on the lease record's generation, which every
//! take of the lease changes (the storage's generations are the fencing tokens; the lease's
//! `fence` counts its holders). So a holder that stalled past its lease (paused, partitioned,
//! its storage unreachable) and comes back has its commit refused exactly when another holder
//! has taken the lease since. Then the outcome is decided through the lease:
//!
//! - another holder stored a successor (or a new grant was stored): that one wins, and this
//!   holder's answer is dropped: it serves the stored winner;
//! - the other holder is still refreshing: this holder waits for it, then decides again;
//! - no successor was stored (the other holder's lease expired in turn, or it ended with a
//!   mark: its presentation was refused as a reuse, or its answer was lost): this holder's
//!   answer is the record's only successor, and it is stored over that lease. Dropping it
//!   would lose the only valid refresh token of a rotating server.

use super::owed::Under;
use super::transaction::{unexpired, Outcome};
use super::{Shared, ROUNDS};
use crate::batch::{BatchConflict, Written};
use crate::namespace::Version;
use crate::token::Token;
use crate::token_error::{Result, TokenError};
use crate::trace::event;

use super::lease::{Lease, LeaseState};

impl Shared {
    /// Whether the record or the lease this refresh was made under has changed since:
    /// another holder took the lease over (and maybe stored a successor), or a new grant was
    /// stored, or a logout. A failure to read says no: the refresh's own outcome is then
    /// written as usual, conditionally.
    pub(super) fn lease_taken(&self, under: Under) -> bool {
        self.superseded(under).unwrap_or(false)
    }

    /// A refreshed `token` whose commit under `under` was refused: stores it if no successor
    /// of the record it refreshed was stored (`Some`: stored), or drops it for the successor
    /// or replacement that was (`None`). Waits meanwhile for another holder's live lease. What
    /// is owed stays owed until it is decided; an error leaves it owed.
    pub(super) fn commit_refused(&self, token: &Token, under: Under) -> Result<Option<()>> {
        for _ in 0..ROUNDS {
            let stored = self.ns.get_versioned::<Token>(&self.key)?.map(|(_, v)| v);
            if stored != under.token_version {
                event!(warn, key = %self.key, "the record was replaced during the refresh; keeping the replacement");
                self.owe(None);
                self.remove_lease_if_ours()?;
                return Ok(None);
            }
            let now = self.clock.now();
            let lease = match self.read_lease()? {
                Some((lease, version))
                    if lease.state == LeaseState::Refreshing
                        && lease.holder != self.holder
                        && lease.token_version == under.token_version.map(Version::as_u64)
                        && now < lease.until() =>
                {
                    event!(debug, key = %self.key, "another holder took the lease over; waiting for its outcome");
                    self.wait_for_lease(version, lease.until())?;
                    continue;
                }
                other => other.map(|(_, version)| version),
            };
            if self.store_over(token, under.token_version, lease)?.is_ok() {
                self.owe(None);
                self.make_durable()?;
                event!(warn, key = %self.key, fence = under.fence, "stored a refreshed token after its lease had expired: no other holder stored a successor");
                return Ok(Some(()));
            }
        }
        Err(TokenError::backend(
            "the token record and its lease kept changing while a late refresh was being \
             stored; it stays in memory and is stored at the next call",
        ))
    }

    /// A refresh that failed under a lease another holder has taken since: that holder's
    /// outcome decides. Nothing is written for this one (its lease is gone); once the other
    /// holder is done, what it stored is served, else the failure is reported.
    pub(super) fn defer_to_taker(
        &self,
        current: Option<&Token>,
        under: Under,
        error: TokenError,
    ) -> Result<Outcome> {
        self.owe(None);
        event!(warn, key = %self.key, "the refresh failed after another holder took its lease over; that holder's outcome decides");
        for _ in 0..ROUNDS {
            let now = self.clock.now();
            if let Some((lease, version)) = self.read_lease()? {
                if lease.state == LeaseState::Refreshing
                    && lease.holder != self.holder
                    && now < lease.until()
                {
                    self.wait_for_lease(version, lease.until())?;
                    continue;
                }
            }
            return Ok(match self.ns.get_versioned::<Token>(&self.key)? {
                Some((token, version))
                    if Some(version) != under.token_version
                        && !self.needs_refresh(&token, now, true) =>
                {
                    Outcome::Token {
                        token,
                        fresh: false,
                    }
                }
                _ => Outcome::Failed {
                    error,
                    fallback: unexpired(current, now),
                },
            });
        }
        let now = self.clock.now();
        Ok(Outcome::Failed {
            error,
            fallback: unexpired(current, now),
        })
    }

    /// Keeps other holders from taking over the lease of a refreshed token this holder cannot
    /// store (too large for a record): the lease becomes a mark that never expires, which
    /// other holders read as a possibly spent refresh token (log in again) and a new grant
    /// clears. The owed token is then written over the mark (the `Under` returned). A failed
    /// write leaves the lease as it was.
    pub(super) fn pin(&self, under: Under) -> Under {
        let mark = Lease {
            holder: self.holder,
            until_ms: u64::MAX,
            token_version: under.token_version.map(Version::as_u64),
            state: LeaseState::PossiblySpent,
            fence: under.fence,
        };
        match self.put_lease(&mark, Some(under.lease_version)) {
            Ok(Ok(lease_version)) => Under {
                lease_version,
                ..under
            },
            _ => under,
        }
    }

    /// Stores `token` over the record at `token_version`, removing the lease at `lease`, in
    /// one atomic write that applies only if neither changed.
    pub(super) fn store_over(
        &self,
        token: &Token,
        token_version: Option<Version>,
        lease: Option<Version>,
    ) -> Result<std::result::Result<Vec<Written>, BatchConflict>> {
        let mut batch = self.ns.vault().batch();
        batch.put_if(&self.ns, &self.key, token, token_version)?;
        if let Some(version) = lease {
            batch.remove_if(&self.ns, &self.lease, version)?;
        }
        Ok(batch.commit()?)
    }
}
