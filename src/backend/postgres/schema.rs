//! The tables the PostgreSQL backend keeps, and their version (`docs/postgres.md`).
//!
//! Three tables, shared by every vault in the database:
//! - `tokenvault_schema`: one row, the schema version;
//! - `tokenvault_vaults`: one row per vault, its name and its sealed header;
//! - `tokenvault_items`: every tree's keys and values, under the vault's name.
//!
//! Setup runs once per backend, in one transaction holding a transaction-scoped advisory
//! lock: concurrent `CREATE TABLE IF NOT EXISTS` of the same table can fail on the catalog's
//! unique index, so processes starting together take turns.

use postgres::{Client, Transaction};

use super::db_err;
use crate::backend::{BackendError, BackendErrorKind};

/// The schema version this build writes and reads.
pub(crate) const SCHEMA_VERSION: i32 = 1;

/// The advisory lock key that serializes schema setup (an arbitrary constant: "tokenvlt" in
/// ASCII).
const SETUP_LOCK: i64 = 0x746f_6b65_6e76_6c74;

const CREATE_SCHEMA_TABLE: &str = "CREATE TABLE IF NOT EXISTS tokenvault_schema (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version integer NOT NULL
)";

const CREATE_TABLES: &str = "
CREATE TABLE IF NOT EXISTS tokenvault_vaults (
    vault text PRIMARY KEY,
    header bytea NOT NULL
);
CREATE TABLE IF NOT EXISTS tokenvault_items (
    vault text NOT NULL,
    tree bytea NOT NULL,
    key bytea NOT NULL,
    value bytea NOT NULL,
    PRIMARY KEY (vault, tree, key)
);";

/// Creates the tables if the database has none, or checks that their version is this
/// build's.
///
/// # Errors
/// [`BackendErrorKind::Unsupported`] for another schema version (nothing is changed);
/// database errors (a role that may not create tables, say).
pub(super) fn set_up(client: &mut Client) -> Result<(), BackendError> {
    let mut tx = client.transaction().map_err(db_err)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SETUP_LOCK])
        .map_err(db_err)?;
    tx.batch_execute(CREATE_SCHEMA_TABLE).map_err(db_err)?;
    match version(&mut tx)? {
        None => {
            tx.batch_execute(CREATE_TABLES).map_err(db_err)?;
            tx.execute(
                "INSERT INTO tokenvault_schema (version) VALUES ($1)",
                &[&SCHEMA_VERSION],
            )
            .map_err(db_err)?;
        }
        Some(SCHEMA_VERSION) => tx.batch_execute(CREATE_TABLES).map_err(db_err)?,
        Some(other) => {
            return Err(BackendError::new(
                BackendErrorKind::Unsupported,
                format!(
                    "the database's tokenvault tables are of schema version {other}; this \
                     build reads version {SCHEMA_VERSION} only"
                ),
            ))
        }
    }
    tx.commit().map_err(db_err)
}

fn version(tx: &mut Transaction<'_>) -> Result<Option<i32>, BackendError> {
    let rows = tx
        .query("SELECT version FROM tokenvault_schema", &[])
        .map_err(db_err)?;
    Ok(rows.first().map(|row| row.get(0)))
}
