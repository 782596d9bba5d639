//! The `import` fuzz target's hook: token files to import, as bytes.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use secrecy::ExposeSecret;
use serde_json::Value;
use zeroize::{Zeroize, Zeroizing};

use super::FUZZ_KEY;
use crate::backend::MemoryBackend;
use crate::format::MAX_NAME_LEN;
use crate::import::{detect_bytes, Item};
use crate::import::{Import, ImportErrorKind, ImportFormat, MAX_IMPORT_RECORDS};
use crate::namespace::is_reserved;
use crate::response::wipe;
use crate::{Error, KeySource, Token, Vault};

/// Parses arbitrary bytes as the contents of each JSON token file an import reads (Globus
/// JSON, formats 2.0 and 1.0; a Sharetribe file store), checked as [`Import::run`] checks a
/// file before writing, and sniffs their format as [`ImportFormat::detect`] does.
///
/// Whatever the input: no panic; an error is one that reading a file's contents can give,
/// and neither its `Display` nor its `Debug` quotes an `access_token` or `refresh_token`
/// value of the input (16 bytes or longer); records that parse have non-empty names of at
/// most [`MAX_NAME_LEN`] bytes, no reserved key, an access token and a token type (Globus:
/// a resource server equal to the key), and each round-trips through a vault; a file that
/// parses as Globus JSON is detected as Globus JSON.
///
/// # Errors
/// A description of a violated invariant.
pub fn fuzz_import(data: &[u8]) -> Result<(), String> {
    let secrets = InputSecrets::of(data);
    let globus = check_parsed("Globus JSON", data, &secrets, globus_records)?;
    if let Some(items) = &globus {
        for item in items {
            if item.token.resource_server() != Some(item.key.as_str()) {
                return Err("Globus JSON: a token's resource server differs from its key".into());
            }
        }
    }
    let sharetribe = check_parsed("Sharetribe", data, &secrets, sharetribe_records)?;
    if let Some(items) = &sharetribe {
        let [item] = items.as_slice() else {
            return Err(format!("Sharetribe: {} records, not one", items.len()));
        };
        if (item.namespace.as_str(), item.key.as_str()) != SHARETRIBE_NAMES {
            return Err("Sharetribe: the record is not filed under the names given".into());
        }
        if item
            .token
            .expires_at()
            .is_some_and(|at| at < fuzz_modified())
        {
            return Err("Sharetribe: the token expires before the file was written".into());
        }
    }
    let detected = match detect_bytes(data) {
        Ok(format) => Some(format),
        Err(kind) => {
            check_import_error("detect", &kind, &DETECT_ERRORS, &secrets, |d| {
                detect_bytes(d).err()
            })?;
            None
        }
    };
    if (detected == Some(ImportFormat::GlobusSqlite)) != data.starts_with(b"SQLite format 3\0") {
        return Err(format!(
            "detect: {detected:?} for input that is or is not SQLite's"
        ));
    }
    if globus.is_some() && detected != Some(ImportFormat::GlobusJson) {
        return Err(format!(
            "detect: {detected:?} for a file that imports as Globus JSON"
        ));
    }
    if sharetribe.is_some()
        && secrets.root_is_object
        && !matches!(
            detected,
            Some(ImportFormat::SharetribeFile | ImportFormat::GlobusJson)
        )
    {
        return Err(format!(
            "detect: {detected:?} for a file that imports as Sharetribe's"
        ));
    }
    Ok(())
}

/// The records `run` would store from a Globus JSON file holding `data`.
fn globus_records(data: &[u8]) -> Result<Vec<Item>, ImportErrorKind> {
    Import::globus_json("fuzz.json")
        .parse_bytes(data, fuzz_modified())
        .map(|p| p.items)
}

/// The records `run` would store from a Sharetribe file store holding `data`.
fn sharetribe_records(data: &[u8]) -> Result<Vec<Item>, ImportErrorKind> {
    let (namespace, key) = SHARETRIBE_NAMES;
    Import::sharetribe_file("fuzz.json", namespace, key)
        .parse_bytes(data, fuzz_modified())
        .map(|p| p.items)
}

/// Checks one reader's outcome; returns its records when it read any.
fn check_parsed(
    what: &str,
    data: &[u8],
    secrets: &InputSecrets,
    read: fn(&[u8]) -> Result<Vec<Item>, ImportErrorKind>,
) -> Result<Option<Vec<Item>>, String> {
    match read(data) {
        Ok(items) => {
            check_records(what, &items)?;
            Ok(Some(items))
        }
        Err(kind) => {
            check_import_error(what, &kind, &PARSE_ERRORS, secrets, |d| read(d).err())?;
            Ok(None)
        }
    }
}

/// Records as `run` would write them: sorted, unique, valid names, and each one reads back
/// from a vault as it was put.
fn check_records(what: &str, items: &[Item]) -> Result<(), String> {
    if items.len() > MAX_IMPORT_RECORDS {
        return Err(format!("{what}: {} records", items.len()));
    }
    let in_order = items
        .windows(2)
        .all(|w| matches!(w, [a, b] if (&a.namespace, &a.key) < (&b.namespace, &b.key)));
    if !in_order {
        return Err(format!("{what}: records not sorted, or one twice"));
    }
    let vault = Vault::create_with_backend(
        MemoryBackend::new(),
        &KeySource::raw_key(secrecy::SecretBox::new(Box::new(FUZZ_KEY))),
    )
    .map_err(|e| format!("cannot create a vault: {e}"))?;
    for item in items {
        for name in [&item.namespace, &item.key] {
            if name.is_empty() || name.len() > MAX_NAME_LEN {
                return Err(format!("{what}: a name of {} bytes", name.len()));
            }
        }
        if is_reserved(&item.key) {
            return Err(format!("{what}: a reserved record key"));
        }
        let token = &item.token;
        if token.access_token().expose_secret().is_empty() || token.token_type().is_empty() {
            return Err(format!(
                "{what}: a token without access token or token type"
            ));
        }
        let ns = vault
            .namespace(&item.namespace)
            .map_err(|e| format!("{what}: the vault refuses the namespace: {e}"))?;
        match ns.put(&item.key, token) {
            Ok(_) => {}
            Err(Error::TooLarge { .. }) => continue,
            Err(e) => return Err(format!("{what}: storing a record failed: {e}")),
        }
        match ns.get::<Token>(&item.key) {
            Ok(Some(back)) if back.same_as(token) => {}
            Ok(Some(_)) => return Err(format!("{what}: a stored record came back different")),
            Ok(None) => return Err(format!("{what}: a stored record is missing")),
            Err(e) => return Err(format!("{what}: a stored record is unreadable: {e}")),
        }
    }
    Ok(())
}

/// An error must be of a kind the reader can give, of bounded length, and quote no secret
/// of the input. A secret found in the message may be there for another reason (a key or a
/// namespace with the same text); it is a leak only if the message of the same input with
/// every secret changed no longer holds it. `again` gives that message.
fn check_import_error(
    what: &str,
    kind: &ImportErrorKind,
    allowed: &[&str],
    secrets: &InputSecrets,
    again: impl Fn(&[u8]) -> Option<ImportErrorKind>,
) -> Result<(), String> {
    let debug = format!("{kind:?}");
    let name = debug.split([' ', '{']).next().unwrap_or_default();
    if !allowed.contains(&name) {
        return Err(format!("{what}: unexpected error {debug}"));
    }
    let shown = kind.to_string();
    if shown.len() > MAX_SHOWN_LEN {
        return Err(format!("{what}: an error message of {} bytes", shown.len()));
    }
    let quoted: Vec<&str> = secrets
        .values
        .iter()
        .map(|s| s.as_str())
        .filter(|s| shown.contains(s) || debug.contains(s))
        .collect();
    if quoted.is_empty() {
        return Ok(());
    }
    let variant = secrets
        .variant
        .as_deref()
        .and_then(|v| again(v))
        .map(|k| format!("{k} {k:?}"))
        .unwrap_or_default();
    if quoted.iter().any(|s| !variant.contains(s)) {
        return Err(format!(
            "{what}: an error quotes a token of the input: {shown}"
        ));
    }
    Ok(())
}

/// The access and refresh token values of an input that parses as JSON (16 bytes or
/// longer), and the same input with each of them changed at every character.
struct InputSecrets {
    values: Vec<Zeroizing<String>>,
    variant: Option<Zeroizing<Vec<u8>>>,
    root_is_object: bool,
}

impl InputSecrets {
    fn of(data: &[u8]) -> Self {
        let Ok(mut value) = serde_json::from_slice::<Value>(data) else {
            return Self {
                values: Vec::new(),
                variant: None,
                root_is_object: false,
            };
        };
        let mut values = Vec::new();
        let mut variant = value.clone();
        collect_secrets(&value, &mut values);
        change_secrets(&mut variant);
        let bytes = serde_json::to_vec(&variant).ok().map(Zeroizing::new);
        let root_is_object = value.is_object();
        wipe(&mut value);
        wipe(&mut variant);
        Self {
            values,
            variant: bytes,
            root_is_object,
        }
    }
}

fn collect_secrets(value: &Value, out: &mut Vec<Zeroizing<String>>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match v {
                    Value::String(s) if SECRET_FIELDS.contains(&k.as_str()) => {
                        if s.len() >= 16 {
                            out.push(Zeroizing::new(s.clone()));
                        }
                    }
                    _ => collect_secrets(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_secrets(v, out)),
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {}
    }
}

/// Replaces every character of every secret value with another of the same UTF-8 length,
/// so that sizes, and so every size limit, stay the same.
fn change_secrets(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                match v {
                    Value::String(s) if SECRET_FIELDS.contains(&k.as_str()) => {
                        let changed: String = s
                            .chars()
                            .map(|c| {
                                let (a, b) = match c.len_utf8() {
                                    1 => ('x', 'y'),
                                    2 => ('\u{e9}', '\u{e8}'),
                                    3 => ('\u{20ac}', '\u{20a4}'),
                                    _ => ('\u{1f600}', '\u{1f601}'),
                                };
                                if c == a {
                                    b
                                } else {
                                    a
                                }
                            })
                            .collect();
                        s.zeroize();
                        *s = changed;
                    }
                    _ => change_secrets(v),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(change_secrets),
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {}
    }
}

fn fuzz_modified() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

/// The namespace and key the Sharetribe reader files its token under.
const SHARETRIBE_NAMES: (&str, &str) = ("marketplace", "integration");
/// Fields whose values are secrets.
const SECRET_FIELDS: [&str; 2] = ["access_token", "refresh_token"];
/// The error kinds reading a file's contents can give.
const PARSE_ERRORS: [&str; 6] = [
    "Malformed",
    "UnsupportedVersion",
    "TooLarge",
    "TooManyRecords",
    "InvalidRecord",
    "RecordTooLarge",
];
/// The error kinds sniffing a file's contents can give.
const DETECT_ERRORS: [&str; 3] = ["UnrecognizedFormat", "Malformed", "TooLarge"];
/// Longest error message: two names cut to 128 characters (4 bytes each, at most) and a
/// reason.
const MAX_SHOWN_LEN: usize = 2048;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_hook_accepts_real_files_and_flags_a_quoted_token() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/peer-token-files/");
        for name in [
            "globus-v2.json",
            "globus-legacy-v1.json",
            "sharetribe-file-store-token.json",
        ] {
            let data = std::fs::read(format!("{dir}{name}")).unwrap();
            fuzz_import(&data).unwrap();
            assert!(globus_records(&data).is_ok() != sharetribe_records(&data).is_ok());
        }
        let data = br#"{"access_token": "AT-0123456789abcdef", "data": 1}"#;
        let secrets = InputSecrets::of(data);
        assert_eq!(secrets.values.len(), 1);
        // The message follows the token: a leak.
        let quoting = |d: &[u8]| {
            let v: Value = serde_json::from_slice(d).unwrap();
            Some(ImportErrorKind::Malformed {
                reason: format!("bad {}", v["access_token"].as_str().unwrap()),
            })
        };
        let e = quoting(data).unwrap();
        let leak = check_import_error("t", &e, &PARSE_ERRORS, &secrets, quoting);
        assert!(leak.unwrap_err().contains("quotes a token"));
        // The same text for another reason (a name equal to the token): no leak.
        let fixed = |_: &[u8]| {
            Some(ImportErrorKind::Malformed {
                reason: "bad AT-0123456789abcdef".into(),
            })
        };
        check_import_error("t", &e, &PARSE_ERRORS, &secrets, fixed).unwrap();
        // An error kind reading bytes cannot give.
        let io = ImportErrorKind::Io {
            message: "x".into(),
        };
        assert!(check_import_error("t", &io, &PARSE_ERRORS, &secrets, fixed).is_err());
    }
}
