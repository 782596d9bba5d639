//! OAuth providers (feature `http`): where a namespace's tokens come from and are refreshed,
//! kept in the vault beside them, sealed like any record.
//!
//! A provider is three kinds of internal record of its namespace (`docs/format.md`, section
//! 5.7), never listed by [`Namespace::keys`]: its settings (`provider`), its client secret if
//! it has one (`provider-secret`, a record of its own so that the settings never hold a
//! secret), and, for each token bound to it, the binding (`provider-of`, beside the token).

use std::fmt;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::authorizer::Authorizer;
use crate::error::{Error, Result};
use crate::http::{check_url, ClientAuth, DeviceAuthorization, GrantType, HttpRefresher};
use crate::namespace::{InternalKey, Namespace};
use crate::refresh::RefreshError;
use crate::response::TokenResponse;
use crate::token::{Secret, Token};
use crate::token_error::{Result as TokenResult, TokenError};
use crate::token_store::TokenStore as _;

/// The layer of a provider's settings.
const SETTINGS: &str = "provider";
/// The layer of a provider's client secret.
const SECRET: &str = "provider-secret";
/// The layer of a token's binding to its provider.
const BINDING: &str = "provider-of";
/// The version byte in front of a provider's settings.
const SETTINGS_VERSION: u8 = 1;
/// A binding's first byte: the refresh-token grant.
const GRANT_REFRESH_TOKEN: u8 = 1;
/// A binding's first byte: the client-credentials grant.
const GRANT_CLIENT_CREDENTIALS: u8 = 2;
/// Largest settings record read.
const MAX_SETTINGS_LEN: usize = 16 * 1024;

/// An OAuth 2.0 provider: its endpoints, the client registered with it, and the scopes to ask
/// for. Stored in a namespace with [`Providers::put`]; a token bound to it
/// ([`Providers::bind`]) is refreshed through it.
///
/// Endpoints must be `https` (plain `http` only to a literal loopback address, as for
/// [`HttpRefresher`]). The client secret, if any, is a [`SecretString`], never shown by
/// `Debug`, and stored in a record of its own.
///
/// ```
/// use tokenvault::oauth::{ClientAuth, Provider};
///
/// let provider = Provider::new("https://auth.example.org/oauth2/token", "my-cli")?
///     .device_authorization_endpoint("https://auth.example.org/oauth2/device")?
///     .revocation_endpoint("https://auth.example.org/oauth2/revoke")?
///     .scopes(["openid", "offline_access"]);
/// assert_eq!(provider.client_id(), "my-cli");
/// assert!(provider.client_auth().is_none()); // a public client
/// let confidential = provider.client_secret("s3cret".into(), ClientAuth::Basic);
/// assert!(!format!("{confidential:?}").contains("s3cret"));
/// # Ok::<(), tokenvault::oauth::RefreshError>(())
/// ```
#[derive(Clone)]
pub struct Provider {
    settings: Settings,
    client_secret: Option<SecretString>,
}

/// What a provider's settings record holds (JSON after a version byte).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Settings {
    token_endpoint: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    device_authorization_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    authorization_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    revocation_endpoint: Option<String>,
    client_id: String,
    /// `none`, `client_secret_basic` or `client_secret_post`.
    client_auth: String,
    #[serde(default)]
    scopes: Vec<String>,
}

const AUTH_NONE: &str = "none";
const AUTH_BASIC: &str = "client_secret_basic";
const AUTH_POST: &str = "client_secret_post";

impl Provider {
    /// A provider whose token endpoint is `token_endpoint`, for the public client
    /// `client_id` (add a secret with [`client_secret`](Self::client_secret)).
    ///
    /// # Errors
    /// A [`RefreshError`] of kind `Rejected` for an endpoint that is not `https` (or `http`
    /// to a literal loopback address), or an empty client id.
    pub fn new(token_endpoint: &str, client_id: &str) -> Result<Self, RefreshError> {
        check_url(token_endpoint, "token")?;
        if client_id.is_empty() || client_id.chars().any(char::is_control) {
            return Err(RefreshError::rejected(
                "the client id is empty or holds control characters",
            ));
        }
        Ok(Self {
            settings: Settings {
                token_endpoint: token_endpoint.to_owned(),
                device_authorization_endpoint: None,
                authorization_endpoint: None,
                revocation_endpoint: None,
                client_id: client_id.to_owned(),
                client_auth: AUTH_NONE.to_owned(),
                scopes: Vec::new(),
            },
            client_secret: None,
        })
    }

    /// The device authorization endpoint (RFC 8628), for `login --device`.
    ///
    /// # Errors
    /// As [`new`](Self::new), for this URL.
    pub fn device_authorization_endpoint(mut self, url: &str) -> Result<Self, RefreshError> {
        check_url(url, "device authorization")?;
        self.settings.device_authorization_endpoint = Some(url.to_owned());
        Ok(self)
    }

    /// The authorization endpoint, for the authorization code grant with PKCE.
    ///
    /// # Errors
    /// As [`new`](Self::new), for this URL.
    pub fn authorization_endpoint(mut self, url: &str) -> Result<Self, RefreshError> {
        check_url(url, "authorization")?;
        self.settings.authorization_endpoint = Some(url.to_owned());
        Ok(self)
    }

    /// The revocation endpoint (RFC 7009), for logging out.
    ///
    /// # Errors
    /// As [`new`](Self::new), for this URL.
    pub fn revocation_endpoint(mut self, url: &str) -> Result<Self, RefreshError> {
        check_url(url, "revocation")?;
        self.settings.revocation_endpoint = Some(url.to_owned());
        Ok(self)
    }

    /// Authenticates the client with `secret`, sent as `auth` says (a confidential client).
    #[must_use]
    pub fn client_secret(mut self, secret: SecretString, auth: ClientAuth) -> Self {
        self.settings.client_auth = match auth {
            ClientAuth::Basic => AUTH_BASIC,
            ClientAuth::Post => AUTH_POST,
        }
        .to_owned();
        self.client_secret = Some(secret);
        self
    }

    /// The scopes to ask for by default.
    #[must_use]
    pub fn scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.settings.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// The token endpoint.
    pub fn token_endpoint(&self) -> &str {
        &self.settings.token_endpoint
    }

    /// The device authorization endpoint, if set.
    pub fn device_authorization_url(&self) -> Option<&str> {
        self.settings.device_authorization_endpoint.as_deref()
    }

    /// The authorization endpoint, if set.
    pub fn authorization_url(&self) -> Option<&str> {
        self.settings.authorization_endpoint.as_deref()
    }

    /// The revocation endpoint, if set.
    pub fn revocation_url(&self) -> Option<&str> {
        self.settings.revocation_endpoint.as_deref()
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        &self.settings.client_id
    }

    /// How the client authenticates, `None` for a public client.
    pub fn client_auth(&self) -> Option<ClientAuth> {
        match self.settings.client_auth.as_str() {
            AUTH_BASIC => Some(ClientAuth::Basic),
            AUTH_POST => Some(ClientAuth::Post),
            _ => None,
        }
    }

    /// The default scopes.
    pub fn scope_list(&self) -> &[String] {
        &self.settings.scopes
    }

    /// An [`HttpRefresher`] for this provider: `grant` at its token endpoint, with its client
    /// credentials, its revocation endpoint and its default scopes (a refresh-token grant
    /// sends no scope, and so keeps the grant's own).
    ///
    /// # Errors
    /// As [`HttpRefresher::refresh_token_grant`] (the URLs were checked when the provider was
    /// made, so only a provider record written by another program can fail here).
    pub fn refresher(&self, grant: GrantType) -> Result<HttpRefresher, RefreshError> {
        let mut refresher = match grant {
            GrantType::ClientCredentials => HttpRefresher::client_credentials_grant(
                &self.settings.token_endpoint,
                &self.settings.client_id,
            )?
            .scopes(self.settings.scopes.iter().cloned()),
            _ => HttpRefresher::refresh_token_grant(
                &self.settings.token_endpoint,
                &self.settings.client_id,
            )?,
        };
        if let (Some(secret), Some(auth)) = (&self.client_secret, self.client_auth()) {
            refresher = refresher.client_secret(secret.clone(), auth);
        }
        if let Some(url) = &self.settings.revocation_endpoint {
            refresher = refresher.revocation_url(url)?;
        }
        Ok(refresher)
    }

    fn encode(&self) -> Result<Secret> {
        let mut bytes = vec![SETTINGS_VERSION];
        serde_json::to_writer(&mut bytes, &self.settings)
            .map_err(|e| Error::backend(format!("internal: provider settings: {e}")))?;
        Ok(Secret::from_bytes(bytes.into()))
    }

    fn decode(name: &str, stored: &Secret, secret: Option<Secret>) -> Result<Self> {
        let damaged = |reason: &str| Error::Provider {
            name: name.to_owned(),
            reason: format!("its stored settings are unusable: {reason}"),
        };
        let bytes = stored.expose_bytes();
        if bytes.len() > MAX_SETTINGS_LEN {
            return Err(damaged("too long"));
        }
        let (version, json) = bytes.split_first().ok_or_else(|| damaged("empty"))?;
        if *version != SETTINGS_VERSION {
            return Err(damaged("written by a newer tokenvault"));
        }
        let settings: Settings =
            serde_json::from_slice(json).map_err(|_| damaged("not the settings' JSON"))?;
        // A record written by another program is held to the same rules as a new provider.
        let mut provider = Self::new(&settings.token_endpoint, &settings.client_id)
            .map_err(|e| damaged(e.message()))?;
        for (url, what) in [
            (
                &settings.device_authorization_endpoint,
                "device authorization",
            ),
            (&settings.authorization_endpoint, "authorization"),
            (&settings.revocation_endpoint, "revocation"),
        ] {
            if let Some(url) = url {
                check_url(url, what).map_err(|e| damaged(e.message()))?;
            }
        }
        if ![AUTH_NONE, AUTH_BASIC, AUTH_POST].contains(&settings.client_auth.as_str()) {
            return Err(damaged("unknown client authentication"));
        }
        let client_secret = match (secret, settings.client_auth.as_str()) {
            (None, AUTH_NONE) => None,
            (Some(secret), auth) if auth != AUTH_NONE => {
                let text = std::str::from_utf8(secret.expose_bytes())
                    .map_err(|_| damaged("the client secret is not UTF-8"))?;
                Some(SecretString::from(text.to_owned()))
            }
            _ => return Err(damaged("the client secret and its method disagree")),
        };
        provider.settings = settings;
        provider.client_secret = client_secret;
        Ok(provider)
    }
}

impl fmt::Debug for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Provider")
            .field("token_endpoint", &self.settings.token_endpoint)
            .field(
                "device_authorization_endpoint",
                &self.settings.device_authorization_endpoint,
            )
            .field(
                "authorization_endpoint",
                &self.settings.authorization_endpoint,
            )
            .field("revocation_endpoint", &self.settings.revocation_endpoint)
            .field("client_id", &self.settings.client_id)
            .field("client_auth", &self.settings.client_auth)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "[REDACTED]"),
            )
            .field("scopes", &self.settings.scopes)
            .finish()
    }
}

/// The providers of one namespace, and which provider each token is bound to.
///
/// ```
/// use tokenvault::oauth::{GrantType, Provider, Providers};
/// use tokenvault::{KeySource, Token, Vault};
/// use tokenvault::secrecy::SecretBox;
///
/// # let dir = tempfile::tempdir()?;
/// let vault = Vault::create(dir.path().join("v"), &KeySource::raw_key(SecretBox::new(Box::new([1; 32]))))?;
/// let ns = vault.namespace("alice")?;
/// let providers = Providers::new(&ns);
/// providers.put("example", &Provider::new("https://auth.example.org/token", "cli")?)?;
/// ns.put("api", &Token::new("at".into()))?;
/// providers.bind("api", "example", GrantType::RefreshToken)?;
///
/// assert_eq!(providers.names()?, ["example"]);
/// assert_eq!(providers.bound("api")?, Some(("example".to_owned(), GrantType::RefreshToken)));
/// assert_eq!(ns.keys()?, ["api"]); // providers are internal records
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct Providers {
    ns: Namespace,
}

impl Providers {
    /// The providers of `ns`.
    pub fn new(ns: &Namespace) -> Self {
        Self { ns: ns.clone() }
    }

    /// Stores `provider` as `name` (replacing one of that name), with its client secret in
    /// a record of its own, in one atomic batch.
    ///
    /// # Errors
    /// [`Error::InvalidName`] for a name that is not a valid record key; storage errors.
    pub fn put(&self, name: &str, provider: &Provider) -> Result<()> {
        let mut batch = self.ns.vault().batch();
        batch.put(
            &self.ns,
            &InternalKey::new(SETTINGS, name)?,
            &provider.encode()?,
        )?;
        let secret_key = InternalKey::new(SECRET, name)?;
        match &provider.client_secret {
            Some(secret) => {
                let bytes = secret.expose_secret().as_bytes().to_vec();
                batch.put(&self.ns, &secret_key, &Secret::from_bytes(bytes.into()))?;
            }
            None => {
                batch.remove(&self.ns, &secret_key)?;
            }
        }
        batch
            .commit()?
            .map(drop)
            .map_err(|_| Error::backend("internal: an unconditional batch conflicted"))
    }

    /// The provider `name`, if there is one.
    ///
    /// ```
    /// use tokenvault::oauth::{GrantType, Provider, Providers};
    /// use tokenvault::{KeySource, Token, Vault};
    /// use tokenvault::secrecy::SecretBox;
    ///
    /// # let dir = tempfile::tempdir()?;
    /// let vault = Vault::create(dir.path().join("v"), &KeySource::raw_key(SecretBox::new(Box::new([1; 32]))))?;
    /// let providers = Providers::new(&vault.namespace("alice")?);
    /// providers.put("idp", &Provider::new("https://idp.example.org/token", "cli")?)?;
    /// assert_eq!(providers.get("idp")?.unwrap().client_id(), "cli");
    /// providers.bind("api", "idp", GrantType::RefreshToken)?;
    /// providers.unbind("api")?;
    /// assert_eq!(providers.bound("api")?, None);
    /// assert!(providers.remove("idp")?);
    /// assert!(providers.get("idp")?.is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Provider`] if its stored settings are unusable; storage errors.
    pub fn get(&self, name: &str) -> Result<Option<Provider>> {
        let Some((settings, _)) = self
            .ns
            .get_internal::<Secret>(&InternalKey::new(SETTINGS, name)?)?
        else {
            return Ok(None);
        };
        let secret = self
            .ns
            .get_internal::<Secret>(&InternalKey::new(SECRET, name)?)?
            .map(|(secret, _)| secret);
        Provider::decode(name, &settings, secret).map(Some)
    }

    /// The names of the namespace's providers, sorted (opens every record of the namespace,
    /// as [`Namespace::keys`] does).
    ///
    /// # Errors
    /// Storage errors.
    pub fn names(&self) -> Result<Vec<String>> {
        self.ns.internal_keys(SETTINGS)
    }

    /// Removes provider `name` and its client secret; returns whether there was one. Tokens
    /// bound to it keep their binding, and cannot be refreshed until a provider of that name
    /// is stored again.
    ///
    /// # Errors
    /// Storage errors.
    pub fn remove(&self, name: &str) -> Result<bool> {
        let existed = self
            .ns
            .get_internal::<Secret>(&InternalKey::new(SETTINGS, name)?)?
            .is_some();
        let mut batch = self.ns.vault().batch();
        batch.remove(&self.ns, &InternalKey::new(SETTINGS, name)?)?;
        batch.remove(&self.ns, &InternalKey::new(SECRET, name)?)?;
        batch
            .commit()?
            .map_err(|_| Error::backend("internal: an unconditional batch conflicted"))?;
        Ok(existed)
    }

    /// Binds the token `key` to provider `name`: it is refreshed there with `grant` (the
    /// refresh-token grant for a user's login, the client-credentials grant for a service's
    /// own token), and revoked there on logout.
    ///
    /// # Errors
    /// [`Error::Provider`] if there is no provider `name`; storage errors.
    pub fn bind(&self, key: &str, name: &str, grant: GrantType) -> Result<()> {
        if self.get(name)?.is_none() {
            return Err(Error::Provider {
                name: name.to_owned(),
                reason: "there is no such provider in this namespace".into(),
            });
        }
        let code = match grant {
            GrantType::ClientCredentials => GRANT_CLIENT_CREDENTIALS,
            _ => GRANT_REFRESH_TOKEN,
        };
        let mut value = Vec::with_capacity(1 + name.len());
        value.push(code);
        value.extend_from_slice(name.as_bytes());
        let mut batch = self.ns.vault().batch();
        batch.put(
            &self.ns,
            &InternalKey::new(BINDING, key)?,
            &Secret::from_bytes(value.into()),
        )?;
        batch
            .commit()?
            .map(drop)
            .map_err(|_| Error::backend("internal: an unconditional batch conflicted"))
    }

    /// The provider the token `key` is bound to, and the grant that refreshes it, if any.
    ///
    /// # Errors
    /// [`Error::Provider`] for a binding that does not read; storage errors.
    pub fn bound(&self, key: &str) -> Result<Option<(String, GrantType)>> {
        let Some((value, _)) = self
            .ns
            .get_internal::<Secret>(&InternalKey::new(BINDING, key)?)?
        else {
            return Ok(None);
        };
        let unusable = || Error::Provider {
            name: String::new(),
            reason: format!("the binding of {key:?} does not read"),
        };
        let (code, name) = value.expose_bytes().split_first().ok_or_else(unusable)?;
        let grant = match *code {
            GRANT_REFRESH_TOKEN => GrantType::RefreshToken,
            GRANT_CLIENT_CREDENTIALS => GrantType::ClientCredentials,
            _ => return Err(unusable()),
        };
        let name = String::from_utf8(name.to_vec()).map_err(|_| unusable())?;
        Ok(Some((name, grant)))
    }

    /// Logs in with provider `name` by the device authorization grant (RFC 8628) and stores
    /// the answer under `key`, bound to the provider: `show` gets the user code and
    /// verification URI to show the user, then this polls until the user approves. `scopes`
    /// replace the provider's default scopes when given. Nothing is written anywhere but the
    /// vault. The vault stays open meanwhile: on sled, its directory stays locked for the
    /// whole login (`tokenvault login` closes it during the flow and stores with
    /// [`store_login`](Self::store_login)).
    ///
    /// # Errors
    /// [`TokenError::Refresh`] for the flow's failures (`access_denied`, `expired_token`,
    /// a transient failure); [`Error::Provider`] for no such provider or one without a device
    /// authorization endpoint; storage errors.
    pub fn login_device(
        &self,
        key: &str,
        name: &str,
        scopes: Option<&[String]>,
        show: impl FnOnce(&DeviceAuthorization),
    ) -> TokenResult<Token> {
        let (provider, refresher) = self.login_refresher(name, scopes, GrantType::RefreshToken)?;
        let url = provider
            .device_authorization_url()
            .ok_or_else(|| missing_endpoint(name, "device authorization"))?;
        let mut authorization = refresher.device_authorization(url)?;
        show(&authorization);
        let response = refresher.poll_device(&mut authorization)?;
        self.store_login(key, name, &response, GrantType::RefreshToken)
    }

    /// Logs in with provider `name` by the authorization code grant with PKCE and a loopback
    /// redirect, and stores the answer under `key`, bound to the provider: `open` gets the
    /// URL to open in a browser (start one, or show it), then this waits at most `wait` for
    /// the redirect.
    ///
    /// # Errors
    /// As [`login_device`](Self::login_device); a forged redirect (`state` mismatch) is
    /// refused as [`TokenError::Refresh`].
    pub fn login_browser(
        &self,
        key: &str,
        name: &str,
        scopes: Option<&[String]>,
        wait: Duration,
        open: impl FnOnce(&str),
    ) -> TokenResult<Token> {
        let (provider, refresher) = self.login_refresher(name, scopes, GrantType::RefreshToken)?;
        let url = provider
            .authorization_url()
            .ok_or_else(|| missing_endpoint(name, "authorization"))?;
        let login = refresher.browser_login(url)?;
        open(login.authorization_url());
        let response = login.finish(&refresher, wait)?;
        self.store_login(key, name, &response, GrantType::RefreshToken)
    }

    /// Gets the client's own token from provider `name` (the client-credentials grant) and
    /// stores it under `key`, bound to the provider, which mints a new one when it expires.
    ///
    /// # Errors
    /// [`Error::Provider`] for no such provider or one without a client secret; the grant's
    /// failures as [`TokenError::Refresh`]; storage errors.
    pub fn login_client_credentials(
        &self,
        key: &str,
        name: &str,
        scopes: Option<&[String]>,
    ) -> TokenResult<Token> {
        let (provider, refresher) =
            self.login_refresher(name, scopes, GrantType::ClientCredentials)?;
        if provider.client_auth().is_none() {
            return Err(Error::Provider {
                name: name.to_owned(),
                reason: "it has no client secret: the client-credentials grant needs a \
                         confidential client"
                    .into(),
            }
            .into());
        }
        // A new login replaces what was stored: the old token goes, so that the authorizer
        // mints a new one.
        self.ns.remove(key)?;
        self.bind(key, name, GrantType::ClientCredentials)?;
        Authorizer::builder(&self.ns, key, refresher)
            .build()?
            .token()
    }

    /// The provider `name` and a refresher for `grant` with `scopes` (else its own).
    fn login_refresher(
        &self,
        name: &str,
        scopes: Option<&[String]>,
        grant: GrantType,
    ) -> TokenResult<(Provider, HttpRefresher)> {
        let provider = self.get(name)?.ok_or_else(|| Error::Provider {
            name: name.to_owned(),
            reason: "there is no such provider in this namespace".into(),
        })?;
        let scopes = scopes.map_or_else(|| provider.scope_list().to_vec(), <[String]>::to_vec);
        let refresher = provider.refresher(grant)?.scopes(scopes);
        Ok((provider, refresher))
    }

    /// Stores a login's answer under `key` and binds it to provider `name` for `grant`: what
    /// the `login_*` flows do once they have the answer (for a caller that ran a flow's steps
    /// itself, for example with the vault closed meanwhile so that it holds no lock).
    ///
    /// # Errors
    /// [`TokenError::InvalidResponse`] unless the answer holds exactly one token;
    /// [`Error::Provider`] if there is no provider `name`; storage errors.
    pub fn store_login(
        &self,
        key: &str,
        name: &str,
        response: &TokenResponse,
        grant: GrantType,
    ) -> TokenResult<Token> {
        self.ns.store_response_as(key, response)?;
        self.bind(key, name, grant)?;
        self.ns.get::<Token>(key)?.ok_or_else(|| {
            TokenError::Vault(Error::backend("the token stored by the login is gone"))
        })
    }

    /// Removes the token `key`'s binding (with the token, when logging out).
    ///
    /// # Errors
    /// Storage errors.
    pub fn unbind(&self, key: &str) -> Result<()> {
        let mut batch = self.ns.vault().batch();
        batch.remove(&self.ns, &InternalKey::new(BINDING, key)?)?;
        batch
            .commit()?
            .map(drop)
            .map_err(|_| Error::backend("internal: an unconditional batch conflicted"))
    }
}

/// A provider without the endpoint a flow needs.
fn missing_endpoint(name: &str, what: &str) -> TokenError {
    Error::Provider {
        name: name.to_owned(),
        reason: format!("it has no {what} endpoint"),
    }
    .into()
}
