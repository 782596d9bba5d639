//! `tokenvault doctor`: check what the vault's durability rests on, without unlocking it.
//! For a vault in PostgreSQL: the server's standbys, since a failover to an asynchronous one
//! can revert commits the vault was told were durable.

use clap::Args;
use serde::Serialize;
use tokenvault::backend::PostgresOptions;

use crate::cli::Global;
use crate::failure::{Failure, Outcome};
use crate::output;
use crate::vault::Location;

/// `tokenvault doctor`.
#[derive(Debug, Args)]
#[command(
    long_about = "Check what the vault's durability rests on, without unlocking it. For a vault \
                  in PostgreSQL: connect, and list the server's standbys; an asynchronous \
                  standby (a failover to it can lose acknowledged token writes) is a problem \
                  (exit code 1). The role needs pg_monitor to see the standbys' state; a \
                  state it cannot see counts as asynchronous. For a directory vault there is \
                  nothing to ask a server.",
    after_help = "Example:\n  tokenvault doctor --vault 'postgres://svc@db/tokens?vault=billing'"
)]
pub(crate) struct DoctorArgs {}

#[derive(Serialize)]
struct DoctorJson {
    vault: String,
    storage: &'static str,
    synchronous_standby_names: Option<String>,
    standbys: Vec<StandbyJson>,
    asynchronous_standbys: usize,
}

#[derive(Serialize)]
struct StandbyJson {
    name: String,
    sync_state: String,
}

/// Runs `tokenvault doctor`.
pub(crate) fn run(global: &Global, _args: &DoctorArgs) -> Outcome {
    let location = global.location()?;
    let vault = location.describe();
    let (storage, names, standbys, asynchronous) = match &location {
        Location::Dir(_) => ("directory", None, Vec::new(), 0),
        Location::Postgres { url, name } => {
            let backend = PostgresOptions::new()
                .connect(url, name)
                .map_err(|e| Failure::other(format!("cannot open the vault's database: {e}")))?;
            let report = backend.replication().map_err(|e| {
                Failure::other(format!("cannot read the server's replication: {e}"))
            })?;
            let standbys = report
                .standbys
                .iter()
                .map(|s| StandbyJson {
                    name: s.name.clone(),
                    sync_state: s.sync_state.clone(),
                })
                .collect();
            let asynchronous = report.asynchronous_standbys().count();
            (
                "postgresql",
                Some(report.synchronous_standby_names),
                standbys,
                asynchronous,
            )
        }
    };
    if global.json {
        output::json(
            &DoctorJson {
                vault,
                storage,
                synchronous_standby_names: names,
                standbys,
                asynchronous_standbys: asynchronous,
            },
            0,
        )?;
    } else {
        let mut text = format!("vault: {}\nstorage: {storage}\n", output::escaped(&vault));
        match storage {
            "directory" => text.push_str(
                "durability: this machine's disk (every write is flushed before it returns, \
                 unless the vault is opened buffered)\n",
            ),
            _ => {
                text.push_str(&format!("standbys: {}\n", standbys.len()));
                for s in &standbys {
                    text.push_str(&format!(
                        "  {} ({})\n",
                        output::escaped(&s.name),
                        output::escaped(&s.sync_state)
                    ));
                }
            }
        }
        output::text(&text)?;
    }
    if asynchronous > 0 {
        return Err(Failure::other(format!(
            "{asynchronous} asynchronous standby(s): a failover to one can lose acknowledged \
             token writes"
        ))
        .hint("make them synchronous (synchronous_standby_names), or accept the risk"));
    }
    Ok(())
}
