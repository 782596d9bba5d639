//! An independent reader of a vault, written from docs/format.md section 8 (and the format 2
//! layout): what opening a header with a raw key must give (8.1), whether the anchor lets the
//! vault open (4.8), and which namespaces the entries tree holds (8.2). The `open_vault`
//! target compares the library's answers with these.

// Test harness code: failing loudly on anything unexpected is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use super::*;

/// Why a header does not open, as section 8.1 classifies it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    /// Damaged(Header), with the rule broken.
    Header(&'static str),
    /// A format-1 namespace entry that does not open (11.1): Damaged, but the upgrade may
    /// stop at another namespace first (its damage, or format-2 entries in its way:
    /// NotEmpty).
    V1Entry(&'static str),
    WrongKey,
    UnsupportedVersion,
    /// Damaged(Rollback): the anchor is missing past epoch 0, not authentic, or behind.
    Rollback,
}

/// A header opened with a raw key: its fields and the keys it wraps.
#[derive(Clone)]
pub(super) struct Unlocked {
    pub(super) fields: HeaderFields,
    pub(super) vmk: [u8; 32],
    pub(super) index_key: [u8; 32],
    /// Format 2: every entry-wrapping key, unwrapped, by id.
    pub(super) ewks: Vec<(u32, [u8; 32])>,
    /// Format 1: every namespace entry, opened.
    pub(super) v1_entries: Vec<([u8; 32], EntryPlain)>,
}

/// Opens `file` with raw key `raw` as section 8.1 says (steps 1 to 13; format 1: with every
/// namespace entry of the header opened, 11.1).
pub(super) fn unlock(file: &[u8], raw: &[u8; 32]) -> Result<Unlocked, Refusal> {
    use Refusal::Header;
    if file.len() > 256 * 1024 * 1024 {
        return Err(Header("header file too large"));
    }
    if file.len() < FIXED_LEN + TRAILER_LEN {
        return Err(Header("header file truncated"));
    }
    if file[..8] != MAGIC {
        return Err(Header("bad magic"));
    }
    let version = u16::from_le_bytes([file[8], file[9]]);
    match version {
        V1 | V2 => {}
        0 => return Err(Header("unknown format version")),
        _ => return Err(Refusal::UnsupportedVersion),
    }
    let body_len = u32::from_le_bytes([file[10], file[11], file[12], file[13]]);
    if usize::try_from(body_len)
        .ok()
        .and_then(|b| b.checked_add(FIXED_LEN + TRAILER_LEN))
        != Some(file.len())
    {
        return Err(Header("header length does not match its contents"));
    }
    let n = file.len() - 32;
    if Sha256::digest(&file[..n]).as_slice() != &file[n..] {
        return Err(Header("checksum mismatch"));
    }
    let fields = HeaderFields::parse(file).ok_or(Header("the body does not parse"))?;
    if let Some(rule) = fields.body_rule_broken() {
        return Err(Header(rule));
    }
    // Candidates: the raw-key slots, in stored order; each one's parameters are checked
    // before its KEK is derived.
    let mut vmk = None;
    for slot in fields.slots.iter().filter(|s| s.kind == 2) {
        let mut c = Cursor(&slot.params);
        let salt = c
            .u8()
            .and_then(|len| c.take(usize::from(len)))
            .filter(|salt| c.0.is_empty() && (16..=64).contains(&salt.len()))
            .ok_or(Header("keyslot parameters malformed"))?;
        let kek = raw_kek(raw, salt);
        let aad = slot_aad(&fields.vault_id, slot.id, slot.kind, &slot.params);
        if let Some(key) = unwrap(&kek, &aad, &slot.wrapped) {
            vmk = Some(key);
            break;
        }
    }
    let vmk = vmk.ok_or(Refusal::WrongKey)?;
    let mac = hmac(&k_mac(&vmk, &fields.vault_id), &[&file[..n - 32]]);
    if mac != fields.mac {
        return Err(Header("header authentication failed"));
    }
    let wrap = k_wrap(&vmk, &fields.vault_id);
    let index_key = unwrap(
        &wrap,
        &index_key_aad(&fields.vault_id),
        &fields.wrapped_index_key,
    )
    .ok_or(Header("the index key does not unwrap"))?;
    let mut unlocked = Unlocked {
        fields,
        vmk,
        index_key,
        ewks: Vec::new(),
        v1_entries: Vec::new(),
    };
    let f = &unlocked.fields;
    if version == V2 {
        for (id, wrapped) in &f.ewks {
            let key = unwrap(&wrap, &ewk_aad(&f.vault_id, *id), wrapped)
                .ok_or(Header("an entry key does not unwrap"))?;
            unlocked.ewks.push((*id, key));
        }
    } else {
        for (id, blob) in &f.namespaces {
            let plain = open(&wrap, &ns_aad_v1(&f.vault_id, id), blob)
                .ok_or(Refusal::V1Entry("namespace entry failed authentication"))?;
            let entry = EntryPlain::parse(&plain, true).map_err(Refusal::V1Entry)?;
            if ns_id(&index_key, &entry.name) != *id {
                return Err(Refusal::V1Entry(
                    "the entry is filed under another name's id",
                ));
            }
            unlocked.v1_entries.push((*id, entry));
        }
    }
    Ok(unlocked)
}

/// Section 8.1 step 14: the anchor in `storage` lets a format-2 vault open: authentic and at
/// least the header's epoch, or missing while the epoch is 0.
pub(super) fn anchor_admits(u: &Unlocked, storage: &Storage) -> Result<(), Refusal> {
    let epoch = u.fields.epoch;
    match storage.get(MANIFESTS).and_then(|t| t.get(ANCHOR_KEY)) {
        None if epoch == 0 => Ok(()),
        None => Err(Refusal::Rollback),
        Some(stored) => match open_anchor(&u.index_key, &u.fields.vault_id, stored) {
            Some(found) if found >= epoch => Ok(()),
            _ => Err(Refusal::Rollback),
        },
    }
}

/// The library's error, when opening fails as `refusal` says it must.
pub(super) fn error_matches(e: &Error, refusal: Refusal) -> bool {
    match refusal {
        Refusal::Header(_) => matches!(e, Error::Damaged(Damage::Header { .. })),
        Refusal::V1Entry(_) => matches!(e, Error::Damaged(_) | Error::NotEmpty { .. }),
        Refusal::WrongKey => matches!(e, Error::WrongKey),
        Refusal::UnsupportedVersion => matches!(e, Error::UnsupportedVersion { .. }),
        Refusal::Rollback => matches!(e, Error::Damaged(Damage::Rollback { .. })),
    }
}

/// One format-2 entry of the entries tree, opened and checked (8.2 steps 2 to 7, the name
/// taken from the entry): its name and incarnation.
pub(super) fn open_listed(
    u: &Unlocked,
    id: &[u8],
    stored: &[u8],
) -> Result<(String, [u8; 16], EntryPlain), &'static str> {
    let (incarnation, plain) = open_entry(&u.ewks, &u.fields.vault_id, id, stored)?;
    if ns_id(&u.index_key, &plain.name) != id {
        return Err("the entry is filed under another name's id");
    }
    let name = String::from_utf8(plain.name.clone()).map_err(|_| "namespace name is not UTF-8")?;
    Ok((name, incarnation, plain))
}

/// What the entries tree lists: the names of the entries that open (sorted), and how many
/// entries do not. Keys that are not 32 bytes (the entry-key marker) are not entries.
pub(super) fn listing(
    u: &Unlocked,
    entries: Option<&BTreeMap<Vec<u8>, Vec<u8>>>,
) -> (Vec<String>, usize) {
    let mut names = Vec::new();
    let mut damaged = 0;
    for (key, stored) in entries.into_iter().flatten() {
        if key.len() != 32 {
            continue;
        }
        match open_listed(u, key, stored) {
            Ok((name, _, _)) => names.push(name),
            Err(_) => damaged += 1,
        }
    }
    names.sort();
    (names, damaged)
}
