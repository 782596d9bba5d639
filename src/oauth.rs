//! OAuth: a valid access token on demand.
//!
//! An [`Authorizer`] serves one grant (a namespace and a key of a vault): it returns the
//! stored access token while it is fresh, and otherwise refreshes it through a
//! [`Refresher`], at most once at a time however many threads, handles and processes ask,
//! storing the answer durably before anyone sees it. A [`Refresher`] is a closure or
//! [`HttpRefresher`] (feature `http`: RFC 6749 refresh-token and client-credentials grants
//! against a token endpoint). [`TokenResponse`] reads a token endpoint's answer with
//! absolute expiries. A [`Clock`] lets tests move time.
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use tokenvault::oauth::{Authorizer, RefreshError};
//! use tokenvault::secrecy::{ExposeSecret, SecretBox};
//! use tokenvault::{KeySource, Token, Vault};
//!
//! # let dir = tempfile::tempdir()?;
//! let vault = Vault::create(dir.path().join("v"), &KeySource::raw_key(SecretBox::new(Box::new([7; 32]))))?;
//! let ns = vault.namespace("user/alice")?;
//! ns.put("api", &Token::new("old".into()).with_refresh_token("rt-1".into())
//!     .with_expires_at(SystemTime::now() - Duration::from_secs(1)))?;
//!
//! let refresher = |_current: Option<&Token>| -> Result<Token, RefreshError> {
//!     // Call the token endpoint here.
//!     Ok(Token::new("fresh".into()).with_expires_at(SystemTime::now() + Duration::from_secs(3600)))
//! };
//! let authorizer = Authorizer::builder(&ns, "api", refresher).build()?;
//! assert_eq!(authorizer.token()?.access_token().expose_secret(), "fresh");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub use crate::authorizer::{
    AmbiguousFailure, Authorizer, AuthorizerBuilder, DeadGrant, Logout, DEFAULT_JITTER,
    DEFAULT_LEASE_TIME, DEFAULT_MARGIN, DEFAULT_MAX_RETRY_GAP, DEFAULT_MIN_RETRY_GAP,
};
pub use crate::clock::{Clock, ManualClock, SystemClock};
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use crate::http::{BrowserLogin, ClientAuth, DeviceAuthorization, GrantType, HttpRefresher};
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use crate::provider::{Provider, Providers};
pub use crate::refresh::{RefreshError, RefreshErrorKind, Refresher};
pub use crate::response::{TokenResponse, MAX_RESPONSE_LEN};
pub use crate::token_error::{Result, TokenError};
