//! TLS to the server: a certificate from the test CA is accepted when that CA is configured,
//! refused otherwise (the Mozilla roots do not know it); a URL with a password is refused
//! before any connection, and never repeated.

use support::{raw_key, small_token};
use tokenvault::backend::{BackendErrorKind, PostgresOptions};
use tokenvault::Vault;

use super::{server_url, unique_vault};

fn tls_url() -> Option<(String, String)> {
    server_url()?;
    Some((
        std::env::var("TOKENVAULT_TEST_PG_TLS_URL").unwrap(),
        std::env::var("TOKENVAULT_TEST_PG_CA").unwrap(),
    ))
}

#[test]
fn the_test_ca_is_accepted_only_when_configured() {
    let Some((url, ca)) = tls_url() else { return };
    let vault = unique_vault("tls");
    // TLS is required (`sslmode=verify-full`): a connection exists only over TLS.
    let backend = PostgresOptions::new()
        .ca_file(&ca)
        .connect(&url, &vault)
        .unwrap();
    let vault_handle = Vault::create_with_backend(backend, &raw_key(1)).unwrap();
    vault_handle
        .namespace("t")
        .unwrap()
        .put("k", &small_token("over tls"))
        .unwrap();
    vault_handle.close().unwrap();
    let err = PostgresOptions::new().connect(&url, &vault).unwrap_err();
    let chain = format!("{err:?}");
    assert!(chain.contains("UnknownIssuer"), "{chain}");
}

#[test]
fn a_url_with_a_password_is_refused_and_not_repeated() {
    let Some(url) = server_url() else { return };
    let with_password = url.replace("tokenvault@", "tokenvault:hunter2@");
    let err = PostgresOptions::new()
        .connect(&with_password, &unique_vault("pw"))
        .unwrap_err();
    assert_eq!(err.kind(), BackendErrorKind::Other);
    assert!(!format!("{err} {err:?}").contains("hunter2"));
}
