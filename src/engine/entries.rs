//! Namespace entries as this handle sees them: loaded from the entries tree on first use,
//! kept in a bounded cache (a vault with a million namespaces holds only the recently used
//! ones in memory), re-read when storage shows that another handle changed them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::backend::Condition;
use crate::entry::{entry_clear, open_entry, seal_entry, Entry};
use crate::error::{Damage, Error, Result};
use crate::format::{ANCHOR_KEY, ENTRIES_TREE, FORMAT_VERSION, NAMESPACE_ID_LABEL, NS_ID_LEN};

use super::{Engine, NsState};

/// A cached entry and the clock reading of its last use.
type Cached = (Arc<NsState>, AtomicU64);

/// The entries this handle holds in memory, each with when it was last used.
#[derive(Default)]
pub(crate) struct EntryCache {
    map: RwLock<HashMap<[u8; NS_ID_LEN], Cached>>,
    clock: AtomicU64,
}

impl EntryCache {
    fn get(&self, id: &[u8; NS_ID_LEN]) -> Option<Arc<NsState>> {
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        let (state, used) = map.get(id)?;
        used.store(
            self.clock.fetch_add(1, Ordering::Relaxed),
            Ordering::Relaxed,
        );
        Some(Arc::clone(state))
    }

    /// Holds `state`, evicting the least recently used eighth of the cache when it is full.
    fn insert(&self, state: Arc<NsState>, capacity: usize) {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        if map.len() >= capacity.max(1) && !map.contains_key(&state.id) {
            let mut ages: Vec<(u64, [u8; NS_ID_LEN])> = map
                .iter()
                .map(|(id, (_, used))| (used.load(Ordering::Relaxed), *id))
                .collect();
            ages.sort_unstable();
            for (_, id) in ages.iter().take((capacity / 8).max(1)) {
                map.remove(id);
            }
        }
        let now = self.clock.fetch_add(1, Ordering::Relaxed);
        map.insert(state.id, (state, AtomicU64::new(now)));
    }

    fn remove(&self, id: &[u8; NS_ID_LEN]) {
        self.map
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }

    /// How many entries are held (for tests and benchmarks of the bound).
    pub(crate) fn len(&self) -> usize {
        self.map.read().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl Engine {
    /// Namespace `id` (named `name`): from the cache, else from storage; `None` if it does
    /// not exist.
    ///
    /// # Errors
    /// [`Error::Damaged`] naming the namespace if its entry does not open.
    pub(crate) fn namespace_state(
        &self,
        id: &[u8; NS_ID_LEN],
        name: &str,
    ) -> Result<Option<Arc<NsState>>> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        match self.entries.get(id) {
            Some(state) => Ok(Some(state)),
            None => self.load_entry(id, name),
        }
    }

    /// Reads namespace `id`'s entry from storage again (another handle may have changed or
    /// removed it) and caches what it finds.
    pub(crate) fn load_entry(
        &self,
        id: &[u8; NS_ID_LEN],
        name: &str,
    ) -> Result<Option<Arc<NsState>>> {
        let Some(stored) = self.call(|b| b.get(ENTRIES_TREE, id))? else {
            self.entries.remove(id);
            return Ok(None);
        };
        let cached = self.entries.get(id);
        if let Some(state) = cached.as_ref().filter(|s| s.stored == stored) {
            return Ok(Some(Arc::clone(state)));
        }
        let damaged = |reason| {
            Error::Damaged(Damage::Namespace {
                namespace: name.to_owned(),
                reason,
            })
        };
        let (ewk_id, _) = entry_clear(&stored).map_err(damaged)?;
        if self.read_state()?.ewk(ewk_id).is_none() {
            // Sealed under an entry key this handle has not seen: another handle shredded.
            self.refresh_header()?;
        }
        let entry = {
            let state = self.read_state()?;
            let ewk = state
                .ewk(ewk_id)
                .ok_or_else(|| damaged("the entry is sealed under an unknown entry key"))?;
            let entry = open_entry(&ewk.cipher, state.vault_id(), id, &stored).map_err(damaged)?;
            if entry.name != name
                || state
                    .index
                    .mac(&[NAMESPACE_ID_LABEL, entry.name.as_bytes()])
                    != *id
            {
                return Err(damaged("the entry is filed under another name's id"));
            }
            entry
        };
        Ok(Some(self.install(NsState::new(*id, entry, stored))))
    }

    /// Caches `state` as the namespace's current entry and returns it. What this handle
    /// learnt about the namespace's generations survives re-sealing its entry (the same
    /// incarnation).
    pub(crate) fn install(&self, mut state: NsState) -> Arc<NsState> {
        if let Some(old) = self.entries.get(&state.id) {
            if old.incarnation == state.incarnation {
                state.gens = Arc::clone(&old.gens);
            }
        }
        let state = Arc::new(state);
        self.entries
            .insert(Arc::clone(&state), self.options.entry_cache);
        state
    }

    /// Caches the state of a namespace this handle just created (a new incarnation: nothing
    /// to carry over from an older state).
    pub(crate) fn install_new(&self, state: Arc<NsState>) {
        self.entries.insert(state, self.options.entry_cache);
    }

    /// Forgets namespace `id` (removed).
    pub(crate) fn forget(&self, id: &[u8; NS_ID_LEN]) {
        self.entries.remove(id);
    }

    /// Seals `entry` as namespace `id`'s stored entry under the entry key the entry-key
    /// marker names, and returns the condition the write must carry: the marker unchanged.
    /// A shred moves the marker to its new key before it re-seals anything, so an entry
    /// written under the old key after that is refused (and sealed again under the new
    /// one), and none is left behind under a key the shred is about to destroy.
    pub(crate) fn seal_entry(
        &self,
        id: &[u8; NS_ID_LEN],
        entry: &Entry,
    ) -> Result<(Vec<u8>, Condition)> {
        // A shred elsewhere may have drawn a key this handle has not seen yet: take in the
        // header, and read the marker again (another shred may have finished in between,
        // moving the marker on and dropping the key it named from the header).
        let mut tries = 0;
        let mut unchanged: Option<Vec<u8>> = None;
        let (stored, state, ewk_id) = loop {
            let stored = self
                .call(|b| b.get(ENTRIES_TREE, ANCHOR_KEY))?
                .ok_or_else(|| Error::header("the entry-key marker is missing"))?;
            let ewk_id = match stored.as_slice() {
                [FORMAT_VERSION, a, b, c, d] => u32::from_le_bytes([*a, *b, *c, *d]),
                _ => return Err(Error::header("the entry-key marker is malformed")),
            };
            let state = self.read_state()?;
            if state.ewk(ewk_id).is_some() {
                break (stored, state, ewk_id);
            }
            drop(state);
            // The marker naming a key the header lacks, twice over with the header unchanged
            // in between, is damage.
            if tries == MARKER_RETRIES || unchanged.as_ref() == Some(&stored) {
                return Err(Error::header("the entry-key marker names an unknown key"));
            }
            tries += 1;
            unchanged = (!self.refresh_header()?).then_some(stored);
        };
        let ewk = state
            .ewk(ewk_id)
            .ok_or_else(|| Error::header("the entry-key marker names an unknown key"))?;
        let sealed = seal_entry(&ewk.cipher, ewk.id, state.vault_id(), id, entry)?;
        Ok((
            sealed,
            Condition {
                tree: ENTRIES_TREE.to_vec(),
                key: ANCHOR_KEY.to_vec(),
                expected: Some(stored),
            },
        ))
    }

    /// How many entries this handle holds in memory.
    pub(crate) fn cached_entries(&self) -> usize {
        self.entries.len()
    }
}

/// How often [`Engine::seal_entry`] takes in a changed header and reads the entry-key marker
/// again before it gives up (each time, another handle finished a shred in between).
const MARKER_RETRIES: usize = 16;

/// The entry-key marker's value: `u8(2) || le32(active_ewk)`.
pub(crate) fn marker(active_ewk: u32) -> Vec<u8> {
    let mut v = vec![FORMAT_VERSION];
    v.extend_from_slice(&active_ewk.to_le_bytes());
    v
}

impl Engine {
    /// Replaces namespace `current.id`'s entry with `entry`, if storage still holds exactly
    /// `current`'s (and the entry key is still the one this handle seals under). Returns the
    /// new state, or `None` if the entry changed meanwhile (the caller reads it again).
    pub(crate) fn replace_entry(
        &self,
        current: &NsState,
        entry: Entry,
        also: Vec<crate::backend::Write>,
    ) -> Result<Option<Arc<NsState>>> {
        let (stored, marked) = self.seal_entry(&current.id, &entry)?;
        let batch = crate::backend::Batch {
            conditions: vec![
                marked,
                Condition {
                    tree: ENTRIES_TREE.to_vec(),
                    key: current.id.to_vec(),
                    expected: Some(current.stored.clone()),
                },
            ],
            writes: std::iter::once(crate::backend::Write {
                tree: ENTRIES_TREE.to_vec(),
                key: current.id.to_vec(),
                value: Some(stored.clone()),
            })
            .chain(also)
            .collect(),
        };
        if !self.call(|b| b.apply(&batch))? {
            self.refresh_header()?;
            return Ok(None);
        }
        self.note_write();
        Ok(Some(self.install(NsState::new(current.id, entry, stored))))
    }

    /// Takes in a re-sealed entry, if this handle holds the namespace in memory.
    pub(crate) fn update_cached(&self, state: NsState) {
        if self.entries.get(&state.id).is_some() {
            self.install(state);
        }
    }

    /// Opens a stored entry of namespace `id` without knowing its name (for verify and
    /// listings); checks that the name inside belongs to `id`.
    pub(crate) fn open_stored_entry(
        &self,
        id: &[u8; NS_ID_LEN],
        stored: &[u8],
    ) -> Result<std::result::Result<Entry, &'static str>> {
        let state = self.read_state()?;
        let opened = entry_clear(stored).and_then(|(ewk_id, _)| {
            let ewk = state
                .ewk(ewk_id)
                .ok_or("the entry is sealed under an unknown entry key")?;
            let entry = open_entry(&ewk.cipher, state.vault_id(), id, stored)?;
            if state
                .index
                .mac(&[NAMESPACE_ID_LABEL, entry.name.as_bytes()])
                != *id
            {
                return Err("the entry is filed under another name's id");
            }
            Ok(entry)
        });
        Ok(opened)
    }
}
