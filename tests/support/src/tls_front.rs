//! A real TLS server on `127.0.0.1` for tests: it completes the handshake with a chosen
//! certificate and relays the request to a backend (the token server of
//! [`token_server`](crate::token_server)) and the answer back, or misbehaves during the handshake. Also
//! a CONNECT proxy that misbehaves or tunnels.
//!
//! The certificates are in `tests/support/tls/` (made once by `make-certs.sh`, committed): a test
//! CA ([`CA_PEM`]), and for `127.0.0.1` a certificate it signed ([`Cert::Good`]), a
//! self-signed one ([`Cert::SelfSigned`]), an expired one ([`Cert::Expired`]), and one for
//! `auth.example.org` ([`Cert::OtherHost`]).
//!
//! ```ignore
//! use support::tls_front::{self, Cert, Mode, TlsFront};
//! use support::token_server::{Config, TokenServer};
//! let server = TokenServer::start(Config::default());
//! let front = TlsFront::start(server.addr(), Mode::Serve(Cert::Good));
//! let refresher = HttpRefresher::refresh_token_grant(&front.url(), "client-1")?
//!     .root_certificates_pem(tls_front::CA_PEM)?;
//! ```

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};

/// The test CA, which signed [`Cert::Good`], [`Cert::Expired`] and [`Cert::OtherHost`].
pub const CA_PEM: &[u8] = include_bytes!("../tls/ca.pem");

/// A server certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cert {
    /// `127.0.0.1`, signed by the test CA, valid until 2124.
    Good,
    /// `127.0.0.1`, self-signed: no client trusts it.
    SelfSigned,
    /// `127.0.0.1`, signed by the test CA, valid only in 2000.
    Expired,
    /// `auth.example.org`, signed by the test CA.
    OtherHost,
}

impl Cert {
    fn pem(self) -> (&'static [u8], &'static [u8]) {
        match self {
            Self::Good => (
                include_bytes!("../tls/server.pem"),
                include_bytes!("../tls/server.key"),
            ),
            Self::SelfSigned => (
                include_bytes!("../tls/self-signed.pem"),
                include_bytes!("../tls/self-signed.key"),
            ),
            Self::Expired => (
                include_bytes!("../tls/expired.pem"),
                include_bytes!("../tls/expired.key"),
            ),
            Self::OtherHost => (
                include_bytes!("../tls/wrong-host.pem"),
                include_bytes!("../tls/wrong-host.key"),
            ),
        }
    }

    fn server_config(self) -> Arc<ServerConfig> {
        let (cert, key) = self.pem();
        let chain = vec![CertificateDer::from_pem_slice(cert).unwrap()];
        let key = PrivateKeyDer::from_pem_slice(key).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        Arc::new(config)
    }
}

/// What the front does with each connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Completes the handshake with this certificate, then relays one request to the backend
    /// and its answer back (the backend's lost answer is lost here too).
    Serve(Cert),
    /// Waits for the ClientHello, then closes the connection without reading it: the kernel
    /// answers with a reset (unread data), in the middle of the handshake.
    ResetInHandshake,
    /// Reads the ClientHello, then closes the connection cleanly (the client sees the end of
    /// the stream in the middle of the handshake).
    CloseInHandshake,
    /// Reads the ClientHello and answers with bytes that are not TLS.
    Garbage,
}

/// The running front. Stops when dropped.
pub struct TlsFront {
    shared: Arc<Shared>,
    addr: SocketAddr,
    acceptor: Option<JoinHandle<()>>,
}

struct Shared {
    mode: Mutex<Mode>,
    backend: SocketAddr,
    stopping: AtomicBool,
    connections: AtomicUsize,
    handshakes: AtomicUsize,
    relayed: AtomicUsize,
}

impl TlsFront {
    /// Starts a front on `127.0.0.1` with a free port, relaying to `backend`.
    pub fn start(backend: SocketAddr, mode: Mode) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            mode: Mutex::new(mode),
            backend,
            stopping: AtomicBool::new(false),
            connections: AtomicUsize::new(0),
            handshakes: AtomicUsize::new(0),
            relayed: AtomicUsize::new(0),
        });
        let for_thread = Arc::clone(&shared);
        let acceptor = std::thread::Builder::new()
            .name("tls-front".to_owned())
            .spawn(move || {
                for stream in listener.incoming() {
                    if for_thread.stopping.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(stream) = stream else { continue };
                    let shared = Arc::clone(&for_thread);
                    let _ = std::thread::Builder::new()
                        .name("tls-front-conn".to_owned())
                        .spawn(move || serve(stream, &shared));
                }
            })
            .unwrap();
        Self {
            shared,
            addr,
            acceptor: Some(acceptor),
        }
    }

    /// The token endpoint through the front: `https://127.0.0.1:PORT/token`.
    pub fn url(&self) -> String {
        format!("https://{}/token", self.addr)
    }

    /// The address listened on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Changes what the front does with the next connections.
    pub fn set_mode(&self, mode: Mode) {
        *self
            .shared
            .mode
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = mode;
    }

    /// Connections accepted.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Handshakes completed.
    pub fn handshakes(&self) -> usize {
        self.shared.handshakes.load(Ordering::SeqCst)
    }

    /// Requests relayed to the backend.
    pub fn relayed(&self) -> usize {
        self.shared.relayed.load(Ordering::SeqCst)
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(handle) = self.acceptor.take() {
            let _ = handle.join();
        }
    }
}

fn serve(mut tcp: TcpStream, shared: &Shared) {
    if shared.stopping.load(Ordering::SeqCst) {
        return;
    }
    shared.connections.fetch_add(1, Ordering::SeqCst);
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = tcp.set_write_timeout(Some(Duration::from_secs(10)));
    let mode = *shared.mode.lock().unwrap_or_else(PoisonError::into_inner);
    let mut hello = [0u8; 16 * 1024];
    match mode {
        Mode::ResetInHandshake => {
            // Wait until the ClientHello is here, and leave it unread: closing a socket with
            // unread data sends a reset.
            let _ = tcp.peek(&mut hello);
            drop(tcp);
        }
        Mode::CloseInHandshake => {
            let _ = tcp.read(&mut hello);
            let _ = tcp.shutdown(Shutdown::Both);
        }
        Mode::Garbage => {
            let _ = tcp.read(&mut hello);
            let _ = tcp.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
            let _ = tcp.shutdown(Shutdown::Write);
            let _ = tcp.read(&mut hello);
        }
        Mode::Serve(cert) => {
            let Ok(conn) = ServerConnection::new(cert.server_config()) else {
                return;
            };
            let mut tls = StreamOwned::new(conn, tcp);
            while tls.conn.is_handshaking() {
                if tls.conn.complete_io(&mut tls.sock).is_err() {
                    return;
                }
            }
            shared.handshakes.fetch_add(1, Ordering::SeqCst);
            relay(&mut tls, shared);
        }
    }
}

/// Relays one request (head and `Content-Length` body) to the backend, then the backend's
/// bytes back until it closes.
fn relay(tls: &mut StreamOwned<ServerConnection, TcpStream>, shared: &Shared) {
    let Some(request) = read_request(tls) else {
        return;
    };
    let Ok(mut backend) = TcpStream::connect(shared.backend) else {
        return;
    };
    let _ = backend.set_read_timeout(Some(Duration::from_secs(30)));
    if backend.write_all(&request).is_err() {
        return;
    }
    shared.relayed.fetch_add(1, Ordering::SeqCst);
    let mut answer = Vec::new();
    let _ = backend.read_to_end(&mut answer);
    if answer.is_empty() {
        // The backend hung up without an answer: so does the front (no close_notify).
        let _ = tls.sock.shutdown(Shutdown::Both);
        return;
    }
    let _ = tls.write_all(&answer);
    tls.conn.send_close_notify();
    let _ = tls.flush();
    let _ = tls.conn.complete_io(&mut tls.sock);
}

/// Reads a request's head and `Content-Length` body.
pub fn read_request(stream: &mut impl Read) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap_or(0));
    while buf.len() < head_end + len {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(buf)
}

/// What a [`ConnectProxy`] does with a `CONNECT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyMode {
    /// Reads the start of the `CONNECT` request, then resets the connection.
    ResetInConnect,
    /// Answers `200` and tunnels to this address (whatever host the client asked for).
    TunnelTo(SocketAddr),
}

/// An HTTP CONNECT proxy on `127.0.0.1`. Stops when dropped.
pub struct ConnectProxy {
    addr: SocketAddr,
    stopping: Arc<AtomicBool>,
    connects: Arc<AtomicUsize>,
    acceptor: Option<JoinHandle<()>>,
}

impl ConnectProxy {
    /// Starts a proxy with a free port.
    pub fn start(mode: ProxyMode) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stopping = Arc::new(AtomicBool::new(false));
        let connects = Arc::new(AtomicUsize::new(0));
        let (stop, count) = (Arc::clone(&stopping), Arc::clone(&connects));
        let acceptor = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut client) = stream else { continue };
                let count = Arc::clone(&count);
                std::thread::spawn(move || {
                    let _ = client.set_read_timeout(Some(Duration::from_secs(10)));
                    if mode == ProxyMode::ResetInConnect {
                        // Read the start of the CONNECT request only: closing a socket with
                        // unread data sends a reset.
                        let mut start = [0u8; 8];
                        if client.read_exact(&mut start).is_ok() && &start == b"CONNECT " {
                            count.fetch_add(1, Ordering::SeqCst);
                        }
                        return;
                    }
                    let Some(request) = read_request(&mut client) else {
                        return;
                    };
                    if !request.starts_with(b"CONNECT ") {
                        return;
                    }
                    count.fetch_add(1, Ordering::SeqCst);
                    match mode {
                        ProxyMode::ResetInConnect => {}
                        ProxyMode::TunnelTo(target) => {
                            let Ok(upstream) = TcpStream::connect(target) else {
                                return;
                            };
                            if client
                                .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                                .is_err()
                            {
                                return;
                            }
                            let (mut c2, mut u2) =
                                (client.try_clone().unwrap(), upstream.try_clone().unwrap());
                            let (mut client, mut upstream) = (client, upstream);
                            let up = std::thread::spawn(move || {
                                let _ = std::io::copy(&mut c2, &mut u2);
                                let _ = u2.shutdown(Shutdown::Write);
                            });
                            let _ = std::io::copy(&mut upstream, &mut client);
                            let _ = client.shutdown(Shutdown::Both);
                            let _ = up.join();
                        }
                    }
                });
            }
        });
        Self {
            addr,
            stopping,
            connects,
            acceptor: Some(acceptor),
        }
    }

    /// The proxy's URL: `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `CONNECT` requests received.
    pub fn connects(&self) -> usize {
        self.connects.load(Ordering::SeqCst)
    }
}

impl Drop for ConnectProxy {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(handle) = self.acceptor.take() {
            let _ = handle.join();
        }
    }
}
