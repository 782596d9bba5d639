//! The token server's login flows: the device authorization grant (RFC 8628), scripted poll
//! by poll.

use std::collections::{HashMap, VecDeque};

use super::{Answer, State};

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
