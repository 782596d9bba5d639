//! `tokenvault`: create, inspect, migrate and re-key tokenvault vaults from a shell.
//!
//! Built with the `cli` cargo feature, only on the library's public API. Every command, flag,
//! `--json` shape, exit code and environment variable is described in `docs/cli.md`; `tokenvault
//! --help` and `tokenvault COMMAND --help` say the same in short.
//!
//! Secrets never come from the command line: passphrases come from a file, a file descriptor,
//! an environment variable named by a flag, a key file, or a no-echo prompt on a terminal;
//! token values from files, standard input or named environment variables.
//!
//! Each command is a file in `commands/` named after it; the files here are what they share.

#![forbid(unsafe_code)]

mod cli;
mod commands;
mod environment;
mod failure;
mod input;
mod kdf;
mod keyslot_output;
mod output;
mod progress;
mod secrets;
mod terminal;
mod vault;
mod when;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.run(&cli.global) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.report(),
    }
}
