//! Hooks for the fuzz targets, the known-answer and KDF-counting tests and the benchmarks.
//!
//! NOT FOR USERS: compiled only with the non-default feature `test-hooks` (which this
//! crate's own tests, examples and benchmarks and the fuzz crate enable), hidden from the
//! docs, outside semver and free to change in any release. A build without the feature has
//! none of it, and no hook runs on the production path.
//!
//! Each `fuzz_*` function feeds arbitrary bytes to one parser and checks the invariants that
//! must hold whatever the input; it returns `Err` with a description when one is violated (the
//! fuzz target turns that into a crash). A panic inside is a bug as well.

mod import_hook;

pub use self::import_hook::fuzz_import;

/// The record pipeline's parts, for the benchmarks' floors.
pub mod bench;
pub mod format_v1;
pub mod fuzz;
pub mod ops;

use crate::crypto::{derive_key, Key};
use crate::header::{Header, VmkKeys};
use crate::keys::KdfParams;
use crate::record::{
    decode_manifest, decode_value, open_record, parse_prefix, unframe, OpenError, RecordContext,
};
use crate::{Secret, Token};

/// How many generations a manifest write reserves for overwrites (`docs/format.md`, section 6).
pub const RESERVED_GENERATIONS: u64 = crate::namespace::RESERVED_GENERATIONS;

/// How many Argon2 derivations the calling thread has run.
pub fn kdf_runs_on_this_thread() -> u64 {
    crate::keys::kdf_runs_on_this_thread()
}

/// Makes the next keyring slot key written on this thread `key` instead of a random one
/// (feature `keyring`), for the memory-hygiene test's canary.
#[cfg(feature = "keyring")]
pub fn set_next_keyring_slot_key(key: &[u8; 32]) {
    crate::keyring::set_next_slot_key(key);
}

/// The fixed key and context the record target opens under.
const FUZZ_KEY: [u8; 32] = [0x42; 32];
const FUZZ_VAULT_ID: [u8; 16] = [0x17; 16];

/// Parses arbitrary bytes as a header file and every keyslot's parameters; a header that
/// parses must survive a re-encode and re-parse unchanged.
///
/// # Errors
/// A description of a violated invariant.
pub fn fuzz_header(data: &[u8]) -> Result<(), String> {
    let Ok(header) = Header::parse(data) else {
        return Ok(());
    };
    for slot in &header.slots {
        let _ = slot.parse_params();
        let _ = slot.kind();
    }
    let vmk = Key::zero();
    let keys = VmkKeys::new(&vmk, &header.vault_id).map_err(|e| e.to_string())?;
    let encoded = header
        .encode(&keys)
        .map_err(|e| format!("re-encode failed: {e}"))?;
    let again = Header::parse(&encoded).map_err(|e| format!("re-parse failed: {e}"))?;
    Header::verify_mac(&encoded, &keys).map_err(|e| format!("own MAC refused: {e}"))?;
    let twice = again.encode(&keys).map_err(|e| e.to_string())?;
    // The MAC and checksum cover the same bytes, so two encodings of one header are equal.
    if twice != encoded {
        return Err("a parsed header does not re-encode to the same bytes".into());
    }
    // The bytes before the trailer are the input's, when the input was canonical.
    let body = data.len() - 64;
    if encoded[..body] != data[..body] {
        return Err("parse then encode changed the header's bytes".into());
    }
    Ok(())
}

/// Opens arbitrary bytes as a stored record under a fixed key and context. Nothing but a
/// genuine seal can open, so any success is a failure of authentication.
///
/// # Errors
/// A description of a violated invariant.
pub fn fuzz_record(data: &[u8]) -> Result<(), String> {
    let cipher = Key::from_slice(&FUZZ_KEY).ok_or("key length")?.cipher();
    let ctx = RecordContext {
        vault_id: &FUZZ_VAULT_ID,
        namespace: "fuzz",
        record_id: &[7u8; 32],
        incarnation: Some(&[9u8; 16]),
    };
    let Ok(prefix) = parse_prefix(data) else {
        return Ok(());
    };
    match open_record(&cipher, &ctx, &prefix, data) {
        Err(OpenError::Integrity | OpenError::Format(_)) => Ok(()),
        Err(other) => Err(format!("unexpected error kind {other:?}")),
        Ok(_) => Err("arbitrary bytes authenticated as a record".into()),
    }
}

/// Decodes arbitrary bytes as a decrypted payload (framing, zero padding, bincode body) as
/// every record type; a body that decodes must round-trip through the encoder.
///
/// # Errors
/// A description of a violated invariant.
pub fn fuzz_payload(data: &[u8]) -> Result<(), String> {
    let Ok(range) = unframe(data) else {
        return Ok(());
    };
    let body = &data[range];
    if let Ok((key, token)) = decode_value::<Token>(body) {
        let again = crate::record::sealed::Sealed::encode_body(&token, &key)
            .map_err(|e| format!("a decoded token does not re-encode: {e}"))?;
        if &again[crate::record::RECORD_HEADER_LEN + 5..] != body {
            return Err("token body does not round-trip".into());
        }
    }
    if let Ok((key, secret)) = decode_value::<Secret>(body) {
        let again = crate::record::sealed::Sealed::encode_body(&secret, &key)
            .map_err(|e| format!("a decoded secret does not re-encode: {e}"))?;
        if &again[crate::record::RECORD_HEADER_LEN + 5..] != body {
            return Err("secret body does not round-trip".into());
        }
    }
    let _ = decode_manifest(body);
    Ok(())
}

/// `open[key](nonce, aad, ciphertext || tag)` through the vault's XChaCha20-Poly1305 wrapper.
pub fn xchacha20poly1305_open(
    key: &[u8; 32],
    nonce: &[u8],
    aad: &[u8],
    ciphertext_and_tag: &[u8],
) -> Option<Vec<u8>> {
    let cipher = Key::from_slice(key)?.cipher();
    cipher
        .open(nonce, aad, ciphertext_and_tag)
        .map(|p| p.to_vec())
}

/// HKDF-SHA-256 with a 32-byte output, as the vault derives keys.
pub fn hkdf_sha256(salt: &[u8], ikm: &[u8], info: &[u8]) -> Option<[u8; 32]> {
    derive_key(salt, ikm, info).ok().map(|k| *k.bytes())
}

/// Argon2id (version 0x13) with a 32-byte output, as passphrase keyslots derive their keys,
/// with the bounds this library applies to parameters read from disk.
pub fn argon2id(m_kib: u32, t: u32, p: u32, password: &[u8], salt: &[u8]) -> Option<[u8; 32]> {
    let params = KdfParams::from_disk(m_kib, t, p)?;
    params.derive(password, salt).ok().map(|k| *k.bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Backend, MemoryBackend};
    use crate::{KeySource, Vault};

    #[test]
    fn hooks_accept_real_inputs() {
        let storage = MemoryBackend::new();
        let key = KeySource::raw_key(secrecy::SecretBox::new(Box::new([1u8; 32])));
        let vault = Vault::create_with_backend(storage.clone(), &key).unwrap();
        vault
            .namespace("n")
            .unwrap()
            .put("k", &Token::new("a".into()).with_scopes(["s"]))
            .unwrap();
        let header = storage.read_header().unwrap().unwrap();
        fuzz_header(&header).unwrap();
        fuzz_header(&header[..40]).unwrap();
        for (_, v) in storage.scan(b"r", &[], None, 10).unwrap() {
            fuzz_record(&v).unwrap();
        }
        let body =
            crate::record::sealed::Sealed::encode_body(&Token::new("x".into()), "k").unwrap();
        let mut payload = body[crate::record::RECORD_HEADER_LEN..].to_vec();
        let len = u32::try_from(payload.len() - 5).unwrap();
        payload[0] = 1;
        payload[1..5].copy_from_slice(&len.to_le_bytes());
        payload.resize(256, 0);
        fuzz_payload(&payload).unwrap();
        assert_eq!(hkdf_sha256(b"s", b"i", b"l").unwrap().len(), 32);
        assert!(argon2id(64, 1, 1, b"pw", &[0u8; 16]).is_some());
        assert!(argon2id(u32::MAX, 1, 1, b"pw", &[0u8; 16]).is_none());
    }
}
