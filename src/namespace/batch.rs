//! [`WriteBatch`]: several writes, in one namespace or several of one vault, applied
//! atomically, each with or without a condition on the record's current version.

use std::fmt;
use std::sync::Arc;

use zeroize::Zeroizing;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::record::{Record, RecordType};

use super::commit::{commit, Expect, Op, Written};
use super::internal_key::RecordKey;
use super::{Conflict, Namespace, Version};

/// Several writes applied atomically: when [`commit`](Self::commit) returns `Ok(Ok(_))`,
/// all of them are stored (durably, unless the vault is
/// [buffered](crate::Durability::Buffered)); otherwise none is. The writes may span
/// namespaces of one vault, and each may carry a condition on its record's current
/// [`Version`] (compare-and-swap): if one condition does not hold, nothing is written and
/// the [`BatchConflict`] names it.
///
/// Start one with [`Vault::batch`](crate::Vault::batch). A record may appear once per
/// batch. Keys are a caller's keys (`&str`) or [`InternalKey`](crate::batch::InternalKey)s.
///
/// ```
/// use tokenvault::{KeySource, Token, Vault};
/// use tokenvault::secrecy::SecretBox;
///
/// # let dir = tempfile::tempdir()?;
/// let vault = Vault::create(dir.path().join("v"), &KeySource::raw_key(SecretBox::new(Box::new([1; 32]))))?;
/// let (alice, bob) = (vault.namespace("alice")?, vault.namespace("bob")?);
/// let v1 = alice.put("api", &Token::new("at-1".into()))?;
///
/// // Replace Alice's token only if nobody changed it, and give Bob one only if he has none.
/// let mut batch = vault.batch();
/// batch
///     .put_if(&alice, "api", &Token::new("at-2".into()), Some(v1))?
///     .put_if(&bob, "api", &Token::new("at-3".into()), None)?;
/// let versions = batch.commit()?.expect("no conflict");
/// assert!(versions[0].existed && !versions[1].existed);
///
/// // The same again: Alice's token is no longer at v1, and nothing is written.
/// let mut batch = vault.batch();
/// batch
///     .put_if(&alice, "api", &Token::new("at-4".into()), Some(v1))?
///     .remove(&bob, "api")?;
/// let conflict = batch.commit()?.unwrap_err();
/// assert_eq!((conflict.index, conflict.conflict.current), (0, versions[0].version));
/// assert!(bob.get::<Token>("api")?.is_some());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "a batch writes nothing until it is committed"]
pub struct WriteBatch {
    engine: Arc<Engine>,
    writes: Vec<Planned>,
}

/// One write of a batch, its record already encoded.
struct Planned {
    ns: Namespace,
    key: String,
    body: Option<Zeroizing<Vec<u8>>>,
    record_type: RecordType,
    expect: Expect,
}

/// The write of a [`WriteBatch`] whose condition did not hold: nothing was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchConflict {
    /// The write's position in the batch, from 0.
    pub index: usize,
    /// The record's current version.
    pub conflict: Conflict,
}

impl fmt::Display for BatchConflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "write {} of the batch: {}", self.index, self.conflict)
    }
}

impl std::error::Error for BatchConflict {}

impl WriteBatch {
    pub(crate) fn new(engine: Arc<Engine>) -> Self {
        Self {
            engine,
            writes: Vec::new(),
        }
    }

    /// Stores `record` under `key` in `ns`, replacing what is there.
    ///
    /// # Errors
    /// [`Error::InvalidName`] for an invalid key or a namespace of another vault;
    /// [`Error::TooLarge`] over [`MAX_RECORD_LEN`](crate::format::MAX_RECORD_LEN). The batch
    /// is unchanged then.
    pub fn put<R: Record>(
        &mut self,
        ns: &Namespace,
        key: impl RecordKey,
        record: &R,
    ) -> Result<&mut Self> {
        self.plan(ns, key, Some(record), Expect::Anything)
    }

    /// Stores `record` under `key` in `ns` only if the record is at version `expected`
    /// (`None`: only if there is none).
    ///
    /// # Errors
    /// As [`put`](Self::put).
    pub fn put_if<R: Record>(
        &mut self,
        ns: &Namespace,
        key: impl RecordKey,
        record: &R,
        expected: Option<Version>,
    ) -> Result<&mut Self> {
        self.plan(ns, key, Some(record), Expect::Exactly(expected))
    }

    /// Removes `key` from `ns` (nothing to remove is not a conflict).
    ///
    /// # Errors
    /// As [`put`](Self::put).
    pub fn remove(&mut self, ns: &Namespace, key: impl RecordKey) -> Result<&mut Self> {
        self.plan::<crate::Token>(ns, key, None, Expect::Anything)
    }

    /// Removes `key` from `ns` only if the record is at version `expected`.
    ///
    /// # Errors
    /// As [`put`](Self::put).
    pub fn remove_if(
        &mut self,
        ns: &Namespace,
        key: impl RecordKey,
        expected: Version,
    ) -> Result<&mut Self> {
        self.plan::<crate::Token>(ns, key, None, Expect::Exactly(Some(expected)))
    }

    /// How many writes the batch holds.
    pub fn len(&self) -> usize {
        self.writes.len()
    }

    /// Whether the batch holds no write.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    /// Applies every write, or none. Returns what each write did, in order (its new
    /// [`Version`], `None` for a removal, and whether a record was there), or the first write
    /// whose condition did not hold.
    ///
    /// # Errors
    /// The outer `Result`: [`Error::InvalidName`] if one record appears twice; a damaged
    /// current record ([`Error::Damaged`]); backend errors. Nothing is written then either.
    pub fn commit(self) -> Result<Result<Vec<Written>, BatchConflict>> {
        if self.writes.is_empty() {
            return Ok(Ok(Vec::new()));
        }
        let mut writes = self.writes;
        // Moved, not copied: the encoded bodies have room for their padding and tag, so
        // sealing never reallocates (and so never frees) a buffer holding plaintext.
        let bodies: Vec<_> = writes.iter_mut().map(|w| w.body.take()).collect();
        let ops = writes
            .iter()
            .zip(bodies)
            .map(|(w, body)| Op {
                ns: &w.ns,
                key: &w.key,
                body,
                record_type: w.record_type,
                expect: w.expect,
            })
            .collect();
        Ok(match commit(&self.engine, ops)? {
            Ok(written) => Ok(written),
            Err((index, conflict)) => Err(BatchConflict { index, conflict }),
        })
    }

    fn plan<R: Record>(
        &mut self,
        ns: &Namespace,
        key: impl RecordKey,
        record: Option<&R>,
        expect: Expect,
    ) -> Result<&mut Self> {
        if !Arc::ptr_eq(ns.engine(), &self.engine) {
            return Err(Error::InvalidName {
                reason: "a batch writes to the namespaces of the vault handle it was started on",
            });
        }
        let key = key.stored_key()?;
        self.writes.push(Planned {
            ns: ns.clone(),
            key: key.to_owned(),
            body: record.map(|r| r.encode_body(key)).transpose()?,
            record_type: R::TYPE,
            expect,
        });
        Ok(self)
    }
}

impl fmt::Debug for WriteBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteBatch")
            .field("writes", &self.writes.len())
            .finish_non_exhaustive()
    }
}
