//! The environment variables behind flags, read by clap's `env`: `TOKENVAULT_VAULT` behind
//! `--vault`, `TOKENVAULT_KEY_FILE` behind `--key-file`, `TOKENVAULT_PASSPHRASE_FILE` behind
//! `--passphrase-file`.
//!
//! Each names a path, never a secret; still, every env-backed flag sets `hide_env_values`, so
//! that `--help` names the variable but never shows its value. A variable that is set but
//! empty counts as unset, and a value taken from a variable stays told apart from one given
//! on the command line ([`PathArg`]): a secret flag on the command line overrides both
//! variables, which only then may not both be set (`secrets.rs`).
//!
//! Read by hand instead: the variables a flag names (`--passphrase-env NAME` and the like:
//! the flag's value is the variable's name, and its value is a secret), and `XDG_CONFIG_HOME`,
//! `HOME`, `APPDATA` for the default vault location (`vault.rs`), which back no flag.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use clap::builder::{PathBufValueParser, TypedValueParser};
use clap::parser::ValueSource;

/// The vault directory when `--vault` is not given.
pub(crate) const VAULT_ENV: &str = "TOKENVAULT_VAULT";
/// A key file to unlock with when no secret flag is given.
pub(crate) const KEY_FILE_ENV: &str = "TOKENVAULT_KEY_FILE";
/// A passphrase file to unlock with when no secret flag is given.
pub(crate) const PASSPHRASE_FILE_ENV: &str = "TOKENVAULT_PASSPHRASE_FILE";

/// A path from a flag, or from the environment variable behind it.
#[derive(Clone, Debug)]
pub(crate) enum PathArg {
    /// Given on the command line.
    Flag(PathBuf),
    /// Read from the variable.
    Env(PathBuf),
    /// The variable is set but empty: as if it were not set.
    EmptyEnv,
}

impl PathArg {
    /// The path, wherever it came from.
    pub(crate) fn path(&self) -> Option<&Path> {
        match self {
            Self::Flag(path) | Self::Env(path) => Some(path),
            Self::EmptyEnv => None,
        }
    }

    /// The path if it was given on the command line.
    pub(crate) fn flag(&self) -> Option<&Path> {
        match self {
            Self::Flag(path) => Some(path),
            Self::Env(_) | Self::EmptyEnv => None,
        }
    }

    /// The path if it was read from the variable.
    pub(crate) fn env(&self) -> Option<&Path> {
        match self {
            Self::Env(path) => Some(path),
            Self::Flag(_) | Self::EmptyEnv => None,
        }
    }
}

/// The value parser of a path flag backed by a variable: a [`PathArg`] that says where the
/// path came from. On the command line, a path as clap parses it (an empty one is refused).
#[derive(Clone, Copy, Debug)]
pub(crate) struct PathOrEnv;

impl TypedValueParser for PathOrEnv {
    type Value = PathArg;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<PathArg, clap::Error> {
        self.parse_ref_(cmd, arg, value, ValueSource::CommandLine)
    }

    fn parse_ref_(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
        source: ValueSource,
    ) -> Result<PathArg, clap::Error> {
        match source {
            ValueSource::EnvVariable if value.is_empty() => Ok(PathArg::EmptyEnv),
            ValueSource::EnvVariable => Ok(PathArg::Env(PathBuf::from(value))),
            _ => PathBufValueParser::new()
                .parse_ref(cmd, arg, value)
                .map(PathArg::Flag),
        }
    }
}
