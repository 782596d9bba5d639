//! Edits of the header's fields: keyslots, entry-wrapping keys, the wrapped index key,
//! and a new vault id with what binds it re-sealed.

// Test harness code: failing loudly on anything unexpected is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;

impl Editor<'_> {
    // -----------------------------------------------------------------------------------
    // Keyslots

    /// A new slot: id, kind, parameters of some shape, and a wrapped VMK that is either
    /// genuine (sealed under a fixture key's KEK with this slot's AAD) or bytes.
    pub(super) fn new_slot(&mut self, input: &mut Input<'_>) {
        let id = input.small_u32();
        let kind = match input.byte() % 4 {
            0 => 1,
            1 | 2 => 2,
            _ => input.byte(),
        };
        let shape = input.byte();
        let params = match shape % 4 {
            0 => {
                let n = usize::from(input.byte() % 80);
                let mut p = vec![u8::try_from(n).unwrap_or(0)];
                p.extend(input.bytes(n));
                p.resize(n + 1, 0x5a);
                p
            }
            1 => {
                let mut p = 0x13u32.to_le_bytes().to_vec();
                for _ in 0..3 {
                    p.extend_from_slice(&input.u32().to_le_bytes());
                }
                let n = usize::from(input.byte() % 80);
                p.push(u8::try_from(n).unwrap_or(0));
                p.resize(p.len() + n, 0x33);
                p
            }
            2 => {
                let mut p = vec![32u8];
                p.extend_from_slice(&[0x11; 32]);
                p
            }
            _ => {
                let n = usize::from(input.u16() % 1100);
                input.bytes(n)
            }
        };
        let wrapped = if shape & 0x80 != 0 {
            let raw = if shape & 0x40 != 0 {
                FIXTURE_KEY_2
            } else {
                FIXTURE_KEY
            };
            let kek = raw_kek(&raw, params.get(1..).unwrap_or(&[]));
            seal(
                &kek,
                &slot_aad(&self.h.vault_id, id, kind, &params),
                &self.fx.keys.vmk,
            )
        } else {
            input.bytes(72)
        };
        let at = usize::from(input.byte()) % (self.h.slots.len() + 1);
        self.h.slots.insert(
            at,
            SlotFields {
                id,
                kind,
                params,
                wrapped: fit(wrapped, 72),
            },
        );
    }

    pub(super) fn edit_slot(&mut self, input: &mut Input<'_>) {
        if self.h.slots.is_empty() {
            return;
        }
        let i = usize::from(input.byte()) % self.h.slots.len();
        let s = &mut self.h.slots[i];
        match input.byte() % 4 {
            0 => s.id = input.small_u32(),
            1 => s.kind = input.byte(),
            2 => {
                if !s.params.is_empty() {
                    let at = usize::from(input.byte()) % s.params.len();
                    s.params[at] ^= input.byte();
                }
            }
            _ => {
                let at = usize::from(input.byte()) % 72;
                if let Some(b) = s.wrapped.get_mut(at) {
                    *b ^= input.byte();
                }
            }
        }
    }

    // -----------------------------------------------------------------------------------
    // Entry-wrapping keys and the index key

    /// An entry-wrapping key and its natural id: the header's, the retired one, the
    /// harness's, or bytes.
    pub(super) fn ewk_choice(&self, input: &mut Input<'_>) -> (u32, [u8; 32]) {
        let known = self.fx.known_ewks();
        match input.byte() % 4 {
            0 => known[0],
            1 => self.fx.retired_ewk,
            2 => (HARNESS_EWK_ID, HARNESS_EWK),
            _ => (input.small_u32(), input.key()),
        }
    }

    /// The id an entry names in the clear: the key's own most of the time.
    pub(super) fn ewk_id_choice(&self, input: &mut Input<'_>, natural: u32) -> u32 {
        match input.byte() % 4 {
            0 | 1 => natural,
            2 => self.h.active_ewk,
            _ => input.small_u32(),
        }
    }

    /// A wrapped entry-wrapping key added to the header: a known key or bytes, under its
    /// natural id or another, wrapped genuinely (or under another id's AAD, or bytes), in
    /// ascending order or anywhere; sometimes made the active one.
    pub(super) fn add_ewk(&mut self, input: &mut Input<'_>) {
        let (natural, key) = self.ewk_choice(input);
        let max = self.h.ewks.iter().map(|(id, _)| *id).max().unwrap_or(0);
        let id = match input.byte() % 4 {
            0 => natural,
            1 => input.small_u32(),
            2 => max.wrapping_add(1),
            _ => {
                let ids: Vec<u32> = self.h.ewks.iter().map(|(id, _)| *id).collect();
                input.pick(&ids).copied().unwrap_or(natural)
            }
        };
        let wrap = self.k_wrap();
        let wrapped = match input.byte() % 3 {
            0 => seal(&wrap, &ewk_aad(&self.h.vault_id, id), &key),
            1 => seal(&wrap, &ewk_aad(&self.h.vault_id, id ^ 1), &key),
            _ => input.bytes(72),
        };
        let place = input.byte();
        let at = if place & 0x80 != 0 {
            usize::from(place & 0x7f) % (self.h.ewks.len() + 1)
        } else {
            self.h.ewks.iter().take_while(|(i, _)| *i < id).count()
        };
        self.h.ewks.insert(at, (id, fit(wrapped, 72)));
        if place & 0x40 != 0 {
            self.h.active_ewk = id;
        }
    }

    pub(super) fn edit_ewk(&mut self, input: &mut Input<'_>) {
        let sub = input.byte() % 4;
        if self.h.ewks.is_empty() {
            return;
        }
        let n = self.h.ewks.len();
        let i = usize::from(input.byte()) % n;
        match sub {
            0 => {
                self.h.ewks.remove(i);
            }
            1 => {
                let j = usize::from(input.byte()) % n;
                self.h.ewks.swap(i, j);
            }
            2 => self.h.ewks[i].0 = input.small_u32(),
            _ => {
                let at = usize::from(input.byte()) % 72;
                let x = input.byte();
                if let Some(b) = self.h.ewks[i].1.get_mut(at) {
                    *b ^= x;
                }
            }
        }
    }

    /// The wrapped index key: the real one re-wrapped, another key (and then perhaps the
    /// anchor re-sealed under it, so that the open gets past the anchor), bytes, or the
    /// real one under another vault's AAD.
    pub(super) fn edit_index_key(&mut self, input: &mut Input<'_>) {
        let wrap = self.k_wrap();
        let aad = index_key_aad(&self.h.vault_id);
        let wrapped = match input.byte() % 4 {
            0 => {
                self.index_key = self.fx.keys.index_key;
                seal(&wrap, &aad, &self.fx.keys.index_key)
            }
            1 => {
                let key = input.key();
                self.index_key = key;
                if input.byte() & 1 != 0 {
                    let anchor = seal_anchor(&key, &self.h.vault_id, self.h.epoch);
                    self.tree(MANIFESTS).insert(ANCHOR_KEY.to_vec(), anchor);
                }
                seal(&wrap, &aad, &key)
            }
            2 => input.bytes(72),
            _ => {
                let other = input.bytes(16);
                seal(&wrap, &index_key_aad(&other), &self.fx.keys.index_key)
            }
        };
        self.h.wrapped_index_key = fit(wrapped, 72);
        self.relabel();
    }

    /// A new vault id, with the header's keys that bind it re-sealed (the fixture's raw
    /// slots, the index key, the entry-wrapping keys, format-1 entries); flags: 1 the anchor
    /// too, 2 the namespace entries that open with a known entry-wrapping key, 4 the records
    /// and manifests of the fixture's namespaces. With all three the vault is whole again.
    pub(super) fn rebind_vault_id(&mut self, input: &mut Input<'_>) {
        let fx = self.fx;
        let old_id = self.h.vault_id;
        let new_id: [u8; 16] = input.incarnation();
        let flags = input.byte();
        let old_wrap = k_wrap(&fx.keys.vmk, &old_id);
        let new_wrap = k_wrap(&fx.keys.vmk, &new_id);
        for s in &mut self.h.slots {
            for raw in [FIXTURE_KEY, FIXTURE_KEY_2] {
                let kek = raw_kek(&raw, s.params.get(1..).unwrap_or(&[]));
                if open(
                    &kek,
                    &slot_aad(&old_id, s.id, s.kind, &s.params),
                    &s.wrapped,
                )
                .is_some()
                {
                    s.wrapped = seal(
                        &kek,
                        &slot_aad(&new_id, s.id, s.kind, &s.params),
                        &fx.keys.vmk,
                    );
                }
            }
        }
        if let Some(k) = open(
            &old_wrap,
            &index_key_aad(&old_id),
            &self.h.wrapped_index_key,
        ) {
            self.h.wrapped_index_key = seal(&new_wrap, &index_key_aad(&new_id), &k);
        }
        for (id, wrapped) in &mut self.h.ewks {
            if let Some(k) = open(&old_wrap, &ewk_aad(&old_id, *id), wrapped) {
                *wrapped = seal(&new_wrap, &ewk_aad(&new_id, *id), &k);
            }
        }
        for (id, blob) in &mut self.h.namespaces {
            if let Some(plain) = open(&old_wrap, &ns_aad_v1(&old_id, id), blob) {
                *blob = seal(&new_wrap, &ns_aad_v1(&new_id, id), &plain);
            }
        }
        self.h.vault_id = new_id;
        let index_key = self.index_key;
        if flags & 1 != 0 {
            let anchor = self.tree(MANIFESTS).get(ANCHOR_KEY).cloned();
            if let Some(epoch) = anchor.and_then(|a| open_anchor(&index_key, &old_id, &a)) {
                let anchor = seal_anchor(&index_key, &new_id, epoch);
                self.tree(MANIFESTS).insert(ANCHOR_KEY.to_vec(), anchor);
            }
        }
        if flags & 2 != 0 {
            let known = fx.known_ewks();
            for (id, stored) in self.tree(ENTRIES).iter_mut() {
                let Some((_, ewk_id, inc)) = entry_clear(stored) else {
                    continue;
                };
                let aad = entry_aad(&old_id, id, ewk_id, &inc);
                for (_, key) in &known {
                    if let Some(plain) = open(&k_entry(key, &old_id), &aad, &stored[21..]) {
                        *stored = seal_entry(key, &new_id, id, ewk_id, &inc, &plain);
                        break;
                    }
                }
            }
        }
        if flags & 4 != 0 {
            for tree in [RECORDS, MANIFESTS] {
                for (k, stored) in self.tree(tree).iter_mut() {
                    for ns in fx.all_namespaces() {
                        if let Some(v) = reseal_record(ns, &old_id, &new_id, tree, k, stored) {
                            *stored = v;
                            break;
                        }
                    }
                }
            }
        }
    }
}

/// A record or manifest of namespace incarnation `ns`, sealed under vault id `old`,
/// re-sealed under vault id `new` (same prefix fields); `None` if it does not open.
fn reseal_record(
    ns: &KnownNs,
    old: &[u8],
    new: &[u8],
    tree: &[u8],
    key: &[u8],
    stored: &[u8],
) -> Option<Vec<u8>> {
    let plain = open_known_record(ns, old, tree, key, stored)?;
    let (kind, key_id, generation) = record_prefix(stored)?;
    let record_id = if tree == MANIFESTS {
        MANIFEST_ID
    } else {
        &key[48..]
    };
    let place = RecordPlace {
        vault_id: new,
        name: ns.name.as_bytes(),
        incarnation: Some(&ns.incarnation),
        record_id,
    };
    Some(seal_record(
        ns.plain.key(key_id)?,
        &place,
        kind,
        key_id,
        generation,
        &plain,
    ))
}
