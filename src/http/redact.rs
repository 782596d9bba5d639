//! What the HTTP refresher lets through of a server's words: the OAuth error code and
//! description of an error answer, made printable, bounded, and left out if they show any
//! piece of a secret the request carried.
//!
//! **The rule.** A text shown in a message must not contain, in any of these views of it, a
//! piece of [`MIN_FRAGMENT`] consecutive bytes of a secret (the whole secret, if shorter):
//! - the text as it is;
//! - the text percent-decoded (`%XX`, either case; `+` as a space): the form-encoded and
//!   URL-encoded forms;
//! - every run of Base64 characters (standard or URL-safe alphabet, with or without
//!   padding) decoded at each of the four alignments, as it is and percent-decoded: Base64 of
//!   the secret, of a prefix of it, or of a longer string holding it, like the Basic
//!   authentication header's `base64(urlencode(id):urlencode(secret))`.
//!
//! The secrets are the refresh token, the access token, the client secret and the extra
//! parameters' values. The check runs on the final text (after it is made printable and
//! truncated), so it sees exactly what would be shown. A text that fails it is left out
//! whole, never partly redacted. Eight bytes is short enough to catch a token that a
//! server cut down to a "prefix...", and long enough that ordinary words rarely collide
//! with a random secret (a collision only drops a description).

use std::collections::HashSet;

use serde_json::Value;
use zeroize::Zeroizing;

use crate::refresh::{RefreshError, RefreshErrorKind};
use crate::response::{parse_json, wipe};

/// The shortest piece of a secret that counts as showing it.
pub(super) const MIN_FRAGMENT: usize = 8;
/// Longest OAuth error code kept in a message.
const MAX_CODE_LEN: usize = 64;
/// Longest `error_description` kept in a message, in characters.
const MAX_DESCRIPTION_LEN: usize = 160;

/// The secrets a request carried, which a message must not show.
pub(super) struct Secrets<'a>(pub(super) Vec<&'a str>);

impl Secrets<'_> {
    /// Whether `text` shows a piece of a secret (see the module's rule).
    pub(super) fn shown_in(&self, text: &str) -> bool {
        let views = views(text.as_bytes());
        let mut pieces: HashSet<&[u8]> = HashSet::new();
        for len in self.piece_lengths() {
            for view in &views {
                pieces.extend(view.windows(len));
            }
        }
        self.0.iter().map(|s| s.as_bytes()).any(|secret| {
            let len = secret.len().min(MIN_FRAGMENT);
            len > 0 && secret.windows(len).any(|w| pieces.contains(w))
        })
    }

    /// `text` if it shows no secret.
    pub(super) fn filter(&self, text: String) -> Option<String> {
        (!self.shown_in(&text)).then_some(text)
    }

    /// The piece lengths to look for: [`MIN_FRAGMENT`], and the length of each shorter
    /// secret.
    fn piece_lengths(&self) -> Vec<usize> {
        let mut lens: Vec<usize> = self
            .0
            .iter()
            .map(|s| s.len().min(MIN_FRAGMENT))
            .filter(|&n| n > 0)
            .collect();
        lens.sort_unstable();
        lens.dedup();
        lens
    }
}

/// The views of `text` the rule looks at, in wiped buffers.
fn views(text: &[u8]) -> Vec<Zeroizing<Vec<u8>>> {
    let mut out = vec![Zeroizing::new(text.to_vec()), percent_decode(text)];
    for run in text
        .split(|b| !is_base64_char(*b))
        .filter(|run| run.len() >= 2)
    {
        for start in 0..run.len().min(4) {
            if let Some(chars) = run.get(start..) {
                let decoded = base64_decode_lenient(chars);
                out.push(percent_decode(&decoded));
                out.push(decoded);
            }
        }
    }
    out
}

fn is_base64_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_')
}

/// Decodes Base64 characters of either alphabet starting at a group boundary, dropping the
/// bits of an incomplete last character. Hand-written because it must accept what a strict
/// decoder refuses (any alignment, mixed alphabets, no padding, non-zero trailing bits);
/// it only feeds the leak check, never data.
fn base64_decode_lenient(chars: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(chars.len() * 3 / 4 + 1));
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in chars {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => continue,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// Percent-decodes `text` (`%XX` in either case, `+` as a space; a malformed escape is kept
/// as it is).
fn percent_decode(text: &[u8]) -> Zeroizing<Vec<u8>> {
    let hex = |b: u8| {
        char::from(b)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    };
    let mut out = Zeroizing::new(Vec::with_capacity(text.len()));
    let mut i = 0;
    while let Some(&b) = text.get(i) {
        match b {
            b'%' => match (
                text.get(i + 1).and_then(|&h| hex(h)),
                text.get(i + 2).and_then(|&l| hex(l)),
            ) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                _ => out.push(b),
            },
            b'+' => out.push(b' '),
            _ => out.push(b),
        }
        i += 1;
    }
    out
}

/// An OAuth error answer (RFC 6749 section 5.2), sanitized for messages.
pub(super) struct OAuthError {
    /// The error code as sent (printable ASCII, bounded): it decides the kind.
    code: String,
    /// Whether the code may be shown.
    code_shown: bool,
    description: Option<String>,
}

impl OAuthError {
    /// The error of `body` if it is a JSON object with a string `error`. The code and the
    /// description are kept only as printable ASCII, truncated, and shown only if they show
    /// no secret of `secrets`.
    pub(super) fn parse(body: &[u8], secrets: &Secrets<'_>) -> Option<Self> {
        let mut value = parse_json(body).ok()?;
        let result = match &value {
            Value::Object(map) => match map.get("error") {
                Some(Value::String(code)) => {
                    let code: String = code
                        .chars()
                        .filter(char::is_ascii_graphic)
                        .take(MAX_CODE_LEN)
                        .collect();
                    let description = match map.get("error_description") {
                        Some(Value::String(d)) => {
                            let d: String = d
                                .chars()
                                .map(|c| if c.is_ascii_whitespace() { ' ' } else { c })
                                .filter(|c| c.is_ascii_graphic() || *c == ' ')
                                .take(MAX_DESCRIPTION_LEN)
                                .collect();
                            Some(d)
                                .filter(|d| !d.trim().is_empty())
                                .and_then(|d| secrets.filter(d))
                        }
                        _ => None,
                    };
                    let code_shown = !secrets.shown_in(&code);
                    Some(Self {
                        code,
                        code_shown,
                        description,
                    })
                }
                _ => None,
            },
            _ => None,
        };
        wipe(&mut value);
        result.filter(|e| !e.code.is_empty())
    }

    /// The error this answer makes, `status` its HTTP status and `what` the endpoint.
    pub(super) fn into_error(self, status: u16, what: &str) -> RefreshError {
        let kind = match self.code.as_str() {
            "invalid_grant" => RefreshErrorKind::InvalidGrant,
            "temporarily_unavailable" | "server_error" => RefreshErrorKind::Transient,
            _ => RefreshErrorKind::Rejected,
        };
        if !self.code_shown {
            return RefreshError::new(
                kind,
                format!(
                    "the {what} endpoint answered HTTP {status} with an OAuth error code that \
                     repeats a secret of the request (not shown)"
                ),
            );
        }
        let mut message = format!(
            "the {what} endpoint answered HTTP {status} with OAuth error {}",
            self.code
        );
        if let Some(d) = &self.description {
            message.push_str(&format!(": {d:?}"));
        }
        RefreshError::new(kind, message).with_oauth_error(self.code)
    }
}

#[cfg(test)]
mod tests {
    use base64ct::{Base64, Base64Unpadded, Base64Url, Base64UrlUnpadded, Encoding};

    use super::*;

    const RT: &str = "rt-7Hq2Zx9LmP4vB1nC";
    const CS: &str = "s3cr+t/%:= x&y?Q";

    fn secrets() -> Secrets<'static> {
        Secrets(vec!["AT-SECRET-1", RT, CS, "short"])
    }

    fn enc<E: Encoding>(bytes: &[u8]) -> String {
        let mut buf = vec![0u8; E::encoded_len(bytes)];
        E::encode(bytes, &mut buf).unwrap().to_owned()
    }

    fn form(s: &str) -> String {
        let mut out = String::new();
        super::super::form::encode_into(s, &mut out);
        out
    }

    #[test]
    fn encoded_and_partial_secrets_are_caught() {
        let s = secrets();
        let basic = enc::<Base64>(format!("client-1:{}", form(CS)).as_bytes());
        let mut shown = vec![
            RT.to_owned(),
            format!("refresh token {RT} expired"),
            format!("token {}... is unknown", &RT[..MIN_FRAGMENT]),
            format!("token ...{} is unknown", &RT[RT.len() - MIN_FRAGMENT..]),
            form(CS),
            form(CS).to_lowercase().replace("x%26y", "x&y"),
            CS.replace('+', "%2b").replace('/', "%2f"),
            format!("bad header Basic {basic}"),
            format!("bad header Basic {}", basic.trim_end_matches('=')),
            "short".to_owned(),
            "x%73hort".to_owned(),
            enc::<Base64>(b"short"),
        ];
        for prefix in ["", "a", "ab", "abc"] {
            let with = format!("{prefix}{RT}");
            for encoded in [
                enc::<Base64>(with.as_bytes()),
                enc::<Base64Unpadded>(with.as_bytes()),
                enc::<Base64Url>(with.as_bytes()),
                enc::<Base64UrlUnpadded>(with.as_bytes()),
            ] {
                shown.push(format!("grant {encoded}"));
                // A prefix of the encoding: the first 8 bytes of the secret and more.
                shown.push(format!("grant {}", &encoded[..encoded.len() * 2 / 3]));
            }
        }
        for text in &shown {
            assert!(s.shown_in(text), "{text}");
        }
        for text in [
            "The refresh token has expired.",
            "rt-7Hq2 is not a whole piece",
            "client authentication failed",
            "shor t",
            "",
        ] {
            assert!(!s.shown_in(text), "{text}");
        }
    }

    #[test]
    fn oauth_error_descriptions_are_sanitized() {
        let s = secrets();
        let e = OAuthError::parse(
            format!(
                r#"{{"error":"invalid_grant","error_description":"refresh token {RT} expired"}}"#
            )
            .as_bytes(),
            &s,
        )
        .unwrap();
        assert_eq!(e.code, "invalid_grant");
        assert!(e.description.is_none());
        let e = OAuthError::parse(
            br#"{"error":"bad\u0007code","error_description":"line\nbreak \u00e9t\u00e9"}"#,
            &s,
        )
        .unwrap();
        assert_eq!(e.code, "badcode");
        assert_eq!(e.description.as_deref(), Some("line break t"));
        assert!(OAuthError::parse(br#"{"error":7}"#, &s).is_none());
        assert!(OAuthError::parse(b"<html>", &s).is_none());
        // A secret spliced by characters that are dropped is caught in the shown text.
        let spliced = format!("{}\u{e9}{}", &RT[..5], &RT[5..]);
        let e = OAuthError::parse(
            serde_json::json!({"error": "invalid_request", "error_description": spliced})
                .to_string()
                .as_bytes(),
            &s,
        )
        .unwrap();
        assert!(e.description.is_none());
    }

    #[test]
    fn an_error_code_that_repeats_a_secret_is_not_shown() {
        let s = secrets();
        let e = OAuthError::parse(format!(r#"{{"error":"{RT}"}}"#).as_bytes(), &s)
            .unwrap()
            .into_error(400, "token");
        assert_eq!(e.kind(), RefreshErrorKind::Rejected);
        assert_eq!(e.oauth_error(), None);
        assert!(!e.message().contains(&RT[..MIN_FRAGMENT]), "{e}");
        assert!(!e.to_string().contains(&RT[..MIN_FRAGMENT]), "{e}");
    }
}
