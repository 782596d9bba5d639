//! Imports a Globus SDK token file into a new vault and prints the report.
//!
//! ```text
//! cargo run --example import_globus                          # a copy of the test fixture
//! cargo run --example import_globus -- tokens.json           # a copy of your own file
//! cargo run --example import_globus --features sqlite -- storage.db
//! ```
//!
//! The file is copied into a temporary directory first, and the copy is imported and then
//! removed (`remove_source`): the original is never touched. The vault uses a fixed demo raw
//! key and is deleted at the end; a real program would keep the vault and use a passphrase
//! or a key from its key management. No token value is printed.

use std::path::PathBuf;

use tokenvault::import::{Import, ImportFormat};
use tokenvault::secrecy::SecretBox;
use tokenvault::{KeySource, Token, Vault};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let source = match std::env::args_os().nth(1) {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/peer-token-files/globus-v2.json"),
    };
    let dir = tempfile::tempdir()?;
    let copy = dir
        .path()
        .join(source.file_name().unwrap_or("tokens".as_ref()));
    std::fs::copy(&source, &copy)?;
    // A SQLite database in WAL mode keeps recent writes in its `-wal` file: copy that too.
    let (mut wal, mut wal_copy) = (
        source.clone().into_os_string(),
        copy.clone().into_os_string(),
    );
    wal.push("-wal");
    wal_copy.push("-wal");
    if std::path::Path::new(&wal).exists() {
        std::fs::copy(&wal, &wal_copy)?;
    }

    let key = KeySource::raw_key(SecretBox::new(Box::new([7u8; 32])));
    let vault = Vault::create(dir.path().join("vault"), &key)?;

    let import = match ImportFormat::detect(&copy)? {
        ImportFormat::GlobusSqlite => Import::globus_sqlite(&copy),
        ImportFormat::GlobusJson => Import::globus_json(&copy),
        other => {
            return Err(format!("{} is a {other}, not a Globus file", source.display()).into())
        }
    };
    // First a dry run: what would be imported, with nothing written.
    print!("{}", import.clone().dry_run(true).run(&vault)?);
    println!();
    // Then the import itself; the copy is removed once every record reads back unchanged.
    let report = import.remove_source(true).run(&vault)?;
    print!("{report}");
    println!();

    // The tokens are in the vault now (Debug output redacts the secrets).
    for record in &report.imported {
        let ns = vault.namespace(&record.namespace)?;
        if let Some(token) = ns.get::<Token>(&record.key)? {
            println!(
                "{} / {}: {} scope(s), refresh token: {}, expires at: {:?}",
                record.namespace,
                record.key,
                token.scopes().len(),
                if token.refresh_token().is_some() {
                    "yes"
                } else {
                    "no"
                },
                token.expires_at(),
            );
        }
    }
    Ok(())
}
