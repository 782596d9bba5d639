//! The values a vault stores: OAuth tokens and other small secrets.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use secrecy::{ExposeSecret, SecretSlice, SecretString};

/// An OAuth 2.0 token grant: access token, optional refresh token, and what describes them.
///
/// The access token, the refresh token and the extra fields are [`secrecy`] types: they are
/// wiped when dropped and shown as `[REDACTED]` by `Debug`. Read them with
/// [`ExposeSecret`](secrecy::ExposeSecret).
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use tokenvault::Token;
/// use tokenvault::secrecy::ExposeSecret;
///
/// let token = Token::new("at-123".into())
///     .with_refresh_token("rt-456".into())
///     .with_expires_at(SystemTime::now() + Duration::from_secs(3600))
///     .with_scopes(["openid", "transfer:all"])
///     .with_resource_server("transfer.api.example.org");
/// assert_eq!(token.access_token().expose_secret(), "at-123");
/// assert!(!format!("{token:?}").contains("at-123"));
/// ```
#[derive(Clone)]
pub struct Token {
    access_token: SecretString,
    refresh_token: Option<SecretString>,
    token_type: String,
    expires_at: Option<SystemTime>,
    scopes: Vec<String>,
    identity: Option<String>,
    resource_server: Option<String>,
    extra_json: Option<SecretString>,
}

impl Token {
    /// A bearer token with nothing but its access token.
    pub fn new(access_token: SecretString) -> Self {
        Self {
            access_token,
            refresh_token: None,
            token_type: "Bearer".to_owned(),
            expires_at: None,
            scopes: Vec::new(),
            identity: None,
            resource_server: None,
            extra_json: None,
        }
    }

    /// Sets the refresh token.
    #[must_use]
    pub fn with_refresh_token(mut self, refresh_token: SecretString) -> Self {
        self.refresh_token = Some(refresh_token);
        self
    }

    /// Sets the token type (`Bearer` by default; `DPoP`, `MAC`, ...).
    #[must_use]
    pub fn with_token_type(mut self, token_type: impl Into<String>) -> Self {
        self.token_type = token_type.into();
        self
    }

    /// Sets the absolute expiry time. Stored with one-second precision (sub-second parts are
    /// dropped, toward the Unix epoch).
    #[must_use]
    pub fn with_expires_at(mut self, expires_at: SystemTime) -> Self {
        self.expires_at = Some(truncate_to_seconds(expires_at));
        self
    }

    /// Sets the granted scopes.
    #[must_use]
    pub fn with_scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the identity the token was issued to (a user or client id).
    #[must_use]
    pub fn with_identity(mut self, identity: impl Into<String>) -> Self {
        self.identity = Some(identity.into());
        self
    }

    /// Sets the resource server the token is for.
    #[must_use]
    pub fn with_resource_server(mut self, resource_server: impl Into<String>) -> Self {
        self.resource_server = Some(resource_server.into());
        self
    }

    /// Sets the preserved extra fields of the token response, as raw JSON text (for example
    /// `{"id_token":"..."}`). Kept as a secret: an `id_token` is one.
    #[must_use]
    pub fn with_extra_json(mut self, extra_json: SecretString) -> Self {
        self.extra_json = Some(extra_json);
        self
    }

    /// The access token.
    pub fn access_token(&self) -> &SecretString {
        &self.access_token
    }

    /// The refresh token, if the grant has one.
    pub fn refresh_token(&self) -> Option<&SecretString> {
        self.refresh_token.as_ref()
    }

    /// The token type, `Bearer` unless set otherwise.
    pub fn token_type(&self) -> &str {
        &self.token_type
    }

    /// The absolute expiry time, if known.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.expires_at
    }

    /// The granted scopes.
    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }

    /// The identity the token was issued to.
    pub fn identity(&self) -> Option<&str> {
        self.identity.as_deref()
    }

    /// The resource server the token is for.
    pub fn resource_server(&self) -> Option<&str> {
        self.resource_server.as_deref()
    }

    /// The preserved extra fields, as raw JSON text.
    pub fn extra_json(&self) -> Option<&SecretString> {
        self.extra_json.as_ref()
    }

    /// Whether the token has expired at `now`, counting `margin` before the expiry as expired.
    /// A token without an expiry never expires.
    pub fn is_expired_at(&self, now: SystemTime, margin: Duration) -> bool {
        match self.expires_at {
            Some(at) => now.checked_add(margin).is_none_or(|t| t >= at),
            None => false,
        }
    }

    /// Compares everything, secrets included, in constant time for the secret parts.
    /// Meant for tests and for detecting changes; `Token` has no `PartialEq` so that secrets
    /// are not compared by accident.
    pub fn same_as(&self, other: &Self) -> bool {
        use subtle::ConstantTimeEq;
        let secret_eq = |a: &SecretString, b: &SecretString| {
            bool::from(
                a.expose_secret()
                    .as_bytes()
                    .ct_eq(b.expose_secret().as_bytes()),
            )
        };
        let opt_eq = |a: &Option<SecretString>, b: &Option<SecretString>| match (a, b) {
            (Some(a), Some(b)) => secret_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        secret_eq(&self.access_token, &other.access_token)
            && opt_eq(&self.refresh_token, &other.refresh_token)
            && opt_eq(&self.extra_json, &other.extra_json)
            && self.token_type == other.token_type
            && self.expires_at == other.expires_at
            && self.scopes == other.scopes
            && self.identity == other.identity
            && self.resource_server == other.resource_server
    }

    pub(crate) fn parts(&self) -> TokenParts<'_> {
        TokenParts {
            access_token: self.access_token.expose_secret(),
            refresh_token: self.refresh_token.as_ref().map(|s| s.expose_secret()),
            token_type: &self.token_type,
            expires_at: self.expires_at.map(to_unix),
            scopes: self.scopes.iter().map(String::as_str).collect(),
            identity: self.identity.as_deref(),
            resource_server: self.resource_server.as_deref(),
            extra_json: self.extra_json.as_ref().map(|s| s.expose_secret()),
        }
    }

    pub(crate) fn from_parts(p: &TokenParts<'_>) -> Self {
        Self {
            access_token: SecretString::from(p.access_token),
            refresh_token: p.refresh_token.map(SecretString::from),
            token_type: p.token_type.to_owned(),
            expires_at: p.expires_at.map(from_unix),
            scopes: p.scopes.iter().map(|s| (*s).to_owned()).collect(),
            identity: p.identity.map(str::to_owned),
            resource_server: p.resource_server.map(str::to_owned),
            extra_json: p.extra_json.map(SecretString::from),
        }
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("access_token", &"[REDACTED]")
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "[REDACTED]"),
            )
            .field("token_type", &self.token_type)
            .field("expires_at", &self.expires_at)
            .field("scopes", &self.scopes)
            .field("identity", &self.identity)
            .field("resource_server", &self.resource_server)
            .field(
                "extra_json",
                &self.extra_json.as_ref().map(|_| "[REDACTED]"),
            )
            .finish()
    }
}

/// A token's fields as borrowed slices: what the record codec encodes.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct TokenParts<'a> {
    #[serde(borrow)]
    pub(crate) access_token: &'a str,
    #[serde(borrow)]
    pub(crate) refresh_token: Option<&'a str>,
    #[serde(borrow)]
    pub(crate) token_type: &'a str,
    pub(crate) expires_at: Option<i64>,
    #[serde(borrow)]
    pub(crate) scopes: Vec<&'a str>,
    #[serde(borrow)]
    pub(crate) identity: Option<&'a str>,
    #[serde(borrow)]
    pub(crate) resource_server: Option<&'a str>,
    #[serde(borrow)]
    pub(crate) extra_json: Option<&'a str>,
}

/// A small secret that is not an OAuth token: a client secret, an API key, a signing key.
///
/// Stored in the same namespaces as tokens, but as its own record type: reading a `Secret`
/// as a [`Token`] (or the reverse) is [`Error::WrongRecordType`](crate::Error::WrongRecordType).
///
/// ```
/// use tokenvault::Secret;
/// use tokenvault::secrecy::ExposeSecret;
///
/// let secret = Secret::from_text("client-secret-value".into());
/// assert_eq!(secret.expose_bytes(), b"client-secret-value");
/// assert_eq!(format!("{secret:?}"), "Secret([REDACTED])");
/// ```
#[derive(Clone)]
pub struct Secret(SecretSlice<u8>);

impl Secret {
    /// A secret made of arbitrary bytes.
    pub fn from_bytes(bytes: SecretSlice<u8>) -> Self {
        Self(bytes)
    }

    /// A secret made of text (its UTF-8 bytes).
    pub fn from_text(text: SecretString) -> Self {
        Self(SecretSlice::from(text.expose_secret().as_bytes().to_vec()))
    }

    /// The secret bytes.
    pub fn expose_bytes(&self) -> &[u8] {
        self.0.expose_secret()
    }

    /// The secret as text, if it is UTF-8.
    pub fn expose_text(&self) -> Option<&str> {
        std::str::from_utf8(self.0.expose_secret()).ok()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([REDACTED])")
    }
}

fn to_unix(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_secs())
            .map(|s| -s)
            .unwrap_or(i64::MIN),
    }
}

fn from_unix(secs: i64) -> SystemTime {
    let magnitude = Duration::from_secs(secs.unsigned_abs());
    if secs >= 0 {
        UNIX_EPOCH.checked_add(magnitude).unwrap_or(UNIX_EPOCH)
    } else {
        UNIX_EPOCH.checked_sub(magnitude).unwrap_or(UNIX_EPOCH)
    }
}

fn truncate_to_seconds(t: SystemTime) -> SystemTime {
    from_unix(to_unix(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_round_trip() {
        for secs in [0i64, 1, -1, 1_700_000_000, -86_400] {
            assert_eq!(to_unix(from_unix(secs)), secs);
        }
    }

    #[test]
    fn debug_is_redacted() {
        let t = Token::new("AT-SECRET".into())
            .with_refresh_token("RT-SECRET".into())
            .with_extra_json(r#"{"id_token":"ID-SECRET"}"#.into());
        let s = format!("{t:?} {t:#?}");
        for needle in ["AT-SECRET", "RT-SECRET", "ID-SECRET"] {
            assert!(!s.contains(needle), "{s}");
        }
    }

    #[test]
    fn expiry_margin() {
        let now = SystemTime::now();
        let t = Token::new("a".into()).with_expires_at(now + Duration::from_secs(100));
        assert!(!t.is_expired_at(now, Duration::from_secs(10)));
        assert!(t.is_expired_at(now, Duration::from_secs(200)));
        assert!(!Token::new("a".into()).is_expired_at(now, Duration::MAX));
    }
}
