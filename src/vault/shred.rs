//! Shredding: a new entry-wrapping key, every namespace entry re-sealed under it, and the old
//! key destroyed, so that every copy of an entry that storage still keeps somewhere (sled's
//! log, a database's WAL or backups) no longer opens, and with it the data keys of removed
//! namespaces and of keys rotated away.

use super::Vault;
use crate::backend::Batch;
use crate::crypto::Key;
use crate::engine::{marker, Ewk, NsState};
use crate::entry::{entry_clear, open_entry, seal_entry};
use crate::error::{Damage, Error, Result};
use crate::format::{ANCHOR_KEY, ENTRIES_TREE, NAMESPACE_ID_LABEL, NS_ID_LEN};
use crate::maintenance::Progress;

/// Entries re-sealed per page.
const PAGE: usize = 256;

impl Vault {
    /// Draws a new entry-wrapping key, re-seals every namespace entry under it, then
    /// destroys the old one (a header write). Afterwards no copy of an older entry opens,
    /// wherever the storage engine still keeps it: the data keys of namespaces removed
    /// before the shred, and of namespace keys rotated away before it, are gone for good
    /// once the old header is (on sled: replaced and synced when this returns; on an engine
    /// that keeps old versions or backups of the header, only when those are gone too).
    ///
    /// Returns how many entries were re-sealed. O(namespaces); reads and writes continue
    /// meanwhile. If it stops midway (an error, a crash), the header keeps both keys and
    /// everything still opens; calling it again finishes the same shred.
    ///
    /// ```
    /// # use tokenvault::{KeySource, Token, Vault};
    /// # use tokenvault::secrecy::SecretBox;
    /// # let dir = tempfile::tempdir()?;
    /// # let vault = Vault::create(dir.path().join("v"), &KeySource::raw_key(SecretBox::new(Box::new([1; 32]))))?;
    /// vault.namespace("alice")?.put("rs", &Token::new("at".into()))?;
    /// vault.namespace("bob")?.put("rs", &Token::new("at".into()))?;
    /// vault.remove_namespace("bob")?;
    /// // Bob's entry may live on in sled's log; after this, it no longer opens anywhere.
    /// assert_eq!(vault.shred(|_| {})?, 1);
    /// assert!(vault.namespace("alice")?.get::<Token>("rs")?.is_some());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Damaged`] if some entries do not open: they cannot be re-sealed, so the old
    /// key is kept (and the shred stays unfinished) until they are removed; backend errors.
    pub fn shred(&self, mut progress: impl FnMut(Progress)) -> Result<u64> {
        let _maintenance = self.engine.lock_maintenance();
        // 1. A new active key beside the old one (unless an earlier shred left two).
        let active = self.engine.update_state(|s| {
            if s.ewks.len() > 1 {
                return Ok(s.header.active_ewk);
            }
            let next = s
                .ewks
                .iter()
                .map(|e| e.id)
                .max()
                .unwrap_or(0)
                .checked_add(1)
                .ok_or_else(|| Error::backend("entry-key ids exhausted"))?;
            let vault_id = s.header.vault_id;
            s.ewks.push(Ewk::new(next, Key::random()?, &vault_id)?);
            s.header.active_ewk = next;
            s.wrap_ewks()?;
            Ok(next)
        })?;
        // 2. The marker names it: from now on, a handle that still seals under the old key
        //    has its entry writes refused and reads the header again.
        let want = marker(active);
        let mut marked = false;
        for _ in 0..16 {
            let current = self.engine.call(|b| b.get(ENTRIES_TREE, ANCHOR_KEY))?;
            if current.as_deref() == Some(want.as_slice()) {
                marked = true;
                break;
            }
            let batch = Batch::new()
                .expect(ENTRIES_TREE, ANCHOR_KEY, current.as_deref())
                .write(ENTRIES_TREE, ANCHOR_KEY, Some(want.clone()));
            if self.engine.call(|b| b.apply(&batch))? {
                marked = true;
                break;
            }
            // Another handle's shred moved the marker: this one is superseded if the header
            // names a newer key now.
            self.engine.refresh_header()?;
            if self.engine.read_state()?.header.active_ewk != active {
                return Ok(0);
            }
        }
        if !marked {
            return Err(Error::backend(
                "the entry-key marker kept changing under a shred; retry it",
            ));
        }
        // 3. Every entry under another key re-sealed under it.
        let Some((resealed, failed)) = self.reseal_entries(active, &mut progress)? else {
            // Another handle started a newer shred meanwhile: it re-seals every entry, this
            // one included, and retires the keys.
            self.engine.sync_now()?;
            return Ok(0);
        };
        self.engine.sync_now()?;
        if failed > 0 {
            return Err(Error::Damaged(Damage::Header {
                reason: "some namespace entries do not open and cannot be re-sealed; the old \
                         entry key is kept until they are removed (run verify)",
            }));
        }
        // 4. The old key destroyed: every key but this shred's and the one active now (a
        //    newer shred started by another handle may be moving entries off this one).
        self.engine.update_state(|s| {
            let current = s.header.active_ewk;
            s.ewks.retain(|e| e.id == active || e.id == current);
            s.wrap_ewks()
        })?;
        Ok(resealed)
    }

    /// Re-seals every entry not under `active`; `None` if a newer shred superseded this one.
    fn reseal_entries(
        &self,
        active: u32,
        progress: &mut impl FnMut(Progress),
    ) -> Result<Option<(u64, u64)>> {
        let mut resealed = 0;
        let mut failed = 0;
        let mut done = 0;
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = self
                .engine
                .call(|b| b.scan(ENTRIES_TREE, &[], after.as_deref(), PAGE))?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            for (key, stored) in page {
                let Ok(id) = <[u8; NS_ID_LEN]>::try_from(key.as_slice()) else {
                    continue;
                };
                done += 1;
                match self.reseal_entry(&id, stored, active)? {
                    Resealed::Done => resealed += 1,
                    Resealed::Nothing => {}
                    Resealed::Failed => failed += 1,
                    Resealed::Superseded => return Ok(None),
                }
            }
            progress(Progress { done, total: None });
        }
        Ok(Some((resealed, failed)))
    }

    /// Re-seals entry `id` under entry key `active`.
    fn reseal_entry(
        &self,
        id: &[u8; NS_ID_LEN],
        mut stored: Vec<u8>,
        active: u32,
    ) -> Result<Resealed> {
        let mut reread = false;
        for _ in 0..16 {
            let Ok((ewk_id, _)) = entry_clear(&stored) else {
                return Ok(Resealed::Failed);
            };
            if ewk_id == active {
                return Ok(Resealed::Nothing);
            }
            let state = self.engine.read_state()?;
            if state.header.active_ewk != active {
                return Ok(Resealed::Superseded);
            }
            let (Some(old), Some(new)) = (state.ewk(ewk_id), state.ewk(active)) else {
                // Under a key this handle no longer (or does not yet) know: another handle's
                // shred may have re-sealed it since this page was read. Read both again once.
                drop(state);
                if reread {
                    return Ok(Resealed::Failed);
                }
                reread = true;
                self.engine.refresh_header()?;
                match self.engine.call(|b| b.get(ENTRIES_TREE, id))? {
                    Some(now) => stored = now,
                    None => return Ok(Resealed::Nothing),
                }
                continue;
            };
            let Ok(entry) = open_entry(&old.cipher, state.vault_id(), id, &stored) else {
                return Ok(Resealed::Failed);
            };
            if state
                .index
                .mac(&[NAMESPACE_ID_LABEL, entry.name.as_bytes()])
                != *id
            {
                return Ok(Resealed::Failed);
            }
            let sealed = seal_entry(&new.cipher, active, state.vault_id(), id, &entry)?;
            drop(state);
            // Like every entry write: only while the marker still names this key.
            let mut batch = Batch::new().expect(ENTRIES_TREE, id, Some(&stored)).write(
                ENTRIES_TREE,
                id,
                Some(sealed.clone()),
            );
            batch = batch.expect(ENTRIES_TREE, ANCHOR_KEY, Some(&marker(active)));
            if self.engine.call(|b| b.apply(&batch))? {
                self.engine.update_cached(NsState::new(*id, entry, sealed));
                return Ok(Resealed::Done);
            }
            // The entry changed, or a newer shred moved the marker: read both again.
            self.engine.refresh_header()?;
            match self.engine.call(|b| b.get(ENTRIES_TREE, id))? {
                Some(now) => stored = now,
                None => return Ok(Resealed::Nothing),
            }
        }
        Err(Error::backend(
            "a namespace entry kept changing under a shred; retry it",
        ))
    }
}

/// What re-sealing one entry did.
enum Resealed {
    Done,
    /// Already under the key, or removed meanwhile.
    Nothing,
    /// It does not open.
    Failed,
    /// Another handle started a newer shred.
    Superseded,
}
