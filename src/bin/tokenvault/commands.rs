//! The commands: one file each, named after the command, with its flags (`...Args`) and its
//! `run`.

mod doctor;
mod get;
mod import;
mod info;
mod init;
mod keyslot;
mod login;
mod logout;
mod ls;
mod passwd;
mod provider;
mod purge_orphans;
mod put;
mod rm;
mod rotate;
mod shred;
pub(crate) mod token;
mod verify;

use clap::Subcommand;

use crate::cli::Global;
use crate::failure::Outcome;

/// The commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Create a vault, unlocked by a passphrase or a key file
    Init(init::InitArgs),
    /// Store a token, from flags or from an OAuth token response
    Put(Box<put::PutArgs>),
    /// Show a stored token (secrets redacted unless asked for)
    Get(get::GetArgs),
    /// List namespaces, or the keys in one namespace
    Ls(ls::LsArgs),
    /// Remove a record, or a whole namespace
    Rm(rm::RmArgs),
    /// Change the passphrase (or key) of the keyslot you unlock with
    Passwd(passwd::PasswdArgs),
    /// Add, remove or list keyslots
    Keyslot {
        #[command(subcommand)]
        command: keyslot::KeyslotCommand,
    },
    /// Rotate a namespace's data key, re-sealing its records
    Rotate(rotate::RotateArgs),
    /// Import the token files of the Globus or Sharetribe SDKs
    Import(import::ImportArgs),
    /// Authenticate every record; report damaged ones (exit code 6)
    Verify(verify::VerifyArgs),
    /// Show the format version, keyslots, counts and size on disk
    Info(info::InfoArgs),
    /// Drop storage that belongs to no namespace (what verify reports as orphaned)
    PurgeOrphans(purge_orphans::PurgeOrphansArgs),
    /// Re-seal every namespace entry under a new key, so removed namespaces' keys are gone
    Shred(shred::ShredArgs),
    /// Check what the vault's durability rests on (a PostgreSQL server's standbys)
    Doctor(doctor::DoctorArgs),
    /// Add, list or remove the OAuth providers of a namespace
    Provider {
        #[command(subcommand)]
        command: provider::ProviderCommand,
    },
    /// Log in with a provider and store the token in the vault
    Login(login::LoginArgs),
    /// Print a valid access token, refreshed through its provider when due
    Token(token::TokenArgs),
    /// Remove a token locally, then revoke it at its provider
    Logout(logout::LogoutArgs),
}

impl Command {
    /// Runs the command.
    pub(crate) fn run(&self, global: &Global) -> Outcome {
        match self {
            Self::Init(args) => init::run(global, args),
            Self::Put(args) => put::run(global, args),
            Self::Get(args) => get::run(global, args),
            Self::Ls(args) => ls::run(global, args),
            Self::Rm(args) => rm::run(global, args),
            Self::Passwd(args) => passwd::run(global, args),
            Self::Keyslot { command } => keyslot::run(global, command),
            Self::Rotate(args) => rotate::run(global, args),
            Self::Import(args) => import::run(global, args),
            Self::Verify(args) => verify::run(global, args),
            Self::Info(args) => info::run(global, args),
            Self::PurgeOrphans(args) => purge_orphans::run(global, args),
            Self::Shred(args) => shred::run(global, args),
            Self::Doctor(args) => doctor::run(global, args),
            Self::Provider { command } => provider::run(global, command),
            Self::Login(args) => login::run(global, args),
            Self::Token(args) => token::run(global, args),
            Self::Logout(args) => logout::run(global, args),
        }
    }
}
