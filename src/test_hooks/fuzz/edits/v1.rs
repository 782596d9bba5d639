//! Format 1: the whole vault converted to it (opening upgrades it), and edits of its
//! namespace table.

// Test harness code: failing loudly on anything unexpected is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::entries::{plain_name, structured_entry};
use super::*;

impl Editor<'_> {
    // -----------------------------------------------------------------------------------
    // Format 1

    /// The whole vault as format 1: the header's namespace table holds the live fixture
    /// namespaces' entries (sealed under `K_wrap`, with a floor), and each namespace's
    /// records and manifest move to a tree of its own, re-sealed with the format-1 AAD.
    /// Opening it upgrades it. Flags: 1 keep the format-2 trees (else dropped), bits 1-2 the
    /// floor (the manifest's generation, one above it, 0, the largest).
    pub(super) fn convert_to_v1(&mut self, input: &mut Input<'_>) {
        let fx = self.fx;
        let flags = input.byte();
        let vault_id = self.h.vault_id;
        let wrap = self.k_wrap();
        self.h.version = V1;
        self.h.namespaces.clear();
        for ns in &fx.namespaces {
            let prefix = ns.prefix();
            let mut tree = BTreeMap::new();
            let mut generation = 0;
            let convert = |t: &[u8], k: &[u8], v: &[u8]| -> Vec<u8> {
                let record_id = if t == MANIFESTS {
                    MANIFEST_ID
                } else {
                    &k[48..]
                };
                let place = RecordPlace {
                    vault_id: &vault_id,
                    name: ns.name.as_bytes(),
                    incarnation: None,
                    record_id,
                };
                match (open_known_record(ns, &vault_id, t, k, v), record_prefix(v)) {
                    (Some(plain), Some((kind, key_id, gen))) => match ns.plain.key(key_id) {
                        Some(key) => seal_record(key, &place, kind, key_id, gen, &plain),
                        None => v.to_vec(),
                    },
                    _ => v.to_vec(),
                }
            };
            if let Some(m) = self.storage.get(MANIFESTS).and_then(|t| t.get(&prefix)) {
                generation = record_prefix(m).map_or(0, |p| p.2);
                tree.insert(MANIFEST_ID.to_vec(), convert(MANIFESTS, &prefix, m));
            }
            for (k, v) in self.storage.get(RECORDS).into_iter().flatten() {
                if k.len() == 80 && k.starts_with(&prefix) {
                    tree.insert(k[48..].to_vec(), convert(RECORDS, k, v));
                }
            }
            let floor = match (flags >> 1) & 3 {
                0 => generation,
                1 => generation + 1,
                2 => 0,
                _ => u64::MAX,
            };
            let plain = EntryPlain {
                floor: Some(floor),
                ..ns.plain.clone()
            };
            let blob = seal(&wrap, &ns_aad_v1(&vault_id, &ns.id), &plain.encode());
            self.h.namespaces.push((ns.id, blob));
            self.storage.insert(ns.id.to_vec(), tree);
            self.converted.push(ns.clone());
        }
        if flags & 1 == 0 {
            for tree in [ENTRIES, RECORDS, MANIFESTS] {
                self.storage.remove(tree);
            }
        }
    }

    /// An edit of a format-1 namespace table: an entry removed, duplicated, filed under
    /// other bytes, two swapped, or one built field by field and sealed genuinely.
    pub(super) fn edit_v1_table(&mut self, input: &mut Input<'_>) {
        let sub = input.byte() % 5;
        let n = self.h.namespaces.len();
        match sub {
            0 if n > 0 => {
                self.h.namespaces.remove(usize::from(input.byte()) % n);
            }
            1 if n > 0 => {
                let e = self.h.namespaces[usize::from(input.byte()) % n].clone();
                self.h.namespaces.push(e);
            }
            2 if n > 0 => {
                let i = usize::from(input.byte()) % n;
                self.h.namespaces[i].0 = input.key();
            }
            3 if n > 0 => {
                let i = usize::from(input.byte()) % n;
                let j = usize::from(input.byte()) % n;
                self.h.namespaces.swap(i, j);
            }
            _ => {
                let plain = structured_entry(self.fx, input, true);
                let id: [u8; 32] = self
                    .file_id(input, &plain_name(&plain))
                    .try_into()
                    .unwrap_or([0; 32]);
                let blob = seal(&self.k_wrap(), &ns_aad_v1(&self.h.vault_id, &id), &plain);
                let at = usize::from(input.byte());
                if at < self.h.namespaces.len() {
                    self.h.namespaces[at] = (id, blob);
                } else {
                    self.h.namespaces.push((id, blob));
                }
            }
        }
    }
}
