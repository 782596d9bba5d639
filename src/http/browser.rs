//! The authorization code grant with PKCE (RFC 6749 section 4.1, RFC 7636 with S256 only)
//! and a loopback redirect (RFC 8252 section 7.3): a listener on 127.0.0.1 with a port the
//! OS picks, one redirect served, `state` checked, the code exchanged with its verifier.

use std::fmt;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use base64ct::{Base64UrlUnpadded, Encoding};
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use super::exchange::{failure, read_body};
use super::form::encode_into;
use super::HttpRefresher;
use crate::crypto::{fill_random, sha256};
use crate::refresh::RefreshError;
use crate::response::TokenResponse;

/// The path the loopback listener serves.
const CALLBACK_PATH: &str = "/callback";
/// Longest request line (and header block) read from the browser.
const MAX_REQUEST: usize = 8 * 1024;

/// An authorization code login in progress: the URL to open in a browser, and the loopback
/// listener that receives the redirect. The PKCE verifier and the `state` are random, held as
/// secrets, and never shown (`Debug` redacts them); the URL carries only the S256 challenge
/// and the state.
///
/// Made by [`HttpRefresher::browser_login`]; finished by [`BrowserLogin::finish`].
pub struct BrowserLogin {
    listener: TcpListener,
    redirect_uri: String,
    authorization_url: String,
    state: SecretString,
    verifier: SecretString,
}

impl fmt::Debug for BrowserLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrowserLogin")
            .field("redirect_uri", &self.redirect_uri)
            .field("state", &"[REDACTED]")
            .field("verifier", &"[REDACTED]")
            .finish_non_exhaustive()
    }
}

/// `bytes` (at most 64) as unpadded base64url.
fn base64url(bytes: &[u8]) -> Result<String, RefreshError> {
    let mut buf = Zeroizing::new([0u8; 96]);
    Base64UrlUnpadded::encode(bytes, &mut buf[..])
        .map(str::to_owned)
        .map_err(|_| RefreshError::rejected("internal: base64url buffer"))
}

/// `len` random bytes as unpadded base64url.
fn random_text(len: usize) -> Result<SecretString, RefreshError> {
    let mut bytes = Zeroizing::new(vec![0u8; len]);
    fill_random(&mut bytes).map_err(|e| RefreshError::transient(e.to_string()))?;
    Ok(SecretString::from(base64url(&bytes)?))
}

impl HttpRefresher {
    /// Starts an authorization code login with PKCE at `authorization_url`: binds a listener
    /// on `127.0.0.1` (port chosen by the OS), and builds the URL to open, with
    /// `response_type=code`, the client id, the redirect URI
    /// `http://127.0.0.1:PORT/callback`, the refresher's scopes, a random `state` and the
    /// S256 challenge of a random 43-character verifier.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use tokenvault::oauth::{GrantType, Provider};
    /// use tokenvault::store::TokenStore as _;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let vault: tokenvault::Vault = unimplemented!();
    /// let provider = Provider::new("https://oauth2.googleapis.com/token", "1234.apps.googleusercontent.com")?
    ///     .authorization_endpoint("https://accounts.google.com/o/oauth2/v2/auth")?;
    /// let refresher = provider.refresher(GrantType::RefreshToken)?.scopes(["openid", "email"]);
    /// let login = refresher.browser_login("https://accounts.google.com/o/oauth2/v2/auth")?;
    /// eprintln!("Open {}", login.authorization_url()); // or start a browser on it
    /// let response = login.finish(&refresher, Duration::from_secs(300))?;
    /// vault.namespace("alice")?.store_response_as("google", &response)?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// `Rejected` for an authorization URL that is not `https` (or loopback `http`);
    /// `Transient` if no loopback port can be bound.
    pub fn browser_login(&self, authorization_url: &str) -> Result<BrowserLogin, RefreshError> {
        super::check_url(authorization_url, "authorization")?;
        if authorization_url.contains('#') {
            return Err(RefreshError::rejected(
                "the authorization URL must not have a fragment",
            ));
        }
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(|e| RefreshError::transient(format!("cannot listen on 127.0.0.1: {e}")))?;
        let port = listener
            .local_addr()
            .map_err(|e| RefreshError::transient(format!("no loopback port: {e}")))?
            .port();
        let redirect_uri = format!("http://127.0.0.1:{port}{CALLBACK_PATH}");
        let state = random_text(16)?;
        let verifier = random_text(32)?;
        let challenge = base64url(&sha256(verifier.expose_secret().as_bytes()))?;
        let scope = self.scopes.join(" ");
        let mut url = String::with_capacity(authorization_url.len() + 256);
        url.push_str(authorization_url);
        url.push(if authorization_url.contains('?') {
            '&'
        } else {
            '?'
        });
        let mut fields = vec![
            ("response_type", "code"),
            ("client_id", self.client_id.as_str()),
            ("redirect_uri", redirect_uri.as_str()),
            ("state", state.expose_secret()),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ];
        if !scope.is_empty() {
            fields.push(("scope", &scope));
        }
        for (i, (name, value)) in fields.iter().enumerate() {
            if i > 0 {
                url.push('&');
            }
            url.push_str(name);
            url.push('=');
            encode_into(value, &mut url);
        }
        Ok(BrowserLogin {
            listener,
            redirect_uri,
            authorization_url: url,
            state,
            verifier,
        })
    }
}

impl BrowserLogin {
    /// The URL to open in a browser.
    pub fn authorization_url(&self) -> &str {
        &self.authorization_url
    }

    /// The loopback redirect URI the listener serves.
    pub fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }

    /// Waits (at most `wait`) for the browser's redirect to the loopback listener, serves that
    /// one request (requests for other paths get a 404 and are not counted), closes the
    /// listener, checks `state`, and exchanges the code with the PKCE verifier at the
    /// refresher's token endpoint.
    ///
    /// # Errors
    /// `Rejected` with the OAuth error the redirect carried (`access_denied`, ...), for a
    /// `state` that does not match (a forged redirect), a redirect without a code, or the
    /// token endpoint's refusal (`invalid_grant` if the verifier does not match the
    /// challenge); `Transient` if no redirect came within `wait` (OAuth error
    /// `expired_token`), or for a network failure.
    pub fn finish(
        self,
        refresher: &HttpRefresher,
        wait: Duration,
    ) -> Result<TokenResponse, RefreshError> {
        let code = self.receive(wait)?;
        drop(self.listener);
        let mut fields: Vec<(&str, &str)> = vec![
            ("grant_type", "authorization_code"),
            ("code", code.expose_secret()),
            ("redirect_uri", &self.redirect_uri),
            ("code_verifier", self.verifier.expose_secret()),
        ];
        let mut secrets = refresher.secrets(None);
        secrets.0.push(code.expose_secret());
        secrets.0.push(self.verifier.expose_secret());
        let sent_at = refresher.clock.now();
        let response = refresher.post(&refresher.token_url, &mut fields, false)?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            return Err(failure(response, status, &secrets, "token"));
        }
        let body = read_body(response.into_body())?;
        TokenResponse::from_json(&body, sent_at).map_err(|_| {
            RefreshError::rejected(
                "the token endpoint's answer to the authorization code is not a token response",
            )
        })
    }

    /// Serves the callback: the code, once `state` matched.
    fn receive(&self, wait: Duration) -> Result<SecretString, RefreshError> {
        let deadline = Instant::now() + wait;
        self.listener
            .set_nonblocking(true)
            .map_err(|e| RefreshError::transient(format!("the loopback listener: {e}")))?;
        loop {
            let stream = match self.listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() >= deadline {
                        return Err(RefreshError::transient(
                            "no redirect from the browser came back in time: log in again",
                        )
                        .with_oauth_error("expired_token"));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
                Err(e) => {
                    return Err(RefreshError::transient(format!(
                        "the loopback listener failed: {e}"
                    )))
                }
            };
            if let Some(result) = self.serve(stream, deadline) {
                return result;
            }
        }
    }

    /// One connection: `None` if it was not the callback (answered 404), else its outcome.
    fn serve(
        &self,
        stream: TcpStream,
        deadline: Instant,
    ) -> Option<Result<SecretString, RefreshError>> {
        let _ = stream.set_nonblocking(false);
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(100));
        let _ = stream.set_read_timeout(Some(left.min(Duration::from_secs(10))));
        let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
        let mut reader = BufReader::new(stream.try_clone().ok()?);
        let mut line = Zeroizing::new(String::with_capacity(MAX_REQUEST));
        let read = std::io::Read::take(&mut reader, MAX_REQUEST as u64).read_line(&mut line);
        if read.is_err() {
            return None;
        }
        // Drain the headers (bounded) so that the browser sees a clean answer.
        let mut header = String::with_capacity(1024);
        let mut drained = 0;
        while drained < MAX_REQUEST {
            header.clear();
            match std::io::Read::take(&mut reader, 1024).read_line(&mut header) {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
            if header == "\r\n" || header == "\n" {
                break;
            }
        }
        let mut parts = line.split(' ');
        let (Some("GET"), Some(target)) = (parts.next(), parts.next()) else {
            answer(stream, 405, "Only GET is served here.");
            return None;
        };
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        if path != CALLBACK_PATH {
            answer(stream, 404, "Not found.");
            return None;
        }
        let mut code = None;
        let mut state = None;
        let mut error = None;
        for pair in query.split('&') {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            match name {
                "code" => code = Some(form_decode(value)),
                "state" => state = Some(form_decode(value)),
                "error" => error = Some(form_decode(value)),
                _ => {}
            }
        }
        let state_matches = state.as_deref().is_some_and(|s| {
            subtle::ConstantTimeEq::ct_eq(s.as_bytes(), self.state.expose_secret().as_bytes())
                .into()
        });
        if !state_matches {
            answer(stream, 400, "This login was not started here (its state does not match). You can close this window.");
            return Some(Err(RefreshError::rejected(
                "the redirect's state does not match this login's: refused (a forged or stale \
                 redirect)",
            )));
        }
        if let Some(error) = error {
            answer(
                stream,
                200,
                "The login was not approved. You can close this window.",
            );
            let code: String = error
                .chars()
                .filter(|c| c.is_ascii_graphic())
                .take(64)
                .collect();
            return Some(Err(RefreshError::rejected(format!(
                "the authorization server answered the login with OAuth error {code}"
            ))
            .with_oauth_error(code)));
        }
        match code {
            Some(code) if !code.is_empty() => {
                answer(stream, 200, "Logged in. You can close this window.");
                Some(Ok(SecretString::from(code.as_str().to_owned())))
            }
            _ => {
                answer(
                    stream,
                    400,
                    "The redirect carries no code. You can close this window.",
                );
                Some(Err(RefreshError::rejected("the redirect carries no code")))
            }
        }
    }
}

/// Writes a small HTML page and closes the connection.
fn answer(mut stream: TcpStream, status: u16, text: &str) {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        _ => "Method Not Allowed",
    };
    let body = format!(
        "<!doctype html><html><head><title>tokenvault</title></head><body><p>{text}</p></body></html>"
    );
    let _ = write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/html; charset=utf-8\r\n\
         Content-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.flush();
}

/// `application/x-www-form-urlencoded` decoding into a wiped buffer: `+` is a space, `%XX` a
/// byte; anything invalid is kept as it is. Invalid UTF-8 is replaced.
fn form_decode(text: &str) -> Zeroizing<String> {
    let bytes = text.as_bytes();
    let mut out = Zeroizing::new(Vec::with_capacity(bytes.len()));
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = |b: u8| char::from(b).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    let text = String::from_utf8_lossy(&out).into_owned();
    Zeroizing::new(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_decoding() {
        assert_eq!(*form_decode("a%20b+c"), "a b c");
        assert_eq!(*form_decode("100%"), "100%");
        assert_eq!(*form_decode("%zz"), "%zz");
        assert_eq!(*form_decode("%41"), "A");
    }
}
