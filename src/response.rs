//! Tokens from OAuth 2.0 token responses (RFC 6749 section 5.1), Globus multi-resource-server
//! responses among them, and the merge rules of a refresh.

use std::time::{Duration, SystemTime};

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};
use zeroize::{Zeroize, Zeroizing};

use crate::token::Token;
use crate::token_error::TokenError;

/// Largest token response read, in bytes.
pub const MAX_RESPONSE_LEN: usize = 1024 * 1024;
/// Largest `expires_in` accepted: 100 years, in seconds.
const MAX_EXPIRES_IN: u64 = 100 * 365 * 24 * 3600;
/// Most tokens in one response (the top-level one plus `other_tokens`).
const MAX_TOKENS: usize = 1024;

/// The fields of a token response that become [`Token`] fields; everything else is kept in
/// [`Token::extra_json`].
const KNOWN: [&str; 6] = [
    "access_token",
    "refresh_token",
    "token_type",
    "expires_in",
    "scope",
    "resource_server",
];

/// A parsed token response: one [`Token`] per resource server.
///
/// A plain RFC 6749 response gives one token. A Globus response carries tokens for several
/// resource servers (the top-level one and those in `other_tokens`), and a Globus
/// dependent-token response is a JSON array of them: each becomes its own token, with its
/// resource server set.
///
/// The absolute expiry is `requested_at + expires_in`, where `requested_at` is when the request
/// was *sent* (take it from your [`Clock`](crate::oauth::Clock) before sending): counting from the
/// arrival of the answer would stretch the token's life by the round trip. A response
/// without `expires_in` gives a token with no known expiry.
///
/// Fields the response carries beyond the standard ones (an `id_token`, `state`,
/// provider-specific fields) are kept as JSON in [`Token::extra_json`], which is a secret:
/// an `id_token` is a bearer credential too.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use tokenvault::oauth::TokenResponse;
/// use tokenvault::secrecy::ExposeSecret;
///
/// let sent = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
/// let body = br#"{"access_token":"at-1","token_type":"Bearer","expires_in":3600,
///                 "refresh_token":"rt-1","scope":"openid email","id_token":"eyJ..."}"#;
/// let response = TokenResponse::from_json(body, sent)?;
/// let token = &response.tokens()[0];
/// assert_eq!(token.access_token().expose_secret(), "at-1");
/// assert_eq!(token.expires_at(), Some(sent + Duration::from_secs(3600)));
/// assert_eq!(token.scopes(), ["openid", "email"]);
/// assert!(token.extra_json().unwrap().expose_secret().contains("id_token"));
/// assert!(!format!("{response:?}").contains("eyJ"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct TokenResponse {
    tokens: Vec<Token>,
}

impl TokenResponse {
    /// Parses a token response received for a request sent at `requested_at`.
    ///
    /// # Errors
    /// [`TokenError::InvalidResponse`](crate::oauth::TokenError::InvalidResponse) if the body is not a token response: not JSON, larger than
    /// [`MAX_RESPONSE_LEN`], an OAuth error response (`{"error": "invalid_grant", ...}`: the
    /// reason names the error code), a missing or empty `access_token` or `token_type`, or a
    /// field of the wrong type. The reason never contains a field's value.
    pub fn from_json(json: &[u8], requested_at: SystemTime) -> Result<Self, TokenError> {
        if json.len() > MAX_RESPONSE_LEN {
            return Err(TokenError::invalid_response(format!(
                "the response is larger than {MAX_RESPONSE_LEN} bytes"
            )));
        }
        let mut value = parse_json(json)?;
        let result = Self::from_value(&mut value, requested_at, json.len());
        wipe(&mut value);
        result
    }

    fn from_value(
        value: &mut Value,
        requested_at: SystemTime,
        budget: usize,
    ) -> Result<Self, TokenError> {
        let mut tokens = Vec::new();
        match value {
            Value::Array(items) => {
                if items.is_empty() {
                    return Err(TokenError::invalid_response(
                        "the response is an empty array",
                    ));
                }
                for item in items.iter_mut() {
                    let Value::Object(map) = item else {
                        return Err(TokenError::invalid_response(
                            "an element of the response array is not an object",
                        ));
                    };
                    collect(map, requested_at, budget, true, &mut tokens)?;
                }
            }
            Value::Object(map) => collect(map, requested_at, budget, true, &mut tokens)?,
            _ => {
                return Err(TokenError::invalid_response(
                    "the response is not a JSON object",
                ))
            }
        }
        Ok(Self { tokens })
    }

    /// A response made of tokens built by hand (for tests, or for tokens obtained some other
    /// way than a JSON token response).
    pub fn from_tokens(tokens: Vec<Token>) -> Self {
        Self { tokens }
    }

    /// Sets the identity on every token that has none: the subject of an ID token you have
    /// validated, or the user id your login flow established. tokenvault does not read
    /// identities out of ID tokens, because it cannot verify them.
    #[must_use]
    pub fn with_identity(mut self, identity: &str) -> Self {
        self.tokens = self
            .tokens
            .into_iter()
            .map(|t| {
                if t.identity().is_none() {
                    t.with_identity(identity)
                } else {
                    t
                }
            })
            .collect();
        self
    }

    /// The tokens, in the order of the response (the top-level token first).
    pub fn tokens(&self) -> &[Token] {
        &self.tokens
    }

    /// The tokens, by value.
    pub fn into_tokens(self) -> Vec<Token> {
        self.tokens
    }

    /// The token for `resource_server`, if the response has one.
    pub fn get(&self, resource_server: &str) -> Option<&Token> {
        self.tokens
            .iter()
            .find(|t| t.resource_server() == Some(resource_server))
    }

    /// How many tokens the response holds.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether the response holds no token (only a response built with
    /// [`from_tokens`](Self::from_tokens) can be empty).
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}

/// Parses JSON, mapping serde_json's errors (which may quote input) to a position-only reason.
pub(crate) fn parse_json(json: &[u8]) -> Result<Value, TokenError> {
    serde_json::from_slice(json).map_err(|e| {
        TokenError::invalid_response(format!(
            "not valid JSON ({} at line {}, column {})",
            match e.classify() {
                serde_json::error::Category::Io => "read error",
                serde_json::error::Category::Syntax => "syntax error",
                serde_json::error::Category::Data => "unexpected data",
                serde_json::error::Category::Eof => "unexpected end of input",
            },
            e.line(),
            e.column()
        ))
    })
}

/// Overwrites every string in a parsed JSON value (object keys are names, not secrets).
pub(crate) fn wipe(value: &mut Value) {
    match value {
        Value::String(s) => s.zeroize(),
        Value::Array(items) => items.iter_mut().for_each(wipe),
        Value::Object(map) => map.values_mut().for_each(wipe),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// A secret taken out of a parsed JSON string: copied into an exactly sized allocation, and
/// the source wiped.
pub(crate) fn take_secret(s: &mut String) -> SecretString {
    let secret = SecretString::from(s.as_str());
    s.zeroize();
    secret
}

/// Serializes `map` into a secret string, in a buffer of exactly its size (measured by a first
/// pass that only counts), so that it never reallocates and leaves no copy behind.
/// `size_hint` bounds the count pass's work: a map longer than it is an error.
pub(crate) fn secret_json(
    map: &Map<String, Value>,
    size_hint: usize,
) -> Result<SecretString, TokenError> {
    let mut counter = Counter(0);
    serde_json::to_writer(&mut counter, map)
        .map_err(|_| TokenError::invalid_response("extra fields could not be re-encoded"))?;
    if counter.0 > size_hint.saturating_add(64) {
        return Err(TokenError::invalid_response(
            "extra fields grew when re-encoded",
        ));
    }
    let mut buf = Zeroizing::new(Vec::with_capacity(counter.0));
    serde_json::to_writer(&mut *buf, map)
        .map_err(|_| TokenError::invalid_response("extra fields could not be re-encoded"))?;
    let text = std::str::from_utf8(&buf)
        .map_err(|_| TokenError::invalid_response("extra fields are not UTF-8"))?;
    Ok(SecretString::from(text))
}

/// A writer that only counts bytes (sizing an encoding before writing it).
pub(crate) struct Counter(pub(crate) usize);

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 = self.0.saturating_add(buf.len());
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn collect(
    map: &mut Map<String, Value>,
    requested_at: SystemTime,
    budget: usize,
    top_level: bool,
    out: &mut Vec<Token>,
) -> Result<(), TokenError> {
    if let Some(code) = map.get("error") {
        // Only a registered code is repeated: the answer's text is the server's, and this
        // message has no way to tell whether it repeats a secret (a refresh token, a client
        // secret) that must not reach a log.
        let code = code
            .as_str()
            .and_then(|c| REGISTERED_ERRORS.iter().find(|known| **known == c))
            .copied()
            .unwrap_or("(an unregistered error code, not shown)");
        return Err(TokenError::invalid_response(format!(
            "the server answered with an OAuth error response: {code}"
        )));
    }
    let others = map.remove("other_tokens");
    out.push(token_from_map(map, requested_at, budget)?);
    match others {
        None | Some(Value::Null) => {}
        Some(Value::Array(mut items)) if top_level => {
            for item in &mut items {
                let result = match item {
                    Value::Object(m) => collect(m, requested_at, budget, false, out),
                    _ => Err(TokenError::invalid_response(
                        "an element of other_tokens is not an object",
                    )),
                };
                if let Err(e) = result {
                    items.iter_mut().for_each(wipe);
                    return Err(e);
                }
            }
            items.iter_mut().for_each(wipe);
        }
        Some(mut v) => {
            wipe(&mut v);
            return Err(TokenError::invalid_response(if top_level {
                "other_tokens is not an array"
            } else {
                "other_tokens is nested inside other_tokens"
            }));
        }
    }
    if out.len() > MAX_TOKENS {
        return Err(TokenError::invalid_response(format!(
            "the response holds more than {MAX_TOKENS} tokens"
        )));
    }
    Ok(())
}

/// One token out of one JSON object. The object's secret strings are wiped as they are taken.
fn token_from_map(
    map: &mut Map<String, Value>,
    requested_at: SystemTime,
    budget: usize,
) -> Result<Token, TokenError> {
    let access = required_secret(map, "access_token")?;
    let token_type = required_text(map, "token_type")?;
    let mut token = Token::new(access).with_token_type(token_type);
    if let Some(rt) = optional_secret(map, "refresh_token")? {
        token = token.with_refresh_token(rt);
    }
    if let Some(secs) = expires_in(map.get("expires_in"))? {
        let at = requested_at
            .checked_add(Duration::from_secs(secs))
            .ok_or_else(|| TokenError::invalid_response("expires_in is out of range"))?;
        token = token.with_expires_at(at);
    }
    match map.get("scope") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => token = token.with_scopes(s.split(' ').filter(|s| !s.is_empty())),
        Some(_) => return Err(TokenError::invalid_response("scope is not a string")),
    }
    match map.get("resource_server") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if !s.is_empty() => token = token.with_resource_server(s.as_str()),
        Some(_) => {
            return Err(TokenError::invalid_response(
                "resource_server is not a non-empty string",
            ))
        }
    }
    let mut extra = Map::new();
    let names: Vec<String> = map.keys().cloned().collect();
    for name in names {
        if KNOWN.contains(&name.as_str()) {
            continue;
        }
        if let Some(v) = map.remove(&name) {
            extra.insert(name, v);
        }
    }
    if !extra.is_empty() {
        let secret = secret_json(&extra, budget);
        extra.values_mut().for_each(wipe);
        token = token.with_extra_json(secret?);
    }
    Ok(token)
}

fn required_secret(
    map: &mut Map<String, Value>,
    field: &'static str,
) -> Result<SecretString, TokenError> {
    match optional_secret(map, field)? {
        Some(s) if !s.expose_secret().is_empty() => Ok(s),
        _ => Err(TokenError::invalid_response(format!(
            "{field} is missing or empty"
        ))),
    }
}

fn optional_secret(
    map: &mut Map<String, Value>,
    field: &'static str,
) -> Result<Option<SecretString>, TokenError> {
    match map.get_mut(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(take_secret(s))),
        Some(_) => Err(TokenError::invalid_response(format!(
            "{field} is not a string"
        ))),
    }
}

fn required_text(map: &Map<String, Value>, field: &'static str) -> Result<String, TokenError> {
    match map.get(field) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(Value::String(_)) | None | Some(Value::Null) => Err(TokenError::invalid_response(
            format!("{field} is missing or empty"),
        )),
        Some(_) => Err(TokenError::invalid_response(format!(
            "{field} is not a string"
        ))),
    }
}

/// `expires_in` as whole seconds: a non-negative integer, or a string holding one (some
/// providers send strings).
pub(crate) fn expires_in(value: Option<&Value>) -> Result<Option<u64>, TokenError> {
    let secs = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => match (n.as_u64(), n.as_f64()) {
            (Some(u), _) => Some(u),
            (None, Some(f)) if f.fract() == 0.0 && (0.0..=MAX_EXPIRES_IN as f64).contains(&f) =>
            {
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                Some(f as u64)
            }
            _ => None,
        },
        Some(Value::String(s)) => s.trim().parse::<u64>().ok(),
        Some(_) => None,
    };
    match secs {
        Some(s) if s <= MAX_EXPIRES_IN => Ok(Some(s)),
        _ => Err(TokenError::invalid_response(
            "expires_in is not a whole number of seconds between 0 and 100 years",
        )),
    }
}

/// OAuth error codes repeated in messages: RFC 6749 (sections 4.1.2.1 and 5.2), RFC 6750,
/// RFC 8628, RFC 8707, RFC 9449 and OpenID Connect Core. Any other code is not shown.
const REGISTERED_ERRORS: &[&str] = &[
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
    "access_denied",
    "unsupported_response_type",
    "server_error",
    "temporarily_unavailable",
    "invalid_token",
    "insufficient_scope",
    "authorization_pending",
    "slow_down",
    "expired_token",
    "invalid_target",
    "invalid_dpop_proof",
    "use_dpop_nonce",
    "interaction_required",
    "login_required",
    "account_selection_required",
    "consent_required",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn globus_multi_resource_server_response() {
        let body = br#"{"access_token":"a1","token_type":"Bearer","expires_in":100,
            "resource_server":"auth.globus.org","scope":"openid","id_token":"idt","state":"s",
            "other_tokens":[{"access_token":"a2","token_type":"Bearer","expires_in":"200",
            "resource_server":"transfer.api.globus.org","scope":"x y","refresh_token":"r2"}]}"#;
        let r = TokenResponse::from_json(body, at(1000)).unwrap();
        assert_eq!(r.len(), 2);
        let t1 = r.get("auth.globus.org").unwrap();
        assert_eq!(t1.expires_at(), Some(at(1100)));
        let extra = t1.extra_json().unwrap().expose_secret();
        assert!(extra.contains("idt") && extra.contains("state") && !extra.contains("a2"));
        let t2 = r.get("transfer.api.globus.org").unwrap();
        assert_eq!(t2.expires_at(), Some(at(1200)));
        assert_eq!(t2.refresh_token().unwrap().expose_secret(), "r2");
        assert_eq!(t2.scopes(), ["x", "y"]);
        assert!(t2.extra_json().is_none());
    }

    #[test]
    fn errors_name_fields_never_values() {
        for (body, needle) in [
            (
                &br#"{"access_token":"SECRETVALUE","token_type":7}"#[..],
                "token_type",
            ),
            (
                br#"{"access_token":"SECRETVALUE","token_type":"B","expires_in":-5}"#,
                "expires_in",
            ),
            (
                br#"{"token_type":"Bearer","refresh_token":"SECRETVALUE"}"#,
                "access_token",
            ),
            (br#"{"access_token":"SECRETVALUE""#, "JSON"),
            (
                br#"{"error":"invalid_grant","error_description":"SECRETVALUE"}"#,
                "invalid_grant",
            ),
            // An error code that is not a registered one may be anything: not shown.
            (br#"{"error":"SECRETVALUE"}"#, "unregistered"),
            (br#"["SECRETVALUE"]"#, "array"),
            (
                br#"{"access_token":"SECRETVALUE","token_type":"B","other_tokens":{}}"#,
                "other_tokens",
            ),
        ] {
            let e = TokenResponse::from_json(body, at(0)).unwrap_err();
            let text = format!("{e} {e:?}");
            assert!(matches!(e, TokenError::InvalidResponse { .. }), "{text}");
            assert!(text.contains(needle), "{text}");
            assert!(!text.contains("SECRETVALUE"), "{text}");
        }
    }

    #[test]
    fn expires_in_forms() {
        for (v, want) in [
            (serde_json::json!(10), Some(10)),
            (serde_json::json!("10"), Some(10)),
            (serde_json::json!(10.0), Some(10)),
            (Value::Null, None),
        ] {
            assert_eq!(expires_in(Some(&v)).unwrap(), want);
        }
        for v in [
            serde_json::json!(-1),
            serde_json::json!(1.5),
            serde_json::json!("soon"),
            serde_json::json!(u64::MAX),
            serde_json::json!(true),
        ] {
            assert!(expires_in(Some(&v)).is_err(), "{v}");
        }
    }
}
