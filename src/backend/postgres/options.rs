//! How a [`PostgresBackend`] connects: [`PostgresOptions`] (pool size, CA certificates,
//! password file, connect timeout), and the checks on the URL.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use postgres::config::{Host, SslMode};
use postgres::Config;

use super::password::{self, Target};
use super::pool::{Failure, Pool};
use super::{tls, PostgresBackend};
use crate::backend::{BackendError, BackendErrorKind};

/// The default number of connections a backend opens at most (4).
pub const DEFAULT_POOL_SIZE: usize = 4;
/// The default time to wait for a connection to the server (10 s), unless the URL sets
/// `connect_timeout`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How to connect a [`PostgresBackend`]: at most how many connections, which CA
/// certificates verify the server (default: the Mozilla roots), which password file to read
/// (default: `PGPASSFILE`, else `~/.pgpass`), and how long to wait for the server.
///
/// ```
/// use std::time::Duration;
/// use tokenvault::backend::PostgresOptions;
///
/// let options = PostgresOptions::new()
///     .pool_size(8)
///     .ca_file("/etc/tokenvault/db-ca.pem")
///     .password_file("/run/secrets/pgpass")
///     .connect_timeout(Duration::from_secs(3));
/// # let _ = options;
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostgresOptions {
    pool_size: usize,
    ca_file: Option<PathBuf>,
    password_file: Option<PathBuf>,
    connect_timeout: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl PostgresOptions {
    /// The defaults: [`DEFAULT_POOL_SIZE`] connections, the Mozilla roots, the password
    /// file `PGPASSFILE` names (else `~/.pgpass`, if there is one), and
    /// [`DEFAULT_CONNECT_TIMEOUT`].
    ///
    /// ```
    /// use tokenvault::backend::{PostgresOptions, DEFAULT_POOL_SIZE};
    ///
    /// assert_eq!(PostgresOptions::new(), PostgresOptions::new().pool_size(DEFAULT_POOL_SIZE));
    /// ```
    pub fn new() -> Self {
        Self {
            pool_size: DEFAULT_POOL_SIZE,
            ca_file: None,
            password_file: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }

    /// At most this many connections at once (at least 1). Calls beyond it wait for a
    /// connection to be free.
    ///
    /// ```
    /// use tokenvault::backend::PostgresOptions;
    ///
    /// let options = PostgresOptions::new().pool_size(16);
    /// # let _ = options;
    /// ```
    #[must_use]
    pub fn pool_size(mut self, connections: usize) -> Self {
        self.pool_size = connections.max(1);
        self
    }

    /// Verifies the server against the CA certificates of this PEM file only, instead of
    /// the Mozilla roots (for a database whose certificate a private CA signed).
    ///
    /// ```
    /// use tokenvault::backend::PostgresOptions;
    ///
    /// let options = PostgresOptions::new().ca_file("/etc/tokenvault/db-ca.pem");
    /// # let _ = options;
    /// ```
    #[must_use]
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// Reads the password from this file (libpq's `.pgpass` format; it must be a regular
    /// file only its owner can access) instead of `PGPASSFILE` or `~/.pgpass`.
    ///
    /// ```
    /// use tokenvault::backend::PostgresOptions;
    ///
    /// let options = PostgresOptions::new().password_file("/run/secrets/pgpass");
    /// # let _ = options;
    /// ```
    #[must_use]
    pub fn password_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.password_file = Some(path.into());
        self
    }

    /// How long to wait for the server when opening a connection (the URL's
    /// `connect_timeout`, if it has one, wins).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tokenvault::backend::PostgresOptions;
    ///
    /// let options = PostgresOptions::new().connect_timeout(Duration::from_secs(2));
    /// # let _ = options;
    /// ```
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Connects to the database at `url` (`postgres://user@host:port/database`, with
    /// libpq's URL options) and opens the vault named `vault` in it: creates the tables on
    /// first use, and checks their schema version and the server's durability settings.
    ///
    /// The URL must not hold a password: the password comes from the password file. TLS is
    /// required and the server verified, unless the URL says `sslmode=disable` (any other
    /// `sslmode` is taken as `verify-full`: rustls always checks the certificate and the
    /// name). Error messages never repeat the URL.
    ///
    /// `vault` is 1 to 128 ASCII letters, digits, `.`, `_` or `-`; a database holds any
    /// number of vaults, each under its own name.
    ///
    /// # Errors
    /// [`BackendErrorKind::Other`] for a URL that does not parse, holds a password or names
    /// no user, or an invalid vault name; [`BackendErrorKind::Unsupported`] for another
    /// schema version or a server with `fsync = off`; [`BackendErrorKind::UnsafePath`] for
    /// a password file others can read; connection and TLS errors.
    ///
    /// ```no_run
    /// use tokenvault::backend::PostgresOptions;
    /// use tokenvault::{KeySource, Vault};
    /// use tokenvault::secrecy::SecretBox;
    ///
    /// let backend = PostgresOptions::new()
    ///     .ca_file("/etc/tokenvault/db-ca.pem")
    ///     .connect("postgres://tokenvault@db.internal/tokens", "billing")?;
    /// let key = KeySource::raw_key(SecretBox::new(Box::new([7; 32])));
    /// let vault = Vault::open_with_backend(backend, &key)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn connect(&self, url: &str, vault: &str) -> Result<PostgresBackend, BackendError> {
        check_vault_name(vault)?;
        let (mut config, ssl) = parse_url(url)?;
        config.ssl_mode(ssl);
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(self.connect_timeout);
        }
        config.application_name("tokenvault");
        self.add_password(&mut config)?;
        let tls = tls::connector(self.ca_file.as_deref())?;
        let pool = Pool::new(config, tls, self.pool_size);
        // The first connection creates or checks the tables.
        match pool.run(|_| Ok(())) {
            Ok(()) => {}
            Err(Failure::Lost(e)) => return Err(e),
            Err(Failure::Refused(e)) => return Err(super::db_err(e)),
        }
        Ok(PostgresBackend::new(vault.to_owned(), pool))
    }

    fn add_password(&self, config: &mut Config) -> Result<(), BackendError> {
        let (file, explicit) = match &self.password_file {
            Some(file) => (file.clone(), true),
            None => match password::default_file() {
                Some(file) => (file, std::env::var_os("PGPASSFILE").is_some()),
                None => return Ok(()),
            },
        };
        if !explicit && !file.exists() {
            return Ok(());
        }
        let host = match config.get_hosts().first() {
            Some(Host::Tcp(host)) => host.clone(),
            // libpq matches a Unix-domain socket connection as "localhost".
            _ => "localhost".to_owned(),
        };
        let user = config.get_user().unwrap_or_default().to_owned();
        let database = config.get_dbname().unwrap_or(&user).to_owned();
        let target = Target {
            host: &host,
            port: config.get_ports().first().copied().unwrap_or(5432),
            database: &database,
            user: &user,
        };
        if let Some(password) = password::lookup(&file, &target)? {
            // The client keeps it in its configuration to reconnect (not wiped).
            config.password(password.as_bytes());
        }
        Ok(())
    }
}

/// `vault` as a backend's vault name: 1 to 128 ASCII letters, digits, `.`, `_`, `-`.
fn check_vault_name(vault: &str) -> Result<(), BackendError> {
    let ok = !vault.is_empty()
        && vault.len() <= 128
        && vault
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(BackendError::new(
            BackendErrorKind::Other,
            "a vault name is 1 to 128 ASCII letters, digits, '.', '_' or '-'",
        ))
    }
}

/// Whether `url` carries a password (in its user part or as a `password` option), without
/// parsing anything else: the CLI uses it to refuse such a URL before it goes anywhere.
///
/// ```
/// use tokenvault::backend::postgres_url_has_password;
///
/// assert!(postgres_url_has_password("postgres://svc:secret@db/tokens"));
/// assert!(postgres_url_has_password("postgresql://svc@db/tokens?password=secret"));
/// assert!(!postgres_url_has_password("postgres://svc@db/tokens?sslmode=disable"));
/// ```
pub fn postgres_url_has_password(url: &str) -> bool {
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
        .unwrap_or(url);
    let (authority, query) = match rest.split_once('?') {
        Some((before, query)) => (before, query),
        None => (rest, ""),
    };
    let authority = authority.split('/').next().unwrap_or_default();
    let user_part = authority.rsplit_once('@').map(|(user, _)| user);
    user_part.is_some_and(|user| user.contains(':'))
        || query
            .split('&')
            .any(|pair| pair.split('=').next() == Some("password"))
}

/// The configuration a URL gives, with its `sslmode` taken out and mapped: `disable` as
/// asked, anything else as required TLS (rustls verifies certificate and name).
fn parse_url(url: &str) -> Result<(Config, SslMode), BackendError> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(BackendError::new(
            BackendErrorKind::Other,
            "a PostgreSQL URL starts with postgres:// or postgresql://",
        ));
    }
    if postgres_url_has_password(url) {
        return Err(BackendError::new(
            BackendErrorKind::Other,
            "the PostgreSQL URL holds a password: put it in a password file (PGPASSFILE, \
             ~/.pgpass) instead, where argument lists and logs do not show it",
        ));
    }
    let mut ssl = SslMode::Require;
    let rebuilt = match url.split_once('?') {
        None => url.to_owned(),
        Some((base, query)) => {
            let mut kept = Vec::new();
            for pair in query.split('&') {
                match pair.split_once('=') {
                    Some(("sslmode", "disable")) => ssl = SslMode::Disable,
                    Some(("sslmode", _)) => ssl = SslMode::Require,
                    _ => kept.push(pair),
                }
            }
            if kept.is_empty() {
                base.to_owned()
            } else {
                format!("{base}?{}", kept.join("&"))
            }
        }
    };
    let config = Config::from_str(&rebuilt).map_err(|e| {
        BackendError::new(BackendErrorKind::Other, "the PostgreSQL URL does not parse")
            .with_source(e)
    })?;
    if config.get_password().is_some() {
        return Err(BackendError::new(
            BackendErrorKind::Other,
            "the PostgreSQL URL holds a password: put it in a password file instead",
        ));
    }
    if config.get_user().is_none() {
        return Err(BackendError::new(
            BackendErrorKind::Other,
            "the PostgreSQL URL names no user (postgres://user@host/database)",
        ));
    }
    Ok((config, ssl))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn urls_with_a_password_are_refused_and_never_repeated() {
        for url in [
            "postgres://svc:hunter2@db/tokens",
            "postgresql://svc@db/tokens?password=hunter2",
        ] {
            let err = parse_url(url).unwrap_err();
            assert!(err.to_string().contains("password file"), "{err}");
            assert!(!format!("{err} {err:?}").contains("hunter2"));
        }
    }

    #[test]
    fn sslmode_is_required_unless_disabled() {
        let (config, ssl) = parse_url("postgres://svc@db:5433/tokens").unwrap();
        assert_eq!(ssl, SslMode::Require);
        assert_eq!(config.get_ports(), [5433]);
        for mode in ["prefer", "allow", "require", "verify-ca", "verify-full"] {
            let url = format!("postgres://svc@db/tokens?sslmode={mode}&connect_timeout=3");
            let (config, ssl) = parse_url(&url).unwrap();
            assert_eq!(ssl, SslMode::Require, "{mode}");
            assert_eq!(config.get_connect_timeout(), Some(&Duration::from_secs(3)));
        }
        let (_, ssl) = parse_url("postgres://svc@127.0.0.1/tokens?sslmode=disable").unwrap();
        assert_eq!(ssl, SslMode::Disable);
        assert!(parse_url("postgres://db/tokens").is_err(), "no user");
        assert!(parse_url("mysql://svc@db/tokens").is_err());
    }

    #[test]
    fn vault_names_are_checked() {
        for ok in ["billing", "a", "eu-west.tenants_2"] {
            check_vault_name(ok).unwrap();
        }
        for bad in ["", "a b", "x/y", "é", &"n".repeat(129)] {
            assert!(check_vault_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_password_file_named_explicitly_must_exist() {
        let mut config = Config::new();
        config.user("svc").host("db");
        let options = PostgresOptions::new().password_file(Path::new("/nonexistent/pgpass"));
        assert!(
            options.add_password(&mut config).is_err(),
            "named explicitly"
        );
    }
}
