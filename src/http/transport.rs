//! How the HTTP refresher reaches the server: which URLs it accepts, the `ureq` agent of each
//! request, a connector that records whether the request was handed over, and the
//! classification of failures by that record.
//!
//! `ureq` does not say whether a failed request was written. A failure before (name
//! resolution, connecting, the TLS handshake and its certificate checks, a connection closed
//! or reset during the handshake) cannot have been processed by the server; a failure after
//! may have been. The [`Recorder`] connector sits at the end of the connector chain (after
//! TLS), so it sees exactly the writes of the HTTP request: the handshake is over before it
//! wraps the connection, and a CONNECT request to a proxy goes to another destination.
//!
//! This uses `ureq`'s `unversioned::transport` API, which does not follow semver: Cargo.toml
//! pins `ureq`'s minor version.

use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ureq::http::Uri;
use ureq::tls::{Certificate, RootCerts, TlsConfig};
use ureq::unversioned::resolver::DefaultResolver;
use ureq::unversioned::transport::{
    Buffers, ConnectProxyConnector, ConnectionDetails, Connector, NextTimeout, RustlsConnector,
    TcpConnector, Transport,
};

use crate::refresh::RefreshError;

/// What one request got to: whether any byte of it was accepted by the connection after the
/// connection (and its TLS session) was established.
#[derive(Debug, Default)]
pub(super) struct Progress {
    written: AtomicBool,
}

impl Progress {
    /// Whether any byte of the request was handed to the connection.
    pub(super) fn written(&self) -> bool {
        self.written.load(Ordering::SeqCst)
    }
}

/// The agent of one request to `target`: one timeout for the whole exchange, statuses as
/// answers (not errors), no redirects, no connection pool, the environment's proxy (not for
/// loopback hosts), the given root certificates (else the Mozilla roots), and a connector
/// that records into `progress`.
///
/// Each request has its own agent, and so a new connection: a pooled connection that the
/// server closed meanwhile fails only after the request was written, which would make a
/// request the server never saw ambiguous.
pub(super) fn agent(
    target: &Uri,
    timeout: Duration,
    roots: Option<&Arc<Vec<Certificate<'static>>>>,
    progress: &Arc<Progress>,
) -> ureq::Agent {
    let mut config = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .timeout_resolve(Some(timeout / 2))
        .timeout_connect(Some(timeout / 2))
        .http_status_as_error(false)
        .max_redirects(0)
        .max_idle_connections(0)
        .max_idle_connections_per_host(0)
        .user_agent(concat!("tokenvault/", env!("CARGO_PKG_VERSION")));
    if target.host().is_some_and(is_loopback_ip) {
        config = config.proxy(None);
    }
    if let Some(roots) = roots {
        config = config.tls_config(
            TlsConfig::builder()
                .root_certs(RootCerts::Specific(Arc::clone(roots)))
                .build(),
        );
    }
    let connector =
        ().chain(ConnectProxyConnector::default())
            .chain(TcpConnector::default())
            .chain(RustlsConnector::default())
            .chain(Recorder {
                target: target.clone(),
                progress: Arc::clone(progress),
            });
    ureq::Agent::with_parts(config.build(), connector, DefaultResolver::default())
}

/// The last connector of the chain: wraps the established connection to the token endpoint
/// in a [`Recorded`] transport.
struct Recorder {
    target: Uri,
    progress: Arc<Progress>,
}

impl fmt::Debug for Recorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recorder").finish_non_exhaustive()
    }
}

impl<In: Transport> Connector<In> for Recorder {
    type Out = Recorded<In>;

    fn connect(
        &self,
        details: &ConnectionDetails<'_>,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        let Some(inner) = chained else {
            return Ok(None);
        };
        // A connection to a CONNECT proxy runs through this chain too, to carry the CONNECT
        // request: that one is not ours, it only records the tunnel's own connection.
        let ours = details.uri.scheme() == self.target.scheme()
            && details.uri.authority() == self.target.authority();
        Ok(Some(Recorded {
            inner,
            progress: ours.then(|| Arc::clone(&self.progress)),
        }))
    }
}

/// A connection that records a successful write in its request's [`Progress`].
///
/// A write that fails did not hand over its last byte: the request is then incomplete, and
/// cannot be processed. Over TLS, rustls accepts the plaintext before it reaches the socket,
/// so a write "succeeds" as soon as the session is up: conservative (possibly processed).
struct Recorded<T> {
    inner: T,
    progress: Option<Arc<Progress>>,
}

/// Names the wrapper only: the inner transport's buffers may hold the request (and with it
/// the refresh token or client secret).
impl<T> fmt::Debug for Recorded<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recorded").finish_non_exhaustive()
    }
}

impl<T: Transport> Transport for Recorded<T> {
    fn buffers(&mut self) -> &mut dyn Buffers {
        self.inner.buffers()
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        let result = self.inner.transmit_output(amount, timeout);
        if result.is_ok() && amount > 0 {
            if let Some(progress) = &self.progress {
                progress.written.store(true, Ordering::SeqCst);
            }
        }
        result
    }

    fn maybe_await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        self.inner.maybe_await_input(timeout)
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        self.inner.await_input(timeout)
    }

    fn is_open(&mut self) -> bool {
        self.inner.is_open()
    }

    fn is_tls(&self) -> bool {
        self.inner.is_tls()
    }
}

/// Checks a configured URL: absolute, `https` (or `http` to a literal loopback address), no
/// user name or password. Messages name the scheme and host, never the whole URL.
pub(crate) fn check_url(url: &str, what: &str) -> Result<Uri, RefreshError> {
    let uri: Uri = url.parse().map_err(|_| {
        RefreshError::rejected(format!("the {what} URL is not a valid absolute URL"))
    })?;
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return Err(RefreshError::rejected(format!(
            "the {what} URL is not an absolute URL with a scheme and a host"
        )));
    };
    if authority.as_str().contains('@') {
        return Err(RefreshError::rejected(format!(
            "the {what} URL carries a user name or password: give client credentials with \
             client_secret instead"
        )));
    }
    let host = authority.host();
    match scheme.to_ascii_lowercase().as_str() {
        "https" => Ok(uri),
        "http" if is_loopback_ip(host) => Ok(uri),
        "http" if host.eq_ignore_ascii_case("localhost") => Err(RefreshError::rejected(format!(
            "the {what} URL must use https: plain http is allowed only to a literal loopback \
             address (a name can resolve elsewhere): use http://127.0.0.1 or http://[::1] \
             instead of http://localhost"
        ))),
        "http" => Err(RefreshError::rejected(format!(
            "the {what} URL must use https: plain http is allowed only to a literal loopback \
             address (127.0.0.1, [::1]), not to {host}"
        ))),
        _ => Err(RefreshError::rejected(format!(
            "the {what} URL must use https, not {scheme}"
        ))),
    }
}

/// A literal loopback address: `127.0.0.0/8`, `::1`, or an IPv4-mapped `127.0.0.0/8`
/// address. Names (`localhost`) are not: resolving them is up to the system's resolver.
fn is_loopback_ip(host: &str) -> bool {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    match bare.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => ip.is_loopback(),
        Ok(IpAddr::V6(ip)) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Err(_) => false,
    }
}

/// A failed exchange: what went wrong, and whether the request may have been processed,
/// which only a request handed to the connection (`written`) may have been. Messages are
/// ours: ureq's may quote the URL or server bytes.
pub(super) fn transport_error(e: ureq::Error, written: bool) -> RefreshError {
    use ureq::Error as E;
    use ureq::Timeout as T;
    let (error, after_write) = match e {
        // Writing the request timed out: its last bytes were not handed over.
        E::Timeout(phase @ (T::SendRequest | T::SendBody | T::PerWrite)) => (
            RefreshError::transient(format!(
                "the request timed out before it was sent ({phase})"
            )),
            false,
        ),
        E::Timeout(phase) => (
            RefreshError::transient(format!("the request timed out ({phase})")),
            true,
        ),
        E::Io(io) => (io_failure(&io), true),
        E::HostNotFound => (
            RefreshError::transient("the endpoint's host was not found"),
            true,
        ),
        E::ConnectionFailed => (
            RefreshError::transient("could not connect to the endpoint"),
            true,
        ),
        E::Protocol(_) | E::BodyStalled => (
            RefreshError::transient("the server broke the HTTP protocol"),
            true,
        ),
        E::Rustls(tls) => (
            RefreshError::transient(format!("TLS failure: {}", printable(&tls.to_string()))),
            true,
        ),
        E::Tls(what) => (
            RefreshError::transient(format!("TLS failure: {what}")),
            true,
        ),
        E::TlsRequired => (
            RefreshError::transient("the connection did not set up TLS"),
            true,
        ),
        E::LargeResponseHeader(_, limit) => (
            RefreshError::rejected(format!(
                "the answer's headers are larger than {limit} bytes"
            )),
            true,
        ),
        E::BadUri(_) => (RefreshError::rejected("the URL is not valid"), false),
        E::RedirectFailed | E::TooManyRedirects => (
            RefreshError::rejected("the endpoint answered with a redirect, which is not followed"),
            true,
        ),
        E::ConnectProxyFailed(_) | E::InvalidProxyUrl => {
            (RefreshError::transient("the HTTP proxy failed"), true)
        }
        E::StatusCode(status) => (
            RefreshError::transient(format!("the endpoint answered HTTP {status}")),
            true,
        ),
        _ => (
            RefreshError::rejected("the HTTP request could not be made"),
            true,
        ),
    };
    if written && after_write {
        possibly_processed(error)
    } else {
        sent_nothing(error)
    }
}

/// A failure while reading an answer: the server answered, so it did receive the request.
pub(super) fn answer_read_error(e: &std::io::Error) -> RefreshError {
    possibly_processed(io_failure(e))
}

/// An I/O failure, described (TLS failures arrive as `InvalidData` I/O errors carrying
/// rustls's error, whose text names the certificate problem).
fn io_failure(e: &std::io::Error) -> RefreshError {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::TimedOut | K::WouldBlock => RefreshError::transient("the request timed out"),
        K::ConnectionRefused => RefreshError::transient("the endpoint refused the connection"),
        K::InvalidData => RefreshError::transient(match e.get_ref() {
            Some(inner) => format!(
                "TLS failure or malformed data: {}",
                printable(&inner.to_string())
            ),
            None => "TLS failure or malformed data".to_owned(),
        }),
        kind => RefreshError::transient(format!("network error ({kind})")),
    }
}

/// Marks `error` as possibly processed, and says so.
fn possibly_processed(error: RefreshError) -> RefreshError {
    let message = format!(
        "{}; the request was sent and may have reached the server",
        error.message()
    );
    rebuild(&error, message).with_request_possibly_processed()
}

/// Says that nothing was sent.
fn sent_nothing(error: RefreshError) -> RefreshError {
    let message = format!("{}; the request was not sent", error.message());
    rebuild(&error, message)
}

/// `error` with another message (and without the possibly-processed mark).
pub(super) fn rebuild(error: &RefreshError, message: String) -> RefreshError {
    let mut out = RefreshError::new(error.kind(), message);
    if let Some(code) = error.oauth_error() {
        out = out.with_oauth_error(code);
    }
    if let Some(wait) = error.retry_after() {
        out = out.with_retry_after(wait);
    }
    out
}

/// At most 160 printable ASCII characters of a library's error text.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_ascii_whitespace() { ' ' } else { c })
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(160)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        for ok in [
            "https://auth.example.org/token",
            "HTTPS://auth.example.org:8443/oauth/token?x=1",
            "https://localhost/token",
            "http://127.0.0.1:9/token",
            "http://127.8.9.10/token",
            "http://[::1]:80/token",
            "http://[::ffff:127.0.0.1]:80/token",
        ] {
            assert!(check_url(ok, "token").is_ok(), "{ok}");
        }
        for bad in [
            "http://auth.example.org/token",
            "http://10.0.0.1/token",
            "http://127.0.0.1.example.org/token",
            "http://localhost:1/token",
            "http://LOCALHOST/token",
            "http://localhost./token",
            "http://[::ffff:10.0.0.1]/token",
            "ftp://auth.example.org/token",
            "/token",
            "auth.example.org/token",
            "https://user:PASSWORD@auth.example.org/token",
            "not a url",
        ] {
            let e = check_url(bad, "token").unwrap_err();
            assert_eq!(
                e.kind(),
                crate::refresh::RefreshErrorKind::Rejected,
                "{bad}"
            );
            assert!(!e.message().contains("PASSWORD"), "{e}");
        }
        let e = check_url("http://localhost:8080/token", "token").unwrap_err();
        assert!(e.message().contains("127.0.0.1"), "{e}");
    }

    #[test]
    fn failures_before_the_write_are_not_possibly_processed() {
        let reset = || std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        let tls = || std::io::Error::new(std::io::ErrorKind::InvalidData, "bad certificate");
        for (e, written, processed) in [
            (ureq::Error::Io(reset()), false, false),
            (ureq::Error::Io(reset()), true, true),
            (ureq::Error::Io(tls()), false, false),
            (ureq::Error::Io(tls()), true, true),
            (ureq::Error::Timeout(ureq::Timeout::Global), false, false),
            (ureq::Error::Timeout(ureq::Timeout::Global), true, true),
            (
                ureq::Error::Timeout(ureq::Timeout::SendRequest),
                true,
                false,
            ),
            (
                ureq::Error::Timeout(ureq::Timeout::RecvResponse),
                true,
                true,
            ),
            (ureq::Error::BodyStalled, false, false),
            (ureq::Error::HostNotFound, false, false),
        ] {
            let shown = format!("{e}");
            let r = transport_error(e, written);
            assert_eq!(r.request_possibly_processed(), processed, "{shown}: {r}");
            assert!(r.is_transient(), "{r}");
        }
    }
}
