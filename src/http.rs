//! The ready HTTP refresher: refresh-token and client-credentials grants against a standard
//! OAuth 2.0 token endpoint (RFC 6749 sections 4.4 and 6), and token revocation (RFC 7009),
//! on the blocking `ureq` client with rustls.

use std::fmt;
use std::io::Read;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use base64ct::{Base64, Encoding};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use zeroize::Zeroizing;

use crate::clock::{Clock, SystemClock};
use crate::refresh::{RefreshError, RefreshErrorKind, Refresher};
use crate::response::{parse_json, wipe, TokenResponse, MAX_RESPONSE_LEN};
use crate::token::Token;

/// A [`Refresher`] that talks to a standard OAuth 2.0 token endpoint over HTTPS: the
/// refresh-token grant (RFC 6749 section 6) or the client-credentials grant (section 4.4),
/// with the client secret sent by HTTP Basic authentication or in the request body.
///
/// Only in the `http` cargo feature.
///
/// **What it sends.** A `POST` of an `application/x-www-form-urlencoded` body:
/// `grant_type`, the stored `refresh_token` (refresh-token grant) and the configured
/// `scope` (if any), the client credentials as [`ClientAuth`] says (or only `client_id`
/// for a public client), and any [`extra_param`](Self::extra_param)s. A refresh-token
/// grant with no stored token, or a stored token without a refresh token, fails with
/// [`RefreshErrorKind::InvalidGrant`] without sending anything. A client-credentials grant
/// ignores the stored token's secrets (it only looks at its resource server, see below).
///
/// **What it returns.** The token of the answer, its expiry counted from the moment the
/// request was sent (read from the [`clock`](Self::clock)). A Globus-style answer with
/// several tokens gives the one for the stored token's resource server if there is one,
/// else the top-level token (refused as [`RefreshErrorKind::Rejected`] if that one names
/// another resource server than the stored token); the others are dropped. An answer
/// without a refresh token gives a token without one: the
/// [`Authorizer`](crate::Authorizer) keeps the stored refresh token
/// ([`Token::refreshed_with`]).
///
/// **How it fails.** The HTTP status and the OAuth error code decide the
/// [`RefreshErrorKind`]:
///
/// | answer | kind |
/// | --- | --- |
/// | OAuth error `invalid_grant` (any non-5xx status) | [`InvalidGrant`](RefreshErrorKind::InvalidGrant) |
/// | other OAuth errors (`invalid_client`, `unauthorized_client`, `invalid_scope`, `unsupported_grant_type`, `invalid_request`, ...) | [`Rejected`](RefreshErrorKind::Rejected) |
/// | OAuth error `temporarily_unavailable` or `server_error` | [`Transient`](RefreshErrorKind::Transient) |
/// | 5xx, 429, 408 (with `Retry-After` seconds, capped at one hour, if sent) | [`Transient`](RefreshErrorKind::Transient) |
/// | timeout, connection, DNS or TLS failure | [`Transient`](RefreshErrorKind::Transient) |
/// | 2xx that is not a token response, an answer over [`MAX_RESPONSE_LEN`], another 4xx, a redirect (never followed) | [`Rejected`](RefreshErrorKind::Rejected) |
///
/// Error messages carry the HTTP status, the OAuth error code and the server's
/// `error_description` (printable ASCII, at most 160 characters, and left out if it
/// contains the refresh token, the access token or the client secret); never a token, a
/// secret or the response body.
///
/// A timeout or a lost connection *after* the request was written is ambiguous: the server
/// may have exchanged the refresh token (and, if it rotates refresh tokens, spent it) before
/// the answer was lost. It is reported as [`RefreshErrorKind::Transient`] marked
/// [`request_possibly_processed`](RefreshError::request_possibly_processed), so that the
/// authorizer does not present the refresh token again (see
/// [`AmbiguousFailure`](crate::AmbiguousFailure)). Failures before the request was sent
/// (name resolution, connecting, the TLS handshake, a refused connection) are plain
/// transient failures: connecting has its own timeout, half of the whole, so that a slow
/// connect is told apart from a slow answer.
///
/// **Transport.** `https` only, except to a loopback host (`127.0.0.0/8`, `::1`,
/// `localhost`), where plain `http` is allowed for tests and local development; the
/// constructors refuse anything else. Certificates are checked against the Mozilla roots
/// compiled in (`webpki-roots`). Redirects are never followed (they would carry the
/// credentials elsewhere). A proxy set in the environment (`HTTPS_PROXY`, `ALL_PROXY`,
/// `NO_PROXY`) is used, except for loopback hosts. The whole exchange, from DNS to the last
/// byte of the answer, is bounded by the [`timeout`](Self::timeout) (10 s by default),
/// which must stay below the authorizer's lease time
/// ([`AuthorizerBuilder::lease_time`](crate::AuthorizerBuilder::lease_time), 30 s by default).
///
/// Clones share one connection pool (and its idle connections).
///
/// **Secrets in memory.** The request body, the Basic credentials and the answer are built
/// and read in buffers wiped after use ([`Zeroizing`]). Copies it cannot wipe: `ureq`
/// copies the `Authorization` header into an `http::HeaderValue` and the body into its
/// connection's output buffer, rustls keeps plaintext in its send and receive buffers until
/// it encrypts or hands it over, and `ureq` reads the answer through its input buffer; these
/// are freed, not wiped.
///
/// ```
/// use std::time::Duration;
/// use tokenvault::{ClientAuth, HttpRefresher};
///
/// let refresher = HttpRefresher::refresh_token_grant("https://auth.example.org/oauth2/token", "my-app")?
///     .client_secret("client-secret-value".into(), ClientAuth::Basic)
///     .timeout(Duration::from_secs(5));
/// assert!(!format!("{refresher:?}").contains("client-secret-value"));
/// // `refresher` goes to an `Authorizer`, which calls `refresh` when the token is due.
/// # Ok::<(), tokenvault::RefreshError>(())
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
#[derive(Clone)]
pub struct HttpRefresher {
    token_url: String,
    revocation_url: Option<String>,
    client_id: String,
    grant: GrantType,
    client_secret: Option<(SecretString, ClientAuth)>,
    scopes: Vec<String>,
    extra_params: Vec<(String, SecretString)>,
    timeout: Duration,
    clock: Arc<dyn Clock>,
    agent: ureq::Agent,
}

/// How an [`HttpRefresher`] sends its client secret (RFC 6749 section 2.3.1).
///
/// ```
/// use tokenvault::{ClientAuth, HttpRefresher};
///
/// let refresher = HttpRefresher::client_credentials_grant("https://auth.example.org/token", "svc")?
///     .client_secret("s3cret".into(), ClientAuth::Post);
/// assert_eq!(refresher.client_auth(), Some(ClientAuth::Post));
/// # Ok::<(), tokenvault::RefreshError>(())
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ClientAuth {
    /// HTTP Basic authentication (`client_secret_basic`, what servers must support): the
    /// client id and secret, each form-urlencoded, in an `Authorization: Basic` header.
    Basic,
    /// The client id and secret as `client_id` and `client_secret` fields of the request
    /// body (`client_secret_post`).
    Post,
}

/// Which grant an [`HttpRefresher`] exchanges.
///
/// ```
/// use tokenvault::{GrantType, HttpRefresher};
///
/// let refresher = HttpRefresher::refresh_token_grant("https://auth.example.org/token", "app")?;
/// assert_eq!(refresher.grant(), GrantType::RefreshToken);
/// assert_eq!(GrantType::ClientCredentials.as_str(), "client_credentials");
/// # Ok::<(), tokenvault::RefreshError>(())
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GrantType {
    /// `grant_type=refresh_token`: the stored refresh token buys a new access token.
    RefreshToken,
    /// `grant_type=client_credentials`: the client's own credentials buy a new access token.
    ClientCredentials,
}

impl HttpRefresher {
    /// The default [`timeout`](Self::timeout): 10 seconds, well below the authorizer's
    /// default lease time of 30 seconds.
    ///
    /// ```
    /// use tokenvault::HttpRefresher;
    ///
    /// let refresher = HttpRefresher::refresh_token_grant("https://auth.example.org/token", "app")?;
    /// assert_eq!(refresher.request_timeout(), HttpRefresher::DEFAULT_TIMEOUT);
    /// # Ok::<(), tokenvault::RefreshError>(())
    /// ```
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

    /// A refresher that exchanges the stored refresh token at `token_url`, as the client
    /// `client_id` (a public client until [`client_secret`](Self::client_secret) is set).
    ///
    /// # Errors
    /// [`RefreshErrorKind::Rejected`] if `token_url` is not an absolute `https` URL (or
    /// `http` to a loopback host), or carries a user name or password.
    ///
    /// ```
    /// use tokenvault::HttpRefresher;
    ///
    /// assert!(HttpRefresher::refresh_token_grant("https://auth.example.org/token", "app").is_ok());
    /// assert!(HttpRefresher::refresh_token_grant("http://127.0.0.1:8080/token", "app").is_ok());
    /// let refused = HttpRefresher::refresh_token_grant("http://auth.example.org/token", "app");
    /// assert!(refused.unwrap_err().message().contains("https"));
    /// ```
    pub fn refresh_token_grant(
        token_url: &str,
        client_id: impl Into<String>,
    ) -> Result<Self, RefreshError> {
        Self::new(token_url, client_id.into(), GrantType::RefreshToken)
    }

    /// A refresher that obtains tokens with the client's own credentials at `token_url`
    /// (set them with [`client_secret`](Self::client_secret), and the scopes to ask for
    /// with [`scopes`](Self::scopes)). It needs nothing stored: an
    /// [`Authorizer`](crate::Authorizer) with it mints the first token too.
    ///
    /// # Errors
    /// As [`refresh_token_grant`](Self::refresh_token_grant).
    ///
    /// ```
    /// use tokenvault::{ClientAuth, HttpRefresher};
    ///
    /// let refresher = HttpRefresher::client_credentials_grant("https://auth.example.org/token", "svc")?
    ///     .client_secret("s3cret".into(), ClientAuth::Basic)
    ///     .scopes(["reports:read"]);
    /// assert_eq!(refresher.scope_list(), ["reports:read"]);
    /// # Ok::<(), tokenvault::RefreshError>(())
    /// ```
    pub fn client_credentials_grant(
        token_url: &str,
        client_id: impl Into<String>,
    ) -> Result<Self, RefreshError> {
        Self::new(token_url, client_id.into(), GrantType::ClientCredentials)
    }

    fn new(token_url: &str, client_id: String, grant: GrantType) -> Result<Self, RefreshError> {
        check_url(token_url, "token")?;
        Ok(Self {
            token_url: token_url.to_owned(),
            revocation_url: None,
            client_id,
            grant,
            client_secret: None,
            scopes: Vec::new(),
            extra_params: Vec::new(),
            timeout: Self::DEFAULT_TIMEOUT,
            clock: Arc::new(SystemClock),
            agent: agent(Self::DEFAULT_TIMEOUT),
        })
    }

    /// Authenticates the client with `secret`, sent as `auth` says (a confidential client).
    ///
    /// ```
    /// use tokenvault::{ClientAuth, HttpRefresher};
    ///
    /// let refresher = HttpRefresher::refresh_token_grant("https://auth.example.org/token", "app")?
    ///     .client_secret("s3cret".into(), ClientAuth::Basic);
    /// assert_eq!(refresher.client_auth(), Some(ClientAuth::Basic));
    /// # Ok::<(), tokenvault::RefreshError>(())
    /// ```
    #[must_use]
    pub fn client_secret(mut self, secret: SecretString, auth: ClientAuth) -> Self {
        self.client_secret = Some((secret, auth));
        self
    }

    /// The scopes to ask for, sent space-separated as `scope`. A client-credentials grant
    /// usually needs them; a refresh-token grant sends them only if set (to narrow the
    /// grant), and otherwise gets the scope of the original grant.
    ///
    /// ```
    /// use tokenvault::HttpRefresher;
    ///
    /// let refresher = HttpRefresher::refresh_token_grant("https://auth.example.org/token", "app")?
    ///     .scopes(["openid", "email"]);
    /// assert_eq!(refresher.scope_list(), ["openid", "email"]);
    /// # Ok::<(), tokenvault::RefreshError>(())
    /// ```
    #[must_use]
    pub fn scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// An additional form field sent with every token request (`audience`, `resource`,
    /// `client_assertion_type`, ...). The value is kept as a secret (a `client_assertion`
    /// is a credential) and never shown by `Debug`. Fields the refresher sets itself
    /// (`grant_type`, `refresh_token`, `scope`, `client_id`, `client_secret`) cannot be
    /// overridden: a refresh with one fails as [`RefreshErrorKind::Rejected`].
    ///
    /// ```
    /// use tokenvault::HttpRefresher;
    ///
    /// let refresher = HttpRefresher::client_credentials_grant("https://auth.example.org/token", "svc")?
    ///     .extra_param("audience", "https://api.example.org");
    /// assert!(format!("{refresher:?}").contains("audience"));
    /// # Ok::<(), tokenvault::RefreshError>(())
    /// ```
    #[must_use]
    pub fn extra_param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra_params
            .push((name.into(), SecretString::from(value.into())));
        self
    }

    /// Bounds the whole exchange (DNS, connect, TLS, request, answer) to `timeout`
    /// ([`DEFAULT_TIMEOUT`](Self::DEFAULT_TIMEOUT) by default). Keep it below the
    /// authorizer's lease time, so that a hung request is abandoned before another process
    /// may take over the grant.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tokenvault::HttpRefresher;
    ///
    /// let refresher = HttpRefresher::refresh_token_grant("https://auth.example.org/token", "app")?
    ///     .timeout(Duration::from_secs(3));
    /// assert_eq!(refresher.request_timeout(), Duration::from_secs(3));
    /// # Ok::<(), tokenvault::RefreshError>(())
    /// ```
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self.agent = agent(timeout);
        self
    }

    /// The clock read when a request is sent: the returned token's expiry is that time plus
    /// the answer's `expires_in` ([`SystemClock`] by default; give the authorizer's clock).
    ///
    /// ```
    /// use std::time::SystemTime;
    /// use tokenvault::{HttpRefresher, ManualClock};
    ///
    /// let clock = ManualClock::new(SystemTime::UNIX_EPOCH);
    /// let refresher = HttpRefresher::refresh_token_grant("https://auth.example.org/token", "app")?
    ///     .clock(clock.clone());
    /// # let _ = refresher;
    /// # Ok::<(), tokenvault::RefreshError>(())
    /// ```
    #[must_use]
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Sets the token revocation endpoint (RFC 7009) that [`revoke`](Self::revoke) posts to.
    ///
    /// # Errors
    /// As [`refresh_token_grant`](Self::refresh_token_grant), for `url`.
    ///
    /// ```
    /// use tokenvault::HttpRefresher;
    ///
    /// let refresher = HttpRefresher::refresh_token_grant("https://auth.example.org/token", "app")?
    ///     .revocation_url("https://auth.example.org/revoke")?;
    /// assert_eq!(refresher.revocation_endpoint(), Some("https://auth.example.org/revoke"));
    /// # Ok::<(), tokenvault::RefreshError>(())
    /// ```
    pub fn revocation_url(mut self, url: &str) -> Result<Self, RefreshError> {
        check_url(url, "revocation")?;
        self.revocation_url = Some(url.to_owned());
        Ok(self)
    }

    /// The token endpoint's URL.
    ///
    /// ```
    /// use tokenvault::HttpRefresher;
    ///
    /// let refresher = HttpRefresher::refresh_token_grant("https://auth.example.org/token", "app")?;
    /// assert_eq!(refresher.token_endpoint(), "https://auth.example.org/token");
    /// # Ok::<(), tokenvault::RefreshError>(())
    /// ```
    pub fn token_endpoint(&self) -> &str {
        &self.token_url
    }

    /// The revocation endpoint's URL, if set.
    ///
    /// ```
    /// use tokenvault::HttpRefresher;
    ///
    /// let refresher = HttpRefresher::refresh_token_grant("https://auth.example.org/token", "app")?;
    /// assert_eq!(refresher.revocation_endpoint(), None);
    /// # Ok::<(), tokenvault::RefreshError>(())
    /// ```
    pub fn revocation_endpoint(&self) -> Option<&str> {
        self.revocation_url.as_deref()
    }

    /// The client id.
    ///
    /// ```
    /// use tokenvault::HttpRefresher;
    ///
    /// let refresher = HttpRefresher::refresh_token_grant("https://auth.example.org/token", "app")?;
    /// assert_eq!(refresher.client_id(), "app");
    /// # Ok::<(), tokenvault::RefreshError>(())
    /// ```
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The grant exchanged.
    ///
    /// ```
    /// use tokenvault::{GrantType, HttpRefresher};
    ///
    /// let refresher = HttpRefresher::client_credentials_grant("https://auth.example.org/token", "svc")?;
    /// assert_eq!(refresher.grant(), GrantType::ClientCredentials);
    /// # Ok::<(), tokenvault::RefreshError>(())
    /// ```
    pub fn grant(&self) -> GrantType {
        self.grant
    }

    /// How the client secret is sent, or `None` for a public client.
    ///
    /// ```
    /// use tokenvault::HttpRefresher;
    ///
    /// let refresher = HttpRefresher::refresh_token_grant("https://auth.example.org/token", "app")?;
    /// assert_eq!(refresher.client_auth(), None);
    /// # Ok::<(), tokenvault::RefreshError>(())
    /// ```
    pub fn client_auth(&self) -> Option<ClientAuth> {
        self.client_secret.as_ref().map(|(_, auth)| *auth)
    }

    /// The scopes asked for.
    ///
    /// ```
    /// use tokenvault::HttpRefresher;
    ///
    /// let refresher = HttpRefresher::refresh_token_grant("https://auth.example.org/token", "app")?;
    /// assert!(refresher.scope_list().is_empty());
    /// # Ok::<(), tokenvault::RefreshError>(())
    /// ```
    pub fn scope_list(&self) -> &[String] {
        &self.scopes
    }

    /// The request timeout.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tokenvault::HttpRefresher;
    ///
    /// let refresher = HttpRefresher::refresh_token_grant("https://auth.example.org/token", "app")?;
    /// assert_eq!(refresher.request_timeout(), Duration::from_secs(10));
    /// # Ok::<(), tokenvault::RefreshError>(())
    /// ```
    pub fn request_timeout(&self) -> Duration {
        self.timeout
    }

    /// Revokes `token`'s grant at the [`revocation_url`](Self::revocation_url) (RFC 7009):
    /// its refresh token if it has one (which also ends its access tokens at most servers),
    /// else its access token, with the client authentication of token requests. Meant for
    /// logging out; a server that does not know the token answers success too.
    ///
    /// # Errors
    /// [`RefreshErrorKind::Rejected`] if no revocation URL is set or the server refuses
    /// (`unsupported_token_type`, `invalid_client`, ...); [`RefreshErrorKind::Transient`]
    /// for 5xx, 429 (with `Retry-After`), timeouts and connection failures.
    ///
    /// ```no_run
    /// use tokenvault::{ClientAuth, HttpRefresher, Token};
    ///
    /// let refresher = HttpRefresher::refresh_token_grant("https://auth.example.org/token", "app")?
    ///     .client_secret("s3cret".into(), ClientAuth::Basic)
    ///     .revocation_url("https://auth.example.org/revoke")?;
    /// let stored = Token::new("at".into()).with_refresh_token("rt".into());
    /// refresher.revoke(&stored)?;
    /// # Ok::<(), tokenvault::RefreshError>(())
    /// ```
    pub fn revoke(&self, token: &Token) -> Result<(), RefreshError> {
        let Some(url) = &self.revocation_url else {
            return Err(RefreshError::rejected("no revocation URL is set"));
        };
        let (value, hint) = match token.refresh_token() {
            Some(rt) => (rt.expose_secret(), "refresh_token"),
            None => (token.access_token().expose_secret(), "access_token"),
        };
        let mut fields = vec![("token", value), ("token_type_hint", hint)];
        let secrets = self.secrets(Some(token));
        let response = self.post(url, &mut fields, false)?;
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(());
        }
        Err(failure(response, status, &secrets, "revocation"))
    }

    /// The secrets a request for `token` carries: an error description must not repeat them.
    fn secrets<'a>(&'a self, token: Option<&'a Token>) -> Secrets<'a> {
        let mut all = Vec::with_capacity(3 + self.extra_params.len());
        if let Some(t) = token {
            all.push(t.access_token().expose_secret());
            if let Some(rt) = t.refresh_token() {
                all.push(rt.expose_secret());
            }
        }
        if let Some((s, _)) = &self.client_secret {
            all.push(s.expose_secret());
        }
        all.extend(self.extra_params.iter().map(|(_, v)| v.expose_secret()));
        Secrets(all)
    }

    /// Sends a form `POST` to `url`: `fields` plus the client authentication and the extra
    /// parameters.
    fn post<'a>(
        &'a self,
        url: &str,
        fields: &mut Vec<(&'a str, &'a str)>,
        extras: bool,
    ) -> Result<ureq::http::Response<ureq::Body>, RefreshError> {
        let mut basic = None;
        match &self.client_secret {
            Some((secret, ClientAuth::Post)) => {
                fields.push(("client_id", &self.client_id));
                fields.push(("client_secret", secret.expose_secret()));
            }
            Some((secret, ClientAuth::Basic)) => {
                basic = Some(basic_authorization(&self.client_id, secret)?);
            }
            None => fields.push(("client_id", &self.client_id)),
        }
        if extras {
            for (name, value) in &self.extra_params {
                if RESERVED.contains(&name.as_str()) {
                    return Err(RefreshError::rejected(format!(
                        "the extra parameter {name:?} is set by the refresher itself"
                    )));
                }
                fields.push((name, value.expose_secret()));
            }
        }
        let body = form_encode(fields);
        let mut request = self
            .agent
            .post(url)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("Accept", "application/json");
        if let Some(value) = &basic {
            request = request.header("Authorization", value.as_str());
        }
        if matches!(check_url(url, "request"), Ok(true)) {
            request = request.config().proxy(None).build();
        }
        request.send(body.as_bytes()).map_err(transport_error)
    }
}

impl GrantType {
    /// The `grant_type` value sent.
    ///
    /// ```
    /// use tokenvault::GrantType;
    ///
    /// assert_eq!(GrantType::RefreshToken.as_str(), "refresh_token");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RefreshToken => "refresh_token",
            Self::ClientCredentials => "client_credentials",
        }
    }
}

impl Refresher for HttpRefresher {
    fn refresh(&self, current: Option<&Token>) -> Result<Token, RefreshError> {
        let scope = self.scopes.join(" ");
        let mut fields: Vec<(&str, &str)> = Vec::with_capacity(8);
        match self.grant {
            GrantType::RefreshToken => {
                let Some(rt) = current.and_then(Token::refresh_token) else {
                    return Err(RefreshError::invalid_grant(
                        "no refresh token stored: log in again",
                    ));
                };
                fields.push(("grant_type", "refresh_token"));
                fields.push(("refresh_token", rt.expose_secret()));
            }
            GrantType::ClientCredentials => fields.push(("grant_type", "client_credentials")),
        }
        if !scope.is_empty() {
            fields.push(("scope", &scope));
        }
        let secrets = self.secrets(current);
        let sent_at = self.clock.now();
        let response = self.post(&self.token_url, &mut fields, true)?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            return Err(failure(response, status, &secrets, "token"));
        }
        let body = read_body(response.into_body())?;
        match TokenResponse::from_json(&body, sent_at) {
            Ok(answer) => pick_token(answer, current),
            Err(e) => Err(match OAuthError::parse(&body, &secrets) {
                Some(oauth) => oauth.into_error(status, "token"),
                None => RefreshError::rejected(format!(
                    "the token endpoint's HTTP {status} answer is not usable ({e})"
                )),
            }),
        }
    }
}

impl fmt::Debug for HttpRefresher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let extra: Vec<&str> = self.extra_params.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("HttpRefresher")
            .field("token_url", &self.token_url)
            .field("revocation_url", &self.revocation_url)
            .field("client_id", &self.client_id)
            .field("grant", &self.grant)
            .field("client_auth", &self.client_auth())
            .field("scopes", &self.scopes)
            .field("extra_params", &extra)
            .field("timeout", &self.timeout)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

/// An OAuth error answer (RFC 6749 section 5.2), sanitized for messages.
struct OAuthError {
    code: String,
    description: Option<String>,
}

impl OAuthError {
    /// The error of `body` if it is a JSON object with a string `error`. The description is
    /// kept only as printable ASCII, truncated, and only if no secret of `secrets` is in it.
    fn parse(body: &[u8], secrets: &Secrets<'_>) -> Option<Self> {
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
                        Some(Value::String(d)) if !secrets.appear_in(d) => {
                            let d: String = d
                                .chars()
                                .map(|c| if c.is_ascii_whitespace() { ' ' } else { c })
                                .filter(|c| c.is_ascii_graphic() || *c == ' ')
                                .take(MAX_DESCRIPTION_LEN)
                                .collect();
                            Some(d).filter(|d| !d.trim().is_empty())
                        }
                        _ => None,
                    };
                    Some(Self { code, description })
                }
                _ => None,
            },
            _ => None,
        };
        wipe(&mut value);
        result.filter(|e| !e.code.is_empty())
    }

    fn into_error(self, status: u16, what: &str) -> RefreshError {
        let kind = match self.code.as_str() {
            "invalid_grant" => RefreshErrorKind::InvalidGrant,
            "temporarily_unavailable" | "server_error" => RefreshErrorKind::Transient,
            _ => RefreshErrorKind::Rejected,
        };
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

/// The secrets a request carried, which an error description must not repeat.
struct Secrets<'a>(Vec<&'a str>);

impl Secrets<'_> {
    fn appear_in(&self, text: &str) -> bool {
        self.0.iter().any(|s| !s.is_empty() && text.contains(s))
    }
}

/// The error for a non-2xx answer.
fn failure(
    response: ureq::http::Response<ureq::Body>,
    status: u16,
    secrets: &Secrets<'_>,
    what: &str,
) -> RefreshError {
    let retry_after = retry_after(response.headers());
    let with_wait = |e: RefreshError| match retry_after {
        Some(wait) => e.with_retry_after(wait),
        None => e,
    };
    if (500..600).contains(&status) || status == 429 || status == 408 {
        return with_wait(RefreshError::transient(format!(
            "the {what} endpoint answered HTTP {status}"
        )));
    }
    let body = match read_body(response.into_body()) {
        Ok(body) => body,
        Err(e) => return e,
    };
    if let Some(oauth) = OAuthError::parse(&body, secrets) {
        return with_wait(oauth.into_error(status, what));
    }
    if (300..400).contains(&status) {
        return RefreshError::rejected(format!(
            "the {what} endpoint answered HTTP {status}, a redirect; redirects are not \
                 followed: configure the final URL"
        ));
    }
    RefreshError::rejected(format!(
        "the {what} endpoint answered HTTP {status} without an OAuth error response"
    ))
}

/// Checks a configured URL: absolute, `https` (or `http` to a loopback host), no user
/// name or password. Returns whether the host is a loopback host. Messages name the
/// scheme and host, never the whole URL.
fn check_url(url: &str, what: &str) -> Result<bool, RefreshError> {
    let uri: ureq::http::Uri = url.parse().map_err(|_| {
        RefreshError::rejected(format!("the {what} URL is not a valid absolute URL"))
    })?;
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return Err(RefreshError::rejected(format!(
            "the {what} URL is not an absolute URL with a scheme and a host"
        )));
    };
    if authority.as_str().contains('@') {
        return Err(RefreshError::rejected(format!(
            "the {what} URL carries a user name or password: give client credentials with \
             client_secret instead"
        )));
    }
    let host = authority.host();
    let loopback = is_loopback(host);
    match scheme.to_ascii_lowercase().as_str() {
        "https" => Ok(loopback),
        "http" if loopback => Ok(true),
        "http" => Err(RefreshError::rejected(format!(
            "the {what} URL must use https: plain http is allowed only to a loopback host, \
             not to {host}"
        ))),
        _ => Err(RefreshError::rejected(format!(
            "the {what} URL must use https, not {scheme}"
        ))),
    }
}

/// `127.0.0.0/8`, `::1` (or an IPv4-mapped loopback address) and `localhost`.
fn is_loopback(host: &str) -> bool {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    match bare.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => ip.is_loopback(),
        Ok(IpAddr::V6(ip)) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Err(_) => bare.eq_ignore_ascii_case("localhost"),
    }
}

/// The agent: one timeout for the whole exchange, statuses as answers (not errors), no
/// redirects, the environment's proxy (requests to loopback hosts bypass it).
fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .timeout_resolve(Some(timeout / 2))
        .timeout_connect(Some(timeout / 2))
        .http_status_as_error(false)
        .max_redirects(0)
        .user_agent(concat!("tokenvault/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// The `application/x-www-form-urlencoded` body of `fields`, in a wiped buffer sized exactly
/// (so that it never reallocates and leaves a copy behind).
fn form_encode(fields: &[(&str, &str)]) -> Zeroizing<String> {
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
fn basic_authorization(
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
fn encode_into(s: &str, out: &mut String) {
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

/// Reads an answer into a wiped buffer, refusing more than [`MAX_RESPONSE_LEN`] bytes.
/// The buffer grows by copying into a new wiped buffer, never by reallocating in place.
fn read_body(body: ureq::Body) -> Result<Zeroizing<Vec<u8>>, RefreshError> {
    let too_large = || {
        RefreshError::rejected(format!(
            "the answer is larger than {MAX_RESPONSE_LEN} bytes"
        ))
    };
    let hint = body
        .content_length()
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(0);
    if hint > MAX_RESPONSE_LEN {
        return Err(too_large());
    }
    let mut reader = body.into_reader();
    let mut buf = Zeroizing::new(Vec::with_capacity(hint.max(INITIAL_BODY_CAPACITY)));
    let mut chunk = Zeroizing::new([0u8; 8192]);
    loop {
        let n = match reader.read(&mut chunk[..]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_error(&e)),
        };
        let Some(data) = chunk.get(..n) else { break };
        let needed = buf.len() + n;
        if needed > MAX_RESPONSE_LEN {
            return Err(too_large());
        }
        if needed > buf.capacity() {
            let capacity = needed.max(buf.capacity() * 2).min(MAX_RESPONSE_LEN);
            let mut bigger = Zeroizing::new(Vec::with_capacity(capacity));
            bigger.extend_from_slice(&buf);
            buf = bigger;
        }
        buf.extend_from_slice(data);
    }
    Ok(buf)
}

/// The token of `answer` for `current`'s resource server, else the top-level one.
fn pick_token(answer: TokenResponse, current: Option<&Token>) -> Result<Token, RefreshError> {
    let wanted = current.and_then(Token::resource_server);
    let mut tokens = answer.into_tokens();
    let index = wanted
        .and_then(|rs| tokens.iter().position(|t| t.resource_server() == Some(rs)))
        .unwrap_or(0);
    if index >= tokens.len() {
        return Err(RefreshError::rejected(
            "the token endpoint answered with no token",
        ));
    }
    let token = tokens.swap_remove(index);
    match (wanted, token.resource_server()) {
        (Some(want), Some(got)) if want != got => Err(RefreshError::rejected(format!(
            "the token endpoint answered with a token for resource server {got:?}, \
             not {want:?}"
        ))),
        _ => Ok(token),
    }
}

/// `Retry-After` in seconds (the HTTP-date form is ignored), capped at [`MAX_RETRY_AFTER`].
fn retry_after(headers: &ureq::http::HeaderMap) -> Option<Duration> {
    let value = headers.get("retry-after")?.to_str().ok()?;
    let secs: u64 = value.trim().parse().ok()?;
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

/// A transport failure. Messages are ours: ureq's may quote the URL or server bytes.
fn transport_error(e: ureq::Error) -> RefreshError {
    use ureq::Error as E;
    match e {
        E::Timeout(phase) => {
            use ureq::Timeout as T;
            match phase {
                T::Resolve | T::Connect | T::SendRequest | T::PerWrite => RefreshError::transient(
                    format!("the request timed out before it was sent ({phase})"),
                ),
                _ => RefreshError::transient(format!(
                    "the request timed out ({phase}); it may have reached the server"
                ))
                .with_request_possibly_processed(),
            }
        }
        E::Io(io) => io_error(&io),
        E::HostNotFound => RefreshError::transient("the endpoint's host was not found"),
        E::ConnectionFailed => RefreshError::transient("could not connect to the endpoint"),
        E::Protocol(_) | E::BodyStalled => RefreshError::transient(
            "the server broke the HTTP protocol; the request may have reached the server",
        )
        .with_request_possibly_processed(),
        E::Rustls(tls) => RefreshError::transient(format!("TLS failure: {tls}")),
        E::Tls(what) => RefreshError::transient(format!("TLS failure: {what}")),
        E::LargeResponseHeader(_, limit) => RefreshError::rejected(format!(
            "the answer's headers are larger than {limit} bytes"
        )),
        E::BadUri(_) => RefreshError::rejected("the URL is not valid"),
        E::RedirectFailed | E::TooManyRedirects => {
            RefreshError::rejected("the endpoint answered with a redirect, which is not followed")
        }
        E::ConnectProxyFailed(_) | E::InvalidProxyUrl => {
            RefreshError::transient("the HTTP proxy failed")
        }
        E::StatusCode(status) => {
            RefreshError::transient(format!("the endpoint answered HTTP {status}"))
        }
        _ => RefreshError::rejected("the HTTP request could not be made"),
    }
}

fn io_error(e: &std::io::Error) -> RefreshError {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::TimedOut | K::WouldBlock => {
            RefreshError::transient("the request timed out; it may have reached the server")
                .with_request_possibly_processed()
        }
        K::ConnectionRefused => RefreshError::transient("the endpoint refused the connection"),
        K::NotFound | K::AddrNotAvailable | K::NetworkUnreachable | K::HostUnreachable => {
            RefreshError::transient(format!("could not reach the endpoint ({})", e.kind()))
        }
        kind => RefreshError::transient(format!(
            "network error ({kind}); the request may have reached the server"
        ))
        .with_request_possibly_processed(),
    }
}

/// Form fields the refresher sets itself, which an extra parameter cannot override.
const RESERVED: [&str; 5] = [
    "grant_type",
    "refresh_token",
    "scope",
    "client_id",
    "client_secret",
];
/// Longest `Retry-After` honoured: a server cannot stop refreshes for longer.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// Longest OAuth error code kept in a message.
const MAX_CODE_LEN: usize = 64;
/// Longest `error_description` kept in a message, in characters.
const MAX_DESCRIPTION_LEN: usize = 160;
/// First size of the answer buffer when the answer has no `Content-Length`.
const INITIAL_BODY_CAPACITY: usize = 4096;

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

    #[test]
    fn urls() {
        for ok in [
            "https://auth.example.org/token",
            "HTTPS://auth.example.org:8443/oauth/token?x=1",
            "http://127.0.0.1:9/token",
            "http://127.8.9.10/token",
            "http://[::1]:80/token",
            "http://localhost:1/token",
            "http://LOCALHOST/token",
        ] {
            assert!(check_url(ok, "token").is_ok(), "{ok}");
        }
        for bad in [
            "http://auth.example.org/token",
            "http://10.0.0.1/token",
            "http://127.0.0.1.example.org/token",
            "ftp://auth.example.org/token",
            "/token",
            "auth.example.org/token",
            "https://user:PASSWORD@auth.example.org/token",
            "not a url",
        ] {
            let e = check_url(bad, "token").unwrap_err();
            assert_eq!(e.kind(), RefreshErrorKind::Rejected, "{bad}");
            assert!(!e.message().contains("PASSWORD"), "{e}");
        }
    }

    #[test]
    fn oauth_error_descriptions_are_sanitized() {
        let secrets = Secrets(vec!["AT-SECRET", "RT-SECRET"]);
        let e = OAuthError::parse(
            br#"{"error":"invalid_grant","error_description":"refresh token RT-SECRET expired"}"#,
            &secrets,
        )
        .unwrap();
        assert_eq!(e.code, "invalid_grant");
        assert!(e.description.is_none());
        let e = OAuthError::parse(
            br#"{"error":"bad\u0007code","error_description":"line\nbreak \u00e9t\u00e9"}"#,
            &secrets,
        )
        .unwrap();
        assert_eq!(e.code, "badcode");
        assert_eq!(e.description.as_deref(), Some("line break t"));
        assert!(OAuthError::parse(br#"{"error":7}"#, &secrets).is_none());
        assert!(OAuthError::parse(b"<html>", &secrets).is_none());
    }
}
