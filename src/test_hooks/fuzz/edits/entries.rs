//! Edits of the namespace entries in tree `e`: fixture entries re-sealed with changes,
//! entries forged and sealed genuinely, moved, dropped or swapped, or tampered with
//! without re-sealing; and the entry plaintexts those edits build.

// Test harness code: failing loudly on anything unexpected is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;

impl Editor<'_> {
    // -----------------------------------------------------------------------------------
    // Namespace entries (tree `e`)

    /// The storage key an entry is filed under: the id of the name inside, an existing
    /// entry's key, a fixture namespace's id, or bytes.
    pub(super) fn file_id(&self, input: &mut Input<'_>, name: &[u8]) -> Vec<u8> {
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
    pub(super) fn reseal_known_entry(&mut self, input: &mut Input<'_>) {
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
    pub(super) fn forge_entry(&mut self, input: &mut Input<'_>) {
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
    pub(super) fn move_entry(&mut self, input: &mut Input<'_>) {
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
    pub(super) fn tamper_entry(&mut self, input: &mut Input<'_>) {
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
}

/// The name at the front of an entry plaintext (empty if it has none).
pub(super) fn plain_name(plain: &[u8]) -> Vec<u8> {
    let mut c = Cursor(plain);
    c.u16()
        .and_then(|n| c.take(usize::from(n)))
        .unwrap_or(b"")
        .to_vec()
}

/// A namespace entry plaintext (section 3.6; with a floor in format 1, 11.2) built from
/// choices: a name, keys (the real ones of a fixture namespace, or bytes), an active id,
/// counts and padding right or wrong.
pub(super) fn structured_entry(fx: &Fixture, input: &mut Input<'_>, v1: bool) -> Vec<u8> {
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
