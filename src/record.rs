//! The record codec: typed values <-> framed, padded bincode payloads <-> sealed stored bytes.
//!
//! Stored record value (all integers little-endian):
//!
//! ```text
//! format_version u8 | record_type u8 | key_id u32 | generation u64 | nonce [24] | ct | tag [16]
//! ```
//!
//! Plaintext (the `ct` once opened): `payload_version u8 | body_len u32 | body | zero padding`,
//! padded to a multiple of [`PAD_BUCKET`] bytes. `body` is bincode 2 (fixed-width integers,
//! little-endian) of the record's fields, decoded with a size limit and required to consume
//! exactly `body_len` bytes.

use bincode::config::{self, Configuration, Fixint, Limit, LittleEndian};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::bytes::Reader;
use crate::crypto::{Aad, Cipher, NONCE_LEN, TAG_LEN};
use crate::error::{Error, Result};
use crate::token::{Secret, Token, TokenParts};

pub(crate) use crate::format::RecordType;
use crate::format::{
    FORMAT_V1, INCARNATION_LEN, PAYLOAD_VERSION, RECORD_AAD_LABEL, RECORD_V2_AAD_LABEL,
};
pub(crate) use crate::format::{FORMAT_VERSION, MAX_RECORD_LEN};

/// Plaintexts are zero-padded to a multiple of this many bytes, so records of similar size
/// are indistinguishable on disk.
pub(crate) const PAD_BUCKET: usize = 256;
/// Bytes in front of the nonce in a stored record.
pub(crate) const RECORD_PREFIX_LEN: usize = 1 + 1 + 4 + 8;
/// Bytes in front of the ciphertext in a stored record.
pub(crate) const RECORD_HEADER_LEN: usize = RECORD_PREFIX_LEN + NONCE_LEN;
/// Framing bytes in front of the bincode body.
const FRAME_LEN: usize = 1 + 4;

type BincodeConfig = Configuration<LittleEndian, Fixint, Limit<MAX_RECORD_LEN>>;

const fn bincode_config() -> BincodeConfig {
    config::standard()
        .with_little_endian()
        .with_fixed_int_encoding()
        .with_limit::<MAX_RECORD_LEN>()
}

pub(crate) mod sealed {
    use zeroize::Zeroizing;

    /// The codec half of [`Record`](super::Record), private to the crate.
    pub trait Sealed: Sized {
        fn encode_body(&self, key: &str) -> crate::Result<Zeroizing<Vec<u8>>>;
        fn decode_body(body: &[u8]) -> Option<(String, Self)>;
    }
}

use sealed::Sealed;

/// A value a namespace can store: [`Token`] or [`Secret`]. Sealed: the record types are part
/// of the format.
pub trait Record: Sealed {
    /// The record type written into, and checked against, the stored record.
    const TYPE: RecordType;

    /// The length of this record's body as it would be stored under `key`, before padding
    /// and sealing: what must stay within [`MAX_RECORD_LEN`](crate::format::MAX_RECORD_LEN).
    /// The body is encoded to measure it, and wiped.
    ///
    /// ```
    /// use tokenvault::{format::MAX_RECORD_LEN, Record, Token};
    ///
    /// let small = Token::new("at".into());
    /// assert!(small.encoded_len("api")? < MAX_RECORD_LEN);
    /// let huge = Token::new("x".repeat(MAX_RECORD_LEN).into());
    /// assert!(huge.encoded_len("api").is_err());
    /// # Ok::<(), tokenvault::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::TooLarge`] when the record does not fit in one.
    fn encoded_len(&self, key: &str) -> Result<usize> {
        Ok(self.encode_body(key)?.len())
    }
}

#[derive(Serialize, Deserialize)]
struct TokenBody<'a> {
    #[serde(borrow)]
    key: &'a str,
    #[serde(borrow)]
    token: TokenParts<'a>,
}

#[derive(Serialize, Deserialize)]
struct SecretBody<'a> {
    #[serde(borrow)]
    key: &'a str,
    #[serde(borrow)]
    value: &'a [u8],
}

/// A namespace manifest: how many records the namespace holds and its write generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Manifest {
    pub(crate) count: u64,
    pub(crate) generation: u64,
}

impl Record for Token {
    const TYPE: RecordType = RecordType::Token;
}

impl Sealed for Token {
    fn encode_body(&self, key: &str) -> Result<Zeroizing<Vec<u8>>> {
        encode(&TokenBody {
            key,
            token: self.parts(),
        })
    }

    fn decode_body(body: &[u8]) -> Option<(String, Self)> {
        let b: TokenBody<'_> = decode(body)?;
        Some((b.key.to_owned(), Token::from_parts(&b.token)))
    }
}

impl Record for Secret {
    const TYPE: RecordType = RecordType::Secret;
}

impl Sealed for Secret {
    fn encode_body(&self, key: &str) -> Result<Zeroizing<Vec<u8>>> {
        encode(&SecretBody {
            key,
            value: self.expose_bytes(),
        })
    }

    fn decode_body(body: &[u8]) -> Option<(String, Self)> {
        let b: SecretBody<'_> = decode(body)?;
        Some((
            b.key.to_owned(),
            Secret::from_bytes(b.value.to_vec().into()),
        ))
    }
}

/// Encodes into a zeroizing buffer that already has room for the framing, the padding and
/// the tag, so that neither encoding nor sealing reallocates (and leaves copies behind).
fn encode<T: Serialize>(value: &T) -> Result<Zeroizing<Vec<u8>>> {
    let mut sizer = bincode::enc::write::SizeWriter::default();
    bincode::serde::encode_into_writer(value, &mut sizer, bincode_config())
        .map_err(|_| too_large())?;
    let body_len = sizer.bytes_written;
    let padded = padded_len(body_len).ok_or_else(too_large)?;
    let mut buf = Zeroizing::new(Vec::with_capacity(RECORD_HEADER_LEN + padded + TAG_LEN));
    buf.resize(RECORD_HEADER_LEN + FRAME_LEN + body_len, 0);
    let written = bincode::serde::encode_into_slice(
        value,
        &mut buf[RECORD_HEADER_LEN + FRAME_LEN..],
        bincode_config(),
    )
    .map_err(|_| too_large())?;
    if written != body_len {
        return Err(Error::backend("internal: bincode size mismatch"));
    }
    Ok(buf)
}

fn decode<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Option<T> {
    let (value, used) = bincode::serde::borrow_decode_from_slice(body, bincode_config()).ok()?;
    (used == body.len()).then_some(value)
}

fn too_large() -> Error {
    Error::TooLarge {
        what: "the record",
        limit: MAX_RECORD_LEN,
    }
}

/// The padded plaintext length for a body of `body_len` bytes, or `None` if over the limit.
fn padded_len(body_len: usize) -> Option<usize> {
    let framed = FRAME_LEN.checked_add(body_len)?;
    let padded = framed.div_ceil(PAD_BUCKET).max(1) * PAD_BUCKET;
    (padded <= MAX_RECORD_LEN).then_some(padded)
}

/// What a stored record says about itself before it is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RecordPrefix {
    pub(crate) record_type: RecordType,
    pub(crate) key_id: u32,
    pub(crate) generation: u64,
}

/// Everything the associated data of a record binds, apart from its type, key id and
/// generation (which travel in the record's prefix).
pub(crate) struct RecordContext<'a> {
    pub(crate) vault_id: &'a [u8],
    pub(crate) namespace: &'a str,
    /// The record's storage id: `HMAC(index_key, namespace, record key)`, or the manifest id.
    pub(crate) record_id: &'a [u8],
    /// The namespace's incarnation (format v2); `None` for a format-v1 record, read only to
    /// upgrade it.
    pub(crate) incarnation: Option<&'a [u8; INCARNATION_LEN]>,
}

impl RecordContext<'_> {
    /// The format version of records in this context.
    fn version(&self) -> u8 {
        if self.incarnation.is_some() {
            FORMAT_VERSION
        } else {
            FORMAT_V1
        }
    }

    fn aad(&self, prefix: &RecordPrefix) -> Vec<u8> {
        let aad = match self.incarnation {
            Some(incarnation) => Aad::new(RECORD_V2_AAD_LABEL)
                .u8(FORMAT_VERSION)
                .bytes(self.vault_id)
                .bytes(self.namespace.as_bytes())
                .bytes(incarnation),
            None => Aad::new(RECORD_AAD_LABEL)
                .u8(FORMAT_V1)
                .bytes(self.vault_id)
                .bytes(self.namespace.as_bytes()),
        };
        aad.bytes(self.record_id)
            .u8(prefix.record_type.code())
            .u32(prefix.key_id)
            .u64(prefix.generation)
            .finish()
    }
}

/// Seals an encoded body (from [`Record::encode_body`] or [`encode_manifest`]) into the
/// stored record value, in place.
pub(crate) fn seal_record(
    cipher: &Cipher,
    ctx: &RecordContext<'_>,
    prefix: &RecordPrefix,
    mut buf: Zeroizing<Vec<u8>>,
) -> Result<Vec<u8>> {
    let body_len = buf
        .len()
        .checked_sub(RECORD_HEADER_LEN + FRAME_LEN)
        .ok_or_else(|| Error::backend("internal: short record buffer"))?;
    let padded = padded_len(body_len).ok_or_else(too_large)?;
    let body_len32 = u32::try_from(body_len).map_err(|_| too_large())?;
    buf[0] = ctx.version();
    buf[1] = prefix.record_type.code();
    buf[2..6].copy_from_slice(&prefix.key_id.to_le_bytes());
    buf[6..14].copy_from_slice(&prefix.generation.to_le_bytes());
    buf[RECORD_HEADER_LEN] = PAYLOAD_VERSION;
    buf[RECORD_HEADER_LEN + 1..RECORD_HEADER_LEN + FRAME_LEN]
        .copy_from_slice(&body_len32.to_le_bytes());
    buf.resize(RECORD_HEADER_LEN + padded, 0);
    let nonce = cipher.seal_in_place(&ctx.aad(prefix), &mut buf, RECORD_HEADER_LEN)?;
    buf[RECORD_PREFIX_LEN..RECORD_HEADER_LEN].copy_from_slice(&nonce);
    // The buffer now holds only public bytes (prefix, nonce, ciphertext, tag).
    Ok(std::mem::take(&mut *buf))
}

/// Why a stored record could not be opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OpenError {
    /// The bytes are not a record of a version this library reads.
    Format(&'static str),
    /// The record was written by a newer format.
    Version(u8),
    /// The record uses a key id the namespace does not have.
    UnknownKey,
    /// Authentication failed: damaged, tampered with, or moved.
    Integrity,
    /// Authenticated, but the payload does not decode (a bug or a newer payload version).
    Payload(&'static str),
}

impl OpenError {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Self::Format(r) | Self::Payload(r) => r,
            Self::Version(_) => "written by a newer format version",
            Self::UnknownKey => "sealed under a key the namespace does not have",
            Self::Integrity => "authentication failed",
        }
    }
}

/// Reads a stored record's prefix, checking its length and version.
pub(crate) fn parse_prefix(stored: &[u8]) -> Result<RecordPrefix, OpenError> {
    if stored.len() < RECORD_HEADER_LEN + PAD_BUCKET + TAG_LEN {
        return Err(OpenError::Format("truncated record"));
    }
    if stored.len() > RECORD_HEADER_LEN + MAX_RECORD_LEN + TAG_LEN {
        return Err(OpenError::Format("oversized record"));
    }
    if stored[0] != FORMAT_VERSION && stored[0] != FORMAT_V1 {
        return Err(if stored[0] > FORMAT_VERSION {
            OpenError::Version(stored[0])
        } else {
            OpenError::Format("unknown record format version")
        });
    }
    let truncated = |_| OpenError::Format("record shorter than its prefix");
    let mut r = Reader::new(&stored[1..]);
    let record_type = RecordType::from_code(r.u8().map_err(truncated)?)
        .ok_or(OpenError::Format("unknown record type"))?;
    Ok(RecordPrefix {
        record_type,
        key_id: r.u32().map_err(truncated)?,
        generation: r.u64().map_err(truncated)?,
    })
}

/// Opens a stored record: authenticates it under `cipher` and `ctx`, then checks the framing
/// and padding. Returns the bincode body inside a zeroizing buffer, with its range.
pub(crate) fn open_record(
    cipher: &Cipher,
    ctx: &RecordContext<'_>,
    prefix: &RecordPrefix,
    stored: &[u8],
) -> Result<(Zeroizing<Vec<u8>>, std::ops::Range<usize>), OpenError> {
    if stored[0] != ctx.version() {
        return Err(OpenError::Format(
            "the record's format version is not its namespace's",
        ));
    }
    let sealed = &stored[RECORD_HEADER_LEN..];
    if !(sealed.len() - TAG_LEN).is_multiple_of(PAD_BUCKET) {
        return Err(OpenError::Format("record length is not a whole bucket"));
    }
    let plain = cipher
        .open(
            &stored[RECORD_PREFIX_LEN..RECORD_HEADER_LEN],
            &ctx.aad(prefix),
            sealed,
        )
        .ok_or(OpenError::Integrity)?;
    let range = unframe(&plain)?;
    Ok((plain, range))
}

/// Checks `payload_version | body_len | body | zeros` and returns the body's range.
pub(crate) fn unframe(plain: &[u8]) -> Result<std::ops::Range<usize>, OpenError> {
    let mut r = Reader::new(plain);
    let version = r.u8().map_err(|_| OpenError::Payload("empty payload"))?;
    if version != PAYLOAD_VERSION {
        return Err(OpenError::Payload("unknown payload version"));
    }
    let body_len = r
        .u32()
        .map_err(|_| OpenError::Payload("truncated payload frame"))? as usize;
    let end = FRAME_LEN
        .checked_add(body_len)
        .filter(|&end| end <= plain.len())
        .ok_or(OpenError::Payload("payload length past its end"))?;
    if plain[end..].iter().any(|&b| b != 0) {
        return Err(OpenError::Payload("non-zero padding"));
    }
    Ok(FRAME_LEN..end)
}

/// Decodes a record body of type `R`: `(record key, value)`.
pub(crate) fn decode_value<R: Record>(body: &[u8]) -> Result<(String, R), OpenError> {
    R::decode_body(body).ok_or(OpenError::Payload("payload does not decode"))
}

pub(crate) fn encode_manifest(m: &Manifest) -> Result<Zeroizing<Vec<u8>>> {
    encode(m)
}

pub(crate) fn decode_manifest(body: &[u8]) -> Result<Manifest, OpenError> {
    decode(body).ok_or(OpenError::Payload("manifest does not decode"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Key;

    fn ctx() -> RecordContext<'static> {
        RecordContext {
            vault_id: b"0123456789abcdef",
            namespace: "ns",
            record_id: b"rid",
            incarnation: Some(&[7; INCARNATION_LEN]),
        }
    }

    fn prefix() -> RecordPrefix {
        RecordPrefix {
            record_type: RecordType::Token,
            key_id: 1,
            generation: 7,
        }
    }

    #[test]
    fn round_trip_and_padding() {
        let cipher = Key::random().unwrap().cipher();
        let token = Token::new("access".into()).with_scopes(["a", "b"]);
        let sealed =
            seal_record(&cipher, &ctx(), &prefix(), token.encode_body("k").unwrap()).unwrap();
        assert_eq!(
            sealed.len(),
            RECORD_HEADER_LEN + PAD_BUCKET + TAG_LEN,
            "small records fill one bucket"
        );
        let p = parse_prefix(&sealed).unwrap();
        assert_eq!(p, prefix());
        let (plain, range) = open_record(&cipher, &ctx(), &p, &sealed).unwrap();
        let (key, back) = decode_value::<Token>(&plain[range]).unwrap();
        assert_eq!(key, "k");
        assert!(back.same_as(&token));
    }

    #[test]
    fn same_bucket_same_length() {
        let cipher = Key::random().unwrap().cipher();
        let a = seal_record(
            &cipher,
            &ctx(),
            &prefix(),
            Token::new("a".into()).encode_body("k").unwrap(),
        )
        .unwrap();
        let b = seal_record(
            &cipher,
            &ctx(),
            &prefix(),
            Token::new("b".repeat(150).into()).encode_body("k").unwrap(),
        )
        .unwrap();
        assert_eq!(a.len(), b.len());
    }

    #[test]
    fn too_large_is_refused() {
        let token = Token::new("x".repeat(MAX_RECORD_LEN).into());
        let cipher = Key::random().unwrap().cipher();
        let err = token
            .encode_body("k")
            .and_then(|b| seal_record(&cipher, &ctx(), &prefix(), b));
        assert!(matches!(err, Err(Error::TooLarge { .. })));
    }

    #[test]
    fn unframe_checks_everything() {
        let mut plain = vec![PAYLOAD_VERSION, 3, 0, 0, 0, 1, 2, 3, 0, 0];
        assert_eq!(unframe(&plain).unwrap(), 5..8);
        plain[9] = 1;
        assert!(unframe(&plain).is_err());
        plain[9] = 0;
        plain[1] = 6;
        assert!(unframe(&plain).is_err());
        plain[1] = 3;
        plain[0] = 2;
        assert!(unframe(&plain).is_err());
        assert!(unframe(&[]).is_err());
        assert!(unframe(&[1, 0]).is_err());
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;
        use std::time::{Duration, UNIX_EPOCH};

        fn any_text(max: usize) -> impl Strategy<Value = String> {
            proptest::collection::vec(any::<char>(), 0..max).prop_map(|c| c.into_iter().collect())
        }

        prop_compose! {
            fn any_token()(
                access in any_text(600),
                refresh in proptest::option::of(any_text(300)),
                token_type in any_text(12),
                expires in proptest::option::of(-4_000_000_000i64..4_000_000_000),
                scopes in proptest::collection::vec(any_text(40), 0..8),
                identity in proptest::option::of(any_text(60)),
                rs in proptest::option::of(any_text(60)),
                extra in proptest::option::of(any_text(300)),
            ) -> Token {
                let mut t = Token::new(access.into()).with_token_type(token_type).with_scopes(scopes);
                if let Some(r) = refresh { t = t.with_refresh_token(r.into()); }
                if let Some(e) = expires {
                    let at = if e >= 0 {
                        UNIX_EPOCH + Duration::from_secs(e.unsigned_abs())
                    } else {
                        UNIX_EPOCH - Duration::from_secs(e.unsigned_abs())
                    };
                    t = t.with_expires_at(at);
                }
                if let Some(i) = identity { t = t.with_identity(i); }
                if let Some(r) = rs { t = t.with_resource_server(r); }
                if let Some(x) = extra { t = t.with_extra_json(x.into()); }
                t
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn any_token_round_trips(token in any_token(), key in any_text(64), gen in any::<u64>(), kid in any::<u32>()) {
                let cipher = Key::random().unwrap().cipher();
                let prefix = RecordPrefix { record_type: RecordType::Token, key_id: kid, generation: gen };
                let sealed = seal_record(&cipher, &ctx(), &prefix, token.encode_body(&key).unwrap()).unwrap();
                prop_assert_eq!((sealed.len() - RECORD_HEADER_LEN - TAG_LEN) % PAD_BUCKET, 0);
                let p = parse_prefix(&sealed).unwrap();
                prop_assert_eq!(p, prefix);
                let (plain, range) = open_record(&cipher, &ctx(), &p, &sealed).unwrap();
                let (back_key, back) = decode_value::<Token>(&plain[range]).unwrap();
                prop_assert_eq!(back_key, key);
                prop_assert!(back.same_as(&token));
            }

            #[test]
            fn any_secret_round_trips(value in proptest::collection::vec(any::<u8>(), 0..4096), key in any_text(64)) {
                let cipher = Key::random().unwrap().cipher();
                let mut prefix = prefix();
                prefix.record_type = RecordType::Secret;
                let secret = Secret::from_bytes(value.clone().into());
                let sealed = seal_record(&cipher, &ctx(), &prefix, secret.encode_body(&key).unwrap()).unwrap();
                let (plain, range) = open_record(&cipher, &ctx(), &parse_prefix(&sealed).unwrap(), &sealed).unwrap();
                let (back_key, back) = decode_value::<Secret>(&plain[range]).unwrap();
                prop_assert_eq!(back_key, key);
                prop_assert_eq!(back.expose_bytes(), &value[..]);
            }

            #[test]
            fn sizes_up_to_the_limit(len in 0usize..MAX_RECORD_LEN + 512) {
                // Any size either seals and round-trips, or is refused as too large: never
                // silently truncated.
                let cipher = Key::random().unwrap().cipher();
                let token = Token::new("a".repeat(len).into());
                match token.encode_body("k").and_then(|b| seal_record(&cipher, &ctx(), &prefix(), b)) {
                    Ok(sealed) => {
                        prop_assert!(sealed.len() <= RECORD_HEADER_LEN + MAX_RECORD_LEN + TAG_LEN);
                        let (plain, range) = open_record(&cipher, &ctx(), &prefix(), &sealed).unwrap();
                        let (_, back) = decode_value::<Token>(&plain[range]).unwrap();
                        prop_assert!(back.same_as(&token));
                    }
                    Err(Error::TooLarge { .. }) => prop_assert!(len > MAX_RECORD_LEN - 64),
                    Err(e) => prop_assert!(false, "unexpected error {e}"),
                }
            }
        }
    }

    #[test]
    fn body_must_be_consumed_exactly() {
        let body = Token::new("a".into()).encode_body("k").unwrap();
        let body = &body[RECORD_HEADER_LEN + FRAME_LEN..];
        assert!(decode_value::<Token>(body).is_ok());
        let mut longer = body.to_vec();
        longer.push(0);
        assert!(decode_value::<Token>(&longer).is_err());
        assert!(decode_value::<Token>(&body[..body.len() - 1]).is_err());
    }
}
