//! The `open_vault` target's edit programs: how the input bytes edit the fixture's header
//! (its fields, re-sealed with the fixture's keys where the program says so, or its bytes)
//! and its storage (namespace entries re-sealed or forged, moved or dropped, the anchor, the
//! entry-key marker, records and manifests), before the vault is opened.
//!
//! A program is a flags byte, then up to 32 edits, each an operation byte (modulo 25) and
//! its operands; reads past the end of the input give zeros. Flags: 1 recompute `body_len`,
//! 2 recompute the checksum, 4 recompute the MAC (with the fixture's master key), 8 open
//! with [`FIXTURE_KEY_2`] instead of [`FIXTURE_KEY`]. Operations:
//!
//! | op | edit |
//! |---|---|
//! | 0, 1 | `seqid`; `next_slot_id` |
//! | 2 | a new keyslot, its wrapped master key genuine or bytes |
//! | 3, 4, 5 | a keyslot removed; two swapped; a field of one changed |
//! | 6 | `epoch`: the fixture's plus or minus 1, 0, the largest, any |
//! | 7 | `active_ewk`: a listed id, the retired key's, any |
//! | 8 | an entry-wrapping key added: known or bytes, wrapped genuinely or not, in order or not, made active or not |
//! | 9 | an entry-wrapping key removed, two swapped, one renumbered or flipped |
//! | 10 | the wrapped index key: re-wrapped, another key (and the anchor under it), bytes, another vault's AAD |
//! | 11 | a new vault id with what binds it re-sealed (flags: the anchor, the entries, the records) |
//! | 12, 13 | a byte of the encoded header XORed; its length changed |
//! | 14 | the format version |
//! | 15, 16 | the vault converted to format 1 (opening upgrades it); its namespace table edited |
//! | 17 | a fixture namespace's entry re-sealed with another incarnation, name, keys, entry-wrapping key, clear key id or storage id |
//! | 18 | an entry forged (arbitrary or field-by-field plaintext) and sealed genuinely |
//! | 19 | an entry dropped, copied, moved or swapped; `gamma`'s first entry restored |
//! | 20 | an entry's clear fields or bytes changed without re-sealing it |
//! | 21 | the anchor dropped, from the first checkpoint, re-sealed at another epoch, bytes, malformed, under a wrong key or vault id |
//! | 22 | the entry-key marker dropped, naming another key, bytes, of another version |
//! | 23 | a record or manifest dropped, moved to another incarnation or namespace, copied; `gamma`'s first records restored; a pending-rotation mark |
//! | 24 | a stored byte of tree `e`, `m` or `r` flipped |

// Test harness code: failing loudly on anything unexpected is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;

/// Reads the fuzz input; past its end every read gives zeros.
pub(super) struct Input<'a> {
    pub(super) data: &'a [u8],
}

impl Input<'_> {
    pub(super) fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
    pub(super) fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }
    /// `n` bytes, zero-filled past the end of the input.
    pub(super) fn bytes(&mut self, n: usize) -> Vec<u8> {
        let (head, tail) = self.data.split_at(n.min(self.data.len()));
        self.data = tail;
        let mut v = head.to_vec();
        v.resize(n, 0);
        v
    }
    pub(super) fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }
    pub(super) fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }
    pub(super) fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | (u64::from(self.u32()) << 32)
    }
    pub(super) fn key(&mut self) -> [u8; 32] {
        self.bytes(32).try_into().unwrap_or([0; 32])
    }
    pub(super) fn incarnation(&mut self) -> [u8; 16] {
        self.bytes(16).try_into().unwrap_or([0; 16])
    }
    /// A small number most of the time, any `u32` sometimes.
    pub(super) fn small_u32(&mut self) -> u32 {
        match self.byte() {
            b @ 0..=239 => u32::from(b % 8),
            240..=247 => u32::MAX,
            _ => self.u32(),
        }
    }
    /// One of `items`, if there are any.
    pub(super) fn pick<'b, T>(&mut self, items: &'b [T]) -> Option<&'b T> {
        let i = usize::from(self.byte());
        (!items.is_empty()).then(|| &items[i % items.len()])
    }
}

/// What a program made of the fixture: the header file to open, whether its MAC was
/// recomputed, the raw key to open it with, the storage, and every value a read may give
/// (the fixture's, and those an edit re-filed: a format-1 conversion's values under the
/// incarnations the upgrade derives).
pub(super) struct Edited {
    pub(super) file: Vec<u8>,
    pub(super) fix_mac: bool,
    pub(super) key: [u8; 32],
    pub(super) storage: Storage,
    pub(super) ledger: Vec<Written>,
}

/// Runs the edit program `data` on the fixture.
pub(super) fn run_program(data: &[u8]) -> Edited {
    let fx = fixture();
    let mut input = Input { data };
    let flags = input.byte();
    let (fix_len, fix_checksum, fix_mac) = (flags & 1 != 0, flags & 2 != 0, flags & 4 != 0);
    let key = if flags & 8 != 0 {
        FIXTURE_KEY_2
    } else {
        FIXTURE_KEY
    };
    let mut ed = Editor {
        fx,
        h: fx.keys.fields.clone(),
        storage: fx.storage.clone(),
        byte_edits: Vec::new(),
        resize: None,
        index_key: fx.keys.index_key,
        converted: Vec::new(),
        labels: Vec::new(),
    };
    ed.relabel();
    for _ in 0..32 {
        if input.is_empty() {
            break;
        }
        ed.edit(&mut input);
    }
    let mut file = ed.h.encode();
    for (at, x) in ed.byte_edits {
        if !file.is_empty() {
            let at = at % file.len();
            file[at] ^= x;
        }
    }
    if let Some(len) = ed.resize {
        file.resize(len, 0);
    }
    if fix_len {
        set_body_len(&mut file);
    }
    if fix_mac {
        set_mac(&mut file, &fx.keys.vmk);
    }
    if fix_checksum {
        set_checksum(&mut file);
    }
    // An edit that found no tree to change leaves an empty one: storage has none.
    ed.storage.retain(|_, tree| !tree.is_empty());
    let mut ledger = fx.ledger.clone();
    for ns in &ed.converted {
        let incarnation = upgrade_incarnation(&ed.index_key, &ns.id);
        for w in &fx.ledger {
            if w.ns == ns.name && w.incarnation == ns.incarnation {
                ledger.push(Written {
                    incarnation,
                    ..w.clone()
                });
            }
        }
    }
    Edited {
        file,
        fix_mac,
        key,
        storage: ed.storage,
        ledger,
    }
}

/// The state a program edits.
struct Editor<'a> {
    fx: &'a Fixture,
    h: HeaderFields,
    storage: Storage,
    /// XORs applied to the encoded header, and its new length.
    byte_edits: Vec<(usize, u8)>,
    resize: Option<usize>,
    /// The index key the edited header wraps (as far as the program knows).
    index_key: [u8; 32],
    /// The namespaces a conversion to format 1 moved: an upgrade re-files their values
    /// under incarnations derived from the index key.
    converted: Vec<KnownNs>,
    /// The random values storage keys are made of ([`Editor::relabel`]).
    labels: Vec<Vec<u8>>,
}

impl Editor<'_> {
    fn edit(&mut self, input: &mut Input<'_>) {
        match input.byte() % 25 {
            0 => self.h.seqid = input.u64(),
            1 => self.h.next_slot_id = input.small_u32(),
            2 => self.new_slot(input),
            3 => {
                if !self.h.slots.is_empty() {
                    let i = usize::from(input.byte()) % self.h.slots.len();
                    self.h.slots.remove(i);
                }
            }
            4 => {
                if !self.h.slots.is_empty() {
                    let i = usize::from(input.byte()) % self.h.slots.len();
                    let j = usize::from(input.byte()) % self.h.slots.len();
                    self.h.slots.swap(i, j);
                }
            }
            5 => self.edit_slot(input),
            6 => {
                let epoch = self.fx.keys.fields.epoch;
                self.h.epoch = match input.byte() % 6 {
                    0 => epoch + 1,
                    1 => 0,
                    2 => epoch - 1,
                    3 => u64::MAX,
                    4 => epoch,
                    _ => input.u64(),
                };
            }
            7 => {
                self.h.active_ewk = match input.byte() % 3 {
                    0 => {
                        let ids: Vec<u32> = self.h.ewks.iter().map(|(id, _)| *id).collect();
                        input.pick(&ids).copied().unwrap_or(0)
                    }
                    1 => self.fx.retired_ewk.0,
                    _ => input.small_u32(),
                };
            }
            8 => self.add_ewk(input),
            9 => self.edit_ewk(input),
            10 => self.edit_index_key(input),
            11 => self.rebind_vault_id(input),
            12 => {
                let at = usize::from(input.u16());
                let x = input.byte();
                self.byte_edits.push((at, x));
            }
            13 => {
                let len = self.fx.header.len();
                let delta = usize::from(input.byte());
                self.resize = Some(if delta & 0x80 != 0 {
                    len.saturating_sub(delta & 0x7f)
                } else {
                    len + delta
                });
            }
            14 => {
                self.h.version = match input.byte() % 5 {
                    0 => V1,
                    1 => V2,
                    2 => 3,
                    3 => 0,
                    _ => input.u16(),
                };
            }
            15 => self.convert_to_v1(input),
            16 => self.edit_v1_table(input),
            17 => self.reseal_known_entry(input),
            18 => self.forge_entry(input),
            19 => self.move_entry(input),
            20 => self.tamper_entry(input),
            21 => self.edit_anchor(input),
            22 => self.edit_marker(input),
            23 => self.edit_records(input),
            _ => self.flip_stored_byte(input),
        }
    }

    fn tree(&mut self, name: &[u8]) -> &mut BTreeMap<Vec<u8>, Vec<u8>> {
        self.storage.entry(name.to_vec()).or_default()
    }

    /// The keys of tree `name` of length `len` (any length: `None`), in an order that does
    /// not depend on the fixture's random keys (see [`Editor::stable_rank`]), so that a
    /// program means the same in every process.
    fn keys_of(&self, name: &[u8], len: Option<usize>) -> Vec<Vec<u8>> {
        let mut keys: Vec<(Vec<u8>, Vec<u8>)> = self
            .storage
            .get(name)
            .into_iter()
            .flatten()
            .map(|(k, _)| k)
            .filter(|k| len.is_none_or(|n| k.len() == n))
            .map(|k| (self.stable_rank(k), k.clone()))
            .collect();
        keys.sort();
        keys.into_iter().map(|(_, k)| k).collect()
    }

    /// A storage key with every part this process drew at random (namespace ids, record
    /// ids and incarnations of the fixture, under its index key or the edited one) replaced
    /// by a label: what the keys are sorted by.
    fn stable_rank(&self, key: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut rest = key;
        'parts: while !rest.is_empty() {
            for (label, known) in self.labels.iter().enumerate() {
                if rest.starts_with(known) {
                    // Fewer than 255 labels: one byte keeps their order.
                    out.extend_from_slice(&[0, u8::try_from(label).unwrap_or(u8::MAX)]);
                    rest = &rest[known.len()..];
                    continue 'parts;
                }
            }
            out.extend_from_slice(&[1, rest[0]]);
            rest = &rest[1..];
        }
        out
    }

    /// The random values [`Editor::stable_rank`] labels, for the fixture's index key and the
    /// edited one: the ids of every name an edit uses, the record ids of every key the
    /// target reads under them, the incarnations an upgrade derives, and the fixture's
    /// incarnations.
    fn relabel(&mut self) {
        static FIXTURE_LABELS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
        let fx = self.fx;
        let mut labels = FIXTURE_LABELS
            .get_or_init(|| random_parts(fx, &fx.keys.index_key))
            .clone();
        if self.index_key != fx.keys.index_key {
            labels.extend(random_parts(fx, &self.index_key));
        }
        for ns in fx.all_namespaces() {
            labels.push(ns.incarnation.to_vec());
        }
        self.labels = labels;
    }

    fn k_wrap(&self) -> [u8; 32] {
        k_wrap(&self.fx.keys.vmk, &self.h.vault_id)
    }

    // -----------------------------------------------------------------------------------
    // Keyslots

    /// A new slot: id, kind, parameters of some shape, and a wrapped VMK that is either
    /// genuine (sealed under a fixture key's KEK with this slot's AAD) or bytes.
    fn new_slot(&mut self, input: &mut Input<'_>) {
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

    fn edit_slot(&mut self, input: &mut Input<'_>) {
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
    fn ewk_choice(&self, input: &mut Input<'_>) -> (u32, [u8; 32]) {
        let known = self.fx.known_ewks();
        match input.byte() % 4 {
            0 => known[0],
            1 => self.fx.retired_ewk,
            2 => (HARNESS_EWK_ID, HARNESS_EWK),
            _ => (input.small_u32(), input.key()),
        }
    }

    /// The id an entry names in the clear: the key's own most of the time.
    fn ewk_id_choice(&self, input: &mut Input<'_>, natural: u32) -> u32 {
        match input.byte() % 4 {
            0 | 1 => natural,
            2 => self.h.active_ewk,
            _ => input.small_u32(),
        }
    }

    /// A wrapped entry-wrapping key added to the header: a known key or bytes, under its
    /// natural id or another, wrapped genuinely (or under another id's AAD, or bytes), in
    /// ascending order or anywhere; sometimes made the active one.
    fn add_ewk(&mut self, input: &mut Input<'_>) {
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

    fn edit_ewk(&mut self, input: &mut Input<'_>) {
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
    fn edit_index_key(&mut self, input: &mut Input<'_>) {
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
    fn rebind_vault_id(&mut self, input: &mut Input<'_>) {
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

    // -----------------------------------------------------------------------------------
    // Format 1

    /// The whole vault as format 1: the header's namespace table holds the live fixture
    /// namespaces' entries (sealed under `K_wrap`, with a floor), and each namespace's
    /// records and manifest move to a tree of its own, re-sealed with the format-1 AAD.
    /// Opening it upgrades it. Flags: 1 keep the format-2 trees (else dropped), bits 1-2 the
    /// floor (the manifest's generation, one above it, 0, the largest).
    fn convert_to_v1(&mut self, input: &mut Input<'_>) {
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
    fn edit_v1_table(&mut self, input: &mut Input<'_>) {
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

    // -----------------------------------------------------------------------------------
    // Namespace entries (tree `e`)

    /// One of the fixture's namespace incarnations.
    fn pick_ns(&self, input: &mut Input<'_>) -> KnownNs {
        let all = self.fx.all_namespaces();
        (*input.pick(&all).unwrap_or(&all[0])).clone()
    }

    /// An incarnation: `own`, `gamma`'s first, a live namespace's, bytes, or zeros.
    fn incarnation_choice(&self, input: &mut Input<'_>, own: [u8; 16]) -> [u8; 16] {
        match input.byte() % 5 {
            0 => own,
            1 => self.fx.old_gamma.incarnation,
            2 => input
                .pick(&self.fx.namespaces)
                .map_or(own, |n| n.incarnation),
            3 => input.incarnation(),
            _ => [0; 16],
        }
    }

    /// The storage key an entry is filed under: the id of the name inside, an existing
    /// entry's key, a fixture namespace's id, or bytes.
    fn file_id(&self, input: &mut Input<'_>, name: &[u8]) -> Vec<u8> {
        match input.byte() % 5 {
            0 | 1 => ns_id(&self.index_key, name).to_vec(),
            2 => {
                let ids = self.keys_of(ENTRIES, Some(32));
                input
                    .pick(&ids)
                    .cloned()
                    .unwrap_or_else(|| ns_id(&self.index_key, name).to_vec())
            }
            3 => self.pick_ns(input).id.to_vec(),
            _ => input.key().to_vec(),
        }
    }

    /// A fixture namespace's entry re-sealed with changes (mask bits): 1 another
    /// incarnation, 2 another name, 4 other keys or active id, 8 another entry-wrapping key,
    /// 16 another key id in the clear, 32 filed under another id, 64 the AAD naming another
    /// id than the one it is filed under.
    fn reseal_known_entry(&mut self, input: &mut Input<'_>) {
        let ns = self.pick_ns(input);
        let mask = input.byte();
        let mut plain = ns.plain.clone();
        let mut incarnation = ns.incarnation;
        let known = self.fx.known_ewks();
        let (mut ewk_id, mut ewk) = *known
            .iter()
            .find(|(id, _)| *id == ns.ewk_id)
            .unwrap_or(&known[0]);
        let mut file_id = ns.id.to_vec();
        if mask & 1 != 0 {
            incarnation = self.incarnation_choice(input, incarnation);
        }
        if mask & 2 != 0 {
            plain.name = name_choice(input);
        }
        if mask & 4 != 0 {
            let other = self.pick_ns(input);
            match input.byte() % 4 {
                0 => plain.keys.push((plain.active.wrapping_add(1), [0x44; 32])),
                1 => {
                    if let (Some(k), Some((_, key))) = (
                        plain.keys.iter_mut().find(|(id, _)| *id == plain.active),
                        other.plain.keys.first(),
                    ) {
                        k.1 = *key;
                    }
                }
                2 => plain.active = input.small_u32(),
                _ => {
                    plain.keys = other.plain.keys.clone();
                    plain.active = other.plain.active;
                }
            }
        }
        if mask & 8 != 0 {
            (ewk_id, ewk) = self.ewk_choice(input);
        }
        if mask & 16 != 0 {
            ewk_id = self.ewk_id_choice(input, ewk_id);
        }
        if mask & 32 != 0 {
            file_id = match input.byte() % 3 {
                0 => self.pick_ns(input).id.to_vec(),
                1 => input.key().to_vec(),
                _ => ns_id(&self.index_key, &plain.name).to_vec(),
            };
        }
        let aad_id = if mask & 64 != 0 {
            self.pick_ns(input).id.to_vec()
        } else {
            file_id.clone()
        };
        let stored = seal_entry(
            &ewk,
            &self.h.vault_id,
            &aad_id,
            ewk_id,
            &incarnation,
            &plain.encode(),
        );
        self.tree(ENTRIES).insert(file_id, stored);
    }

    /// An entry with arbitrary plaintext, or one built field by field, sealed genuinely
    /// under a chosen entry-wrapping key and incarnation, filed under a chosen id.
    fn forge_entry(&mut self, input: &mut Input<'_>) {
        let plain = if input.byte() & 1 != 0 {
            let n = usize::from(input.u16() % 2048);
            input.bytes(n)
        } else {
            structured_entry(self.fx, input, false)
        };
        let name = plain_name(&plain);
        let id = self.file_id(input, &name);
        let own = self
            .fx
            .namespaces
            .iter()
            .find(|n| n.name.as_bytes() == name)
            .map_or([0x11; 16], |n| n.incarnation);
        let incarnation = self.incarnation_choice(input, own);
        let (natural, ewk) = self.ewk_choice(input);
        let ewk_id = self.ewk_id_choice(input, natural);
        let stored = seal_entry(&ewk, &self.h.vault_id, &id, ewk_id, &incarnation, &plain);
        self.tree(ENTRIES).insert(id, stored);
    }

    /// An entry dropped, copied or moved to another id, `gamma`'s first entry restored
    /// (sealed under the retired key), or two entries swapped.
    fn move_entry(&mut self, input: &mut Input<'_>) {
        let sub = input.byte() % 5;
        let ids = self.keys_of(ENTRIES, Some(32));
        let Some(from) = input.pick(&ids).cloned() else {
            return;
        };
        match sub {
            0 => {
                self.tree(ENTRIES).remove(&from);
            }
            1 | 2 => {
                let to = match input.byte() % 4 {
                    0 => input.pick(&ids).cloned().unwrap_or_default(),
                    1 => self.pick_ns(input).id.to_vec(),
                    2 => ns_id(&self.index_key, &name_choice(input)).to_vec(),
                    _ => input.key().to_vec(),
                };
                let entries = self.tree(ENTRIES);
                let value = if sub == 2 {
                    entries.remove(&from)
                } else {
                    entries.get(&from).cloned()
                };
                if let Some(v) = value {
                    entries.insert(to, v);
                }
            }
            3 => {
                let old = &self.fx.old_gamma;
                let (id, entry) = (old.id.to_vec(), old.entry.clone());
                self.tree(ENTRIES).insert(id, entry);
            }
            _ => {
                let Some(to) = input.pick(&ids).cloned() else {
                    return;
                };
                let entries = self.tree(ENTRIES);
                let (a, b) = (entries.get(&from).cloned(), entries.get(&to).cloned());
                if let (Some(a), Some(b)) = (a, b) {
                    entries.insert(from, b);
                    entries.insert(to, a);
                }
            }
        }
    }

    /// A stored entry's clear fields or bytes changed without re-sealing it.
    fn tamper_entry(&mut self, input: &mut Input<'_>) {
        let sub = input.byte() % 5;
        let ids = self.keys_of(ENTRIES, Some(32));
        let Some(id) = input.pick(&ids).cloned() else {
            return;
        };
        let active = self.h.active_ewk;
        let own = self
            .storage
            .get(ENTRIES)
            .and_then(|t| t.get(&id))
            .and_then(|v| entry_clear(v))
            .map_or([0; 16], |c| c.2);
        let incarnation = (sub == 2).then(|| self.incarnation_choice(input, own));
        let Some(v) = self.tree(ENTRIES).get_mut(&id) else {
            return;
        };
        match sub {
            0 => {
                if let Some(b) = v.first_mut() {
                    *b = input.byte();
                }
            }
            1 => {
                let ewk_id = match input.byte() % 4 {
                    0 => active,
                    1 => 1,
                    2 => HARNESS_EWK_ID,
                    _ => input.small_u32(),
                };
                if let Some(f) = v.get_mut(1..5) {
                    f.copy_from_slice(&ewk_id.to_le_bytes());
                }
            }
            2 => {
                if let (Some(f), Some(inc)) = (v.get_mut(5..21), incarnation) {
                    f.copy_from_slice(&inc);
                }
            }
            3 => {
                let n = usize::from(input.u16());
                if n < v.len() {
                    v.truncate(n);
                } else {
                    v.resize(v.len() + n % 128, 0);
                }
            }
            _ => {
                let at = usize::from(input.u16());
                let x = input.byte().max(1);
                if !v.is_empty() {
                    let at = at % v.len();
                    v[at] ^= x;
                }
            }
        }
    }

    // -----------------------------------------------------------------------------------
    // The anchor and the entry-key marker

    /// The anchor dropped, replaced by the first checkpoint's, re-sealed genuinely at a
    /// chosen epoch, replaced by bytes, made malformed around a genuine MAC, or sealed
    /// under a wrong key or another vault's id.
    fn edit_anchor(&mut self, input: &mut Input<'_>) {
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
    fn edit_marker(&mut self, input: &mut Input<'_>) {
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
    fn edit_records(&mut self, input: &mut Input<'_>) {
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
    fn flip_stored_byte(&mut self, input: &mut Input<'_>) {
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

/// What index key `index_key` makes of the names an edit uses: their namespace ids, the
/// record ids of [`READ_KEYS`] in them, and the incarnations an upgrade would give the
/// fixture's namespaces.
fn random_parts(fx: &Fixture, index_key: &[u8; 32]) -> Vec<Vec<u8>> {
    // Every name `name_choice` gives.
    let mut names: Vec<Vec<u8>> = Vec::new();
    for name in NAMES.iter().filter(|n| **n != "long") {
        names.push(name.as_bytes().to_vec());
        names.push([name.as_bytes(), &[0xff]].concat());
    }
    names.push(vec![b'n'; 1025]);
    let mut parts = Vec::new();
    for name in &names {
        parts.push(ns_id(index_key, name).to_vec());
        for key in READ_KEYS {
            parts.push(record_id(index_key, name, key.as_bytes()).to_vec());
        }
    }
    for ns in &fx.namespaces {
        parts.push(upgrade_incarnation(index_key, &ns.id).to_vec());
    }
    parts
}

pub(super) fn fit(mut v: Vec<u8>, n: usize) -> Vec<u8> {
    v.resize(n, 0);
    v
}

/// The name at the front of an entry plaintext (empty if it has none).
fn plain_name(plain: &[u8]) -> Vec<u8> {
    let mut c = Cursor(plain);
    c.u16()
        .and_then(|n| c.take(usize::from(n)))
        .unwrap_or(b"")
        .to_vec()
}

/// A namespace name: one of [`NAMES`] (`long` is 1025 bytes), sometimes with a byte that is
/// not UTF-8 appended.
fn name_choice(input: &mut Input<'_>) -> Vec<u8> {
    let choice = input.byte();
    match NAMES[usize::from(choice) % NAMES.len()] {
        "long" => vec![b'n'; 1025],
        n if choice >= 0xf0 => {
            let mut v = n.as_bytes().to_vec();
            v.push(0xff);
            v
        }
        n => n.as_bytes().to_vec(),
    }
}

/// A namespace entry plaintext (section 3.6; with a floor in format 1, 11.2) built from
/// choices: a name, keys (the real ones of a fixture namespace, or bytes), an active id,
/// counts and padding right or wrong.
fn structured_entry(fx: &Fixture, input: &mut Input<'_>, v1: bool) -> Vec<u8> {
    let name = name_choice(input);
    let name_str = String::from_utf8_lossy(&name).into_owned();
    let count_choice = input.byte();
    let count = match count_choice % 8 {
        7 => 64 + usize::from(count_choice >> 7),
        n => usize::from(n),
    };
    let mut keys: Vec<(u32, [u8; 32])> = Vec::new();
    for i in 0..count {
        let choice = input.byte();
        let real = if choice & 1 == 0 {
            fx.data_key(&name_str, usize::from(choice >> 1))
        } else {
            None
        };
        keys.push(match real {
            Some(k) => k,
            None => {
                let id = if choice & 2 == 0 {
                    u32::try_from(i + 1).unwrap_or(0)
                } else {
                    input.small_u32()
                };
                (
                    id,
                    if choice & 4 == 0 {
                        [0x44; 32]
                    } else {
                        input.key()
                    },
                )
            }
        });
    }
    let active = match input.byte() % 4 {
        0 | 1 => keys.last().map_or(1, |k| k.0),
        2 => keys.first().map_or(1, |k| k.0),
        _ => input.small_u32(),
    };
    let mut plain = Vec::new();
    let name_len = if count_choice & 0x40 != 0 {
        input.u16()
    } else {
        u16::try_from(name.len()).unwrap_or(u16::MAX)
    };
    plain.extend_from_slice(&name_len.to_le_bytes());
    plain.extend_from_slice(&name);
    plain.extend_from_slice(&active.to_le_bytes());
    let key_count = if count_choice & 0x20 != 0 {
        input.u16()
    } else {
        u16::try_from(keys.len()).unwrap_or(u16::MAX)
    };
    plain.extend_from_slice(&key_count.to_le_bytes());
    for (id, key) in &keys {
        plain.extend_from_slice(&id.to_le_bytes());
        plain.extend_from_slice(key);
    }
    if v1 {
        let floor = match input.byte() % 3 {
            0 => 0,
            1 => u64::MAX,
            _ => input.u64(),
        };
        plain.extend_from_slice(&floor.to_le_bytes());
    }
    let pad = input.byte();
    let target = plain.len().div_ceil(64) * 64 + usize::from(pad % 4) * 64;
    plain.resize(target, 0);
    if pad & 0x10 != 0 {
        plain.push(0);
    }
    if pad & 0x20 != 0 {
        if let Some(last) = plain.last_mut() {
            *last = 1;
        }
    }
    plain
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

/// The seed programs of the target (see the module documentation for their encoding;
/// flags 7 recompute the length, checksum and MAC), each named after what it makes.
pub(super) fn seed_programs() -> Vec<(&'static str, Vec<u8>)> {
    let with = |head: &[u8], repeated: u8, n: usize, tail: &[u8]| {
        let mut v = head.to_vec();
        v.extend(std::iter::repeat_n(repeated, n));
        v.extend_from_slice(tail);
        v
    };
    vec![
        ("unmodified", vec![0]),
        ("unmodified-key2", vec![8]),
        ("remac-seqid", vec![7, 0, 1, 2, 3, 4, 5, 6, 7, 8]),
        ("no-remac-xor", vec![3, 12, 40, 0, 1]),
        ("remac-raw-slot-first", vec![7, 1, 240, 2, 3, 1, 0x82, 0]),
        // Header epoch above the anchor's: a rollback. Epoch 0: fine.
        ("remac-epoch-ahead-of-anchor", vec![7, 6, 0]),
        ("remac-epoch-zero", vec![7, 6, 1]),
        // The anchor dropped, from the first checkpoint, raised, under a wrong key.
        ("anchor-dropped", vec![0, 21, 0]),
        ("anchor-first-checkpoint", vec![0, 21, 1]),
        ("anchor-raised", vec![0, 21, 2, 1]),
        ("anchor-wrong-key", vec![0, 21, 5]),
        ("marker-stale", vec![0, 22, 1, 1]),
        // The retired entry key back in the header (an unfinished shred), then gamma's
        // first entry and records restored: they open again, with their old value.
        ("remac-retired-ewk-back", vec![7, 8, 1, 0, 0, 0]),
        (
            "remac-old-gamma-restored",
            vec![7, 8, 1, 0, 0, 0, 19, 3, 0, 23, 3, 0],
        ),
        // Without the retired key, gamma's restored first entry does not open (the shred).
        ("old-gamma-without-its-key", vec![0, 19, 3, 0, 23, 3, 0]),
        // alpha re-sealed under the real key with another incarnation: no records; with its
        // records moved under that incarnation: they do not open.
        (
            "reseal-alpha-new-incarnation",
            with(&[0, 17, 0, 1, 3], 0x33, 16, &[]),
        ),
        (
            "reseal-alpha-records-follow",
            with(
                &with(&[0, 17, 0, 1, 3], 0x33, 16, &[23, 2, 0, 3]),
                0x33,
                16,
                &[],
            ),
        ),
        ("reseal-alpha-with-beta-keys", vec![0, 17, 0, 4, 1, 3]),
        ("reseal-beta-filed-under-alpha", vec![0, 17, 1, 32, 0, 0]),
        ("entry-copied-under-beta", vec![0, 19, 1, 0, 1, 1]),
        (
            "remac-harness-ewk-alpha-under-it",
            vec![7, 8, 2, 0, 0, 0x40, 17, 0, 8, 2],
        ),
        ("remac-three-ewks", vec![7, 8, 2, 2, 0, 0, 8, 1, 0, 0, 0]),
        ("remac-active-ewk-missing", vec![7, 7, 2, 5]),
        // Another index key (and the anchor under it): no entry belongs to its id.
        ("remac-index-key-swapped", with(&[7, 10, 1], 0x42, 32, &[1])),
        // A new vault id: with everything re-sealed the vault is whole; with the header
        // only, the anchor fails; without the records, they do not open.
        ("remac-rebind-complete", with(&[7, 11], 0x21, 16, &[7])),
        ("remac-rebind-header-only", with(&[7, 11], 0x21, 16, &[0])),
        ("remac-rebind-not-records", with(&[7, 11], 0x21, 16, &[3])),
        // Format 1: upgraded; with a floor above the manifest (rolled back); over the
        // format-2 trees (not the upgrade's); without one namespace; an empty table.
        ("remac-v1-upgrade", vec![7, 15, 0]),
        ("remac-v1-floor-ahead", vec![7, 15, 2]),
        ("remac-v1-over-v2-trees", vec![7, 15, 1]),
        ("remac-v1-drop-namespace", vec![7, 15, 0, 16, 0, 1]),
        ("remac-v1-version-only", vec![7, 14, 0]),
        ("pending-rotation-mark", vec![0, 23, 5, 0, 1]),
        ("record-across-namespaces", vec![0, 23, 6, 0, 1, 0]),
        ("flip-stored-entry", vec![0, 24, 0, 1, 30, 0, 1]),
    ]
}
