//! The token layer's integration tests, one module per concern: the authorizer (its refresh
//! transaction, what it owes the store, async use, against a real token endpoint over TLS),
//! the HTTP refresher against a real token endpoint on 127.0.0.1, token stores, validators,
//! guest and user sessions, and importing the peer SDKs' token files.
//!
//! One test binary; the tests that need a process of their own (`authorizer_process`,
//! `authorizer_events`, `http_tls`) are binaries of their own. Run one module with
//! `cargo test --all-features --test oauth -- authorizer_owed::`.

mod authorizer;
mod authorizer_async;
mod authorizer_http;
mod authorizer_owed;
mod browser;
mod device;
mod guest_user;
mod http_refresher;
mod import;
mod store;
mod takeover;
mod validators;
