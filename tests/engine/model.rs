//! Model-based property test: random operation sequences run against the real vault on disk
//! (sled, durable writes, close and reopen) and against a plain in-memory model; after every
//! step the vault's answers must equal the model's.
//!
//! 256 cases by default; `PROPTEST_CASES=5000 cargo test --test model` for a longer run.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use proptest::prelude::*;
use support::fast;
use tokenvault::secrecy::{ExposeSecret, SecretBox, SecretString};
use tokenvault::{Error, KeySource, Secret, Token, Vault, Version};

const NAMESPACES: [&str; 3] = ["tenant-a", "tenant/ü-b", "c"];
const KEYS: [&str; 4] = ["transfer.api.example.org", "auth", "k/ß", "client-secret"];

#[derive(Clone, Debug)]
enum Op {
    Put {
        ns: usize,
        key: usize,
        value: u16,
        secret: bool,
    },
    Get {
        ns: usize,
        key: usize,
        as_secret: bool,
    },
    Remove {
        ns: usize,
        key: usize,
    },
    /// Compare-and-swap expecting the current version, a stale one, or absence.
    Cas {
        ns: usize,
        key: usize,
        expect: Expect,
        value: u16,
    },
    CompareAndRemove {
        ns: usize,
        key: usize,
        current: bool,
    },
    Keys {
        ns: usize,
    },
    Namespaces,
    RemoveNamespace {
        ns: usize,
    },
    ChangeSecret {
        slot: usize,
        fresh: u16,
    },
    AddKeyslot {
        passphrase: bool,
        fresh: u16,
    },
    RemoveKeyslot {
        slot: usize,
    },
    RotateNamespace {
        ns: usize,
    },
    RotateMasterKey,
    Reopen {
        slot: usize,
    },
    Verify,
}

#[derive(Clone, Copy, Debug)]
enum Expect {
    Current,
    Stale,
    Absent,
}

fn op() -> impl Strategy<Value = Op> {
    let ns = 0..NAMESPACES.len();
    let key = 0..KEYS.len();
    prop_oneof![
        6 => (ns.clone(), key.clone(), any::<u16>(), prop::bool::weighted(0.2))
            .prop_map(|(ns, key, value, secret)| Op::Put { ns, key, value, secret }),
        4 => (ns.clone(), key.clone(), prop::bool::weighted(0.2))
            .prop_map(|(ns, key, as_secret)| Op::Get { ns, key, as_secret }),
        2 => (ns.clone(), key.clone()).prop_map(|(ns, key)| Op::Remove { ns, key }),
        4 => (
            ns.clone(),
            key.clone(),
            prop_oneof![Just(Expect::Current), Just(Expect::Stale), Just(Expect::Absent)],
            any::<u16>()
        )
            .prop_map(|(ns, key, expect, value)| Op::Cas { ns, key, expect, value }),
        1 => (ns.clone(), key.clone(), any::<bool>())
            .prop_map(|(ns, key, current)| Op::CompareAndRemove { ns, key, current }),
        2 => ns.clone().prop_map(|ns| Op::Keys { ns }),
        1 => Just(Op::Namespaces),
        1 => ns.clone().prop_map(|ns| Op::RemoveNamespace { ns }),
        1 => (0..4usize, any::<u16>()).prop_map(|(slot, fresh)| Op::ChangeSecret { slot, fresh }),
        1 => (any::<bool>(), any::<u16>())
            .prop_map(|(passphrase, fresh)| Op::AddKeyslot { passphrase, fresh }),
        1 => (0..4usize).prop_map(|slot| Op::RemoveKeyslot { slot }),
        1 => ns.prop_map(|ns| Op::RotateNamespace { ns }),
        1 => Just(Op::RotateMasterKey),
        2 => (0..4usize).prop_map(|slot| Op::Reopen { slot }),
        1 => Just(Op::Verify),
    ]
}

/// A secret that unlocks a slot, by kind and seed, so the model can rebuild key sources.
#[derive(Clone, Copy, Debug, PartialEq)]
enum SlotSecret {
    Passphrase(u16),
    Raw(u16),
}

impl SlotSecret {
    fn source(self) -> KeySource {
        match self {
            Self::Passphrase(n) => KeySource::passphrase(SecretString::from(format!("pass-{n}"))),
            Self::Raw(n) => {
                let mut key = [0u8; 32];
                key[..2].copy_from_slice(&n.to_le_bytes());
                key[31] = 0xA5;
                KeySource::raw_key(SecretBox::new(Box::new(key)))
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Value {
    Token(u16),
    Secret(u16),
}

#[derive(Default)]
struct Model {
    /// namespace -> key -> (value, version)
    data: BTreeMap<usize, BTreeMap<usize, (Value, Version)>>,
    /// Namespaces that exist (written and not removed), even if empty.
    namespaces: BTreeMap<usize, ()>,
    /// Keyslots: (id, secret).
    slots: Vec<(u32, SlotSecret)>,
    /// Versions seen before, to use as stale expectations.
    old_versions: Vec<Version>,
    /// Slot secrets known to the current handle (opened with, added, or changed through it).
    known: Vec<u32>,
}

fn token(v: u16) -> Token {
    Token::new(format!("access-{v}").into())
        .with_refresh_token(format!("refresh-{v}").into())
        .with_scopes([format!("scope-{v}")])
}

fn check_token(t: &Token, v: u16) -> bool {
    t.access_token().expose_secret() == format!("access-{v}")
        && t.refresh_token().map(|r| r.expose_secret().to_owned()) == Some(format!("refresh-{v}"))
        && t.scopes() == [format!("scope-{v}")]
}

fn secret(v: u16) -> Secret {
    Secret::from_bytes(format!("secret-{v}").into_bytes().into())
}

struct Harness {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    vault: Option<Vault>,
    model: Model,
}

impl Harness {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault");
        let first = SlotSecret::Passphrase(0);
        let vault = fast().create(&path, &first.source()).unwrap();
        let model = Model {
            slots: vec![(0, first)],
            known: vec![0],
            ..Model::default()
        };
        Self {
            _dir: dir,
            path,
            vault: Some(vault),
            model,
        }
    }

    fn vault(&self) -> &Vault {
        self.vault.as_ref().unwrap()
    }

    fn version_of(&self, ns: usize, key: usize) -> Option<Version> {
        self.model
            .data
            .get(&ns)
            .and_then(|m| m.get(&key))
            .map(|(_, v)| *v)
    }

    fn record(&mut self, ns: usize, key: usize, value: Value, version: Version) {
        if let Some(old) = self.version_of(ns, key) {
            self.model.old_versions.push(old);
        }
        self.model.namespaces.insert(ns, ());
        self.model
            .data
            .entry(ns)
            .or_default()
            .insert(key, (value, version));
    }

    fn forget(&mut self, ns: usize, key: usize) {
        if let Some((_, v)) = self.model.data.get_mut(&ns).and_then(|m| m.remove(&key)) {
            self.model.old_versions.push(v);
        }
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Put {
                ns,
                key,
                value,
                secret: is_secret,
            } => {
                let n = self.vault().namespace(NAMESPACES[ns]).unwrap();
                let version = if is_secret {
                    n.put(KEYS[key], &secret(value)).unwrap()
                } else {
                    n.put(KEYS[key], &token(value)).unwrap()
                };
                let stored = if is_secret {
                    Value::Secret(value)
                } else {
                    Value::Token(value)
                };
                if let Some(old) = self.version_of(ns, key) {
                    assert!(version > old, "versions grow");
                }
                self.record(ns, key, stored, version);
            }
            Op::Get { ns, key, as_secret } => {
                let n = self.vault().namespace(NAMESPACES[ns]).unwrap();
                let expected = self.model.data.get(&ns).and_then(|m| m.get(&key)).cloned();
                if as_secret {
                    let got = n.get_versioned::<Secret>(KEYS[key]);
                    match (expected, got) {
                        (None, Ok(None)) => {}
                        (Some((Value::Secret(v), ver)), Ok(Some((s, got_ver)))) => {
                            assert_eq!(s.expose_bytes(), format!("secret-{v}").as_bytes());
                            assert_eq!(got_ver, ver);
                        }
                        (Some((Value::Token(_), _)), Err(Error::WrongRecordType { .. })) => {}
                        (e, g) => panic!("get secret: model {e:?}, vault {g:?}"),
                    }
                } else {
                    let got = n.get_versioned::<Token>(KEYS[key]);
                    match (expected, got) {
                        (None, Ok(None)) => {}
                        (Some((Value::Token(v), ver)), Ok(Some((t, got_ver)))) => {
                            assert!(check_token(&t, v), "{t:?} is not token {v}");
                            assert_eq!(got_ver, ver);
                        }
                        (Some((Value::Secret(_), _)), Err(Error::WrongRecordType { .. })) => {}
                        (e, g) => panic!("get token: model {e:?}, vault {g:?}"),
                    }
                }
            }
            Op::Remove { ns, key } => {
                let removed = self
                    .vault()
                    .namespace(NAMESPACES[ns])
                    .unwrap()
                    .remove(KEYS[key])
                    .unwrap();
                assert_eq!(removed, self.version_of(ns, key).is_some());
                self.forget(ns, key);
            }
            Op::Cas {
                ns,
                key,
                expect,
                value,
            } => {
                let current = self.version_of(ns, key);
                let expected = match expect {
                    Expect::Current => current,
                    Expect::Absent => None,
                    Expect::Stale => match self.model.old_versions.last() {
                        Some(v) if Some(*v) != current => Some(*v),
                        _ => return,
                    },
                };
                let n = self.vault().namespace(NAMESPACES[ns]).unwrap();
                let result = n
                    .compare_and_swap(KEYS[key], expected, &token(value))
                    .unwrap();
                if expected == current {
                    let version = result.unwrap_or_else(|c| panic!("CAS should apply: {c}"));
                    self.record(ns, key, Value::Token(value), version);
                } else {
                    let conflict = result.expect_err("CAS should conflict");
                    assert_eq!(conflict.current, current);
                }
            }
            Op::CompareAndRemove { ns, key, current } => {
                let Some(version) = self.version_of(ns, key) else {
                    return;
                };
                let expected = if current {
                    version
                } else {
                    match self.model.old_versions.last() {
                        Some(v) if *v != version => *v,
                        _ => return,
                    }
                };
                let n = self.vault().namespace(NAMESPACES[ns]).unwrap();
                let result = n.compare_and_remove(KEYS[key], expected).unwrap();
                if current {
                    result.unwrap();
                    self.forget(ns, key);
                } else {
                    assert_eq!(result.unwrap_err().current, Some(version));
                }
            }
            Op::Keys { ns } => {
                let mut expected: Vec<&str> = self
                    .model
                    .data
                    .get(&ns)
                    .map(|m| m.keys().map(|k| KEYS[*k]).collect())
                    .unwrap_or_default();
                expected.sort_unstable();
                let got = self
                    .vault()
                    .namespace(NAMESPACES[ns])
                    .unwrap()
                    .keys()
                    .unwrap();
                assert_eq!(got, expected);
            }
            Op::Namespaces => {
                let mut expected: Vec<&str> = self
                    .model
                    .namespaces
                    .keys()
                    .map(|n| NAMESPACES[*n])
                    .collect();
                expected.sort_unstable();
                assert_eq!(self.vault().namespaces().unwrap(), expected);
            }
            Op::RemoveNamespace { ns } => {
                let existed = self.vault().remove_namespace(NAMESPACES[ns]).unwrap();
                assert_eq!(existed, self.model.namespaces.remove(&ns).is_some());
                if let Some(m) = self.model.data.remove(&ns) {
                    self.model.old_versions.extend(m.values().map(|(_, v)| *v));
                }
            }
            Op::ChangeSecret { slot, fresh } => {
                let idx = slot % self.model.slots.len();
                let (id, old) = self.model.slots[idx];
                let new = match old {
                    SlotSecret::Passphrase(_) => SlotSecret::Passphrase(fresh | 0x8000),
                    SlotSecret::Raw(_) => SlotSecret::Raw(fresh | 0x8000),
                };
                if self.model.slots.iter().any(|(_, s)| *s == new) {
                    return;
                }
                self.vault()
                    .change_passphrase(&old.source(), &new.source())
                    .unwrap();
                self.model.slots[idx].1 = new;
                if !self.model.known.contains(&id) {
                    self.model.known.push(id);
                }
            }
            Op::AddKeyslot { passphrase, fresh } => {
                let new = if passphrase {
                    SlotSecret::Passphrase(fresh & 0x7fff | 1)
                } else {
                    SlotSecret::Raw(fresh & 0x7fff | 1)
                };
                if self.model.slots.iter().any(|(_, s)| *s == new) {
                    return;
                }
                let result = self.vault().add_keyslot(&new.source());
                if self.model.slots.len() >= tokenvault::format::MAX_KEYSLOTS {
                    assert!(matches!(result, Err(Error::KeyslotLimit)));
                    return;
                }
                let id = result.unwrap();
                self.model.slots.push((id, new));
                self.model.known.push(id);
            }
            Op::RemoveKeyslot { slot } => {
                let idx = slot % self.model.slots.len();
                let id = self.model.slots[idx].0;
                let result = self.vault().remove_keyslot(id);
                if self.model.slots.len() == 1 {
                    assert!(matches!(result, Err(Error::LastKeyslot)), "{result:?}");
                } else {
                    result.unwrap();
                    self.model.slots.remove(idx);
                    self.model.known.retain(|k| *k != id);
                }
            }
            Op::RotateNamespace { ns } => {
                let result = self.vault().rotate_namespace_key(NAMESPACES[ns], |_| {});
                if self.model.namespaces.contains_key(&ns) {
                    let report = result.unwrap();
                    let records = self.model.data.get(&ns).map_or(0, BTreeMap::len) as u64;
                    assert_eq!(report.resealed, records + 1, "records and the manifest");
                } else {
                    assert!(matches!(result, Err(Error::InvalidName { .. })));
                }
            }
            Op::RotateMasterKey => {
                let result = self.vault().rotate_master_key();
                let unknown: Vec<u32> = self
                    .model
                    .slots
                    .iter()
                    .map(|(id, _)| *id)
                    .filter(|id| !self.model.known.contains(id))
                    .collect();
                if unknown.is_empty() {
                    result.unwrap();
                } else {
                    match result {
                        Err(Error::SlotSecretsMissing { slots }) => assert_eq!(slots, unknown),
                        other => panic!("expected SlotSecretsMissing, got {other:?}"),
                    }
                }
            }
            Op::Reopen { slot } => {
                self.vault.take().unwrap().close().unwrap();
                let (id, secret) = self.model.slots[slot % self.model.slots.len()];
                self.vault = Some(fast().open(&self.path, &secret.source()).unwrap());
                self.model.known = vec![id];
                // Every other slot's old secrets must not open it.
                for (_, other) in &self.model.slots {
                    let stale = match other {
                        SlotSecret::Passphrase(n) => SlotSecret::Passphrase(n.wrapping_add(1)),
                        SlotSecret::Raw(n) => SlotSecret::Raw(n.wrapping_add(1)),
                    };
                    if !self.model.slots.iter().any(|(_, s)| *s == stale) {
                        let vault = self.vault.take().unwrap();
                        vault.close().unwrap();
                        assert!(matches!(
                            fast().open(&self.path, &stale.source()),
                            Err(Error::WrongKey)
                        ));
                        self.vault = Some(fast().open(&self.path, &secret.source()).unwrap());
                        break;
                    }
                }
            }
            Op::Verify => {
                let report = self.vault().verify(|_| {}).unwrap();
                assert!(report.is_clean(), "{report}");
                let expected: Vec<(String, u64)> = self
                    .model
                    .namespaces
                    .keys()
                    .map(|ns| {
                        let n = self.model.data.get(ns).map_or(0, BTreeMap::len) as u64;
                        (NAMESPACES[*ns].to_owned(), n)
                    })
                    .collect();
                let mut expected = expected;
                expected.sort();
                let got: Vec<(String, u64)> = report
                    .namespaces
                    .iter()
                    .map(|n| (n.namespace.clone(), n.ok))
                    .collect();
                assert_eq!(got, expected);
            }
        }
    }
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(256)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        max_shrink_iters: 2000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_vault_behaves_like_the_model(ops in proptest::collection::vec(op(), 1..40)) {
        let mut h = Harness::new();
        for op in &ops {
            h.apply(op);
        }
        // Finally, everything survives one more close and reopen.
        h.apply(&Op::Reopen { slot: 0 });
        h.apply(&Op::Verify);
        for ns in 0..NAMESPACES.len() {
            h.apply(&Op::Keys { ns });
            for key in 0..KEYS.len() {
                h.apply(&Op::Get { ns, key, as_secret: false });
            }
        }
    }
}

fn any_name() -> impl Strategy<Value = String> {
    // Any UTF-8 up to the documented limit of 1024 bytes (in characters of 1 to 4 bytes).
    proptest::collection::vec(any::<char>(), 1..=256)
        .prop_map(|c| c.into_iter().collect::<String>())
        .prop_filter("within the limit", |s| {
            s.len() <= tokenvault::format::MAX_NAME_LEN
        })
}

/// A record key: any name except the reserved ones (starting with U+0000).
fn any_key() -> impl Strategy<Value = String> {
    any_name().prop_filter("not reserved", |s| !s.starts_with('\0'))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn any_names_round_trip(ns in any_name(), keys in proptest::collection::btree_set(any_key(), 1..6)) {
        let storage = tokenvault::backend::MemoryBackend::new();
        let key = SlotSecret::Raw(1).source();
        let vault = Vault::create_with_backend(storage.clone(), &key).unwrap();
        let n = vault.namespace(&ns).unwrap();
        for (i, k) in keys.iter().enumerate() {
            n.put(k, &token(i as u16)).unwrap();
        }
        vault.close().unwrap();
        let vault = Vault::open_with_backend(storage, &key).unwrap();
        prop_assert_eq!(vault.namespaces().unwrap(), vec![ns.clone()]);
        let n = vault.namespace(&ns).unwrap();
        let listed = n.keys().unwrap();
        prop_assert_eq!(listed, keys.iter().cloned().collect::<Vec<_>>());
        for (i, k) in keys.iter().enumerate() {
            let t = n.get::<Token>(k).unwrap().unwrap();
            prop_assert!(check_token(&t, i as u16));
        }
    }
}
