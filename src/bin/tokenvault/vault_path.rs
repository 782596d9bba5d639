//! Where the vault is, and opening it: `--vault`, else `$TOKENVAULT_VAULT`, else the platform
//! configuration directory.

use std::path::PathBuf;

use clap::Args;
use tokenvault::{KdfParams, KeySource, Vault, VaultOptions};

use crate::cli::Global;
use crate::failure::{Exit, Failure, Outcome, NO_VAULT_HINT};
use crate::secrets::OpenArgs;

/// The environment variable that names the vault when `--vault` is not given.
pub(crate) const VAULT_ENV: &str = "TOKENVAULT_VAULT";

/// Argon2id cost of the passphrase keyslots a command writes.
#[derive(Debug, Args)]
#[command(next_help_heading = "Passphrase hashing")]
pub(crate) struct KdfArgs {
    /// Argon2id cost of a new passphrase keyslot: `default` (64 MiB, t=3, p=4), `strong`
    /// (256 MiB, t=4, p=4), `owasp-minimum` (19 MiB, t=2, p=1), or `m=MIB,t=N,p=N`
    #[arg(long, value_name = "COST", default_value = "default")]
    kdf: String,
    /// INSECURE, for tests only: Argon2 with 64 KiB and t=1, so a passphrase can be guessed
    /// millions of times per second. Never use it for a real vault
    #[arg(long, hide = true)]
    insecure_fast_kdf: bool,
}

impl KdfArgs {
    /// The parameters these flags ask for.
    pub(crate) fn params(&self) -> Outcome<KdfParams> {
        if self.insecure_fast_kdf {
            return Ok(KdfParams::insecure_for_tests());
        }
        match self.kdf.as_str() {
            "default" => Ok(KdfParams::RFC9106_SECOND),
            "strong" => Ok(KdfParams::STRONG),
            "owasp-minimum" => Ok(KdfParams::OWASP_MINIMUM),
            custom => parse_custom(custom),
        }
    }
}

/// `m=MIB,t=N,p=N`.
fn parse_custom(spec: &str) -> Outcome<KdfParams> {
    let bad = || {
        Failure::usage(format!("--kdf {spec:?} is not a known cost")).hint(
            "use default, strong, owasp-minimum, or m=MIB,t=N,p=N (for example m=128,t=3,p=4)",
        )
    };
    let (mut m, mut t, mut p) = (None, None, None);
    for part in spec.split(',') {
        let (name, value) = part.split_once('=').ok_or_else(bad)?;
        let value: u32 = value.trim().parse().map_err(|_| bad())?;
        match name.trim() {
            "m" => m = Some(value),
            "t" => t = Some(value),
            "p" => p = Some(value),
            _ => return Err(bad()),
        }
    }
    let (Some(m), Some(t), Some(p)) = (m, t, p) else {
        return Err(bad());
    };
    let m_kib = m.checked_mul(1024).ok_or_else(bad)?;
    KdfParams::new(m_kib, t, p).map_err(Failure::from)
}

impl Global {
    /// The vault directory.
    pub(crate) fn vault_path(&self) -> Outcome<PathBuf> {
        if let Some(path) = &self.vault {
            return Ok(path.clone());
        }
        if let Some(path) = std::env::var_os(VAULT_ENV).filter(|p| !p.is_empty()) {
            return Ok(PathBuf::from(path));
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
    pub(crate) fn options(&self) -> Outcome<VaultOptions> {
        let sled = tokenvault::SledOptions::new().lock_timeout(self.lock_timeout);
        let options = VaultOptions::new().sled(sled);
        let Some(mib) = self.max_kdf_mib else {
            return Ok(options);
        };
        let limit = KdfParams::DEFAULT_LIMIT;
        let m_kib = mib.saturating_mul(1024);
        let limit = KdfParams::new(m_kib, limit.t(), limit.p())
            .map_err(|e| Failure::usage(format!("--max-kdf-mib {mib}: {e}")))?;
        Ok(options.kdf_limit(limit))
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
        let mut options = self.options()?;
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
