//! Globus SDK token files: `JSONTokenStorage` (format 2.0), the legacy `SimpleJSONFileAdapter`
//! (format 1.0), and the `TokenStorageData` records that the SQLite storages hold as well.

use std::io;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::{Map, Value};

use super::error::{invalid_record, shown, shown_version, ImportErrorKind};
use super::records::{json, Parsed};
use crate::response::{secret_json, take_secret, wipe};
use crate::token::Token;

/// Reads a Globus JSON token file. Every string of the parsed JSON is wiped before returning.
pub(super) fn parse_file(bytes: &[u8], legacy_namespace: &str) -> Result<Parsed, ImportErrorKind> {
    let mut value = json(bytes)?;
    let result = from_value(&mut value, legacy_namespace);
    wipe(&mut value);
    result
}

/// The token of one `TokenStorageData` record filed under `namespace` and `key` (its
/// resource server). Takes the secret strings out of `record`, wiping them there; the caller
/// wipes the rest.
pub(super) fn record_token(
    namespace: &str,
    key: &str,
    record: &mut Value,
) -> Result<Token, ImportErrorKind> {
    let invalid = |reason: &str| -> ImportErrorKind { invalid_record(namespace, key, reason) };
    let Value::Object(map) = record else {
        return Err(invalid("the record is not a JSON object"));
    };
    match map.get("resource_server") {
        Some(Value::String(rs)) if rs == key => {}
        Some(Value::String(rs)) if rs.is_empty() => {
            return Err(invalid("resource_server is empty"))
        }
        Some(Value::String(_)) => {
            return Err(invalid(
                "resource_server differs from the resource server the record is filed under",
            ))
        }
        None | Some(Value::Null) => return Err(invalid("resource_server is missing")),
        Some(_) => return Err(invalid("resource_server is not a string")),
    }
    let scopes: Vec<String> = match map.get("scope") {
        Some(Value::String(s)) => s
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        None | Some(Value::Null) => return Err(invalid("scope is missing")),
        Some(_) => return Err(invalid("scope is not a string")),
    };
    let expires_at = match map.get("expires_at_seconds") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => match n.as_i64() {
            Some(secs) if (0..=MAX_EXPIRES_AT).contains(&secs) => Some(secs.unsigned_abs()),
            _ => return Err(invalid(EXPIRES_AT_RANGE)),
        },
        Some(_) => return Err(invalid(EXPIRES_AT_RANGE)),
    };
    let token_type = optional_text(map, "token_type").map_err(|r| invalid(&r))?;
    let identity = optional_text(map, "identity_id").map_err(|r| invalid(&r))?;

    // Everything else checked: take the secrets.
    let access = match map.get_mut("access_token") {
        Some(Value::String(s)) if !s.is_empty() => take_secret(s),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            return Err(invalid("access_token is missing or empty"))
        }
        Some(_) => return Err(invalid("access_token is not a string")),
    };
    let refresh = match map.get_mut("refresh_token") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(take_secret(s)),
        Some(_) => return Err(invalid("refresh_token is not a string")),
    };
    let mut token = Token::new(access)
        .with_token_type(token_type.as_deref().unwrap_or(DEFAULT_TOKEN_TYPE))
        .with_scopes(scopes)
        .with_resource_server(key);
    if let Some(refresh) = refresh {
        token = token.with_refresh_token(refresh);
    }
    if let Some(secs) = expires_at {
        token = token.with_expires_at(UNIX_EPOCH + Duration::from_secs(secs));
    }
    if let Some(identity) = identity {
        token = token.with_identity(identity);
    }

    // Fields Globus does not know are kept, as Globus keeps them in `extra`.
    let names: Vec<String> = map
        .keys()
        .filter(|k| !KNOWN.contains(&k.as_str()))
        .cloned()
        .collect();
    if !names.is_empty() {
        let mut extra = Map::new();
        for name in names {
            if let Some(v) = map.remove(&name) {
                extra.insert(name, v);
            }
        }
        let secret = secret_json(&extra, encoded_len(&extra));
        extra.values_mut().for_each(wipe);
        token = token
            .with_extra_json(secret.map_err(|_| invalid("the extra fields cannot be re-encoded"))?);
    }
    Ok(token)
}

fn from_value(value: &mut Value, legacy_namespace: &str) -> Result<Parsed, ImportErrorKind> {
    let Value::Object(root) = value else {
        return Err(malformed("the file is not a JSON object"));
    };
    let version = match root.get("format_version") {
        Some(Value::String(v)) => v.clone(),
        None | Some(Value::Null) => return Err(malformed("format_version is missing")),
        Some(_) => return Err(malformed("format_version is not a string")),
    };
    let mut parsed = Parsed::default();
    match version.as_str() {
        "2.0" => {
            for (namespace, records) in object_field(root, "data")? {
                let Value::Object(records) = records else {
                    return Err(malformed(&format!(
                        "namespace {:?} is not a JSON object",
                        shown(namespace)
                    )));
                };
                collect(namespace, records, &mut parsed)?;
            }
        }
        "1.0" => collect(legacy_namespace, object_field(root, "by_rs")?, &mut parsed)?,
        other => {
            return Err(ImportErrorKind::UnsupportedVersion {
                found: shown_version(other),
            })
        }
    }
    Ok(parsed)
}

fn collect(
    namespace: &str,
    records: &mut Map<String, Value>,
    parsed: &mut Parsed,
) -> Result<(), ImportErrorKind> {
    for (key, record) in records.iter_mut() {
        let token = record_token(namespace, key, record)?;
        parsed.push(namespace, key, token)?;
    }
    Ok(())
}

fn object_field<'a>(
    root: &'a mut Map<String, Value>,
    field: &str,
) -> Result<&'a mut Map<String, Value>, ImportErrorKind> {
    match root.get_mut(field) {
        Some(Value::Object(map)) => Ok(map),
        None | Some(Value::Null) => Err(malformed(&format!("{field} is missing"))),
        Some(_) => Err(malformed(&format!("{field} is not a JSON object"))),
    }
}

/// A string field that may be missing, `null` or empty (all: `None`).
fn optional_text(map: &Map<String, Value>, field: &str) -> Result<Option<String>, String> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("{field} is not a string")),
    }
}

fn malformed(reason: &str) -> ImportErrorKind {
    ImportErrorKind::Malformed {
        reason: reason.to_owned(),
    }
}

/// The length of `map` encoded as JSON, so that [`secret_json`] can size its buffer once.
fn encoded_len(map: &Map<String, Value>) -> usize {
    let mut counter = Counter(0);
    match serde_json::to_writer(&mut counter, map) {
        Ok(()) => counter.0,
        Err(_) => 0,
    }
}

/// A writer that only counts.
struct Counter(usize);

impl io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 = self.0.saturating_add(buf.len());
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The fields of Globus's `TokenStorageData`; any other is kept in the token's extra JSON.
const KNOWN: [&str; 7] = [
    "resource_server",
    "identity_id",
    "scope",
    "access_token",
    "refresh_token",
    "expires_at_seconds",
    "token_type",
];
/// The token type of a record that names none: what Globus issues.
const DEFAULT_TOKEN_TYPE: &str = "Bearer";
/// The last second of the year 9999.
const MAX_EXPIRES_AT: i64 = 253_402_300_799;
const EXPIRES_AT_RANGE: &str =
    "expires_at_seconds is not a whole number of seconds between 1970 and 9999";

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn record(json: &str) -> Result<Token, ImportErrorKind> {
        let mut v: Value = serde_json::from_str(json).unwrap();
        record_token("ns", "rs", &mut v)
    }

    #[test]
    fn extra_fields_are_kept_exactly() {
        let t = record(
            r#"{"resource_server":"rs","access_token":"a","scope":"x  y","z":[1,{"q":"s"}],"extra":{}}"#,
        )
        .unwrap();
        assert_eq!(t.scopes(), ["x", "y"]);
        assert_eq!(t.token_type(), "Bearer");
        assert_eq!(
            t.extra_json().unwrap().expose_secret(),
            r#"{"extra":{},"z":[1,{"q":"s"}]}"#
        );
    }

    #[test]
    fn field_errors_name_the_field() {
        for (json, field) in [
            (
                r#"{"resource_server":"other","access_token":"a","scope":""}"#,
                "resource_server",
            ),
            (
                r#"{"resource_server":"rs","access_token":7,"scope":""}"#,
                "access_token",
            ),
            (r#"{"resource_server":"rs","access_token":"a"}"#, "scope"),
            (
                r#"{"resource_server":"rs","access_token":"a","scope":"","expires_at_seconds":-1}"#,
                "expires_at_seconds",
            ),
            (
                r#"{"resource_server":"rs","access_token":"a","scope":"","expires_at_seconds":1.5}"#,
                "expires_at_seconds",
            ),
            (
                r#"{"resource_server":"rs","access_token":"a","scope":"","identity_id":[]}"#,
                "identity_id",
            ),
        ] {
            let e = record(json).unwrap_err().to_string();
            assert!(e.contains(field), "{e}");
        }
    }
}
