//! Known-answer tests for the primitives the vault is built on, run through the vault's own
//! wrappers (`tokenvault::test_hooks`, feature `test-hooks`) where it has one:
//!
//! - Wycheproof XChaCha20-Poly1305 (every vector, through the vault's AEAD wrapper) and
//!   ChaCha20-Poly1305 (every vector, through `chacha20poly1305` directly), from the files
//!   vendored in `tests/vectors/wycheproof/` (see the README there for their source);
//! - Argon2id: RFC 9106 section 5.3 through the `argon2` crate, and the vault's own
//!   no-secret, no-data usage through `test_hooks::argon2id`, cross-checked against an
//!   independent implementation (argon2-cffi, i.e. the reference C code);
//! - HKDF-SHA-256: RFC 5869 test cases 1-3 through `test_hooks::hkdf_sha256`.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::PathBuf;

use argon2::{Algorithm, Argon2, AssociatedData, ParamsBuilder, Version};
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{ChaCha20Poly1305, KeyInit, Nonce, XChaCha20Poly1305, XNonce};
use serde_json::Value;
use tokenvault::test_hooks::{argon2id, hkdf_sha256, xchacha20poly1305_open};

// ---------------------------------------------------------------------------------------
// Helpers

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    assert!(s.len().is_multiple_of(2), "odd-length hex: {s}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn hex32(s: &str) -> [u8; 32] {
    hex(s).try_into().unwrap()
}

/// One Wycheproof AEAD test case, hex-decoded.
struct AeadCase {
    id: u64,
    key: Vec<u8>,
    iv: Vec<u8>,
    aad: Vec<u8>,
    msg: Vec<u8>,
    ct: Vec<u8>,
    tag: Vec<u8>,
    valid: bool,
    flags: Vec<String>,
}

impl AeadCase {
    fn ct_and_tag(&self) -> Vec<u8> {
        [&self.ct[..], &self.tag[..]].concat()
    }
}

/// Loads a vendored Wycheproof AEAD file: (algorithm, numberOfTests, every case).
fn load_wycheproof(file: &str) -> (String, usize, Vec<AeadCase>) {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests/vectors/wycheproof", file]
        .iter()
        .collect();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let json: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["schema"], "aead_test_schema_v1.json", "{file}: schema");
    let algorithm = json["algorithm"].as_str().unwrap().to_owned();
    let count = usize::try_from(json["numberOfTests"].as_u64().unwrap()).unwrap();
    let mut cases = Vec::new();
    for group in json["testGroups"].as_array().unwrap() {
        assert_eq!(group["type"], "AeadTest");
        assert_eq!(group["keySize"], 256);
        assert_eq!(group["tagSize"], 128);
        for t in group["tests"].as_array().unwrap() {
            let field = |name: &str| hex(t[name].as_str().unwrap());
            let result = t["result"].as_str().unwrap();
            assert!(
                result == "valid" || result == "invalid",
                "{file} tcId {}: unexpected result {result:?}",
                t["tcId"]
            );
            cases.push(AeadCase {
                id: t["tcId"].as_u64().unwrap(),
                key: field("key"),
                iv: field("iv"),
                aad: field("aad"),
                msg: field("msg"),
                ct: field("ct"),
                tag: field("tag"),
                valid: result == "valid",
                flags: t["flags"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|f| f.as_str().unwrap().to_owned())
                    .collect(),
            });
        }
    }
    (algorithm, count, cases)
}

// ---------------------------------------------------------------------------------------
// Wycheproof

/// Every XChaCha20-Poly1305 vector through the vault's own wrapper: valid vectors open to
/// exactly `msg`; invalid ones (modified tags, wrong nonce sizes) open to nothing.
#[test]
fn wycheproof_xchacha20poly1305_through_the_vault_wrapper() {
    let (algorithm, count, cases) = load_wycheproof("xchacha20_poly1305_test.json");
    assert_eq!(algorithm, "XCHACHA20-POLY1305");
    let (mut run, mut valid, mut bad_nonce) = (0usize, 0usize, 0usize);
    for case in &cases {
        let key: [u8; 32] = case.key.as_slice().try_into().unwrap();
        let opened = xchacha20poly1305_open(&key, &case.iv, &case.aad, &case.ct_and_tag());
        if case.iv.len() != 24 {
            // The wrapper must refuse any nonce that is not 24 bytes, whatever the rest is.
            assert!(
                !case.valid,
                "tcId {}: a non-24-byte nonce marked valid",
                case.id
            );
            assert!(
                opened.is_none(),
                "tcId {}: opened with a {}-byte nonce",
                case.id,
                case.iv.len()
            );
            bad_nonce += 1;
        } else if case.valid {
            assert_eq!(
                opened.as_deref(),
                Some(&case.msg[..]),
                "tcId {} ({:?}): valid vector did not open to msg",
                case.id,
                case.flags
            );
            valid += 1;
        } else {
            assert!(
                opened.is_none(),
                "tcId {} ({:?}): invalid vector opened",
                case.id,
                case.flags
            );
        }
        run += 1;
    }
    assert_eq!(run, count, "vectors run vs numberOfTests");
    assert_eq!(count, 315);
    assert_eq!(valid, 246);
    assert_eq!(bad_nonce, 9);
}

/// The encrypt direction of the same vectors, through `chacha20poly1305` (the vault's
/// wrapper draws its own nonces and so cannot be given one): what the wrapper opens is
/// what the library seals.
#[test]
fn wycheproof_xchacha20poly1305_encrypt_direction() {
    let (_, count, cases) = load_wycheproof("xchacha20_poly1305_test.json");
    let mut run = 0usize;
    for case in &cases {
        let cipher = XChaCha20Poly1305::new_from_slice(&case.key).unwrap();
        if let (true, Ok(nonce)) = (case.valid, XNonce::try_from(&case.iv[..])) {
            let sealed = cipher
                .encrypt(
                    &nonce,
                    Payload {
                        msg: &case.msg,
                        aad: &case.aad,
                    },
                )
                .unwrap();
            assert_eq!(sealed, case.ct_and_tag(), "tcId {}: encryption", case.id);
        }
        run += 1;
    }
    assert_eq!(run, count);
}

/// Every ChaCha20-Poly1305 vector through `chacha20poly1305::ChaCha20Poly1305`, both
/// directions for valid vectors; a nonce that is not 12 bytes cannot even be formed.
#[test]
fn wycheproof_chacha20poly1305() {
    let (algorithm, count, cases) = load_wycheproof("chacha20_poly1305_test.json");
    assert_eq!(algorithm, "CHACHA20-POLY1305");
    let (mut run, mut valid, mut bad_nonce) = (0usize, 0usize, 0usize);
    for case in &cases {
        let cipher = ChaCha20Poly1305::new_from_slice(&case.key).unwrap();
        let Ok(nonce) = Nonce::try_from(&case.iv[..]) else {
            assert!(
                !case.valid,
                "tcId {}: a non-12-byte nonce marked valid",
                case.id
            );
            bad_nonce += 1;
            run += 1;
            continue;
        };
        let ct_and_tag = case.ct_and_tag();
        let opened = cipher.decrypt(
            &nonce,
            Payload {
                msg: &ct_and_tag,
                aad: &case.aad,
            },
        );
        if case.valid {
            assert_eq!(
                opened.as_deref(),
                Ok(&case.msg[..]),
                "tcId {}: decryption",
                case.id
            );
            let sealed = cipher
                .encrypt(
                    &nonce,
                    Payload {
                        msg: &case.msg,
                        aad: &case.aad,
                    },
                )
                .unwrap();
            assert_eq!(sealed, ct_and_tag, "tcId {}: encryption", case.id);
            valid += 1;
        } else {
            assert!(
                opened.is_err(),
                "tcId {} ({:?}): invalid vector opened",
                case.id,
                case.flags
            );
        }
        run += 1;
    }
    assert_eq!(run, count, "vectors run vs numberOfTests");
    assert_eq!(count, 325);
    assert_eq!(valid, 256);
    assert_eq!(bad_nonce, 9);
}

/// A few structural refusals of the wrapper that Wycheproof does not spell out.
#[test]
fn xchacha_wrapper_refuses_short_input() {
    let key = [7u8; 32];
    let nonce = [0u8; 24];
    for len in 0..16 {
        assert!(xchacha20poly1305_open(&key, &nonce, b"", &vec![0u8; len]).is_none());
    }
    assert!(xchacha20poly1305_open(&key, &[0u8; 23], b"", &[0u8; 16]).is_none());
    assert!(xchacha20poly1305_open(&key, &[0u8; 25], b"", &[0u8; 16]).is_none());
}

// ---------------------------------------------------------------------------------------
// Argon2id

/// RFC 9106 section 5.3 (Argon2id, version 0x13, with secret K and associated data X),
/// through the `argon2` crate configured as the vault configures it (Argon2id, V0x13).
#[test]
fn argon2id_rfc9106_section_5_3() {
    let params = ParamsBuilder::new()
        .m_cost(32)
        .t_cost(3)
        .p_cost(4)
        .output_len(32)
        .data(AssociatedData::new(&[0x04; 12]).unwrap())
        .build()
        .unwrap();
    let secret = [0x03u8; 8];
    let ctx =
        Argon2::new_with_secret(&secret, Algorithm::Argon2id, Version::V0x13, params).unwrap();
    let mut tag = [0u8; 32];
    ctx.hash_password_into(&[0x01; 32], &[0x02; 16], &mut tag)
        .unwrap();
    assert_eq!(
        tag,
        hex32(
            "0d 64 0d f5 8d 78 76 6c 08 c0 37 a3 4a 8b 53 c9
             d0 1e f0 45 2d 75 b6 5e b5 25 20 e9 6b 01 e6 59"
        )
    );
}

/// The vault's own Argon2id usage (no secret, no associated data, 32-byte tag) through
/// `test_hooks::argon2id`.
///
/// The expected outputs were computed once with argon2-cffi 25.1.0 (Python bindings of the
/// reference C implementation), pasted here, and are not recomputed at test time:
///
/// ```python
/// from argon2.low_level import hash_secret_raw, Type
/// hash_secret_raw(password, salt, time_cost=t, memory_cost=m, parallelism=p,
///                 hash_len=32, type=Type.ID, version=19).hex()
/// ```
#[test]
fn argon2id_vault_usage_cross_checked() {
    struct Case {
        what: &'static str,
        password: Vec<u8>,
        salt: Vec<u8>,
        m_kib: u32,
        t: u32,
        p: u32,
        expected: &'static str,
    }
    let salt_32 = b"tokenvault-salt-0123456789abcdef".to_vec();
    let cases = [
        Case {
            what: "KdfParams::insecure_for_tests() (m = 64, t = 1, p = 1), 32-byte salt",
            password: b"correct horse battery staple".to_vec(),
            salt: (0u8..32).collect(),
            m_kib: 64,
            t: 1,
            p: 1,
            expected: "da1aebe764f4e4a2614b8c4a8488b223e546dec13ffc77a693ac917cf47410f5",
        },
        Case {
            what: "RFC 9106 5.3 inputs without K and X, m = 8p (the lower bound)",
            password: vec![0x01; 32],
            salt: vec![0x02; 16],
            m_kib: 32,
            t: 3,
            p: 4,
            expected: "03aab965c12001c9d7d0d2de33192c0494b684bb148196d73c1df1acaf6d0c2e",
        },
        Case {
            what: "empty password, 16-byte (minimum) salt",
            password: Vec::new(),
            salt: vec![0x00; 16],
            m_kib: 128,
            t: 2,
            p: 2,
            expected: "28cf3cc41b60a59dd1621a17681ca272b4943343cb79d7227f4e7e236b9e78eb",
        },
        Case {
            what: "non-ASCII UTF-8 password, 64-byte (maximum) salt, p = 16 (maximum)",
            password: "pässwörd ☃ 🔑".as_bytes().to_vec(),
            salt: (0x40u8..0x80).collect(),
            m_kib: 256,
            t: 2,
            p: 16,
            expected: "1d503a43cd0684b8133d4435194206c62f13e994f3214b8671d4347d855b243b",
        },
        Case {
            what: "KdfParams::OWASP_MINIMUM (m = 19456, t = 2, p = 1)",
            password: b"tokenvault".to_vec(),
            salt: salt_32.clone(),
            m_kib: 19456,
            t: 2,
            p: 1,
            expected: "e3fb8652ae6e0d90e42c73db9c2ddf484910a4f2ac7dd45d84aa18e68c024d7a",
        },
        Case {
            what: "KdfParams::RFC9106_SECOND, the default (m = 65536, t = 3, p = 4)",
            password: b"tokenvault".to_vec(),
            salt: salt_32,
            m_kib: 65536,
            t: 3,
            p: 4,
            expected: "bc0f4d6e618e74d879f9133561a04eece77755b3367cf978d39ca7364709283c",
        },
    ];
    for c in &cases {
        let got = argon2id(c.m_kib, c.t, c.p, &c.password, &c.salt)
            .unwrap_or_else(|| panic!("{}: refused", c.what));
        assert_eq!(got, hex32(c.expected), "{}", c.what);
    }
}

/// The hook applies the on-disk bounds of docs/format.md 3.4 (t 1..=64, p 1..=16,
/// 8p <= m <= 4 GiB) before running anything.
#[test]
fn argon2id_hook_enforces_the_on_disk_bounds() {
    let salt = [0u8; 16];
    for (m, t, p) in [
        (64, 0, 1),
        (64, 65, 1),
        (64, 1, 0),
        (256, 1, 17),
        (31, 1, 4),
        (7, 1, 1),
        (4 * 1024 * 1024 + 1, 1, 1),
        (u32::MAX, 1, 1),
    ] {
        assert!(
            argon2id(m, t, p, b"pw", &salt).is_none(),
            "m = {m}, t = {t}, p = {p} accepted"
        );
    }
    // The edges themselves are accepted (cheap ones only).
    assert!(argon2id(8, 1, 1, b"pw", &salt).is_some());
    assert!(argon2id(128, 1, 16, b"pw", &salt).is_some());
    assert!(argon2id(64, 64, 1, b"pw", &salt).is_some());
}

// ---------------------------------------------------------------------------------------
// HKDF-SHA-256

/// RFC 5869 appendix A, test cases 1-3 (SHA-256). The vault takes 32 bytes of output; HKDF
/// output is prefix-consistent, so those are the first 32 bytes of each OKM.
#[test]
fn hkdf_sha256_rfc5869() {
    struct Case {
        name: &'static str,
        ikm: Vec<u8>,
        salt: Vec<u8>,
        info: Vec<u8>,
        okm: &'static str,
    }
    let cases = [
        Case {
            name: "RFC 5869 A.1 (basic)",
            ikm: vec![0x0b; 22],
            salt: (0x00u8..=0x0c).collect(),
            info: (0xf0u8..=0xf9).collect(),
            okm: "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf
                  34007208d5b887185865",
        },
        Case {
            name: "RFC 5869 A.2 (longer inputs)",
            ikm: (0x00u8..=0x4f).collect(),
            salt: (0x60u8..=0xaf).collect(),
            info: (0xb0u8..=0xff).collect(),
            okm: "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c
                  59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71
                  cc30c58179ec3e87c14c01d5c1f3434f1d87",
        },
        Case {
            name: "RFC 5869 A.3 (empty salt and info)",
            ikm: vec![0x0b; 22],
            salt: Vec::new(),
            info: Vec::new(),
            okm: "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d
                  9d201395faa4b61a96c8",
        },
    ];
    for c in &cases {
        let got = hkdf_sha256(&c.salt, &c.ikm, &c.info).unwrap();
        assert_eq!(&got[..], &hex(c.okm)[..32], "{}", c.name);
    }
}

/// The vault's own HKDF usage (docs/format.md 4.2 and 4.4: salt = a 16-byte vault id or a
/// 32-byte slot salt, ikm = 32 bytes, info = a raw label), cross-checked against Python's
/// standard library (`hmac`, `hashlib`), computed once and pasted:
///
/// ```python
/// prk = hmac.new(salt, ikm, hashlib.sha256).digest()
/// okm = hmac.new(prk, info + b"\x01", hashlib.sha256).digest()   # L = 32
/// ```
#[test]
fn hkdf_sha256_vault_labels_cross_checked() {
    let vault_id: Vec<u8> = (0x10u8..0x20).collect();
    let vmk: Vec<u8> = (0xa0u8..0xc0).collect();
    let slot_salt = vec![0x5a; 32];
    let raw_key = vec![0x07; 32];
    for (salt, ikm, info, expected) in [
        (
            &vault_id,
            &vmk,
            &b"tokenvault/v1/header-mac"[..],
            "88e7bc94d6f7a3748b02b32c2af7eae9c143c7cb182daa7c2d91df867300ee34",
        ),
        (
            &vault_id,
            &vmk,
            &b"tokenvault/v1/wrap"[..],
            "9d6ba5c34d2d8a149589a9fc0ef74f3dc751b8db6317cf131918dc9c3bb5e100",
        ),
        (
            &slot_salt,
            &raw_key,
            &b"tokenvault/v1/keyslot/raw-key"[..],
            "8b2d40738a39d2281d5cf0f5238bad59da90e176866cbf7aa70b03375c6dd60f",
        ),
    ] {
        let got = hkdf_sha256(salt, ikm, info).unwrap();
        assert_eq!(got, hex32(expected), "{}", String::from_utf8_lossy(info));
    }
}
