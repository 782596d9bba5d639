//! Namespaces: the records of one tenant, under their own data key.
//!
//! The handle and its reads and writes are here; the write path (one conditional atomic
//! batch, and the single-key fast path for overwrites) is in `commit.rs`, the manifest (the
//! record count, reserved generations and the checkpoint floor) in `manifest.rs`, and the
//! rules for names in `names.rs`.

mod batch;
mod commit;
mod fast;
mod internal_key;
mod manifest;
mod names;

pub use self::batch::{BatchConflict, WriteBatch};
pub use self::commit::Written;
use self::commit::{commit, Expect, Op};
pub use self::internal_key::{InternalKey, RecordKey};
pub(crate) use self::manifest::{MANIFEST_ID, RESERVED_GENERATIONS};
pub(crate) use self::names::{is_reserved, validate_key, validate_namespace};

use std::fmt;
use std::sync::Arc;

use zeroize::Zeroizing;

use crate::engine::{Engine, NsState};
use crate::error::{Damage, Error, Result};
use crate::format::{NS_ID_LEN, RECORDS_TREE, RECORD_ID_LABEL};
use crate::record::{
    decode_value, open_record, parse_prefix, OpenError, Record, RecordContext, RecordPrefix,
    RecordType,
};

/// A handle on one namespace of a [`Vault`](crate::Vault): get, put, compare-and-swap, remove, list.
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
    engine: Arc<Engine>,
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

impl Namespace {
    pub(crate) fn new(engine: Arc<Engine>, name: &str, id: [u8; NS_ID_LEN]) -> Self {
        Self {
            engine,
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

    /// Reads the [internal record](InternalKey) `key` with its [`Version`].
    ///
    /// # Errors
    /// As [`Namespace::get`].
    pub fn get_internal<R: Record>(&self, key: &InternalKey) -> Result<Option<(R, Version)>> {
        self.get_unchecked(key.stored())
    }

    /// [`get_versioned`](Self::get_versioned) without the check of the key's name, for the
    /// crate's reserved keys.
    fn get_unchecked<R: Record>(&self, key: &str) -> Result<Option<(R, Version)>> {
        let Some(mut ns) = self.state()? else {
            return Ok(None);
        };
        let rid = self.record_id(key)?;
        let mut reloaded = false;
        loop {
            let stored = self
                .engine
                .call(|b| b.get(RECORDS_TREE, &ns.record_key(&rid)))?;
            let result = match stored {
                Some(stored) => self.decode_stored::<R>(&ns, &rid, &stored, key).map(Some),
                None => Ok(None),
            };
            // Nothing found, or nothing that opens: another handle may have removed the
            // namespace, or removed and created it again. Read its entry once more.
            let doubtful = matches!(result, Ok(None) | Err(Error::Damaged(_)));
            if !doubtful || reloaded {
                return result;
            }
            reloaded = true;
            match self.engine.load_entry(&self.id, &self.name)? {
                Some(fresh) if fresh.stored != ns.stored => ns = fresh,
                Some(_) => return result,
                None => return Ok(None),
            }
        }
    }

    fn decode_stored<R: Record>(
        &self,
        ns: &NsState,
        rid: &[u8],
        stored: &[u8],
        key: &str,
    ) -> Result<(R, Version)> {
        let (prefix, plain, range) = self.open(ns, rid, stored, Some(key))?;
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
        Ok((value, Version(prefix.generation)))
    }

    /// Stores `value` under `key`, replacing what was there. Durable when it returns (unless
    /// the vault is [buffered](crate::Durability::Buffered)). Returns the new version.
    ///
    /// # Errors
    /// [`Error::TooLarge`] over [`MAX_RECORD_LEN`](crate::format::MAX_RECORD_LEN); backend errors.
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

    /// The keys of all records in the namespace, tokens and secrets alike, sorted
    /// ([`TokenStore::token_keys`](crate::store::TokenStore::token_keys) lists only the tokens).
    /// Records tokenvault keeps for itself (an authorizer's lease) are left out. Opens every
    /// record (the names are stored only inside them).
    ///
    /// # Errors
    /// [`Error::Damaged`] if a record fails authentication.
    pub fn keys(&self) -> Result<Vec<String>> {
        self.keys_of(None)
    }

    /// The keys of the records of type `record_type`, sorted: [`keys`](Self::keys) of one
    /// type (`RecordType::Token` is what
    /// [`TokenStore::token_keys`](crate::store::TokenStore::token_keys) lists). Internal
    /// records are left out.
    ///
    /// ```
    /// # use tokenvault::{format::RecordType, KeySource, Secret, Token, Vault};
    /// # use tokenvault::secrecy::SecretBox;
    /// # let dir = tempfile::tempdir()?;
    /// # let vault = Vault::create(dir.path().join("v"), &KeySource::raw_key(SecretBox::new(Box::new([1; 32]))))?;
    /// let ns = vault.namespace("tenant-42")?;
    /// ns.put("api", &Token::new("at".into()))?;
    /// ns.put("client-secret", &Secret::from_bytes(b"s3cret".to_vec().into()))?;
    /// assert_eq!(ns.keys()?, ["api", "client-secret"]);
    /// assert_eq!(ns.keys_of_type(RecordType::Token)?, ["api"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`keys`](Self::keys).
    pub fn keys_of_type(&self, record_type: RecordType) -> Result<Vec<String>> {
        self.keys_of(Some(record_type))
    }

    /// How many records the namespace holds (from its authenticated manifest: no record is
    /// opened). The count includes the records tokenvault keeps for itself beside a token
    /// (an [`Authorizer`](crate::oauth::Authorizer)'s refresh lease or dead-grant mark), which
    /// [`keys`](Self::keys) leaves out: the manifest counts every stored record, and its
    /// layout is part of the format.
    ///
    /// A new record is counted by a second write after the record itself (`docs/format.md`,
    /// section 6), so the count may lag behind the records stored, never exceed them: by the
    /// records whose counting a crash interrupted, or that another handle sharing the storage
    /// was storing at the same moment. Within one handle, with no crash, it is exact.
    ///
    /// # Errors
    /// [`Error::Damaged`] if the manifest fails authentication.
    pub fn record_count(&self) -> Result<u64> {
        for _ in 0..2 {
            let Some(ns) = self.engine.load_entry(&self.id, &self.name)? else {
                return Ok(0);
            };
            if let Some((_, manifest)) = self.read_manifest(&ns)? {
                return Ok(manifest.count);
            }
        }
        Err(self.namespace_damage("the namespace's entry keeps changing"))
    }

    /// Whether the namespace holds a record under a key of its user's (one that
    /// [`keys`](Self::keys) lists): opens records until it finds one.
    pub(crate) fn holds_records(&self) -> Result<bool> {
        if self.record_count()? == 0 {
            return Ok(false);
        }
        let Some(ns) = self.state()? else {
            return Ok(false);
        };
        let mut found = false;
        self.visit_names(&ns, |name, _| {
            found = !is_reserved(&name);
            !found
        })?;
        Ok(found)
    }

    /// Opens the records of the namespace in storage order and hands each one's key and
    /// stored bytes to `visit`, until it returns `false`.
    fn visit_names(
        &self,
        ns: &NsState,
        mut visit: impl FnMut(String, &[u8]) -> bool,
    ) -> Result<()> {
        let prefix = ns.prefix();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = self
                .engine
                .call(|b| b.scan(RECORDS_TREE, &prefix, after.as_deref(), 256))?;
            let Some((last, _)) = page.last() else {
                return Ok(());
            };
            after = Some(last.clone());
            for (key, stored) in &page {
                let rid = &key[prefix.len()..];
                if !visit(self.open_name(ns, rid, stored)?, stored) {
                    return Ok(());
                }
            }
        }
    }

    /// The engine this handle and its vault share.
    pub(crate) fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    // ---- internals ----

    fn state(&self) -> Result<Option<Arc<NsState>>> {
        self.engine.namespace_state(&self.id, &self.name)
    }

    pub(crate) fn record_id(&self, key: &str) -> Result<[u8; 32]> {
        Ok(self.engine.read_state()?.index().mac(&[
            RECORD_ID_LABEL,
            self.name.as_bytes(),
            key.as_bytes(),
        ]))
    }

    fn vault_id(&self) -> Result<Vec<u8>> {
        Ok(self.engine.read_state()?.vault_id().to_vec())
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
                supported: u16::from(crate::format::FORMAT_VERSION),
            },
            other => self.damage(key, other.reason()),
        };
        let prefix = parse_prefix(stored).map_err(fail)?;
        // A rotation (here or by another handle) may have re-sealed the record under a key
        // newer than the caller's snapshot of the namespace: read the entry again before
        // calling it damage.
        let current;
        let (ns, cipher) = match ns.cipher(prefix.key_id) {
            Some(cipher) => (ns, cipher),
            None => {
                current = self
                    .engine
                    .load_entry(&self.id, &self.name)?
                    .filter(|c| c.incarnation == ns.incarnation)
                    .ok_or_else(|| fail(OpenError::UnknownKey))?;
                let cipher = current
                    .cipher(prefix.key_id)
                    .ok_or_else(|| fail(OpenError::UnknownKey))?;
                (&*current, cipher)
            }
        };
        let vault_id = self.vault_id()?;
        let ctx = RecordContext {
            vault_id: &vault_id,
            namespace: &self.name,
            record_id: rid,
            incarnation: Some(&ns.incarnation),
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
        Ok(commit(&self.engine, vec![op])?
            .map(|mut w| w.remove(0))
            .map_err(|(_, c)| c))
    }

    /// The caller's keys that have an internal record of `layer`, sorted (opens every
    /// record, as [`keys`](Self::keys) does).
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub(crate) fn internal_keys(&self, layer: &str) -> Result<Vec<String>> {
        let Some(ns) = self.engine.load_entry(&self.id, &self.name)? else {
            return Ok(Vec::new());
        };
        let prefix = format!("\0{layer}\0");
        let mut keys = Vec::new();
        self.visit_names(&ns, |name, _| {
            if let Some(key) = name.strip_prefix(&prefix) {
                keys.push(key.to_owned());
            }
            true
        })?;
        keys.sort_unstable();
        Ok(keys)
    }

    /// The keys of the records of type `record_type` (of any type: `None`), sorted, leaving
    /// out the crate's reserved keys.
    fn keys_of(&self, record_type: Option<RecordType>) -> Result<Vec<String>> {
        // The entry as storage holds it now (another handle may have removed or re-created
        // the namespace): one read, against a listing that opens every record.
        let Some(ns) = self.engine.load_entry(&self.id, &self.name)? else {
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

impl fmt::Debug for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Namespace")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}
