//! Edits of the rest of storage: the anchor, the entry-key marker, records and manifests,
//! and single stored bytes.

// Test harness code: failing loudly on anything unexpected is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;

impl Editor<'_> {
    // -----------------------------------------------------------------------------------
    // The anchor and the entry-key marker

    /// The anchor dropped, replaced by the first checkpoint's, re-sealed genuinely at a
    /// chosen epoch, replaced by bytes, made malformed around a genuine MAC, or sealed
    /// under a wrong key or another vault's id.
    pub(super) fn edit_anchor(&mut self, input: &mut Input<'_>) {
        let vault_id = self.h.vault_id;
        let index_key = self.index_key;
        let epoch = self.fx.keys.fields.epoch;
        let value = match input.byte() % 7 {
            0 => None,
            1 => Some(self.fx.old_anchor.clone()),
            2 => {
                let e = match input.byte() % 6 {
                    0 => epoch,
                    1 => epoch + 1,
                    2 => epoch - 1,
                    3 => 0,
                    4 => u64::MAX,
                    _ => input.u64(),
                };
                Some(seal_anchor(&index_key, &vault_id, e))
            }
            3 => Some(input.bytes(41)),
            4 => {
                let mut a = seal_anchor(&index_key, &vault_id, epoch + 1);
                if input.byte() & 1 == 0 {
                    a[0] = 3;
                } else {
                    a.push(0);
                }
                Some(a)
            }
            5 => Some(seal_anchor(&HARNESS_EWK, &vault_id, epoch + 1)),
            _ => Some(seal_anchor(&index_key, &input.bytes(16), epoch + 1)),
        };
        let tree = self.tree(MANIFESTS);
        match value {
            Some(v) => tree.insert(ANCHOR_KEY.to_vec(), v),
            None => tree.remove(ANCHOR_KEY),
        };
    }

    /// The entry-key marker dropped, naming another key, bytes, or of another version.
    pub(super) fn edit_marker(&mut self, input: &mut Input<'_>) {
        let active = self.h.active_ewk;
        let value = match input.byte() % 4 {
            0 => None,
            1 => Some(marker(match input.byte() % 4 {
                0 => active,
                1 => 1,
                2 => HARNESS_EWK_ID,
                _ => input.small_u32(),
            })),
            2 => {
                let n = usize::from(input.byte() % 8);
                Some(input.bytes(n))
            }
            _ => {
                let mut m = marker(active);
                m[0] = 3;
                Some(m)
            }
        };
        let tree = self.tree(ENTRIES);
        match value {
            Some(v) => tree.insert(ANCHOR_KEY.to_vec(), v),
            None => tree.remove(ANCHOR_KEY),
        };
    }

    // -----------------------------------------------------------------------------------
    // Records and manifests

    /// A record or a manifest dropped; a namespace's records and manifest moved under
    /// another incarnation; `gamma`'s first incarnation's records and manifest restored
    /// (and its entry, with flag 1); a record copied over another; the mark of a pending
    /// rotation; a record copied under the same record id into another namespace.
    pub(super) fn edit_records(&mut self, input: &mut Input<'_>) {
        match input.byte() % 7 {
            0 => {
                let keys = self.keys_of(RECORDS, Some(80));
                if let Some(k) = input.pick(&keys).cloned() {
                    self.tree(RECORDS).remove(&k);
                }
            }
            1 => {
                let keys = self.keys_of(MANIFESTS, Some(48));
                if let Some(k) = input.pick(&keys).cloned() {
                    self.tree(MANIFESTS).remove(&k);
                }
            }
            2 => {
                let ns = self.pick_ns(input);
                let to = self.incarnation_choice(input, ns.incarnation);
                let mut new_prefix = ns.id.to_vec();
                new_prefix.extend_from_slice(&to);
                for tree in [RECORDS, MANIFESTS] {
                    let t = self.tree(tree);
                    let moved: Vec<(Vec<u8>, Vec<u8>)> = t
                        .iter()
                        .filter(|(k, _)| k.len() >= 48 && k.starts_with(&ns.prefix()))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    for (k, v) in moved {
                        t.remove(&k);
                        let mut key = new_prefix.clone();
                        key.extend_from_slice(&k[48..]);
                        t.insert(key, v);
                    }
                }
            }
            3 => {
                let with_entry = input.byte() & 1 != 0;
                for (tree, k, v) in self.fx.old_gamma_storage.clone() {
                    if tree != ENTRIES || with_entry {
                        self.tree(&tree).insert(k, v);
                    }
                }
            }
            4 => {
                let keys = self.keys_of(RECORDS, Some(80));
                if let (Some(from), Some(to)) =
                    (input.pick(&keys).cloned(), input.pick(&keys).cloned())
                {
                    let t = self.tree(RECORDS);
                    if let Some(v) = t.get(&from).cloned() {
                        t.insert(to, v);
                    }
                }
            }
            5 => {
                let id = if input.byte() & 1 == 0 {
                    self.pick_ns(input).id.to_vec()
                } else {
                    input.key().to_vec()
                };
                let mut key = vec![PENDING_ROTATION];
                key.extend_from_slice(&id);
                self.tree(MANIFESTS).insert(key, Vec::new());
            }
            _ => {
                let from = self.pick_ns(input);
                let to = self.pick_ns(input);
                let keys = self.keys_of(RECORDS, Some(80));
                let mine: Vec<Vec<u8>> = keys
                    .into_iter()
                    .filter(|k| k.starts_with(&from.prefix()))
                    .collect();
                if let Some(k) = input.pick(&mine).cloned() {
                    let mut key = to.prefix();
                    key.extend_from_slice(&k[48..]);
                    let t = self.tree(RECORDS);
                    if let Some(v) = t.get(&k).cloned() {
                        t.insert(key, v);
                    }
                }
            }
        }
    }

    /// One stored byte of tree `e`, `m` or `r` flipped.
    pub(super) fn flip_stored_byte(&mut self, input: &mut Input<'_>) {
        let tree = [ENTRIES, MANIFESTS, RECORDS][usize::from(input.byte() % 3)];
        let keys = self.keys_of(tree, None);
        let Some(k) = input.pick(&keys).cloned() else {
            return;
        };
        let at = usize::from(input.u16());
        let x = input.byte().max(1);
        if let Some(v) = self.tree(tree).get_mut(&k) {
            if !v.is_empty() {
                let at = at % v.len();
                v[at] ^= x;
            }
        }
    }
}
