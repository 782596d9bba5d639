//! The authorizer: a valid access token on demand, refreshed at most once at a time per grant,
//! across threads, vault handles and processes, and stored durably before anyone sees it.

mod answer;
mod builder;
mod lease;
pub(crate) use self::lease::LEASE_LAYER;
mod owed;
mod takeover;
mod transaction;

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use secrecy::ExposeSecret;
use zeroize::Zeroizing;

use crate::clock::Clock;
use crate::namespace::{InternalKey, Namespace};
use crate::options::Durability;
use crate::refresh::Refresher;
use crate::token::Token;
use crate::token_error::{Result, TokenError};
use crate::trace::event;

pub use self::builder::AuthorizerBuilder;
use self::builder::Config;
use self::owed::Owed;
use self::transaction::Flight;

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
/// - **A lease across handles, processes and machines.** Before calling the [`Refresher`],
///   the authorizer stores a lease next to the record ("being refreshed by this handle until
///   T", T on the storage's clock: the database server's for a shared vault), with
///   compare-and-swap. Another handle (another `Authorizer`, a clone of the vault, another
///   process or machine) that finds a live lease waits for it and re-reads the record instead
///   of refreshing. The new token is committed with compare-and-swap against the version read
///   under the lease, in the same atomic write that removes the lease.
/// - **A holder that outlives its lease** (killed, paused, partitioned) loses it to the next
///   handle that needs the token after its end: that handle takes it over with the next
///   fencing counter and refreshes. The stalled holder's commit is then refused, and it
///   serves the stored winner; its commit goes through if nobody took the lease, and its
///   answer is stored after all if the taker stored no successor (its presentation was
///   refused as a reuse): a rotating server's only valid refresh token is never dropped. So a
///   refresh token is presented once per holder of its lease: once, unless a holder stalled
///   past the lease time, which must exceed any refresh (a server with refresh-token reuse
///   detection may revoke the grant at the second presentation: `SECURITY.md`). Storing a new
///   grant under the key (a new login) clears any lease.
/// - **Failures.** A dead grant (`invalid_grant`) is handled by the [`DeadGrant`] policy and
///   returned as [`TokenError::Refresh`]; a transient failure keeps the stored token, and is retried
///   after a backoff that starts at the minimum retry gap and doubles up to the maximum (or the
///   server's `Retry-After`). Meanwhile, a token that has not actually expired yet (only
///   entered its margin) is still served. A failure never yields another kind of token.
/// - **Nothing after the refresher's call is lost.** Its outcome (the new token, or a mark on
///   the grant) is kept in memory, with the lease, until it is in the store: a storage error
///   or a panic on the way never leads to presenting the same refresh token again. An answer
///   too large for a record once merged is stored without its largest extra fields (a huge
///   `id_token`), or, if even that does not fit, served from memory until it expires. An
///   answer naming another identity or resource server than the stored token is never
///   stored nor served (the grant is then handled like after an ambiguous failure: see
///   [`AmbiguousFailure`]).
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use tokenvault::{KeySource, Token, Vault};
/// use tokenvault::oauth::{Authorizer, RefreshError};
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

/// What the authorizer does with the stored record when the refresher reports a dead grant
/// ([`RefreshErrorKind::InvalidGrant`](crate::oauth::RefreshErrorKind::InvalidGrant)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeadGrant {
    /// Remove the record (the default): the grant is useless, and a later call starts from
    /// nothing (a client-credentials refresher mints a new token; a refresh-token refresher
    /// reports that there is nothing to refresh with).
    #[default]
    Remove,
    /// Keep the record and mark it dead: later calls fail at once with
    /// [`TokenError::ReauthenticationRequired`] without calling the token endpoint, until a new
    /// grant is stored under the key. Keeps the identity and scopes for the next login.
    Mark,
}

/// What the authorizer does after a refresh that failed *ambiguously*: the request may have
/// reached the server, but no answer came back (a timeout or a lost connection after sending;
/// see [`RefreshError::request_possibly_processed`](crate::oauth::RefreshError::request_possibly_processed)). The server may have exchanged, and so
/// spent, the refresh token; presenting it again could be refused, or, on servers with
/// refresh-token reuse detection, revoke the whole grant.
///
/// The same policy applies to an answer the authorizer refuses because it names another
/// identity or resource server than the stored token (the server answered, so it may have
/// rotated the refresh token), to a refresher that panicked (it may have sent its request
/// first), and to a refresh whose outcome was lost inside the authorizer. A grant without a
/// refresh token (client credentials) has nothing to spend: its ambiguous failures are
/// always retried after the backoff.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum AmbiguousFailure {
    /// Never present that refresh token again (the default): the record is marked, later
    /// calls get [`TokenError::ReauthenticationRequired`] until a new grant is stored, and the
    /// current access token is still served until it expires.
    #[default]
    RequireLogin,
    /// Treat it as a transient failure and retry with the same refresh token after the
    /// backoff: right for servers that do not rotate refresh tokens (Globus Auth, among
    /// others), or that accept a reused one within a grace period. A refused answer (another
    /// identity or resource server) is then reported as a
    /// [`Rejected`](crate::oauth::RefreshErrorKind::Rejected) refresh error, the record kept.
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

struct Shared {
    ns: Namespace,
    key: String,
    /// The lease's internal record beside the token.
    lease: InternalKey,
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
    last_error: Option<TokenError>,
    /// The access token a caller reported as refused (see [`Authorizer::invalidate`]).
    rejected: Option<Zeroizing<Vec<u8>>>,
    /// What a refresh left owed to the store (a refreshed token it did not take, a mark on
    /// the grant, or an outcome not settled yet): written before anything else at the next
    /// transaction, and its lease stays meanwhile, so that no handle presents the refresh
    /// token already sent. Cleared only once the write landed (or the grant was replaced).
    owed: Option<Owed>,
}

struct Cached {
    token: Token,
    refresh_at: SystemTime,
}

impl Authorizer {
    /// A valid token: from memory, from the store, or freshly refreshed and stored. Blocks
    /// while a refresh runs (at most about the lease time when another handle holds the
    /// lease).
    ///
    /// # Errors
    /// [`TokenError::Refresh`] when the refresh failed and no unexpired token is at hand (its
    /// [`kind`](crate::oauth::RefreshError::kind) says whether the grant is dead or the failure
    /// transient); [`TokenError::ReauthenticationRequired`] for a grant marked dead or possibly
    /// spent, a refresh interrupted elsewhere, or an answer for another identity or resource
    /// server; [`Error::TooLarge`](crate::Error::TooLarge) (as [`TokenError::Vault`]) once a refreshed token too large to store, kept in memory,
    /// has expired; storage errors. Within the retry gap after a failure, the failure is
    /// returned again without a new attempt.
    pub fn token(&self) -> Result<Token> {
        self.token_within(None)
    }

    /// As [`token`](Self::token), but stops waiting after `wait`. The refresh goes on (and
    /// its result is stored and cached for the next call); this caller gets
    /// [`TokenError::Refresh`] with a transient error.
    ///
    /// # Errors
    /// As [`token`](Self::token); a transient [`TokenError::Refresh`] on timeout.
    pub fn token_timeout(&self, wait: Duration) -> Result<Token> {
        self.token_within(Some(wait))
    }

    /// Reports that the server refused `token` (an HTTP 401): the next call refreshes, even
    /// if the token looks unexpired. Only the token that was refused is affected, so many
    /// callers reporting the same refusal cause one refresh.
    ///
    /// The reported token is compared with the cached and stored ones in constant time.
    pub fn invalidate(&self, token: &Token) {
        let mut st = self.shared.lock();
        let refused = token.access_token().expose_secret().as_bytes();
        if st
            .cached
            .as_ref()
            .is_some_and(|cached| same_access(&cached.token, refused))
        {
            st.cached = None;
        }
        st.rejected = Some(Zeroizing::new(refused.to_vec()));
        event!(debug, key = %self.shared.key, "a caller reported the access token refused");
    }

    /// Logs out, local first: removes the stored token (and any lease) durably, forgets the
    /// cached one, and only then calls `revoke` with the removed token (for example to send
    /// it to the server's revocation endpoint). If a refreshed token was still waiting to be
    /// stored (a storage failure), `revoke` gets that one: it holds the live refresh token. A revocation failure is returned in the
    /// [`Logout`] report; the local record is gone either way.
    ///
    /// ```
    /// # use tokenvault::oauth::{Authorizer, RefreshError};
    /// # use tokenvault::{KeySource, Token, Vault};
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
    /// lease durably; returns the removed token (the owed one, if a refreshed token was still
    /// owed to the store).
    fn remove_local(&self) -> Result<Option<Token>> {
        let shared = &self.shared;
        {
            let mut st = shared.lock();
            st.cached = None;
            st.last_error = None;
            st.retry_at = None;
            st.failures = 0;
        }
        let stored = shared.ns.get_versioned::<Token>(&shared.key)?;
        let mut batch = shared.ns.vault().batch();
        batch
            .remove(&shared.ns, &shared.key)?
            .remove(&shared.ns, &shared.lease)?;
        // Unconditional removals cannot conflict.
        let _ = batch.commit()?;
        // Only now is what a refresh left owed moot (the lease it kept is gone): had the
        // removal failed, it would still be owed, and the old refresh token still guarded.
        let owed = shared.lock().owed.take();
        shared.make_durable()?;
        event!(info, key = %shared.key, removed = stored.is_some(), "logged out");
        let owed_token = match owed {
            Some(Owed::Token { token, .. }) => Some(token),
            _ => None,
        };
        Ok(owed_token.or(stored.map(|(token, _)| token)))
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
                        return Err(e.clone());
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
                        return Err(TokenError::backend(format!(
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
    /// # use tokenvault::oauth::{Authorizer, RefreshError};
    /// # use tokenvault::{KeySource, Token, Vault};
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
            .map_err(|e| TokenError::backend(format!("the blocking task failed: {e}")))?
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
            .map_err(|e| TokenError::backend(format!("the blocking task failed: {e}")))??;
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

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update of the state is a plain assignment: a panic cannot leave it torn.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a token needs refreshing at `now` (an expired one always does, even one that
    /// another handle's refresh just left behind).
    fn needs_refresh(&self, token: &Token, now: SystemTime, fresh: bool) -> bool {
        match token.expires_at() {
            Some(expiry) => now >= expiry || now >= self.refresh_point(token, now, fresh),
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

    fn backoff(&self, failures: u32, error: &TokenError) -> Duration {
        let doubled = self
            .config
            .min_retry_gap
            .saturating_mul(1u32 << failures.saturating_sub(1).min(20));
        let asked = match error {
            TokenError::Refresh(e) => e.retry_after().unwrap_or(Duration::ZERO),
            _ => Duration::ZERO,
        };
        doubled.max(asked).min(self.config.max_retry_gap)
    }

    fn reauth(&self, reason: &str) -> TokenError {
        TokenError::ReauthenticationRequired {
            namespace: self.ns.name().to_owned(),
            key: self.key.clone(),
            reason: reason.to_owned(),
        }
    }

    fn make_durable(&self) -> Result<()> {
        let vault = self.ns.vault();
        if vault.durability() == Durability::Buffered {
            vault.flush()?;
        }
        Ok(())
    }
}

/// Whether `token`'s access token is `access`, compared in constant time (for equal lengths).
fn same_access(token: &Token, access: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    bool::from(
        token
            .access_token()
            .expose_secret()
            .as_bytes()
            .ct_eq(access),
    )
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
