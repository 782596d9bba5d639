//! The `open_vault` target: a real vault (the fixture) whose header is edited in structured
//! ways (or replaced by arbitrary bytes), then opened and exercised.

// Test harness code: failing loudly on anything unexpected is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;

// ---------------------------------------------------------------------------------------
// open_vault

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
        let mut k = [0u8; 32];
        k.copy_from_slice(&self.bytes(32)[..]);
        k
    }
    /// A small number most of the time, any `u32` sometimes.
    pub(super) fn small_u32(&mut self) -> u32 {
        match self.byte() {
            b @ 0..=239 => u32::from(b % 8),
            240..=247 => u32::MAX,
            _ => self.u32(),
        }
    }
}

/// `open_vault`: arbitrary bytes as a header (they must not open), then a real vault's header
/// edited by a small program read from the input, with the length, MAC and checksum
/// optionally recomputed. An edited header whose MAC was not recomputed must not open; one
/// whose MAC was recomputed may, and the vault must then work without panicking.
pub fn check_open_vault(data: &[u8]) -> Result<(), String> {
    stranger_must_fail(data)?;
    if let Some(fixed) = fix_framing(data) {
        stranger_must_fail(&fixed).map_err(|e| format!("(framing fixed) {e}"))?;
    }
    edited_real_header(data)
}

pub(super) fn stranger_must_fail(header: &[u8]) -> Result<(), String> {
    let storage = MemoryBackend::new();
    storage
        .write_header(None, header)
        .map_err(|e| e.to_string())?;
    match Vault::open_with_backend(storage, &raw_key(STRANGER_KEY)) {
        Ok(_) => Err("arbitrary header bytes opened with a key no vault has".into()),
        Err(e) => expected_open_error(&e),
    }
}

pub(super) fn expected_open_error(e: &Error) -> Result<(), String> {
    match e {
        Error::Damaged(Damage::Header { .. })
        | Error::WrongKey
        | Error::UnsupportedVersion { .. } => Ok(()),
        other => Err(format!(
            "unexpected error opening a header: {other:?} ({other})"
        )),
    }
}

/// The edited real header the input describes: the file, whether its MAC was recomputed,
/// and the raw key to open it with.
pub(super) fn edited_header(data: &[u8]) -> (Vec<u8>, bool, [u8; 32]) {
    let fx = fixture();
    let mut input = Input { data };
    let flags = input.byte();
    let (fix_len, fix_checksum, fix_mac) = (flags & 1 != 0, flags & 2 != 0, flags & 4 != 0);
    let key = if flags & 8 != 0 {
        FIXTURE_KEY_2
    } else {
        FIXTURE_KEY
    };
    let mut fields = fx.fields.clone();
    let mut byte_edits: Vec<(usize, u8)> = Vec::new();
    let mut resize: Option<usize> = None;
    for _ in 0..32 {
        if input.is_empty() {
            break;
        }
        edit(fx, &mut fields, &mut input, &mut byte_edits, &mut resize);
    }
    let mut file = fields.encode();
    for (at, x) in byte_edits {
        if !file.is_empty() {
            let at = at % file.len();
            file[at] ^= x;
        }
    }
    if let Some(len) = resize {
        file.resize(len, 0);
    }
    if fix_len {
        set_body_len(&mut file);
    }
    if fix_mac {
        set_mac(&mut file, &fx.vmk);
    }
    if fix_checksum {
        set_checksum(&mut file);
    }
    (file, fix_mac, key)
}

pub(super) fn edited_real_header(data: &[u8]) -> Result<(), String> {
    let fx = fixture();
    let (file, fix_mac, key) = edited_header(data);
    let storage = fx.backend(&file)?;
    let opened = Vault::open_with_backend(storage.clone(), &raw_key(key));
    if file == fx.header {
        return match opened {
            Ok(vault) => exercise(vault, &storage, key),
            Err(e) => Err(format!("the unmodified real header does not open: {e}")),
        };
    }
    match opened {
        Err(e) => expected_open_error(&e),
        Ok(_) if !fix_mac => {
            Err("an edited header opened although its MAC was not recomputed".into())
        }
        Ok(vault) => exercise(vault, &storage, key),
    }
}

/// What opening the edited header of an `open_vault` input gives, for diagnosis.
pub fn explain_open_vault(data: &[u8]) -> String {
    let fx = fixture();
    let (file, fix_mac, key) = edited_header(data);
    let opened = fx
        .backend(&file)
        .map_err(|e| e.to_string())
        .and_then(|s| Vault::open_with_backend(s, &raw_key(key)).map_err(|e| format!("{e:?}")));
    format!(
        "{} bytes (real: {}), unchanged: {}, MAC recomputed: {fix_mac}, open: {}",
        file.len(),
        fx.header.len(),
        file == fx.header,
        match opened {
            Ok(v) => format!("Ok, namespaces {:?}", v.namespaces()),
            Err(e) => e,
        }
    )
}

/// One edit of the header's fields, or a byte edit recorded for after the encoding.
pub(super) fn edit(
    fx: &Fixture,
    h: &mut HeaderFields,
    input: &mut Input<'_>,
    byte_edits: &mut Vec<(usize, u8)>,
    resize: &mut Option<usize>,
) {
    let op = input.byte() % 16;
    match op {
        0 => h.seqid = input.u64(),
        1 => h.next_slot_id = input.small_u32(),
        2 => {
            // A new slot: id, kind, parameters of some shape, and a wrapped VMK that is either
            // genuine (sealed under a fixture key's KEK with this slot's AAD) or bytes.
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
                let salt = params.get(1..).unwrap_or(&[]);
                let kek = raw_kek(&raw, salt);
                seal(&kek, &slot_aad(&h.vault_id, id, kind, &params), &fx.vmk)
            } else {
                input.bytes(72)
            };
            let wrapped = fit(wrapped, 72);
            let at = usize::from(input.byte()) % (h.slots.len() + 1);
            h.slots.insert(
                at,
                SlotFields {
                    id,
                    kind,
                    params,
                    wrapped,
                },
            );
        }
        3 => {
            if !h.slots.is_empty() {
                let i = usize::from(input.byte()) % h.slots.len();
                h.slots.remove(i);
            }
        }
        4 => {
            if !h.slots.is_empty() {
                let i = usize::from(input.byte()) % h.slots.len();
                let j = usize::from(input.byte()) % h.slots.len();
                h.slots.swap(i, j);
            }
        }
        5 => {
            if !h.slots.is_empty() {
                let i = usize::from(input.byte()) % h.slots.len();
                let s = &mut h.slots[i];
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
        }
        6 => {
            // A namespace entry with arbitrary plaintext, sealed genuinely.
            let plain_len = usize::from(input.u16() % 2048);
            let plain = input.bytes(plain_len);
            let id = entry_id(fx, h, input, &plain);
            let blob = seal(&fx.k_wrap(&h.vault_id), &ns_aad(&h.vault_id, &id), &plain);
            put_entry(h, input, id, blob);
        }
        7 => {
            // A namespace entry built field by field, sealed genuinely.
            let plain = structured_entry(fx, input);
            let id = entry_id(fx, h, input, &plain);
            let blob = seal(&fx.k_wrap(&h.vault_id), &ns_aad(&h.vault_id, &id), &plain);
            put_entry(h, input, id, blob);
        }
        8 => {
            if !h.namespaces.is_empty() {
                let i = usize::from(input.byte()) % h.namespaces.len();
                h.namespaces.remove(i);
            }
        }
        9 => {
            if !h.namespaces.is_empty() {
                let i = usize::from(input.byte()) % h.namespaces.len();
                let entry = h.namespaces[i].clone();
                h.namespaces.push(entry);
            }
        }
        10 => {
            let k_wrap = fx.k_wrap(&h.vault_id);
            let aad = index_key_aad(&h.vault_id);
            h.wrapped_index_key = match input.byte() % 3 {
                0 => seal(&k_wrap, &aad, &fx.index_key),
                1 => seal(&k_wrap, &aad, &input.key()),
                _ => input.bytes(72),
            };
            h.wrapped_index_key = fit(std::mem::take(&mut h.wrapped_index_key), 72);
        }
        11 => {
            if !h.namespaces.is_empty() {
                let i = usize::from(input.byte()) % h.namespaces.len();
                h.namespaces[i].0 = input.key();
            }
        }
        12 => {
            if !h.namespaces.is_empty() {
                let i = usize::from(input.byte()) % h.namespaces.len();
                let j = usize::from(input.byte()) % h.namespaces.len();
                h.namespaces.swap(i, j);
            }
        }
        13 => rebind_vault_id(fx, h, input),
        14 => {
            let at = usize::from(input.u16());
            let x = input.byte();
            byte_edits.push((at, x));
        }
        _ => {
            let len = fx.header.len();
            let delta = usize::from(input.byte());
            *resize = Some(if delta & 0x80 != 0 {
                len.saturating_sub(delta & 0x7f)
            } else {
                len + delta
            });
        }
    }
}

pub(super) fn fit(mut v: Vec<u8>, n: usize) -> Vec<u8> {
    v.resize(n, 0);
    v
}

/// The id an edited entry is filed under: the genuine id of the name inside (when the
/// plaintext has one), an existing entry's id, or bytes.
pub(super) fn entry_id(
    fx: &Fixture,
    h: &HeaderFields,
    input: &mut Input<'_>,
    plain: &[u8],
) -> [u8; 32] {
    match input.byte() % 4 {
        0 | 1 => {
            let mut c = Cursor(plain);
            let name = c.u16().and_then(|n| c.take(usize::from(n))).unwrap_or(b"");
            ns_id(&fx.index_key, name)
        }
        2 if !h.namespaces.is_empty() => {
            h.namespaces[usize::from(input.byte()) % h.namespaces.len()].0
        }
        _ => input.key(),
    }
}

/// Replaces an entry, or appends one.
pub(super) fn put_entry(h: &mut HeaderFields, input: &mut Input<'_>, id: [u8; 32], blob: Vec<u8>) {
    let at = usize::from(input.byte());
    if at < h.namespaces.len() {
        h.namespaces[at] = (id, blob);
    } else {
        h.namespaces.push((id, blob));
    }
}

/// A namespace entry plaintext (section 3.5) built from choices: a name, an active id, keys
/// (the real ones of a fixture namespace, or bytes), padding right or wrong.
pub(super) fn structured_entry(fx: &Fixture, input: &mut Input<'_>) -> Vec<u8> {
    let name_choice = input.byte();
    let name: Vec<u8> = match NAMES[usize::from(name_choice) % NAMES.len()] {
        "long" => vec![b'n'; 1025],
        n if name_choice >= 0xf0 => {
            let mut v = n.as_bytes().to_vec();
            v.push(0xff);
            v
        }
        n => n.as_bytes().to_vec(),
    };
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
    if fx.floor_field {
        let floor = match input.byte() % 4 {
            0 => fx
                .ns_keys
                .iter()
                .position(|(n, _, _)| *n == name_str)
                .and_then(|i| fx.floors.get(i).copied())
                .unwrap_or(1),
            1 => 0,
            2 => u64::MAX,
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

/// A new vault id, with everything that binds it re-sealed (the fixture's raw slots, the
/// index key, the namespace entries): the vault opens, but no record does.
pub(super) fn rebind_vault_id(fx: &Fixture, h: &mut HeaderFields, input: &mut Input<'_>) {
    let old_wrap = fx.k_wrap(&h.vault_id);
    let old_id = h.vault_id;
    let mut new_id = [0u8; 16];
    new_id.copy_from_slice(&input.bytes(16));
    h.vault_id = new_id;
    let new_wrap = fx.k_wrap(&new_id);
    for s in &mut h.slots {
        for raw in [FIXTURE_KEY, FIXTURE_KEY_2] {
            let kek = raw_kek(&raw, s.params.get(1..).unwrap_or(&[]));
            if open(
                &kek,
                &slot_aad(&old_id, s.id, s.kind, &s.params),
                &s.wrapped,
            )
            .is_some()
            {
                s.wrapped = seal(&kek, &slot_aad(&new_id, s.id, s.kind, &s.params), &fx.vmk);
            }
        }
    }
    if let Some(k) = open(&old_wrap, &index_key_aad(&old_id), &h.wrapped_index_key) {
        h.wrapped_index_key = seal(&new_wrap, &index_key_aad(&new_id), &k);
    }
    for (id, blob) in &mut h.namespaces {
        if let Some(plain) = open(&old_wrap, &ns_aad(&old_id, id), blob) {
            *blob = seal(&new_wrap, &ns_aad(&new_id, id), &plain);
        }
    }
}

/// Uses a vault opened from an edited header: nothing may panic, `verify` must answer, and
/// the vault must open again, with the same namespaces, after the header rewrites this
/// causes.
pub(super) fn exercise(vault: Vault, storage: &MemoryBackend, key: [u8; 32]) -> Result<(), String> {
    let names = vault.namespaces().map_err(|e| format!("namespaces: {e}"))?;
    for name in names
        .iter()
        .map(String::as_str)
        .chain(["alpha", "beta", "new"])
    {
        let Ok(ns) = vault.namespace(name) else {
            continue;
        };
        let _ = ns.keys();
        for (_, key) in FIXTURE_RECORDS {
            let _ = ns.get::<Token>(key);
            let _ = ns.get_versioned::<Secret>(key);
        }
        if let Ok(Some((_, v))) = ns.get_versioned::<Token>("rs.example.org") {
            let _ = ns.compare_and_swap("rs.example.org", Some(v), &Token::new("new".into()));
        }
        let _ = ns.put("fuzz", &Token::new("fuzz".into()));
        let _ = ns.remove("k");
    }
    vault
        .verify(|_| {})
        .map_err(|e| format!("verify failed instead of reporting: {e}"))?;
    for name in &names {
        let _ = vault.rotate_namespace_key(name, |_| {});
    }
    let _ = vault.keyslots();
    let _ = vault.rotate_master_key();
    let _ = vault.add_keyslot(&raw_key([6u8; 32]));
    let _ = vault.remove_namespace("gamma");
    let names = vault.namespaces().map_err(|e| format!("namespaces: {e}"))?;
    vault.close().map_err(|e| format!("close: {e}"))?;
    let again = Vault::open_with_backend(storage.clone(), &raw_key(key))
        .map_err(|e| format!("a header this library accepted and rewrote does not reopen: {e}"))?;
    let names_again = again.namespaces().map_err(|e| format!("namespaces: {e}"))?;
    if names_again != names {
        return Err(format!(
            "namespaces changed across a reopen: {names:?} then {names_again:?}"
        ));
    }
    again.verify(|_| {}).map_err(|e| format!("verify: {e}"))?;
    again.close().map_err(|e| format!("close: {e}"))
}
