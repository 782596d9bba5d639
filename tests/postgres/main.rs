//! The PostgreSQL backend against a real server (issue 15): the backend contract, vaults on
//! it, several handles sharing one vault, damage a database administrator can do, the
//! schema version, TLS and the URL rules.
//!
//! The server is the one `scripts/pg-test-server start` starts (`.ci/run` does); its
//! variables name it. Without them these tests fail under `CI=true` and are skipped (with a
//! note) elsewhere: locally, run
//!
//! ```sh
//! eval "$(bash scripts/pg-test-server start)"
//! cargo test --all-features --test postgres
//! ```
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod contract;
mod damage;
mod lost_reply;
mod tls;
mod vaults;

pub use support::{postgres_test_url as server_url, unique_name as unique_vault};
use tokenvault::backend::{PostgresBackend, PostgresOptions};

/// A backend on a fresh vault of the test server.
pub fn fresh(url: &str, what: &str) -> PostgresBackend {
    PostgresOptions::new()
        .connect(url, &unique_vault(what))
        .unwrap()
}

/// A direct client of the test server, for what a database administrator would do.
pub fn admin(url: &str) -> postgres::Client {
    let url = url.replace("?sslmode=disable", "");
    let mut config: postgres::Config = url.parse().unwrap();
    let password = std::fs::read_to_string(std::env::var("PGPASSFILE").unwrap()).unwrap();
    let password = password.trim_end().rsplit(':').next().unwrap().to_owned();
    config.password(password);
    config.connect(postgres::NoTls).unwrap()
}
