//! Building an authorizer: its settings and their defaults.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::lease::LEASE_LAYER;
use super::{
    AmbiguousFailure, Authorizer, DeadGrant, Shared, State, DEFAULT_JITTER, DEFAULT_LEASE_TIME,
    DEFAULT_MARGIN, DEFAULT_MAX_RETRY_GAP, DEFAULT_MIN_RETRY_GAP,
};
use crate::clock::{Clock, StorageClock};
use crate::crypto::random_u64;
use crate::error::{Error, Result};
use crate::namespace::{InternalKey, Namespace};
use crate::refresh::Refresher;

impl Authorizer {
    /// Starts building an authorizer for the token stored under `key` in `namespace`,
    /// refreshed by `refresher` (a [`Refresher`] or a closure).
    pub fn builder(
        namespace: &Namespace,
        key: &str,
        refresher: impl Refresher,
    ) -> AuthorizerBuilder {
        AuthorizerBuilder {
            ns: namespace.clone(),
            key: key.to_owned(),
            refresher: Arc::new(refresher),
            clock: Arc::new(StorageClock(Arc::clone(namespace.engine()))),
            config: Config {
                margin: DEFAULT_MARGIN,
                jitter: DEFAULT_JITTER,
                lease_time: DEFAULT_LEASE_TIME,
                min_retry_gap: DEFAULT_MIN_RETRY_GAP,
                max_retry_gap: DEFAULT_MAX_RETRY_GAP,
                dead_grant: DeadGrant::Remove,
                ambiguous: AmbiguousFailure::RequireLogin,
                poll: Duration::from_millis(20),
            },
        }
    }
}

/// Builds an [`Authorizer`]: [`Authorizer::builder`].
#[must_use]
pub struct AuthorizerBuilder {
    ns: Namespace,
    key: String,
    refresher: Arc<dyn Refresher>,
    clock: Arc<dyn Clock>,
    config: Config,
}

#[derive(Clone, Copy, Debug)]
pub(super) struct Config {
    pub(super) margin: Duration,
    pub(super) jitter: Duration,
    pub(super) lease_time: Duration,
    pub(super) min_retry_gap: Duration,
    pub(super) max_retry_gap: Duration,
    pub(super) dead_grant: DeadGrant,
    pub(super) ambiguous: AmbiguousFailure,
    pub(super) poll: Duration,
}

impl AuthorizerBuilder {
    /// How long before expiry a token is refreshed (default [`DEFAULT_MARGIN`], 60 s).
    pub fn margin(mut self, margin: Duration) -> Self {
        self.config.margin = margin;
        self
    }

    /// The upper bound of a random extra margin, drawn once per authorizer, so that many
    /// processes holding the same token do not all refresh at the same moment (default
    /// [`DEFAULT_JITTER`], 30 s).
    pub fn jitter(mut self, jitter: Duration) -> Self {
        self.config.jitter = jitter;
        self
    }

    /// Where the time comes from: expiry decisions and lease times (default: the storage's
    /// clock, [`Vault::storage_time`](crate::Vault::storage_time), which is this machine's for
    /// a vault on disk and the server's for storage several machines share).
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// How long a lease is good for (default [`DEFAULT_LEASE_TIME`], 30 s), on the storage's
    /// clock. Must be longer than any refresh takes (the HTTP refresher's timeout is 10 s by
    /// default): other handles wait for a live lease, and take over one past its end, so a
    /// holder that outlives its lease (a handle that died, or stalled) may see its refresh
    /// token presented a second time by the taker.
    pub fn lease_time(mut self, lease_time: Duration) -> Self {
        self.config.lease_time = lease_time;
        self
    }

    /// The backoff after failed refreshes: the first retry waits `min`, each further failure
    /// doubles the wait, up to `max` (defaults [`DEFAULT_MIN_RETRY_GAP`], 1 s, and
    /// [`DEFAULT_MAX_RETRY_GAP`], 60 s). A server's `Retry-After` is honoured up to `max`.
    pub fn retry_gap(mut self, min: Duration, max: Duration) -> Self {
        self.config.min_retry_gap = min;
        self.config.max_retry_gap = max.max(min);
        self
    }

    /// What happens to the stored record when the grant is dead (default
    /// [`DeadGrant::Remove`]).
    pub fn on_dead_grant(mut self, policy: DeadGrant) -> Self {
        self.config.dead_grant = policy;
        self
    }

    /// What to do after an ambiguous failure (default [`AmbiguousFailure::RequireLogin`]).
    pub fn on_ambiguous_failure(mut self, policy: AmbiguousFailure) -> Self {
        self.config.ambiguous = policy;
        self
    }

    /// How often a handle waiting for another handle's lease looks again (default 20 ms,
    /// doubling up to 8 times that).
    pub fn lease_poll(mut self, poll: Duration) -> Self {
        self.config.poll = poll.max(Duration::from_millis(1));
        self
    }

    /// Builds the authorizer. Nothing is read or refreshed until the first call.
    ///
    /// # Errors
    /// [`Error::InvalidName`] for a key the namespace would refuse.
    pub fn build(self) -> Result<Authorizer> {
        // The key must be a valid user key, and its lease key within the name limit.
        if self.key.is_empty() || self.key.starts_with('\0') {
            return Err(Error::InvalidName {
                reason: "an authorizer needs a non-empty, unreserved record key",
            });
        }
        let lease = InternalKey::new(LEASE_LAYER, &self.key).map_err(|_| Error::InvalidName {
            reason: "an authorizer's record key must leave 7 bytes of the name limit free",
        })?;
        let mut holder = [0u8; 16];
        holder[..8].copy_from_slice(&random_u64()?.to_le_bytes());
        holder[8..].copy_from_slice(&random_u64()?.to_le_bytes());
        let jitter = fraction_of(self.config.jitter, random_u64()?);
        Ok(Authorizer {
            shared: Arc::new(Shared {
                ns: self.ns,
                key: self.key,
                lease,
                refresher: self.refresher,
                clock: self.clock,
                config: self.config,
                holder,
                jitter,
                state: Mutex::new(State::default()),
            }),
        })
    }
}

impl fmt::Debug for AuthorizerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizerBuilder")
            .field("namespace", &self.ns.name())
            .field("key", &self.key)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// `max` scaled by a uniformly random fraction taken from `random`.
fn fraction_of(max: Duration, random: u64) -> Duration {
    #[allow(clippy::cast_precision_loss)]
    let fraction = (random >> 11) as f64 / (1u64 << 53) as f64;
    max.mul_f64(fraction)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_fraction_stays_in_bounds() {
        let max = Duration::from_secs(30);
        for r in [0, 1, u64::MAX, u64::MAX / 2, 12345] {
            assert!(fraction_of(max, r) <= max);
        }
        assert_eq!(fraction_of(max, 0), Duration::ZERO);
    }
}
