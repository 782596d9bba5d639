//! The irreducible parts of a record read and write, for the benchmarks' floors: the HMAC of
//! the names, the bincode body, XChaCha20-Poly1305 sealing and opening, exactly as the vault
//! runs them, but with nothing around them (no locks, no manifest, no storage).

use zeroize::Zeroizing;

/// The incarnation the benchmark seals under (any value does).
const BENCH_INCARNATION: [u8; 16] = [0x42; 16];

use crate::crypto::{Cipher, Key, Prf};
use crate::record::sealed::Sealed;
use crate::record::{
    decode_value, open_record, parse_prefix, seal_record, RecordContext, RecordPrefix, RecordType,
};
use crate::Token;

/// A fixed key and context to run the record pipeline's parts under.
#[allow(missing_debug_implementations)]
pub struct RecordParts {
    cipher: Cipher,
    prf: Prf,
    vault_id: [u8; 16],
}

impl RecordParts {
    /// The parts under a fixed key.
    ///
    /// # Panics
    /// Never in practice (a fixed 32-byte key).
    #[allow(clippy::expect_used)]
    pub fn new() -> Self {
        let key = Key::from_slice(&[0x5a; 32]).expect("32 bytes");
        Self {
            cipher: key.cipher(),
            prf: Prf::new(&key).expect("HMAC key"),
            vault_id: [0x17; 16],
        }
    }

    /// The record id: HMAC-SHA-256 over the label, namespace and key, as a vault computes it
    /// for every get and put.
    pub fn record_id(&self, namespace: &str, key: &str) -> [u8; 32] {
        self.prf.mac(&[
            b"tokenvault/v1/record-id",
            namespace.as_bytes(),
            key.as_bytes(),
        ])
    }

    /// The encoded body (bincode, framed and padded, in a buffer with room for the seal).
    ///
    /// # Errors
    /// A record over the size limit.
    pub fn encode(&self, key: &str, token: &Token) -> crate::Result<Zeroizing<Vec<u8>>> {
        token.encode_body(key)
    }

    /// Seals an encoded body into the stored bytes.
    ///
    /// # Errors
    /// As the vault's sealing.
    pub fn seal(
        &self,
        namespace: &str,
        record_id: &[u8; 32],
        body: Zeroizing<Vec<u8>>,
    ) -> crate::Result<Vec<u8>> {
        let ctx = RecordContext {
            vault_id: &self.vault_id,
            namespace,
            record_id,
            incarnation: Some(&BENCH_INCARNATION),
        };
        let prefix = RecordPrefix {
            record_type: RecordType::Token,
            key_id: 1,
            generation: 1,
        };
        seal_record(&self.cipher, &ctx, &prefix, body)
    }

    /// Opens stored bytes and decodes the token in them.
    pub fn open_and_decode(
        &self,
        namespace: &str,
        record_id: &[u8; 32],
        stored: &[u8],
    ) -> Option<Token> {
        let (plain, range) = self.open(namespace, record_id, stored)?;
        decode_value::<Token>(&plain[range]).ok().map(|(_, t)| t)
    }

    /// Opens stored bytes (authenticates and decrypts; no decoding).
    pub fn open(
        &self,
        namespace: &str,
        record_id: &[u8; 32],
        stored: &[u8],
    ) -> Option<(Zeroizing<Vec<u8>>, std::ops::Range<usize>)> {
        let ctx = RecordContext {
            vault_id: &self.vault_id,
            namespace,
            record_id,
            incarnation: Some(&BENCH_INCARNATION),
        };
        let prefix = parse_prefix(stored).ok()?;
        open_record(&self.cipher, &ctx, &prefix, stored).ok()
    }

    /// Decodes an opened body.
    pub fn decode(&self, body: &[u8]) -> Option<Token> {
        decode_value::<Token>(body).ok().map(|(_, t)| t)
    }
}

impl Default for RecordParts {
    fn default() -> Self {
        Self::new()
    }
}
