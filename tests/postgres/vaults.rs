//! Vaults on the PostgreSQL backend: created, written, opened again by another backend;
//! several vaults in one database; the vault's own checks (verify, rollback anchor) on it.

use support::{full_token, raw_key, small_token};
use tokenvault::backend::PostgresOptions;
use tokenvault::secrecy::ExposeSecret;
use tokenvault::{Error, Token, Vault};

use super::{server_url, unique_vault};

fn access(ns: &tokenvault::Namespace, key: &str) -> Option<String> {
    ns.get::<Token>(key)
        .unwrap()
        .map(|t| t.access_token().expose_secret().to_owned())
}

#[test]
fn a_vault_round_trips_through_the_database() {
    let Some(url) = server_url() else { return };
    let name = unique_vault("roundtrip");
    let connect = || PostgresOptions::new().connect(&url, &name).unwrap();
    let vault = Vault::create_with_backend(connect(), &raw_key(1)).unwrap();
    for t in 0..20 {
        let ns = vault.namespace(&format!("tenant-{t}")).unwrap();
        ns.put("api", &full_token(t)).unwrap();
        ns.put("other", &small_token(&format!("o{t}"))).unwrap();
    }
    vault
        .namespace("tenant-3")
        .unwrap()
        .remove("other")
        .unwrap();
    assert!(vault.remove_namespace("tenant-7").unwrap());
    vault.close().unwrap();

    assert!(matches!(
        Vault::open_with_backend(connect(), &raw_key(2)),
        Err(Error::WrongKey)
    ));
    let vault = Vault::open_with_backend(connect(), &raw_key(1)).unwrap();
    assert_eq!(vault.namespaces().unwrap().len(), 19);
    for t in (0..20).filter(|t| *t != 7) {
        let ns = vault.namespace(&format!("tenant-{t}")).unwrap();
        let token: Token = ns.get("api").unwrap().unwrap();
        assert_eq!(
            token.access_token().expose_secret(),
            full_token(t).access_token().expose_secret()
        );
        let other = access(&ns, "other");
        assert_eq!(other.is_none(), t == 3);
    }
    let report = vault.verify(|_| {}).unwrap();
    assert!(report.is_clean(), "{report}");
}

#[test]
fn vaults_in_one_database_are_apart() {
    let Some(url) = server_url() else { return };
    let (a, b) = (unique_vault("apart"), unique_vault("apart"));
    let va = Vault::create_with_backend(
        PostgresOptions::new().connect(&url, &a).unwrap(),
        &raw_key(1),
    )
    .unwrap();
    let vb = Vault::create_with_backend(
        PostgresOptions::new().connect(&url, &b).unwrap(),
        &raw_key(1),
    )
    .unwrap();
    va.namespace("t")
        .unwrap()
        .put("k", &small_token("a"))
        .unwrap();
    vb.namespace("t")
        .unwrap()
        .put("k", &small_token("b"))
        .unwrap();
    assert_eq!(
        access(&va.namespace("t").unwrap(), "k").as_deref(),
        Some("a")
    );
    assert_eq!(
        access(&vb.namespace("t").unwrap(), "k").as_deref(),
        Some("b")
    );
    assert!(vb.remove_namespace("t").unwrap());
    assert_eq!(
        access(&va.namespace("t").unwrap(), "k").as_deref(),
        Some("a")
    );
    // Creating a vault where one exists is refused.
    assert!(matches!(
        Vault::create_with_backend(
            PostgresOptions::new().connect(&url, &a).unwrap(),
            &raw_key(1)
        ),
        Err(Error::AlreadyExists { .. })
    ));
}

#[test]
fn handles_on_two_backends_see_each_others_writes() {
    let Some(url) = server_url() else { return };
    let name = unique_vault("handles");
    let connect = || PostgresOptions::new().connect(&url, &name).unwrap();
    let one = Vault::create_with_backend(connect(), &raw_key(1)).unwrap();
    let two = Vault::open_with_backend(connect(), &raw_key(1)).unwrap();
    one.namespace("t")
        .unwrap()
        .put("k", &small_token("1"))
        .unwrap();
    assert_eq!(
        access(&two.namespace("t").unwrap(), "k").as_deref(),
        Some("1")
    );
    let v = two
        .namespace("t")
        .unwrap()
        .put("k", &small_token("2"))
        .unwrap();
    let (got, version) = one
        .namespace("t")
        .unwrap()
        .get_versioned::<Token>("k")
        .unwrap()
        .unwrap();
    assert_eq!((got.access_token().expose_secret(), version), ("2", v));
    // Key management on one handle reaches the other.
    one.add_keyslot(&raw_key(9)).unwrap();
    two.namespace("u")
        .unwrap()
        .put("k", &small_token("3"))
        .unwrap();
    two.checkpoint().unwrap();
    one.checkpoint().unwrap();
    one.close().unwrap();
    two.close().unwrap();
    let again = Vault::open_with_backend(connect(), &raw_key(9)).unwrap();
    assert_eq!(
        access(&again.namespace("u").unwrap(), "k").as_deref(),
        Some("3")
    );
    let report = again.verify(|_| {}).unwrap();
    assert!(report.is_clean(), "{report}");
}

#[test]
fn concurrent_writers_on_separate_backends_lose_no_update() {
    let Some(url) = server_url() else { return };
    let name = unique_vault("counter");
    let connect = |url: &str| PostgresOptions::new().connect(url, &name).unwrap();
    let vault = Vault::create_with_backend(connect(&url), &raw_key(1)).unwrap();
    vault
        .namespace("t")
        .unwrap()
        .put("n", &small_token("0"))
        .unwrap();
    vault.close().unwrap();
    let (writers, each) = (4, 15);
    let threads: Vec<_> = (0..writers)
        .map(|_| {
            let vault = Vault::open_with_backend(connect(&url), &raw_key(1)).unwrap();
            std::thread::spawn(move || {
                let ns = vault.namespace("t").unwrap();
                for _ in 0..each {
                    // Increment by compare-and-swap until it holds.
                    loop {
                        let (t, v) = ns.get_versioned::<Token>("n").unwrap().unwrap();
                        let n: u32 = t.access_token().expose_secret().parse().unwrap();
                        let next = small_token(&(n + 1).to_string());
                        if ns.compare_and_swap("n", Some(v), &next).unwrap().is_ok() {
                            break;
                        }
                    }
                }
                vault.close().unwrap();
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let vault = Vault::open_with_backend(connect(&url), &raw_key(1)).unwrap();
    let total = access(&vault.namespace("t").unwrap(), "n").unwrap();
    assert_eq!(total, (writers * each).to_string());
}
