//! The authorizer: a valid access token on demand, refreshed at most once at a time per grant,
//! across threads, vault handles and processes, and stored durably before anyone sees it.

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use secrecy::{ExposeSecret, SecretSlice};
use zeroize::Zeroizing;

use crate::clock::{Clock, SystemClock};
use crate::crypto::random_u64;
use crate::error::{Error, Result};
use crate::namespace::{commit, Expect, Namespace, Op, Version};
use crate::record::{sealed::Sealed, RecordType};
use crate::refresh::{RefreshError, Refresher};
use crate::token::{Secret, Token};
use crate::trace::event;

/// Hands out a valid access token for one (namespace, key): the cached one while it is good,
/// otherwise a refreshed one, stored durably before it is returned.
///
/// - **Cache.** The token is kept in memory (wiped when replaced or dropped) and served until
///   its refresh point: `margin` plus a per-authorizer random share of `jitter` before it
///   expires. A token whose whole lifetime is shorter than that is refreshed halfway through
///   its life instead, never on every call.
/// - **Single flight.** However many threads (or tasks, with the `async` feature) ask at
///   once, one refresh runs, on a thread the authorizer owns, and all of them get its result
///   or its error. A caller that stops waiting ([`token_timeout`](Self::token_timeout), a
///   dropped future) does not stop the refresh: the new token is stored either way.
/// - **A lease across handles and processes.** Before calling the [`Refresher`], the
///   authorizer stores a lease next to the record ("being refreshed by this handle until T"),
///   with compare-and-swap. Another handle (another `Authorizer`, a clone of the vault, the
///   next process to open the vault) that finds a live lease waits for it and re-reads the
///   record instead of refreshing, so a refresh token is never sent twice. The new token is
///   committed with compare-and-swap against the version read under the lease, in the same
///   atomic write that removes the lease. A lease whose holder died is found after its expiry:
///   the answer is [`Error::ReauthenticationRequired`] (the refresh token may already have been
///   spent), never a second use of the refresh token. Storing a new grant under the key (a new
///   login) clears it.
/// - **Failures.** A dead grant (`invalid_grant`) is handled by the [`DeadGrant`] policy and
///   returned as [`Error::Refresh`]; a transient failure keeps the stored token, and is retried
///   after a backoff that starts at the minimum retry gap and doubles up to the maximum (or the
///   server's `Retry-After`). Meanwhile, a token that has not actually expired yet (only
///   entered its margin) is still served. A failure never yields another kind of token.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use tokenvault::{Authorizer, KeySource, RefreshError, Token, Vault};
/// use tokenvault::secrecy::{ExposeSecret, SecretBox};
///
/// # let dir = tempfile::tempdir()?;
/// let key = KeySource::raw_key(SecretBox::new(Box::new([7u8; 32])));
/// let vault = Vault::create(dir.path().join("vault"), &key)?;
/// let ns = vault.namespace("user/alice")?;
/// // A token that has expired, with its refresh token.
/// ns.put("api", &Token::new("old".into())
///     .with_refresh_token("rt-1".into())
///     .with_expires_at(SystemTime::now() - Duration::from_secs(1)))?;
///
/// // The refresher: here a closure; `HttpRefresher` (feature `http`) talks to a real endpoint.
/// let refresher = |current: Option<&Token>| -> Result<Token, RefreshError> {
///     assert_eq!(current.unwrap().refresh_token().unwrap().expose_secret(), "rt-1");
///     Ok(Token::new("fresh".into())
///         .with_expires_at(SystemTime::now() + Duration::from_secs(3600)))
/// };
/// let auth = Authorizer::builder(&ns, "api", refresher).build()?;
/// let token = auth.token()?;
/// assert_eq!(token.access_token().expose_secret(), "fresh");
/// // Stored before it was handed out, with the refresh token kept (the answer had none).
/// let stored: Token = ns.get("api")?.unwrap();
/// assert_eq!(stored.access_token().expose_secret(), "fresh");
/// assert_eq!(stored.refresh_token().unwrap().expose_secret(), "rt-1");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Authorizer {
    shared: Arc<Shared>,
}

/// Builds an [`Authorizer`]: [`Authorizer::builder`].
#[must_use]
pub struct AuthorizerBuilder {
    ns: Namespace,
    key: String,
    refresher: Arc<dyn Refresher>,
    clock: Arc<dyn Clock>,
    config: Config,
}

/// What the authorizer does with the stored record when the refresher reports a dead grant
/// ([`RefreshErrorKind::InvalidGrant`](crate::RefreshErrorKind::InvalidGrant)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeadGrant {
    /// Remove the record (the default): the grant is useless, and a later call starts from
    /// nothing (a client-credentials refresher mints a new token; a refresh-token refresher
    /// reports that there is nothing to refresh with).
    #[default]
    Remove,
    /// Keep the record and mark it dead: later calls fail at once with
    /// [`Error::ReauthenticationRequired`] without calling the token endpoint, until a new
    /// grant is stored under the key. Keeps the identity and scopes for the next login.
    Mark,
}

/// What the authorizer does after a refresh that failed *ambiguously*: the request may have
/// reached the server, but no answer came back (a timeout or a lost connection after sending;
/// see [`RefreshError::request_possibly_processed`]). The server may have exchanged, and so
/// spent, the refresh token; presenting it again could be refused, or, on servers with
/// refresh-token reuse detection, revoke the whole grant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum AmbiguousFailure {
    /// Never present that refresh token again (the default): the record is marked, later
    /// calls get [`Error::ReauthenticationRequired`] until a new grant is stored, and the
    /// current access token is still served until it expires.
    #[default]
    RequireLogin,
    /// Treat it as a transient failure and retry with the same refresh token after the
    /// backoff: right for servers that do not rotate refresh tokens (Globus Auth, among
    /// others), or that accept a reused one within a grace period.
    Retry,
}

/// What [`Authorizer::logout`] did: the local record is removed first, whatever the
/// revocation then does.
#[derive(Debug)]
#[must_use]
pub struct Logout<E> {
    /// Whether a token was stored (and is now removed).
    pub removed: bool,
    /// What the revoke hook returned (`None`: nothing was stored, so it was not called).
    pub revocation: Option<std::result::Result<(), E>>,
}

/// Default time before expiry at which a token is refreshed.
pub const DEFAULT_MARGIN: Duration = Duration::from_secs(60);
/// Default upper bound of the random extra margin each authorizer adds.
pub const DEFAULT_JITTER: Duration = Duration::from_secs(30);
/// Default lifetime of a refresh lease: longer than any refresh may take.
pub const DEFAULT_LEASE_TIME: Duration = Duration::from_secs(30);
/// Default minimum gap between a failed refresh and the next attempt.
pub const DEFAULT_MIN_RETRY_GAP: Duration = Duration::from_secs(1);
/// Default maximum gap between failed attempts (the backoff's cap).
pub const DEFAULT_MAX_RETRY_GAP: Duration = Duration::from_secs(60);

/// How long a token without an expiry is served from memory before the store is read again.
const NO_EXPIRY_RECHECK: Duration = Duration::from_secs(300);
/// How often a transaction starts over when the record keeps changing under it.
const ROUNDS: usize = 16;
/// The reserved key prefix of leases (keys starting with U+0000 are refused as user keys).
const LEASE_PREFIX: &str = "\0lease\0";
/// Lease record layout version.
const LEASE_VERSION: u8 = 1;
const LEASE_LEN: usize = 1 + 1 + 16 + 8 + 1 + 8;
const SPENT: &str = "a refresh request may have reached the server without an answer, so its \
                     refresh token may have been spent; it is not presented again: log in again";

#[derive(Clone, Copy, Debug)]
struct Config {
    margin: Duration,
    jitter: Duration,
    lease_time: Duration,
    min_retry_gap: Duration,
    max_retry_gap: Duration,
    dead_grant: DeadGrant,
    ambiguous: AmbiguousFailure,
    poll: Duration,
}

struct Shared {
    ns: Namespace,
    key: String,
    lease_key: String,
    refresher: Arc<dyn Refresher>,
    clock: Arc<dyn Clock>,
    config: Config,
    /// This authorizer's identity in leases.
    holder: [u8; 16],
    /// This authorizer's share of the jitter, fixed for its lifetime (so that the cache and
    /// the store agree on when a token needs refreshing).
    jitter: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    cached: Option<Cached>,
    flight: Option<Arc<Flight>>,
    failures: u32,
    retry_at: Option<SystemTime>,
    last_error: Option<Error>,
    /// The access token a caller reported as refused (see [`Authorizer::invalidate`]).
    rejected: Option<Zeroizing<Vec<u8>>>,
    /// A refreshed token the store failed to take: served from memory, and written before
    /// anything else at the next transaction (its lease stays meanwhile, so no other handle
    /// spends the old refresh token).
    pending: Option<Pending>,
}

struct Pending {
    token: Token,
    token_version: Option<Version>,
    lease_version: Version,
}

struct Cached {
    token: Token,
    refresh_at: SystemTime,
}

/// One refresh transaction, and everyone waiting for it.
#[derive(Default)]
struct Flight {
    result: Mutex<Option<Result<Token>>>,
    done: Condvar,
}

/// What a transaction ended with.
enum Outcome {
    /// A token to serve; `fresh` when it was just issued (its lifetime is known).
    Token { token: Token, fresh: bool },
    /// A refreshed token that could not be stored (a storage error): served, and kept to be
    /// written at the next transaction.
    Unstored { pending: Pending, error: Error },
    /// A failure, and a token that is still valid (not expired) to serve meanwhile.
    Failed {
        error: Error,
        fallback: Option<Token>,
    },
}

/// A lease, as stored (sealed, as a `Secret` record at the reserved lease key).
#[derive(Clone, Copy, PartialEq, Eq)]
struct Lease {
    holder: [u8; 16],
    /// Milliseconds since the Unix epoch.
    until_ms: u64,
    /// The version of the token record the lease was taken on (`None`: no record).
    token_version: Option<u64>,
    state: LeaseState,
}

/// What a lease says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LeaseState {
    /// A refresh is in progress (until the lease's expiry).
    Refreshing,
    /// The grant was refused as dead (`invalid_grant`) and marked ([`DeadGrant::Mark`]).
    Dead,
    /// A refresh request may have reached the server without an answer, so its refresh token
    /// may be spent ([`AmbiguousFailure::RequireLogin`]).
    PossiblySpent,
}

impl Authorizer {
    /// Starts building an authorizer for the token stored under `key` in `namespace`,
    /// refreshed by `refresher` (a [`Refresher`] or a closure).
    pub fn builder(
        namespace: &Namespace,
        key: &str,
        refresher: impl Refresher,
    ) -> AuthorizerBuilder {
        AuthorizerBuilder {
            ns: namespace.clone(),
            key: key.to_owned(),
            refresher: Arc::new(refresher),
            clock: Arc::new(SystemClock),
            config: Config {
                margin: DEFAULT_MARGIN,
                jitter: DEFAULT_JITTER,
                lease_time: DEFAULT_LEASE_TIME,
                min_retry_gap: DEFAULT_MIN_RETRY_GAP,
                max_retry_gap: DEFAULT_MAX_RETRY_GAP,
                dead_grant: DeadGrant::Remove,
                ambiguous: AmbiguousFailure::RequireLogin,
                poll: Duration::from_millis(20),
            },
        }
    }

    /// A valid token: from memory, from the store, or freshly refreshed and stored. Blocks
    /// while a refresh runs (at most about the lease time when another handle holds the
    /// lease).
    ///
    /// # Errors
    /// [`Error::Refresh`] when the refresh failed and no unexpired token is at hand (its
    /// [`kind`](crate::RefreshError::kind) says whether the grant is dead or the failure
    /// transient); [`Error::ReauthenticationRequired`] for a grant marked dead or a refresh
    /// interrupted elsewhere; storage errors. Within the retry gap after a failure, the
    /// failure is returned again without a new attempt.
    pub fn token(&self) -> Result<Token> {
        self.token_within(None)
    }

    /// As [`token`](Self::token), but stops waiting after `wait`. The refresh goes on (and
    /// its result is stored and cached for the next call); this caller gets
    /// [`Error::Refresh`] with a transient error.
    ///
    /// # Errors
    /// As [`token`](Self::token); a transient [`Error::Refresh`] on timeout.
    pub fn token_timeout(&self, wait: Duration) -> Result<Token> {
        self.token_within(Some(wait))
    }

    /// Reports that the server refused `token` (an HTTP 401): the next call refreshes, even
    /// if the token looks unexpired. Only the token that was refused is affected, so many
    /// callers reporting the same refusal cause one refresh.
    pub fn invalidate(&self, token: &Token) {
        let mut st = self.shared.lock();
        let refused = token.access_token().expose_secret().as_bytes();
        if let Some(cached) = &st.cached {
            if cached.token.access_token().expose_secret().as_bytes() == refused {
                st.cached = None;
            }
        }
        st.rejected = Some(Zeroizing::new(refused.to_vec()));
        event!(debug, key = %self.shared.key, "a caller reported the access token refused");
    }

    /// Logs out, local first: removes the stored token (and any lease) durably, forgets the
    /// cached one, and only then calls `revoke` with the removed token (for example to send
    /// it to the server's revocation endpoint). A revocation failure is returned in the
    /// [`Logout`] report; the local record is gone either way.
    ///
    /// ```
    /// # use tokenvault::{Authorizer, KeySource, RefreshError, Token, Vault};
    /// # use tokenvault::secrecy::SecretBox;
    /// # let dir = tempfile::tempdir()?;
    /// # let vault = Vault::create(dir.path().join("v"), &KeySource::raw_key(SecretBox::new(Box::new([7u8; 32]))))?;
    /// # let ns = vault.namespace("n")?;
    /// ns.put("api", &Token::new("at".into()).with_refresh_token("rt".into()))?;
    /// let auth = Authorizer::builder(&ns, "api", |_: Option<&Token>| -> Result<Token, RefreshError> {
    ///     Err(RefreshError::invalid_grant("unused"))
    /// })
    /// .build()?;
    /// let logout = auth.logout(|_token| Err::<(), _>("the revocation endpoint is down"))?;
    /// assert!(logout.removed);
    /// assert!(logout.revocation.unwrap().is_err()); // reported...
    /// assert!(ns.get::<Token>("api")?.is_none()); // ...but the token is gone
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// Storage errors while removing the record (then `revoke` is not called).
    pub fn logout<E>(
        &self,
        revoke: impl FnOnce(Token) -> std::result::Result<(), E>,
    ) -> Result<Logout<E>> {
        let stored = self.remove_local()?;
        Ok(Logout {
            removed: stored.is_some(),
            revocation: stored.map(revoke),
        })
    }

    /// The local half of a logout: forgets the cached token and removes the record and any
    /// lease durably; returns the removed token.
    fn remove_local(&self) -> Result<Option<Token>> {
        let shared = &self.shared;
        {
            let mut st = shared.lock();
            st.cached = None;
            st.last_error = None;
            st.retry_at = None;
            st.failures = 0;
            st.pending = None;
        }
        let stored = shared.ns.get_unchecked::<Token>(&shared.key)?;
        let ops = vec![
            shared.token_op(None, Expect::Anything)?,
            shared.lease_op(None, Expect::Anything)?,
        ];
        // Unconditional removals cannot conflict.
        let _ = commit(shared.ns.vault(), ops)?;
        shared.make_durable()?;
        event!(info, key = %shared.key, removed = stored.is_some(), "logged out");
        Ok(stored.map(|(token, _)| token))
    }

    /// The namespace of the token.
    pub fn namespace(&self) -> &Namespace {
        &self.shared.ns
    }

    /// The record key of the token.
    pub fn key(&self) -> &str {
        &self.shared.key
    }

    fn token_within(&self, wait: Option<Duration>) -> Result<Token> {
        let shared = &self.shared;
        let flight = {
            let mut st = shared.lock();
            let now = shared.clock.now();
            if let Some(cached) = &st.cached {
                if now < cached.refresh_at {
                    event!(trace, key = %shared.key, "cache hit");
                    return Ok(cached.token.clone());
                }
            }
            if let Some(retry_at) = st.retry_at {
                if now < retry_at {
                    if let Some(e) = &st.last_error {
                        return Err(e.duplicate());
                    }
                }
            }
            match &st.flight {
                Some(flight) => Arc::clone(flight),
                None => {
                    let flight = Arc::new(Flight::default());
                    st.flight = Some(Arc::clone(&flight));
                    let (s, f) = (Arc::clone(shared), Arc::clone(&flight));
                    let spawned = std::thread::Builder::new()
                        .name("tokenvault-refresh".into())
                        .spawn(move || s.run_flight(&f));
                    if let Err(e) = spawned {
                        st.flight = None;
                        return Err(Error::backend(format!(
                            "cannot start the refresh thread: {e}"
                        )));
                    }
                    flight
                }
            }
        };
        flight.wait(wait)
    }
}

/// Async wrappers, for tokio users (feature `async`).
#[cfg(feature = "async")]
impl Authorizer {
    /// [`token`](Self::token) for async code: runs on tokio's blocking pool, so the runtime's
    /// threads never block on a refresh. Dropping the future stops waiting, not the refresh:
    /// a token the server already rotated is stored either way.
    ///
    /// ```
    /// # use std::time::{Duration, SystemTime};
    /// # use tokenvault::{Authorizer, KeySource, RefreshError, Token, Vault};
    /// # use tokenvault::secrecy::{ExposeSecret, SecretBox};
    /// # let dir = tempfile::tempdir()?;
    /// # let vault = Vault::create(dir.path().join("v"), &KeySource::raw_key(SecretBox::new(Box::new([7u8; 32]))))?;
    /// # let ns = vault.namespace("n")?;
    /// let auth = Authorizer::builder(&ns, "api", |_: Option<&Token>| -> Result<Token, RefreshError> {
    ///     Ok(Token::new("minted".into()).with_expires_at(SystemTime::now() + Duration::from_secs(600)))
    /// })
    /// .build()?;
    /// let runtime = tokio::runtime::Builder::new_multi_thread().build()?;
    /// let token = runtime.block_on(auth.token_async())?;
    /// assert_eq!(token.access_token().expose_secret(), "minted");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`token`](Self::token).
    pub async fn token_async(&self) -> Result<Token> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.token())
            .await
            .map_err(|e| Error::backend(format!("the blocking task failed: {e}")))?
    }

    /// [`logout`](Self::logout) for async code, with an async revoke hook that runs after the
    /// local record is removed.
    ///
    /// # Errors
    /// As [`logout`](Self::logout).
    pub async fn logout_async<E, F>(&self, revoke: impl FnOnce(Token) -> F) -> Result<Logout<E>>
    where
        F: std::future::Future<Output = std::result::Result<(), E>>,
    {
        let this = self.clone();
        let stored = tokio::task::spawn_blocking(move || this.remove_local())
            .await
            .map_err(|e| Error::backend(format!("the blocking task failed: {e}")))??;
        let removed = stored.is_some();
        let revocation = match stored {
            Some(token) => Some(revoke(token).await),
            None => None,
        };
        Ok(Logout {
            removed,
            revocation,
        })
    }
}

impl AuthorizerBuilder {
    /// How long before expiry a token is refreshed (default [`DEFAULT_MARGIN`], 60 s).
    pub fn margin(mut self, margin: Duration) -> Self {
        self.config.margin = margin;
        self
    }

    /// The upper bound of a random extra margin, drawn once per authorizer, so that many
    /// processes holding the same token do not all refresh at the same moment (default
    /// [`DEFAULT_JITTER`], 30 s).
    pub fn jitter(mut self, jitter: Duration) -> Self {
        self.config.jitter = jitter;
        self
    }

    /// Where the time comes from (default [`SystemClock`]).
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// How long a lease is good for (default [`DEFAULT_LEASE_TIME`], 30 s). Must be longer
    /// than any refresh takes: a lease that outlives its refresh is what marks a handle that
    /// died, and other handles wait for it.
    pub fn lease_time(mut self, lease_time: Duration) -> Self {
        self.config.lease_time = lease_time;
        self
    }

    /// The backoff after failed refreshes: the first retry waits `min`, each further failure
    /// doubles the wait, up to `max` (defaults [`DEFAULT_MIN_RETRY_GAP`], 1 s, and
    /// [`DEFAULT_MAX_RETRY_GAP`], 60 s). A server's `Retry-After` is honoured up to `max`.
    pub fn retry_gap(mut self, min: Duration, max: Duration) -> Self {
        self.config.min_retry_gap = min;
        self.config.max_retry_gap = max.max(min);
        self
    }

    /// What happens to the stored record when the grant is dead (default
    /// [`DeadGrant::Remove`]).
    pub fn on_dead_grant(mut self, policy: DeadGrant) -> Self {
        self.config.dead_grant = policy;
        self
    }

    /// What to do after an ambiguous failure (default [`AmbiguousFailure::RequireLogin`]).
    pub fn on_ambiguous_failure(mut self, policy: AmbiguousFailure) -> Self {
        self.config.ambiguous = policy;
        self
    }

    /// How often a handle waiting for another handle's lease looks again (default 20 ms,
    /// doubling up to 8 times that).
    pub fn lease_poll(mut self, poll: Duration) -> Self {
        self.config.poll = poll.max(Duration::from_millis(1));
        self
    }

    /// Builds the authorizer. Nothing is read or refreshed until the first call.
    ///
    /// # Errors
    /// [`Error::InvalidName`] for a key the namespace would refuse.
    pub fn build(self) -> Result<Authorizer> {
        // The key must be a valid user key, and its lease key within the name limit.
        let lease_key = format!("{LEASE_PREFIX}{}", self.key);
        if self.key.is_empty() || crate::namespace::is_reserved(&self.key) {
            return Err(Error::InvalidName {
                reason: "an authorizer needs a non-empty, unreserved record key",
            });
        }
        if lease_key.len() > crate::MAX_NAME_LEN {
            return Err(Error::InvalidName {
                reason: "an authorizer's record key must leave 7 bytes of the name limit free",
            });
        }
        let mut holder = [0u8; 16];
        holder[..8].copy_from_slice(&random_u64()?.to_le_bytes());
        holder[8..].copy_from_slice(&random_u64()?.to_le_bytes());
        let jitter = fraction_of(self.config.jitter, random_u64()?);
        Ok(Authorizer {
            shared: Arc::new(Shared {
                ns: self.ns,
                key: self.key,
                lease_key,
                refresher: self.refresher,
                clock: self.clock,
                config: self.config,
                holder,
                jitter,
                state: Mutex::new(State::default()),
            }),
        })
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update of the state is a plain assignment: a panic cannot leave it torn.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The refresh thread: runs one transaction, records its outcome, wakes the waiters.
    fn run_flight(&self, flight: &Flight) {
        let (rejected, pending) = {
            let mut st = self.lock();
            (st.rejected.take(), st.pending.take())
        };
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            self.transaction(rejected.as_ref().map(|r| r.as_slice()), pending)
        }))
        .unwrap_or_else(|_| Err(Error::backend("the refresh transaction panicked")));
        let now = self.clock.now();
        let mut st = self.lock();
        st.flight = None;
        let result = match outcome {
            Ok(Outcome::Token { token, fresh }) => {
                st.cached = Some(Cached {
                    refresh_at: self.refresh_point(&token, now, fresh),
                    token: token.clone(),
                });
                st.failures = 0;
                st.retry_at = None;
                st.last_error = None;
                Ok(token)
            }
            Ok(Outcome::Unstored { pending, error }) => {
                event!(error, key = %self.key, error = %error, "the refreshed token could not be stored; serving it from memory and retrying the write");
                drop(error);
                let token = pending.token.clone();
                st.cached = Some(Cached {
                    refresh_at: self.refresh_point(&token, now, true),
                    token: token.clone(),
                });
                st.pending = Some(pending);
                Ok(token)
            }
            Ok(Outcome::Failed { error, fallback }) => {
                st.failures = st.failures.saturating_add(1);
                let retry_at = now + self.backoff(st.failures, &error);
                st.retry_at = Some(retry_at);
                st.last_error = Some(error.duplicate());
                match fallback {
                    Some(token) => {
                        let expiry = token.expires_at().unwrap_or(retry_at);
                        st.cached = Some(Cached {
                            refresh_at: retry_at.min(expiry),
                            token: token.clone(),
                        });
                        Ok(token)
                    }
                    None => {
                        st.cached = None;
                        Err(error)
                    }
                }
            }
            Err(error) => {
                // A storage error: nothing to back off from, retry on the next call.
                st.cached = None;
                Err(error)
            }
        };
        drop(st);
        flight.finish(result);
    }

    /// The refresh transaction: read, check the lease, take it, refresh, commit.
    fn transaction(&self, rejected: Option<&[u8]>, pending: Option<Pending>) -> Result<Outcome> {
        if let Some(p) = pending {
            // First, the refreshed token the store did not take last time.
            let ops = vec![
                self.token_op(Some(&p.token), Expect::Exactly(p.token_version))?,
                self.lease_op(None, Expect::Exactly(Some(p.lease_version)))?,
            ];
            match commit(self.ns.vault(), ops) {
                Ok(Ok(_)) => {
                    self.make_durable()?;
                    event!(info, key = %self.key, "stored the refreshed token that an earlier write failed to store");
                }
                // The record was replaced meanwhile (a new login): that grant wins.
                Ok(Err(_)) => self.remove_lease_if_ours()?,
                Err(error) => return Ok(Outcome::Unstored { pending: p, error }),
            }
        }
        let mut adopted_from_peer = false;
        for _ in 0..ROUNDS {
            let now = self.clock.now();
            let stored = self.ns.get_unchecked::<Token>(&self.key)?;
            let token_version = stored.as_ref().map(|(_, v)| *v);
            if let Some((lease, lease_version)) = self.read_lease()? {
                if lease.token_version != token_version.map(Version::as_u64)
                    || lease.holder == self.holder
                {
                    // Taken on a record that has since been replaced (a new login), or our own
                    // leftover: it guards nothing any more.
                    event!(debug, key = %self.key, "removing a stale lease");
                    self.remove_lease(lease_version)?;
                    continue;
                }
                match lease.state {
                    LeaseState::Refreshing => {}
                    LeaseState::Dead => {
                        return Err(self.reauth(
                            "the grant was refused as dead (invalid_grant) and marked; store a new grant",
                        ))
                    }
                    LeaseState::PossiblySpent => return Err(self.reauth(SPENT)),
                }
                if now < lease.until() {
                    event!(debug, key = %self.key, "waiting for another handle's refresh");
                    self.wait_for_lease(lease_version, lease.until())?;
                    adopted_from_peer = true;
                    continue;
                }
                event!(warn, key = %self.key, "found a lease left by a refresh that did not finish");
                return Err(self.reauth(
                    "a refresh by another handle did not finish before its lease expired; its \
                     refresh token may have been spent, so it is not used again: log in again",
                ));
            }
            if let Some((token, _)) = &stored {
                let refused =
                    rejected.is_some_and(|r| token.access_token().expose_secret().as_bytes() == r);
                if !refused && !self.needs_refresh(token, now, adopted_from_peer) {
                    event!(debug, key = %self.key, "serving the stored token");
                    return Ok(Outcome::Token {
                        token: token.clone(),
                        fresh: adopted_from_peer,
                    });
                }
            }
            // Take the lease: only if nobody holds one.
            let lease = Lease {
                holder: self.holder,
                until_ms: millis(now + self.config.lease_time),
                token_version: token_version.map(Version::as_u64),
                state: LeaseState::Refreshing,
            };
            let Ok(lease_version) = self.put_lease(&lease, None)? else {
                continue;
            };
            // The record may have changed between the read and the lease.
            let again = self.ns.get_unchecked::<Token>(&self.key)?;
            if again.as_ref().map(|(_, v)| *v) != token_version {
                self.remove_lease(lease_version)?;
                continue;
            }
            // The lease must survive a crash before the refresh token leaves the process.
            self.make_durable()?;
            let current = stored.as_ref().map(|(t, _)| t);
            event!(info, key = %self.key, "refreshing");
            let answer = catch_unwind(AssertUnwindSafe(|| self.refresher.refresh(current)))
                .unwrap_or_else(|_| Err(RefreshError::transient("the refresher panicked")));
            return self.finish(current, token_version, lease_version, answer);
        }
        Err(Error::backend(
            "the token record kept changing during the refresh; try again",
        ))
    }

    /// Commits a refresh's outcome under the lease.
    fn finish(
        &self,
        current: Option<&Token>,
        token_version: Option<Version>,
        lease_version: Version,
        answer: std::result::Result<Token, RefreshError>,
    ) -> Result<Outcome> {
        let now = self.clock.now();
        match answer {
            Ok(new) => {
                let token = match current {
                    Some(stored) => stored.refreshed_with(new),
                    None => new,
                };
                let ops = vec![
                    self.token_op(Some(&token), Expect::Exactly(token_version))?,
                    self.lease_op(None, Expect::Exactly(Some(lease_version)))?,
                ];
                let committed = match commit(self.ns.vault(), ops) {
                    Ok(c) => c,
                    Err(error) => {
                        return Ok(Outcome::Unstored {
                            pending: Pending {
                                token,
                                token_version,
                                lease_version,
                            },
                            error,
                        })
                    }
                };
                match committed {
                    Ok(_) => {
                        self.make_durable()?;
                        #[cfg(feature = "tracing")]
                        event!(info, key = %self.key, token = %crate::trace::short_hash(&token), "refreshed and stored");
                        Ok(Outcome::Token { token, fresh: true })
                    }
                    Err(_) => {
                        // The record changed while we refreshed (a new grant was stored): never
                        // overwrite it. Serve it if it is good.
                        event!(warn, key = %self.key, "the record was replaced during the refresh; keeping the replacement");
                        self.remove_lease_if_ours()?;
                        match self.ns.get_unchecked::<Token>(&self.key)? {
                            Some((t, _)) if !self.needs_refresh(&t, now, true) => {
                                Ok(Outcome::Token {
                                    token: t,
                                    fresh: false,
                                })
                            }
                            _ => Err(self.reauth(
                                "the record was replaced or removed while it was being refreshed",
                            )),
                        }
                    }
                }
            }
            Err(e) if e.is_invalid_grant() => {
                event!(warn, key = %self.key, "the grant is dead (invalid_grant)");
                let ops = match self.config.dead_grant {
                    DeadGrant::Remove => {
                        let mut ops =
                            vec![self.lease_op(None, Expect::Exactly(Some(lease_version)))?];
                        if token_version.is_some() {
                            ops.push(self.token_op(None, Expect::Exactly(token_version))?);
                        }
                        ops
                    }
                    DeadGrant::Mark => {
                        let dead = Lease {
                            holder: [0; 16],
                            until_ms: u64::MAX,
                            token_version: token_version.map(Version::as_u64),
                            state: LeaseState::Dead,
                        };
                        vec![self.lease_op(Some(&dead), Expect::Exactly(Some(lease_version)))?]
                    }
                };
                // A conflict means the record was replaced meanwhile: leave the new one be.
                let _ = commit(self.ns.vault(), ops)?;
                self.make_durable()?;
                Ok(Outcome::Failed {
                    error: Error::Refresh(e),
                    fallback: None,
                })
            }
            Err(e)
                if e.request_possibly_processed()
                    && self.config.ambiguous == AmbiguousFailure::RequireLogin =>
            {
                event!(warn, key = %self.key, "the refresh request may have reached the server without an answer; not presenting its refresh token again");
                let spent = Lease {
                    holder: [0; 16],
                    until_ms: u64::MAX,
                    token_version: token_version.map(Version::as_u64),
                    state: LeaseState::PossiblySpent,
                };
                let op = self.lease_op(Some(&spent), Expect::Exactly(Some(lease_version)))?;
                // A conflict means the record was replaced meanwhile: leave the new one be.
                let _ = commit(self.ns.vault(), vec![op])?;
                self.make_durable()?;
                let fallback = current
                    .filter(|t| t.expires_at().is_some_and(|exp| now < exp))
                    .cloned();
                Ok(Outcome::Failed {
                    error: self.reauth(SPENT),
                    fallback,
                })
            }
            Err(e) => {
                event!(warn, key = %self.key, kind = ?e.kind(), "the refresh failed; the stored token is kept");
                self.remove_lease(lease_version)?;
                let fallback = current
                    .filter(|t| t.expires_at().is_some_and(|exp| now < exp))
                    .cloned();
                Ok(Outcome::Failed {
                    error: Error::Refresh(e),
                    fallback,
                })
            }
        }
    }

    /// Waits until the lease at `version` is gone or replaced, or has expired.
    fn wait_for_lease(&self, version: Version, until: SystemTime) -> Result<()> {
        let mut poll = self.config.poll;
        loop {
            std::thread::sleep(poll);
            poll = (poll * 2).min(self.config.poll * 8);
            match self.read_lease()? {
                Some((_, v)) if v == version => {
                    if self.clock.now() >= until {
                        return Ok(());
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    /// Whether a token needs refreshing at `now`.
    fn needs_refresh(&self, token: &Token, now: SystemTime, fresh: bool) -> bool {
        match token.expires_at() {
            Some(_) => now >= self.refresh_point(token, now, fresh),
            None => false,
        }
    }

    /// When a token obtained at `obtained` should be refreshed: `margin` plus this
    /// authorizer's jitter before expiry, or halfway through its life when it was just issued
    /// with a lifetime shorter than that (never sooner than the minimum retry gap).
    fn refresh_point(&self, token: &Token, obtained: SystemTime, fresh: bool) -> SystemTime {
        let Some(expiry) = token.expires_at() else {
            return obtained + NO_EXPIRY_RECHECK;
        };
        let margin = self.config.margin + self.jitter;
        if fresh {
            let lifetime = expiry.duration_since(obtained).unwrap_or(Duration::ZERO);
            let point = expiry
                .checked_sub(margin.min(lifetime / 2))
                .unwrap_or(UNIX_EPOCH);
            point.max(obtained + self.config.min_retry_gap)
        } else {
            expiry.checked_sub(margin).unwrap_or(UNIX_EPOCH)
        }
    }

    fn backoff(&self, failures: u32, error: &Error) -> Duration {
        let doubled = self
            .config
            .min_retry_gap
            .saturating_mul(1u32 << failures.saturating_sub(1).min(20));
        let asked = match error {
            Error::Refresh(e) => e.retry_after().unwrap_or(Duration::ZERO),
            _ => Duration::ZERO,
        };
        doubled.max(asked).min(self.config.max_retry_gap)
    }

    fn reauth(&self, reason: &str) -> Error {
        Error::ReauthenticationRequired {
            namespace: self.ns.name().to_owned(),
            key: self.key.clone(),
            reason: reason.to_owned(),
        }
    }

    fn make_durable(&self) -> Result<()> {
        if self.ns.vault().is_buffered() {
            self.ns.vault().flush()?;
        }
        Ok(())
    }

    // ---- records ----

    fn token_op(&self, token: Option<&Token>, expect: Expect) -> Result<Op<'_>> {
        Ok(Op {
            ns: &self.ns,
            key: &self.key,
            body: token.map(|t| t.encode_body(&self.key)).transpose()?,
            record_type: RecordType::Token,
            expect,
        })
    }

    fn lease_op(&self, lease: Option<&Lease>, expect: Expect) -> Result<Op<'_>> {
        let body = match lease {
            Some(l) => Some(
                Secret::from_bytes(SecretSlice::from(l.encode())).encode_body(&self.lease_key)?,
            ),
            None => None,
        };
        Ok(Op {
            ns: &self.ns,
            key: &self.lease_key,
            body,
            record_type: RecordType::Secret,
            expect,
        })
    }

    fn read_lease(&self) -> Result<Option<(Lease, Version)>> {
        let Some((secret, version)) = self.ns.get_unchecked::<Secret>(&self.lease_key)? else {
            return Ok(None);
        };
        let lease = Lease::decode(secret.expose_bytes()).ok_or_else(|| {
            Error::Damaged(crate::Damage::Record {
                namespace: self.ns.name().to_owned(),
                key: Some(self.key.clone()),
                reason: "the token's refresh lease does not decode",
            })
        })?;
        Ok(Some((lease, version)))
    }

    fn put_lease(
        &self,
        lease: &Lease,
        expected: Option<Version>,
    ) -> Result<std::result::Result<Version, ()>> {
        let op = self.lease_op(Some(lease), Expect::Exactly(expected))?;
        Ok(match commit(self.ns.vault(), vec![op])? {
            Ok(written) => written.first().and_then(|w| w.version).ok_or(()),
            Err(_) => Err(()),
        })
    }

    fn remove_lease(&self, version: Version) -> Result<()> {
        let op = self.lease_op(None, Expect::Exactly(Some(version)))?;
        // A conflict means someone else already replaced or removed it.
        let _ = commit(self.ns.vault(), vec![op])?;
        Ok(())
    }

    fn remove_lease_if_ours(&self) -> Result<()> {
        if let Some((lease, version)) = self.read_lease()? {
            if lease.holder == self.holder {
                self.remove_lease(version)?;
            }
        }
        Ok(())
    }
}

impl Flight {
    fn finish(&self, result: Result<Token>) {
        *self.result.lock().unwrap_or_else(PoisonError::into_inner) = Some(result);
        self.done.notify_all();
    }

    fn wait(&self, wait: Option<Duration>) -> Result<Token> {
        let deadline = wait.map(|w| std::time::Instant::now() + w);
        let mut result = self.result.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(r) = result.as_ref() {
                return match r {
                    Ok(token) => Ok(token.clone()),
                    Err(e) => Err(e.duplicate()),
                };
            }
            result = match deadline {
                None => self
                    .done
                    .wait(result)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        return Err(Error::Refresh(RefreshError::transient(
                            "stopped waiting for the refresh; it goes on, and its result is \
                             stored for the next call",
                        )));
                    }
                    self.done
                        .wait_timeout(result, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
    }
}

impl Lease {
    fn until(&self) -> SystemTime {
        UNIX_EPOCH
            .checked_add(Duration::from_millis(self.until_ms))
            .unwrap_or(UNIX_EPOCH + Duration::from_secs(u64::from(u32::MAX)))
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(LEASE_LEN);
        out.push(LEASE_VERSION);
        out.push(match self.state {
            LeaseState::Refreshing => 0,
            LeaseState::Dead => 1,
            LeaseState::PossiblySpent => 2,
        });
        out.extend_from_slice(&self.holder);
        out.extend_from_slice(&self.until_ms.to_le_bytes());
        out.push(u8::from(self.token_version.is_some()));
        out.extend_from_slice(&self.token_version.unwrap_or(0).to_le_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != LEASE_LEN || bytes.first() != Some(&LEASE_VERSION) {
            return None;
        }
        let state = match bytes.get(1)? {
            0 => LeaseState::Refreshing,
            1 => LeaseState::Dead,
            2 => LeaseState::PossiblySpent,
            _ => return None,
        };
        let holder: [u8; 16] = bytes.get(2..18)?.try_into().ok()?;
        let until_ms = u64::from_le_bytes(bytes.get(18..26)?.try_into().ok()?);
        let has_version = *bytes.get(26)?;
        let version = u64::from_le_bytes(bytes.get(27..35)?.try_into().ok()?);
        let token_version = match has_version {
            0 if version == 0 => None,
            1 => Some(version),
            _ => return None,
        };
        Some(Self {
            holder,
            until_ms,
            token_version,
            state,
        })
    }
}

impl fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authorizer")
            .field("namespace", &self.shared.ns.name())
            .field("key", &self.shared.key)
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for AuthorizerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizerBuilder")
            .field("namespace", &self.ns.name())
            .field("key", &self.key)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// `max` scaled by a uniformly random fraction taken from `random`.
fn fraction_of(max: Duration, random: u64) -> Duration {
    #[allow(clippy::cast_precision_loss)]
    let fraction = (random >> 11) as f64 / (1u64 << 53) as f64;
    max.mul_f64(fraction)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_round_trips_and_rejects_damage() {
        for lease in [
            Lease {
                holder: [7; 16],
                until_ms: 1_700_000_000_123,
                token_version: Some(42),
                state: LeaseState::Refreshing,
            },
            Lease {
                holder: [0; 16],
                until_ms: u64::MAX,
                token_version: None,
                state: LeaseState::Dead,
            },
            Lease {
                holder: [0; 16],
                until_ms: u64::MAX,
                token_version: Some(7),
                state: LeaseState::PossiblySpent,
            },
        ] {
            let bytes = lease.encode();
            assert_eq!(bytes.len(), LEASE_LEN);
            assert!(Lease::decode(&bytes) == Some(lease));
            for cut in 0..bytes.len() {
                assert!(Lease::decode(&bytes[..cut]).is_none());
            }
            let mut bad = bytes.clone();
            bad[0] = 2;
            assert!(Lease::decode(&bad).is_none());
            let mut bad = bytes.clone();
            bad[1] = 9;
            assert!(Lease::decode(&bad).is_none());
        }
    }

    #[test]
    fn jitter_fraction_stays_in_bounds() {
        let max = Duration::from_secs(30);
        for r in [0, 1, u64::MAX, u64::MAX / 2, 12345] {
            assert!(fraction_of(max, r) <= max);
        }
        assert_eq!(fraction_of(max, 0), Duration::ZERO);
    }
}
