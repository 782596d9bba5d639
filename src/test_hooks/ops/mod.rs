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

mod step;

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
    /// Whether this handle wrote anything since its last checkpoint: `close` then
    /// checkpoints (one header write, recording the new epoch).
    dirty: bool,
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
            dirty: false,
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
        // A namespace is created by its first write, in storage (format 2: no header write).
        self.dirty = true;
        let model = self
            .namespaces
            .entry(ns.to_string())
            .or_insert_with(|| NsModel {
                key_id: 1,
                ..NsModel::default()
            });
        model.has_manifest = true;
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

    /// Opens with the first slot's key after a refused open.
    fn fallback_open(&self) -> Result<(Vault, u32), String> {
        let (slot, key) = self.slots[0];
        let vault = Vault::open_with_backend(self.storage.clone(), &raw(key))
            .map_err(|e| format!("reopen with the first slot's key: {}", describe(&e)))?;
        Ok((vault, slot))
    }

    fn reopen(&mut self, k: u8, sel: u8) -> Result<(), String> {
        // `close` checkpoints: one header write if anything was written since the last.
        if self.dirty {
            self.seqid += 1;
        }
        self.dirty = false;
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
