//! The real vault the `open_vault` target mutates (the fixture), its keys and records, and
//! the target's seed inputs.

// Test harness code: failing loudly on anything unexpected is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;

// ---------------------------------------------------------------------------------------
// The real vault the open_vault target mutates.

/// The raw key of the vault's first slot, and of a second raw slot.
pub const FIXTURE_KEY: [u8; 32] = [9u8; 32];
pub const FIXTURE_KEY_2: [u8; 32] = [8u8; 32];
/// The raw key the arbitrary-bytes half of `open_vault` tries (no vault has it).
pub const STRANGER_KEY: [u8; 32] = [7u8; 32];
pub(super) const FIXTURE_PASSPHRASE: &str = "fuzz fixture passphrase";
/// The namespaces and records of the fixture.
pub(super) const FIXTURE_RECORDS: [(&str, &str); 3] = [
    ("alpha", "rs.example.org"),
    ("alpha", "client-secret"),
    ("beta", "k"),
];
pub(super) const NAMES: [&str; 7] = [
    "alpha",
    "beta",
    "gamma",
    "",
    "\u{e9}t\u{e9}",
    "\u{0}",
    "long",
];

/// A tree's name and its `(key, value)` entries.
pub(super) type Tree = (Vec<u8>, Vec<(Vec<u8>, Vec<u8>)>);
/// A namespace's name, active key id and `(key id, key)` list.
pub(super) type NsKeys = (String, u32, Vec<(u32, [u8; 32])>);

#[allow(missing_debug_implementations)]
pub struct Fixture {
    /// The real header file.
    pub header: Vec<u8>,
    pub(super) fields: HeaderFields,
    /// Every tree and its entries.
    pub trees: Vec<Tree>,
    pub(super) vmk: [u8; 32],
    pub(super) index_key: [u8; 32],
    /// Each namespace's name, active key id and keys, as decrypted from the header.
    pub(super) ns_keys: Vec<NsKeys>,
    /// Whether namespace entries carry a `floor u64` after their keys (the generation the
    /// header last recorded), and the fixture's floors.
    pub(super) floor_field: bool,
    pub(super) floors: Vec<u64>,
}

pub fn raw_key(bytes: [u8; 32]) -> KeySource {
    KeySource::raw_key(SecretBox::new(Box::new(bytes)))
}

/// The real vault, built once per process: a raw slot (key 9), a passphrase slot (the
/// insecure test KDF, never derived by the target), a second raw slot (key 8), namespaces
/// `alpha` (a token and a secret) and `beta` (a token, its data key rotated once).
pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| build_fixture().unwrap_or_else(|e| panic!("fixture: {e}")))
}

pub(super) fn build_fixture() -> Result<Fixture, String> {
    let e = |e: Error| e.to_string();
    let storage = MemoryBackend::new();
    let options = VaultOptions::new().kdf(KdfParams::insecure_for_tests());
    let vault = options
        .create_with_backend(storage.clone(), &raw_key(FIXTURE_KEY))
        .map_err(e)?;
    vault
        .add_keyslot(&KeySource::passphrase(SecretString::from(
            FIXTURE_PASSPHRASE,
        )))
        .map_err(e)?;
    vault.add_keyslot(&raw_key(FIXTURE_KEY_2)).map_err(e)?;
    for (ns, key) in FIXTURE_RECORDS {
        let ns = vault.namespace(ns).map_err(e)?;
        if key == "client-secret" {
            ns.put(key, &Secret::from_text("s3cret".into()))
                .map_err(e)?;
        } else {
            let token = Token::new(format!("access-{key}").into())
                .with_refresh_token("refresh".into())
                .with_scopes(["openid", "transfer:all"])
                .with_resource_server(key);
            ns.put(key, &token).map_err(e)?;
        }
    }
    vault.rotate_namespace_key("beta", |_| {}).map_err(e)?;
    vault.close().map_err(e)?;

    let header = storage
        .read_header()
        .map_err(|e| e.to_string())?
        .ok_or("no header")?;
    let mut trees = Vec::new();
    for tree in storage.trees().map_err(|e| e.to_string())? {
        let entries = storage
            .scan(&tree, None, usize::MAX)
            .map_err(|e| e.to_string())?;
        trees.push((tree, entries));
    }
    let fields = HeaderFields::parse(&header).ok_or("the fixture header does not parse")?;
    if fields.encode() != header {
        return Err("the fixture header does not re-encode to itself".into());
    }
    // Unwrap the VMK from the first slot (section 4.2, 4.3).
    let slot = &fields.slots[0];
    let salt = slot.params.get(1..).ok_or("slot params")?;
    let kek = raw_kek(&FIXTURE_KEY, salt);
    let aad = slot_aad(&fields.vault_id, slot.id, slot.kind, &slot.params);
    let vmk: [u8; 32] = open(&kek, &aad, &slot.wrapped)
        .ok_or("the VMK does not unwrap")?
        .try_into()
        .map_err(|_| "VMK length")?;
    let mut remac = header.clone();
    set_mac(&mut remac, &vmk);
    if remac != header {
        return Err("the recomputed header MAC differs".into());
    }
    let k_wrap = hkdf(&fields.vault_id, &vmk, WRAP_LABEL);
    let index_key: [u8; 32] = open(
        &k_wrap,
        &index_key_aad(&fields.vault_id),
        &fields.wrapped_index_key,
    )
    .ok_or("the index key does not unwrap")?
    .try_into()
    .map_err(|_| "index key length")?;
    let mut ns_keys = Vec::new();
    let mut floors = Vec::new();
    for (id, blob) in &fields.namespaces {
        let plain =
            open(&k_wrap, &ns_aad(&fields.vault_id, id), blob).ok_or("a namespace entry")?;
        let mut c = Cursor(&plain);
        let name_len = usize::from(c.u16().ok_or("entry")?);
        let name = String::from_utf8(c.take(name_len).ok_or("entry")?.to_vec())
            .map_err(|_| "entry name")?;
        if ns_id(&index_key, name.as_bytes()) != *id {
            return Err("a recomputed namespace id differs".into());
        }
        let active = c.u32().ok_or("entry")?;
        let count = c.u16().ok_or("entry")?;
        let mut keys = Vec::new();
        for _ in 0..count {
            keys.push((c.u32().ok_or("entry")?, c.arr::<32>().ok_or("entry")?));
        }
        // A namespace's generation starts at a random point, so a recorded floor is never 0.
        floors.push(c.u64().unwrap_or(0));
        ns_keys.push((name, active, keys));
    }
    let floor_field = floors.iter().all(|&f| f != 0);
    Ok(Fixture {
        header,
        fields,
        trees,
        vmk,
        index_key,
        ns_keys,
        floor_field,
        floors,
    })
}

impl Fixture {
    pub(super) fn k_wrap(&self, vault_id: &[u8]) -> [u8; 32] {
        hkdf(vault_id, &self.vmk, WRAP_LABEL)
    }

    /// A fresh backend holding `header` and the fixture's records.
    pub(super) fn backend(&self, header: &[u8]) -> Result<MemoryBackend, String> {
        let storage = MemoryBackend::new();
        let mut batch = Batch::new();
        for (tree, entries) in &self.trees {
            for (k, v) in entries {
                batch = batch.write(tree, k, Some(v.clone()));
            }
        }
        storage.apply(&batch).map_err(|e| e.to_string())?;
        storage
            .write_header(None, header)
            .map_err(|e| e.to_string())?;
        Ok(storage)
    }

    pub(super) fn data_key(&self, name: &str, index: usize) -> Option<(u32, [u8; 32])> {
        let (_, _, keys) = self.ns_keys.iter().find(|(n, _, _)| n == name)?;
        keys.get(index % keys.len().max(1)).copied()
    }
}

// ---------------------------------------------------------------------------------------
// Seeds

/// Small inputs for each target, from the fixture vault (header, sealed records, and
/// payloads decrypted from its records), written by the `generate_seeds` test.
pub fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let fx = fixture();
    let mut out = Vec::new();
    out.push(("header", "real-header".to_string(), fx.header.clone()));
    let mut truncated = fx.header.clone();
    truncated.truncate(200);
    out.push((
        "header",
        "real-header-truncated-fixed".to_string(),
        fix_framing(&truncated).unwrap_or_default(),
    ));
    out.push(("open_vault", "real-header".to_string(), fx.header.clone()));
    let mut n = 0;
    for (tree, entries) in &fx.trees {
        for (k, v) in entries {
            if n < 4 {
                out.push(("record", format!("record-{n}"), v.clone()));
                n += 1;
            }
            if let Some(payload) = decrypt_record(fx, tree, k, v) {
                let kind = match v.get(1) {
                    Some(1) => "token",
                    Some(2) => "secret",
                    _ => "manifest",
                };
                let name = format!("{kind}-{}", out.iter().filter(|s| s.0 == "payload").count());
                out.push(("payload", name, payload));
            }
        }
    }
    // open_vault programs: flags, then edits (see `edit`).
    let programs: [(&str, Vec<u8>); 8] = [
        ("unmodified", vec![0]),
        ("unmodified-key2", vec![8]),
        ("remac-seqid", vec![7, 0, 1, 2, 3, 4, 5, 6, 7, 8]),
        ("no-remac-xor", vec![3, 14, 40, 0, 1]),
        ("remac-structured-alpha", vec![7, 7, 0, 1, 0, 0, 0, 0, 0]),
        ("remac-raw-slot-first", vec![7, 1, 240, 2, 3, 1, 0x82, 0]),
        ("remac-rebind", {
            let mut v = vec![7, 13];
            v.extend_from_slice(&[0x21; 16]);
            v
        }),
        ("remac-drop-ns", vec![7, 8, 1, 12, 0, 1]),
    ];
    for (name, program) in programs {
        out.push(("open_vault", name.to_string(), program));
    }
    out
}

/// The plaintext of a stored record of the fixture (docs/format.md 5.1, 5.2).
pub(super) fn decrypt_record(
    fx: &Fixture,
    tree: &[u8],
    rid: &[u8],
    stored: &[u8],
) -> Option<Vec<u8>> {
    let (i, _) = fx
        .fields
        .namespaces
        .iter()
        .enumerate()
        .find(|(_, (id, _))| id.as_slice() == tree)?;
    let (name, _, keys) = &fx.ns_keys[i];
    let key_id = u32::from_le_bytes(stored.get(2..6)?.try_into().ok()?);
    let (_, key) = keys.iter().find(|(id, _)| *id == key_id)?;
    let mut aad = Vec::new();
    lp(&mut aad, b"tokenvault/v1/record");
    aad.push(1);
    lp(&mut aad, &fx.fields.vault_id);
    lp(&mut aad, name.as_bytes());
    lp(&mut aad, rid);
    aad.extend_from_slice(stored.get(1..2)?);
    aad.extend_from_slice(stored.get(2..14)?);
    open(key, &aad, stored.get(14..)?)
}
