//! Importing the plaintext token files of other SDKs into a vault.
//!
//! [`Import`] reads the files that these SDKs write, and stores their tokens in a vault:
//!
//! | format | written by | constructor |
//! | --- | --- | --- |
//! | JSON, `format_version` `"2.0"` and legacy `"1.0"` | Globus SDK `JSONTokenStorage`, legacy `SimpleJSONFileAdapter` | [`Import::globus_json`] |
//! | SQLite, schema `"2"` and legacy `"1"` | Globus SDK `SQLiteTokenStorage`, legacy `SQLiteAdapter` | [`Import::globus_sqlite`] (feature `sqlite`) |
//! | a bare token response | Sharetribe Flex integration SDK `tokenStore.fileStore()` | [`Import::sharetribe_file`] |
//!
//! An import is all-or-nothing: the whole file is read and checked first, then every token
//! is written in one atomic commit, then read back and compared; only after that can the
//! plaintext source be removed. Any error leaves the vault as it was.

mod globus;
mod sharetribe;
#[cfg(feature = "sqlite")]
mod sqlite;

use std::collections::BTreeSet;
use std::fmt;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde_json::Value;
use zeroize::Zeroizing;

use crate::error::{Damage, Error, Result};
use crate::namespace::{put_tokens, Namespace, MAX_NAME_LEN};
use crate::record::sealed::Sealed;
use crate::record::MAX_RECORD_LEN;
use crate::response::{parse_json, wipe, MAX_RESPONSE_LEN};
use crate::token::Token;
use crate::vault::Vault;

/// Largest JSON token file an import reads, in bytes (16 MiB): far more than any real token
/// file, small enough that a hostile file cannot exhaust memory. (A Sharetribe file is a
/// token response, bounded by [`MAX_RESPONSE_LEN`](crate::MAX_RESPONSE_LEN).)
///
/// ```
/// assert_eq!(tokenvault::MAX_IMPORT_FILE_LEN, 16 << 20);
/// ```
pub const MAX_IMPORT_FILE_LEN: usize = 16 * 1024 * 1024;

/// Largest SQLite token database an import reads, in bytes (64 MiB), counted for the
/// database file and its `-wal` file each. SQLite also refuses any single value over 1 MiB.
///
/// ```
/// assert_eq!(tokenvault::MAX_IMPORT_DATABASE_LEN, 64 << 20);
/// ```
pub const MAX_IMPORT_DATABASE_LEN: u64 = 64 * 1024 * 1024;

/// Most token records one import stores (4096); a file with more is refused whole.
///
/// ```
/// assert_eq!(tokenvault::MAX_IMPORT_RECORDS, 4096);
/// ```
pub const MAX_IMPORT_RECORDS: usize = 4096;

/// An import of one plaintext token file into a vault: build it with a constructor for the
/// file's format, set options, then [`run`](Self::run) it.
///
/// What is imported:
/// - **Globus SDK** (JSON and SQLite): every token record, under a vault namespace named like
///   the Globus namespace (`DEFAULT`, `user/<uuid>`, ...) and a record key equal to its
///   resource server. A legacy JSON file (format `1.0`) has no namespaces: its records go to
///   [`namespace_for_legacy`](Self::namespace_for_legacy), `DEFAULT` unless set. A legacy
///   database's `config_storage` rows are not tokens: they are listed as skipped.
/// - **Sharetribe** file store: the one token in the file, under the namespace and key given.
///   The file holds only a relative `expires_in`; the expiry is counted from the file's
///   modification time (when the SDK wrote the token it had just received).
///
/// Nothing is written unless every record of the file is valid and, without
/// [`overwrite`](Self::overwrite), none of them is already in the vault.
///
/// ```
/// use tokenvault::{Import, KeySource, Token, Vault};
/// use tokenvault::secrecy::{ExposeSecret, SecretBox};
///
/// # let dir = tempfile::tempdir()?;
/// let file = dir.path().join("tokens.json");
/// std::fs::write(&file, r#"{"format_version": "2.0", "data": {"DEFAULT": {
///     "auth.globus.org": {"resource_server": "auth.globus.org", "access_token": "at-1",
///         "scope": "openid", "expires_at_seconds": 1790172800, "token_type": "Bearer"}}}}"#)?;
/// let vault = Vault::create(dir.path().join("vault"), &KeySource::raw_key(SecretBox::new(Box::new([7u8; 32]))))?;
///
/// let report = Import::globus_json(&file).remove_source(true).run(&vault)?;
/// assert_eq!(report.imported.len(), 1);
/// assert_eq!(report.removed, [file.clone()]);
/// assert!(!file.exists());
/// let token = vault.namespace("DEFAULT")?.get::<Token>("auth.globus.org")?.unwrap();
/// assert_eq!(token.access_token().expose_secret(), "at-1");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct Import {
    path: PathBuf,
    source: Source,
    dry_run: bool,
    overwrite: bool,
    remove_source: bool,
    legacy_namespace: String,
}

/// The formats an [`Import`] reads. [`ImportFormat::detect`] tells them apart.
///
/// ```
/// use tokenvault::{Import, ImportFormat};
///
/// assert_eq!(Import::globus_sqlite("storage.db").format(), ImportFormat::GlobusSqlite);
/// assert_eq!(ImportFormat::GlobusJson.to_string(), "Globus SDK JSON token storage");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ImportFormat {
    /// A Globus SDK `JSONTokenStorage` file (format 2.0) or a legacy `SimpleJSONFileAdapter`
    /// file (format 1.0).
    GlobusJson,
    /// A Globus SDK `SQLiteTokenStorage` database or a legacy `SQLiteAdapter` database.
    GlobusSqlite,
    /// A Sharetribe Flex integration SDK file store: one bare token response.
    SharetribeFile,
}

/// What an import did (or, for a dry run, would do). Names only: never a token value.
///
/// Its `Display` is a summary for people, which ends with [`ImportReport::ERASURE_NOTICE`]
/// when files were removed.
///
/// ```
/// use tokenvault::{Import, ImportReport, KeySource, Vault};
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
/// use tokenvault::{Import, KeySource, Vault};
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
    /// import replaced (only with [`Import::overwrite`]).
    pub replaced: bool,
}

/// Something in the source file that an import did not store: the `config_storage` rows of
/// a legacy Globus `SQLiteAdapter` database, which hold settings, not tokens.
///
/// ```
/// use tokenvault::{Import, KeySource, Vault};
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

/// An import that failed, and why. Nothing was written to the vault, except after
/// [`ImportErrorKind::VerifyFailed`] (the records were written but did not read back as
/// written, and the source was kept).
///
/// Names files, namespaces, keys and fields, never a token value.
///
/// ```
/// use tokenvault::{Error, Import, ImportErrorKind, KeySource, Vault};
/// use tokenvault::secrecy::SecretBox;
///
/// # let dir = tempfile::tempdir()?;
/// let file = dir.path().join("tokens.json");
/// std::fs::write(&file, r#"{"format_version": "3.0", "data": {}}"#)?;
/// let vault = Vault::create(dir.path().join("vault"), &KeySource::raw_key(SecretBox::new(Box::new([7u8; 32]))))?;
///
/// let Err(Error::Import(e)) = Import::globus_json(&file).run(&vault) else { panic!() };
/// assert_eq!(e.path, file);
/// assert!(matches!(&e.kind, ImportErrorKind::UnsupportedVersion { found } if found == "3.0"));
/// assert!(e.to_string().contains("3.0"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub struct ImportError {
    /// The file being imported.
    pub path: PathBuf,
    /// What went wrong.
    pub kind: ImportErrorKind,
}

/// What went wrong in an import.
///
/// ```
/// use tokenvault::{Error, Import, ImportErrorKind, KeySource, Vault};
/// use tokenvault::secrecy::SecretBox;
///
/// # let dir = tempfile::tempdir()?;
/// let file = dir.path().join("tokens.json");
/// std::fs::write(&file, r#"{"format_version": "2.0", "data": {"DEFAULT": {"rs":
///     {"resource_server": "rs", "access_token": "secret-at", "scope": "", "expires_at_seconds": "soon"}}}}"#)?;
/// let vault = Vault::create(dir.path().join("vault"), &KeySource::raw_key(SecretBox::new(Box::new([7u8; 32]))))?;
///
/// match Import::globus_json(&file).run(&vault) {
///     Err(Error::Import(e)) => match &e.kind {
///         ImportErrorKind::InvalidRecord { namespace, key, reason } => {
///             assert_eq!((namespace.as_str(), key.as_str()), ("DEFAULT", "rs"));
///             assert!(reason.contains("expires_at_seconds"));
///             assert!(!e.to_string().contains("secret-at"));
///         }
///         other => panic!("{other}"),
///     },
///     other => panic!("{other:?}"),
/// }
/// assert!(vault.namespaces()?.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum ImportErrorKind {
    /// The file could not be read.
    Io {
        /// The I/O error's message.
        message: String,
    },
    /// The file does not hold what its format requires.
    Malformed {
        /// What is wrong (never a token value).
        reason: String,
    },
    /// The file declares a format or schema version this importer does not read.
    UnsupportedVersion {
        /// The version found (printable ASCII only, at most 32 characters).
        found: String,
    },
    /// The file is larger than any token file of its format should be.
    TooLarge {
        /// The limit, in bytes.
        limit: u64,
    },
    /// The file holds more than [`MAX_IMPORT_RECORDS`] records.
    TooManyRecords {
        /// The limit.
        limit: usize,
    },
    /// The file is none of the formats [`ImportFormat`] lists.
    UnrecognizedFormat,
    /// One record of the file is invalid.
    InvalidRecord {
        /// Its namespace (cut to 128 characters if longer).
        namespace: String,
        /// Its key (cut to 128 characters if longer).
        key: String,
        /// What is wrong: the field, never its value.
        reason: String,
    },
    /// One record is larger than a vault record may be ([`MAX_RECORD_LEN`](crate::MAX_RECORD_LEN)).
    RecordTooLarge {
        /// Its namespace.
        namespace: String,
        /// Its key.
        key: String,
        /// The limit, in bytes.
        limit: usize,
    },
    /// The vault already holds a record under this namespace and key; use
    /// [`Import::overwrite`] to replace it.
    Exists {
        /// The namespace.
        namespace: String,
        /// The key.
        key: String,
    },
    /// SQLite could not read the database.
    Sqlite {
        /// SQLite's message (it names tables and columns, never row values).
        message: String,
    },
    /// Reading this format needs a cargo feature of tokenvault that this build lacks.
    FeatureDisabled {
        /// The feature to enable.
        feature: &'static str,
    },
    /// A record did not read back from the vault as it was written. The records were
    /// written, the source file was kept.
    VerifyFailed {
        /// The namespace.
        namespace: String,
        /// The key.
        key: String,
    },
}

impl Import {
    /// An import of a Globus SDK JSON token file (`JSONTokenStorage`, format 2.0, or the
    /// legacy `SimpleJSONFileAdapter`, format 1.0).
    ///
    /// Each record is Globus's `TokenStorageData`: `resource_server`, `access_token` and
    /// `scope` are required (as Globus requires them; `scope` may be empty) and
    /// `resource_server` must equal the key the record is filed under; `refresh_token`,
    /// `identity_id`, `token_type` and `expires_at_seconds` (absolute Unix seconds, from 1970
    /// to 9999) may be missing or `null`. A missing or empty `token_type` becomes `Bearer`;
    /// an empty `refresh_token` or `identity_id` counts as none. Any other field is kept in
    /// [`Token::extra_json`].
    ///
    /// ```
    /// use tokenvault::{Import, ImportFormat};
    ///
    /// let import = Import::globus_json("/home/me/.globus/app/tokens.json").namespace_for_legacy("me");
    /// assert_eq!(import.format(), ImportFormat::GlobusJson);
    /// ```
    pub fn globus_json(path: impl Into<PathBuf>) -> Self {
        Self::new(path.into(), Source::GlobusJson)
    }

    /// An import of a Globus SDK SQLite token database (`SQLiteTokenStorage`, schema 2, or
    /// the legacy `SQLiteAdapter`, schema 1). Its `token_storage` rows hold the same JSON
    /// records as [`globus_json`](Self::globus_json) files, checked the same way; the
    /// `resource_server` column must agree with the record's own.
    ///
    /// Needs the `sqlite` feature (which compiles in SQLite); without it,
    /// [`run`](Self::run) fails with [`ImportErrorKind::FeatureDisabled`].
    ///
    /// The database is opened read-only, with SQLite's defensive mode on, untrusted schema,
    /// views and triggers off, and a 1 MiB limit on any value. A database in WAL mode is read
    /// with its `-wal` file; SQLite may create a `-shm` index file beside it (it holds no
    /// token data). Close programs that use the database first, or tokens they write during
    /// the import may be missed.
    ///
    /// ```
    /// use tokenvault::{Import, ImportFormat};
    ///
    /// let import = Import::globus_sqlite("storage.db").remove_source(true);
    /// assert_eq!(import.format(), ImportFormat::GlobusSqlite);
    /// ```
    pub fn globus_sqlite(path: impl Into<PathBuf>) -> Self {
        Self::new(path.into(), Source::GlobusSqlite)
    }

    /// An import of a Sharetribe Flex integration SDK file store (`file-store-token.json`),
    /// stored as one token under `namespace` and `key`.
    ///
    /// The file is a bare OAuth token response, read with
    /// [`TokenResponse::from_json`](crate::TokenResponse::from_json) (at most
    /// [`MAX_RESPONSE_LEN`](crate::MAX_RESPONSE_LEN) bytes). Its `expires_in` is relative: the
    /// expiry is the file's modification time plus `expires_in`, which is when the SDK saved
    /// the token it had just received.
    ///
    /// ```
    /// use tokenvault::{Import, ImportFormat};
    ///
    /// let import = Import::sharetribe_file("file-store-token.json", "my-marketplace", "integration");
    /// assert_eq!(import.format(), ImportFormat::SharetribeFile);
    /// ```
    pub fn sharetribe_file(
        path: impl Into<PathBuf>,
        namespace: impl Into<String>,
        key: impl Into<String>,
    ) -> Self {
        Self::new(
            path.into(),
            Source::Sharetribe {
                namespace: namespace.into(),
                key: key.into(),
            },
        )
    }

    fn new(path: PathBuf, source: Source) -> Self {
        Self {
            path,
            source,
            dry_run: false,
            overwrite: false,
            remove_source: false,
            legacy_namespace: DEFAULT_NAMESPACE.to_owned(),
        }
    }

    /// With `true`, reads and checks everything (including whether records already exist)
    /// and reports what would be imported, writing nothing and removing nothing.
    ///
    /// ```
    /// # use tokenvault::Import;
    /// let import = Import::globus_json("tokens.json").dry_run(true);
    /// # let _ = import;
    /// ```
    #[must_use]
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// With `true`, records already in the vault under the same namespace and key are
    /// replaced (the report marks them). By default such a record is a conflict:
    /// [`ImportErrorKind::Exists`] names it, and nothing is written.
    ///
    /// ```
    /// # use tokenvault::Import;
    /// let import = Import::globus_json("tokens.json").overwrite(true);
    /// # let _ = import;
    /// ```
    #[must_use]
    pub fn overwrite(mut self, overwrite: bool) -> Self {
        self.overwrite = overwrite;
        self
    }

    /// With `true`, the source file is removed once every record has been written and read
    /// back unchanged; for SQLite, its `-wal`, `-shm` and `-journal` files too. Nothing is
    /// removed after any error, in a dry run, if the file changed since it was read, or if
    /// the path is a symbolic link. A legacy database's skipped `config_storage` rows go
    /// with it.
    ///
    /// **Removing a file is not erasing it.** The file is unlinked: on journaling and
    /// copy-on-write file systems, on SSDs (wear levelling), in backups and in snapshots the
    /// plaintext tokens can survive. If the file may have been copied or read by others,
    /// revoke the tokens (or log in again) so the copies are worthless.
    ///
    /// ```
    /// # use tokenvault::Import;
    /// let import = Import::globus_sqlite("storage.db").remove_source(true);
    /// # let _ = import;
    /// ```
    #[must_use]
    pub fn remove_source(mut self, remove_source: bool) -> Self {
        self.remove_source = remove_source;
        self
    }

    /// The vault namespace for a legacy Globus JSON file (format 1.0), which has none of its
    /// own: `DEFAULT` (Globus's own default) unless set. Other formats ignore it.
    ///
    /// ```
    /// # use tokenvault::Import;
    /// let import = Import::globus_json("legacy.json").namespace_for_legacy("user/alice");
    /// # let _ = import;
    /// ```
    #[must_use]
    pub fn namespace_for_legacy(mut self, namespace: impl Into<String>) -> Self {
        self.legacy_namespace = namespace.into();
        self
    }

    /// The file to import.
    ///
    /// ```
    /// # use tokenvault::Import;
    /// assert_eq!(Import::globus_json("t.json").path(), std::path::Path::new("t.json"));
    /// ```
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The format the file is read as.
    ///
    /// ```
    /// # use tokenvault::{Import, ImportFormat};
    /// assert_eq!(Import::globus_json("t.json").format(), ImportFormat::GlobusJson);
    /// ```
    pub fn format(&self) -> ImportFormat {
        match self.source {
            Source::GlobusJson => ImportFormat::GlobusJson,
            Source::GlobusSqlite => ImportFormat::GlobusSqlite,
            Source::Sharetribe { .. } => ImportFormat::SharetribeFile,
        }
    }

    /// Runs the import into `vault`: read and check the whole file, write every record in
    /// one atomic commit, read every record back and compare it, then remove the source if
    /// asked (see [`remove_source`](Self::remove_source)).
    ///
    /// ```
    /// use tokenvault::{Error, Import, ImportErrorKind, KeySource, Token, Vault};
    /// use tokenvault::secrecy::SecretBox;
    ///
    /// # let dir = tempfile::tempdir()?;
    /// let file = dir.path().join("tokens.json");
    /// std::fs::write(&file, r#"{"format_version": "1.0", "by_rs": {"auth.globus.org":
    ///     {"resource_server": "auth.globus.org", "access_token": "at", "scope": ""}}}"#)?;
    /// let vault = Vault::create(dir.path().join("vault"), &KeySource::raw_key(SecretBox::new(Box::new([7u8; 32]))))?;
    ///
    /// Import::globus_json(&file).run(&vault)?;
    /// // The same records again: a conflict, and nothing is written.
    /// let again = Import::globus_json(&file).run(&vault);
    /// assert!(matches!(again, Err(Error::Import(e)) if matches!(e.kind, ImportErrorKind::Exists { .. })));
    /// // Unless replacing is asked for.
    /// let report = Import::globus_json(&file).overwrite(true).run(&vault)?;
    /// assert!(report.imported[0].replaced);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Import`] when the file cannot be read, is not valid, holds a record the vault
    /// already has (without [`overwrite`](Self::overwrite)), or does not read back as written
    /// ([`ImportErrorKind`] says which). Errors of the vault itself ([`Error::Backend`],
    /// [`Error::Closed`], [`Error::Damaged`], ...) are returned as they are. Either way the
    /// vault is unchanged, except after [`ImportErrorKind::VerifyFailed`], and the source is
    /// kept.
    pub fn run(&self, vault: &Vault) -> Result<ImportReport> {
        let fail = |kind| Error::Import(ImportError::new(&self.path, kind));
        let files = self.source_files();
        let before = snapshot(&files);
        let parsed = self.parse().map_err(fail)?;
        let items = check(parsed.items).map_err(fail)?;

        // Which records exist already, before anything is written.
        let mut handles: Vec<Namespace> = Vec::new();
        let mut replaced = Vec::with_capacity(items.len());
        for item in &items {
            let ns = match handles.iter().find(|h| h.name() == item.namespace) {
                Some(ns) => ns.clone(),
                None => {
                    let ns = vault.namespace(&item.namespace)?;
                    handles.push(ns.clone());
                    ns
                }
            };
            let exists = match ns.get_versioned::<Token>(&item.key) {
                Ok(found) => found.is_some(),
                Err(Error::WrongRecordType { .. } | Error::Damaged(Damage::Record { .. })) => true,
                Err(e) => return Err(e),
            };
            if exists && !self.overwrite {
                return Err(fail(ImportErrorKind::Exists {
                    namespace: item.namespace.clone(),
                    key: item.key.clone(),
                }));
            }
            replaced.push(exists);
        }
        let handle = |name: &str| handles.iter().find(|h| h.name() == name);

        let mut report = ImportReport {
            source: self.path.clone(),
            format: self.format(),
            dry_run: self.dry_run,
            imported: items
                .iter()
                .zip(&replaced)
                .map(|(item, replaced)| ImportedRecord {
                    namespace: item.namespace.clone(),
                    key: item.key.clone(),
                    resource_server: item.token.resource_server().map(str::to_owned),
                    identity: item.token.identity().map(str::to_owned),
                    expires_at: item.token.expires_at(),
                    replaced: *replaced,
                })
                .collect(),
            skipped: parsed.skipped,
            removed: Vec::new(),
            not_removed: Vec::new(),
        };
        if self.dry_run {
            return Ok(report);
        }

        let mut batch = Vec::with_capacity(items.len());
        for item in &items {
            let ns = handle(&item.namespace).ok_or_else(|| internal("namespace handle"))?;
            batch.push((ns, item.key.as_str(), &item.token));
        }
        match put_tokens(vault, &batch, !self.overwrite)? {
            Ok(_) => {}
            Err((i, _)) => {
                let item = items.get(i).ok_or_else(|| internal("conflict index"))?;
                return Err(fail(ImportErrorKind::Exists {
                    namespace: item.namespace.clone(),
                    key: item.key.clone(),
                }));
            }
        }

        for item in &items {
            let ns = handle(&item.namespace).ok_or_else(|| internal("namespace handle"))?;
            let same = match ns.get::<Token>(&item.key) {
                Ok(Some(stored)) => stored.same_as(&item.token),
                Ok(None) | Err(Error::Damaged(_) | Error::WrongRecordType { .. }) => false,
                Err(e) => return Err(e),
            };
            if !same {
                return Err(fail(ImportErrorKind::VerifyFailed {
                    namespace: item.namespace.clone(),
                    key: item.key.clone(),
                }));
            }
        }

        if self.remove_source {
            remove(&files, &before, &mut report);
        }
        Ok(report)
    }

    /// Reads and checks the file, without looking at any vault.
    fn parse(&self) -> Result<Parsed, ImportErrorKind> {
        match &self.source {
            Source::GlobusJson => {
                let (bytes, _) = read_file(&self.path, MAX_IMPORT_FILE_LEN)?;
                globus::parse_file(&bytes, &self.legacy_namespace)
            }
            Source::GlobusSqlite => read_sqlite(&self.path),
            Source::Sharetribe { namespace, key } => {
                let (bytes, modified) = read_file(&self.path, MAX_RESPONSE_LEN)?;
                sharetribe::parse_file(&bytes, modified, namespace, key)
            }
        }
    }

    /// The files that make up the source, removed with it, each with whether a change to it
    /// since it was read keeps the source from being removed (SQLite's `-shm` index changes
    /// whenever the database is read, so it is not watched).
    fn source_files(&self) -> Vec<(PathBuf, bool)> {
        let mut files = vec![(self.path.clone(), true)];
        if matches!(self.source, Source::GlobusSqlite) {
            for (suffix, watched) in [("-wal", true), ("-shm", false), ("-journal", true)] {
                let mut name = self.path.clone().into_os_string();
                name.push(suffix);
                files.push((PathBuf::from(name), watched));
            }
        }
        files
    }
}

impl ImportFormat {
    /// Sniffs the format of the file at `path`: SQLite's magic header, or JSON with Globus's
    /// `format_version`/`data`/`by_rs` fields, or a token response with an `access_token`.
    ///
    /// ```
    /// use tokenvault::{Import, ImportFormat};
    ///
    /// # let dir = tempfile::tempdir()?;
    /// let file = dir.path().join("some-token-file");
    /// std::fs::write(&file, r#"{"access_token":"at","token_type":"bearer","expires_in":60}"#)?;
    /// let import = match ImportFormat::detect(&file)? {
    ///     ImportFormat::GlobusJson => Import::globus_json(&file),
    ///     ImportFormat::GlobusSqlite => Import::globus_sqlite(&file),
    ///     _ => Import::sharetribe_file(&file, "marketplace", "integration"),
    /// };
    /// assert_eq!(import.format(), ImportFormat::SharetribeFile);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`ImportError`] with [`ImportErrorKind::UnrecognizedFormat`] for any other file,
    /// [`ImportErrorKind::Malformed`] for a JSON object that does not parse, and
    /// [`ImportErrorKind::Io`] or [`ImportErrorKind::TooLarge`] as for an import.
    pub fn detect(path: impl AsRef<Path>) -> Result<Self, ImportError> {
        let path = path.as_ref();
        detect(path).map_err(|kind| ImportError::new(path, kind))
    }
}

impl ImportReport {
    /// What removing a plaintext token file does not do, in plain words: part of this
    /// report's `Display` whenever files were removed.
    ///
    /// ```
    /// assert!(tokenvault::ImportReport::ERASURE_NOTICE.contains("does not erase"));
    /// ```
    pub const ERASURE_NOTICE: &'static str = "Removing a file unlinks it; it does not erase \
        it. On journaling and copy-on-write file systems, on SSDs (wear levelling), and in \
        backups and snapshots, the plaintext tokens can survive. If the file may have been \
        copied or read by others, revoke the tokens or log in again.";
}

impl ImportError {
    fn new(path: &Path, kind: ImportErrorKind) -> Self {
        Self {
            path: path.to_owned(),
            kind,
        }
    }
}

impl fmt::Display for ImportFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::GlobusJson => "Globus SDK JSON token storage",
            Self::GlobusSqlite => "Globus SDK SQLite token storage",
            Self::SharetribeFile => "Sharetribe file token store",
        })
    }
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

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot import {}: {}", self.path.display(), self.kind)
    }
}

impl fmt::Display for ImportErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { message } => write!(f, "{message}"),
            Self::Malformed { reason } => write!(f, "{reason}"),
            Self::UnsupportedVersion { found } => write!(
                f,
                "format version {found:?} is not one this importer reads (Globus JSON 1.0 and \
                 2.0, Globus SQLite schema 1 and 2)"
            ),
            Self::TooLarge { limit } => write!(
                f,
                "the file is larger than {limit} bytes, more than a token file of its format holds"
            ),
            Self::TooManyRecords { limit } => {
                write!(f, "the file holds more than {limit} records")
            }
            Self::UnrecognizedFormat => f.write_str(
                "not a token file this importer reads (Globus SDK JSON or SQLite token \
                 storage, Sharetribe file store)",
            ),
            Self::InvalidRecord {
                namespace,
                key,
                reason,
            } => write!(f, "record {key:?} in namespace {namespace:?}: {reason}"),
            Self::RecordTooLarge {
                namespace,
                key,
                limit,
            } => write!(
                f,
                "record {key:?} in namespace {namespace:?} is larger than a vault record may \
                 be ({limit} bytes)"
            ),
            Self::Exists { namespace, key } => write!(
                f,
                "the vault already holds record {key:?} in namespace {namespace:?}; nothing \
                 was imported (import with overwrite to replace it)"
            ),
            Self::Sqlite { message } => write!(f, "SQLite: {message}"),
            Self::FeatureDisabled { feature } => write!(
                f,
                "reading this format needs tokenvault's `{feature}` cargo feature"
            ),
            Self::VerifyFailed { namespace, key } => write!(
                f,
                "record {key:?} in namespace {namespace:?} did not read back as written; the \
                 records were written, the source file was kept"
            ),
        }
    }
}

impl std::error::Error for ImportError {}

impl From<ImportError> for Error {
    fn from(e: ImportError) -> Self {
        Self::Import(e)
    }
}

/// Where the tokens come from.
#[derive(Clone, Debug)]
enum Source {
    GlobusJson,
    GlobusSqlite,
    Sharetribe { namespace: String, key: String },
}

/// What a format reader found: the records to store and what it left out.
#[derive(Default)]
struct Parsed {
    items: Vec<Item>,
    skipped: Vec<SkippedEntry>,
}

/// One token to store.
struct Item {
    namespace: String,
    key: String,
    token: Token,
}

impl Parsed {
    /// Adds a record, refusing more than [`MAX_IMPORT_RECORDS`].
    fn push(&mut self, namespace: &str, key: &str, token: Token) -> Result<(), ImportErrorKind> {
        if self.items.len() >= MAX_IMPORT_RECORDS {
            return Err(ImportErrorKind::TooManyRecords {
                limit: MAX_IMPORT_RECORDS,
            });
        }
        self.items.push(Item {
            namespace: namespace.to_owned(),
            key: key.to_owned(),
            token,
        });
        Ok(())
    }
}

/// Checks what the vault would refuse, so that it is refused before anything is written:
/// names, duplicates, record sizes. Returns the items sorted by namespace and key.
fn check(mut items: Vec<Item>) -> Result<Vec<Item>, ImportErrorKind> {
    items.sort_by(|a, b| (&a.namespace, &a.key).cmp(&(&b.namespace, &b.key)));
    let mut seen = BTreeSet::new();
    for item in &items {
        let invalid = |reason: &str| invalid_record(&item.namespace, &item.key, reason);
        for (what, name) in [("namespace", &item.namespace), ("key", &item.key)] {
            if name.is_empty() {
                return Err(invalid(&format!("the {what} is empty")));
            }
            if name.len() > MAX_NAME_LEN {
                return Err(invalid(&format!(
                    "the {what} is longer than {MAX_NAME_LEN} bytes"
                )));
            }
        }
        if !seen.insert((item.namespace.as_str(), item.key.as_str())) {
            return Err(invalid("the file holds this record twice"));
        }
        match item.token.encode_body(&item.key) {
            Ok(_) => {}
            Err(Error::TooLarge { .. }) => {
                return Err(ImportErrorKind::RecordTooLarge {
                    namespace: item.namespace.clone(),
                    key: item.key.clone(),
                    limit: MAX_RECORD_LEN,
                })
            }
            Err(_) => return Err(invalid("the record cannot be encoded")),
        }
    }
    Ok(items)
}

#[cfg(feature = "sqlite")]
fn read_sqlite(path: &Path) -> Result<Parsed, ImportErrorKind> {
    sqlite::read(path)
}

#[cfg(not(feature = "sqlite"))]
fn read_sqlite(_path: &Path) -> Result<Parsed, ImportErrorKind> {
    Err(ImportErrorKind::FeatureDisabled { feature: "sqlite" })
}

fn detect(path: &Path) -> Result<ImportFormat, ImportErrorKind> {
    let mut head = [0u8; SQLITE_MAGIC.len()];
    let (mut file, _) = open_regular(path)?;
    let mut filled = 0;
    while let Some(rest) = head.get_mut(filled..).filter(|r| !r.is_empty()) {
        match file.read(rest) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io(e)),
        }
    }
    if head == *SQLITE_MAGIC {
        return Ok(ImportFormat::GlobusSqlite);
    }
    drop(file);
    let first = head
        .get(..filled)
        .and_then(|h| h.iter().find(|b| !b.is_ascii_whitespace()));
    if first != Some(&b'{') {
        return Err(ImportErrorKind::UnrecognizedFormat);
    }
    let (bytes, _) = read_file(path, MAX_IMPORT_FILE_LEN)?;
    let mut value = json(&bytes)?;
    let format = match &value {
        Value::Object(map)
            if ["format_version", "data", "by_rs"]
                .iter()
                .any(|k| map.contains_key(*k)) =>
        {
            Ok(ImportFormat::GlobusJson)
        }
        Value::Object(map) if map.contains_key("access_token") => Ok(ImportFormat::SharetribeFile),
        _ => Err(ImportErrorKind::UnrecognizedFormat),
    };
    wipe(&mut value);
    format
}

/// Reads a whole file into a wiped-on-drop buffer, refusing files over `limit` bytes. The
/// buffer is sized from the file's length up front so that it never grows: a reallocation
/// would leave an unwiped copy of the plaintext behind. Returns the modification time too.
fn read_file(
    path: &Path,
    limit: usize,
) -> Result<(Zeroizing<Vec<u8>>, SystemTime), ImportErrorKind> {
    let (mut file, meta) = open_regular(path)?;
    let too_large = ImportErrorKind::TooLarge {
        limit: u64::try_from(limit).unwrap_or(u64::MAX),
    };
    let len = usize::try_from(meta.len()).unwrap_or(usize::MAX);
    if len > limit {
        return Err(too_large);
    }
    let modified = meta.modified().map_err(io)?;
    // One byte more than the file, to notice a file that grew since its length was read.
    let mut buf = Zeroizing::new(vec![0u8; len.saturating_add(1)]);
    let mut filled = 0;
    loop {
        let Some(rest) = buf.get_mut(filled..).filter(|r| !r.is_empty()) else {
            return Err(ImportErrorKind::Io {
                message: "the file grew while it was read; retry when nothing writes to it"
                    .to_owned(),
            });
        };
        match file.read(rest) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io(e)),
        }
    }
    buf.truncate(filled);
    Ok((buf, modified))
}

/// Opens a regular file for reading. The type is checked before opening too, so that a FIFO
/// or a device is refused instead of blocking the open or being read forever.
fn open_regular(path: &Path) -> Result<(fs::File, fs::Metadata), ImportErrorKind> {
    let not_regular = || ImportErrorKind::Io {
        message: "not a regular file".to_owned(),
    };
    if !fs::metadata(path).map_err(io)?.is_file() {
        return Err(not_regular());
    }
    let file = fs::File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(not_regular());
    }
    Ok((file, meta))
}

/// Parses JSON with position-only error messages (serde_json's own may quote the input).
fn json(bytes: &[u8]) -> Result<Value, ImportErrorKind> {
    parse_json(bytes).map_err(|e| ImportErrorKind::Malformed {
        reason: match e {
            Error::InvalidResponse { reason } => reason,
            _ => "not valid JSON".to_owned(),
        },
    })
}

fn io(e: std::io::Error) -> ImportErrorKind {
    ImportErrorKind::Io {
        message: e.to_string(),
    }
}

fn internal(what: &str) -> Error {
    Error::backend(format!("internal: import lost its {what}"))
}

/// An error about one record. Names are cut to 128 characters: a hostile file can hold
/// names of any length.
fn invalid_record(namespace: &str, key: &str, reason: &str) -> ImportErrorKind {
    ImportErrorKind::InvalidRecord {
        namespace: shown(namespace),
        key: shown(key),
        reason: reason.to_owned(),
    }
}

/// A name as errors show it: cut to 128 characters.
fn shown(name: &str) -> String {
    cut(name, 128)
}

/// `text` cut to `max` characters, with `...` when cut.
fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}...", text.get(..end).unwrap_or_default()),
        None => text.to_owned(),
    }
}

/// A version string from a file as errors show it: printable ASCII, at most 32 characters.
fn shown_version(found: &str) -> String {
    found
        .chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(32)
        .collect()
}

/// Length, modification time and whether it is a symbolic link, of each file that exists
/// (not following links).
type Snapshot = Vec<Option<(u64, Option<SystemTime>, bool)>>;

fn snapshot(files: &[(PathBuf, bool)]) -> Snapshot {
    files
        .iter()
        .map(|(f, _)| {
            fs::symlink_metadata(f)
                .ok()
                .map(|m| (m.len(), m.modified().ok(), m.file_type().is_symlink()))
        })
        .collect()
}

/// Removes the source files, unless a watched one changed since it was read or one is a
/// symbolic link (removing the link would leave the plaintext file it points to).
fn remove(files: &[(PathBuf, bool)], before: &Snapshot, report: &mut ImportReport) {
    let now = snapshot(files);
    // SQLite may create an empty `-wal` file when it reads a database in WAL mode.
    let changed = files
        .iter()
        .zip(before.iter().zip(&now))
        .any(|((_, watched), (then, now))| {
            *watched
                && match (then, now) {
                    (None, Some((len, _, link))) => *len > 0 || *link,
                    (then, now) => then != now,
                }
        });
    let link = now.iter().any(|s| s.is_some_and(|(_, _, link)| link));
    for ((file, _), state) in files.iter().zip(&now) {
        if state.is_none() {
            continue;
        }
        let refused = if link {
            Some("the source is a symbolic link; remove the file it points to yourself")
        } else if changed {
            Some("the source changed after it was read; check it and remove it yourself")
        } else {
            None
        };
        match refused {
            Some(why) => report.not_removed.push((file.clone(), why.to_owned())),
            None => match fs::remove_file(file) {
                Ok(()) => report.removed.push(file.clone()),
                Err(e) => report.not_removed.push((file.clone(), e.to_string())),
            },
        }
    }
}

/// Globus's default namespace, used for legacy files that have none.
const DEFAULT_NAMESPACE: &str = "DEFAULT";
/// The first 16 bytes of every SQLite 3 database file.
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_in_errors_are_cut() {
        let long = "n".repeat(5000);
        let ImportErrorKind::InvalidRecord { namespace, key, .. } = invalid_record(&long, "k", "r")
        else {
            unreachable!()
        };
        assert_eq!(namespace.len(), 128 + 3);
        assert_eq!(key, "k");
        assert_eq!(shown_version("2.0\n\u{1b}[31mX"), "2.0[31mX");
        assert_eq!(shown_version(&"9".repeat(100)).len(), 32);
    }

    #[test]
    fn read_file_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, vec![b'x'; 100]).unwrap();
        assert_eq!(read_file(&path, 100).unwrap().0.len(), 100);
        assert!(matches!(
            read_file(&path, 99),
            Err(ImportErrorKind::TooLarge { limit: 99 })
        ));
        assert!(matches!(
            read_file(dir.path(), 99),
            Err(ImportErrorKind::Io { .. })
        ));
    }
}
