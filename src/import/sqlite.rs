//! Globus SDK SQLite token databases: `SQLiteTokenStorage` (schema 2) and the legacy
//! `SQLiteAdapter` (schema 1, with a `config_storage` table).
//!
//! The database may be hostile: it is opened read-only, with SQLite's defensive mode on,
//! the schema untrusted, views and triggers off, and limits on value sizes.

use std::fs;
use std::io::Read;
use std::path::Path;

use rusqlite::config::DbConfig;
use rusqlite::limits::Limit;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};

use super::error::{cut, invalid_record, shown, shown_version, ImportErrorKind};
use super::files::open_regular;
use super::format::SQLITE_MAGIC;
use super::globus::record_token;
use super::records::{json, Parsed};
use super::report::SkippedEntry;
use super::{MAX_IMPORT_DATABASE_LEN, MAX_IMPORT_RECORDS};
use crate::response::wipe;

/// Reads every token of a Globus SQLite database, and lists its `config_storage` rows as
/// skipped.
pub(super) fn read(path: &Path) -> Result<Parsed, ImportErrorKind> {
    check_file(path)?;
    let conn = open(path)?;
    if has_table(&conn, "sdk_storage_adapter_internal")? {
        check_schema_version(&conn)?;
    }
    if !has_table(&conn, "token_storage")? {
        return Err(ImportErrorKind::Malformed {
            reason: "the database has no token_storage table".to_owned(),
        });
    }
    let mut parsed = Parsed::default();
    read_tokens(&conn, &mut parsed)?;
    if has_table(&conn, "config_storage")? {
        read_config_names(&conn, &mut parsed)?;
    }
    Ok(parsed)
}

/// Refuses what is not a SQLite database, and databases larger than the bound.
fn check_file(path: &Path) -> Result<(), ImportErrorKind> {
    let too_large = ImportErrorKind::TooLarge {
        limit: MAX_IMPORT_DATABASE_LEN,
    };
    let (mut file, meta) = open_regular(path)?;
    if meta.len() > MAX_IMPORT_DATABASE_LEN {
        return Err(too_large);
    }
    let mut head = [0u8; SQLITE_MAGIC.len()];
    if file.read_exact(&mut head).is_err() || head != *SQLITE_MAGIC {
        return Err(ImportErrorKind::Malformed {
            reason: "not a SQLite database (no SQLite header)".to_owned(),
        });
    }
    let mut wal = path.to_owned().into_os_string();
    wal.push("-wal");
    if fs::metadata(&wal).is_ok_and(|m| m.len() > MAX_IMPORT_DATABASE_LEN) {
        return Err(too_large);
    }
    Ok(())
}

/// Opens the database read-only (never creating it) and hardened against a hostile file.
fn open(path: &Path) -> Result<Connection, ImportErrorKind> {
    // No SQLITE_OPEN_URI: the path is a file name, never a URI with options.
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sqlite)?;
    for (config, on) in [
        (DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true),
        (DbConfig::SQLITE_DBCONFIG_TRUSTED_SCHEMA, false),
        (DbConfig::SQLITE_DBCONFIG_ENABLE_VIEW, false),
        (DbConfig::SQLITE_DBCONFIG_ENABLE_TRIGGER, false),
    ] {
        conn.set_db_config(config, on).map_err(sqlite)?;
    }
    for (limit, value) in [
        (Limit::SQLITE_LIMIT_LENGTH, MAX_VALUE_LEN),
        (Limit::SQLITE_LIMIT_ATTACHED, 0),
    ] {
        conn.set_limit(limit, value).map_err(sqlite)?;
    }
    conn.execute_batch(
        "PRAGMA query_only = ON; PRAGMA trusted_schema = OFF; PRAGMA cell_size_check = ON; \
         PRAGMA mmap_size = 0;",
    )
    .map_err(sqlite)?;
    Ok(conn)
}

fn has_table(conn: &Connection, name: &str) -> Result<bool, ImportErrorKind> {
    conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
        [name],
        |row| row.get::<_, i64>(0),
    )
    .map(|n| n > 0)
    .map_err(sqlite)
}

/// Globus writes `globus-sdk.database_schema_version` (`1`: legacy, `2`: current) but never
/// reads it; a database that names another schema is refused.
fn check_schema_version(conn: &Connection) -> Result<(), ImportErrorKind> {
    let mut stmt = conn
        .prepare("SELECT value FROM sdk_storage_adapter_internal WHERE attribute = ?1")
        .map_err(sqlite)?;
    let mut rows = stmt
        .query(["globus-sdk.database_schema_version"])
        .map_err(sqlite)?;
    while let Some(row) = rows.next().map_err(sqlite)? {
        match row.get_ref(0).map_err(sqlite)? {
            ValueRef::Text(b"1" | b"2") => {}
            ValueRef::Text(other) => {
                return Err(ImportErrorKind::UnsupportedVersion {
                    found: shown_version(&String::from_utf8_lossy(other)),
                })
            }
            _ => {
                return Err(ImportErrorKind::Malformed {
                    reason: "globus-sdk.database_schema_version is not text".to_owned(),
                })
            }
        }
    }
    Ok(())
}

fn read_tokens(conn: &Connection, parsed: &mut Parsed) -> Result<(), ImportErrorKind> {
    let mut stmt = conn
        .prepare(
            "SELECT namespace, resource_server, token_data_json FROM token_storage \
             ORDER BY namespace, resource_server",
        )
        .map_err(sqlite)?;
    let mut rows = stmt.query([]).map_err(sqlite)?;
    let mut n = 0usize;
    while let Some(row) = rows.next().map_err(sqlite)? {
        n += 1;
        if n > MAX_IMPORT_RECORDS {
            return Err(ImportErrorKind::TooManyRecords {
                limit: MAX_IMPORT_RECORDS,
            });
        }
        let namespace = text(row.get_ref(0).map_err(sqlite)?, n, "namespace")?;
        let key = text(row.get_ref(1).map_err(sqlite)?, n, "resource_server")?;
        // Parsed straight from SQLite's buffer: no copy of the plaintext is made here.
        let data = match row.get_ref(2).map_err(sqlite)? {
            ValueRef::Text(bytes) => bytes,
            _ => {
                return Err(invalid_record(
                    namespace,
                    key,
                    "token_data_json is not text",
                ))
            }
        };
        let mut value = json(data).map_err(|e| match e {
            ImportErrorKind::Malformed { reason } => {
                invalid_record(namespace, key, &format!("token_data_json is {reason}"))
            }
            other => other,
        })?;
        let token = record_token(namespace, key, &mut value);
        wipe(&mut value);
        parsed.push(namespace, key, token?)?;
    }
    Ok(())
}

/// The legacy adapter's configuration rows: not tokens, listed as skipped.
fn read_config_names(conn: &Connection, parsed: &mut Parsed) -> Result<(), ImportErrorKind> {
    let mut stmt = conn
        .prepare("SELECT namespace, config_name FROM config_storage ORDER BY 1, 2")
        .map_err(sqlite)?;
    let mut rows = stmt.query([]).map_err(sqlite)?;
    while let Some(row) = rows.next().map_err(sqlite)? {
        if parsed.skipped.len() >= MAX_IMPORT_RECORDS {
            return Err(ImportErrorKind::TooManyRecords {
                limit: MAX_IMPORT_RECORDS,
            });
        }
        let name = |i| match row.get_ref(i) {
            Ok(ValueRef::Text(bytes)) => shown(&String::from_utf8_lossy(bytes)),
            _ => "(not text)".to_owned(),
        };
        parsed.skipped.push(SkippedEntry {
            namespace: name(0),
            key: name(1),
            reason: "a legacy config_storage entry, not a token",
        });
    }
    Ok(())
}

/// A text column as UTF-8; the row number names the row in errors.
fn text<'a>(value: ValueRef<'a>, row: usize, column: &str) -> Result<&'a str, ImportErrorKind> {
    let bad = |what: &str| ImportErrorKind::Malformed {
        reason: format!("token_storage row {row}: {column} is {what}"),
    };
    match value {
        ValueRef::Text(bytes) => std::str::from_utf8(bytes).map_err(|_| bad("not UTF-8")),
        _ => Err(bad("not text")),
    }
}

/// SQLite's error message, which names tables, columns and SQL, never row values.
fn sqlite(e: rusqlite::Error) -> ImportErrorKind {
    ImportErrorKind::Sqlite {
        message: cut(&e.to_string(), 512),
    }
}

/// Longest value (string or blob) SQLite will hand out: 1 MiB, far over a vault record.
const MAX_VALUE_LEN: i32 = 1024 * 1024;
