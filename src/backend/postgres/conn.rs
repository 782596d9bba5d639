//! One connection to the server: its session settings, checked when it opens, and the
//! statements the backend runs, prepared once per connection.

use std::sync::atomic::{AtomicBool, Ordering};

use postgres::{Client, Config, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{db_err, schema};
use crate::backend::{BackendError, BackendErrorKind};

/// A connection and its prepared statements.
pub(super) struct Conn {
    pub(super) client: Client,
    pub(super) sql: Statements,
}

/// The statements, each prepared once per connection. Parameters: `$1` the vault's name,
/// then tree, key and values as `bytea`.
pub(super) struct Statements {
    pub(super) read_header: Statement,
    pub(super) insert_header: Statement,
    pub(super) update_header: Statement,
    pub(super) get: Statement,
    /// `$2`, `$3`: arrays of trees and keys; rows of (1-based position, value or null).
    pub(super) get_many: Statement,
    /// Scans: from a key (inclusive or exclusive), up to an exclusive end or the tree's end.
    pub(super) scan_from: Statement,
    pub(super) scan_after: Statement,
    pub(super) scan_from_until: Statement,
    pub(super) scan_after_until: Statement,
    pub(super) upsert: Statement,
    pub(super) delete: Statement,
    /// Single-key conditional writes: insert if absent, update or delete if equal.
    pub(super) insert_absent: Statement,
    pub(super) update_if: Statement,
    /// `update_if`, also on condition that another key (`$6`, `$7`) holds exactly `$8`, in
    /// the same statement (a record overwrite checking its namespace's manifest).
    pub(super) update_if_also: Statement,
    pub(super) delete_if: Statement,
    pub(super) trees: Statement,
    pub(super) drop_tree: Statement,
    pub(super) now: Statement,
}

impl Conn {
    /// Connects, sets the session up and checks the server's durability settings; the
    /// first connection of a backend (`schema_ready` false) also creates or checks the
    /// tables, before any statement is prepared on them.
    ///
    /// # Errors
    /// Connection and database errors; [`BackendErrorKind::Unsupported`] for a server that
    /// runs with `fsync = off` (acknowledged commits would not survive a crash) or tables of
    /// another schema version.
    pub(super) fn open(
        config: &Config,
        tls: &MakeRustlsConnect,
        schema_ready: &AtomicBool,
    ) -> Result<Self, BackendError> {
        let mut client = config.connect(tls.clone()).map_err(db_err)?;
        // Per session (a role or database default could say otherwise): a commit returns
        // only once its WAL is flushed on this server (and on synchronous standbys, if any).
        client
            .batch_execute("SET synchronous_commit TO on")
            .map_err(db_err)?;
        let fsync: String = client.query_one("SHOW fsync", &[]).map_err(db_err)?.get(0);
        if fsync != "on" {
            return Err(BackendError::new(
                BackendErrorKind::Unsupported,
                "the server runs with fsync = off: a commit it acknowledges may not survive \
                 a crash; turn fsync on",
            ));
        }
        if !schema_ready.load(Ordering::SeqCst) {
            schema::set_up(&mut client)?;
            schema_ready.store(true, Ordering::SeqCst);
        }
        let sql = Statements::prepare(&mut client)?;
        Ok(Self { client, sql })
    }
}

impl Statements {
    fn prepare(c: &mut Client) -> Result<Self, BackendError> {
        let mut p = |sql: &str| c.prepare(sql).map_err(db_err);
        const ITEMS: &str = "FROM tokenvault_items WHERE vault = $1 AND tree = $2";
        Ok(Self {
            read_header: p("SELECT header FROM tokenvault_vaults WHERE vault = $1")?,
            insert_header: p(
                "INSERT INTO tokenvault_vaults (vault, header) VALUES ($1, $2) \
                              ON CONFLICT DO NOTHING",
            )?,
            update_header: p(
                "UPDATE tokenvault_vaults SET header = $3 WHERE vault = $1 AND header = $2",
            )?,
            get: p(&format!("SELECT value {ITEMS} AND key = $3"))?,
            // A subquery per key: one primary-key lookup each, whatever the plan (a join
            // lets a generic plan scan the whole vault).
            get_many: p(
                "SELECT w.i, (SELECT it.value FROM tokenvault_items it \
                         WHERE it.vault = $1 AND it.tree = w.tree AND it.key = w.key) \
                         FROM unnest($2::bytea[], $3::bytea[]) WITH ORDINALITY AS w(tree, key, i)",
            )?,
            scan_from: p(&format!(
                "SELECT key, value {ITEMS} AND key >= $3 ORDER BY key LIMIT $4"
            ))?,
            scan_after: p(&format!(
                "SELECT key, value {ITEMS} AND key > $3 ORDER BY key LIMIT $4"
            ))?,
            scan_from_until: p(&format!(
                "SELECT key, value {ITEMS} AND key >= $3 AND key < $5 ORDER BY key LIMIT $4"
            ))?,
            scan_after_until: p(&format!(
                "SELECT key, value {ITEMS} AND key > $3 AND key < $5 ORDER BY key LIMIT $4"
            ))?,
            upsert: p("INSERT INTO tokenvault_items (vault, tree, key, value) \
                       VALUES ($1, $2, $3, $4) \
                       ON CONFLICT (vault, tree, key) DO UPDATE SET value = EXCLUDED.value")?,
            delete: p(&format!("DELETE {ITEMS} AND key = $3"))?,
            insert_absent: p("INSERT INTO tokenvault_items (vault, tree, key, value) \
                              VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING")?,
            update_if: p("UPDATE tokenvault_items SET value = $4 \
                 WHERE vault = $1 AND tree = $2 AND key = $3 AND value = $5")?,
            update_if_also: p("UPDATE tokenvault_items SET value = $4 \
                 WHERE vault = $1 AND tree = $2 AND key = $3 AND value = $5 \
                 AND EXISTS (SELECT 1 FROM tokenvault_items c WHERE c.vault = $1 \
                 AND c.tree = $6 AND c.key = $7 AND c.value = $8)")?,
            delete_if: p(&format!("DELETE {ITEMS} AND key = $3 AND value = $4"))?,
            trees: p("SELECT DISTINCT tree FROM tokenvault_items WHERE vault = $1 ORDER BY tree")?,
            drop_tree: p(&format!("DELETE {ITEMS}"))?,
            now: p("SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::int8")?,
        })
    }
}
