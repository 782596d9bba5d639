//! The token server's login flows: the device authorization grant (RFC 8628), scripted poll
//! by poll.

use std::collections::{HashMap, VecDeque};

use sha2::{Digest, Sha256};

use super::{form_decode, Answer, State};

/// What the server answers to one poll of a device code (RFC 8628 section 3.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DevicePoll {
    /// `authorization_pending`: the user has not acted yet.
    Pending,
    /// `slow_down`: the client polls too fast (it must add 5 s to its interval).
    SlowDown,
    /// `access_denied`: the user said no.
    Deny,
    /// `expired_token`: the device code expired.
    Expire,
    /// The user approved: a token (with a live refresh token) is issued.
    Approve,
}

/// The device codes handed out, and the script of the next one.
#[derive(Debug)]
pub(super) struct Logins {
    /// Device code -> the polls still scripted for it.
    codes: HashMap<String, VecDeque<DevicePoll>>,
    /// The script given to the next device authorization.
    pub(super) next_script: Vec<DevicePoll>,
    /// The `interval` of device authorization answers.
    pub(super) interval: u64,
    /// The `expires_in` of device authorization answers.
    pub(super) expires_in: u64,
    /// Polls received (any device code).
    pub(super) polls: usize,
    /// Device authorizations started.
    pub(super) started: usize,
    /// Authorization code -> what it was issued for.
    auth_codes: HashMap<String, Issued>,
    /// Whether the next authorization request is denied (`error=access_denied`).
    pub(super) deny_next: bool,
    /// Whether the next authorization request's challenge is stored altered, so that the
    /// client's verifier will not match it.
    pub(super) corrupt_next_challenge: bool,
    /// Authorization requests received.
    pub(super) authorize_requests: usize,
}

/// What an authorization code was issued for.
#[derive(Debug)]
struct Issued {
    client_id: String,
    redirect_uri: String,
    challenge: String,
}

impl Default for Logins {
    fn default() -> Self {
        Self {
            codes: HashMap::new(),
            next_script: vec![DevicePoll::Approve],
            interval: 1,
            expires_in: 600,
            polls: 0,
            started: 0,
            auth_codes: HashMap::new(),
            deny_next: false,
            corrupt_next_challenge: false,
            authorize_requests: 0,
        }
    }
}

/// `POST /device`: a new device code and user code, given `scope` and the verification URI
/// base `base` (`http://127.0.0.1:PORT`).
pub(super) fn device_authorization(s: &mut State, base: &str) -> Answer {
    let id = s.next_id();
    let device_code = format!("dc-{id}");
    let user_code = format!("WDJB-{id:04}");
    let script = s.logins.next_script.iter().copied().collect();
    s.logins.codes.insert(device_code.clone(), script);
    s.logins.started += 1;
    Answer::json(
        200,
        &serde_json::json!({
            "device_code": device_code,
            "user_code": user_code,
            "verification_uri": format!("{base}/activate"),
            "verification_uri_complete": format!("{base}/activate?user_code={user_code}"),
            "expires_in": s.logins.expires_in,
            "interval": s.logins.interval,
        }),
    )
}

/// `POST /token` with the device code grant.
pub(super) fn device_poll(s: &mut State, device_code: Option<&str>) -> Answer {
    s.logins.polls += 1;
    let Some(code) = device_code else {
        return Answer::oauth_error(400, "invalid_request", Some("device_code is missing"));
    };
    let Some(script) = s.logins.codes.get_mut(code) else {
        return Answer::oauth_error(400, "invalid_grant", Some("unknown device code"));
    };
    let poll = script.pop_front().unwrap_or(DevicePoll::Approve);
    match poll {
        DevicePoll::Pending => Answer::oauth_error(400, "authorization_pending", None),
        DevicePoll::SlowDown => Answer::oauth_error(400, "slow_down", None),
        DevicePoll::Deny => {
            s.logins.codes.remove(code);
            Answer::oauth_error(400, "access_denied", None)
        }
        DevicePoll::Expire => {
            s.logins.codes.remove(code);
            Answer::oauth_error(400, "expired_token", None)
        }
        DevicePoll::Approve => {
            s.logins.codes.remove(code);
            issue_login(s)
        }
    }
}

/// A login's answer: an access token and a new live refresh token (a family of its own).
pub(super) fn issue_login(s: &mut State) -> Answer {
    let id = s.next_id();
    let access = format!("issued-login-{id}");
    let refresh = format!("issued-login-rt-{id}");
    let mut value = serde_json::json!({
        "access_token": access,
        "token_type": "Bearer",
        "refresh_token": refresh,
    });
    if let Some(e) = s.config.expires_in {
        value["expires_in"] = e.into();
    }
    s.live.insert(refresh.clone(), refresh.clone());
    s.families.insert(refresh.clone(), refresh.clone());
    s.issued += 1;
    s.issued_access.push(access);
    s.issued_refresh.push(refresh);
    Answer::json(200, &value)
}

/// `GET /authorize?...` (RFC 6749 section 4.1.1 with RFC 7636): redirects to the
/// `redirect_uri` with a code (or `error=access_denied`) and the `state`.
pub(super) fn authorize(s: &mut State, query: &str) -> Answer {
    s.logins.authorize_requests += 1;
    let param = |name: &str| {
        query
            .split('&')
            .filter_map(|p| p.split_once('='))
            .find(|(n, _)| *n == name)
            .map(|(_, v)| form_decode(v))
    };
    let (Some(client_id), Some(redirect_uri), Some(state), Some(challenge)) = (
        param("client_id"),
        param("redirect_uri"),
        param("state"),
        param("code_challenge"),
    ) else {
        return Answer::oauth_error(400, "invalid_request", Some("a parameter is missing"));
    };
    if param("response_type").as_deref() != Some("code")
        || param("code_challenge_method").as_deref() != Some("S256")
        || client_id != s.config.client_id
        || !redirect_uri.starts_with("http://127.0.0.1:")
    {
        return Answer::oauth_error(400, "invalid_request", Some("refused"));
    }
    let location = if std::mem::take(&mut s.logins.deny_next) {
        format!("{redirect_uri}?error=access_denied&state={state}")
    } else {
        let id = s.next_id();
        let code = format!("ac-{id}");
        let challenge = if std::mem::take(&mut s.logins.corrupt_next_challenge) {
            format!("x{challenge}")
        } else {
            challenge
        };
        s.logins.auth_codes.insert(
            code.clone(),
            Issued {
                client_id,
                redirect_uri: redirect_uri.clone(),
                challenge,
            },
        );
        format!("{redirect_uri}?code={code}&state={state}")
    };
    let mut answer = Answer::json(302, &serde_json::json!({}));
    answer.headers.push(("Location", location));
    answer
}

/// `POST /token` with the authorization code grant: the code once, the same redirect URI,
/// and a verifier whose S256 is the challenge.
pub(super) fn authorization_code(
    s: &mut State,
    code: Option<&str>,
    redirect_uri: Option<&str>,
    verifier: Option<&str>,
    client_id: Option<&str>,
) -> Answer {
    let Some(issued) = code.and_then(|c| s.logins.auth_codes.remove(c)) else {
        return Answer::oauth_error(400, "invalid_grant", Some("unknown or used code"));
    };
    if redirect_uri != Some(issued.redirect_uri.as_str()) {
        return Answer::oauth_error(400, "invalid_grant", Some("redirect_uri differs"));
    }
    if client_id.is_some_and(|id| id != issued.client_id) {
        return Answer::oauth_error(400, "invalid_grant", Some("another client's code"));
    }
    let Some(verifier) = verifier else {
        return Answer::oauth_error(400, "invalid_request", Some("code_verifier is missing"));
    };
    if base64url(&Sha256::digest(verifier.as_bytes())) != issued.challenge {
        return Answer::oauth_error(400, "invalid_grant", Some("PKCE verification failed"));
    }
    issue_login(s)
}

/// Unpadded base64url.
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}
