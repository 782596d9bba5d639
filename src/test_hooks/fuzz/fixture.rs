//! The real vault the `open_vault` target edits (the fixture): its header and storage, its
//! keys and namespaces as the independent codec reads them, every value it wrote (the
//! ledger), and the targets' seed inputs.

// Test harness code: failing loudly on anything unexpected is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use super::*;

/// The raw key of the vault's first slot, and of a second raw slot.
pub const FIXTURE_KEY: [u8; 32] = [9u8; 32];
pub const FIXTURE_KEY_2: [u8; 32] = [8u8; 32];
/// The raw key the arbitrary-bytes half of `open_vault` tries (no vault has it).
pub const STRANGER_KEY: [u8; 32] = [7u8; 32];
pub(super) const FIXTURE_PASSPHRASE: &str = "fuzz fixture passphrase";
/// An entry-wrapping key no vault drew, which edits may wrap into the header and seal
/// entries under (its natural id: [`HARNESS_EWK_ID`]).
pub(super) const HARNESS_EWK: [u8; 32] = [0x5e; 32];
pub(super) const HARNESS_EWK_ID: u32 = 3;
/// The record keys the target reads in every namespace: the fixture's, and the one it
/// writes itself.
pub(super) const READ_KEYS: [&str; 5] = ["rs.example.org", "client-secret", "k", "g", "fuzz"];
/// Namespace names entries are built with: the fixture's, an unknown one, and names a
/// vault refuses (empty, a control character, too long, not UTF-8 once `0xff` is added).
pub(super) const NAMES: [&str; 7] = [
    "alpha",
    "beta",
    "gamma",
    "",
    "\u{e9}t\u{e9}",
    "\u{0}",
    "long",
];

/// A backend's contents: tree name -> key -> value.
pub(super) type Storage = BTreeMap<Vec<u8>, BTreeMap<Vec<u8>, Vec<u8>>>;

/// A value as written, to compare with what a read gives.
#[derive(Clone)]
pub(super) enum Value {
    Token(Token),
    Secret(Vec<u8>),
}

/// One value written to `key` of namespace `ns` while the namespace had `incarnation`.
#[derive(Clone)]
pub(super) struct Written {
    pub(super) ns: String,
    pub(super) key: String,
    pub(super) incarnation: [u8; 16],
    pub(super) value: Value,
}

/// A namespace of the fixture, as its entry opens.
#[derive(Clone)]
pub(super) struct KnownNs {
    pub(super) name: String,
    pub(super) id: [u8; 32],
    pub(super) incarnation: [u8; 16],
    pub(super) ewk_id: u32,
    pub(super) plain: EntryPlain,
    /// The stored entry.
    pub(super) entry: Vec<u8>,
}

impl KnownNs {
    /// `ns_id || incarnation`: the key of its manifest, the prefix of its records.
    pub(super) fn prefix(&self) -> Vec<u8> {
        let mut p = self.id.to_vec();
        p.extend_from_slice(&self.incarnation);
        p
    }
}

/// The fixture: a real format-2 vault and everything the target knows about it.
#[allow(missing_debug_implementations)]
pub struct Fixture {
    /// The real header file.
    pub header: Vec<u8>,
    /// Every tree and its entries.
    pub(super) storage: Storage,
    /// The header opened with [`FIXTURE_KEY`].
    pub(super) keys: Unlocked,
    /// The entry-wrapping key the shred retired (id 1), read from the header before it.
    pub(super) retired_ewk: (u32, [u8; 32]),
    /// The live namespaces `alpha`, `beta` and `gamma`, in that order.
    pub(super) namespaces: Vec<KnownNs>,
    /// `gamma`'s first incarnation (removed before the shred), its entry under the retired
    /// key, and its stored entry, manifest and records (tree, key, value).
    pub(super) old_gamma: KnownNs,
    pub(super) old_gamma_storage: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)>,
    /// The anchor of the first checkpoint (epoch 1, below the header's).
    pub(super) old_anchor: Vec<u8>,
    /// Every value the fixture wrote.
    pub(super) ledger: Vec<Written>,
}

pub fn raw_key(bytes: [u8; 32]) -> KeySource {
    KeySource::raw_key(SecretBox::new(Box::new(bytes)))
}

/// The real vault, built once per process: a raw slot (key 9), a passphrase slot (the
/// insecure test KDF, never derived by the target), a second raw slot (key 8); namespaces
/// `alpha` (a token and a secret), `beta` (a token, its data key rotated once) and `gamma`
/// (a token, checkpointed, removed, then after a shred created again with another token).
/// The header's epoch is 2 (a checkpoint, then the close's), its entry-wrapping key id 2.
pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| build_fixture().unwrap_or_else(|e| panic!("fixture: {e}")))
}

/// The token the fixture writes as the `n`th value of `key` in namespace `ns`.
pub(super) fn fixture_token(ns: &str, key: &str, n: u32) -> Token {
    Token::new(format!("access-{ns}-{key}-{n}").into())
        .with_refresh_token("refresh".into())
        .with_scopes(["openid", "transfer:all"])
        .with_resource_server(key)
}

/// Every tree of `storage` and its entries.
pub(super) fn snapshot(storage: &MemoryBackend) -> Result<Storage, String> {
    let mut out = Storage::new();
    for tree in storage.trees().map_err(|e| e.to_string())? {
        let entries = storage
            .scan(&tree, &[], None, usize::MAX)
            .map_err(|e| e.to_string())?;
        if !entries.is_empty() {
            out.insert(tree, entries.into_iter().collect());
        }
    }
    Ok(out)
}

/// A fresh backend holding `header` and `storage`.
pub(super) fn backend(header: &[u8], storage: &Storage) -> Result<MemoryBackend, String> {
    let backend = MemoryBackend::new();
    let mut batch = Batch::new();
    for (tree, entries) in storage {
        for (k, v) in entries {
            batch = batch.write(tree, k, Some(v.clone()));
        }
    }
    backend.apply(&batch).map_err(|e| e.to_string())?;
    backend
        .write_header(None, header)
        .map_err(|e| e.to_string())?;
    Ok(backend)
}

/// Builds the fixture (see [`fixture`]) and reads it back with the independent codec,
/// checking that the codec agrees with the library on every key, entry, record and the
/// anchor before it is used to judge the library.
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
    // (namespace, key, value) written before gamma's removal.
    let mut written: Vec<(&str, &str, Value)> = Vec::new();
    let mut put_token = |ns: &'static str, key: &'static str, n: u32| -> Result<(), String> {
        let token = fixture_token(ns, key, n);
        vault
            .namespace(ns)
            .map_err(e)?
            .put(key, &token)
            .map_err(e)?;
        written.push((ns, key, Value::Token(token)));
        Ok(())
    };
    put_token("alpha", "rs.example.org", 1)?;
    put_token("beta", "k", 1)?;
    put_token("gamma", "g", 1)?;
    let secret = b"s3cret-alpha".to_vec();
    vault
        .namespace("alpha")
        .map_err(e)?
        .put(
            "client-secret",
            &Secret::from_text(String::from_utf8_lossy(&secret).into_owned().into()),
        )
        .map_err(e)?;
    vault.rotate_namespace_key("beta", |_| {}).map_err(e)?;
    vault.checkpoint().map_err(e)?;
    let old_anchor = storage
        .get(MANIFESTS, ANCHOR_KEY)
        .map_err(|e| e.to_string())?
        .ok_or("no anchor after a checkpoint")?;
    let old_header = storage
        .read_header()
        .map_err(|e| e.to_string())?
        .ok_or("no header")?;
    let old_storage = snapshot(&storage)?;
    vault.remove_namespace("gamma").map_err(e)?;
    vault.shred(|_| {}).map_err(e)?;
    let token = fixture_token("gamma", "g", 2);
    vault
        .namespace("gamma")
        .map_err(e)?
        .put("g", &token)
        .map_err(e)?;
    vault.close().map_err(e)?;

    let header = storage
        .read_header()
        .map_err(|e| e.to_string())?
        .ok_or("no header")?;
    let stored = snapshot(&storage)?;
    let keys = unlock(&header, &FIXTURE_KEY).map_err(|r| format!("the header: {r:?}"))?;
    if keys.fields.encode() != header {
        return Err("the fixture header does not re-encode to itself".into());
    }
    let mut remac = header.clone();
    set_mac(&mut remac, &keys.vmk);
    if remac != header {
        return Err("the recomputed header MAC differs".into());
    }
    if keys.fields.version != V2 || keys.fields.epoch != 2 || keys.fields.active_ewk != 2 {
        return Err("the fixture header is not format 2 at epoch 2 under entry key 2".into());
    }
    anchor_admits(&keys, &stored).map_err(|r| format!("the anchor: {r:?}"))?;
    let old_keys = unlock(&old_header, &FIXTURE_KEY).map_err(|r| format!("old header: {r:?}"))?;
    let retired_ewk = *old_keys
        .ewks
        .iter()
        .find(|(id, _)| *id == 1)
        .ok_or("no entry key 1 before the shred")?;
    if open_anchor(&old_keys.index_key, &keys.fields.vault_id, &old_anchor) != Some(1) {
        return Err("the first checkpoint's anchor is not at epoch 1".into());
    }
    if stored.get(ENTRIES).and_then(|t| t.get(ANCHOR_KEY)) != Some(&marker(2)) {
        return Err("the entry-key marker does not name entry key 2".into());
    }
    let known = |u: &Unlocked, entries: &Storage| -> Result<Vec<KnownNs>, String> {
        let mut out = Vec::new();
        for (id, entry) in entries.get(ENTRIES).into_iter().flatten() {
            if id.len() != 32 {
                continue;
            }
            let (name, incarnation, plain) =
                open_listed(u, id, entry).map_err(|r| format!("an entry: {r}"))?;
            out.push(KnownNs {
                name,
                id: id.as_slice().try_into().map_err(|_| "id")?,
                incarnation,
                ewk_id: entry_clear(entry).ok_or("entry")?.1,
                plain,
                entry: entry.clone(),
            });
        }
        Ok(out)
    };
    let mut namespaces = known(&keys, &stored)?;
    namespaces.sort_by_key(|n| n.name.clone());
    if namespaces
        .iter()
        .map(|n| n.name.as_str())
        .collect::<Vec<_>>()
        != ["alpha", "beta", "gamma"]
    {
        return Err("the fixture's namespaces are not alpha, beta, gamma".into());
    }
    let old_gamma = known(&old_keys, &old_storage)?
        .into_iter()
        .find(|n| n.name == "gamma")
        .ok_or("gamma's first entry")?;
    if old_gamma.incarnation == namespaces[2].incarnation || old_gamma.ewk_id != 1 {
        return Err("gamma's first incarnation is not distinct, or not under entry key 1".into());
    }
    let mut old_gamma_storage = Vec::new();
    for (tree, entries) in &old_storage {
        for (k, v) in entries {
            if (tree == ENTRIES && *k == old_gamma.id)
                || ((tree == RECORDS || tree == MANIFESTS) && k.starts_with(&old_gamma.prefix()))
            {
                old_gamma_storage.push((tree.clone(), k.clone(), v.clone()));
            }
        }
    }
    let mut ledger = Vec::new();
    for (ns, key, value) in written {
        let incarnation = if ns == "gamma" {
            old_gamma.incarnation
        } else {
            namespaces
                .iter()
                .find(|n| n.name == ns)
                .ok_or("a written namespace")?
                .incarnation
        };
        ledger.push(Written {
            ns: ns.to_owned(),
            key: key.to_owned(),
            incarnation,
            value,
        });
    }
    ledger.push(Written {
        ns: "alpha".into(),
        key: "client-secret".into(),
        incarnation: namespaces[0].incarnation,
        value: Value::Secret(secret),
    });
    ledger.push(Written {
        ns: "gamma".into(),
        key: "g".into(),
        incarnation: namespaces[2].incarnation,
        value: Value::Token(token),
    });
    let fx = Fixture {
        header,
        storage: stored,
        keys,
        retired_ewk,
        namespaces,
        old_gamma,
        old_gamma_storage,
        old_anchor,
        ledger,
    };
    // Every record and manifest opens with the codec's AAD, and every live value is stored
    // under its record id: the codec agrees with the library before it judges it.
    for w in &fx.ledger {
        let ns = fx
            .all_namespaces()
            .into_iter()
            .find(|n| n.incarnation == w.incarnation);
        let mut key = ns.ok_or("a ledger incarnation")?.prefix();
        key.extend_from_slice(&record_id(
            &fx.keys.index_key,
            w.ns.as_bytes(),
            w.key.as_bytes(),
        ));
        let live = fx
            .storage
            .get(RECORDS)
            .is_some_and(|t| t.contains_key(&key));
        let old = fx
            .old_gamma_storage
            .iter()
            .any(|(t, k, _)| t == RECORDS && *k == key);
        if !live && !old {
            return Err(format!(
                "{}/{} is not stored under its record id",
                w.ns, w.key
            ));
        }
    }
    for (tree, k, v) in fx.storage_records() {
        decrypt_record(&fx, &tree, &k, &v)
            .ok_or_else(|| format!("a stored record of tree {tree:?} does not open"))?;
    }
    for (tree, k, v) in &fx.old_gamma_storage {
        if tree != ENTRIES {
            open_known_record(&fx.old_gamma, &fx.keys.fields.vault_id, tree, k, v)
                .ok_or("a record of gamma's first incarnation does not open")?;
        }
    }
    Ok(fx)
}

impl Fixture {
    /// The records and manifests of the fixture's storage: (tree, key, value).
    pub(super) fn storage_records(&self) -> Vec<(Vec<u8>, Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        for tree in [RECORDS, MANIFESTS] {
            for (k, v) in self.storage.get(tree).into_iter().flatten() {
                if k.len() >= 48 {
                    out.push((tree.to_vec(), k.clone(), v.clone()));
                }
            }
        }
        out
    }

    /// The entry-wrapping keys the target knows, each with its natural id: the header's
    /// (id 2), the retired one (id 1) and the harness's own.
    pub(super) fn known_ewks(&self) -> Vec<(u32, [u8; 32])> {
        let mut v = self.keys.ewks.clone();
        v.push(self.retired_ewk);
        v.push((HARNESS_EWK_ID, HARNESS_EWK));
        v
    }

    /// Every namespace incarnation the fixture made: the live ones, then `gamma`'s first.
    pub(super) fn all_namespaces(&self) -> Vec<&KnownNs> {
        self.namespaces
            .iter()
            .chain(std::iter::once(&self.old_gamma))
            .collect()
    }

    /// The `index`th data key of the live namespace `name`.
    pub(super) fn data_key(&self, name: &str, index: usize) -> Option<(u32, [u8; 32])> {
        let ns = self.namespaces.iter().find(|n| n.name == name)?;
        ns.plain
            .keys
            .get(index % ns.plain.keys.len().max(1))
            .copied()
    }
}

/// Opens a stored record (tree `r`) or manifest (tree `m`) of namespace incarnation `ns`
/// under vault id `vault_id`: its plaintext.
pub(super) fn open_known_record(
    ns: &KnownNs,
    vault_id: &[u8],
    tree: &[u8],
    key: &[u8],
    stored: &[u8],
) -> Option<Vec<u8>> {
    if !key.starts_with(&ns.prefix()) {
        return None;
    }
    let record_id = if tree == MANIFESTS {
        MANIFEST_ID
    } else {
        &key[48..]
    };
    let (_, key_id, _) = record_prefix(stored)?;
    open_record(
        ns.plain.key(key_id)?,
        &RecordPlace {
            vault_id,
            name: ns.name.as_bytes(),
            incarnation: Some(&ns.incarnation),
            record_id,
        },
        stored,
    )
}

/// The plaintext of a stored record or manifest of the fixture (sections 5.1 and 5.2).
pub(super) fn decrypt_record(
    fx: &Fixture,
    tree: &[u8],
    key: &[u8],
    stored: &[u8],
) -> Option<Vec<u8>> {
    fx.all_namespaces()
        .into_iter()
        .find_map(|ns| open_known_record(ns, &fx.keys.fields.vault_id, tree, key, stored))
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
    for (tree, k, v) in fx.storage_records() {
        if n < 4 {
            out.push(("record", format!("record-{n}"), v.clone()));
            n += 1;
        }
        if let Some(payload) = decrypt_record(fx, &tree, &k, &v) {
            let kind = match v.get(1) {
                Some(1) => "token",
                Some(2) => "secret",
                _ => "manifest",
            };
            let name = format!("{kind}-{}", out.iter().filter(|s| s.0 == "payload").count());
            out.push(("payload", name, payload));
        }
    }
    for (name, program) in seed_programs() {
        out.push(("open_vault", name.to_string(), program));
    }
    out
}
