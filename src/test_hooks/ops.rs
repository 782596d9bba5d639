//! Operation sequences decoded from raw bytes, run against a vault on a `MemoryBackend` and
//! checked step by step against a plain model. Shared by the `ops` fuzz target
//! (`fuzz/fuzz_targets/ops.rs`) and `tests/engine/fuzz_regressions.rs`, so that the same bytes
//! replay identically with and without the fuzzer.
//!
//! Encoding: one opcode byte (taken modulo [`OP_COUNT`]), then the operation's argument bytes;
//! past the end of the input every argument byte reads as 0, and the run stops at the next
//! opcode. Names are few (three namespaces, four record keys, four raw keys) so that
//! operations collide. At most [`MAX_OPS`] operations run; then the whole vault is compared
//! with the model once more.
// Test harness code: failing loudly on anything unexpected is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use crate::backend::MemoryBackend;
use crate::format::RecordType;
use crate::secrecy::SecretBox;
use crate::{Conflict, Error, KeySource, Secret, SlotKind, Token, Vault, VaultOptions, Version};

/// Namespaces the operations use.
pub const NAMESPACES: [&str; 3] = ["a", "b", "tenant-42"];
/// Record keys the operations use.
pub const KEYS: [&str; 4] = ["k", "k2", "rs.example.org", "client-secret"];
/// Raw keys (each is its byte repeated 32 times).
pub const RAW_KEYS: [u8; 4] = [1, 2, 3, 4];
/// Operations run at most.
pub const MAX_OPS: usize = 128;
/// Opcodes, in the order of [`Op`].
pub const OP_COUNT: u8 = 24;
/// The largest body that fits one record (docs/format.md 5.3: `5 + body_len <= 65536`).
const MAX_BODY: usize = 65_536 - 5;

/// The operations, by opcode. Arguments follow the opcode as noted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Op {
    /// ns, key, value: `put` a token.
    PutToken = 0,
    /// ns, key, value: `put` a secret.
    PutSecret,
    /// ns, key: `get::<Token>`.
    GetToken,
    /// ns, key: `get::<Secret>`.
    GetSecret,
    /// ns, key: `get_versioned` of the stored type.
    GetVersioned,
    /// ns, key, value: `compare_and_swap` with the current version (None if absent).
    CasCurrent,
    /// ns, key, value, pick: `compare_and_swap` with a version seen earlier.
    CasStale,
    /// ns, key, value: `compare_and_swap` expecting no record.
    CasNone,
    /// ns, key: `compare_and_remove` with the current version.
    CarCurrent,
    /// ns, key, pick: `compare_and_remove` with a version seen earlier.
    CarStale,
    /// ns, key: `remove`.
    Remove,
    /// ns: `keys`.
    Keys,
    /// `namespaces`.
    Namespaces,
    /// ns: `remove_namespace`.
    RemoveNamespace,
    /// raw key: `add_keyslot`.
    AddKeyslot,
    /// pick: `remove_keyslot` (a slot of the model, or one that does not exist).
    RemoveKeyslot,
    /// old raw key, new raw key: `change_passphrase`.
    ChangeKey,
    /// ns: `rotate_namespace_key`.
    RotateNamespaceKey,
    /// with-others: `rotate_master_key`, or `rotate_master_key_with` the keys of the slots
    /// this handle does not know.
    RotateMasterKey,
    /// raw key, slot choice: `close`, then `open_with_backend`, naming a slot or not (then
    /// with the first slot's key if that was refused).
    Reopen,
    /// `verify`, which must be clean and count what the model holds.
    Verify,
    /// `keyslots`.
    Keyslots,
    /// ns, key, delta: `put` a secret of exactly the largest size, +- 1 byte.
    PutLargest,
    /// ns, key, which: an invalid name (empty, too long) must be refused.
    InvalidName,
}

impl Op {
    fn from_byte(b: u8) -> Self {
        const ALL: [Op; OP_COUNT as usize] = [
            Op::PutToken,
            Op::PutSecret,
            Op::GetToken,
            Op::GetSecret,
            Op::GetVersioned,
            Op::CasCurrent,
            Op::CasStale,
            Op::CasNone,
            Op::CarCurrent,
            Op::CarStale,
            Op::Remove,
            Op::Keys,
            Op::Namespaces,
            Op::RemoveNamespace,
            Op::AddKeyslot,
            Op::RemoveKeyslot,
            Op::ChangeKey,
            Op::RotateNamespaceKey,
            Op::RotateMasterKey,
            Op::Reopen,
            Op::Verify,
            Op::Keyslots,
            Op::PutLargest,
            Op::InvalidName,
        ];
        ALL[usize::from(b % OP_COUNT)]
    }
}

/// Builds an input: `(op, argument bytes)` pairs, concatenated.
pub fn encode(ops: &[(Op, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (op, args) in ops {
        out.push(*op as u8);
        out.extend_from_slice(args);
    }
    out
}

/// Runs the operations in `data`. `Err` describes the first divergence from the model, with
/// the operations that led to it.
pub fn run(data: &[u8]) -> Result<(), String> {
    let mut h = Harness::new()?;
    let mut input = Input { data };
    let mut step = 0;
    while step < MAX_OPS {
        let Some(byte) = input.next() else { break };
        let op = Op::from_byte(byte);
        let before = h.log.len();
        if let Err(e) = h.step(op, &mut input).and_then(|()| h.check_seqid()) {
            let mut msg = format!("step {step} ({op:?}): {e}\noperations:\n");
            for line in &h.log {
                let _ = writeln!(msg, "  {line}");
            }
            return Err(msg);
        }
        if h.log.len() == before {
            h.log.push(format!("{op:?}"));
        }
        step += 1;
    }
    h.check_everything()
        .map_err(|e| format!("final check: {e}\noperations:\n  {}", h.log.join("\n  ")))
}

struct Input<'a> {
    data: &'a [u8],
}

impl Input<'_> {
    fn next(&mut self) -> Option<u8> {
        let (&b, rest) = self.data.split_first()?;
        self.data = rest;
        Some(b)
    }
    fn byte(&mut self) -> u8 {
        self.next().unwrap_or(0)
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[usize::from(self.byte()) % items.len()]
    }
}

/// A stored value, as the model keeps it.
#[derive(Clone)]
enum Value {
    Token(Token),
    Secret(Vec<u8>),
}

impl Value {
    fn record_type(&self) -> RecordType {
        match self {
            Self::Token(_) => RecordType::Token,
            Self::Secret(_) => RecordType::Secret,
        }
    }
}

#[derive(Clone)]
struct Entry {
    value: Value,
    version: Version,
}

#[derive(Default)]
struct NsModel {
    records: BTreeMap<String, Entry>,
    /// The namespace's newest version, once a write has told it (it starts at random).
    generation: Option<u64>,
    /// The active data key id: 1, plus one per rotation.
    key_id: u32,
    /// Whether a write has created the manifest record.
    has_manifest: bool,
    /// Whether this handle wrote to the namespace since the header last recorded its
    /// generation (at creation, or at a checkpoint): `close` then checkpoints (a header
    /// write).
    dirty: bool,
}

struct Harness {
    storage: MemoryBackend,
    vault: Vault,
    namespaces: BTreeMap<String, NsModel>,
    /// Keyslots in stored order: (id, raw key byte).
    slots: Vec<(u32, u8)>,
    next_slot: u32,
    /// Slots whose secret this handle knows (opened with, added, changed).
    known: BTreeSet<u32>,
    /// Every version the vault has returned, for stale compare-and-swaps.
    seen: Vec<Version>,
    seqid: u64,
    log: Vec<String>,
}

fn raw(byte: u8) -> KeySource {
    KeySource::raw_key(SecretBox::new(Box::new([byte; 32])))
}

fn token(v: u8) -> Token {
    let mut access = format!("at-{v}");
    if v & 0x80 != 0 {
        // Over one 256-byte bucket.
        access = access.repeat(80);
    }
    let mut t = Token::new(access.into());
    if v & 1 != 0 {
        t = t.with_refresh_token(format!("rt-{v}").into());
    }
    if v & 2 != 0 {
        t = t.with_scopes(["openid", "transfer:all"]);
    }
    if v & 4 != 0 {
        t = t.with_expires_at(UNIX_EPOCH + Duration::from_secs(1_700_000_000 + u64::from(v)));
    }
    if v & 8 != 0 {
        t = t.with_identity(format!("user-{v}"));
    }
    if v & 16 != 0 {
        t = t.with_resource_server("transfer.api.example.org");
    }
    if v & 32 != 0 {
        t = t.with_extra_json(format!("{{\"id_token\":\"{v}\"}}").into());
    }
    if v & 64 != 0 {
        t = t.with_token_type("DPoP");
    }
    t
}

fn secret(v: u8) -> Vec<u8> {
    vec![v; usize::from(v % 7) * 61]
}

fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Token(a), Value::Token(b)) => a.same_as(b),
        (Value::Secret(a), Value::Secret(b)) => a == b,
        _ => false,
    }
}

fn describe(e: &Error) -> String {
    format!("{e:?} ({e})")
}

impl Harness {
    fn new() -> Result<Self, String> {
        let storage = MemoryBackend::new();
        let vault = Vault::create_with_backend(storage.clone(), &raw(RAW_KEYS[0]))
            .map_err(|e| format!("create: {}", describe(&e)))?;
        let seqid = vault.header_seqid().map_err(|e| describe(&e))?;
        Ok(Self {
            storage,
            vault,
            namespaces: BTreeMap::new(),
            slots: vec![(0, RAW_KEYS[0])],
            next_slot: 1,
            known: BTreeSet::from([0]),
            seen: Vec::new(),
            seqid,
            log: Vec::new(),
        })
    }

    fn check_seqid(&self) -> Result<(), String> {
        let got = self.vault.header_seqid().map_err(|e| describe(&e))?;
        if got != self.seqid {
            return Err(format!(
                "header seqid is {got}, the model expects {} (one per header write)",
                self.seqid
            ));
        }
        Ok(())
    }

    fn current(&self, ns: &str, key: &str) -> Option<&Entry> {
        self.namespaces.get(ns).and_then(|n| n.records.get(key))
    }

    /// Records a successful write's version: it must be above every version the namespace
    /// gave out before (removals take generations too, unseen).
    fn wrote(
        &mut self,
        ns: &str,
        key: &str,
        value: Option<Value>,
        v: Option<Version>,
    ) -> Result<(), String> {
        let created = !self.namespaces.contains_key(ns);
        if created {
            // A namespace is created (a header write) by its first write.
            self.seqid += 1;
        }
        let model = self
            .namespaces
            .entry(ns.to_string())
            .or_insert_with(|| NsModel {
                key_id: 1,
                ..NsModel::default()
            });
        model.has_manifest = true;
        model.dirty = true;
        if let Some(v) = v {
            if let Some(g) = model.generation {
                if v.as_u64() <= g {
                    return Err(format!(
                        "write in {ns:?} got version {}, not above the namespace's newest {g}",
                        v.as_u64(),
                    ));
                }
            }
            model.generation = Some(v.as_u64());
            self.seen.push(v);
        }
        match (value, v) {
            (Some(value), Some(version)) => {
                model
                    .records
                    .insert(key.to_string(), Entry { value, version });
            }
            _ => {
                model.records.remove(key);
            }
        }
        Ok(())
    }

    fn step(&mut self, op: Op, input: &mut Input<'_>) -> Result<(), String> {
        match op {
            Op::PutToken | Op::PutSecret => {
                let (ns, key, v) = (input.pick(&NAMESPACES), input.pick(&KEYS), input.byte());
                self.log.push(format!("{op:?} {ns:?} {key:?} {v}"));
                let handle = self.vault.namespace(ns).map_err(|e| describe(&e))?;
                let (value, got) = if op == Op::PutToken {
                    let t = token(v);
                    let got = handle.put(key, &t);
                    (Value::Token(t), got)
                } else {
                    let s = secret(v);
                    let got = handle.put(key, &Secret::from_bytes(s.clone().into()));
                    (Value::Secret(s), got)
                };
                let version = got.map_err(|e| format!("put failed: {}", describe(&e)))?;
                self.wrote(ns, key, Some(value), Some(version))
            }
            Op::GetToken | Op::GetSecret | Op::GetVersioned => {
                let (ns, key) = (input.pick(&NAMESPACES), input.pick(&KEYS));
                self.log.push(format!("{op:?} {ns:?} {key:?}"));
                let expected = self.current(ns, key).cloned();
                let want = match (op, &expected) {
                    (Op::GetToken, _) | (Op::GetVersioned, None) => RecordType::Token,
                    (Op::GetVersioned, Some(e)) => e.value.record_type(),
                    _ => RecordType::Secret,
                };
                let got = self.read(ns, key, want);
                match (expected, got) {
                    (None, Ok(None)) => Ok(()),
                    (Some(e), Err(Error::WrongRecordType { expected, found }))
                        if e.value.record_type() != want
                            && expected == want
                            && found == e.value.record_type() =>
                    {
                        Ok(())
                    }
                    (Some(e), Ok(Some((value, version))))
                        if e.value.record_type() == want && same(&e.value, &value) =>
                    {
                        if version == e.version {
                            Ok(())
                        } else {
                            Err(format!(
                                "version {} read, {} written",
                                version.as_u64(),
                                e.version.as_u64()
                            ))
                        }
                    }
                    (e, got) => Err(format!(
                        "read as {want}: the model has {}, the vault answered {}",
                        e.map_or("nothing".to_string(), |e| format!(
                            "a {} at {}",
                            e.value.record_type(),
                            e.version.as_u64()
                        )),
                        match got {
                            Ok(None) => "nothing".to_string(),
                            Ok(Some((v, ver))) => {
                                format!("a different {} at {}", v.record_type(), ver.as_u64())
                            }
                            Err(e) => describe(&e),
                        }
                    )),
                }
            }
            Op::CasCurrent | Op::CasStale | Op::CasNone => {
                let (ns, key, v) = (input.pick(&NAMESPACES), input.pick(&KEYS), input.byte());
                let current = self.current(ns, key).map(|e| e.version);
                let expected = match op {
                    Op::CasCurrent => current,
                    Op::CasNone => None,
                    _ => {
                        let pick = input.byte();
                        if self.seen.is_empty() {
                            None
                        } else {
                            Some(self.seen[usize::from(pick) % self.seen.len()])
                        }
                    }
                };
                self.log.push(format!(
                    "{op:?} {ns:?} {key:?} {v} expected={:?}",
                    expected.map(Version::as_u64)
                ));
                let handle = self.vault.namespace(ns).map_err(|e| describe(&e))?;
                let t = token(v);
                let got = handle
                    .compare_and_swap(key, expected, &t)
                    .map_err(|e| format!("compare_and_swap failed: {}", describe(&e)))?;
                if expected == current {
                    let version = got.map_err(|c| format!("unexpected {c:?}"))?;
                    self.wrote(ns, key, Some(Value::Token(t)), Some(version))
                } else {
                    match got {
                        Err(Conflict { current: c }) if c == current => Ok(()),
                        other => Err(format!(
                            "expected a conflict at {:?}, got {:?}",
                            current.map(Version::as_u64),
                            other.map(Version::as_u64)
                        )),
                    }
                }
            }
            Op::CarCurrent | Op::CarStale => {
                let (ns, key) = (input.pick(&NAMESPACES), input.pick(&KEYS));
                let current = self.current(ns, key).map(|e| e.version);
                let expected = if op == Op::CarCurrent {
                    current.or_else(|| self.seen.last().copied())
                } else {
                    let pick = input.byte();
                    if self.seen.is_empty() {
                        current
                    } else {
                        Some(self.seen[usize::from(pick) % self.seen.len()])
                    }
                };
                let Some(expected) = expected else {
                    self.log
                        .push(format!("{op:?} {ns:?} {key:?} (no version known: skipped)"));
                    return Ok(());
                };
                self.log.push(format!(
                    "{op:?} {ns:?} {key:?} expected={}",
                    expected.as_u64()
                ));
                let handle = self.vault.namespace(ns).map_err(|e| describe(&e))?;
                let got = handle
                    .compare_and_remove(key, expected)
                    .map_err(|e| format!("compare_and_remove failed: {}", describe(&e)))?;
                if Some(expected) == current {
                    got.map_err(|c| format!("unexpected {c:?}"))?;
                    self.wrote(ns, key, None, None)
                } else {
                    match got {
                        Err(Conflict { current: c }) if c == current => Ok(()),
                        other => Err(format!(
                            "expected a conflict at {:?}, got {other:?}",
                            current.map(Version::as_u64)
                        )),
                    }
                }
            }
            Op::Remove => {
                let (ns, key) = (input.pick(&NAMESPACES), input.pick(&KEYS));
                self.log.push(format!("{op:?} {ns:?} {key:?}"));
                let handle = self.vault.namespace(ns).map_err(|e| describe(&e))?;
                let existed = self.current(ns, key).is_some();
                let got = handle
                    .remove(key)
                    .map_err(|e| format!("remove failed: {}", describe(&e)))?;
                if got != existed {
                    return Err(format!("remove returned {got}, the model says {existed}"));
                }
                if existed {
                    self.wrote(ns, key, None, None)?;
                }
                Ok(())
            }
            Op::Keys => {
                let ns = input.pick(&NAMESPACES);
                self.log.push(format!("{op:?} {ns:?}"));
                self.check_keys(ns)
            }
            Op::Namespaces => self.check_namespaces(),
            Op::RemoveNamespace => {
                let ns = input.pick(&NAMESPACES);
                self.log.push(format!("{op:?} {ns:?}"));
                let got = self
                    .vault
                    .remove_namespace(ns)
                    .map_err(|e| format!("remove_namespace failed: {}", describe(&e)))?;
                let existed = self.namespaces.remove(ns).is_some();
                // The header is rewritten only when the namespace existed.
                if existed {
                    self.seqid += 1;
                }
                if got != existed {
                    return Err(format!(
                        "remove_namespace returned {got}, the model says {existed}"
                    ));
                }
                Ok(())
            }
            Op::AddKeyslot => {
                let k = input.pick(&RAW_KEYS);
                self.log.push(format!("{op:?} key {k}"));
                let got = self.vault.add_keyslot(&raw(k));
                if self.slots.len() >= crate::format::MAX_KEYSLOTS {
                    return match got {
                        Err(Error::KeyslotLimit) => Ok(()),
                        other => Err(format!(
                            "expected KeyslotLimit, got {:?}",
                            other.map_err(|e| describe(&e))
                        )),
                    };
                }
                // A key that already opens a slot is refused, naming the first such slot.
                if let Some(&(existing, _)) = self.slots.iter().find(|s| s.1 == k) {
                    return match got {
                        Err(Error::KeyslotExists { slot }) if slot == existing => Ok(()),
                        other => Err(format!(
                            "expected KeyslotExists {{ slot: {existing} }}, got {:?}",
                            other.map_err(|e| describe(&e))
                        )),
                    };
                }
                let id = got.map_err(|e| format!("add_keyslot: {}", describe(&e)))?;
                if id != self.next_slot {
                    return Err(format!("new slot id {id}, expected {}", self.next_slot));
                }
                self.slots.push((id, k));
                self.known.insert(id);
                self.next_slot += 1;
                self.seqid += 1;
                Ok(())
            }
            Op::RemoveKeyslot => {
                let pick = input.byte();
                let id = if pick >= 0xf0 || self.slots.is_empty() {
                    self.next_slot + u32::from(pick & 0x0f)
                } else {
                    self.slots[usize::from(pick) % self.slots.len()].0
                };
                self.log.push(format!("{op:?} slot {id}"));
                let got = self.vault.remove_keyslot(id);
                let exists = self.slots.iter().any(|s| s.0 == id);
                match got {
                    Err(Error::NoSuchKeyslot { slot }) if !exists && slot == id => Ok(()),
                    Err(Error::LastKeyslot) if exists && self.slots.len() == 1 => Ok(()),
                    Ok(()) if exists && self.slots.len() > 1 => {
                        self.slots.retain(|s| s.0 != id);
                        self.known.remove(&id);
                        self.seqid += 1;
                        Ok(())
                    }
                    other => Err(format!(
                        "remove_keyslot({id}) gave {:?}; the model has slots {:?}",
                        other.map_err(|e| describe(&e)),
                        self.slots
                    )),
                }
            }
            Op::ChangeKey => {
                let (old, new) = (input.pick(&RAW_KEYS), input.pick(&RAW_KEYS));
                self.log.push(format!("{op:?} {old} -> {new}"));
                let got = self.vault.change_passphrase(&raw(old), &raw(new));
                // Every slot that the old key opens is changed, and named (in stored order),
                // unless the new key already opens another slot.
                let ids: Vec<u32> = self
                    .slots
                    .iter()
                    .filter(|s| s.1 == old)
                    .map(|s| s.0)
                    .collect();
                let taken = self
                    .slots
                    .iter()
                    .find(|s| s.1 == new && !ids.contains(&s.0))
                    .map(|s| s.0);
                match got {
                    Err(Error::WrongKey) if ids.is_empty() => Ok(()),
                    Err(Error::KeyslotExists { slot })
                        if !ids.is_empty() && taken == Some(slot) =>
                    {
                        Ok(())
                    }
                    Ok(changed) if !ids.is_empty() && taken.is_none() && changed == ids => {
                        for slot in &mut self.slots {
                            if slot.1 == old {
                                slot.1 = new;
                                self.known.insert(slot.0);
                            }
                        }
                        self.seqid += 1;
                        Ok(())
                    }
                    other => Err(format!(
                        "change_passphrase gave {:?}; the model's slots for it: {ids:?}",
                        other.map_err(|e| describe(&e))
                    )),
                }
            }
            Op::RotateNamespaceKey => {
                let ns = input.pick(&NAMESPACES);
                self.log.push(format!("{op:?} {ns:?}"));
                let got = self.vault.rotate_namespace_key(ns, |_| {});
                match (self.namespaces.get_mut(ns), got) {
                    (None, Err(Error::InvalidName { .. })) => Ok(()),
                    (Some(model), Ok(report)) => {
                        let expected = model.records.len() as u64 + u64::from(model.has_manifest);
                        if report.key_id != model.key_id + 1 || report.resealed != expected {
                            return Err(format!(
                                "rotation report {report:?}, expected key id {} and {expected} re-sealed",
                                model.key_id + 1
                            ));
                        }
                        model.key_id += 1;
                        // Two header writes: the new key, then the old one dropped.
                        self.seqid += 2;
                        Ok(())
                    }
                    (m, other) => Err(format!(
                        "rotate_namespace_key gave {:?} (namespace in the model: {})",
                        other.map_err(|e| describe(&e)),
                        m.is_some()
                    )),
                }
            }
            Op::RotateMasterKey => {
                // arg & 1: pass the raw keys of the slots this handle does not know (each
                // source unlocks the first slot, in stored order, that it opens and whose
                // secret is not known yet).
                let with_others = input.byte() & 1 != 0;
                let mut known = self.known.clone();
                let mut others: Vec<u8> = Vec::new();
                if with_others {
                    for (id, k) in &self.slots {
                        if !self.known.contains(id) {
                            others.push(*k);
                        }
                    }
                    for k in &others {
                        let unknown = self
                            .slots
                            .iter()
                            .find(|s| s.1 == *k && !known.contains(&s.0))
                            .map(|s| s.0);
                        if let Some(id) = unknown {
                            known.insert(id);
                        }
                    }
                }
                let sources: Vec<KeySource> = others.iter().map(|k| raw(*k)).collect();
                let refs: Vec<&KeySource> = sources.iter().collect();
                let got = self.vault.rotate_master_key_with(&refs);
                let missing: Vec<u32> = self
                    .slots
                    .iter()
                    .map(|s| s.0)
                    .filter(|id| !known.contains(id))
                    .collect();
                self.log.push(format!(
                    "{op:?} with keys {others:?} (still unknown slots {missing:?})"
                ));
                match got {
                    Ok(()) if missing.is_empty() => {
                        self.known = known;
                        self.seqid += 1;
                        Ok(())
                    }
                    Err(Error::SlotSecretsMissing { slots }) if slots == missing => Ok(()),
                    other => Err(format!(
                        "rotate_master_key gave {:?}, expected missing {missing:?}",
                        other.map_err(|e| describe(&e))
                    )),
                }
            }
            Op::Reopen => {
                let (k, sel) = (input.pick(&RAW_KEYS), input.byte());
                self.log.push(format!("{op:?} key {k} sel {sel}"));
                self.reopen(k, sel)
            }
            Op::Verify => self.check_verify(),
            Op::Keyslots => {
                let got = self.vault.keyslots().map_err(|e| describe(&e))?;
                let ids: Vec<u32> = got.iter().map(|s| s.id).collect();
                let want: Vec<u32> = self.slots.iter().map(|s| s.0).collect();
                if ids != want
                    || got
                        .iter()
                        .any(|s| s.kind != SlotKind::RawKey || s.kdf.is_some())
                {
                    return Err(format!("keyslots {got:?}, the model has {:?}", self.slots));
                }
                Ok(())
            }
            Op::PutLargest => {
                let (ns, key, arg) = (input.pick(&NAMESPACES), input.pick(&KEYS), input.byte());
                // A secret body is le64(len) || key || le64(len) || value (docs/format.md
                // 5.4): 16 + key + value bytes. Aim at the largest body, -1, +0, +1.
                let delta = arg % 3;
                let body = MAX_BODY - 1 + usize::from(delta);
                let len = body - 16 - key.len();
                // A 64 KiB record makes every later read and verify slow (instrumented code
                // touches each byte): keep it only when asked, otherwise remove it at once.
                let keep = arg >= 0xf0;
                self.log
                    .push(format!("{op:?} {ns:?} {key:?} {len} bytes, keep: {keep}"));
                let value = vec![delta; len];
                let handle = self.vault.namespace(ns).map_err(|e| describe(&e))?;
                let got = handle.put(key, &Secret::from_bytes(value.clone().into()));
                if body > MAX_BODY {
                    return match got {
                        Err(Error::TooLarge { .. }) => Ok(()),
                        other => Err(format!(
                            "a body of {body} bytes: expected TooLarge, got {:?}",
                            other.map(Version::as_u64).map_err(|e| describe(&e))
                        )),
                    };
                }
                let version =
                    got.map_err(|e| format!("put of the largest record: {}", describe(&e)))?;
                self.wrote(ns, key, Some(Value::Secret(value.clone())), Some(version))?;
                match self.read(ns, key, RecordType::Secret) {
                    Ok(Some((Value::Secret(back), v))) if back == value && v == version => {}
                    _ => return Err("the largest record does not read back".into()),
                }
                if !keep {
                    match handle.remove(key) {
                        Ok(true) => self.wrote(ns, key, None, None)?,
                        other => {
                            return Err(format!(
                                "removing the largest record gave {:?}",
                                other.map_err(|e| describe(&e))
                            ))
                        }
                    }
                }
                Ok(())
            }
            Op::InvalidName => {
                let (ns, key, which) =
                    (input.pick(&NAMESPACES), input.pick(&KEYS), input.byte() % 4);
                self.log.push(format!("{op:?} {ns:?} {key:?} {which}"));
                let long = "x".repeat(crate::format::MAX_NAME_LEN + 1);
                let got = match which {
                    0 => self.vault.namespace("").map(|_| ()),
                    1 => self.vault.namespace(&long).map(|_| ()),
                    2 => self
                        .vault
                        .namespace(ns)
                        .and_then(|h| h.put("", &token(0)).map(|_| ())),
                    _ => self
                        .vault
                        .namespace(ns)
                        .and_then(|h| h.get::<Token>(&long).map(|_| ())),
                };
                match got {
                    Err(Error::InvalidName { .. }) => Ok(()),
                    other => Err(format!(
                        "an invalid name gave {:?}",
                        other.map_err(|e| describe(&e))
                    )),
                }
            }
        }
    }

    /// Opens with the first slot's key after a refused open.
    fn fallback_open(&self) -> Result<(Vault, u32), String> {
        let (slot, key) = self.slots[0];
        let vault = Vault::open_with_backend(self.storage.clone(), &raw(key))
            .map_err(|e| format!("reopen with the first slot's key: {}", describe(&e)))?;
        Ok((vault, slot))
    }

    fn reopen(&mut self, k: u8, sel: u8) -> Result<(), String> {
        // `close` checkpoints: one header write if any namespace was written since the
        // header last recorded its generation.
        if self.namespaces.values().any(|n| n.dirty) {
            self.seqid += 1;
        }
        for n in self.namespaces.values_mut() {
            n.dirty = false;
        }
        let old = self.vault.clone();
        old.clone()
            .close()
            .map_err(|e| format!("close: {}", describe(&e)))?;
        match old.namespaces() {
            Err(Error::Closed) => {}
            other => {
                return Err(format!(
                    "a closed handle answered {:?}",
                    other.map_err(|e| describe(&e))
                ))
            }
        }
        // sel & 0x80: name a slot at open (VaultOptions::slot): one of the model's, or one
        // that does not exist.
        let named = (sel & 0x80 != 0).then(|| {
            if sel & 0x40 != 0 {
                self.next_slot + u32::from(sel & 0x0f)
            } else {
                self.slots[usize::from(sel & 0x3f) % self.slots.len()].0
            }
        });
        let opens = match named {
            Some(id) => self
                .slots
                .iter()
                .find(|s| s.0 == id)
                .map(|s| (s.0, s.1 == k)),
            None => self.slots.iter().find(|s| s.1 == k).map(|s| (s.0, true)),
        };
        let options = match named {
            Some(id) => VaultOptions::new().slot(id),
            None => VaultOptions::new(),
        };
        let got = options.open_with_backend(self.storage.clone(), &raw(k));
        let (vault, slot) = match (opens, got) {
            (Some((slot, true)), Ok(vault)) => (vault, slot),
            (Some((_, false)), Err(Error::WrongKey)) | (None, Err(Error::WrongKey))
                if named.is_none() || opens.is_some() =>
            {
                self.fallback_open()?
            }
            (None, Err(Error::NoSuchKeyslot { slot })) if named == Some(slot) => {
                self.fallback_open()?
            }
            (expected, other) => {
                return Err(format!(
                    "opening with key {k} (slot named: {named:?}) gave {:?}; the model expected {expected:?} (slot, opens)",
                    other.map(|_| ()).map_err(|e| describe(&e))
                ))
            }
        };
        self.vault = vault;
        self.known = BTreeSet::from([slot]);
        self.check_everything()
    }

    /// `get_versioned` as `kind`, as a model value.
    fn read(
        &self,
        ns: &str,
        key: &str,
        kind: RecordType,
    ) -> Result<Option<(Value, Version)>, Error> {
        let handle = self.vault.namespace(ns)?;
        Ok(if kind == RecordType::Secret {
            handle
                .get_versioned::<Secret>(key)?
                .map(|(s, v)| (Value::Secret(s.expose_bytes().to_vec()), v))
        } else {
            handle
                .get_versioned::<Token>(key)?
                .map(|(t, v)| (Value::Token(t), v))
        })
    }

    fn check_keys(&self, ns: &str) -> Result<(), String> {
        let handle = self.vault.namespace(ns).map_err(|e| describe(&e))?;
        let got = handle
            .keys()
            .map_err(|e| format!("keys: {}", describe(&e)))?;
        let want: Vec<String> = self
            .namespaces
            .get(ns)
            .map(|m| m.records.keys().cloned().collect())
            .unwrap_or_default();
        if got != want {
            return Err(format!(
                "keys of {ns:?} are {got:?}, the model has {want:?}"
            ));
        }
        Ok(())
    }

    fn check_namespaces(&self) -> Result<(), String> {
        let got = self.vault.namespaces().map_err(|e| describe(&e))?;
        let want: Vec<String> = self.namespaces.keys().cloned().collect();
        if got != want {
            return Err(format!("namespaces are {got:?}, the model has {want:?}"));
        }
        Ok(())
    }

    fn check_verify(&self) -> Result<(), String> {
        let report = self
            .vault
            .verify(|_| {})
            .map_err(|e| format!("verify: {}", describe(&e)))?;
        if !report.is_clean() {
            return Err(format!("verify is not clean: {report:?}"));
        }
        let got: Vec<(String, u64)> = report
            .namespaces
            .iter()
            .map(|n| (n.namespace.clone(), n.ok))
            .collect();
        let want: Vec<(String, u64)> = self
            .namespaces
            .iter()
            .map(|(name, m)| (name.clone(), m.records.len() as u64))
            .collect();
        if got != want {
            return Err(format!("verify counted {got:?}, the model has {want:?}"));
        }
        Ok(())
    }

    /// Every namespace, key, value and version, and a clean verify.
    fn check_everything(&self) -> Result<(), String> {
        self.check_namespaces()?;
        for ns in NAMESPACES {
            self.check_keys(ns)?;
            for key in KEYS {
                let want = self.current(ns, key);
                let kind = want.map_or(RecordType::Token, |e| e.value.record_type());
                let ok = match (want, self.read(ns, key, kind)) {
                    (None, Ok(None)) => true,
                    (Some(e), Ok(Some((value, version)))) => {
                        same(&e.value, &value) && version == e.version
                    }
                    _ => false,
                };
                if !ok {
                    return Err(format!("{ns:?}/{key:?} differs from the model"));
                }
            }
        }
        self.check_verify()?;
        self.check_seqid()
    }
}
