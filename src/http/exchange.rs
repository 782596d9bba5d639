//! The exchange: the token request the refresher sends, and what it makes of the answer.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret;
use zeroize::Zeroizing;

use super::form::{basic_authorization, form_encode};
use super::redact::{OAuthError, Secrets};
use super::transport::{self, answer_read_error, check_url, rebuild, transport_error, Progress};
use super::{ClientAuth, GrantType, HttpRefresher};
use crate::refresh::{RefreshError, Refresher};
use crate::response::{TokenResponse, MAX_RESPONSE_LEN};
use crate::token::Token;

impl Refresher for HttpRefresher {
    fn refresh(&self, current: Option<&Token>) -> Result<Token, RefreshError> {
        let result = self.exchange(current);
        match result {
            // Sending the client's credentials again spends nothing: never ambiguous.
            Err(e)
                if self.grant == GrantType::ClientCredentials && e.request_possibly_processed() =>
            {
                Err(rebuild(&e, e.message().to_owned()))
            }
            other => other,
        }
    }
}

impl HttpRefresher {
    /// One token request, as [`Refresher::refresh`] describes.
    fn exchange(&self, current: Option<&Token>) -> Result<Token, RefreshError> {
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
        // A success status means the server processed the request: it may have rotated the
        // refresh token. An answer we cannot read or use is therefore also possibly
        // processed, so that the authorizer does not present that refresh token again
        // (unless its `AmbiguousFailure` policy says the server does not rotate).
        let body =
            read_body(response.into_body()).map_err(|e| e.with_request_possibly_processed())?;
        match TokenResponse::from_json(&body, sent_at) {
            Ok(answer) => pick_token(answer, current, &secrets)
                .map_err(|e| e.with_request_possibly_processed()),
            Err(e) => Err(match OAuthError::parse(&body, &secrets) {
                Some(oauth) => oauth.into_error(status, "token"),
                None => RefreshError::rejected(
                    secrets
                        .filter(format!(
                            "the token endpoint's HTTP {status} answer is not usable ({e})"
                        ))
                        .unwrap_or_else(|| {
                            format!("the token endpoint's HTTP {status} answer is not usable")
                        }),
                )
                .with_request_possibly_processed(),
            }),
        }
    }
}

impl HttpRefresher {
    /// The secrets a request for `token` carries: an error description must not repeat them.
    pub(super) fn secrets<'a>(&'a self, token: Option<&'a Token>) -> Secrets<'a> {
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
    pub(super) fn post<'a>(
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
        let target = check_url(url, "request")?;
        let progress = Arc::new(Progress::default());
        let agent = transport::agent(&target, self.timeout, self.roots.as_ref(), &progress);
        let mut request = agent
            .post(target)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("Accept", "application/json");
        if let Some(value) = &basic {
            request = request.header("Authorization", value.as_str());
        }
        request
            .send(body.as_bytes())
            .map_err(|e| transport_error(e, progress.written()))
    }
}

/// The error for a non-2xx answer.
pub(super) fn failure(
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
    // 503, 429 and 408 say the request was not taken on: retry it as it was.
    if status == 503 || status == 429 || status == 408 {
        return with_wait(RefreshError::transient(format!(
            "the {what} endpoint answered HTTP {status}"
        )));
    }
    let body = match read_body(response.into_body()) {
        Ok(body) => body,
        Err(e) if (500..600).contains(&status) => return with_wait(e),
        Err(e) => return e,
    };
    if let Some(oauth) = OAuthError::parse(&body, secrets) {
        return with_wait(oauth.into_error(status, what));
    }
    if (500..600).contains(&status) {
        // Another 5xx without an OAuth error: a gateway's 502 or 504, or a 500 raised after
        // the server committed, can come after the server rotated the refresh token.
        return with_wait(
            RefreshError::transient(format!(
                "the {what} endpoint answered HTTP {status}; the request may have been \
                 processed"
            ))
            .with_request_possibly_processed(),
        );
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

/// Reads an answer into a wiped buffer, refusing more than [`MAX_RESPONSE_LEN`] bytes.
/// The buffer grows by copying into a new wiped buffer, never by reallocating in place.
pub(super) fn read_body(body: ureq::Body) -> Result<Zeroizing<Vec<u8>>, RefreshError> {
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
            Err(e) => return Err(answer_read_error(&e)),
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
fn pick_token(
    answer: TokenResponse,
    current: Option<&Token>,
    secrets: &Secrets<'_>,
) -> Result<Token, RefreshError> {
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
        (Some(want), Some(got)) if want != got => Err(RefreshError::rejected(
            secrets
                .filter(format!(
                    "the token endpoint answered with a token for resource server {got:?}, \
                     not {want:?}"
                ))
                .unwrap_or_else(|| {
                    "the token endpoint answered with a token for another resource server"
                        .to_owned()
                }),
        )),
        _ => Ok(token),
    }
}

/// `Retry-After` in seconds (the HTTP-date form is ignored), capped at [`MAX_RETRY_AFTER`].
fn retry_after(headers: &ureq::http::HeaderMap) -> Option<Duration> {
    let value = headers.get("retry-after")?.to_str().ok()?;
    let secs: u64 = value.trim().parse().ok()?;
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
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
/// First size of the answer buffer when the answer has no `Content-Length`.
const INITIAL_BODY_CAPACITY: usize = 4096;
