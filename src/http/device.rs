//! The device authorization grant (RFC 8628): ask the device authorization endpoint for a
//! user code, show it, and poll the token endpoint until the user approves, denies, or the
//! code expires.

use std::fmt;
use std::time::{Duration, SystemTime};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::exchange::{failure, read_body};
use super::HttpRefresher;
use crate::refresh::RefreshError;
use crate::response::TokenResponse;

/// The `grant_type` of a device access token request (RFC 8628 section 3.4).
const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// The polling interval when the server gives none (RFC 8628 section 3.2).
const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// What `slow_down` adds to the interval (RFC 8628 section 3.5).
const SLOW_DOWN: Duration = Duration::from_secs(5);
/// The longest interval and lifetime accepted from a server.
const MAX_INTERVAL: Duration = Duration::from_secs(300);
const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// A device authorization in progress (RFC 8628): what to show the user, and the device
/// code to poll with (never shown: `Debug` redacts it).
///
/// Made by [`HttpRefresher::device_authorization`]; finished by
/// [`HttpRefresher::poll_device`].
pub struct DeviceAuthorization {
    device_code: SecretString,
    user_code: String,
    verification_uri: String,
    verification_uri_complete: Option<String>,
    interval: Duration,
    expires_at: SystemTime,
}

/// The answer (RFC 8628 section 3.2). The device code is borrowed from the wiped answer
/// buffer (a code with JSON escapes in it is refused rather than copied unwiped).
#[derive(Deserialize)]
struct Answer<'a> {
    #[serde(borrow)]
    device_code: &'a str,
    user_code: String,
    #[serde(alias = "verification_url")]
    verification_uri: String,
    #[serde(default)]
    verification_uri_complete: Option<String>,
    expires_in: u64,
    #[serde(default)]
    interval: Option<u64>,
}

impl DeviceAuthorization {
    /// The code the user types at the verification URI.
    pub fn user_code(&self) -> &str {
        &self.user_code
    }

    /// Where the user goes to approve.
    pub fn verification_uri(&self) -> &str {
        &self.verification_uri
    }

    /// The verification URI with the user code in it, if the server gave one.
    pub fn verification_uri_complete(&self) -> Option<&str> {
        self.verification_uri_complete.as_deref()
    }

    /// When the device code expires.
    pub fn expires_at(&self) -> SystemTime {
        self.expires_at
    }

    /// The polling interval now (grown by every `slow_down`).
    pub fn interval(&self) -> Duration {
        self.interval
    }
}

impl fmt::Debug for DeviceAuthorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceAuthorization")
            .field("device_code", &"[REDACTED]")
            .field("user_code", &self.user_code)
            .field("verification_uri", &self.verification_uri)
            .field("interval", &self.interval)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// A printable URI or code from a server: printable ASCII, at most 512 bytes.
fn printable(text: &str, what: &str) -> Result<String, RefreshError> {
    if text.is_empty() || text.len() > 512 || !text.bytes().all(|b| (0x21..0x7f).contains(&b)) {
        return Err(RefreshError::rejected(format!(
            "the device authorization answer's {what} is empty, too long or not printable"
        )));
    }
    Ok(text.to_owned())
}

impl HttpRefresher {
    /// Starts a device authorization (RFC 8628 section 3.1) at `url`: sends the client id
    /// (and its authentication, for a confidential client) and the refresher's scopes, and
    /// returns what the user must see.
    ///
    /// ```no_run
    /// use tokenvault::oauth::{GrantType, Provider};
    /// use tokenvault::store::TokenStore as _;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let vault: tokenvault::Vault = unimplemented!();
    /// let provider = Provider::new("https://github.com/login/oauth/access_token", "Iv1.abc")?
    ///     .device_authorization_endpoint("https://github.com/login/device/code")?
    ///     .scopes(["repo"]);
    /// let refresher = provider.refresher(GrantType::RefreshToken)?.scopes(["repo"]);
    /// let mut login = refresher.device_authorization("https://github.com/login/device/code")?;
    /// eprintln!("Open {} and enter {}", login.verification_uri(), login.user_code());
    /// let response = refresher.poll_device(&mut login)?; // waits for the approval
    /// vault.namespace("alice")?.store_response_as("github", &response)?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As a refresh: [`RefreshErrorKind::Transient`](crate::oauth::RefreshErrorKind) for a
    /// server or network failure, `Rejected` for a refusal or an answer that is not a device
    /// authorization response.
    pub fn device_authorization(&self, url: &str) -> Result<DeviceAuthorization, RefreshError> {
        let scope = self.scopes.join(" ");
        let mut fields: Vec<(&str, &str)> = Vec::with_capacity(4);
        if !scope.is_empty() {
            fields.push(("scope", &scope));
        }
        let secrets = self.secrets(None);
        let started = self.clock.now();
        let response = self.post(url, &mut fields, false)?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            return Err(failure(response, status, &secrets, "device authorization"));
        }
        let body = read_body(response.into_body())?;
        let answer: Answer = serde_json::from_slice(&body).map_err(|_| {
            RefreshError::rejected("the device authorization endpoint's answer is not usable")
        })?;
        let interval = answer
            .interval
            .map_or(DEFAULT_INTERVAL, Duration::from_secs)
            .clamp(Duration::from_secs(1), MAX_INTERVAL);
        let lifetime = Duration::from_secs(answer.expires_in).min(MAX_LIFETIME);
        Ok(DeviceAuthorization {
            device_code: SecretString::from(answer.device_code.to_owned()),
            user_code: printable(&answer.user_code, "user code")?,
            verification_uri: printable(&answer.verification_uri, "verification URI")?,
            verification_uri_complete: answer
                .verification_uri_complete
                .as_deref()
                .map(|uri| printable(uri, "complete verification URI"))
                .transpose()?,
            interval,
            expires_at: started + lifetime,
        })
    }

    /// Polls the token endpoint for `authorization` (RFC 8628 section 3.4) until the user
    /// approves: waits the interval on the refresher's [clock](Self::clock) before each
    /// request, keeps going on `authorization_pending`, adds 5 s to the interval on
    /// `slow_down`, and stops on `access_denied`, `expired_token` or the code's expiry.
    /// Returns the token response, its expiries counted from the request that got it.
    ///
    /// # Errors
    /// `Rejected` with the OAuth error `access_denied` (the user said no) or
    /// `expired_token` (too late: start again); a network or server failure as a refresh's
    /// (`Transient`), after which polling may start again with the same authorization.
    pub fn poll_device(
        &self,
        authorization: &mut DeviceAuthorization,
    ) -> Result<TokenResponse, RefreshError> {
        loop {
            if self.clock.now() + authorization.interval > authorization.expires_at {
                return Err(RefreshError::rejected(
                    "the device code expired before the user approved: log in again",
                )
                .with_oauth_error("expired_token"));
            }
            self.clock.sleep(authorization.interval);
            let device_code = authorization.device_code.expose_secret();
            let mut fields: Vec<(&str, &str)> =
                vec![("grant_type", DEVICE_GRANT), ("device_code", device_code)];
            let mut secrets = self.secrets(None);
            secrets.0.push(device_code);
            let sent_at = self.clock.now();
            let response = self.post(&self.token_url, &mut fields, false)?;
            let status = response.status().as_u16();
            if !(200..300).contains(&status) {
                let error = failure(response, status, &secrets, "token");
                match error.oauth_error() {
                    Some("authorization_pending") => continue,
                    Some("slow_down") => {
                        authorization.interval =
                            (authorization.interval + SLOW_DOWN).min(MAX_INTERVAL);
                        continue;
                    }
                    Some("access_denied") => {
                        return Err(RefreshError::rejected("the user denied the authorization")
                            .with_oauth_error("access_denied"))
                    }
                    Some("expired_token") => {
                        return Err(RefreshError::rejected(
                            "the device code expired before the user approved: log in again",
                        )
                        .with_oauth_error("expired_token"))
                    }
                    _ => return Err(error),
                }
            }
            let body = read_body(response.into_body())?;
            return TokenResponse::from_json(&body, sent_at).map_err(|_| {
                RefreshError::rejected(
                    "the token endpoint's answer to the device grant is not a token response",
                )
            });
        }
    }
}
