//! The PostgreSQL backend (feature `postgres`): one database that any number of processes
//! on any number of machines share, holding any number of vaults. It stores what every
//! backend stores, the sealed header, ciphertext and HMAC'd names, in three tables
//! (`docs/postgres.md`).
//!
//! - **Conditional writes.** A batch of one write, conditional at most on its own key, is one
//!   statement (`INSERT … ON CONFLICT DO NOTHING`, `UPDATE … WHERE value = $expected`,
//!   `DELETE … WHERE value = $expected`); any other batch is a `SERIALIZABLE` transaction
//!   that checks the conditions and writes, retried when the server reports a serialization
//!   failure. The header is a row, replaced by a compare-and-swap on its bytes.
//! - **Durability.** Every session sets `synchronous_commit = on`, and a server with
//!   `fsync = off` is refused, so a write is durable when its statement returns; `flush` has
//!   nothing left to do.
//! - **Unknown outcomes.** A write whose connection is lost before the answer may or may not
//!   have committed. The backend then reads the written keys back on a new connection: all
//!   in their new state, it applied; all conditions still holding (and none of them on a key
//!   the write fills), it did not; otherwise the error is returned. It never writes twice.
//! - **The clock** is the server's (`clock_timestamp()`), so machines that share a vault
//!   agree on lease and expiry times.

mod conn;
mod options;
mod password;
mod pool;
mod replication;
mod schema;
mod tls;

use std::fmt;
use std::time::{Duration, SystemTime};

use postgres::error::SqlState;

use self::pool::{Failure, Pool};
use super::{Backend, BackendError, BackendErrorKind, Batch, Condition, ScanPage, Write};

pub use self::options::{
    postgres_url_has_password, PostgresOptions, DEFAULT_CONNECT_TIMEOUT, DEFAULT_POOL_SIZE,
};
pub use self::replication::{Replication, Standby};

/// How often a transaction is tried again after a serialization failure or a deadlock.
const SERIALIZATION_RETRIES: usize = 32;
/// How long the read-back after a lost connection keeps trying to reach the server.
const RESOLVE_FOR: Duration = Duration::from_secs(30);

/// A vault's storage in a PostgreSQL database, shared by every process and machine that
/// connects to it (no lock file, no exclusive holder: every write the vault makes is
/// conditional).
///
/// Connect with [`connect`](Self::connect) or [`PostgresOptions::connect`], then give it to
/// [`Vault::create_with_backend`](crate::Vault::create_with_backend) or
/// [`Vault::open_with_backend`](crate::Vault::open_with_backend):
///
/// ```no_run
/// use tokenvault::backend::PostgresBackend;
/// use tokenvault::{KeySource, Vault};
/// use tokenvault::secrecy::SecretBox;
///
/// // The password comes from PGPASSFILE (or ~/.pgpass), never from the URL.
/// let backend = PostgresBackend::connect("postgres://tokenvault@db.internal/tokens", "billing")?;
/// let key = KeySource::raw_key(SecretBox::new(Box::new([7; 32])));
/// let vault = Vault::open_with_backend(backend, &key)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct PostgresBackend {
    vault: String,
    pool: Pool,
}

impl fmt::Debug for PostgresBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresBackend")
            .field("vault", &self.vault)
            .finish_non_exhaustive()
    }
}

/// A database error as a [`BackendError`]: the server's message names no stored bytes (the
/// statements carry them as parameters, which server messages do not repeat).
pub(super) fn db_err(e: postgres::Error) -> BackendError {
    let kind = if e.is_closed() || e.code().is_none() {
        BackendErrorKind::Io
    } else {
        BackendErrorKind::Other
    };
    BackendError::new(kind, "PostgreSQL").with_source(e)
}

fn refused(e: Failure) -> BackendError {
    match e {
        Failure::Lost(e) => e,
        Failure::Refused(e) => db_err(e),
    }
}

impl PostgresBackend {
    /// Connects with the default [`PostgresOptions`]: see [`PostgresOptions::connect`].
    ///
    /// # Errors
    /// As [`PostgresOptions::connect`].
    pub fn connect(url: &str, vault: &str) -> Result<Self, BackendError> {
        PostgresOptions::new().connect(url, vault)
    }

    fn new(vault: String, pool: Pool) -> Self {
        Self { vault, pool }
    }

    /// The name of the vault in the database.
    ///
    /// ```no_run
    /// use tokenvault::backend::PostgresBackend;
    ///
    /// let backend = PostgresBackend::connect("postgres://svc@db/tokens", "billing")?;
    /// assert_eq!(backend.vault_name(), "billing");
    /// # Ok::<(), tokenvault::backend::BackendError>(())
    /// ```
    pub fn vault_name(&self) -> &str {
        &self.vault
    }

    /// A read: tried again once on a new connection when the connection was lost (the
    /// server restarted since it was opened).
    fn read<T>(
        &self,
        f: impl Fn(&mut conn::Conn) -> Result<T, postgres::Error>,
    ) -> Result<T, BackendError> {
        match self.pool.run(&f) {
            Err(Failure::Lost(_)) => self.pool.run(&f).map_err(refused),
            other => other.map_err(refused),
        }
    }

    /// One write, conditional at most on its own key, as one statement: `Some(applied)`, or
    /// `None` for any other batch.
    fn single(&self, batch: &Batch) -> Option<Result<bool, Failure>> {
        let [write] = batch.writes.as_slice() else {
            return None;
        };
        let on_write = |c: &Condition| c.tree == write.tree && c.key == write.key;
        let condition = match batch.conditions.as_slice() {
            [] => None,
            [c] if on_write(c) => Some(c),
            // An overwrite that also expects another key's exact bytes: one statement too.
            [c, also] | [also, c] if on_write(c) && !on_write(also) => {
                return self.update_if_also(write, c, also);
            }
            _ => return None,
        };
        let vault = self.vault.as_str();
        let (tree, key) = (&write.tree, &write.key);
        let expected = condition.map(|c| c.expected.as_ref());
        Some(self.pool.run(|conn| {
            let s = &conn.sql;
            let rows = match (expected, &write.value) {
                (None, Some(value)) => conn
                    .client
                    .execute(&s.upsert, &[&vault, tree, key, value])?,
                (None, None) => conn.client.execute(&s.delete, &[&vault, tree, key])?,
                (Some(None), Some(value)) => conn
                    .client
                    .execute(&s.insert_absent, &[&vault, tree, key, value])?,
                (Some(Some(old)), Some(value)) => conn
                    .client
                    .execute(&s.update_if, &[&vault, tree, key, value, old])?,
                (Some(Some(old)), None) => conn
                    .client
                    .execute(&s.delete_if, &[&vault, tree, key, old])?,
                // Removing what must be absent: applies if it is absent.
                (Some(None), None) => {
                    let found = conn.client.query_opt(&s.get, &[&vault, tree, key])?;
                    u64::from(found.is_none())
                }
            };
            Ok(expected.is_none() || rows == 1)
        }))
    }

    /// A batch of one overwrite (`write`, on condition `c` that its key holds exactly some
    /// bytes) that also expects another key to hold exactly some bytes (`also`), as one
    /// `UPDATE` whose `WHERE` checks both. `None`: another shape (a removal, or a condition
    /// on absence), for the transaction.
    fn update_if_also(
        &self,
        write: &Write,
        c: &Condition,
        also: &Condition,
    ) -> Option<Result<bool, Failure>> {
        let (Some(value), Some(old), Some(expected)) = (&write.value, &c.expected, &also.expected)
        else {
            return None;
        };
        let vault = self.vault.as_str();
        Some(self.pool.run(|conn| {
            let rows = conn.client.execute(
                &conn.sql.update_if_also,
                &[
                    &vault,
                    &write.tree,
                    &write.key,
                    value,
                    old,
                    &also.tree,
                    &also.key,
                    expected,
                ],
            )?;
            Ok(rows == 1)
        }))
    }

    /// Any batch, as a `SERIALIZABLE` transaction.
    fn transaction(&self, batch: &Batch) -> Result<bool, Failure> {
        let vault = self.vault.as_str();
        for _ in 0..SERIALIZATION_RETRIES {
            let attempt = self.pool.run(|conn| {
                let s = &conn.sql;
                let mut tx = conn
                    .client
                    .build_transaction()
                    .isolation_level(postgres::IsolationLevel::Serializable)
                    .start()?;
                for c in &batch.conditions {
                    let row = tx.query_opt(&s.get, &[&vault, &c.tree, &c.key])?;
                    let current: Option<Vec<u8>> = row.map(|r| r.get(0));
                    if current != c.expected {
                        tx.rollback()?;
                        return Ok(false);
                    }
                }
                for w in &batch.writes {
                    match &w.value {
                        Some(value) => tx.execute(&s.upsert, &[&vault, &w.tree, &w.key, value])?,
                        None => tx.execute(&s.delete, &[&vault, &w.tree, &w.key])?,
                    };
                }
                tx.commit()?;
                Ok(true)
            });
            match attempt {
                Err(Failure::Refused(e))
                    if matches!(
                        e.code(),
                        Some(
                            &SqlState::T_R_SERIALIZATION_FAILURE | &SqlState::T_R_DEADLOCK_DETECTED
                        )
                    ) =>
                {
                    continue
                }
                other => return other,
            }
        }
        Err(Failure::Lost(BackendError::new(
            BackendErrorKind::Other,
            "a transaction kept conflicting with concurrent ones; retry the operation",
        )))
    }

    /// After a write whose connection was lost: whether it applied, read back. `Ok(true)`:
    /// every written key holds its new state; `Ok(false)`: every condition still holds and
    /// none is an absence the batch fills (so the write did not apply); otherwise the
    /// outcome cannot be told and `lost` is returned.
    fn resolve(&self, batch: &Batch, lost: BackendError) -> Result<bool, BackendError> {
        let deadline = std::time::Instant::now() + RESOLVE_FOR;
        let mut delay = Duration::from_millis(20);
        let state = loop {
            match self.read_keys(batch) {
                Ok(state) => break state,
                Err(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_millis(500));
                }
                Err(_) => return Err(lost),
            }
        };
        let (writes, conditions) = state;
        if batch
            .writes
            .iter()
            .zip(&writes)
            .all(|(w, now)| w.value == *now)
        {
            return Ok(true);
        }
        let fills = |c: &Condition| {
            c.expected.is_none()
                && batch
                    .writes
                    .iter()
                    .any(|w| w.tree == c.tree && w.key == c.key && w.value.is_some())
        };
        let unapplied = batch
            .conditions
            .iter()
            .zip(&conditions)
            .all(|(c, now)| c.expected == *now && !fills(c));
        if unapplied && !batch.conditions.is_empty() {
            return Ok(false);
        }
        Err(lost)
    }

    /// The current values of a batch's written keys, then of its conditions' keys.
    #[allow(clippy::type_complexity)]
    fn read_keys(
        &self,
        batch: &Batch,
    ) -> Result<(Vec<Option<Vec<u8>>>, Vec<Option<Vec<u8>>>), BackendError> {
        let vault = self.vault.as_str();
        let keys = |items: Vec<(&Vec<u8>, &Vec<u8>)>| {
            self.read(|conn| {
                let mut out = Vec::with_capacity(items.len());
                for (tree, key) in &items {
                    let row = conn.client.query_opt(&conn.sql.get, &[&vault, tree, key])?;
                    out.push(row.map(|r| r.get::<_, Vec<u8>>(0)));
                }
                Ok(out)
            })
        };
        let writes = keys(
            batch
                .writes
                .iter()
                .map(|w: &Write| (&w.tree, &w.key))
                .collect(),
        )?;
        let conditions = keys(
            batch
                .conditions
                .iter()
                .map(|c: &Condition| (&c.tree, &c.key))
                .collect(),
        )?;
        Ok((writes, conditions))
    }
}

/// The smallest byte string greater than every string starting with `prefix`, if any.
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

impl Backend for PostgresBackend {
    fn read_header(&self) -> Result<Option<Vec<u8>>, BackendError> {
        let vault = self.vault.as_str();
        self.read(|conn| {
            let row = conn.client.query_opt(&conn.sql.read_header, &[&vault])?;
            Ok(row.map(|r| r.get(0)))
        })
    }

    fn write_header(&self, expected: Option<&[u8]>, bytes: &[u8]) -> Result<bool, BackendError> {
        let vault = self.vault.as_str();
        let attempt = self.pool.run(|conn| {
            let rows = match expected {
                None => conn
                    .client
                    .execute(&conn.sql.insert_header, &[&vault, &bytes])?,
                Some(old) => conn
                    .client
                    .execute(&conn.sql.update_header, &[&vault, &old, &bytes])?,
            };
            Ok(rows == 1)
        });
        match attempt {
            Ok(written) => Ok(written),
            Err(Failure::Refused(e)) => Err(db_err(e)),
            // Read back: the new header means it was written; the old one, that it was not.
            Err(Failure::Lost(lost)) => match self.read_header() {
                Ok(Some(now)) if now == bytes => Ok(true),
                Ok(now) if now.as_deref() == expected => Ok(false),
                _ => Err(lost),
            },
        }
    }

    fn get(&self, tree: &[u8], key: &[u8]) -> Result<Option<Vec<u8>>, BackendError> {
        let vault = self.vault.as_str();
        self.read(|conn| {
            let row = conn
                .client
                .query_opt(&conn.sql.get, &[&vault, &tree, &key])?;
            Ok(row.map(|r| r.get(0)))
        })
    }

    /// One round trip for all the keys.
    fn get_many(&self, keys: &[(&[u8], &[u8])]) -> Result<Vec<Option<Vec<u8>>>, BackendError> {
        if keys.len() < 2 {
            return keys.iter().map(|(tree, key)| self.get(tree, key)).collect();
        }
        let vault = self.vault.as_str();
        let trees: Vec<&[u8]> = keys.iter().map(|(tree, _)| *tree).collect();
        let names: Vec<&[u8]> = keys.iter().map(|(_, key)| *key).collect();
        self.read(|conn| {
            let rows = conn
                .client
                .query(&conn.sql.get_many, &[&vault, &trees, &names])?;
            let mut out = vec![None; keys.len()];
            for row in rows {
                let i: i64 = row.get(0);
                if let Some(slot) = usize::try_from(i - 1).ok().and_then(|i| out.get_mut(i)) {
                    *slot = row.get(1);
                }
            }
            Ok(out)
        })
    }

    fn scan(
        &self,
        tree: &[u8],
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<ScanPage, BackendError> {
        let vault = self.vault.as_str();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let end = prefix_end(prefix);
        // Start after `after` only when it is at or past the prefix.
        let after = after.filter(|a| *a >= prefix);
        self.read(|conn| {
            let s = &conn.sql;
            let rows = match (after, &end) {
                (None, None) => conn
                    .client
                    .query(&s.scan_from, &[&vault, &tree, &prefix, &limit])?,
                (Some(a), None) => conn
                    .client
                    .query(&s.scan_after, &[&vault, &tree, &a, &limit])?,
                (None, Some(e)) => conn
                    .client
                    .query(&s.scan_from_until, &[&vault, &tree, &prefix, &limit, e])?,
                (Some(a), Some(e)) => conn
                    .client
                    .query(&s.scan_after_until, &[&vault, &tree, &a, &limit, e])?,
            };
            Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }

    fn apply(&self, batch: &Batch) -> Result<bool, BackendError> {
        if batch.writes.is_empty() && batch.conditions.is_empty() {
            return Ok(true);
        }
        let attempt = match self.single(batch) {
            Some(result) => result,
            None => self.transaction(batch),
        };
        match attempt {
            Ok(applied) => Ok(applied),
            Err(Failure::Refused(e)) => Err(db_err(e)),
            Err(Failure::Lost(lost)) => self.resolve(batch, lost),
        }
    }

    fn drop_tree(&self, tree: &[u8]) -> Result<(), BackendError> {
        let vault = self.vault.as_str();
        // Idempotent: a lost answer is settled by doing it again.
        self.read(|conn| conn.client.execute(&conn.sql.drop_tree, &[&vault, &tree]))
            .map(drop)
    }

    fn trees(&self) -> Result<Vec<Vec<u8>>, BackendError> {
        let vault = self.vault.as_str();
        self.read(|conn| {
            let rows = conn.client.query(&conn.sql.trees, &[&vault])?;
            Ok(rows.into_iter().map(|r| r.get(0)).collect())
        })
    }

    /// Nothing to do: every write is durable when its statement returns
    /// (`synchronous_commit = on`, `fsync = on`).
    fn flush(&self) -> Result<(), BackendError> {
        Ok(())
    }

    /// The server's clock (`clock_timestamp()`), which every machine sharing the vault reads.
    fn now(&self) -> Result<SystemTime, BackendError> {
        let micros: i64 =
            self.read(|conn| Ok(conn.client.query_one(&conn.sql.now, &[])?.get(0)))?;
        let micros = u64::try_from(micros).map_err(|_| {
            BackendError::new(BackendErrorKind::Other, "the server's clock is before 1970")
        })?;
        Ok(SystemTime::UNIX_EPOCH + Duration::from_micros(micros))
    }

    fn close(&self) -> Result<(), BackendError> {
        self.pool.close();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_ends_bound_every_key_with_the_prefix() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[1, 0xFF]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xFF, 0xFF]), None);
        assert_eq!(prefix_end(b""), None);
    }
}
