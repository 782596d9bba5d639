//! The shared-storage contract, proven without a server: 2 to 4 `Vault` handles over one
//! storage, each through a wrapper backend that can run another handle's whole operation
//! between two backend calls of its own (an interleaving), and lose the reply of a write
//! that was applied. A model-based property test: random operations, each possibly with
//! another operation injected at a random point, against one model; after every step the
//! results must be those of one order of the two operations, every handle must read the
//! model's state, and nothing may be reported damaged, lost or out of date.
//!
//! Runs over a `MemoryBackend` (256 cases by default, `PROPTEST_CASES` for more), over a
//! shared sled backend on disk (fewer cases: each opens a directory), and, with the
//! `postgres` feature, over the PostgreSQL test server (`scripts/pg-test-server`), a fresh
//! vault per case; `shared_remote.rs` runs the same model with every handle in a process of
//! its own on that server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use proptest::prelude::*;
use tokenvault::backend::{
    Backend, BackendError, BackendErrorKind, Batch, MemoryBackend, ScanPage, SledBackend,
};
use tokenvault::secrecy::{ExposeSecret, SecretBox};
use tokenvault::{Error, KeySource, Token, Vault, VaultOptions};

const NAMESPACES: [&str; 2] = ["tenant-a", "tenant-b"];
const KEYS: [&str; 2] = ["api", "auth"];
/// Raw-key bytes of the extra keyslots the operations add, change and remove (slot 0, key 1,
/// is never touched: every handle opens with it).
const SLOT_KEYS: [u8; 3] = [2, 3, 4];

pub(crate) fn raw(byte: u8) -> KeySource {
    KeySource::raw_key(SecretBox::new(Box::new([byte; 32])))
}

// ---------------------------------------------------------------------------------------
// The wrapper backend

pub(crate) type Injected = Box<dyn FnOnce() + Send>;

/// One handle's view of the shared storage: counts its calls, runs an injected operation
/// before call number `at`, and can report the `lose`-th write as failed after applying it.
#[derive(Clone)]
pub(crate) struct Hooked {
    inner: Arc<dyn Backend>,
    calls: Arc<AtomicUsize>,
    writes: Arc<AtomicUsize>,
    hook: Arc<Mutex<Option<(usize, Injected)>>>,
    lose: Arc<Mutex<Option<usize>>>,
}

impl fmt::Debug for Hooked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Hooked")
    }
}

impl Hooked {
    pub(crate) fn new(inner: Arc<dyn Backend>) -> Self {
        Self {
            inner,
            calls: Arc::new(AtomicUsize::new(0)),
            writes: Arc::new(AtomicUsize::new(0)),
            hook: Arc::new(Mutex::new(None)),
            lose: Arc::new(Mutex::new(None)),
        }
    }

    /// Before each call: the injected operation, if this is its call.
    fn before(&self) {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        let due = {
            let mut hook = self.hook.lock().unwrap();
            match hook.as_ref() {
                Some((at, _)) if *at <= n => hook.take().map(|(_, f)| f),
                _ => None,
            }
        };
        if let Some(f) = due {
            f();
        }
    }

    /// After a write was applied: whether to report it as failed (a lost reply).
    fn lost(&self) -> bool {
        let n = self.writes.fetch_add(1, Ordering::SeqCst);
        let mut lose = self.lose.lock().unwrap();
        if *lose == Some(n) {
            *lose = None;
            true
        } else {
            false
        }
    }

    /// Arms the hooks for the next operation.
    pub(crate) fn arm(&self, hook: Option<(usize, Injected)>, lose: Option<usize>) {
        self.calls.store(0, Ordering::SeqCst);
        self.writes.store(0, Ordering::SeqCst);
        *self.hook.lock().unwrap() = hook;
        *self.lose.lock().unwrap() = lose;
    }

    /// Runs the injected operation now if the operation did not reach its call.
    fn fire_rest(&self) {
        let rest = self.hook.lock().unwrap().take();
        if let Some((_, f)) = rest {
            f();
        }
        *self.lose.lock().unwrap() = None;
    }
}

fn lost_reply() -> BackendError {
    BackendError::new(BackendErrorKind::Io, "injected: the reply was lost")
}

impl Backend for Hooked {
    fn read_header(&self) -> Result<Option<Vec<u8>>, BackendError> {
        self.before();
        self.inner.read_header()
    }
    fn write_header(&self, expected: Option<&[u8]>, bytes: &[u8]) -> Result<bool, BackendError> {
        self.before();
        let written = self.inner.write_header(expected, bytes)?;
        if written && self.lost() {
            return Err(lost_reply());
        }
        Ok(written)
    }
    fn get(&self, tree: &[u8], key: &[u8]) -> Result<Option<Vec<u8>>, BackendError> {
        self.before();
        self.inner.get(tree, key)
    }
    fn scan(
        &self,
        tree: &[u8],
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<ScanPage, BackendError> {
        self.before();
        self.inner.scan(tree, prefix, after, limit)
    }
    fn apply(&self, batch: &Batch) -> Result<bool, BackendError> {
        self.before();
        let applied = self.inner.apply(batch)?;
        if applied && self.lost() {
            return Err(lost_reply());
        }
        Ok(applied)
    }
    fn drop_tree(&self, tree: &[u8]) -> Result<(), BackendError> {
        self.inner.drop_tree(tree)
    }
    fn trees(&self) -> Result<Vec<Vec<u8>>, BackendError> {
        self.inner.trees()
    }
    fn flush(&self) -> Result<(), BackendError> {
        self.inner.flush()
    }
    fn close(&self) -> Result<(), BackendError> {
        // Shared: the test closes the storage itself.
        self.inner.flush()
    }
}

// ---------------------------------------------------------------------------------------
// Operations and the model

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub(crate) enum Op {
    Put {
        ns: usize,
        key: usize,
        value: u8,
    },
    Remove {
        ns: usize,
        key: usize,
    },
    /// Compare-and-swap expecting the record to be absent.
    CasCreate {
        ns: usize,
        key: usize,
        value: u8,
    },
    RemoveNamespace {
        ns: usize,
    },
    RotateNamespace {
        ns: usize,
    },
    AddKeyslot {
        key: usize,
    },
    RemoveKeyslot {
        key: usize,
    },
    ChangeKey {
        from: usize,
        to: usize,
    },
    RotateMasterKey,
    Shred,
    Checkpoint,
    /// Close this handle and open it again (never injected).
    Reopen,
    /// `RemoveKeyslot`, resolved at the start of the step: the id of the slot that key had.
    RemoveSlotId(Option<u32>),
    /// `RotateMasterKey`, resolved at the start of the step: the secrets of the slots then.
    RotateMasterWith(Vec<u8>),
}

impl Op {
    /// Whether the operation is one write batch (a lost reply leaves it applied or not).
    fn single_write(&self) -> bool {
        matches!(
            self,
            Self::Put { .. } | Self::Remove { .. } | Self::CasCreate { .. }
        )
    }
}

/// What an operation answered, as far as the model can tell.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) enum Answer {
    Done,
    Existed(bool),
    Conflict,
    NoSuchNamespace,
    SlotExists,
    NoSlot,
    WrongKey,
    SecretsMissing,
    /// The storage reported a failure: a lost reply.
    Lost,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Model {
    /// (namespace, key) -> value.
    data: BTreeMap<(usize, usize), u8>,
    /// Namespaces that exist (possibly empty).
    namespaces: BTreeSet<usize>,
    /// Extra keyslots: slot id -> key byte.
    slots: BTreeMap<u32, u8>,
    next_slot: u32,
}

impl Model {
    fn new() -> Self {
        Self {
            next_slot: 1,
            ..Self::default()
        }
    }

    /// Applies `op`; returns the answer it must give.
    fn apply(&mut self, op: Op) -> Answer {
        match op {
            Op::Put { ns, key, value } => {
                self.namespaces.insert(ns);
                self.data.insert((ns, key), value);
                Answer::Done
            }
            Op::Remove { ns, key } => Answer::Existed(self.data.remove(&(ns, key)).is_some()),
            Op::CasCreate { ns, key, value } => {
                if self.data.contains_key(&(ns, key)) {
                    Answer::Conflict
                } else {
                    self.namespaces.insert(ns);
                    self.data.insert((ns, key), value);
                    Answer::Done
                }
            }
            Op::RemoveNamespace { ns } => {
                self.data.retain(|(n, _), _| *n != ns);
                Answer::Existed(self.namespaces.remove(&ns))
            }
            Op::RotateNamespace { ns } => {
                if self.namespaces.contains(&ns) {
                    Answer::Done
                } else {
                    Answer::NoSuchNamespace
                }
            }
            Op::AddKeyslot { key } => {
                let byte = SLOT_KEYS[key];
                if self.slots.values().any(|b| *b == byte) {
                    return Answer::SlotExists;
                }
                self.slots.insert(self.next_slot, byte);
                self.next_slot += 1;
                Answer::Done
            }
            Op::RemoveSlotId(id) => match id.and_then(|id| self.slots.remove(&id)) {
                Some(_) => Answer::Done,
                None => Answer::NoSlot,
            },
            Op::ChangeKey { from, to } => {
                let (from, to) = (SLOT_KEYS[from], SLOT_KEYS[to]);
                let Some(id) = self.id_of(from) else {
                    return Answer::WrongKey;
                };
                if self.id_of(to).is_some() {
                    return Answer::SlotExists;
                }
                self.slots.insert(id, to);
                Answer::Done
            }
            Op::RotateMasterWith(secrets) => {
                if secrets.iter().any(|b| self.id_of(*b).is_none()) {
                    Answer::WrongKey
                } else if self.slots.values().any(|b| !secrets.contains(b)) {
                    Answer::SecretsMissing
                } else {
                    Answer::Done
                }
            }
            Op::RemoveKeyslot { .. } | Op::RotateMasterKey => {
                unreachable!("resolved before it runs")
            }
            Op::Shred | Op::Checkpoint | Op::Reopen => Answer::Done,
        }
    }

    fn id_of(&self, byte: u8) -> Option<u32> {
        self.slots
            .iter()
            .find_map(|(id, b)| (*b == byte).then_some(*id))
    }

    /// `op` with what it refers to resolved in this model's state.
    fn resolve(&self, op: &Op) -> Op {
        match op {
            Op::RemoveKeyslot { key } => Op::RemoveSlotId(self.id_of(SLOT_KEYS[*key])),
            Op::RotateMasterKey => Op::RotateMasterWith(self.slots.values().copied().collect()),
            other => other.clone(),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Running operations on the real handles

fn token(value: u8) -> Token {
    Token::new(format!("v{value}").into())
}

/// Runs the resolved operation `op` on `vault`.
pub(crate) fn run(vault: &Vault, op: &Op) -> Result<Answer, String> {
    let answer = match *op {
        Op::Put { ns, key, value } => vault
            .namespace(NAMESPACES[ns])
            .unwrap()
            .put(KEYS[key], &token(value))
            .map(|_| Answer::Done),
        Op::Remove { ns, key } => vault
            .namespace(NAMESPACES[ns])
            .unwrap()
            .remove(KEYS[key])
            .map(Answer::Existed),
        Op::CasCreate { ns, key, value } => vault
            .namespace(NAMESPACES[ns])
            .unwrap()
            .compare_and_swap(KEYS[key], None, &token(value))
            .map(|r| match r {
                Ok(_) => Answer::Done,
                Err(_) => Answer::Conflict,
            }),
        Op::RemoveNamespace { ns } => vault.remove_namespace(NAMESPACES[ns]).map(Answer::Existed),
        Op::RotateNamespace { ns } => match vault.rotate_namespace_key(NAMESPACES[ns], |_| {}) {
            Err(Error::InvalidName { .. }) => Ok(Answer::NoSuchNamespace),
            other => other.map(|_| Answer::Done),
        },
        Op::AddKeyslot { key } => match vault.add_keyslot(&raw(SLOT_KEYS[key])) {
            Err(Error::KeyslotExists { .. }) => Ok(Answer::SlotExists),
            other => other.map(|_| Answer::Done),
        },
        Op::RemoveSlotId(None) => Ok(Answer::NoSlot),
        Op::RemoveSlotId(Some(id)) => match vault.remove_keyslot(id) {
            Err(Error::NoSuchKeyslot { .. }) => Ok(Answer::NoSlot),
            other => other.map(|()| Answer::Done),
        },
        Op::ChangeKey { from, to } => {
            match vault.change_passphrase(&raw(SLOT_KEYS[from]), &raw(SLOT_KEYS[to])) {
                Err(Error::WrongKey) => Ok(Answer::WrongKey),
                Err(Error::KeyslotExists { .. }) => Ok(Answer::SlotExists),
                other => other.map(|_| Answer::Done),
            }
        }
        Op::RotateMasterWith(ref secrets) => {
            let sources: Vec<KeySource> = secrets.iter().map(|b| raw(*b)).collect();
            let refs: Vec<&KeySource> = sources.iter().collect();
            match vault.rotate_master_key_with(&refs) {
                Err(Error::WrongKey) => Ok(Answer::WrongKey),
                Err(Error::SlotSecretsMissing { .. }) => Ok(Answer::SecretsMissing),
                other => other.map(|()| Answer::Done),
            }
        }
        Op::Shred => vault.shred(|_| {}).map(|_| Answer::Done),
        Op::Checkpoint => vault.checkpoint().map(|()| Answer::Done),
        Op::Reopen | Op::RemoveKeyslot { .. } | Op::RotateMasterKey => Ok(Answer::Done),
    };
    match answer {
        Ok(a) => Ok(a),
        Err(Error::Backend(e)) if e.to_string().contains("injected") => Ok(Answer::Lost),
        Err(e) => Err(format!("{op:?} failed: {e} ({e:?})")),
    }
}

/// The extra keyslots in storage: slot id -> key byte (found by opening each slot with each
/// key).
fn slots_in(backend: &Arc<dyn Backend>, vault: &Vault) -> Result<BTreeMap<u32, u8>, String> {
    let mut out = BTreeMap::new();
    for slot in vault.keyslots().map_err(|e| format!("keyslots: {e}"))? {
        if slot.id == 0 {
            continue;
        }
        let byte = SLOT_KEYS.iter().copied().find(|b| {
            VaultOptions::new()
                .slot(slot.id)
                .open_with_backend(Hooked::new(Arc::clone(backend)), &raw(*b))
                .is_ok()
        });
        let byte = byte.ok_or_else(|| format!("slot {} opens with no test key", slot.id))?;
        out.insert(slot.id, byte);
    }
    Ok(out)
}

/// What a handle reads: every record of the universe, and the namespaces.
/// Records by (namespace, key), and the namespaces that exist.
pub(crate) type Seen = (BTreeMap<(usize, usize), u8>, BTreeSet<usize>);

pub(crate) fn observe(vault: &Vault) -> Result<Seen, String> {
    let mut data = BTreeMap::new();
    for (n, ns) in NAMESPACES.iter().enumerate() {
        let handle = vault.namespace(ns).unwrap();
        for (k, key) in KEYS.iter().enumerate() {
            match handle.get::<Token>(key) {
                Ok(Some(t)) => {
                    let v = t.access_token().expose_secret()[1..].parse().unwrap();
                    data.insert((n, k), v);
                }
                Ok(None) => {}
                Err(e) => return Err(format!("get {ns}/{key}: {e} ({e:?})")),
            }
        }
        let mut keys: Vec<usize> = data
            .keys()
            .filter(|(m, _)| *m == n)
            .map(|(_, k)| *k)
            .collect();
        keys.sort_unstable();
        let listed: Vec<String> = handle.keys().map_err(|e| format!("keys {ns}: {e}"))?;
        let want: Vec<String> = keys.iter().map(|k| KEYS[*k].to_owned()).collect();
        let mut want_sorted = want.clone();
        want_sorted.sort();
        if listed != want_sorted {
            return Err(format!(
                "keys {ns}: listed {listed:?}, read {want_sorted:?}"
            ));
        }
    }
    let names = vault.namespaces().map_err(|e| format!("namespaces: {e}"))?;
    let namespaces = names
        .iter()
        .map(|n| NAMESPACES.iter().position(|m| m == n).unwrap())
        .collect();
    Ok((data, namespaces))
}

/// One step: operation `op` on handle `a`, with `inject` (another handle's operation, before
/// backend call number `at` of `op`) and possibly the reply of `op`'s first write lost.
#[derive(Clone, Debug)]
pub(crate) struct Step {
    a: usize,
    op: Op,
    inject: Option<(usize, usize, Op)>,
    lose: bool,
}

/// The handles a world drives: in this process, or in processes of their own
/// (`shared_remote.rs`).
pub(crate) trait Handles {
    fn len(&self) -> usize;
    /// Closes handle `a` and opens it again.
    fn reopen(&mut self, a: usize) -> Result<(), String>;
    /// Runs `op_a` on handle `a`; `inject` runs another handle's operation before backend
    /// call number `at` of `op_a` (or after `op_a`, if it never reaches that call); `lose`
    /// loses the reply of `op_a`'s first write. The answers of both.
    fn execute(
        &mut self,
        a: usize,
        op_a: &Op,
        inject: Option<(usize, usize, Op)>,
        lose: bool,
    ) -> (Result<Answer, String>, Option<Result<Answer, String>>);
    /// What handle `i` reads.
    fn observe(&mut self, i: usize) -> Result<Seen, String>;
    /// Verifies the vault through handle `i`.
    fn verify(&mut self, i: usize) -> Result<(), String>;
    /// Closes every handle.
    fn close_all(&mut self) -> Result<(), String>;
}

/// Handles in this process, each over its own [`Hooked`] view of the storage.
struct Local {
    backend: Arc<dyn Backend>,
    hooks: Vec<Hooked>,
    vaults: Vec<Vault>,
}

impl Local {
    /// Creates the vault through the first of `handles` handles.
    fn new(backend: &Arc<dyn Backend>, handles: usize) -> Self {
        let first = Hooked::new(Arc::clone(backend));
        let vault = Vault::create_with_backend(first.clone(), &raw(1)).unwrap();
        let mut hooks = vec![first];
        let mut vaults = vec![vault];
        for _ in 1..handles {
            let hook = Hooked::new(Arc::clone(backend));
            vaults.push(Vault::open_with_backend(hook.clone(), &raw(1)).unwrap());
            hooks.push(hook);
        }
        Self {
            backend: Arc::clone(backend),
            hooks,
            vaults,
        }
    }
}

impl Handles for Local {
    fn len(&self) -> usize {
        self.vaults.len()
    }

    fn reopen(&mut self, a: usize) -> Result<(), String> {
        self.vaults[a]
            .clone()
            .close()
            .map_err(|e| format!("close: {e}"))?;
        let hook = Hooked::new(Arc::clone(&self.backend));
        self.vaults[a] =
            Vault::open_with_backend(hook.clone(), &raw(1)).map_err(|e| format!("reopen: {e}"))?;
        self.hooks[a] = hook;
        Ok(())
    }

    fn execute(
        &mut self,
        a: usize,
        op_a: &Op,
        inject: Option<(usize, usize, Op)>,
        lose: bool,
    ) -> (Result<Answer, String>, Option<Result<Answer, String>>) {
        let injected: Arc<Mutex<Option<Result<Answer, String>>>> = Arc::new(Mutex::new(None));
        let hook = inject.map(|(b, at, op)| {
            let vault = self.vaults[b].clone();
            let out = Arc::clone(&injected);
            let f: Injected = Box::new(move || {
                *out.lock().unwrap() = Some(run(&vault, &op));
            });
            (at, f)
        });
        self.hooks[a].arm(hook, lose.then_some(0));
        let answer_a = run(&self.vaults[a], op_a);
        self.hooks[a].fire_rest();
        let answer_b = injected.lock().unwrap().take();
        (answer_a, answer_b)
    }

    fn observe(&mut self, i: usize) -> Result<Seen, String> {
        observe(&self.vaults[i])
    }

    fn verify(&mut self, i: usize) -> Result<(), String> {
        let report = self.vaults[i].verify(|_| {}).map_err(|e| e.to_string())?;
        if report.is_clean() {
            Ok(())
        } else {
            Err(format!("verify: {report}"))
        }
    }

    fn close_all(&mut self) -> Result<(), String> {
        for vault in self.vaults.iter().cloned() {
            vault.close().map_err(|e| format!("close: {e}"))?;
        }
        Ok(())
    }
}

pub(crate) struct World {
    backend: Arc<dyn Backend>,
    handles: Box<dyn Handles>,
    model: Model,
    log: Vec<String>,
}

impl World {
    /// A world whose vault exists in `backend` already (unless `handles` created it).
    pub(crate) fn new(backend: Arc<dyn Backend>, handles: Box<dyn Handles>) -> Self {
        Self {
            backend,
            handles,
            model: Model::new(),
            log: Vec::new(),
        }
    }

    fn fail(&self, why: String) -> String {
        format!("{why}\nsteps:\n  {}", self.log.join("\n  "))
    }

    pub(crate) fn step(&mut self, step: &Step) -> Result<(), String> {
        let a = step.a % self.handles.len();
        self.log.push(format!("{step:?}"));
        if let Op::Reopen = step.op {
            self.handles.reopen(a).map_err(|e| self.fail(e))?;
            return self.check_reads();
        }
        let before = self.model.clone();
        let op_a = before.resolve(&step.op);
        let mut op_b = None;
        let inject = step.inject.as_ref().and_then(|(b, at, op)| {
            let b = b % self.handles.len();
            if b == a || matches!(op, Op::Reopen) {
                return None;
            }
            let op = before.resolve(op);
            op_b = Some(op.clone());
            Some((b, *at, op))
        });
        let lose = step.lose && op_a.single_write();
        let (answer_a, answer_b) = self.handles.execute(a, &op_a, inject, lose);
        let answer_a = answer_a.map_err(|e| self.fail(e))?;
        let answer_b = match answer_b {
            Some(answer) => Some(answer.map_err(|e| self.fail(e))?),
            None => None,
        };

        // The state now, as a fresh handle reads it.
        let fresh = Vault::open_with_backend(Hooked::new(Arc::clone(&self.backend)), &raw(1))
            .map_err(|e| self.fail(format!("a fresh handle does not open: {e}")))?;
        let seen = observe(&fresh).map_err(|e| self.fail(e))?;
        let slots_now = slots_in(&self.backend, &fresh).map_err(|e| self.fail(e))?;
        drop(fresh);

        // Which order of the two operations (and, after a lost reply, whether the write
        // landed) explains what the handles answered and what storage holds now?
        let orders: &[bool] = if op_b.is_some() {
            &[true, false]
        } else {
            &[true]
        };
        let mut matching = None;
        for &a_first in orders {
            for a_lands in [true, false] {
                if !a_lands && answer_a != Answer::Lost {
                    continue;
                }
                let mut m = before.clone();
                let mut want_a = Answer::Lost;
                let mut want_b = None;
                if !a_first {
                    want_b = op_b.as_ref().map(|op| m.apply(op.clone()));
                }
                if a_lands {
                    want_a = m.apply(op_a.clone());
                }
                if a_first {
                    want_b = op_b.as_ref().map(|op| m.apply(op.clone()));
                }
                if answer_a == Answer::Lost {
                    want_a = Answer::Lost;
                }
                if want_a == answer_a
                    && want_b == answer_b
                    && m.data == seen.0
                    && m.namespaces == seen.1
                    && m.slots == slots_now
                {
                    matching = Some(m);
                }
            }
        }
        let Some(model) = matching else {
            return Err(self.fail(format!(
                "no order explains it: {op_a:?} answered {answer_a:?}, the injected {op_b:?} \
                 answered {answer_b:?}; storage holds {:?} in namespaces {:?} with extra \
                 slots {slots_now:?}; the model before: {before:?}",
                seen.0, seen.1
            )));
        };
        self.model = model;
        self.check_reads()
    }

    /// Every handle reads the model's state.
    fn check_reads(&mut self) -> Result<(), String> {
        for i in 0..self.handles.len() {
            let seen = self
                .handles
                .observe(i)
                .map_err(|e| self.fail(format!("handle {i}: {e}")))?;
            if seen.0 != self.model.data || seen.1 != self.model.namespaces {
                return Err(self.fail(format!(
                    "handle {i} reads {:?} in {:?}; the model has {:?} in {:?}",
                    seen.0, seen.1, self.model.data, self.model.namespaces
                )));
            }
        }
        Ok(())
    }

    pub(crate) fn finish(mut self) -> Result<(), String> {
        for i in 0..self.handles.len() {
            self.handles.verify(i).map_err(|e| self.fail(e))?;
        }
        self.handles.close_all()?;
        let vault = Vault::open_with_backend(Hooked::new(Arc::clone(&self.backend)), &raw(1))
            .map_err(|e| format!("the final open: {e}"))?;
        let seen = observe(&vault)?;
        if seen.0 != self.model.data || seen.1 != self.model.namespaces {
            return Err(format!("after closing every handle: {seen:?}"));
        }
        vault.close().map_err(|e| format!("close: {e}"))?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Strategies and the properties

fn op() -> impl Strategy<Value = Op> {
    let ns = 0..NAMESPACES.len();
    let key = 0..KEYS.len();
    let slot = 0..SLOT_KEYS.len();
    prop_oneof![
        6 => (ns.clone(), key.clone(), any::<u8>()).prop_map(|(ns, key, value)| Op::Put { ns, key, value }),
        3 => (ns.clone(), key.clone()).prop_map(|(ns, key)| Op::Remove { ns, key }),
        3 => (ns.clone(), key, any::<u8>()).prop_map(|(ns, key, value)| Op::CasCreate { ns, key, value }),
        2 => ns.clone().prop_map(|ns| Op::RemoveNamespace { ns }),
        2 => ns.prop_map(|ns| Op::RotateNamespace { ns }),
        2 => slot.clone().prop_map(|key| Op::AddKeyslot { key }),
        1 => slot.clone().prop_map(|key| Op::RemoveKeyslot { key }),
        1 => (slot.clone(), slot).prop_filter("two keys", |(a, b)| a != b).prop_map(|(from, to)| Op::ChangeKey { from, to }),
        1 => Just(Op::RotateMasterKey),
        1 => Just(Op::Shred),
        1 => Just(Op::Checkpoint),
        1 => Just(Op::Reopen),
    ]
}

pub(crate) fn step() -> impl Strategy<Value = Step> {
    (
        0..4usize,
        op(),
        proptest::option::weighted(0.6, (0..4usize, 0..12usize, op())),
        proptest::bool::weighted(0.15),
    )
        .prop_map(|(a, op, inject, lose)| Step {
            a,
            op,
            inject,
            lose,
        })
}

pub(crate) fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Plays `steps` with `handles` handles over `backend`, panicking with the steps on the first
/// departure from the model.
fn play(backend: Arc<dyn Backend>, handles: usize, steps: &[Step]) {
    let local = Local::new(&backend, handles);
    let mut world = World::new(backend, Box::new(local));
    for step in steps {
        if let Err(e) = world.step(step) {
            panic!("{e}");
        }
    }
    if let Err(e) = world.finish() {
        panic!("{e}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(256)))]

    #[test]
    fn handles_sharing_memory_storage_behave_like_one_model(
        handles in 2..=4usize,
        steps in proptest::collection::vec(step(), 1..30),
    ) {
        let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
        play(backend, handles, &steps);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(256) / 8))]

    #[test]
    fn handles_sharing_sled_storage_behave_like_one_model(
        handles in 2..=3usize,
        steps in proptest::collection::vec(step(), 1..20),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let sled = Arc::new(SledBackend::create(dir.path().join("v")).unwrap());
        let backend: Arc<dyn Backend> = sled.clone();
        play(backend, handles, &steps);
        sled.close().unwrap();
    }
}

#[cfg(feature = "postgres")]
proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(256) / 8))]

    #[test]
    fn handles_sharing_postgres_storage_behave_like_one_model(
        handles in 2..=3usize,
        steps in proptest::collection::vec(step(), 1..20),
    ) {
        let Some(url) = support::postgres_test_url() else { return Ok(()) };
        let pg = tokenvault::backend::PostgresBackend::connect(&url, &support::unique_name("model"))
            .unwrap();
        let pg = Arc::new(pg);
        let backend: Arc<dyn Backend> = pg.clone();
        play(backend, handles, &steps);
        pg.close().unwrap();
    }
}
