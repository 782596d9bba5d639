//! The vault: where it is (`--vault`, else `$TOKENVAULT_VAULT`, else the platform
//! configuration directory; a directory, or a `postgres://` URL), opening and closing it,
//! and the namespaces a command names.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokenvault::backend::{postgres_url_has_password, PostgresOptions};
use tokenvault::{KdfParams, KeySource, Vault, VaultOptions};

use crate::cli::Global;
use crate::failure::{Exit, Failure, Outcome, NO_VAULT_HINT};
use crate::output;
use crate::secrets::OpenArgs;

/// Where the vault is: a directory, or a vault in a PostgreSQL database.
pub(crate) enum Location {
    Dir(PathBuf),
    /// `postgres://user@host/database?vault=NAME` (the `vault` option is the vault's name in
    /// the database, `default` when absent; the rest is the connection URL).
    Postgres {
        url: String,
        name: String,
    },
}

/// The vault name in a database when the URL names none.
const DEFAULT_POSTGRES_VAULT: &str = "default";

impl Location {
    /// What to call the vault in messages: the directory, or the URL (which holds no
    /// password: such a URL is refused before anything else) with the vault's name.
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Dir(path) => path.display().to_string(),
            Self::Postgres { url, name } => format!("{url} (vault {name})"),
        }
    }

    /// The directory, for a directory vault.
    pub(crate) fn dir(&self) -> Option<&Path> {
        match self {
            Self::Dir(path) => Some(path),
            Self::Postgres { .. } => None,
        }
    }

    /// A PostgreSQL URL as a location: refused if it holds a password, whose value is never
    /// repeated.
    fn postgres(raw: &str) -> Outcome<Self> {
        if postgres_url_has_password(raw) {
            return Err(Failure::usage(
                "the vault URL holds a password; it was not used and is not shown",
            )
            .hint("put the password in a password file (PGPASSFILE, or ~/.pgpass) instead"));
        }
        let (base, query) = raw.split_once('?').unwrap_or((raw, ""));
        let mut name = DEFAULT_POSTGRES_VAULT.to_owned();
        let kept: Vec<&str> = query
            .split('&')
            .filter(|pair| !pair.is_empty())
            .filter(|pair| match pair.split_once('=') {
                Some(("vault", value)) => {
                    name = value.to_owned();
                    false
                }
                _ => true,
            })
            .collect();
        let url = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        Ok(Self::Postgres { url, name })
    }

    fn backend(url: &str, name: &str) -> Outcome<tokenvault::backend::PostgresBackend> {
        PostgresOptions::new().connect(url, name).map_err(|e| {
            Failure::other(format!("cannot open the vault's database: {e}"))
                .hint("check the URL, the server, and the password file (PGPASSFILE or ~/.pgpass)")
        })
    }
}

impl Global {
    /// Where the vault is: a `postgres://` URL, or a directory.
    pub(crate) fn location(&self) -> Outcome<Location> {
        if let Some(raw) = self.vault.as_ref().and_then(|v| v.path()) {
            if let Some(text) = raw.to_str() {
                if text.starts_with("postgres://") || text.starts_with("postgresql://") {
                    return Location::postgres(text);
                }
            }
        }
        self.vault_path().map(Location::Dir)
    }

    /// Creates the vault at `location` with `options`.
    pub(crate) fn create_at(
        &self,
        location: &Location,
        options: VaultOptions,
        key: &KeySource,
    ) -> Outcome<Vault> {
        Ok(match location {
            Location::Dir(path) => options.create(path, key)?,
            Location::Postgres { url, name } => {
                options.create_with_backend(Location::backend(url, name)?, key)?
            }
        })
    }

    /// The vault directory.
    pub(crate) fn vault_path(&self) -> Outcome<PathBuf> {
        // `--vault`, else the variable (clap's `env`; empty counts as unset).
        if let Some(path) = self.vault.as_ref().and_then(|v| v.path()) {
            return Ok(path.to_path_buf());
        }
        config_dir()
            .map(|dir| dir.join("tokenvault").join("vault"))
            .ok_or_else(|| {
                Failure::usage(
                    "no vault location: no --vault, no TOKENVAULT_VAULT, and no configuration \
                     directory",
                )
                .hint("pass --vault PATH or set TOKENVAULT_VAULT")
            })
    }

    /// These options, waiting `wait` for the vault's lock unless `--lock-timeout` was given.
    pub(crate) fn waiting_by_default(&self, wait: Duration) -> Self {
        let mut global = self.clone();
        global.lock_timeout.get_or_insert(wait);
        global
    }

    /// Options for opening or creating the vault.
    pub(crate) fn options(&self) -> VaultOptions {
        let wait = self.lock_timeout.unwrap_or(DEFAULT_LOCK_WAIT);
        let sled = tokenvault::backend::SledOptions::new().lock_timeout(wait);
        let options = VaultOptions::new().sled(sled);
        match self.kdf_limit {
            Some(limit) => options.kdf_limit(limit),
            None => options,
        }
    }

    /// Opens the vault with the secret `unlock` names, and returns that secret too;
    /// `kdf` for the passphrase keyslots written later.
    pub(crate) fn open_keeping_key(
        &self,
        unlock: &OpenArgs,
        kdf: Option<KdfParams>,
    ) -> Outcome<(Vault, KeySource)> {
        let location = self.location()?;
        // Say so before asking for a passphrase that could not help.
        let described = location.describe();
        let target = match location {
            Location::Dir(path) if !path.is_dir() => {
                return Err(
                    Failure::new(Exit::NotFound, format!("no vault at {}", path.display()))
                        .hint(NO_VAULT_HINT),
                )
            }
            Location::Dir(path) => Target::Dir(path),
            Location::Postgres { url, name } => {
                Target::Database(Box::new(Location::backend(&url, &name)?))
            }
        };
        let key = unlock.secret.key_source(&described)?;
        let vault = self.open_target(target, &key, unlock.slot, kdf)?;
        Ok((vault, key))
    }

    /// Opens the vault again with `key`, the secret an earlier [`open_keeping_key`] resolved
    /// (no second prompt).
    pub(crate) fn reopen(&self, unlock: &OpenArgs, key: &KeySource) -> Outcome<Vault> {
        let target = match self.location()? {
            Location::Dir(path) => Target::Dir(path),
            Location::Postgres { url, name } => {
                Target::Database(Box::new(Location::backend(&url, &name)?))
            }
        };
        self.open_target(target, key, unlock.slot, None)
    }

    fn open_target(
        &self,
        target: Target,
        key: &KeySource,
        slot: Option<u32>,
        kdf: Option<KdfParams>,
    ) -> Outcome<Vault> {
        let mut options = self.options();
        if let Some(slot) = slot {
            options = options.slot(slot);
        }
        if let Some(kdf) = kdf {
            options = options.kdf(kdf);
        }
        Ok(match target {
            Target::Dir(path) => options.open(&path, key)?,
            Target::Database(backend) => options.open_with_backend(*backend, key)?,
        })
    }

    /// Opens the vault with the secret `unlock` names.
    pub(crate) fn open(&self, unlock: &OpenArgs) -> Outcome<Vault> {
        Ok(self.open_keeping_key(unlock, None)?.0)
    }
}

/// Where a vault is opened.
enum Target {
    Dir(PathBuf),
    Database(Box<tokenvault::backend::PostgresBackend>),
}

/// How long a command waits for another process that holds the vault, by default.
const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(2);

/// Closes the vault (a final flush and checkpoint), reporting a failure.
pub(crate) fn close(vault: Vault) -> Outcome {
    vault.close().map_err(Failure::from)
}

/// Fails with "not found" unless the vault has namespace `name`.
pub(crate) fn require_namespace(vault: &Vault, name: &str) -> Outcome {
    if vault.namespaces()?.iter().any(|n| n == name) {
        Ok(())
    } else {
        Err(Failure::new(
            Exit::NotFound,
            format!("no namespace {}", output::quoted(name)),
        )
        .hint("list the namespaces with `tokenvault ls`"))
    }
}

/// The platform configuration directory: `%APPDATA%` on Windows, `~/Library/Application
/// Support` on macOS, else `$XDG_CONFIG_HOME` if absolute, else `~/.config`.
fn config_dir() -> Option<PathBuf> {
    let env_dir = |name: &str| {
        std::env::var_os(name)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    if cfg!(windows) {
        env_dir("APPDATA")
    } else if cfg!(target_os = "macos") {
        env_dir("HOME").map(|home| home.join("Library").join("Application Support"))
    } else {
        env_dir("XDG_CONFIG_HOME").or_else(|| env_dir("HOME").map(|home| home.join(".config")))
    }
}
