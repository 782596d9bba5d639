//! `tokenvault`: create, inspect, migrate and re-key tokenvault vaults from a shell.
//!
//! Built with the `cli` cargo feature, only on the library's public API. Every command, flag,
//! `--json` shape, exit code and environment variable is described in `docs/cli.md`; `tokenvault
//! --help` and `tokenvault COMMAND --help` say the same in short.
//!
//! Secrets never come from the command line: passphrases come from a file, a file descriptor,
//! an environment variable named by a flag, a key file, or a no-echo prompt on a terminal;
//! token values from files, standard input or named environment variables.

#![forbid(unsafe_code)]

mod cli;
mod failure;
mod info;
mod init;
mod input;
mod keyslots;
mod list;
mod maintain;
mod migrate;
mod output;
mod progress;
mod read;
mod secrets;
mod store;
mod terminal;
mod vault_path;
mod when;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command, KeyslotCommand};
use crate::failure::Outcome;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.report(),
    }
}

/// Runs one command.
fn run(cli: Cli) -> Outcome {
    let global = &cli.global;
    match &cli.command {
        Command::Init(args) => init::run(global, args),
        Command::Put(args) => store::put(global, args),
        Command::Get(args) => read::get(global, args),
        Command::Ls(args) => list::ls(global, args),
        Command::Rm(args) => list::rm(global, args),
        Command::Passwd(args) => keyslots::passwd(global, args),
        Command::Keyslot { command } => match command {
            KeyslotCommand::Add(args) => keyslots::add(global, args),
            KeyslotCommand::Rm(args) => keyslots::rm(global, args),
            KeyslotCommand::Ls(args) => keyslots::ls(global, args),
        },
        Command::Rotate(args) => maintain::rotate(global, args),
        Command::PurgeOrphans(args) => maintain::purge(global, args),
        Command::Import(args) => migrate::import(global, args),
        Command::Verify(args) => maintain::verify(global, args),
        Command::Info(args) => info::run(global, args),
    }
}
