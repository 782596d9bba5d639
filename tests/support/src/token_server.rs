//! A real OAuth 2.0 token endpoint for tests: a small HTTP/1.1 server on `127.0.0.1`, with
//! the refresh-token and client-credentials grants, refresh-token rotation, client
//! authentication checks, scripted failures, a pause switch, and counters of everything it
//! saw, above all of how often each refresh token was presented.
//!
//! Include it with
//!
//! ```ignore
//! use support::token_server::{Config, Failure, TokenServer};
//!
//! let server = TokenServer::start(Config::default());
//! server.seed_refresh_token("rt-0");
//! // ... point an HttpRefresher (or any client) at server.url() ...
//! assert_eq!(server.presentations("rt-0"), 1);
//! server.assert_no_reuse();
//! ```
//!
//! What it does, per request (`POST` to [`TokenServer::url`], a form body):
//! - **Client authentication.** If [`Config::client_secret`] is set, the client must
//!   authenticate with it by HTTP Basic (id and secret form-urlencoded, then Base64) or in
//!   the body (`client_id` + `client_secret`), not both, and by the method of
//!   [`Config::client_auth`] if set; otherwise `401 invalid_client`. Without a secret, a
//!   `client_id` (body or Basic), if sent, must be [`Config::client_id`].
//! - **`grant_type=refresh_token`.** The refresh token must be live (seeded with
//!   [`TokenServer::seed_refresh_token`] or issued by the server), else `400 invalid_grant`.
//!   With [`Config::rotate`] (the default) the answer carries a new refresh token and the
//!   presented one is spent: presenting it again is a *reuse*, answered `invalid_grant` (and
//!   with [`Config::revoke_family_on_reuse`], the live successor is revoked too, as Auth0 and
//!   Okta do). Without rotation the answer has no `refresh_token` and the presented one stays
//!   live.
//! - **`grant_type=client_credentials`.** Needs client authentication if a secret is
//!   configured; the answer carries the requested `scope` (or [`Config::default_scope`]) and
//!   no refresh token.
//! - **Revocation.** `POST` to [`TokenServer::revocation_url`] with `token=...` (RFC 7009)
//!   revokes a refresh token and answers `200` (also for unknown tokens).
//!
//! Access tokens are `issued-at-N`, refresh tokens `issued-rt-N`, client-credentials tokens
//! `issued-cc-N` (`N` counting from 1 per server), so that tests can look for them in
//! places they must not appear. Each connection is answered once and closed (no keep-alive).
//!
//! [`TokenServer::fail_next`] scripts the next requests' answers ([`Failure`]); a paused
//! server ([`TokenServer::pause`]) holds every request until [`TokenServer::resume`], for
//! deterministic concurrency tests. Dropping the server stops it (held and slow requests are
//! released; their connections get no answer).
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

mod login;

pub use self::login::DevicePoll;
use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How the server behaves. `Config::default()` is a rotating server for the confidential
/// client `client-1` / `secret-1` that accepts either authentication method, with tokens
/// that live an hour.
#[derive(Clone, Debug)]
pub struct Config {
    /// The client id the server knows.
    pub client_id: String,
    /// The client's secret; `None` makes it a public client (no authentication checked).
    pub client_secret: Option<String>,
    /// The only authentication method accepted; `None` accepts either.
    pub client_auth: Option<AuthMethod>,
    /// Whether each refresh issues a new refresh token and spends the presented one.
    pub rotate: bool,
    /// Whether presenting a spent refresh token also revokes its live successor.
    pub revoke_family_on_reuse: bool,
    /// The `expires_in` of issued tokens (`None`: the field is left out).
    pub expires_in: Option<u64>,
    /// The `scope` of refresh answers (`None`: the field is left out).
    pub refresh_scope: Option<String>,
    /// The `scope` of client-credentials answers when the request asks for none.
    pub default_scope: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            client_id: "client-1".to_owned(),
            client_secret: Some("secret-1".to_owned()),
            client_auth: None,
            rotate: true,
            revoke_family_on_reuse: false,
            expires_in: Some(3600),
            refresh_scope: None,
            default_scope: None,
        }
    }
}

impl Config {
    /// A public client (no client secret checked) with id `client_id`.
    pub fn public(client_id: &str) -> Self {
        Self {
            client_id: client_id.to_owned(),
            client_secret: None,
            ..Self::default()
        }
    }
}

/// A client authentication method (RFC 6749 section 2.3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMethod {
    /// `Authorization: Basic base64(urlencode(id):urlencode(secret))`.
    Basic,
    /// `client_id` and `client_secret` in the form body.
    Post,
}

/// A scripted answer, used for the next request(s) instead of the normal one (see
/// [`TokenServer::fail_next`]). Unless it says otherwise, a failure answers without
/// processing the request: no token is issued or spent (the presentation is still counted).
#[derive(Clone, Debug)]
pub enum Failure {
    /// This HTTP status with a small JSON body that is not an OAuth error.
    Status(u16),
    /// This HTTP status with a `Retry-After: secs` header.
    StatusRetryAfter(u16, u64),
    /// `400 {"error": "invalid_grant"}`.
    InvalidGrant,
    /// `401 {"error": "invalid_client"}` with `WWW-Authenticate: Basic`.
    InvalidClient,
    /// This status and OAuth error response.
    OAuthError {
        /// The HTTP status.
        status: u16,
        /// The `error` code.
        code: String,
        /// The `error_description`, if any.
        description: Option<String>,
    },
    /// The request is processed normally (tokens issued and spent), but the answer is sent
    /// only after this delay: a client that times out first has lost the new tokens.
    Slow(Duration),
    /// The request is processed normally, then the connection is closed without an answer.
    LostResponse,
    /// `200` with a body that is not JSON.
    Garbage,
    /// `200` with a JSON body that is not a token response (no `access_token`).
    NotATokenResponse,
    /// `200` with a body of this many bytes (a JSON string padded with spaces).
    Huge(usize),
    /// This status with this JSON body, verbatim (a Globus multi-token answer, an odd
    /// provider's answer).
    Body(u16, String),
}

/// One request the server received, as it saw it (tests may look at secrets here: it is
/// the server's side).
#[derive(Clone, Debug, Default)]
pub struct SeenRequest {
    /// The request path.
    pub path: String,
    /// The `grant_type` field, if any.
    pub grant_type: Option<String>,
    /// All form fields, decoded, in order.
    pub form: Vec<(String, String)>,
    /// How the client authenticated (`None` if it sent no secret).
    pub auth: Option<AuthMethod>,
    /// The client id sent (Basic or body).
    pub client_id: Option<String>,
    /// The client secret sent (Basic or body).
    pub client_secret: Option<String>,
    /// The headers, names lowercased.
    pub headers: Vec<(String, String)>,
}

impl SeenRequest {
    /// The first form field named `name`.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The running server. Stops when dropped.
pub struct TokenServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    acceptor: Option<JoinHandle<()>>,
}

impl TokenServer {
    /// Starts a server on `127.0.0.1` with a free port.
    pub fn start(config: Config) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new(config)),
            changed: Condvar::new(),
            stopping: AtomicBool::new(false),
        });
        let for_thread = Arc::clone(&shared);
        let acceptor = std::thread::Builder::new()
            .name("token-server".to_owned())
            .spawn(move || accept_loop(&listener, &for_thread))
            .expect("spawn the token server");
        Self {
            shared,
            addr,
            acceptor: Some(acceptor),
        }
    }

    /// The device authorization endpoint (RFC 8628): `http://127.0.0.1:PORT/device`.
    pub fn device_url(&self) -> String {
        format!("http://{}/device", self.addr)
    }

    /// What the next device authorization's polls get, in order (after the script, every
    /// poll approves). The default is one approval.
    pub fn script_device(&self, polls: &[DevicePoll]) {
        self.state().logins.next_script = polls.to_vec();
    }

    /// The `interval` (seconds) of device authorization answers (default 1).
    pub fn set_device_interval(&self, seconds: u64) {
        self.state().logins.interval = seconds;
    }

    /// The `expires_in` (seconds) of device authorization answers (default 600).
    pub fn set_device_expires_in(&self, seconds: u64) {
        self.state().logins.expires_in = seconds;
    }

    /// The authorization endpoint (authorization code grant with PKCE):
    /// `http://127.0.0.1:PORT/authorize`. A `GET` there redirects (302) to the request's
    /// loopback `redirect_uri` with a code and the `state`.
    pub fn authorize_url(&self) -> String {
        format!("http://{}/authorize", self.addr)
    }

    /// Makes the next authorization request end in `error=access_denied`.
    pub fn deny_next_authorization(&self) {
        self.state().logins.deny_next = true;
    }

    /// Stores the next authorization request's PKCE challenge altered, so that the
    /// client's verifier does not match it at the token endpoint.
    pub fn corrupt_next_challenge(&self) {
        self.state().logins.corrupt_next_challenge = true;
    }

    /// How many authorization requests were received.
    pub fn authorize_requests(&self) -> usize {
        self.state().logins.authorize_requests
    }

    /// How many device-code polls the token endpoint received.
    pub fn device_polls(&self) -> usize {
        self.state().logins.polls
    }

    /// How many device authorizations were started.
    pub fn device_authorizations(&self) -> usize {
        self.state().logins.started
    }

    /// The token endpoint: `http://127.0.0.1:PORT/token`.
    pub fn url(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    /// The revocation endpoint: `http://127.0.0.1:PORT/revoke`.
    pub fn revocation_url(&self) -> String {
        format!("http://{}/revoke", self.addr)
    }

    /// The address listened on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Makes `refresh_token` a live refresh token (the start of a rotation family), as if a
    /// login had issued it.
    pub fn seed_refresh_token(&self, refresh_token: &str) {
        let mut s = self.state();
        s.live
            .insert(refresh_token.to_owned(), refresh_token.to_owned());
        s.families
            .insert(refresh_token.to_owned(), refresh_token.to_owned());
    }

    /// Revokes a refresh token (as an administrator, or a password change, would).
    pub fn revoke_refresh_token(&self, refresh_token: &str) {
        self.state().live.remove(refresh_token);
    }

    /// Whether `refresh_token` is live (seeded or issued, not spent, not revoked).
    pub fn is_live(&self, refresh_token: &str) -> bool {
        self.state().live.contains_key(refresh_token)
    }

    /// The live refresh token of the family `refresh_token` started or belongs to: after
    /// rotations, the latest one issued.
    pub fn live_successor(&self, refresh_token: &str) -> Option<String> {
        let s = self.state();
        let family = s.families.get(refresh_token)?;
        s.live
            .iter()
            .find(|(_, f)| *f == family)
            .map(|(rt, _)| rt.clone())
    }

    /// Answers the next `count` requests with `failure` (after any failures already queued).
    pub fn fail_next(&self, failure: Failure, count: usize) {
        let mut s = self.state();
        for _ in 0..count {
            s.failures.push_back(failure.clone());
        }
    }

    /// Drops the queued failures.
    pub fn clear_failures(&self) {
        self.state().failures.clear();
    }

    /// Holds every request (after it has been read and counted, before it is processed)
    /// until [`resume`](Self::resume).
    pub fn pause(&self) {
        self.state().paused = true;
    }

    /// Releases the held requests.
    pub fn resume(&self) {
        self.state().paused = false;
        self.shared.changed.notify_all();
    }

    /// Holds the next request alone (after it has been read and counted, before it is
    /// processed) until [`release_held`](Self::release_held); the requests after it go on.
    pub fn hold_next(&self) {
        let mut s = self.state();
        s.hold_next = true;
        s.release_one = false;
    }

    /// Lets the request held by [`hold_next`](Self::hold_next) be processed.
    pub fn release_held(&self) {
        self.state().release_one = true;
        self.shared.changed.notify_all();
    }

    /// How many requests are being held by [`pause`](Self::pause) or
    /// [`hold_next`](Self::hold_next) now.
    pub fn held(&self) -> usize {
        self.state().held
    }

    /// Waits until at least `count` requests are held, for up to `timeout`; returns whether
    /// they are.
    pub fn wait_held(&self, count: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut s = self.state();
        while s.held < count {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return false;
            };
            s = self
                .shared
                .changed
                .wait_timeout(s, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }

    /// Changes whether refreshes rotate the refresh token, from the next request on.
    pub fn set_rotate(&self, rotate: bool) {
        self.state().config.rotate = rotate;
    }

    /// Changes the `expires_in` of issued tokens, from the next request on.
    pub fn set_expires_in(&self, expires_in: Option<u64>) {
        self.state().config.expires_in = expires_in;
    }

    /// How many times `refresh_token` was presented in a refresh-token grant (whatever the
    /// answer, scripted failures included).
    pub fn presentations(&self, refresh_token: &str) -> usize {
        self.state()
            .presentations
            .get(refresh_token)
            .copied()
            .unwrap_or(0)
    }

    /// The largest number of presentations of any one refresh token (0 if none was).
    pub fn max_presentations(&self) -> usize {
        self.state()
            .presentations
            .values()
            .copied()
            .max()
            .unwrap_or(0)
    }

    /// The refresh tokens presented after they had been spent by a rotation, in order: what
    /// a rotating server with reuse detection treats as a stolen token. Must stay empty.
    pub fn reuses(&self) -> Vec<String> {
        self.state().reuses.clone()
    }

    /// Panics if a spent refresh token was ever presented again, or if any refresh token
    /// was presented more than once (a retry after a transient failure, that would be
    /// harmless for the server, counts too: use [`reuses`](Self::reuses) to allow it).
    pub fn assert_no_reuse(&self) {
        let s = self.state();
        assert!(
            s.reuses.is_empty(),
            "spent refresh tokens presented again: {:?}",
            s.reuses
        );
        let twice: Vec<_> = s.presentations.iter().filter(|(_, n)| **n > 1).collect();
        assert!(
            twice.is_empty(),
            "refresh tokens presented more than once: {twice:?}"
        );
    }

    /// All requests received (parsed ones), in order of arrival.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.state().requests.clone()
    }

    /// The last request received.
    pub fn last_request(&self) -> Option<SeenRequest> {
        self.state().requests.last().cloned()
    }

    /// How many requests arrived (every connection that sent something counts).
    pub fn request_count(&self) -> usize {
        self.state().request_count
    }

    /// How many refresh-token grant requests arrived (whatever the answer).
    pub fn refresh_count(&self) -> usize {
        self.state().refresh_count
    }

    /// How many client-credentials grant requests arrived (whatever the answer).
    pub fn client_credentials_count(&self) -> usize {
        self.state().client_credentials_count
    }

    /// How many tokens were issued (refresh and client-credentials answers that were
    /// processed, lost or slow ones included).
    pub fn issued_count(&self) -> usize {
        self.state().issued
    }

    /// The access tokens issued, in order.
    pub fn issued_access_tokens(&self) -> Vec<String> {
        self.state().issued_access.clone()
    }

    /// The refresh tokens issued by rotations, in order.
    pub fn issued_refresh_tokens(&self) -> Vec<String> {
        self.state().issued_refresh.clone()
    }

    /// The tokens revoked through the revocation endpoint, in order.
    pub fn revocations(&self) -> Vec<String> {
        self.state().revocations.clone()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.state()
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.shared.changed.notify_all();
        // Wake the acceptor up with a connection of our own.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(handle) = self.acceptor.take() {
            let _ = handle.join();
        }
    }
}

impl std::fmt::Debug for TokenServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    stopping: AtomicBool,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }
}

struct State {
    config: Config,
    /// Live refresh token -> its family (the seed it descends from).
    live: HashMap<String, String>,
    /// Every refresh token ever seeded or issued -> its family.
    families: HashMap<String, String>,
    /// Refresh tokens spent by a rotation.
    spent: HashMap<String, String>,
    presentations: HashMap<String, usize>,
    reuses: Vec<String>,
    failures: VecDeque<Failure>,
    paused: bool,
    held: usize,
    /// Whether the next request is held alone (see [`TokenServer::hold_next`]).
    hold_next: bool,
    /// Whether the request held alone may go on.
    release_one: bool,
    requests: Vec<SeenRequest>,
    request_count: usize,
    refresh_count: usize,
    client_credentials_count: usize,
    issued: usize,
    issued_access: Vec<String>,
    issued_refresh: Vec<String>,
    revocations: Vec<String>,
    next_id: u64,
    logins: login::Logins,
}

impl State {
    fn new(config: Config) -> Self {
        Self {
            config,
            live: HashMap::new(),
            families: HashMap::new(),
            spent: HashMap::new(),
            presentations: HashMap::new(),
            reuses: Vec::new(),
            failures: VecDeque::new(),
            paused: false,
            held: 0,
            hold_next: false,
            release_one: false,
            requests: Vec::new(),
            request_count: 0,
            refresh_count: 0,
            client_credentials_count: 0,
            issued: 0,
            issued_access: Vec::new(),
            issued_refresh: Vec::new(),
            revocations: Vec::new(),
            next_id: 0,
            logins: login::Logins::default(),
        }
    }

    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }
}

/// An answer to write.
struct Answer {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn json(status: u16, value: &serde_json::Value) -> Self {
        Self {
            status,
            headers: vec![("Content-Type", "application/json".to_owned())],
            body: serde_json::to_vec(value).unwrap(),
        }
    }

    fn oauth_error(status: u16, code: &str, description: Option<&str>) -> Self {
        let mut value = serde_json::json!({ "error": code });
        if let Some(d) = description {
            value["error_description"] = d.into();
        }
        let mut answer = Self::json(status, &value);
        if status == 401 {
            answer
                .headers
                .push(("WWW-Authenticate", "Basic realm=\"token\"".to_owned()));
        }
        answer
    }
}

/// What to do with a request once it is read.
enum Plan {
    Answer(Answer),
    Slow(Answer, Duration),
    Hangup,
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stopping() {
            return;
        }
        let Ok(stream) = stream else { continue };
        let shared = Arc::clone(shared);
        let _ = std::thread::Builder::new()
            .name("token-server-conn".to_owned())
            .spawn(move || serve(stream, &shared));
    }
}

fn serve(stream: TcpStream, shared: &Shared) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
    let Ok(reader_stream) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(reader_stream);
    let request = match read_request(&mut reader) {
        Ok(Some(r)) => r,
        Ok(None) => return,
        Err(status) => {
            shared.state().request_count += 1;
            write_answer(
                stream,
                &Answer::oauth_error(status, "invalid_request", Some("malformed request")),
            );
            return;
        }
    };
    let local = stream
        .local_addr()
        .map_or_else(|_| "127.0.0.1".to_owned(), |a| a.to_string());
    match plan(shared, request, &local) {
        Some(Plan::Answer(answer)) => write_answer(stream, &answer),
        Some(Plan::Slow(answer, delay)) => {
            let until = Instant::now() + delay;
            while Instant::now() < until && !shared.stopping() {
                std::thread::sleep(Duration::from_millis(10).min(delay));
            }
            if !shared.stopping() {
                write_answer(stream, &answer);
            }
        }
        Some(Plan::Hangup) | None => {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// A raw request: method, path, lowercased headers, body.
struct RawRequest {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// Reads one request. `Ok(None)` for a connection closed before sending anything (the
/// server's own wake-up connection); `Err(status)` for a malformed one.
fn read_request(reader: &mut BufReader<TcpStream>) -> Result<Option<RawRequest>, u16> {
    let mut line = String::new();
    match reader.read_line(&mut line) {
        Ok(0) => return Ok(None),
        Ok(_) => {}
        Err(_) => return Err(400),
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(path), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(400);
    };
    if !version.starts_with("HTTP/1.") {
        return Err(505);
    }
    let (method, path) = (method.to_owned(), path.to_owned());
    let mut headers = Vec::new();
    let mut total = line.len();
    loop {
        let mut h = String::new();
        match reader.read_line(&mut h) {
            Ok(0) | Err(_) => return Err(400),
            Ok(n) => total += n,
        }
        if total > MAX_HEAD {
            return Err(431);
        }
        let h = h.trim_end_matches(['\r', '\n']);
        if h.is_empty() {
            break;
        }
        let Some((name, value)) = h.split_once(':') else {
            return Err(400);
        };
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    if header("transfer-encoding").is_some() {
        return Err(411);
    }
    let len: usize = match header("content-length") {
        Some(v) => v.parse().map_err(|_| 400u16)?,
        None => 0,
    };
    if len > MAX_BODY {
        return Err(413);
    }
    let mut body = vec![0; len];
    reader.read_exact(&mut body).map_err(|_| 400u16)?;
    Ok(Some(RawRequest {
        method,
        path,
        headers,
        body,
    }))
}

/// Counts the request, waits while paused, and decides the answer.
fn plan(shared: &Shared, raw: RawRequest, local_addr: &str) -> Option<Plan> {
    let mut s = shared.state();
    s.request_count += 1;
    let form = parse_form(&raw.body);
    let field = |name: &str| form.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    let mut seen = SeenRequest {
        path: raw.path.clone(),
        grant_type: field("grant_type"),
        form: form.clone(),
        headers: raw.headers.clone(),
        ..SeenRequest::default()
    };
    let basic = raw
        .headers
        .iter()
        .find(|(n, _)| n == "authorization")
        .and_then(|(_, v)| parse_basic(v));
    let post_secret = field("client_secret");
    let auth_conflict = basic.is_some() && post_secret.is_some();
    match (&basic, &post_secret) {
        (Some((id, secret)), _) => {
            seen.auth = Some(AuthMethod::Basic);
            seen.client_id = Some(id.clone());
            seen.client_secret = Some(secret.clone());
        }
        (None, Some(secret)) => {
            seen.auth = Some(AuthMethod::Post);
            seen.client_id = field("client_id");
            seen.client_secret = Some(secret.clone());
        }
        (None, None) => seen.client_id = field("client_id"),
    }
    let grant = seen.grant_type.clone();
    let presented = field("refresh_token");
    if raw.path == "/token" && grant.as_deref() == Some("refresh_token") {
        s.refresh_count += 1;
        if let Some(rt) = &presented {
            *s.presentations.entry(rt.clone()).or_insert(0) += 1;
        }
    }
    if raw.path == "/token" && grant.as_deref() == Some("client_credentials") {
        s.client_credentials_count += 1;
    }
    s.requests.push(seen.clone());

    // Held alone.
    if std::mem::take(&mut s.hold_next) {
        s.held += 1;
        shared.changed.notify_all();
        while !s.release_one && !shared.stopping() {
            s = shared
                .changed
                .wait_timeout(s, Duration::from_millis(50))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        s.release_one = false;
        s.held -= 1;
        shared.changed.notify_all();
    }
    // Held while paused.
    if s.paused {
        s.held += 1;
        shared.changed.notify_all();
        while s.paused && !shared.stopping() {
            s = shared
                .changed
                .wait_timeout(s, Duration::from_millis(50))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        s.held -= 1;
        shared.changed.notify_all();
    }
    if shared.stopping() {
        return None;
    }

    // Scripted failures.
    let failure = s.failures.pop_front();
    let processed_then = match failure {
        None => None,
        Some(Failure::Status(status)) => {
            return Some(Plan::Answer(Answer::json(
                status,
                &serde_json::json!({ "message": "scripted failure" }),
            )))
        }
        Some(Failure::StatusRetryAfter(status, secs)) => {
            let mut a = Answer::json(status, &serde_json::json!({ "message": "slow down" }));
            a.headers.push(("Retry-After", secs.to_string()));
            return Some(Plan::Answer(a));
        }
        Some(Failure::InvalidGrant) => {
            return Some(Plan::Answer(Answer::oauth_error(
                400,
                "invalid_grant",
                None,
            )))
        }
        Some(Failure::InvalidClient) => {
            return Some(Plan::Answer(Answer::oauth_error(
                401,
                "invalid_client",
                None,
            )))
        }
        Some(Failure::OAuthError {
            status,
            code,
            description,
        }) => {
            return Some(Plan::Answer(Answer::oauth_error(
                status,
                &code,
                description.as_deref(),
            )))
        }
        Some(Failure::Garbage) => {
            return Some(Plan::Answer(Answer {
                status: 200,
                headers: vec![("Content-Type", "text/html".to_owned())],
                body: b"<html><body>Service Unavailable</body></html>".to_vec(),
            }))
        }
        Some(Failure::NotATokenResponse) => {
            return Some(Plan::Answer(Answer::json(
                200,
                &serde_json::json!({ "status": "ok" }),
            )))
        }
        Some(Failure::Huge(len)) => {
            let mut body = vec![b' '; len.max(2)];
            body[0] = b'"';
            *body.last_mut().unwrap() = b'"';
            return Some(Plan::Answer(Answer {
                status: 200,
                headers: vec![("Content-Type", "application/json".to_owned())],
                body,
            }));
        }
        Some(Failure::Body(status, body)) => {
            return Some(Plan::Answer(Answer {
                status,
                headers: vec![("Content-Type", "application/json".to_owned())],
                body: body.into_bytes(),
            }))
        }
        Some(f @ (Failure::Slow(_) | Failure::LostResponse)) => Some(f),
    };

    let answer = if raw.method == "GET" && raw.path.split('?').next() == Some("/authorize") {
        let query = raw.path.split_once('?').map_or("", |(_, q)| q);
        login::authorize(&mut s, query)
    } else if raw.method != "POST" {
        Answer::oauth_error(405, "invalid_request", Some("use POST"))
    } else if raw.path == "/revoke" {
        match client_check(&s.config, &seen, auth_conflict) {
            Err(answer) => answer,
            Ok(()) => {
                if let Some(token) = field("token") {
                    s.live.remove(&token);
                    s.revocations.push(token);
                    Answer::json(200, &serde_json::json!({}))
                } else {
                    Answer::oauth_error(400, "invalid_request", Some("token is missing"))
                }
            }
        }
    } else if raw.path == "/device" {
        match client_check(&s.config, &seen, auth_conflict) {
            Err(answer) => answer,
            Ok(()) => {
                let base = format!("http://{local_addr}");
                login::device_authorization(&mut s, &base)
            }
        }
    } else if raw.path != "/token" {
        Answer::json(404, &serde_json::json!({ "message": "not found" }))
    } else {
        match client_check(&s.config, &seen, auth_conflict) {
            Err(answer) => answer,
            Ok(()) => match grant.as_deref() {
                Some("refresh_token") => refresh(&mut s, presented.as_deref()),
                Some("client_credentials") => client_credentials(&mut s, field("scope")),
                Some("authorization_code") => login::authorization_code(
                    &mut s,
                    field("code").as_deref(),
                    field("redirect_uri").as_deref(),
                    field("code_verifier").as_deref(),
                    seen.client_id.as_deref(),
                ),
                Some("urn:ietf:params:oauth:grant-type:device_code") => {
                    login::device_poll(&mut s, field("device_code").as_deref())
                }
                Some(_) => Answer::oauth_error(400, "unsupported_grant_type", None),
                None => Answer::oauth_error(400, "invalid_request", Some("grant_type is missing")),
            },
        }
    };
    Some(match processed_then {
        Some(Failure::Slow(delay)) => Plan::Slow(answer, delay),
        Some(Failure::LostResponse) => Plan::Hangup,
        _ => Plan::Answer(answer),
    })
}

/// Checks the client's authentication against the configuration.
fn client_check(config: &Config, seen: &SeenRequest, conflict: bool) -> Result<(), Answer> {
    if conflict {
        return Err(Answer::oauth_error(
            400,
            "invalid_request",
            Some("more than one client authentication method"),
        ));
    }
    let invalid = |why: &str| Answer::oauth_error(401, "invalid_client", Some(why));
    if let Some(id) = &seen.client_id {
        if *id != config.client_id {
            return Err(invalid("unknown client"));
        }
    }
    let Some(secret) = &config.client_secret else {
        return Ok(());
    };
    let Some(method) = seen.auth else {
        return Err(invalid("client authentication required"));
    };
    if config.client_auth.is_some_and(|m| m != method) {
        return Err(invalid("client authentication method not allowed"));
    }
    if seen.client_id.is_none() || seen.client_secret.as_ref() != Some(secret) {
        return Err(invalid("bad client credentials"));
    }
    Ok(())
}

fn refresh(s: &mut State, presented: Option<&str>) -> Answer {
    let Some(rt) = presented else {
        return Answer::oauth_error(400, "invalid_request", Some("refresh_token is missing"));
    };
    let Some(family) = s.live.get(rt).cloned() else {
        if let Some(family) = s.spent.get(rt).cloned() {
            s.reuses.push(rt.to_owned());
            if s.config.revoke_family_on_reuse {
                s.live.retain(|_, f| *f != family);
            }
        }
        return Answer::oauth_error(400, "invalid_grant", Some("unknown or spent refresh token"));
    };
    let id = s.next_id();
    let access = format!("issued-at-{id}");
    let mut value = serde_json::json!({ "access_token": access, "token_type": "Bearer" });
    if let Some(e) = s.config.expires_in {
        value["expires_in"] = e.into();
    }
    if let Some(scope) = &s.config.refresh_scope {
        value["scope"] = scope.clone().into();
    }
    if s.config.rotate {
        let new_rt = format!("issued-rt-{id}");
        s.live.remove(rt);
        s.spent.insert(rt.to_owned(), family.clone());
        s.live.insert(new_rt.clone(), family.clone());
        s.families.insert(new_rt.clone(), family);
        s.issued_refresh.push(new_rt.clone());
        value["refresh_token"] = new_rt.into();
    }
    s.issued += 1;
    s.issued_access.push(access);
    Answer::json(200, &value)
}

fn client_credentials(s: &mut State, scope: Option<String>) -> Answer {
    let id = s.next_id();
    let access = format!("issued-cc-{id}");
    let mut value = serde_json::json!({ "access_token": access, "token_type": "Bearer" });
    if let Some(e) = s.config.expires_in {
        value["expires_in"] = e.into();
    }
    if let Some(scope) = scope.or_else(|| s.config.default_scope.clone()) {
        value["scope"] = scope.into();
    }
    s.issued += 1;
    s.issued_access.push(access);
    Answer::json(200, &value)
}

fn write_answer(mut stream: TcpStream, answer: &Answer) {
    let reason = match answer.status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    };
    let mut head = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\n",
        answer.status,
        answer.body.len()
    );
    for (name, value) in &answer.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&answer.body);
    let _ = stream.flush();
    let _ = stream.shutdown(std::net::Shutdown::Write);
    // Let the client read everything before the socket is closed (a close with unread
    // input would reset the connection).
    let mut sink = [0u8; 1024];
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
}

/// `application/x-www-form-urlencoded` fields, decoded.
fn parse_form(body: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(body);
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (n, v) = pair.split_once('=').unwrap_or((pair, ""));
            (form_decode(n), form_decode(v))
        })
        .collect()
}

/// Decodes one form-urlencoded component (`+` is a space, `%XX` a byte).
pub fn form_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `Authorization: Basic ...` decoded into the form-decoded client id and secret.
fn parse_basic(value: &str) -> Option<(String, String)> {
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let decoded = String::from_utf8(base64_decode(encoded.trim())?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((form_decode(id), form_decode(secret)))
}

/// Standard Base64 with padding.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for chunk in bytes.chunks(4) {
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 {
            return None;
        }
        let mut n = 0u32;
        for &c in &chunk[..4 - pad] {
            n = (n << 6) | value(c)?;
        }
        n <<= 6 * pad as u32;
        let three = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&three[..3 - pad]);
    }
    Some(out)
}

/// Largest request head read (request line and headers).
const MAX_HEAD: usize = 64 * 1024;
/// Largest request body read.
const MAX_BODY: usize = 64 * 1024;
