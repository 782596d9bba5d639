//! The vault: where it is (`--vault`, else `$TOKENVAULT_VAULT`, else the platform
//! configuration directory), opening and closing it, and the namespaces a command names.

use std::path::PathBuf;

use tokenvault::{KdfParams, KeySource, Vault, VaultOptions};

use crate::cli::Global;
use crate::failure::{Exit, Failure, Outcome, NO_VAULT_HINT};
use crate::output;
use crate::secrets::OpenArgs;

impl Global {
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

    /// Options for opening or creating the vault.
    pub(crate) fn options(&self) -> VaultOptions {
        let sled = tokenvault::backend::SledOptions::new().lock_timeout(self.lock_timeout);
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
        let path = self.vault_path()?;
        // Say so before asking for a passphrase that could not help.
        if !path.is_dir() {
            return Err(
                Failure::new(Exit::NotFound, format!("no vault at {}", path.display()))
                    .hint(NO_VAULT_HINT),
            );
        }
        let key = unlock.secret.key_source(&path)?;
        let mut options = self.options();
        if let Some(slot) = unlock.slot {
            options = options.slot(slot);
        }
        if let Some(kdf) = kdf {
            options = options.kdf(kdf);
        }
        let vault = options.open(&path, &key)?;
        Ok((vault, key))
    }

    /// Opens the vault with the secret `unlock` names.
    pub(crate) fn open(&self, unlock: &OpenArgs) -> Outcome<Vault> {
        Ok(self.open_keeping_key(unlock, None)?.0)
    }
}

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
