//! Creates a vault, stores tokens in two namespaces, reopens it and reads them back.
//!
//! ```text
//! cargo run --example quickstart            # in a temporary directory, removed afterwards
//! cargo run --example quickstart -- ./vault # creates ./vault and leaves it for inspection
//! ```
//!
//! The passphrase comes from `TOKENVAULT_PASSPHRASE` if set, else a demo passphrase is used
//! (a real program would prompt for it). The vault uses the default Argon2id parameters
//! (RFC 9106's second recommendation: 64 MiB, t = 3, p = 4), so each unlock takes a moment.

use std::time::{Duration, SystemTime};

use tokenvault::secrecy::{ExposeSecret, SecretString};
use tokenvault::{KeySource, Token, Vault};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let temp;
    let path = match std::env::args_os().nth(1) {
        Some(dir) => std::path::PathBuf::from(dir),
        None => {
            temp = tempfile::tempdir()?;
            temp.path().join("vault")
        }
    };
    let passphrase = std::env::var("TOKENVAULT_PASSPHRASE")
        .unwrap_or_else(|_| "correct horse battery staple".to_owned());
    let key = KeySource::passphrase(SecretString::from(passphrase));

    // Create the vault and store tokens for two tenants.
    let vault = Vault::create(&path, &key)?;
    println!("created a vault at {}", path.display());
    let in_an_hour = SystemTime::now() + Duration::from_secs(3600);

    let alice = vault.namespace("tenant-alice")?;
    alice.put(
        "transfer.api.example.org",
        &Token::new("alice-transfer-access-token".into())
            .with_refresh_token("alice-transfer-refresh-token".into())
            .with_expires_at(in_an_hour)
            .with_scopes(["urn:example:transfer:all"])
            .with_identity("alice@example.org")
            .with_resource_server("transfer.api.example.org"),
    )?;
    alice.put(
        "auth.example.org",
        &Token::new("alice-auth-access-token".into())
            .with_expires_at(in_an_hour)
            .with_scopes(["openid", "profile"])
            .with_identity("alice@example.org")
            .with_resource_server("auth.example.org"),
    )?;
    let bob = vault.namespace("tenant-bob")?;
    bob.put(
        "transfer.api.example.org",
        &Token::new("bob-transfer-access-token".into())
            .with_refresh_token("bob-transfer-refresh-token".into())
            .with_expires_at(in_an_hour)
            .with_identity("bob@example.org")
            .with_resource_server("transfer.api.example.org"),
    )?;
    vault.close()?;
    println!("stored 3 tokens in 2 namespaces and closed the vault");

    // Reopen it and read everything back.
    let vault = Vault::open(&path, &key)?;
    for name in vault.namespaces()? {
        let ns = vault.namespace(&name)?;
        for record in ns.keys()? {
            let (token, version) = ns
                .get_versioned::<Token>(&record)?
                .ok_or("a listed record vanished")?;
            println!("{name} / {record} ({version}): {token:?}");
            // Debug output is redacted; the secret is reachable only through ExposeSecret.
            let access = token.access_token().expose_secret();
            println!("  access token: {} bytes, read back intact", access.len());
        }
    }
    let report = vault.verify(|_| {})?;
    println!(
        "verify: {}",
        if report.is_clean() {
            "clean"
        } else {
            "DAMAGED"
        }
    );
    vault.close()?;
    if std::env::args_os().nth(1).is_some() {
        println!("left the vault at {} for inspection", path.display());
    }
    Ok(())
}
