//! Redacted `tracing` events, compiled in with the `tracing` feature and to nothing without
//! it. Events carry namespaces, keys, versions, kinds of failure and at most a short hash of
//! an access token; never a token, a key or a passphrase.

/// Emits a `tracing` event at `$level` (`trace`, `debug`, `info`, `warn`, `error`) with target
/// `tokenvault`, when the `tracing` feature is on.
#[cfg(feature = "tracing")]
macro_rules! event {
    ($level:ident, $($arg:tt)+) => {
        ::tracing::$level!(target: "tokenvault", $($arg)+)
    };
}

#[cfg(not(feature = "tracing"))]
macro_rules! event {
    ($level:ident, $($arg:tt)+) => {{}};
}

pub(crate) use event;

/// The first 8 hex digits of the SHA-256 of a token's access token: enough to tell tokens
/// apart in logs, far too little to recover or use one.
#[cfg(feature = "tracing")]
pub(crate) fn short_hash(token: &crate::Token) -> String {
    use secrecy::ExposeSecret;
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(token.access_token().expose_secret().as_bytes());
    digest[..4].iter().map(|b| format!("{b:02x}")).collect()
}
