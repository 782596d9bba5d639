//! The ready HTTP refresher: refresh-token and client-credentials grants against a standard
//! OAuth 2.0 token endpoint (RFC 6749 sections 4.4 and 6), and token revocation (RFC 7009),
//! on the blocking `ureq` client with rustls.

mod browser;
mod device;
mod exchange;
mod form;
mod redact;
mod transport;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

pub use self::browser::BrowserLogin;
pub use self::device::DeviceAuthorization;
use self::exchange::failure;
pub(crate) use self::transport::check_url;
use crate::clock::{Clock, SystemClock};
use crate::refresh::RefreshError;
#[cfg(doc)]
use crate::refresh::{RefreshErrorKind, Refresher};
#[cfg(doc)]
use crate::response::MAX_RESPONSE_LEN;
use crate::token::Token;
#[cfg(doc)]
use zeroize::Zeroizing;

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
/// [`Authorizer`](crate::oauth::Authorizer) keeps the stored refresh token
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
/// | 503, 429, 408 (with `Retry-After` seconds, capped at one hour, if sent) | [`Transient`](RefreshErrorKind::Transient) |
/// | another 5xx without an OAuth error (a gateway's 502 or 504, a bare 500) | [`Transient`](RefreshErrorKind::Transient), and possibly processed (below) |
/// | timeout, connection, DNS or TLS failure | [`Transient`](RefreshErrorKind::Transient) |
/// | 2xx that is not a token response (or has no token for the stored resource server), or an answer over [`MAX_RESPONSE_LEN`] | [`Rejected`](RefreshErrorKind::Rejected), and possibly processed (below) |
/// | another 4xx, a redirect (never followed) | [`Rejected`](RefreshErrorKind::Rejected) |
///
/// Error messages carry the HTTP status, the OAuth error code and the server's
/// `error_description` (printable ASCII, at most 160 characters); never a token, a secret
/// or the response body. The code and the description are left out if they show any piece
/// of 8 bytes (or a whole shorter one) of the refresh token, the access token, the client
/// secret or an extra parameter's value, as they are, percent-encoded or Base64-encoded
/// (either alphabet, padded or not, alone or inside a longer string such as the Basic
/// authentication header).
///
/// **Sent or not.** The refresher records whether any byte of the request was handed to the
/// connection once it was established (after the TLS handshake). A failure before that
/// (name resolution, connecting, the TLS handshake: an untrusted, expired or wrong-host
/// certificate, a connection closed, reset or answered with garbage during the handshake,
/// a timeout in any of these) is a plain [`RefreshErrorKind::Transient`] failure: the
/// server cannot have seen the request. A failure after (a timeout waiting for the answer,
/// a connection lost before the whole answer came) is ambiguous: the server may have
/// exchanged the refresh token (and, if it rotates refresh tokens, spent it) before the
/// answer was lost. It is marked
/// [`request_possibly_processed`](RefreshError::request_possibly_processed), so that the
/// authorizer does not present the refresh token again (see
/// [`AmbiguousFailure`](crate::oauth::AmbiguousFailure)). Over TLS, a request counts as sent as
/// soon as it is handed to the TLS session: a connection reset right after the handshake
/// is (conservatively) ambiguous too. A 5xx other than 503 that carries no OAuth error is
/// marked: a gateway that gave up on a slow origin (502, 504), or a server that failed after
/// it committed (500), may answer so after the refresh token was rotated. A success status
/// whose answer cannot be read or used is marked as well: the server processed the request, and may have rotated the refresh
/// token in an answer we could not take. A client-credentials grant is never marked: sending
/// the client's credentials again spends nothing. Connecting has its own timeout, half of
/// the whole, so that a slow connect is told apart from a slow answer.
///
/// **Transport.** `https` only, except to a literal loopback address (`127.0.0.0/8`,
/// `[::1]`, an IPv4-mapped `127.0.0.0/8` address), where plain `http` is allowed for tests
/// and local development; the constructors refuse anything else, `http://localhost`
/// included (a name can resolve elsewhere: write `http://127.0.0.1`). Certificates are
/// checked against the Mozilla roots compiled in (`webpki-roots`), or only against the
/// roots given to [`root_certificates_pem`](Self::root_certificates_pem). Redirects are
/// never followed (they would carry the credentials elsewhere). A proxy set in the
/// environment (`HTTPS_PROXY`, `ALL_PROXY`, `NO_PROXY`) is used, except for loopback
/// addresses. The whole exchange, from DNS to the last byte of the answer, is bounded by
/// the [`timeout`](Self::timeout) (10 s by default), which must stay below the
/// authorizer's lease time
/// ([`AuthorizerBuilder::lease_time`](crate::oauth::AuthorizerBuilder::lease_time), 30 s by default).
///
/// Each request opens a new connection (no pool): a kept-alive connection that the server
/// closed meanwhile fails only once the request is written, which would make a request the
/// server never saw look ambiguous.
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
/// use tokenvault::oauth::{ClientAuth, HttpRefresher};
///
/// let refresher = HttpRefresher::refresh_token_grant("https://auth.example.org/oauth2/token", "my-app")?
///     .client_secret("client-secret-value".into(), ClientAuth::Basic)
///     .timeout(Duration::from_secs(5));
/// assert!(!format!("{refresher:?}").contains("client-secret-value"));
/// // `refresher` goes to an `Authorizer`, which calls `refresh` when the token is due.
/// # Ok::<(), tokenvault::oauth::RefreshError>(())
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
    roots: Option<Arc<Vec<ureq::tls::Certificate<'static>>>>,
}

/// How an [`HttpRefresher`] sends its client secret (RFC 6749 section 2.3.1).
///
/// ```
/// use tokenvault::oauth::{ClientAuth, HttpRefresher};
///
/// let refresher = HttpRefresher::client_credentials_grant("https://auth.example.org/token", "svc")?
///     .client_secret("s3cret".into(), ClientAuth::Post);
/// assert_eq!(refresher.client_auth(), Some(ClientAuth::Post));
/// # Ok::<(), tokenvault::oauth::RefreshError>(())
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
/// use tokenvault::oauth::{GrantType, HttpRefresher};
///
/// let refresher = HttpRefresher::refresh_token_grant("https://auth.example.org/token", "app")?;
/// assert_eq!(refresher.grant(), GrantType::RefreshToken);
/// assert_eq!(GrantType::ClientCredentials.as_str(), "client_credentials");
/// # Ok::<(), tokenvault::oauth::RefreshError>(())
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
    /// use tokenvault::oauth::HttpRefresher;
    ///
    /// let refresher = HttpRefresher::refresh_token_grant("https://auth.example.org/token", "app")?;
    /// assert_eq!(refresher.request_timeout(), HttpRefresher::DEFAULT_TIMEOUT);
    /// # Ok::<(), tokenvault::oauth::RefreshError>(())
    /// ```
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

    /// A refresher that exchanges the stored refresh token at `token_url`, as the client
    /// `client_id` (a public client until [`client_secret`](Self::client_secret) is set).
    ///
    /// # Errors
    /// [`RefreshErrorKind::Rejected`] if `token_url` is not an absolute `https` URL (or
    /// `http` to a literal loopback address), or carries a user name or password.
    ///
    /// ```
    /// use tokenvault::oauth::HttpRefresher;
    ///
    /// assert!(HttpRefresher::refresh_token_grant("https://auth.example.org/token", "app").is_ok());
    /// assert!(HttpRefresher::refresh_token_grant("http://127.0.0.1:8080/token", "app").is_ok());
    /// let refused = HttpRefresher::refresh_token_grant("http://auth.example.org/token", "app");
    /// assert!(refused.unwrap_err().message().contains("https"));
    /// // A name is not a literal loopback address: it could resolve anywhere.
    /// let refused = HttpRefresher::refresh_token_grant("http://localhost:8080/token", "app");
    /// assert!(refused.unwrap_err().message().contains("127.0.0.1"));
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
    /// [`Authorizer`](crate::oauth::Authorizer) with it mints the first token too.
    ///
    /// # Errors
    /// As [`refresh_token_grant`](Self::refresh_token_grant).
    ///
    /// ```
    /// use tokenvault::oauth::{ClientAuth, HttpRefresher};
    ///
    /// let refresher = HttpRefresher::client_credentials_grant("https://auth.example.org/token", "svc")?
    ///     .client_secret("s3cret".into(), ClientAuth::Basic)
    ///     .scopes(["reports:read"]);
    /// assert_eq!(refresher.scope_list(), ["reports:read"]);
    /// # Ok::<(), tokenvault::oauth::RefreshError>(())
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
            roots: None,
        })
    }

    /// Authenticates the client with `secret`, sent as `auth` says (a confidential client).
    ///
    /// ```
    /// use tokenvault::oauth::{ClientAuth, HttpRefresher};
    ///
    /// let refresher = HttpRefresher::refresh_token_grant("https://auth.example.org/token", "app")?
    ///     .client_secret("s3cret".into(), ClientAuth::Basic);
    /// assert_eq!(refresher.client_auth(), Some(ClientAuth::Basic));
    /// # Ok::<(), tokenvault::oauth::RefreshError>(())
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
    /// use tokenvault::oauth::HttpRefresher;
    ///
    /// let refresher = HttpRefresher::refresh_token_grant("https://auth.example.org/token", "app")?
    ///     .scopes(["openid", "email"]);
    /// assert_eq!(refresher.scope_list(), ["openid", "email"]);
    /// # Ok::<(), tokenvault::oauth::RefreshError>(())
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
    /// use tokenvault::oauth::HttpRefresher;
    ///
    /// let refresher = HttpRefresher::client_credentials_grant("https://auth.example.org/token", "svc")?
    ///     .extra_param("audience", "https://api.example.org");
    /// assert!(format!("{refresher:?}").contains("audience"));
    /// # Ok::<(), tokenvault::oauth::RefreshError>(())
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
    /// use tokenvault::oauth::HttpRefresher;
    ///
    /// let refresher = HttpRefresher::refresh_token_grant("https://auth.example.org/token", "app")?
    ///     .timeout(Duration::from_secs(3));
    /// assert_eq!(refresher.request_timeout(), Duration::from_secs(3));
    /// # Ok::<(), tokenvault::oauth::RefreshError>(())
    /// ```
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The clock read when a request is sent: the returned token's expiry is that time plus
    /// the answer's `expires_in` ([`SystemClock`] by default; give the authorizer's clock).
    ///
    /// ```
    /// use std::time::SystemTime;
    /// use tokenvault::oauth::{HttpRefresher, ManualClock};
    ///
    /// let clock = ManualClock::new(SystemTime::UNIX_EPOCH);
    /// let refresher = HttpRefresher::refresh_token_grant("https://auth.example.org/token", "app")?
    ///     .clock(clock.clone());
    /// # let _ = refresher;
    /// # Ok::<(), tokenvault::oauth::RefreshError>(())
    /// ```
    #[must_use]
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Trusts only the CA certificates in `pem` (one or more `CERTIFICATE` blocks), instead
    /// of the Mozilla roots compiled in, to check the endpoints' certificates: for a token
    /// endpoint whose certificate a private CA issued. Other PEM blocks are ignored; a
    /// certificate rustls cannot use as a root is skipped, and then fails every handshake as
    /// an unknown issuer.
    ///
    /// # Errors
    /// [`RefreshErrorKind::Rejected`] if `pem` is not valid PEM or holds no certificate.
    ///
    /// ```
    /// use tokenvault::oauth::HttpRefresher;
    ///
    /// # let ca_pem = include_bytes!("../tests/support/tls/ca.pem");
    /// // let ca_pem = std::fs::read("/etc/my-company/ca.pem")?;
    /// let refresher = HttpRefresher::refresh_token_grant("https://auth.internal/token", "app")?
    ///     .root_certificates_pem(ca_pem)?;
    /// assert_eq!(refresher.root_certificate_count(), Some(1));
    /// assert!(HttpRefresher::refresh_token_grant("https://auth.internal/token", "app")?
    ///     .root_certificates_pem(b"not a certificate")
    ///     .is_err());
    /// # Ok::<(), tokenvault::oauth::RefreshError>(())
    /// ```
    pub fn root_certificates_pem(mut self, pem: &[u8]) -> Result<Self, RefreshError> {
        let mut roots = Vec::new();
        for item in ureq::tls::parse_pem(pem) {
            match item {
                Ok(ureq::tls::PemItem::Certificate(cert)) => roots.push(cert),
                Ok(_) => {}
                Err(_) => {
                    return Err(RefreshError::rejected(
                        "the root certificates are not valid PEM",
                    ))
                }
            }
        }
        if roots.is_empty() {
            return Err(RefreshError::rejected(
                "no certificate in the root certificates' PEM",
            ));
        }
        self.roots = Some(Arc::new(roots));
        Ok(self)
    }

    /// How many root certificates [`root_certificates_pem`](Self::root_certificates_pem)
    /// set, or `None` for the Mozilla roots.
    ///
    /// ```
    /// use tokenvault::oauth::HttpRefresher;
    ///
    /// let refresher = HttpRefresher::refresh_token_grant("https://auth.example.org/token", "app")?;
    /// assert_eq!(refresher.root_certificate_count(), None);
    /// # Ok::<(), tokenvault::oauth::RefreshError>(())
    /// ```
    pub fn root_certificate_count(&self) -> Option<usize> {
        self.roots.as_ref().map(|r| r.len())
    }

    /// Sets the token revocation endpoint (RFC 7009) that [`revoke`](Self::revoke) posts to.
    ///
    /// # Errors
    /// As [`refresh_token_grant`](Self::refresh_token_grant), for `url`.
    ///
    /// ```
    /// use tokenvault::oauth::HttpRefresher;
    ///
    /// let refresher = HttpRefresher::refresh_token_grant("https://auth.example.org/token", "app")?
    ///     .revocation_url("https://auth.example.org/revoke")?;
    /// assert_eq!(refresher.revocation_endpoint(), Some("https://auth.example.org/revoke"));
    /// # Ok::<(), tokenvault::oauth::RefreshError>(())
    /// ```
    pub fn revocation_url(mut self, url: &str) -> Result<Self, RefreshError> {
        check_url(url, "revocation")?;
        self.revocation_url = Some(url.to_owned());
        Ok(self)
    }

    /// The token endpoint's URL.
    ///
    /// ```
    /// use tokenvault::oauth::HttpRefresher;
    ///
    /// let refresher = HttpRefresher::refresh_token_grant("https://auth.example.org/token", "app")?;
    /// assert_eq!(refresher.token_endpoint(), "https://auth.example.org/token");
    /// # Ok::<(), tokenvault::oauth::RefreshError>(())
    /// ```
    pub fn token_endpoint(&self) -> &str {
        &self.token_url
    }

    /// The revocation endpoint's URL, if set.
    ///
    /// ```
    /// use tokenvault::oauth::HttpRefresher;
    ///
    /// let refresher = HttpRefresher::refresh_token_grant("https://auth.example.org/token", "app")?;
    /// assert_eq!(refresher.revocation_endpoint(), None);
    /// # Ok::<(), tokenvault::oauth::RefreshError>(())
    /// ```
    pub fn revocation_endpoint(&self) -> Option<&str> {
        self.revocation_url.as_deref()
    }

    /// The client id.
    ///
    /// ```
    /// use tokenvault::oauth::HttpRefresher;
    ///
    /// let refresher = HttpRefresher::refresh_token_grant("https://auth.example.org/token", "app")?;
    /// assert_eq!(refresher.client_id(), "app");
    /// # Ok::<(), tokenvault::oauth::RefreshError>(())
    /// ```
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The grant exchanged.
    ///
    /// ```
    /// use tokenvault::oauth::{GrantType, HttpRefresher};
    ///
    /// let refresher = HttpRefresher::client_credentials_grant("https://auth.example.org/token", "svc")?;
    /// assert_eq!(refresher.grant(), GrantType::ClientCredentials);
    /// # Ok::<(), tokenvault::oauth::RefreshError>(())
    /// ```
    pub fn grant(&self) -> GrantType {
        self.grant
    }

    /// How the client secret is sent, or `None` for a public client.
    ///
    /// ```
    /// use tokenvault::oauth::HttpRefresher;
    ///
    /// let refresher = HttpRefresher::refresh_token_grant("https://auth.example.org/token", "app")?;
    /// assert_eq!(refresher.client_auth(), None);
    /// # Ok::<(), tokenvault::oauth::RefreshError>(())
    /// ```
    pub fn client_auth(&self) -> Option<ClientAuth> {
        self.client_secret.as_ref().map(|(_, auth)| *auth)
    }

    /// The scopes asked for.
    ///
    /// ```
    /// use tokenvault::oauth::HttpRefresher;
    ///
    /// let refresher = HttpRefresher::refresh_token_grant("https://auth.example.org/token", "app")?;
    /// assert!(refresher.scope_list().is_empty());
    /// # Ok::<(), tokenvault::oauth::RefreshError>(())
    /// ```
    pub fn scope_list(&self) -> &[String] {
        &self.scopes
    }

    /// The request timeout.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tokenvault::oauth::HttpRefresher;
    ///
    /// let refresher = HttpRefresher::refresh_token_grant("https://auth.example.org/token", "app")?;
    /// assert_eq!(refresher.request_timeout(), Duration::from_secs(10));
    /// # Ok::<(), tokenvault::oauth::RefreshError>(())
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
    /// use tokenvault::Token;
    /// use tokenvault::oauth::{ClientAuth, HttpRefresher};
    ///
    /// let refresher = HttpRefresher::refresh_token_grant("https://auth.example.org/token", "app")?
    ///     .client_secret("s3cret".into(), ClientAuth::Basic)
    ///     .revocation_url("https://auth.example.org/revoke")?;
    /// let stored = Token::new("at".into()).with_refresh_token("rt".into());
    /// refresher.revoke(&stored)?;
    /// # Ok::<(), tokenvault::oauth::RefreshError>(())
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
}

impl GrantType {
    /// The `grant_type` value sent.
    ///
    /// ```
    /// use tokenvault::oauth::GrantType;
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
            .field("root_certificates", &self.root_certificate_count())
            .finish_non_exhaustive()
    }
}
