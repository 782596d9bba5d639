//! The refresh lease: its record, and reading and writing it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use secrecy::SecretSlice;

use super::Shared;
use crate::bytes::Reader;
use crate::namespace::Version;
use crate::token::Secret;
use crate::token_error::{Result, TokenError as Error};

/// The layer name of the lease, an [internal record](crate::batch::InternalKey) of the token's
/// key: stored under `"\0lease\0"` and the token's key (`docs/format.md` 5.6).
pub(crate) const LEASE_LAYER: &str = "lease";

/// Lease record layout version written (`docs/format.md` 5.6); version 1 (without the
/// fencing counter) is still read, as fence 1.
const LEASE_VERSION: u8 = 2;
const LEASE_V1_LEN: usize = 1 + 1 + 16 + 8 + 1 + 8;
const LEASE_LEN: usize = LEASE_V1_LEN + 8;

/// A lease, as stored (sealed, as a `Secret` record at the reserved lease key).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) struct Lease {
    pub(super) holder: [u8; 16],
    /// Milliseconds since the Unix epoch.
    pub(super) until_ms: u64,
    /// The version of the token record the lease was taken on (`None`: no record).
    pub(super) token_version: Option<u64>,
    pub(super) state: LeaseState,
    /// The fencing counter: 1 for the first lease taken on `token_version`, one more at each
    /// takeover of an expired lease on the same record version (a mark keeps the fence of the
    /// holder that wrote it).
    pub(super) fence: u64,
}

/// What a lease says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum LeaseState {
    /// A refresh is in progress (until the lease's expiry).
    Refreshing,
    /// The grant was refused as dead (`invalid_grant`) and marked ([`DeadGrant::Mark`]).
    Dead,
    /// A refresh request may have reached the server without an answer, so its refresh token
    /// may be spent ([`AmbiguousFailure::RequireLogin`]).
    PossiblySpent,
}

impl Shared {
    /// Waits until the lease at `version` is gone or replaced, or has expired.
    pub(super) fn wait_for_lease(&self, version: Version, until: SystemTime) -> Result<()> {
        let mut poll = self.config.poll;
        loop {
            std::thread::sleep(poll);
            poll = (poll * 2).min(self.config.poll * 8);
            match self.read_lease()? {
                Some((_, v)) if v == version => {
                    if self.clock.now() >= until {
                        return Ok(());
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    /// The lease as the record stored.
    pub(super) fn lease_record(lease: &Lease) -> Secret {
        Secret::from_bytes(SecretSlice::from(lease.encode()))
    }

    pub(super) fn read_lease(&self) -> Result<Option<(Lease, Version)>> {
        let Some((secret, version)) = self.ns.get_internal::<Secret>(&self.lease)? else {
            return Ok(None);
        };
        let lease = Lease::decode(secret.expose_bytes()).ok_or_else(|| {
            Error::Vault(crate::Error::Damaged(crate::Damage::Record {
                namespace: self.ns.name().to_owned(),
                key: Some(self.key.clone()),
                reason: "the token's refresh lease does not decode",
            }))
        })?;
        Ok(Some((lease, version)))
    }

    pub(super) fn put_lease(
        &self,
        lease: &Lease,
        expected: Option<Version>,
    ) -> Result<std::result::Result<Version, ()>> {
        let mut batch = self.ns.vault().batch();
        batch.put_if(&self.ns, &self.lease, &Self::lease_record(lease), expected)?;
        Ok(match batch.commit()? {
            Ok(written) => written.first().and_then(|w| w.version).ok_or(()),
            Err(_) => Err(()),
        })
    }

    pub(super) fn remove_lease(&self, version: Version) -> Result<()> {
        let mut batch = self.ns.vault().batch();
        batch.remove_if(&self.ns, &self.lease, version)?;
        // A conflict means someone else already replaced or removed it.
        let _ = batch.commit()?;
        Ok(())
    }

    pub(super) fn remove_lease_if_ours(&self) -> Result<()> {
        if let Some((lease, version)) = self.read_lease()? {
            if lease.holder == self.holder {
                self.release_lease(&lease, version)?;
            }
        }
        Ok(())
    }

    /// Gives up a lease (stored at `version`) whose refresh token was not spent by its holder.
    /// A lease that was never taken over is removed. One that was (`fence > 1`) stays, expired
    /// and without a holder, so that the next holder takes it over with the next fence: a
    /// holder that stalled earlier may still come back with an answer, and it must find the
    /// record's successor decided through the lease, never a lease counted from 1 again.
    pub(super) fn release_lease(&self, lease: &Lease, version: Version) -> Result<()> {
        if lease.fence <= 1 {
            return self.remove_lease(version);
        }
        let released = Lease {
            holder: [0; 16],
            until_ms: 0,
            state: LeaseState::Refreshing,
            ..*lease
        };
        // A conflict means someone else already replaced or removed it.
        let _ = self.put_lease(&released, Some(version))?;
        Ok(())
    }
}

impl Lease {
    pub(super) fn until(&self) -> SystemTime {
        UNIX_EPOCH
            .checked_add(Duration::from_millis(self.until_ms))
            .unwrap_or(UNIX_EPOCH + Duration::from_secs(u64::from(u32::MAX)))
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(LEASE_LEN);
        out.push(LEASE_VERSION);
        out.push(match self.state {
            LeaseState::Refreshing => 0,
            LeaseState::Dead => 1,
            LeaseState::PossiblySpent => 2,
        });
        out.extend_from_slice(&self.holder);
        out.extend_from_slice(&self.until_ms.to_le_bytes());
        out.push(u8::from(self.token_version.is_some()));
        out.extend_from_slice(&self.token_version.unwrap_or(0).to_le_bytes());
        out.extend_from_slice(&self.fence.to_le_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        match (bytes.first(), bytes.len()) {
            (Some(&1), LEASE_V1_LEN) | (Some(&LEASE_VERSION), LEASE_LEN) => {}
            _ => return None,
        }
        let mut r = Reader::new(&bytes[1..]);
        let state = match r.u8().ok()? {
            0 => LeaseState::Refreshing,
            1 => LeaseState::Dead,
            2 => LeaseState::PossiblySpent,
            _ => return None,
        };
        let holder: [u8; 16] = r.array().ok()?;
        let until_ms = r.u64().ok()?;
        let has_version = r.u8().ok()?;
        let version = r.u64().ok()?;
        let token_version = match has_version {
            0 if version == 0 => None,
            1 => Some(version),
            _ => return None,
        };
        let fence = if bytes.len() == LEASE_LEN {
            r.u64().ok()?
        } else {
            1
        };
        if fence == 0 {
            return None;
        }
        Some(Self {
            holder,
            until_ms,
            token_version,
            state,
            fence,
        })
    }
}

pub(super) fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_round_trips_and_rejects_damage() {
        for lease in [
            Lease {
                holder: [7; 16],
                until_ms: 1_700_000_000_123,
                token_version: Some(42),
                state: LeaseState::Refreshing,
                fence: 1,
            },
            Lease {
                holder: [0; 16],
                until_ms: u64::MAX,
                token_version: None,
                state: LeaseState::Dead,
                fence: 3,
            },
            Lease {
                holder: [0; 16],
                until_ms: u64::MAX,
                token_version: Some(7),
                state: LeaseState::PossiblySpent,
                fence: u64::MAX,
            },
        ] {
            let bytes = lease.encode();
            assert_eq!(bytes.len(), LEASE_LEN);
            assert!(Lease::decode(&bytes) == Some(lease));
            for cut in 0..bytes.len() {
                assert!(Lease::decode(&bytes[..cut]).is_none());
            }
            for version in [0, 1, 3] {
                let mut bad = bytes.clone();
                bad[0] = version;
                assert!(Lease::decode(&bad).is_none(), "version {version}");
            }
            let mut bad = bytes.clone();
            bad[1] = 9;
            assert!(Lease::decode(&bad).is_none());
            let mut bad = bytes.clone();
            bad[LEASE_V1_LEN..].fill(0);
            assert!(Lease::decode(&bad).is_none(), "fence 0");
            // Layout 1 (no fence) reads as fence 1; its length with version 2 does not.
            let mut v1 = bytes[..LEASE_V1_LEN].to_vec();
            assert!(Lease::decode(&v1).is_none());
            v1[0] = 1;
            assert!(Lease::decode(&v1) == Some(Lease { fence: 1, ..lease }));
        }
    }
}
