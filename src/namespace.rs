//! Namespaces: the records of one tenant, under their own data key.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use zeroize::Zeroizing;

use crate::backend::{Batch, Condition, Write};
use crate::crypto::random_u64;
use crate::crypto::Key;
use crate::error::{Damage, Error, Result};
use crate::header::{NsKeys, NS_ID_LEN};
use crate::record::{
    decode_manifest, decode_value, encode_manifest, open_record, parse_prefix, seal_record,
    Manifest, OpenError, Record, RecordContext, RecordPrefix, RecordType,
};
use crate::vault::{NsState, Vault};

/// Longest namespace name or record key, in bytes.
pub const MAX_NAME_LEN: usize = 1024;
/// The storage key of a namespace's manifest (record ids are 32 bytes, so never equal).
pub(crate) const MANIFEST_ID: &[u8] = &[0];
const RECORD_ID_LABEL: &[u8] = b"tokenvault/v1/record-id";
const MANIFEST_WENT_BACK: &str = "the manifest is older than one this process wrote: it was \
                                  replaced by an older copy (rolled back); run verify";
const ROLLED_BACK: &str = "storage holds an older state of the namespace than the header \
                           recorded (rolled back, or a damaged log); restore from a backup";
/// How often a write retries when a concurrent rotation step changed the record under it.
const WRITE_RETRIES: usize = 64;
/// How many generations a manifest write reserves beyond the one it uses: single-record
/// overwrites take them without writing the manifest (`docs/format.md`, section 6).
pub(crate) const RESERVED_GENERATIONS: u64 = 4096;

/// A handle on one namespace of a [`Vault`]: get, put, compare-and-swap, remove, list.
///
/// Cheap to clone; two handles on the same namespace see each other's writes at once.
///
/// ```
/// use tokenvault::{KeySource, Token, Vault};
/// use tokenvault::secrecy::SecretBox;
///
/// # let dir = tempfile::tempdir()?;
/// let vault = Vault::create(dir.path().join("v"), &KeySource::raw_key(SecretBox::new(Box::new([1; 32]))))?;
/// let ns = vault.namespace("tenant-42")?;
/// let v1 = ns.put("rs.example.org", &Token::new("first".into()))?;
/// // Replace only if nobody else did since we read version v1:
/// let swapped = ns.compare_and_swap("rs.example.org", Some(v1), &Token::new("second".into()))?;
/// assert!(swapped.is_ok());
/// let stale = ns.compare_and_swap("rs.example.org", Some(v1), &Token::new("third".into()))?;
/// assert!(stale.is_err());
/// assert_eq!(ns.keys()?, ["rs.example.org"]);
/// assert!(ns.remove("rs.example.org")?);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Namespace {
    vault: Vault,
    name: Arc<str>,
    pub(crate) id: [u8; NS_ID_LEN],
}

/// The version of a stored record, returned by writes and by
/// [`Namespace::get_versioned`]; compare-and-swap takes the version it expects.
///
/// Versions are the namespace's write generation at the time of the write: each write in a
/// namespace gets a new, larger one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version(u64);

impl Version {
    /// The version as a number (for logs and diagnostics).
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.0)
    }
}

/// A compare-and-swap that did not apply: the record's current version differs from the
/// expected one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// The record's current version (`None`: it is absent).
    pub current: Option<Version>,
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.current {
            Some(v) => write!(f, "the record changed: it is now at {v}"),
            None => f.write_str("the record changed: it is now absent"),
        }
    }
}

impl std::error::Error for Conflict {}

/// What a write did: the new version (`None` for a removal) and whether a record was there.
pub(crate) struct Written {
    pub(crate) version: Option<Version>,
    pub(crate) existed: bool,
}

/// What a write expects of the record's current state.
#[derive(Clone, Copy)]
pub(crate) enum Expect {
    Anything,
    Exactly(Option<Version>),
}

impl Namespace {
    pub(crate) fn new(vault: Vault, name: &str, id: [u8; NS_ID_LEN]) -> Self {
        Self {
            vault,
            name: name.into(),
            id,
        }
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Reads the record `key` as `R` ([`Token`](crate::Token) or [`Secret`](crate::Secret)).
    ///
    /// # Errors
    /// [`Error::WrongRecordType`] if the record holds the other type; [`Error::Damaged`] if
    /// it fails authentication (damaged, tampered with, or moved from elsewhere).
    pub fn get<R: Record>(&self, key: &str) -> Result<Option<R>> {
        Ok(self.get_versioned(key)?.map(|(r, _)| r))
    }

    /// Reads the record `key` with its [`Version`], for a later
    /// [`compare_and_swap`](Self::compare_and_swap).
    ///
    /// # Errors
    /// As [`Namespace::get`].
    pub fn get_versioned<R: Record>(&self, key: &str) -> Result<Option<(R, Version)>> {
        validate_key(key)?;
        self.get_unchecked(key)
    }

    /// [`get_versioned`](Self::get_versioned) without the check of the key's name, for the
    /// crate's reserved keys.
    pub(crate) fn get_unchecked<R: Record>(&self, key: &str) -> Result<Option<(R, Version)>> {
        let Some(ns) = self.state()? else {
            return Ok(None);
        };
        self.check_fresh(&ns)?;
        let rid = self.record_id(key)?;
        let Some(stored) = self.vault.call(|b| b.get(&self.id, &rid))? else {
            return Ok(None);
        };
        let (prefix, plain, range) = self.open(&ns, &rid, &stored, Some(key))?;
        if prefix.record_type != R::TYPE {
            return Err(Error::WrongRecordType {
                expected: R::TYPE,
                found: prefix.record_type,
            });
        }
        let (stored_key, value) =
            decode_value::<R>(&plain[range]).map_err(|e| self.damage(Some(key), e.reason()))?;
        if stored_key != key {
            return Err(self.damage(Some(key), "the record holds another key's value"));
        }
        Ok(Some((value, Version(prefix.generation))))
    }

    /// Stores `value` under `key`, replacing what was there. Durable when it returns (unless
    /// the vault is [buffered](crate::Durability::Buffered)). Returns the new version.
    ///
    /// # Errors
    /// [`Error::TooLarge`] over [`MAX_RECORD_LEN`](crate::MAX_RECORD_LEN); backend errors.
    pub fn put<R: Record>(&self, key: &str, value: &R) -> Result<Version> {
        match self.write(key, Some(value), Expect::Anything)? {
            Ok(Written {
                version: Some(v), ..
            }) => Ok(v),
            _ => Err(Error::backend(
                "internal: unconditional write did not apply",
            )),
        }
    }

    /// Stores `value` under `key` only if the record is still at version `expected`
    /// (`None`: only if there is no record). Atomic, and durable when it returns `Ok(Ok(_))`.
    ///
    /// # Errors
    /// The outer `Result` is an error as for [`put`](Self::put) (a damaged current record is
    /// [`Error::Damaged`]); the inner one is the [`Conflict`] when the record changed.
    pub fn compare_and_swap<R: Record>(
        &self,
        key: &str,
        expected: Option<Version>,
        value: &R,
    ) -> Result<Result<Version, Conflict>> {
        Ok(self
            .write(key, Some(value), Expect::Exactly(expected))?
            .and_then(|w| w.version.ok_or(Conflict { current: None })))
    }

    /// Removes `key` only if it is still at version `expected`.
    ///
    /// # Errors
    /// As [`compare_and_swap`](Self::compare_and_swap).
    pub fn compare_and_remove(&self, key: &str, expected: Version) -> Result<Result<(), Conflict>> {
        Ok(self
            .write::<crate::Token>(key, None, Expect::Exactly(Some(expected)))?
            .map(|_| ()))
    }

    /// Removes `key`; returns whether it was there. Durable when it returns.
    ///
    /// # Errors
    /// Backend errors.
    pub fn remove(&self, key: &str) -> Result<bool> {
        // An unconditional removal cannot conflict.
        Ok(self
            .write::<crate::Token>(key, None, Expect::Anything)?
            .is_ok_and(|w| w.existed))
    }

    /// The keys of all records in the namespace, sorted. Opens every record (the names are
    /// stored only inside them).
    ///
    /// # Errors
    /// [`Error::Damaged`] if a record fails authentication.
    pub fn keys(&self) -> Result<Vec<String>> {
        self.keys_of(None)
    }

    /// How many records the namespace holds (from its authenticated manifest: no record is
    /// opened). The count includes the records tokenvault keeps for itself beside a token
    /// (an [`Authorizer`](crate::Authorizer)'s refresh lease or dead-grant mark), which
    /// [`keys`](Self::keys) leaves out: the manifest counts every stored record, and its
    /// layout is part of format version 1.
    ///
    /// # Errors
    /// [`Error::Damaged`] if the manifest fails authentication.
    pub fn record_count(&self) -> Result<u64> {
        let Some(ns) = self.state()? else {
            return Ok(0);
        };
        let (_, manifest) = self.read_manifest(&ns)?;
        Ok(manifest.count)
    }

    /// Whether the namespace holds a record under a key of its user's (one that
    /// [`keys`](Self::keys) lists): opens records until it finds one.
    pub(crate) fn holds_records(&self) -> Result<bool> {
        let Some(ns) = self.state()? else {
            return Ok(false);
        };
        if self.read_manifest(&ns)?.1.count == 0 {
            return Ok(false);
        }
        let mut found = false;
        self.visit_names(&ns, |name, _| {
            found = !is_reserved(&name);
            !found
        })?;
        Ok(found)
    }

    /// Opens the records of the namespace in storage order (the manifest left out) and hands
    /// each one's key and stored bytes to `visit`, until it returns `false`.
    fn visit_names(
        &self,
        ns: &NsState,
        mut visit: impl FnMut(String, &[u8]) -> bool,
    ) -> Result<()> {
        self.check_fresh(ns)?;
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = self
                .vault
                .call(|b| b.scan(&self.id, after.as_deref(), 256))?;
            let Some((last, _)) = page.last() else {
                return Ok(());
            };
            after = Some(last.clone());
            for (rid, stored) in &page {
                if rid.as_slice() == MANIFEST_ID {
                    continue;
                }
                if !visit(self.open_name(ns, rid, stored)?, stored) {
                    return Ok(());
                }
            }
        }
    }

    /// The vault this namespace belongs to.
    pub fn vault(&self) -> &Vault {
        &self.vault
    }

    // ---- internals ----

    fn state(&self) -> Result<Option<Arc<NsState>>> {
        Ok(self.vault.read_state()?.namespaces.get(&self.id).cloned())
    }

    pub(crate) fn record_id(&self, key: &str) -> Result<[u8; 32]> {
        Ok(self.vault.read_state()?.index().mac(&[
            RECORD_ID_LABEL,
            self.name.as_bytes(),
            key.as_bytes(),
        ]))
    }

    fn vault_id(&self) -> Result<Vec<u8>> {
        Ok(self.vault.read_state()?.vault_id().to_vec())
    }

    pub(crate) fn damage(&self, key: Option<&str>, reason: &'static str) -> Error {
        Error::Damaged(Damage::Record {
            namespace: self.name.to_string(),
            key: key.map(str::to_owned),
            reason,
        })
    }

    fn namespace_damage(&self, reason: &'static str) -> Error {
        Error::Damaged(Damage::Namespace {
            namespace: self.name.to_string(),
            reason,
        })
    }

    /// Authenticates a stored record; returns its prefix and plaintext.
    pub(crate) fn open(
        &self,
        ns: &NsState,
        rid: &[u8],
        stored: &[u8],
        key: Option<&str>,
    ) -> Result<(RecordPrefix, Zeroizing<Vec<u8>>, std::ops::Range<usize>)> {
        let fail = |e: OpenError| match e {
            OpenError::Version(v) => Error::UnsupportedVersion {
                found: u16::from(v),
                supported: u16::from(crate::record::FORMAT_VERSION),
            },
            other => self.damage(key, other.reason()),
        };
        let prefix = parse_prefix(stored).map_err(fail)?;
        // A rotation may have re-sealed the record under a key newer than the caller's
        // snapshot of the namespace: look at the current keys before calling it damage.
        let current;
        let cipher = match ns.cipher(prefix.key_id) {
            Some(cipher) => cipher,
            None => {
                current = self.state()?.ok_or_else(|| fail(OpenError::UnknownKey))?;
                current
                    .cipher(prefix.key_id)
                    .ok_or_else(|| fail(OpenError::UnknownKey))?
            }
        };
        let vault_id = self.vault_id()?;
        let ctx = RecordContext {
            vault_id: &vault_id,
            namespace: &self.name,
            record_id: rid,
        };
        let (plain, range) = open_record(cipher, &ctx, &prefix, stored).map_err(fail)?;
        Ok((prefix, plain, range))
    }

    /// Opens a scanned record and returns its key, checking that it belongs at `rid`.
    pub(crate) fn open_name(&self, ns: &NsState, rid: &[u8], stored: &[u8]) -> Result<String> {
        let (prefix, plain, range) = self.open(ns, rid, stored, None)?;
        let body = &plain[range];
        let key = match prefix.record_type {
            RecordType::Token => decode_value::<crate::Token>(body).map(|(k, _)| k),
            RecordType::Secret => decode_value::<crate::Secret>(body).map(|(k, _)| k),
            RecordType::Manifest => Err(OpenError::Format("a manifest stored as a record")),
        }
        .map_err(|e| self.damage(None, e.reason()))?;
        if self.record_id(&key)?.as_slice() != rid {
            return Err(self.damage(Some(&key), "the record is stored under another key's id"));
        }
        Ok(key)
    }

    /// The namespace's manifest, authenticated and checked against the header's floor.
    pub(crate) fn read_manifest(&self, ns: &NsState) -> Result<(Vec<u8>, Manifest)> {
        match self.vault.call(|b| b.get(&self.id, MANIFEST_ID))? {
            Some(stored) => {
                let (prefix, plain, range) = self
                    .open(ns, MANIFEST_ID, &stored, None)
                    .map_err(|_| self.namespace_damage("the manifest fails authentication"))?;
                if prefix.record_type != RecordType::Manifest {
                    return Err(self.namespace_damage("the manifest has the wrong type"));
                }
                let manifest = decode_manifest(&plain[range])
                    .map_err(|_| self.namespace_damage("the manifest does not decode"))?;
                if manifest.generation != prefix.generation {
                    return Err(self.namespace_damage("the manifest generation is inconsistent"));
                }
                if manifest.generation < ns.floor {
                    return Err(self.namespace_damage(ROLLED_BACK));
                }
                Ok((stored, manifest))
            }
            // A namespace's manifest is written before its header entry, so a namespace the
            // header lists always has one: a missing manifest is lost data.
            None => Err(self.namespace_damage(
                "the namespace's manifest is missing: storage lost data (run verify)",
            )),
        }
    }

    /// Checks, once per handle and namespace, that storage holds the namespace at least as
    /// new as the header's floor, before serving reads from it.
    fn check_fresh(&self, ns: &NsState) -> Result<()> {
        if ns.fresh.load(Ordering::SeqCst) {
            return Ok(());
        }
        self.read_manifest(ns)?;
        ns.fresh.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Seals a manifest under `cipher` (data key `key_id`).
    fn seal_manifest(
        &self,
        vault_id: &[u8],
        cipher: &crate::crypto::Cipher,
        key_id: u32,
        manifest: &Manifest,
    ) -> Result<Vec<u8>> {
        seal_record(
            cipher,
            &RecordContext {
                vault_id,
                namespace: &self.name,
                record_id: MANIFEST_ID,
            },
            &RecordPrefix {
                record_type: RecordType::Manifest,
                key_id,
                generation: manifest.generation,
            },
            encode_manifest(manifest)?,
        )
    }

    /// Takes in a manifest just read and authenticated: every generation up to its own may
    /// have been given out. A manifest below what this handle reserved itself was replaced
    /// by an older copy under it.
    fn adopt_manifest(&self, ns: &NsState, stored: &[u8], manifest: &Manifest) -> Result<()> {
        let gens = &ns.gens;
        let reserved = gens.reserved.load(Ordering::SeqCst);
        if manifest.generation < reserved {
            return Err(self.namespace_damage(MANIFEST_WENT_BACK));
        }
        gens.last.fetch_max(manifest.generation, Ordering::SeqCst);
        gens.reserved.store(manifest.generation, Ordering::SeqCst);
        gens.set_manifest(stored);
        Ok(())
    }

    /// For a checkpoint: writes the manifest again with a generation above every one given
    /// out so far (a new reservation) and returns that generation, the namespace's new floor:
    /// storage rolled back to any state before this write holds a lower one. `None` if the
    /// namespace no longer exists, or is no longer the one `gens` belongs to (removed and
    /// created again). Not durable until the next flush.
    pub(crate) fn raise_manifest(
        &self,
        gens: &Arc<crate::vault::Generations>,
    ) -> Result<Option<u64>> {
        let _guard = self.vault.inner.lock_shards(&[self.id]);
        let vault_id = self.vault_id()?;
        for _ in 0..WRITE_RETRIES {
            let Some(ns) = self.state()? else {
                return Ok(None);
            };
            if !Arc::ptr_eq(&ns.gens, gens) {
                return Ok(None);
            }
            let (stored, manifest) = self.read_manifest(&ns)?;
            self.adopt_manifest(&ns, &stored, &manifest)?;
            let gens = &ns.gens;
            let last = gens.last.load(Ordering::SeqCst);
            let ceiling = last
                .checked_add(RESERVED_GENERATIONS)
                .ok_or_else(|| self.namespace_damage("write generation exhausted"))?;
            let cipher = ns
                .active_cipher()
                .ok_or_else(|| self.namespace_damage("the active key is missing"))?;
            let sealed = self.seal_manifest(
                &vault_id,
                cipher,
                ns.active,
                &Manifest {
                    count: manifest.count,
                    generation: ceiling,
                },
            )?;
            let batch = Batch::new()
                .expect(&self.id, MANIFEST_ID, Some(&stored))
                .write(&self.id, MANIFEST_ID, Some(sealed));
            if self.vault.call(|b| b.apply(&batch))? {
                gens.reserved.store(ceiling, Ordering::SeqCst);
                if let Some(w) = batch.writes.first().and_then(|w| w.value.as_deref()) {
                    gens.set_manifest(w);
                }
                return Ok(Some(ceiling));
            }
            // A rotation step re-sealed the manifest under us: read it again.
        }
        Err(Error::backend(
            "the manifest kept changing under a checkpoint; retry the operation",
        ))
    }

    /// The namespace's state, creating the namespace (new random data key, header write)
    /// if it does not exist. Called with the namespace lock held.
    fn ensure(&self) -> Result<Arc<NsState>> {
        if let Some(ns) = self.state()? {
            return Ok(ns);
        }
        let id = self.id;
        let key = Key::random()?;
        // Start the generation at a random point so that versions of a removed and
        // re-created namespace do not repeat.
        // Below 2^52: far from exhaustion, and exact in JSON numbers (doubles).
        let generation = random_u64()? >> 12;
        // The manifest goes to storage (durably) before the header lists the namespace, so
        // that a listed namespace without a manifest can only mean lost data. Whatever is
        // stored under the id already is an orphan (an interrupted removal, or a namespace of
        // a newer header): set it aside, never drop it (`orphans.rs`).
        self.vault.set_aside(&id)?;
        let vault_id = self.vault_id()?;
        let manifest = self.seal_manifest(
            &vault_id,
            &key.cipher(),
            1,
            &Manifest {
                count: 0,
                generation,
            },
        )?;
        self.vault
            .call(|b| b.apply(&Batch::new().write(&id, MANIFEST_ID, Some(manifest))))?;
        self.vault.sync_now()?;
        let name = self.name.to_string();
        self.vault.update_state(|s| {
            if !s.namespaces.contains_key(&id) {
                let keys = NsKeys {
                    name,
                    active: 1,
                    keys: vec![(1, key)],
                    floor: generation,
                };
                s.set_namespace(id, keys)?;
            }
            Ok(())
        })?;
        let ns = self
            .state()?
            .ok_or_else(|| Error::backend("internal: namespace vanished after creation"))?;
        // This handle wrote the manifest itself.
        ns.fresh.store(true, Ordering::SeqCst);
        Ok(ns)
    }

    /// The one write path for a single record: see [`commit`].
    fn write<R: Record>(
        &self,
        key: &str,
        value: Option<&R>,
        expect: Expect,
    ) -> Result<Result<Written, Conflict>> {
        validate_key(key)?;
        let op = Op {
            ns: self,
            key,
            body: value.map(|v| v.encode_body(key)).transpose()?,
            record_type: R::TYPE,
            expect,
        };
        Ok(commit(&self.vault, vec![op])?
            .map(|mut w| w.remove(0))
            .map_err(|(_, c)| c))
    }

    /// Stores several tokens in this namespace atomically: all of them or none. Returns their
    /// new versions, in order.
    ///
    /// # Errors
    /// As [`put`](Self::put); [`Error::InvalidName`] if a key appears twice.
    pub(crate) fn put_many(&self, tokens: &[(&str, &crate::Token)]) -> Result<Vec<Version>> {
        let mut ops = Vec::with_capacity(tokens.len());
        for (key, token) in tokens {
            validate_key(key)?;
            ops.push(Op {
                ns: self,
                key,
                body: Some(crate::record::sealed::Sealed::encode_body(*token, key)?),
                record_type: RecordType::Token,
                expect: Expect::Anything,
            });
        }
        match commit(&self.vault, ops)? {
            Ok(written) => Ok(written.into_iter().filter_map(|w| w.version).collect()),
            Err(_) => Err(Error::backend(
                "internal: unconditional write did not apply",
            )),
        }
    }

    /// The keys of the records of type `record_type` (of any type: `None`), sorted, leaving
    /// out the crate's reserved keys.
    pub(crate) fn keys_of(&self, record_type: Option<RecordType>) -> Result<Vec<String>> {
        let Some(ns) = self.state()? else {
            return Ok(Vec::new());
        };
        let mut keys = Vec::new();
        self.visit_names(&ns, |name, stored| {
            let wanted =
                record_type.is_none_or(|t| parse_prefix(stored).is_ok_and(|p| p.record_type == t));
            if wanted && !is_reserved(&name) {
                keys.push(name);
            }
            true
        })?;
        keys.sort_unstable();
        Ok(keys)
    }
}

/// One record write in a [`commit`].
pub(crate) struct Op<'a> {
    pub(crate) ns: &'a Namespace,
    pub(crate) key: &'a str,
    /// The encoded body to store; `None` removes the record.
    pub(crate) body: Option<Zeroizing<Vec<u8>>>,
    pub(crate) record_type: RecordType,
    pub(crate) expect: Expect,
}

/// The write path: seal the new records and the new manifests of their namespaces, and apply
/// them all in one conditional batch, so that either every write lands or none does. Returns
/// `Ok(Err((i, conflict)))` when the expectation of op `i` does not hold (nothing written).
///
/// Namespaces that do not exist yet are created first (with the maintenance lock held); if
/// the batch then does not apply, they are removed again, so a failed commit leaves no trace.
pub(crate) fn commit(
    vault: &Vault,
    ops: Vec<Op<'_>>,
) -> Result<Result<Vec<Written>, (usize, Conflict)>> {
    for (i, op) in ops.iter().enumerate() {
        if ops[..i]
            .iter()
            .any(|o| o.ns.id == op.ns.id && o.key == op.key)
        {
            return Err(Error::InvalidName {
                reason: "the same key appears twice in one write",
            });
        }
    }
    let rids = ops
        .iter()
        .map(|op| op.ns.record_id(op.key))
        .collect::<Result<Vec<_>>>()?;
    // The namespaces involved, in a fixed order (for the lock order and the batch).
    let mut ns_ids: Vec<[u8; NS_ID_LEN]> = ops.iter().map(|op| op.ns.id).collect();
    ns_ids.sort_unstable();
    ns_ids.dedup();
    let first_op = |id: &[u8; NS_ID_LEN]| ops.iter().position(|op| op.ns.id == *id);

    let state = vault.read_state()?;
    let missing: Vec<[u8; NS_ID_LEN]> = ns_ids
        .iter()
        .filter(|id| !state.namespaces.contains_key(*id))
        .copied()
        .collect();
    drop(state);
    let _maintenance = (!missing.is_empty()).then(|| vault.inner.lock_maintenance());
    let _guards = vault.inner.lock_shards(&ns_ids);

    // A namespace that does not exist holds no record: an op that expects one conflicts, and
    // a namespace only removed from is not created.
    let mut created = Vec::new();
    for id in &ns_ids {
        let Some(first) = first_op(id) else { continue };
        let ns = ops[first].ns;
        if ns.state()?.is_some() {
            continue;
        }
        for (i, op) in ops.iter().enumerate() {
            if op.ns.id == *id && matches!(op.expect, Expect::Exactly(Some(_))) {
                return Ok(Err((i, Conflict { current: None })));
            }
        }
    }
    for id in &ns_ids {
        let Some(first) = first_op(id) else { continue };
        let ns = ops[first].ns;
        let puts = ops.iter().any(|op| op.ns.id == *id && op.body.is_some());
        if ns.state()?.is_none() && puts {
            ns.ensure()?;
            created.push(ns.clone());
        }
    }
    let fast = match (ops.as_slice(), rids.as_slice()) {
        ([op], [rid]) if created.is_empty() => overwrite(vault, op, rid).transpose(),
        _ => None,
    };
    let result = match fast {
        Some(result) => result,
        None => commit_locked(vault, &ops, &rids, &ns_ids),
    };
    if !matches!(result, Ok(Ok(_))) && !created.is_empty() {
        for ns in created {
            // Best effort: the namespace is empty, and the locks held since its creation
            // kept every other writer out of it.
            let _ = vault.update_state(|s| Ok(s.drop_namespace(&ns.id)));
            let _ = vault.call(|b| b.drop_tree(&ns.id));
        }
        let _ = vault.sync_now();
    }
    drop(_guards);
    drop(_maintenance);
    match result {
        // Durable once synced; the locks are released first so that concurrent writers
        // share the sync (group commit).
        Ok(Ok((written, Some(ticket)))) => {
            vault.sync(ticket)?;
            Ok(Ok(written))
        }
        Ok(Ok((written, None))) => Ok(Ok(written)),
        Ok(Err(conflict)) => Ok(Err(conflict)),
        Err(e) => Err(e),
    }
}

/// What [`commit_locked`] did: the writes, and the sync ticket to wait for (none when nothing
/// was written).
type Committed = (Vec<Written>, Option<u64>);

/// The fast path of a single-record write: an overwrite of an existing record at a
/// generation the manifest has already reserved is one conditional single-key write, without
/// the manifest (sled turns every multi-key atomic batch into a log write of its own, which
/// dominates a buffered write; see BENCHMARKS.md). The record count does not change, and the
/// reservation keeps every generation unique and at most the manifest's.
///
/// `Ok(None)`: take the general path (a new record, a removal, a condition on absence, no
/// reservation known or left, or a record changed under us by a rotation step).
fn overwrite(
    vault: &Vault,
    op: &Op<'_>,
    rid: &[u8; 32],
) -> Result<Option<Result<Committed, (usize, Conflict)>>> {
    let Some(body) = &op.body else {
        return Ok(None);
    };
    if matches!(op.expect, Expect::Exactly(None)) {
        return Ok(None);
    }
    let handle = op.ns;
    let Some(ns) = handle.state()? else {
        return Ok(None);
    };
    let gens = &ns.gens;
    let reserved = gens.reserved.load(Ordering::SeqCst);
    let last = gens.last.load(Ordering::SeqCst);
    if reserved == 0 || last >= reserved {
        return Ok(None);
    }
    // Storage must still hold the manifest this handle last authenticated (else the general
    // path reads it again, and reports damage or a rollback).
    match vault.call(|b| b.get(&handle.id, MANIFEST_ID))? {
        Some(stored) if gens.manifest_is(&stored) => {}
        _ => return Ok(None),
    }
    let Some(current) = vault.call(|b| b.get(&handle.id, rid))? else {
        return Ok(None);
    };
    let current_generation = match op.expect {
        // A conditional write authenticates what it compares against.
        Expect::Exactly(_) => handle.open(&ns, rid, &current, Some(op.key))?.0.generation,
        Expect::Anything => parse_prefix(&current)
            .map(|p| p.generation)
            .unwrap_or_default(),
    };
    if current_generation > reserved {
        // The manifest was rolled back: the general path reports it.
        return Ok(None);
    }
    if let Expect::Exactly(expected) = op.expect {
        if expected != Some(Version(current_generation)) {
            return Ok(Some(Err((
                0,
                Conflict {
                    current: Some(Version(current_generation)),
                },
            ))));
        }
    }
    let generation = last + 1;
    if generation <= current_generation {
        // Only possible if a write was applied but reported as failed: let the general path
        // read the manifest again.
        return Ok(None);
    }
    let cipher = ns
        .active_cipher()
        .ok_or_else(|| handle.namespace_damage("the active key is missing"))?;
    let vault_id = handle.vault_id()?;
    // Seal a copy: the general path may still need the body.
    let mut copy = Zeroizing::new(Vec::with_capacity(body.capacity()));
    copy.extend_from_slice(body);
    let sealed = seal_record(
        cipher,
        &RecordContext {
            vault_id: &vault_id,
            namespace: &handle.name,
            record_id: rid,
        },
        &RecordPrefix {
            record_type: op.record_type,
            key_id: ns.active,
            generation,
        },
        copy,
    )?;
    let batch = Batch {
        conditions: vec![Condition {
            tree: handle.id.to_vec(),
            key: rid.to_vec(),
            expected: Some(current),
        }],
        writes: vec![Write {
            tree: handle.id.to_vec(),
            key: rid.to_vec(),
            value: Some(sealed),
        }],
    };
    if !vault.call(|b| b.apply(&batch))? {
        return Ok(None);
    }
    gens.last.store(generation, Ordering::SeqCst);
    gens.written.fetch_max(generation, Ordering::SeqCst);
    let written = Written {
        version: Some(Version(generation)),
        existed: true,
    };
    Ok(Some(Ok((vec![written], Some(vault.committed())))))
}

fn commit_locked(
    vault: &Vault,
    ops: &[Op<'_>],
    rids: &[[u8; 32]],
    ns_ids: &[[u8; NS_ID_LEN]],
) -> Result<Result<Committed, (usize, Conflict)>> {
    let vault_id = vault.read_state()?.vault_id().to_vec();
    // Which namespace (index into `ns_ids`) each op belongs to.
    let op_ns: Vec<usize> = ops
        .iter()
        .map(|op| ns_ids.iter().position(|id| *id == op.ns.id).unwrap_or(0))
        .collect();
    for _ in 0..WRITE_RETRIES {
        // Per namespace: its handle, state and manifest (`None`: it does not exist, and
        // only removals target it).
        let mut plans = Vec::with_capacity(ns_ids.len());
        for (p, _) in ns_ids.iter().enumerate() {
            let Some(i) = op_ns.iter().position(|q| *q == p) else {
                plans.push(None);
                continue;
            };
            let handle = ops[i].ns;
            plans.push(match handle.state()? {
                Some(ns) => {
                    let (bytes, manifest) = handle.read_manifest(&ns)?;
                    handle.adopt_manifest(&ns, &bytes, &manifest)?;
                    Some((handle, ns, bytes, manifest))
                }
                None => None,
            });
        }
        // Read every current record and check the expectations before sealing anything.
        let mut currents: Vec<Option<Vec<u8>>> = Vec::with_capacity(ops.len());
        for (i, op) in ops.iter().enumerate() {
            let Some((handle, ns, _, manifest)) = &plans[op_ns[i]] else {
                currents.push(None);
                continue;
            };
            let current = vault.call(|b| b.get(&handle.id, &rids[i]))?;
            let current_version = match &current {
                Some(stored) => Some(match op.expect {
                    // A conditional write authenticates what it compares against.
                    Expect::Exactly(_) => Version(
                        handle
                            .open(ns, &rids[i], stored, Some(op.key))?
                            .0
                            .generation,
                    ),
                    Expect::Anything => Version(
                        parse_prefix(stored)
                            .map(|p| p.generation)
                            .unwrap_or_default(),
                    ),
                }),
                None => None,
            };
            // No record is written at a generation its manifest has not reserved first, so a
            // record newer than the manifest means the manifest was rolled back: generations
            // (and so versions) would repeat, and a compare-and-swap could match a different
            // write.
            if current_version.is_some_and(|v| v.0 > manifest.generation) {
                return Err(handle.namespace_damage(
                    "a record is newer than the manifest (the manifest was rolled back); run verify",
                ));
            }
            if let Expect::Exactly(expected) = op.expect {
                if expected != current_version {
                    return Ok(Err((
                        i,
                        Conflict {
                            current: current_version,
                        },
                    )));
                }
            }
            currents.push(current);
        }
        let mut batch = Batch::new();
        // Per namespace: the generation of this write and the new manifest's.
        let mut generations: Vec<Option<(u64, u64)>> = vec![None; ns_ids.len()];
        let mut manifests: Vec<Option<Vec<u8>>> = vec![None; ns_ids.len()];
        for (p, plan) in plans.iter().enumerate() {
            let Some((handle, ns, manifest_bytes, manifest)) = plan else {
                continue;
            };
            let id = ns_ids[p];
            let mine: Vec<usize> = (0..ops.len()).filter(|i| op_ns[*i] == p).collect();
            // Removals of absent records change nothing.
            if !mine
                .iter()
                .any(|&i| ops[i].body.is_some() || currents[i].is_some())
            {
                continue;
            }
            let exhausted = || handle.namespace_damage("write generation exhausted");
            let generation = ns
                .gens
                .last
                .load(Ordering::SeqCst)
                .checked_add(1)
                .ok_or_else(exhausted)?;
            // The new manifest reserves the generations after this one for overwrites.
            let ceiling = generation
                .checked_add(RESERVED_GENERATIONS)
                .ok_or_else(exhausted)?
                .max(manifest.generation);
            let mut count = manifest.count;
            let cipher = ns
                .active_cipher()
                .ok_or_else(|| handle.namespace_damage("the active key is missing"))?;
            let ctx = |record_id| RecordContext {
                vault_id: &vault_id,
                namespace: &handle.name,
                record_id,
            };
            for &i in &mine {
                let current = currents[i].as_deref();
                match (current.is_some(), ops[i].body.is_some()) {
                    (false, true) => count += 1,
                    (true, false) => count = count.saturating_sub(1),
                    (false, false) => continue,
                    (true, true) => {}
                }
                let sealed = match &ops[i].body {
                    Some(body) => {
                        // Seal a copy (the batch may be retried), with the same capacity so
                        // that sealing never reallocates.
                        let mut copy = Zeroizing::new(Vec::with_capacity(body.capacity()));
                        copy.extend_from_slice(body);
                        let prefix = RecordPrefix {
                            record_type: ops[i].record_type,
                            key_id: ns.active,
                            generation,
                        };
                        Some(seal_record(cipher, &ctx(&rids[i]), &prefix, copy)?)
                    }
                    None => None,
                };
                batch = batch
                    .expect(&id, &rids[i], current)
                    .write(&id, &rids[i], sealed);
            }
            let new_manifest = handle.seal_manifest(
                &vault_id,
                cipher,
                ns.active,
                &Manifest {
                    count,
                    generation: ceiling,
                },
            )?;
            manifests[p] = Some(new_manifest.clone());
            batch = batch.expect(&id, MANIFEST_ID, Some(manifest_bytes)).write(
                &id,
                MANIFEST_ID,
                Some(new_manifest),
            );
            generations[p] = Some((generation, ceiling));
        }
        let written: Vec<Written> = ops
            .iter()
            .enumerate()
            .map(|(i, op)| Written {
                version: op
                    .body
                    .as_ref()
                    .and(generations[op_ns[i]])
                    .map(|(g, _)| Version(g)),
                existed: currents[i].is_some(),
            })
            .collect();
        if generations.iter().all(Option::is_none) {
            // Nothing to write (only removals of absent records).
            return Ok(Ok((written, None)));
        }
        if vault.call(|b| b.apply(&batch))? {
            for (p, plan) in plans.iter().enumerate() {
                if let (Some((_, ns, _, _)), Some((generation, ceiling))) = (plan, generations[p]) {
                    ns.gens.last.fetch_max(generation, Ordering::SeqCst);
                    ns.gens.reserved.store(ceiling, Ordering::SeqCst);
                    ns.gens.written.fetch_max(generation, Ordering::SeqCst);
                    if let Some(m) = manifests[p].as_deref() {
                        ns.gens.set_manifest(m);
                    }
                }
            }
            return Ok(Ok((written, Some(vault.committed()))));
        }
        // A rotation step re-sealed a record or a manifest under us: read again.
    }
    Err(Error::backend(
        "the records kept changing under a write; retry the operation",
    ))
}

impl fmt::Debug for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Namespace")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

pub(crate) fn validate_namespace(name: &str) -> Result<()> {
    validate_name(name, "a namespace name must not be empty")
}

pub(crate) fn validate_key(key: &str) -> Result<()> {
    validate_name(key, "a record key must not be empty")?;
    if is_reserved(key) {
        return Err(Error::InvalidName {
            reason: "record keys starting with U+0000 are reserved for tokenvault",
        });
    }
    Ok(())
}

/// Record keys starting with U+0000 are the crate's own (the authorizer's leases): refused
/// as user keys, and left out of key listings.
pub(crate) fn is_reserved(key: &str) -> bool {
    key.starts_with('\0')
}

fn validate_name(name: &str, empty: &'static str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::InvalidName { reason: empty });
    }
    if name.len() > MAX_NAME_LEN {
        return Err(Error::InvalidName {
            reason: "names are at most 1024 bytes",
        });
    }
    Ok(())
}

/// Stores tokens across namespaces in one atomic commit: all of them or none. With
/// `only_new`, every record must be absent (an existing one is a conflict, and its index is
/// returned with nothing written). Namespaces are created as needed, and removed again if the
/// commit fails. Returns the new versions, in order.
pub(crate) fn put_tokens(
    vault: &Vault,
    items: &[(&Namespace, &str, &crate::Token)],
    only_new: bool,
) -> Result<Result<Vec<Version>, (usize, Conflict)>> {
    let mut ops = Vec::with_capacity(items.len());
    for (ns, key, token) in items {
        validate_key(key)?;
        ops.push(Op {
            ns,
            key,
            body: Some(crate::record::sealed::Sealed::encode_body(*token, key)?),
            record_type: RecordType::Token,
            expect: if only_new {
                Expect::Exactly(None)
            } else {
                Expect::Anything
            },
        });
    }
    Ok(commit(vault, ops)?.map(|w| w.into_iter().filter_map(|w| w.version).collect()))
}
