//! The command line: the program's help, and the options every command takes. The commands
//! and their own flags are in `commands/`.

use std::time::Duration;

use clap::builder::TypedValueParser;
use clap::{Args, Parser};
use tokenvault::KdfParams;

use crate::commands::Command;
use crate::environment::{PathArg, PathOrEnv, VAULT_ENV};
use crate::kdf::limit_of_mib;
use crate::when;

/// Operate an encrypted tokenvault vault from a shell.
#[derive(Debug, Parser)]
#[command(
    name = "tokenvault",
    version,
    about = "Operate an encrypted tokenvault vault from a shell",
    long_about = "Operate an encrypted tokenvault vault from a shell: create it, store and read \
                  OAuth tokens, import the plaintext token files of other SDKs, change \
                  passphrases and keyslots, rotate keys, and check that every record is intact.\n\n\
                  Secrets never go on the command line. A passphrase comes from \
                  --passphrase-file, --passphrase-fd or --passphrase-env (which names a \
                  variable), a raw key from --key-file, or else from a no-echo prompt when \
                  standard input is a terminal. Without a terminal and without one of those \
                  flags, a command fails at once (exit code 2) instead of waiting.",
    after_help = AFTER_HELP,
    after_long_help = AFTER_LONG_HELP,
    disable_help_subcommand = true,
    max_term_width = 100
)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: Global,
    #[command(subcommand)]
    pub(crate) command: Command,
}

const GLOBAL: &str = "Global options";

/// Options every command takes, before or after the command name.
#[derive(Clone, Debug, Args)]
pub(crate) struct Global {
    /// The vault directory, or a vault in PostgreSQL: postgres://user@host/db?vault=NAME (no
    /// password in it: the password file PGPASSFILE or ~/.pgpass holds it) [default: <config
    /// dir>/tokenvault/vault]
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        help_heading = GLOBAL,
        env = VAULT_ENV,
        hide_env_values = true,
        value_parser = PathOrEnv
    )]
    pub(crate) vault: Option<PathArg>,
    /// Print JSON on standard output instead of text (shapes: docs/cli.md)
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub(crate) json: bool,
    /// How long to wait for another process that holds the vault before failing with exit
    /// code 4 [default: 2, and 30 for `token`]
    #[arg(
        long,
        global = true,
        value_name = "SECONDS",
        help_heading = GLOBAL,
        value_parser = when::parse_seconds
    )]
    pub(crate) lock_timeout: Option<Duration>,
    /// The most memory, in MiB, that unlocking a passphrase keyslot may take (default 2048),
    /// and the most work (that memory with t = 4); a keyslot asking for more is refused
    /// before anything is allocated
    #[arg(
        long = "max-kdf-mib",
        global = true,
        value_name = "MIB",
        help_heading = GLOBAL,
        value_parser = clap::value_parser!(u32).try_map(limit_of_mib)
    )]
    pub(crate) kdf_limit: Option<KdfParams>,
    /// Never draw progress bars (they are drawn only when standard error is a terminal)
    #[arg(long, short, global = true, help_heading = GLOBAL)]
    pub(crate) quiet: bool,
}

const AFTER_HELP: &str = "\
Exit codes: 0 ok, 1 error, 2 usage, 3 wrong key, 4 locked, 5 not found, 6 damaged, 7 exists,
8 log in again, 9 temporarily unavailable.
Run `tokenvault COMMAND --help` for a command's flags; `tokenvault --help` for more.";

const AFTER_LONG_HELP: &str = "\
Examples:
  tokenvault init --generate-key-file ~/.config/tokenvault/key
  export TOKENVAULT_KEY_FILE=~/.config/tokenvault/key
  tokenvault put tenant-42 api.example.org --access-token-stdin --expires-in 3600 < at.txt
  tokenvault get tenant-42 api.example.org
  tokenvault get tenant-42 api.example.org --print-secret access-token
  tokenvault import ~/.globus/app/CLIENT/APP/tokens.json --dry-run
  tokenvault verify --json

Exit codes:
  0  success
  1  any other error (I/O, invalid input file, refused operation)
  2  usage: bad flags or arguments, no usable secret source
  3  wrong key: no keyslot accepts the passphrase or key
  4  locked: another process holds the vault past --lock-timeout
  5  not found: no vault, namespace, record, keyslot or input file
  6  damaged: the vault or some records failed authentication (verify)
  7  exists: a vault, record or key file is already there
  8  log in again: the grant is dead or revoked (token, login)
  9  temporarily unavailable: the provider or storage failed; retry later

Environment:
  TOKENVAULT_VAULT            the vault directory when --vault is not given
  TOKENVAULT_KEY_FILE         a key file to unlock with when no secret flag is given
  TOKENVAULT_PASSPHRASE_FILE  a passphrase file to unlock with when no secret flag is given
  The default vault is <config dir>/tokenvault/vault, where the config directory is
  $XDG_CONFIG_HOME or ~/.config (Linux and other Unix), ~/Library/Application Support
  (macOS), or %APPDATA% (Windows).

Every command, flag and --json shape: docs/cli.md.";
