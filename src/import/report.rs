//! What an import did: the records it stored, what it skipped, and what it removed.

use std::fmt;
use std::path::PathBuf;
use std::time::SystemTime;

use super::ImportFormat;

/// What an import did (or, for a dry run, would do). Names only: never a token value.
///
/// Its `Display` is a summary for people, which ends with [`ImportReport::ERASURE_NOTICE`]
/// when files were removed.
///
/// ```
/// use tokenvault::{KeySource, Vault};
/// use tokenvault::import::{Import, ImportReport};
/// use tokenvault::secrecy::SecretBox;
///
/// # let dir = tempfile::tempdir()?;
/// let file = dir.path().join("file-store-token.json");
/// std::fs::write(&file, r#"{"access_token":"at","token_type":"bearer","expires_in":86400}"#)?;
/// let vault = Vault::create(dir.path().join("vault"), &KeySource::raw_key(SecretBox::new(Box::new([7u8; 32]))))?;
///
/// let report = Import::sharetribe_file(&file, "marketplace", "integration").dry_run(true).run(&vault)?;
/// assert!(report.dry_run);
/// assert_eq!(report.imported[0].namespace, "marketplace");
/// assert!(report.to_string().contains("would import 1 record"));
/// assert!(vault.namespaces()?.is_empty()); // a dry run writes nothing
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ImportReport {
    /// The file imported.
    pub source: PathBuf,
    /// Its format.
    pub format: ImportFormat,
    /// Whether this was a dry run: everything was read and checked, nothing was written and
    /// nothing removed.
    pub dry_run: bool,
    /// The records imported (or that a dry run would import), sorted by namespace and key.
    pub imported: Vec<ImportedRecord>,
    /// What the file holds that was not imported, and why.
    pub skipped: Vec<SkippedEntry>,
    /// The files removed after the import was verified: the source and, for SQLite, its
    /// `-wal`, `-shm` and `-journal` files. Unlinked, not securely erased: see
    /// [`ImportReport::ERASURE_NOTICE`].
    pub removed: Vec<PathBuf>,
    /// Files that removal was asked for but that were kept, with the reason: the tokens are
    /// imported, but these plaintext copies remain.
    pub not_removed: Vec<(PathBuf, String)>,
}

/// One record an import stored.
///
/// ```
/// use tokenvault::{KeySource, Vault};
/// use tokenvault::import::Import;
/// use tokenvault::secrecy::SecretBox;
///
/// # let dir = tempfile::tempdir()?;
/// let file = dir.path().join("tokens.json");
/// std::fs::write(&file, r#"{"format_version": "2.0", "data": {"user/alice": {"rs.example.org":
///     {"resource_server": "rs.example.org", "access_token": "at", "scope": "read",
///      "identity_id": "alice-uuid", "expires_at_seconds": 1790172800}}}}"#)?;
/// let vault = Vault::create(dir.path().join("vault"), &KeySource::raw_key(SecretBox::new(Box::new([7u8; 32]))))?;
///
/// let report = Import::globus_json(&file).run(&vault)?;
/// let record = &report.imported[0];
/// assert_eq!((record.namespace.as_str(), record.key.as_str()), ("user/alice", "rs.example.org"));
/// assert_eq!(record.resource_server.as_deref(), Some("rs.example.org"));
/// assert_eq!(record.identity.as_deref(), Some("alice-uuid"));
/// assert!(record.expires_at.is_some() && !record.replaced);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ImportedRecord {
    /// The vault namespace.
    pub namespace: String,
    /// The record key (for Globus, the resource server).
    pub key: String,
    /// The token's resource server, if it names one.
    pub resource_server: Option<String>,
    /// The identity the token was issued to, if the file says.
    pub identity: Option<String>,
    /// The token's absolute expiry, if known.
    pub expires_at: Option<SystemTime>,
    /// Whether the vault already held a record under this namespace and key, which the
    /// import replaced (only with [`Import::overwrite`](crate::import::Import::overwrite)).
    pub replaced: bool,
}

/// Something in the source file that an import did not store: the `config_storage` rows of
/// a legacy Globus `SQLiteAdapter` database, which hold settings, not tokens.
///
/// ```
/// use tokenvault::{KeySource, Vault};
/// use tokenvault::import::Import;
/// use tokenvault::secrecy::SecretBox;
///
/// # let dir = tempfile::tempdir()?;
/// # let vault = Vault::create(dir.path().join("vault"), &KeySource::raw_key(SecretBox::new(Box::new([7u8; 32]))))?;
/// # let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/peer-token-files/globus-legacy.sqlite");
/// # if cfg!(feature = "sqlite") {
/// let report = Import::globus_sqlite(path).dry_run(true).run(&vault)?;
/// for skipped in &report.skipped {
///     println!("not imported: {} / {}: {}", skipped.namespace, skipped.key, skipped.reason);
/// }
/// assert_eq!(report.skipped[0].key, "cli_settings");
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SkippedEntry {
    /// The namespace it is filed under in the source.
    pub namespace: String,
    /// Its name in the source.
    pub key: String,
    /// Why it was not imported.
    pub reason: &'static str,
}

impl ImportReport {
    /// What removing a plaintext token file does not do, in plain words: part of this
    /// report's `Display` whenever files were removed.
    ///
    /// ```
    /// assert!(tokenvault::import::ImportReport::ERASURE_NOTICE.contains("does not erase"));
    /// ```
    pub const ERASURE_NOTICE: &'static str = "Removing a file unlinks it; it does not erase \
        it. On journaling and copy-on-write file systems, on SSDs (wear levelling), and in \
        backups and snapshots, the plaintext tokens can survive. If the file may have been \
        copied or read by others, revoke the tokens or log in again.";
}

impl fmt::Display for ImportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural = |n: usize| if n == 1 { "" } else { "s" };
        let n = self.imported.len();
        if self.dry_run {
            write!(f, "dry run: would import {n} record{}", plural(n))?;
        } else {
            write!(f, "imported {n} record{}", plural(n))?;
        }
        writeln!(f, " from {} ({})", self.source.display(), self.format)?;
        for r in &self.imported {
            write!(f, "  {:?} / {:?}", r.namespace, r.key)?;
            if r.replaced {
                f.write_str(" (replaced the record in the vault)")?;
            }
            writeln!(f)?;
        }
        if !self.skipped.is_empty() {
            let n = self.skipped.len();
            writeln!(f, "skipped {n} entr{}:", if n == 1 { "y" } else { "ies" })?;
            for s in &self.skipped {
                writeln!(f, "  {:?} / {:?}: {}", s.namespace, s.key, s.reason)?;
            }
        }
        for path in &self.removed {
            writeln!(f, "removed {}", path.display())?;
        }
        for (path, why) in &self.not_removed {
            writeln!(f, "kept {}: {why}", path.display())?;
        }
        if !self.removed.is_empty() || !self.not_removed.is_empty() {
            writeln!(f, "{}", Self::ERASURE_NOTICE)?;
        }
        Ok(())
    }
}
