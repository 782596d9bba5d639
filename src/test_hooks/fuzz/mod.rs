//! The bodies of the fuzz targets in `fuzz/fuzz_targets/`, shared with
//! `tests/engine/fuzz_regressions.rs` so that an input replays identically with and without the
//! fuzzer.
//!
//! Every `check_*` returns `Err` describing a violated invariant (the fuzz target turns it
//! into a crash, the regression test into a failure); a panic inside is a failure as well.
//!
//! The `open_vault` target needs to reach past the header's checksum, MAC and AEAD tags and
//! into storage, so this module carries an independent implementation of the format
//! (docs/format.md): a codec of the header (formats 2 and 1), namespace entries, records and
//! the anchor with the keyed primitives they use (`header_codec`), a reader that says what
//! opening a vault must give and what its entries tree lists (`decoder`), the real vault it
//! edits with the keys read from it (`fixture`), the edit programs (`edits`) and the target
//! with its invariants (`open_vault`).
// Test harness code: failing loudly on anything unexpected is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use crate::backend::{Backend, Batch, MemoryBackend};
use crate::secrecy::{ExposeSecret, SecretBox, SecretString};
use crate::{Damage, Error, KdfParams, KeySource, Secret, Token, Vault, VaultOptions};
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

mod decoder;
mod edits;
mod fixture;
mod header_codec;
mod open_vault;

use self::decoder::*;
use self::edits::*;
pub use self::fixture::*;
pub use self::header_codec::fix_framing;
use self::header_codec::*;
pub use self::open_vault::*;

// ---------------------------------------------------------------------------------------
// record, payload, header

/// `record`: arbitrary bytes opened as a sealed record under the hook's fixed key.
pub fn check_record(data: &[u8]) -> Result<(), String> {
    super::fuzz_record(data)
}

/// `payload`: arbitrary bytes decoded as a decrypted payload (framing, padding, bincode).
pub fn check_payload(data: &[u8]) -> Result<(), String> {
    super::fuzz_payload(data)
}

/// `header`: arbitrary bytes parsed as a header file, as given and again with the magic,
/// version, length and checksum fixed up (almost no mutation survives the SHA-256 checksum,
/// so without the fix-up the body parser would be out of the fuzzer's reach).
pub fn check_header(data: &[u8]) -> Result<(), String> {
    super::fuzz_header(data)?;
    if let Some(fixed) = fix_framing(data) {
        super::fuzz_header(&fixed).map_err(|e| format!("(framing fixed) {e}"))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// response

/// `response`: arbitrary bytes parsed as an OAuth token response. Whatever the input: no
/// panic; an error is `InvalidResponse` and does not quote the input; a parsed response has
/// at least one token, each with a non-empty access token and token type, that survives a
/// refresh merge with itself and a round trip through a vault record (or is refused as too
/// large), and whose `Debug` does not show its access token.
pub fn check_response(data: &[u8]) -> Result<(), String> {
    use crate::oauth::TokenResponse;
    use crate::store::TokenStore;

    let sent = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
    let response = match TokenResponse::from_json(data, sent) {
        Ok(r) => r,
        Err(crate::oauth::TokenError::InvalidResponse { reason }) => {
            // Reasons name fields and positions. An OAuth error code is echoed, but only
            // when it is the `error` field's value (bounded to 64 printable characters).
            if reason.len() > 200 {
                return Err(format!("an overlong error reason: {reason:?}"));
            }
            return Ok(());
        }
        Err(e) => return Err(format!("an error other than InvalidResponse: {e:?}")),
    };
    if response.is_empty() {
        return Err("a parsed response holds no token".into());
    }
    let store = response_vault();
    for (i, token) in response.tokens().iter().enumerate() {
        let access = token.access_token().expose_secret();
        if access.is_empty() || token.token_type().is_empty() {
            return Err("a token without access token or token type".into());
        }
        let debug = format!("{token:?}");
        if access.len() >= 16 && debug.contains(access) {
            let public = [token.token_type(), token.identity().unwrap_or("")]
                .into_iter()
                .chain(token.resource_server())
                .chain(token.scopes().iter().map(String::as_str));
            if !public.into_iter().any(|p| p.contains(access)) {
                return Err("Debug shows the access token".into());
            }
        }
        if !token.refreshed_with(token.clone()).same_as(token) {
            return Err("merging a token with itself changed it".into());
        }
        let key = format!("k{i}");
        match store.set_token(&key, token) {
            Ok(()) => {
                let back = store
                    .get_token(&key)
                    .map_err(|e| format!("stored token unreadable: {e}"))?
                    .ok_or("stored token missing")?;
                if !back.same_as(token) {
                    return Err("a stored token came back different".into());
                }
            }
            Err(crate::oauth::TokenError::Vault(Error::TooLarge { .. })) => {}
            Err(e) => return Err(format!("storing a parsed token failed: {e}")),
        }
    }
    Ok(())
}

fn response_vault() -> crate::Namespace {
    static VAULT: OnceLock<Vault> = OnceLock::new();
    VAULT
        .get_or_init(|| {
            let key = KeySource::raw_key(SecretBox::new(Box::new([9u8; 32])));
            Vault::create_with_backend(MemoryBackend::new(), &key).unwrap_or_else(|e| {
                panic!("cannot create the fuzz vault: {e}");
            })
        })
        .namespace("fuzz")
        .unwrap_or_else(|e| panic!("namespace: {e}"))
}

// ---------------------------------------------------------------------------------------
// import

/// `import`: arbitrary bytes as the contents of a token file to import (Globus JSON 2.0 and
/// 1.0, a Sharetribe file store) and as a file whose format is sniffed. Whatever the input:
/// no panic; an error is one that reading a file can give and quotes no access or refresh
/// token of the input; the records of a file that reads have valid names (Globus: keyed by
/// their resource server) and round-trip through a vault; a file that reads as Globus JSON is
/// detected as such (see `super::fuzz_import`).
///
/// A JSON object is checked again with whitespace in front, past the 16 bytes a sniffer may
/// look at first: random mutations almost never make so long a prefix of a valid file.
pub fn check_import(data: &[u8]) -> Result<(), String> {
    super::fuzz_import(data)?;
    if data.first() == Some(&b'{') {
        let mut padded = b" \n\t\r".repeat(5);
        padded.extend_from_slice(data);
        super::fuzz_import(&padded).map_err(|e| format!("(after 20 bytes of whitespace) {e}"))?;
    }
    Ok(())
}
