//! What the server says about its standbys: a commit it acknowledges is on its own disk
//! (`synchronous_commit = on`, `fsync = on`), and on a standby only if that standby is
//! synchronous. A failover to an asynchronous standby can lose acknowledged commits, so a
//! deployment check ([`PostgresBackend::replication`]) reports them.

use super::PostgresBackend;
use crate::backend::BackendError;

/// The server's replication, as [`PostgresBackend::replication`] reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Replication {
    /// The server's `synchronous_standby_names` (empty: no standby is synchronous).
    pub synchronous_standby_names: String,
    /// The standbys connected now, from `pg_stat_replication`.
    pub standbys: Vec<Standby>,
}

/// One standby connected to the server.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Standby {
    /// Its `application_name`.
    pub name: String,
    /// `sync`, `quorum`, `potential` or `async` (`pg_stat_replication.sync_state`).
    pub sync_state: String,
}

impl Replication {
    /// The standbys a failover could promote while missing acknowledged commits: those
    /// neither `sync` nor `quorum`.
    ///
    /// ```
    /// use tokenvault::backend::Replication;
    ///
    /// # fn check(replication: &Replication) {
    /// for standby in replication.asynchronous_standbys() {
    ///     eprintln!("warning: standby {} is asynchronous", standby.name);
    /// }
    /// # }
    /// ```
    pub fn asynchronous_standbys(&self) -> impl Iterator<Item = &Standby> {
        self.standbys
            .iter()
            .filter(|s| !matches!(s.sync_state.as_str(), "sync" | "quorum"))
    }
}

impl PostgresBackend {
    /// The server's standbys and how they replicate, for a deployment check: a failover to
    /// an asynchronous standby can revert commits the vault was told were durable. Reading
    /// `pg_stat_replication`'s state needs the `pg_monitor` role (or a superuser); without
    /// it the server shows the standbys with an empty state, which
    /// [`Replication::asynchronous_standbys`] counts as asynchronous.
    ///
    /// # Errors
    /// Database and connection errors.
    ///
    /// ```no_run
    /// use tokenvault::backend::PostgresBackend;
    ///
    /// let backend = PostgresBackend::connect("postgres://svc@db/tokens", "billing")?;
    /// let replication = backend.replication()?;
    /// if replication.asynchronous_standbys().next().is_some() {
    ///     eprintln!("a failover may lose acknowledged token writes");
    /// }
    /// # Ok::<(), tokenvault::backend::BackendError>(())
    /// ```
    pub fn replication(&self) -> Result<Replication, BackendError> {
        self.read(|conn| {
            let names: String = conn
                .client
                .query_one("SHOW synchronous_standby_names", &[])?
                .get(0);
            let rows = conn.client.query(
                "SELECT coalesce(application_name, ''), coalesce(sync_state, '') \
                 FROM pg_stat_replication ORDER BY application_name",
                &[],
            )?;
            Ok(Replication {
                synchronous_standby_names: names,
                standbys: rows
                    .into_iter()
                    .map(|r| Standby {
                        name: r.get(0),
                        sync_state: r.get(1),
                    })
                    .collect(),
            })
        })
    }
}
