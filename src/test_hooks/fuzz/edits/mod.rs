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
//!
//! This module holds the interpreter (the operation dispatch and what every edit shares)
//! and the seed programs; the edits themselves are grouped by what they change: the
//! header's fields (`header`), format 1 (`v1`), the namespace entries (`entries`), and the
//! anchor, the marker, records, manifests and stored bytes (`storage`).

// Test harness code: failing loudly on anything unexpected is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;

mod entries;
mod header;
mod storage;
mod v1;

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
