//! The request's encodings: the `application/x-www-form-urlencoded` body and the Basic
//! client authentication header, built in buffers wiped after use.

use base64ct::{Base64, Encoding};
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use crate::refresh::RefreshError;

/// The `application/x-www-form-urlencoded` body of `fields`, in a wiped buffer sized exactly
/// (so that it never reallocates and leaves a copy behind).
pub(super) fn form_encode(fields: &[(&str, &str)]) -> Zeroizing<String> {
    let len = fields
        .iter()
        .map(|(n, v)| encoded_len(n) + 1 + encoded_len(v))
        .sum::<usize>()
        + fields.len().saturating_sub(1);
    let mut out = Zeroizing::new(String::with_capacity(len));
    for (i, (name, value)) in fields.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        encode_into(name, &mut out);
        out.push('=');
        encode_into(value, &mut out);
    }
    out
}

/// The `Authorization` header value of `client_secret_basic`: `Basic` and the Base64 of the
/// form-urlencoded id, a colon and the form-urlencoded secret (RFC 6749 section 2.3.1).
pub(super) fn basic_authorization(
    client_id: &str,
    secret: &SecretString,
) -> Result<Zeroizing<String>, RefreshError> {
    let secret = secret.expose_secret();
    let mut credentials = Zeroizing::new(String::with_capacity(
        encoded_len(client_id) + 1 + encoded_len(secret),
    ));
    encode_into(client_id, &mut credentials);
    credentials.push(':');
    encode_into(secret, &mut credentials);
    let mut encoded = Zeroizing::new(vec![0u8; Base64::encoded_len(credentials.as_bytes())]);
    let text = Base64::encode(credentials.as_bytes(), &mut encoded)
        .map_err(|_| RefreshError::rejected("the client credentials could not be encoded"))?;
    let mut header = Zeroizing::new(String::with_capacity(6 + text.len()));
    header.push_str("Basic ");
    header.push_str(text);
    Ok(header)
}

/// Whether a byte is sent as itself in a form-urlencoded value.
fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'*' | b'-' | b'.' | b'_')
}

fn encoded_len(s: &str) -> usize {
    s.bytes()
        .map(|b| if unreserved(b) || b == b' ' { 1 } else { 3 })
        .sum()
}

/// Appends `s` form-urlencoded (the WHATWG `application/x-www-form-urlencoded` serializer:
/// space as `+`, everything but `*-._` and ASCII alphanumerics percent-encoded).
pub(super) fn encode_into(s: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for b in s.bytes() {
        if unreserved(b) {
            out.push(char::from(b));
        } else if b == b' ' {
            out.push('+');
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding_is_whatwg() {
        let body = form_encode(&[("a b", "x&y=z+%/é"), ("k", "A-Z_a.z*09~")]);
        assert_eq!(
            body.as_str(),
            "a+b=x%26y%3Dz%2B%25%2F%C3%A9&k=A-Z_a.z*09%7E"
        );
        assert_eq!(body.capacity(), body.len());
    }

    #[test]
    fn basic_credentials_are_urlencoded_first() {
        // RFC 6749 section 2.3.1: "client id:" and "se cret" encode to
        // "client+id%3A:se+cret" before Base64.
        let header = basic_authorization("client id:", &SecretString::from("se cret")).unwrap();
        let mut expected = [0u8; 64];
        let b64 = Base64::encode(b"client+id%3A:se+cret", &mut expected).unwrap();
        assert_eq!(header.as_str(), format!("Basic {b64}"));
    }
}
