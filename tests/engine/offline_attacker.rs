//! What an offline attacker with a copy of the vault directory sees: no name, key, token,
//! secret or passphrase, in any common encoding, in any file.
//!
//! A vault on disk (sled) is filled with distinctive namespace names, record keys and token
//! values, then taken through an overwrite, a removal, a namespace key rotation and a
//! passphrase change, and closed. A copy of its directory is scanned byte by byte for every
//! distinctive string as plain UTF-8, UTF-16LE, UTF-16BE, lowercase and uppercase hex, and
//! standard and URL-safe base64 at all three alignments. A control plants one encoding of a
//! needle into a copy and checks the scanner finds it.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use tokenvault::backend::{Backend, SledBackend};
use tokenvault::secrecy::{SecretBox, SecretSlice, SecretString};
use tokenvault::{KdfParams, KeySource, Secret, Token, Vault, VaultOptions};

// ---------------------------------------------------------------------------------------
// The needles

const NS_TENANT: &str = "ns-CANARY-tenant-Quokka-4711";
const NS_USER: &str = "ns-CANARY-user-Wombat-0815@example.org";
const KEY_TRANSFER: &str = "key-CANARY-transfer.api.Numbat.example.org";
const KEY_AUTH: &str = "key-CANARY-auth.Bilby.example.org";
const KEY_SECRET: &str = "key-CANARY-client-secret-Dingo";
const KEY_REMOVED: &str = "key-CANARY-removed-Platypus";
const ACCESS_OLD: &str = "access-CANARY-old-Echidna-8c1f0e";
const ACCESS_NEW: &str = "access-CANARY-new-Kookaburra-27d9b4";
const ACCESS_USER: &str = "access-CANARY-user-Galah-f00dfeed";
const ACCESS_REMOVED: &str = "access-CANARY-removed-Emu-31337";
const REFRESH: &str = "refresh-CANARY-Possum-5e5e5e5e";
const ID_TOKEN: &str = "idtoken-CANARY-Cassowary-eyJhbGciOi";
const IDENTITY: &str = "identity-CANARY-Wallaby-user-42@idp.example.org";
const RESOURCE_SERVER: &str = "rs-CANARY-Koala.resource.example.org";
const SCOPE: &str = "scope-CANARY-Tasmanian:devil:all";
const SECRET_VALUE: &str = "secret-CANARY-Lyrebird-0xDEADBEEF";
const PASSPHRASE_OLD: &str = "passphrase-CANARY-old-Bandicoot";
const PASSPHRASE_NEW: &str = "passphrase-CANARY-new-Quoll";

/// The raw key of slot 0: binary, searched as bytes, hex and base64.
const RAW_KEY: [u8; 32] = *b"rawkey-CANARY-Dugong-0123456789!";

fn text_needles() -> Vec<(&'static str, &'static str)> {
    vec![
        ("namespace name", NS_TENANT),
        ("namespace name", NS_USER),
        ("record key", KEY_TRANSFER),
        ("record key", KEY_AUTH),
        ("record key", KEY_SECRET),
        ("removed record key", KEY_REMOVED),
        ("overwritten access token", ACCESS_OLD),
        ("access token", ACCESS_NEW),
        ("access token", ACCESS_USER),
        ("removed access token", ACCESS_REMOVED),
        ("refresh token", REFRESH),
        ("id_token in extra JSON", ID_TOKEN),
        ("identity", IDENTITY),
        ("resource server", RESOURCE_SERVER),
        ("scope", SCOPE),
        ("secret value", SECRET_VALUE),
        ("old passphrase", PASSPHRASE_OLD),
        ("new passphrase", PASSPHRASE_NEW),
    ]
}

// ---------------------------------------------------------------------------------------
// Encoders (written here, so that the test does not trust a library to find its own output)

const B64_STD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const B64_URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Base64 (RFC 4648) with the given alphabet, padded with `=` when `pad`.
fn base64(data: &[u8], alphabet: &[u8; 64], pad: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let sextets = [(n >> 18) & 63, (n >> 12) & 63, (n >> 6) & 63, n & 63];
        let chars = chunk.len() + 1;
        for (i, s) in sextets.iter().enumerate() {
            if i < chars {
                out.push(alphabet[usize::try_from(*s).unwrap()]);
            } else if pad {
                out.push(b'=');
            }
        }
    }
    out
}

/// The part of the base64 encoding of `data` that is the same wherever `data` sits inside a
/// longer byte string, when it starts `offset` (0, 1 or 2) bytes after a 3-byte boundary:
/// the characters whose six bits all come from `data`. Any base64 text (padded or not) that
/// encodes `data` at that alignment contains it, so searching for these three inner parts
/// covers every alignment, with and without padding.
fn base64_inner(data: &[u8], offset: usize, alphabet: &[u8; 64]) -> Vec<u8> {
    let mut framed = vec![0u8; offset];
    framed.extend_from_slice(data);
    let encoded = base64(&framed, alphabet, false);
    let start_bit = 8 * offset;
    let end_bit = 8 * (offset + data.len());
    let first = start_bit.div_ceil(6);
    let last = end_bit / 6; // exclusive: the last character wholly inside `data`
    encoded[first..last].to_vec()
}

fn hex(data: &[u8], upper: bool) -> Vec<u8> {
    let digits: &[u8; 16] = if upper {
        b"0123456789ABCDEF"
    } else {
        b"0123456789abcdef"
    };
    data.iter()
        .flat_map(|b| [digits[usize::from(b >> 4)], digits[usize::from(b & 15)]])
        .collect()
}

// UTF-16BE is big-endian by definition: the lint against `to_be_bytes` does not apply.
#[allow(clippy::big_endian_bytes)]
fn utf16(s: &str, little_endian: bool) -> Vec<u8> {
    s.encode_utf16()
        .flat_map(|u| {
            if little_endian {
                u.to_le_bytes()
            } else {
                u.to_be_bytes()
            }
        })
        .collect()
}

/// One searched byte pattern: what it encodes and how.
#[derive(Clone, Debug)]
struct Pattern {
    what: String,
    encoding: &'static str,
    bytes: Vec<u8>,
}

/// Every encoding of one needle.
fn patterns_for(what: &str, data: &[u8], text: Option<&str>) -> Vec<Pattern> {
    let mut out = Vec::new();
    let mut push = |encoding: &'static str, bytes: Vec<u8>| {
        out.push(Pattern {
            what: what.to_owned(),
            encoding,
            bytes,
        });
    };
    push("raw", data.to_vec());
    if let Some(text) = text {
        push("utf-16le", utf16(text, true));
        push("utf-16be", utf16(text, false));
    }
    push("hex", hex(data, false));
    push("HEX", hex(data, true));
    for (alphabet, names) in [
        (
            B64_STD,
            ["base64 offset 0", "base64 offset 1", "base64 offset 2"],
        ),
        (
            B64_URL,
            [
                "base64url offset 0",
                "base64url offset 1",
                "base64url offset 2",
            ],
        ),
    ] {
        for (offset, name) in names.into_iter().enumerate() {
            push(name, base64_inner(data, offset, alphabet));
        }
    }
    out
}

fn all_patterns() -> Vec<Pattern> {
    let mut out = Vec::new();
    for (what, text) in text_needles() {
        out.extend(patterns_for(
            &format!("{what} {text:?}"),
            text.as_bytes(),
            Some(text),
        ));
    }
    out.extend(patterns_for("raw key", &RAW_KEY, None));
    for p in &out {
        // Long enough that a chance match in a few hundred KiB of ciphertext is impossible.
        assert!(p.bytes.len() >= 20, "{p:?} is too short to search for");
    }
    out
}

// ---------------------------------------------------------------------------------------
// The scanner

#[derive(Debug, PartialEq, Eq)]
struct Hit {
    file: PathBuf,
    what: String,
    encoding: &'static str,
    offset: usize,
}

fn find_all(haystack: &[u8], needle: &[u8]) -> Vec<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return Vec::new();
    }
    let first = needle[0];
    (0..=haystack.len() - needle.len())
        .filter(|&i| haystack[i] == first && haystack[i..].starts_with(needle))
        .collect()
}

fn prefix(a: u8, b: u8) -> usize {
    (usize::from(a) << 8) | usize::from(b)
}

/// Every pattern, filed under its first two bytes, so that one pass over a file checks
/// them all (a pattern-by-pattern search is slow in an unoptimised test build).
struct Index<'a> {
    by_prefix: Vec<Vec<&'a Pattern>>,
}

impl<'a> Index<'a> {
    fn new(patterns: &'a [Pattern]) -> Self {
        let mut by_prefix: Vec<Vec<&Pattern>> = vec![Vec::new(); 1 << 16];
        for p in patterns {
            by_prefix[prefix(p.bytes[0], p.bytes[1])].push(p);
        }
        Self { by_prefix }
    }

    /// `(offset, pattern)` for every occurrence of every pattern in `haystack`.
    fn find(&self, haystack: &[u8]) -> Vec<(usize, &'a Pattern)> {
        let mut out = Vec::new();
        for (i, pair) in haystack.windows(2).enumerate() {
            for p in &self.by_prefix[prefix(pair[0], pair[1])] {
                if haystack[i..].starts_with(&p.bytes) {
                    out.push((i, *p));
                }
            }
        }
        out
    }
}

/// Every file under `dir`, recursively, with its path relative to `dir`.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            } else {
                out.push(entry.path());
            }
        }
    }
    out.sort();
    out
}

/// Scans every byte of every file under `dir` (and every file name) for every pattern.
fn scan(dir: &Path, patterns: &[Pattern]) -> (Vec<Hit>, usize, u64) {
    let index = Index::new(patterns);
    let mut hits = Vec::new();
    let files = files(dir);
    let mut bytes = 0u64;
    for file in &files {
        let rel = file.strip_prefix(dir).unwrap().to_path_buf();
        let data = fs::read(file).unwrap();
        bytes += u64::try_from(data.len()).unwrap();
        let name = rel.to_string_lossy().into_owned().into_bytes();
        for haystack in [&data, &name] {
            for (offset, p) in index.find(haystack) {
                hits.push(Hit {
                    file: rel.clone(),
                    what: p.what.clone(),
                    encoding: p.encoding,
                    offset,
                });
            }
        }
    }
    (hits, files.len(), bytes)
}

// ---------------------------------------------------------------------------------------
// The vault

fn raw_key() -> KeySource {
    KeySource::raw_key(SecretBox::new(Box::new(RAW_KEY)))
}

fn passphrase(p: &str) -> KeySource {
    KeySource::passphrase(SecretString::from(p))
}

/// Writes the vault, closes it, and returns a copy of its directory (and the temp dir
/// holding both).
fn written_vault() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("vault");
    let options = VaultOptions::new().kdf(KdfParams::insecure_for_tests());
    let vault = options.create(&dir, &raw_key()).unwrap();
    vault.add_keyslot(&passphrase(PASSPHRASE_OLD)).unwrap();

    let tenant = vault.namespace(NS_TENANT).unwrap();
    let extra = format!(r#"{{"id_token":"{ID_TOKEN}","token_type":"Bearer"}}"#);
    let full = |access: &str| {
        Token::new(access.to_owned().into())
            .with_refresh_token(REFRESH.into())
            .with_token_type("Bearer")
            .with_expires_at(UNIX_EPOCH + Duration::from_secs(1_900_000_000))
            .with_scopes(["openid", SCOPE])
            .with_identity(IDENTITY)
            .with_resource_server(RESOURCE_SERVER)
            .with_extra_json(extra.clone().into())
    };
    // Written, then overwritten: the old value must not linger in plaintext either.
    tenant.put(KEY_TRANSFER, &full(ACCESS_OLD)).unwrap();
    tenant.put(KEY_TRANSFER, &full(ACCESS_NEW)).unwrap();
    tenant
        .put(
            KEY_AUTH,
            &Token::new(ACCESS_NEW.into()).with_identity(IDENTITY),
        )
        .unwrap();
    tenant
        .put(KEY_SECRET, &Secret::from_text(SECRET_VALUE.into()))
        .unwrap();
    tenant
        .put(KEY_REMOVED, &Token::new(ACCESS_REMOVED.into()))
        .unwrap();
    assert!(tenant.remove(KEY_REMOVED).unwrap());

    let user = vault.namespace(NS_USER).unwrap();
    user.put(KEY_TRANSFER, &full(ACCESS_USER)).unwrap();
    user.put(
        KEY_SECRET,
        &Secret::from_bytes(SecretSlice::from(SECRET_VALUE.as_bytes().to_vec())),
    )
    .unwrap();

    // Maintenance that rewrites the header and re-seals records.
    vault.rotate_namespace_key(NS_TENANT, |_| {}).unwrap();
    vault
        .change_passphrase(&passphrase(PASSPHRASE_OLD), &passphrase(PASSPHRASE_NEW))
        .unwrap();
    assert!(vault.verify(|_| {}).unwrap().is_clean());
    vault.close().unwrap();

    // The vault still holds everything (so the scan below looks at a vault that does).
    let vault = Vault::open(&dir, &passphrase(PASSPHRASE_NEW)).unwrap();
    let token: Token = vault
        .namespace(NS_TENANT)
        .unwrap()
        .get(KEY_TRANSFER)
        .unwrap()
        .unwrap();
    assert!(token.same_as(&full(ACCESS_NEW)));
    assert_eq!(vault.namespaces().unwrap(), [NS_TENANT, NS_USER]);
    vault.close().unwrap();

    // What the attacker has: a copy.
    let copy = tmp.path().join("stolen");
    support::copy_dir(&dir, &copy);
    (tmp, copy)
}

// ---------------------------------------------------------------------------------------
// The tests

#[test]
fn encoders_match_known_answers() {
    // RFC 4648 section 10.
    for (input, padded, unpadded) in [
        ("", "", ""),
        ("f", "Zg==", "Zg"),
        ("fo", "Zm8=", "Zm8"),
        ("foo", "Zm9v", "Zm9v"),
        ("foob", "Zm9vYg==", "Zm9vYg"),
        ("fooba", "Zm9vYmE=", "Zm9vYmE"),
        ("foobar", "Zm9vYmFy", "Zm9vYmFy"),
    ] {
        assert_eq!(base64(input.as_bytes(), B64_STD, true), padded.as_bytes());
        assert_eq!(
            base64(input.as_bytes(), B64_STD, false),
            unpadded.as_bytes()
        );
    }
    // The two alphabets differ in 62 and 63 only.
    assert_eq!(base64(&[0xfb, 0xff, 0xbf], B64_STD, true), b"+/+/");
    assert_eq!(base64(&[0xfb, 0xff, 0xbf], B64_URL, true), b"-_-_");
    assert_eq!(hex(&[0x01, 0xab, 0xff], false), b"01abff");
    assert_eq!(hex(&[0x01, 0xab, 0xff], true), b"01ABFF");
    assert_eq!(utf16("aé☃", true), [0x61, 0, 0xe9, 0, 0x03, 0x26]);
    assert_eq!(utf16("aé☃", false), [0, 0x61, 0, 0xe9, 0x26, 0x03]);
    // The inner part is found inside any longer encoding, at every alignment.
    let needle = b"the-needle-in-the-haystack";
    for prefix in 0..7 {
        for suffix in 0..4 {
            let mut framed = vec![b'x'; prefix];
            framed.extend_from_slice(needle);
            framed.extend(std::iter::repeat_n(b'y', suffix));
            for alphabet in [B64_STD, B64_URL] {
                for pad in [true, false] {
                    let text = base64(&framed, alphabet, pad);
                    let inner = base64_inner(needle, prefix % 3, alphabet);
                    assert!(
                        !find_all(&text, &inner).is_empty(),
                        "prefix {prefix}, suffix {suffix}"
                    );
                }
            }
        }
    }
}

#[test]
fn a_copied_vault_directory_reveals_nothing() {
    let (tmp, copy) = written_vault();
    let patterns = all_patterns();
    let (hits, files, bytes) = scan(&copy, &patterns);
    // Something was scanned: the header and sled's files.
    assert!(files >= 3, "only {files} files");
    assert!(copy.join("tokenvault.header").is_file());
    assert!(bytes > 1000, "only {bytes} bytes");
    assert!(
        hits.is_empty(),
        "{} hits in {files} files ({bytes} bytes):\n{hits:#?}",
        hits.len()
    );
    eprintln!(
        "scanned {files} files, {bytes} bytes, for {} patterns: no hits",
        patterns.len()
    );
    for f in self::files(&copy) {
        eprintln!(
            "  {} {}",
            fs::metadata(&f).unwrap().len(),
            f.strip_prefix(&copy).unwrap().display()
        );
    }

    // The scanned files are where the records are: every stored record (ciphertext, as the
    // backend returns it) appears verbatim in them, so sled neither compresses nor scatters
    // what it stores, and a plaintext stored the same way would have been found.
    let everything: Vec<u8> = self::files(&copy)
        .iter()
        .flat_map(|f| fs::read(f).unwrap())
        .collect();
    let backend = SledBackend::open(tmp.path().join("vault")).unwrap();
    let mut records = 0;
    for tree in backend.trees().unwrap() {
        for (_, value) in backend.scan(&tree, &[], None, 1000).unwrap() {
            assert!(!find_all(&everything, &value).is_empty());
            records += 1;
        }
    }
    backend.close().unwrap();
    assert_eq!(
        records,
        5 + 2 + 2 + 2,
        "five records, two manifests, two namespace entries, the entry-key marker and the anchor"
    );
}

/// The control: the same scan finds a needle planted in a copy, in each encoding,
/// wherever it sits in a file and inside longer encoded text.
#[test]
fn the_scan_finds_a_planted_needle() {
    let (tmp, copy) = written_vault();
    let patterns = all_patterns();
    let planted_text = ACCESS_NEW;
    let planted: Vec<(&str, Vec<u8>)> = vec![
        ("raw", planted_text.as_bytes().to_vec()),
        ("utf-16le", utf16(planted_text, true)),
        ("utf-16be", utf16(planted_text, false)),
        ("hex", hex(planted_text.as_bytes(), false)),
        ("HEX", hex(planted_text.as_bytes(), true)),
        // Inside a longer base64 text (a JSON document of tokens, say), at each alignment.
        (
            "base64 offset 0",
            base64(format!("{planted_text}...").as_bytes(), B64_STD, true),
        ),
        (
            "base64 offset 1",
            base64(format!("{{{planted_text}}}").as_bytes(), B64_STD, true),
        ),
        (
            "base64url offset 2",
            base64(format!("at{planted_text}").as_bytes(), B64_URL, false),
        ),
    ];
    for (i, (encoding, bytes)) in planted.iter().enumerate() {
        let victim = tmp.path().join(format!("planted-{i}"));
        support::copy_dir(&copy, &victim);
        // Into sled's data file, in the middle, as an attacker would find a leaked value.
        let db = victim.join("data").join("db");
        let mut data = fs::read(&db).unwrap();
        let at = data.len() / 2 + i;
        data.splice(at..at, bytes.iter().copied());
        fs::write(&db, data).unwrap();
        let (hits, _, _) = scan(&victim, &patterns);
        assert!(
            hits.iter().any(|h| h.encoding == *encoding
                && h.what.contains(planted_text)
                && h.file == Path::new("data").join("db")),
            "planted {encoding} not found; hits: {hits:#?}"
        );
        // Only what was planted is reported.
        assert!(
            hits.iter().all(|h| h.what.contains(planted_text)),
            "{hits:#?}"
        );
    }
    // A whole new file holding the raw key's hex is found too.
    let victim = tmp.path().join("planted-file");
    support::copy_dir(&copy, &victim);
    fs::write(victim.join("notes.txt"), hex(&RAW_KEY, true)).unwrap();
    let (hits, _, _) = scan(&victim, &patterns);
    assert_eq!(
        hits,
        [Hit {
            file: PathBuf::from("notes.txt"),
            what: "raw key".into(),
            encoding: "HEX",
            offset: 0,
        }]
    );
}
