//! A small connection pool: up to a fixed number of connections, opened on demand, dropped
//! when the connection is lost (a server restart, a network failure) and opened again by the
//! next call, so that clients recover without being restarted.

use std::sync::atomic::AtomicBool;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use postgres::Config;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::conn::Conn;
use crate::backend::{BackendError, BackendErrorKind};

pub(super) struct Pool {
    config: Config,
    tls: MakeRustlsConnect,
    max: usize,
    /// Whether the tables were created or checked (by the first connection).
    schema_ready: AtomicBool,
    state: Mutex<State>,
    freed: Condvar,
}

#[derive(Default)]
struct State {
    idle: Vec<Conn>,
    /// Connections open or being opened, idle or in use.
    open: usize,
    closed: bool,
}

/// Why a call on a connection failed.
pub(super) enum Failure {
    /// The connection was lost, or the call never reached the server: what it did is
    /// unknown. The connection is dropped.
    Lost(BackendError),
    /// The server answered with an error (the connection is still good).
    Refused(postgres::Error),
}

impl Pool {
    pub(super) fn new(config: Config, tls: MakeRustlsConnect, max: usize) -> Self {
        Self {
            config,
            tls,
            max: max.max(1),
            schema_ready: AtomicBool::new(false),
            state: Mutex::default(),
            freed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on a connection: an idle one, a new one while fewer than the maximum are
    /// open, or the next one given back.
    pub(super) fn run<T>(
        &self,
        f: impl FnOnce(&mut Conn) -> Result<T, postgres::Error>,
    ) -> Result<T, Failure> {
        let mut conn = self.take().map_err(Failure::Lost)?;
        let result = f(&mut conn);
        match result {
            Ok(value) => {
                self.give_back(conn);
                Ok(value)
            }
            Err(e) if e.code().is_some() && !conn.client.is_closed() => {
                self.give_back(conn);
                Err(Failure::Refused(e))
            }
            Err(e) => {
                self.forget();
                Err(Failure::Lost(super::db_err(e)))
            }
        }
    }

    fn take(&self) -> Result<Conn, BackendError> {
        let mut s = self.lock();
        loop {
            if s.closed {
                return Err(BackendError::new(
                    BackendErrorKind::Closed,
                    "the backend is closed",
                ));
            }
            if let Some(conn) = s.idle.pop() {
                if conn.client.is_closed() {
                    s.open -= 1;
                    continue;
                }
                return Ok(conn);
            }
            if s.open < self.max {
                s.open += 1;
                drop(s);
                return Conn::open(&self.config, &self.tls, &self.schema_ready)
                    .inspect_err(|_| self.forget());
            }
            s = self.freed.wait(s).unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn give_back(&self, conn: Conn) {
        let mut s = self.lock();
        if s.closed || conn.client.is_closed() {
            s.open -= 1;
        } else {
            s.idle.push(conn);
        }
        drop(s);
        self.freed.notify_one();
    }

    /// A connection in use was lost (or never opened).
    fn forget(&self) {
        let mut s = self.lock();
        s.open = s.open.saturating_sub(1);
        drop(s);
        self.freed.notify_one();
    }

    /// Closes the idle connections; connections in use close when given back. Later calls
    /// fail with [`BackendErrorKind::Closed`].
    pub(super) fn close(&self) {
        let mut s = self.lock();
        s.closed = true;
        let idle = std::mem::take(&mut s.idle);
        s.open -= idle.len();
        drop(s);
        self.freed.notify_all();
        for conn in idle {
            let _ = conn.client.close();
        }
    }
}
