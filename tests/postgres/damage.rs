//! What a database administrator can do to the rows: an edited or swapped record is
//! `Damaged` for that record only, never another tenant's token; an edited header stops the
//! open; an unknown schema version is refused before anything is written.

use support::{raw_key, small_token};
use tokenvault::backend::{BackendErrorKind, PostgresOptions};
use tokenvault::secrecy::ExposeSecret;
use tokenvault::{Damage, Error, Token, Vault};

use super::{admin, server_url, unique_vault};

/// The record rows (tree `r`) of vault `name`: (key, value), in key order.
fn records(db: &mut postgres::Client, name: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    db.query(
        "SELECT key, value FROM tokenvault_items WHERE vault = $1 AND tree = $2 ORDER BY key",
        &[&name, &&b"r"[..]],
    )
    .unwrap()
    .into_iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

fn set(db: &mut postgres::Client, name: &str, key: &[u8], value: &[u8]) {
    let n = db
        .execute(
            "UPDATE tokenvault_items SET value = $3 WHERE vault = $1 AND tree = $4 AND key = $2",
            &[&name, &key, &value, &&b"r"[..]],
        )
        .unwrap();
    assert_eq!(n, 1);
}

#[test]
fn edited_or_swapped_rows_are_damage_never_another_tenants_token() {
    let Some(url) = server_url() else { return };
    let name = unique_vault("damage");
    let vault = Vault::create_with_backend(
        PostgresOptions::new().connect(&url, &name).unwrap(),
        &raw_key(1),
    )
    .unwrap();
    for t in ["alice", "bob", "carol"] {
        vault
            .namespace(t)
            .unwrap()
            .put("api", &small_token(t))
            .unwrap();
    }
    let mut db = admin(&url);
    let rows = records(&mut db, &name);
    assert_eq!(rows.len(), 3);
    // Swap two tenants' records, and flip one byte of the third.
    set(&mut db, &name, &rows[0].0, &rows[1].1);
    set(&mut db, &name, &rows[1].0, &rows[0].1);
    let mut flipped = rows[2].1.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    set(&mut db, &name, &rows[2].0, &flipped);
    for t in ["alice", "bob", "carol"] {
        let err = vault.namespace(t).unwrap().get::<Token>("api").unwrap_err();
        assert!(
            matches!(&err, Error::Damaged(Damage::Record { namespace, .. }) if namespace == t),
            "{t}: {err}"
        );
    }
    // The rest of the vault works, and a damaged record can be written over.
    vault
        .namespace("dave")
        .unwrap()
        .put("api", &small_token("d"))
        .unwrap();
    let alice = vault.namespace("alice").unwrap();
    alice.remove("api").unwrap();
    alice.put("api", &small_token("alice2")).unwrap();
    let token: Token = alice.get("api").unwrap().unwrap();
    assert_eq!(token.access_token().expose_secret(), "alice2");
    let report = vault.verify(|_| {}).unwrap();
    let damaged: usize = report.namespaces.iter().map(|n| n.damaged.len()).sum();
    assert_eq!(damaged, 2, "{report}");
}

#[test]
fn an_edited_header_stops_the_open() {
    let Some(url) = server_url() else { return };
    let name = unique_vault("header");
    let connect = || PostgresOptions::new().connect(&url, &name).unwrap();
    Vault::create_with_backend(connect(), &raw_key(1))
        .unwrap()
        .close()
        .unwrap();
    let mut db = admin(&url);
    let header: Vec<u8> = db
        .query_one(
            "SELECT header FROM tokenvault_vaults WHERE vault = $1",
            &[&name],
        )
        .unwrap()
        .get(0);
    let mut edited = header.clone();
    let middle = edited.len() / 2;
    edited[middle] ^= 0x40;
    db.execute(
        "UPDATE tokenvault_vaults SET header = $2 WHERE vault = $1",
        &[&name, &edited],
    )
    .unwrap();
    let err = Vault::open_with_backend(connect(), &raw_key(1)).unwrap_err();
    assert!(matches!(err, Error::Damaged(_) | Error::WrongKey), "{err}");
    db.execute(
        "UPDATE tokenvault_vaults SET header = $2 WHERE vault = $1",
        &[&name, &header],
    )
    .unwrap();
    Vault::open_with_backend(connect(), &raw_key(1)).unwrap();
}

#[test]
fn another_schema_version_is_refused_and_left_alone() {
    let Some(url) = server_url() else { return };
    // A database of its own: the version row is shared by every vault in a database.
    let database = unique_vault("schema").replace('-', "_");
    let mut db = admin(&url);
    db.batch_execute(&format!("CREATE DATABASE {database}"))
        .unwrap();
    let own = url.replace("/tokenvault?", &format!("/{database}?"));
    let backend = PostgresOptions::new().connect(&own, "v").unwrap();
    Vault::create_with_backend(backend, &raw_key(1))
        .unwrap()
        .close()
        .unwrap();
    let mut own_db = admin(&own);
    own_db
        .batch_execute("UPDATE tokenvault_schema SET version = 99")
        .unwrap();
    let err = PostgresOptions::new().connect(&own, "v").unwrap_err();
    assert_eq!(err.kind(), BackendErrorKind::Unsupported, "{err}");
    assert!(err.to_string().contains("99"), "{err}");
    let version: i32 = own_db
        .query_one("SELECT version FROM tokenvault_schema", &[])
        .unwrap()
        .get(0);
    assert_eq!(version, 99, "nothing changed");
    drop(own_db);
    db.batch_execute(&format!("DROP DATABASE {database}"))
        .unwrap();
}
