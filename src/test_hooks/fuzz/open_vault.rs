//! The `open_vault` target: arbitrary bytes as a header (they must not open), then the real
//! vault of the fixture edited by a program read from the input (`edits`), opened, checked
//! against the independent reader (`decoder`) and exercised.

// Test harness code: failing loudly on anything unexpected is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;

/// `open_vault`: arbitrary bytes as a header must not open with a key no vault has. Then the
/// fixture vault, its header and storage edited by the program the input describes, is
/// opened with a fixture key. Whatever the program, nothing panics and:
///
/// - the unedited vault opens; a header edited without its MAC recomputed does not;
/// - opening succeeds exactly when the format admits the vault (section 8.1, the anchor
///   included), and fails with the error class the format gives (format 1: the upgrade
///   reads storage too, so only a header the format refuses must fail, as Damaged);
/// - after opening, storage holds the entry-key marker of the header's active entry key
///   and an authentic anchor at or above its epoch (an upgrade's header holds the derived
///   entry-wrapping key, epoch 0);
/// - the namespaces the vault lists, `namespaces_page` and `verify` report are exactly the
///   entries that open and belong to their ids (section 8.2), and the damaged entries are
///   counted;
/// - every value a read gives, and every key a listing gives, was written to that key of
///   that namespace while it had the incarnation its stored entry names: never another
///   key's, namespace's or incarnation's (so an entry re-sealed with another incarnation
///   yields no records), and a value just written reads back;
/// - errors are typed: no backend error (the memory backend does not fail), no `Reopen`
///   or `Closed` from a single handle; `verify` reports instead of failing; the vault
///   closes (unless its epoch is exhausted), reopens with the same namespaces, and the same
///   checks hold again; purging orphans loses no readable value.
pub fn check_open_vault(data: &[u8]) -> Result<(), String> {
    stranger_must_fail(data)?;
    if let Some(fixed) = fix_framing(data) {
        stranger_must_fail(&fixed).map_err(|e| format!("(framing fixed) {e}"))?;
    }
    edited_real_vault(data)
}

pub(super) fn stranger_must_fail(header: &[u8]) -> Result<(), String> {
    let storage = MemoryBackend::new();
    storage
        .write_header(None, header)
        .map_err(|e| e.to_string())?;
    match Vault::open_with_backend(storage, &raw_key(STRANGER_KEY)) {
        Ok(_) => Err("arbitrary header bytes opened with a key no vault has".into()),
        Err(
            Error::Damaged(Damage::Header { .. })
            | Error::WrongKey
            | Error::UnsupportedVersion { .. },
        ) => Ok(()),
        Err(other) => Err(format!(
            "unexpected error opening a header: {other:?} ({other})"
        )),
    }
}

/// What the format says of opening an edited vault, when it does not refuse it.
enum Verdict {
    /// A format-2 header that unlocks, with an anchor that admits it: it opens.
    Opens,
    /// A format-1 header that unlocks (here opened, its namespace entries too): whether its
    /// upgrade succeeds depends on storage.
    Upgrade(Box<Unlocked>),
}

/// What the format says opening the edited vault must give.
fn judge(ed: &Edited) -> Result<Verdict, Refusal> {
    let unlocked = unlock(&ed.file, &ed.key)?;
    if unlocked.fields.version == V1 {
        return Ok(Verdict::Upgrade(Box::new(unlocked)));
    }
    anchor_admits(&unlocked, &ed.storage)?;
    Ok(Verdict::Opens)
}

pub(super) fn edited_real_vault(data: &[u8]) -> Result<(), String> {
    let fx = fixture();
    let ed = run_program(data);
    let storage = backend(&ed.file, &ed.storage)?;
    let pristine = ed.file == fx.header && ed.storage == fx.storage;
    let judged = judge(&ed);
    match Vault::open_with_backend(storage.clone(), &raw_key(ed.key)) {
        Err(e) if pristine => Err(format!("the unedited vault does not open: {e}")),
        Err(e) => match judged {
            Ok(Verdict::Opens) => Err(format!(
                "the format admits this vault but opening failed: {e:?} ({e})"
            )),
            Ok(Verdict::Upgrade(_)) if matches!(e, Error::Damaged(_) | Error::NotEmpty { .. }) => {
                Ok(())
            }
            Ok(Verdict::Upgrade(_)) => {
                Err(format!("unexpected error upgrading format 1: {e:?} ({e})"))
            }
            Err(refusal) if error_matches(&e, refusal) => Ok(()),
            Err(refusal) => Err(format!(
                "opening failed with {e:?} ({e}) where the format says {refusal:?}"
            )),
        },
        Ok(_) if ed.file != fx.header && !ed.fix_mac => {
            Err("an edited header opened although its MAC was not recomputed".into())
        }
        Ok(_) if judged.is_err() => Err(format!(
            "the vault opened although the format refuses it: {:?}",
            judged.err()
        )),
        Ok(vault) => {
            let upgraded = match judged {
                Ok(Verdict::Upgrade(v1)) => Some(*v1),
                _ => None,
            };
            Exercise {
                storage,
                key: ed.key,
                ledger: ed.ledger,
            }
            .run(vault, upgraded.as_ref())
        }
    }
}

/// What opening the edited vault of an `open_vault` input gives, for diagnosis.
pub fn explain_open_vault(data: &[u8]) -> String {
    let fx = fixture();
    let ed = run_program(data);
    let opened = backend(&ed.file, &ed.storage)
        .and_then(|s| Vault::open_with_backend(s, &raw_key(ed.key)).map_err(|e| format!("{e:?}")));
    let mut changed_trees: Vec<String> = ed
        .storage
        .keys()
        .chain(fx.storage.keys())
        .filter(|t| ed.storage.get(*t) != fx.storage.get(*t))
        .map(|t| match std::str::from_utf8(t) {
            Ok(name) if t.len() < 32 => name.to_owned(),
            _ => format!("<{}-byte name>", t.len()),
        })
        .collect();
    changed_trees.sort();
    changed_trees.dedup();
    format!(
        "{} bytes (real: {}), header unchanged: {}, MAC recomputed: {}, trees changed: {:?}, \
         format says: {}, open: {}",
        ed.file.len(),
        fx.header.len(),
        ed.file == fx.header,
        ed.fix_mac,
        changed_trees,
        match judge(&ed) {
            Ok(Verdict::Opens) => "opens".to_string(),
            Ok(Verdict::Upgrade(_)) => "format 1, upgrade".to_string(),
            Err(r) => format!("{r:?}"),
        },
        match opened {
            Ok(v) => match v.namespaces() {
                Ok(names) => format!("Ok, namespaces {names:?}"),
                Err(e) => format!("Ok, namespaces: {e:?}"),
            },
            Err(e) => e,
        }
    )
}

/// An error an operation on an open vault may give: anything typed, except what a single
/// handle on a memory backend never causes (a backend error, `Reopen`, `Closed`), and a
/// checkpoint whose epoch is exhausted (an anchor or header forged at `u64::MAX`).
fn typed(what: &str, e: &Error) -> Result<(), String> {
    match e {
        Error::Backend(_) if e.to_string().contains("epoch exhausted") => Ok(()),
        Error::Backend(_) | Error::Reopen | Error::Closed => {
            Err(format!("{what}: unexpected error {e:?} ({e})"))
        }
        _ => Ok(()),
    }
}

/// Checks `result`'s error with [`typed`]; the value if there is one.
fn checked<T>(what: &str, result: Result<T, Error>) -> Result<Option<T>, String> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(e) => typed(what, &e).map(|()| None),
    }
}

/// One read's outcome, for comparing reads before and after a purge.
#[derive(PartialEq, Eq, Debug)]
enum Seen {
    Nothing,
    Failed,
    /// The value, by its access token or secret bytes.
    Value(Vec<u8>),
}

/// The checks on an opened vault (see [`check_open_vault`]).
struct Exercise {
    storage: MemoryBackend,
    key: [u8; 32],
    /// Every value written: a read may give only one of these.
    ledger: Vec<Written>,
}

impl Exercise {
    fn run(mut self, vault: Vault, upgraded: Option<&Unlocked>) -> Result<(), String> {
        let keys = self.after_open(upgraded)?;
        let names = self.listing_agrees(&vault)?;
        let targets = |names: &[String]| -> Vec<String> {
            let mut all: Vec<String> = names.to_vec();
            for extra in ["alpha", "beta", "gamma", "new"] {
                if !all.iter().any(|n| n == extra) {
                    all.push(extra.to_owned());
                }
            }
            all
        };
        self.read_all(&vault, &keys, &targets(&names))?;
        for name in targets(&names) {
            self.write_some(&vault, &keys, &name)?;
        }
        let names = self.listing_agrees(&vault)?;
        for name in &names {
            checked(
                "rotate_namespace_key",
                vault.rotate_namespace_key(name, |_| {}),
            )?;
        }
        checked("keyslots", vault.keyslots())?;
        checked("rotate_master_key", vault.rotate_master_key())?;
        checked("add_keyslot", vault.add_keyslot(&raw_key([6u8; 32])))?;
        checked("remove_namespace", vault.remove_namespace("gamma"))?;
        checked("shred", vault.shred(|_| {}))?;
        let before = self.read_all(&vault, &keys, &targets(&names))?;
        checked("purge_orphans", vault.purge_orphans())?;
        let after = self.read_all(&vault, &keys, &targets(&names))?;
        if before != after {
            return Err(format!(
                "purging orphans changed what reads give: {before:?} then {after:?}"
            ));
        }
        checked("checkpoint", vault.checkpoint())?;
        let names = self.listing_agrees(&vault)?;
        let exhausted = self.epoch_exhausted();
        match vault.close() {
            Err(e) if !exhausted => return Err(format!("close: {e:?} ({e})")),
            _ => {}
        }
        let again =
            Vault::open_with_backend(self.storage.clone(), &raw_key(self.key)).map_err(|e| {
                format!("a vault this library opened and changed does not reopen: {e:?} ({e})")
            })?;
        let keys = self.after_open(None)?;
        let names_again = self.listing_agrees(&again)?;
        if names_again != names {
            return Err(format!(
                "namespaces changed across a reopen: {names:?} then {names_again:?}"
            ));
        }
        self.read_all(&again, &keys, &targets(&names))?;
        again
            .close()
            .map_err(|e| format!("close after reopening: {e}"))
    }

    /// What must hold of storage once a vault opened: a format-2 header that unlocks with
    /// the key, the marker naming its active entry key, an authentic anchor at or above
    /// its epoch. After an upgrade of `upgraded` (section 12): the derived entry-wrapping
    /// key (id 1) alone, epoch 0, and every namespace of the format-1 header in the entries
    /// tree with its name, the incarnation derived from its id and its active key alone.
    fn after_open(&self, upgraded: Option<&Unlocked>) -> Result<Unlocked, String> {
        let keys = self.current_keys()?;
        let f = &keys.fields;
        if f.version != V2 {
            return Err("an open vault's header is not format 2".into());
        }
        let storage = snapshot(&self.storage)?;
        let stored_marker = storage.get(ENTRIES).and_then(|t| t.get(ANCHOR_KEY));
        if stored_marker != Some(&marker(f.active_ewk)) {
            return Err(format!(
                "after opening, the entry-key marker is {stored_marker:?}, not entry key {}",
                f.active_ewk
            ));
        }
        let anchor = storage.get(MANIFESTS).and_then(|t| t.get(ANCHOR_KEY));
        match anchor.and_then(|a| open_anchor(&keys.index_key, &f.vault_id, a)) {
            Some(epoch) if epoch >= f.epoch => {}
            other => {
                return Err(format!(
                    "after opening, the anchor is at {other:?}, the header's epoch {}",
                    f.epoch
                ))
            }
        }
        if let Some(v1) = upgraded {
            let derived = upgrade_ewk(&keys.vmk, &f.vault_id);
            if keys.ewks != [(1, derived)] || f.active_ewk != 1 || f.epoch != 0 {
                return Err("the upgraded header does not hold the derived entry key 1".into());
            }
            for (id, old) in &v1.v1_entries {
                let stored = storage
                    .get(ENTRIES)
                    .and_then(|t| t.get(id.as_slice()))
                    .ok_or("an upgraded namespace has no entry")?;
                let (name, incarnation, new) = open_listed(&keys, id, stored)
                    .map_err(|r| format!("an upgraded namespace's entry does not open: {r}"))?;
                let active = old.key(old.active).map(|k| vec![(old.active, *k)]);
                if name.as_bytes() != old.name
                    || incarnation != upgrade_incarnation(&keys.index_key, id)
                    || new.active != old.active
                    || Some(new.keys) != active
                {
                    return Err(format!(
                        "namespace {name:?} was upgraded into another entry than section 12 says"
                    ));
                }
            }
        }
        Ok(keys)
    }

    /// The keys of the header storage holds now (a master-key rotation or a shred changes
    /// them).
    fn current_keys(&self) -> Result<Unlocked, String> {
        let file = self
            .storage
            .read_header()
            .map_err(|e| e.to_string())?
            .ok_or("no header")?;
        unlock(&file, &self.key)
            .map_err(|r| format!("the header of an open vault does not unlock: {r:?}"))
    }

    /// The vault's namespace listings and `verify` against the independent listing of the
    /// entries tree; returns the names.
    fn listing_agrees(&self, vault: &Vault) -> Result<Vec<String>, String> {
        let keys = self.current_keys()?;
        let storage = snapshot(&self.storage)?;
        let (expected, damaged) = listing(&keys, storage.get(ENTRIES));
        let names = vault.namespaces().map_err(|e| format!("namespaces: {e}"))?;
        if names != expected {
            return Err(format!(
                "the vault lists {names:?}, the entries that open are {expected:?}"
            ));
        }
        let page = vault
            .namespaces_page(None, 4096)
            .map_err(|e| format!("namespaces_page: {e}"))?;
        let mut paged = page.names.clone();
        paged.sort();
        if paged != expected || page.damaged != damaged || page.next.is_some() {
            return Err(format!(
                "namespaces_page gives {paged:?} and {} damaged, the entries tree {expected:?} \
                 and {damaged} damaged",
                page.damaged
            ));
        }
        let report = vault
            .verify(|_| {})
            .map_err(|e| format!("verify failed instead of reporting: {e}"))?;
        let verified: Vec<String> = report
            .namespaces
            .iter()
            .map(|n| n.namespace.clone())
            .collect();
        if verified != expected || report.damaged_entries.len() != damaged {
            return Err(format!(
                "verify reports {verified:?} and {} damaged entries, the entries tree \
                 {expected:?} and {damaged}",
                report.damaged_entries.len()
            ));
        }
        Ok(names)
    }

    /// The incarnation namespace `name`'s stored entry names now (its clear field).
    fn incarnation(&self, keys: &Unlocked, name: &str) -> Option<[u8; 16]> {
        let id = ns_id(&keys.index_key, name.as_bytes());
        let stored = self.storage.get(ENTRIES, &id).ok()??;
        entry_clear(&stored).map(|c| c.2)
    }

    /// Whether `value`, read from `key` of namespace `name`, was written there while the
    /// namespace had the incarnation its entry names now.
    fn was_written(&self, keys: &Unlocked, name: &str, key: &str, value: &Value) -> bool {
        let Some(incarnation) = self.incarnation(keys, name) else {
            return false;
        };
        self.ledger.iter().any(|w| {
            w.ns == name
                && w.key == key
                && w.incarnation == incarnation
                && match (&w.value, value) {
                    (Value::Token(a), Value::Token(b)) => a.same_as(b),
                    (Value::Secret(a), Value::Secret(b)) => a == b,
                    _ => false,
                }
        })
    }

    /// Reads every key of [`READ_KEYS`] as a token and as a secret, and lists the keys, in
    /// each namespace of `names`; checks every value and key against the ledger.
    fn read_all(
        &self,
        vault: &Vault,
        keys: &Unlocked,
        names: &[String],
    ) -> Result<Vec<(String, String, Seen, Seen)>, String> {
        let mut seen = Vec::new();
        for name in names {
            let Ok(ns) = vault.namespace(name) else {
                continue;
            };
            if let Some(listed) = checked("keys", ns.keys())? {
                let incarnation = self.incarnation(keys, name);
                for key in listed {
                    let known = self.ledger.iter().any(|w| {
                        w.ns == *name && w.key == key && Some(w.incarnation) == incarnation
                    });
                    if !known {
                        return Err(format!(
                            "namespace {name:?} lists key {key:?}, never written in its incarnation"
                        ));
                    }
                }
            }
            for key in READ_KEYS {
                let token = match checked("get token", ns.get::<Token>(key))? {
                    None => Seen::Failed,
                    Some(None) => Seen::Nothing,
                    Some(Some(t)) => {
                        let seen = t.access_token().expose_secret().as_bytes().to_vec();
                        if !self.was_written(keys, name, key, &Value::Token(t)) {
                            return Err(format!(
                                "namespace {name:?} key {key:?} gave a token never written there \
                                 in its incarnation"
                            ));
                        }
                        Seen::Value(seen)
                    }
                };
                let secret = match checked("get secret", ns.get_versioned::<Secret>(key))? {
                    None => Seen::Failed,
                    Some(None) => Seen::Nothing,
                    Some(Some((s, _))) => {
                        let bytes = s.expose_bytes().to_vec();
                        if !self.was_written(keys, name, key, &Value::Secret(bytes.clone())) {
                            return Err(format!(
                                "namespace {name:?} key {key:?} gave a secret never written \
                                 there in its incarnation"
                            ));
                        }
                        Seen::Value(bytes)
                    }
                };
                seen.push((name.clone(), key.to_owned(), token, secret));
            }
        }
        Ok(seen)
    }

    /// Writes in namespace `name`: a compare-and-swap of `rs.example.org`, a put of `fuzz`
    /// (which must read back), a removal of `k`. Every value written joins the ledger.
    fn write_some(&mut self, vault: &Vault, keys: &Unlocked, name: &str) -> Result<(), String> {
        let Ok(ns) = vault.namespace(name) else {
            return Ok(());
        };
        let n = self.ledger.len();
        if let Some(Some((_, v))) =
            checked("get_versioned", ns.get_versioned::<Token>("rs.example.org"))?
        {
            let token = fixture_token(name, "rs.example.org", u32::try_from(n).unwrap_or(0));
            if let Some(Ok(_)) = checked(
                "compare_and_swap",
                ns.compare_and_swap("rs.example.org", Some(v), &token),
            )? {
                self.note(keys, name, "rs.example.org", Value::Token(token))?;
            }
        }
        let token = fixture_token(name, "fuzz", u32::try_from(n).unwrap_or(0));
        if checked("put", ns.put("fuzz", &token))?.is_some() {
            self.note(keys, name, "fuzz", Value::Token(token.clone()))?;
            match ns.get::<Token>("fuzz") {
                Ok(Some(back)) if back.same_as(&token) => {}
                other => {
                    return Err(format!(
                        "namespace {name:?}: a value just written reads back as {:?}",
                        other.map(|t| t.is_some())
                    ))
                }
            }
        }
        checked("remove", ns.remove("k"))?;
        Ok(())
    }

    /// Adds a value just written to the ledger, under the incarnation its namespace's
    /// entry names now.
    fn note(&mut self, keys: &Unlocked, name: &str, key: &str, value: Value) -> Result<(), String> {
        let incarnation = self
            .incarnation(keys, name)
            .ok_or_else(|| format!("namespace {name:?} was written but has no entry"))?;
        self.ledger.push(Written {
            ns: name.to_owned(),
            key: key.to_owned(),
            incarnation,
            value,
        });
        Ok(())
    }

    /// Whether the anchor or the header is at the last epoch, so that no checkpoint can
    /// raise it.
    fn epoch_exhausted(&self) -> bool {
        let file = self
            .storage
            .read_header()
            .ok()
            .flatten()
            .unwrap_or_default();
        let Ok(keys) = unlock(&file, &self.key) else {
            return false;
        };
        let anchor = self.storage.get(MANIFESTS, ANCHOR_KEY).ok().flatten();
        keys.fields.epoch == u64::MAX
            || anchor
                .and_then(|a| open_anchor(&keys.index_key, &keys.fields.vault_id, &a))
                .is_some_and(|e| e == u64::MAX)
    }
}
