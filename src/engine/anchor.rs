//! The anchor and the checkpoint: detecting storage that fell back to an older state.
//!
//! sled, finding a damaged entry in the middle of its log, silently opens at the state
//! before it, losing every later write. A checkpoint makes everything written so far
//! durable, then raises a vault-wide counter in storage (the anchor, in the manifests tree)
//! and makes that durable, and only then records the same counter (the epoch) in the header,
//! which lives outside the storage engine's log. Storage that lost the anchor's last raise
//! lost everything after it too (writes are lost only from the end), and opening finds the
//! anchor below the header's epoch. A get never reads the anchor.

use std::sync::atomic::Ordering;

use crate::backend::Batch;
use crate::bytes::Reader;
use crate::crypto::Prf;
use crate::error::{Damage, Error, Result};
use crate::format::{ANCHOR_KEY, ANCHOR_LABEL, FORMAT_VERSION, MANIFESTS_TREE};

use super::Engine;

/// How often a checkpoint retries a raise of the anchor that another handle's raced.
const RAISE_RETRIES: usize = 64;

/// The stored anchor: `u8(2) || le64(epoch) || HMAC(K_anchor, lp(label) || lp(vault_id) ||
/// le64(epoch))`.
pub(crate) fn seal_anchor(prf: &Prf, vault_id: &[u8], epoch: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(41);
    v.push(FORMAT_VERSION);
    v.extend_from_slice(&epoch.to_le_bytes());
    v.extend_from_slice(&prf.mac(&[ANCHOR_LABEL, vault_id, &epoch.to_le_bytes()]));
    v
}

/// The epoch of a stored anchor, if it authenticates.
pub(crate) fn open_anchor(prf: &Prf, vault_id: &[u8], stored: &[u8]) -> Option<u64> {
    let mut r = Reader::new(stored);
    if r.u8().ok()? != FORMAT_VERSION {
        return None;
    }
    let epoch = r.u64().ok()?;
    let mac = r.array::<32>().ok()?;
    (r.remaining() == 0 && prf.verify(&[ANCHOR_LABEL, vault_id, &epoch.to_le_bytes()], &mac))
        .then_some(epoch)
}

impl Engine {
    /// The anchor's epoch in storage (`None`: missing or not authentic) and its bytes.
    fn read_anchor(&self) -> Result<(Option<u64>, Option<Vec<u8>>)> {
        let stored = self.call(|b| b.get(MANIFESTS_TREE, ANCHOR_KEY))?;
        let state = self.read_state()?;
        let epoch = stored
            .as_deref()
            .and_then(|s| open_anchor(&state.anchor, state.vault_id(), s));
        Ok((epoch, stored))
    }

    /// At open: refuses storage whose anchor is below the header's epoch.
    pub(crate) fn check_anchor(&self) -> Result<()> {
        let expected = self.read_state()?.header.epoch;
        let (found, stored) = self.read_anchor()?;
        let fine = match (found, stored) {
            (Some(found), _) => found >= expected,
            // Never checkpointed: a creation that stopped before writing the anchor.
            (None, None) => expected == 0,
            // An anchor that does not authenticate: damaged, or another vault's storage.
            (None, Some(_)) => false,
        };
        if fine || self.options.accept_rollback {
            return Ok(());
        }
        Err(Error::Damaged(Damage::Rollback { found, expected }))
    }

    /// Counts a write, for [`Engine::checkpoint`].
    pub(crate) fn note_write(&self) {
        self.written.fetch_add(1, Ordering::SeqCst);
    }

    /// Flushes, raises the anchor, flushes again, then records the new epoch in the header.
    /// Does nothing when this handle wrote nothing since its last checkpoint.
    pub(crate) fn checkpoint(&self) -> Result<()> {
        let written = self.written.load(Ordering::SeqCst);
        if written == self.checkpointed.load(Ordering::SeqCst) {
            return Ok(());
        }
        self.sync_now()?;
        let mut raised = None;
        for _ in 0..RAISE_RETRIES {
            let (found, stored) = self.read_anchor()?;
            let (prf, vault_id, header_epoch) = {
                let s = self.read_state()?;
                (s.anchor.clone(), s.header.vault_id, s.header.epoch)
            };
            if found.is_none() && stored.is_some() && !self.options.accept_rollback {
                return Err(Error::Damaged(Damage::Rollback {
                    found,
                    expected: header_epoch,
                }));
            }
            let next = found
                .unwrap_or(0)
                .max(header_epoch)
                .checked_add(1)
                .ok_or_else(|| Error::backend("checkpoint epoch exhausted"))?;
            let batch = Batch::new()
                .expect(MANIFESTS_TREE, ANCHOR_KEY, stored.as_deref())
                .write(
                    MANIFESTS_TREE,
                    ANCHOR_KEY,
                    Some(seal_anchor(&prf, &vault_id, next)),
                );
            if self.call(|b| b.apply(&batch))? {
                raised = Some(next);
                break;
            }
        }
        let epoch = raised.ok_or_else(|| {
            Error::backend("the anchor kept changing under a checkpoint; retry it")
        })?;
        self.sync_now()?;
        self.update_state(|s| {
            s.header.epoch = s.header.epoch.max(epoch);
            Ok(())
        })?;
        self.checkpointed.fetch_max(written, Ordering::SeqCst);
        Ok(())
    }
}
