//! The vault engine's integration tests, one module per concern: the vault and its
//! namespaces, namespace entries (the cache, listing, shred), new records and their count,
//! handles sharing storage (the multi-handle model), storage and backends, keyslots and the
//! KDF limit, orphaned storage, tampering, sealing and an offline attacker's view, directory
//! safety, the golden v1 vaults, the format specification and known-answer vectors, the
//! model-based property test, and the fuzz targets' regression inputs.
//!
//! One test binary (the tests share nothing but the `support` crate); the tests that need a
//! process of their own (`memory`, `crash`, `upgrade`, `authorizer_process`, `authorizer_events`,
//! `http_tls`, `cli`) are binaries of their own. Run one module with
//! `cargo test --all-features --test engine -- model::`.

mod directory_safety;
mod entries;
mod format_spec;
mod fuzz_regressions;
mod golden;
mod kdf_limit;
mod keyslots;
mod model;
mod offline_attacker;
mod orphans;
mod sealing;
mod shared;
mod shared_remote;
mod single_key;
mod storage;
mod tamper;
mod vault;
mod vectors;
