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

mod error;
mod files;
mod format;
mod globus;
mod records;
mod report;
mod sharetribe;
#[cfg(feature = "sqlite")]
mod sqlite;

pub use self::error::{ImportError, ImportErrorKind};
pub use self::format::ImportFormat;
pub use self::report::{ImportReport, ImportedRecord, SkippedEntry};

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use self::files::{read_file, remove, snapshot};
// For the import fuzz hook (`test_hooks`).
#[cfg(feature = "test-hooks")]
pub(crate) use self::format::detect_bytes;
use self::records::check;
#[cfg(feature = "test-hooks")]
pub(crate) use self::records::Item;
pub(crate) use self::records::Parsed;
use crate::error::{Damage, Error, Result};
use crate::namespace::Namespace;
use crate::response::MAX_RESPONSE_LEN;
use crate::token::Token;
use crate::vault::Vault;

/// Largest JSON token file an import reads, in bytes (16 MiB): far more than any real token
/// file, small enough that a hostile file cannot exhaust memory. (A Sharetribe file is a
/// token response, bounded by [`MAX_RESPONSE_LEN`].)
///
/// ```
/// assert_eq!(tokenvault::import::MAX_IMPORT_FILE_LEN, 16 << 20);
/// ```
pub const MAX_IMPORT_FILE_LEN: usize = 16 * 1024 * 1024;

/// Largest SQLite token database an import reads, in bytes (64 MiB), counted for the
/// database file and its `-wal` file each. SQLite also refuses any single value over 1 MiB.
///
/// ```
/// assert_eq!(tokenvault::import::MAX_IMPORT_DATABASE_LEN, 64 << 20);
/// ```
pub const MAX_IMPORT_DATABASE_LEN: u64 = 64 * 1024 * 1024;

/// Most token records one import stores (4096); a file with more is refused whole.
///
/// ```
/// assert_eq!(tokenvault::import::MAX_IMPORT_RECORDS, 4096);
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
/// use tokenvault::{KeySource, Token, Vault};
/// use tokenvault::import::Import;
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
    /// use tokenvault::import::{Import, ImportFormat};
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
    /// use tokenvault::import::{Import, ImportFormat};
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
    /// [`TokenResponse::from_json`](crate::oauth::TokenResponse::from_json) (at most
    /// [`MAX_RESPONSE_LEN`] bytes). Its `expires_in` is relative: the
    /// expiry is the file's modification time plus `expires_in`, which is when the SDK saved
    /// the token it had just received.
    ///
    /// ```
    /// use tokenvault::import::{Import, ImportFormat};
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
    /// # use tokenvault::import::Import;
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
    /// # use tokenvault::import::Import;
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
    /// # use tokenvault::import::Import;
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
    /// # use tokenvault::import::Import;
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
    /// # use tokenvault::import::Import;
    /// assert_eq!(Import::globus_json("t.json").path(), std::path::Path::new("t.json"));
    /// ```
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The format the file is read as.
    ///
    /// ```
    /// # use tokenvault::import::{Import, ImportFormat};
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
    /// use tokenvault::{KeySource, Token, Vault};
    /// use tokenvault::import::{Import, ImportErrorKind};
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
    /// assert!(matches!(again, Err(e) if matches!(e.kind, ImportErrorKind::Exists { .. })));
    /// // Unless replacing is asked for.
    /// let report = Import::globus_json(&file).overwrite(true).run(&vault)?;
    /// assert!(report.imported[0].replaced);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// An [`ImportError`] when the file cannot be read, is not valid, holds a record the
    /// vault already has (without [`overwrite`](Self::overwrite)), or does not read back as
    /// written ([`ImportErrorKind`] says which); errors of the vault itself
    /// ([`Error::Backend`], [`Error::Closed`], [`Error::Damaged`], ...) as
    /// [`ImportErrorKind::Vault`]. Either way the vault is unchanged, except after
    /// [`ImportErrorKind::VerifyFailed`], and the source is kept.
    pub fn run(&self, vault: &Vault) -> Result<ImportReport, ImportError> {
        self.run_in(vault)
            .map_err(|kind| ImportError::new(&self.path, kind))
    }

    /// [`run`](Self::run), failing with the kind of error only.
    fn run_in(&self, vault: &Vault) -> Result<ImportReport, ImportErrorKind> {
        let files = self.source_files();
        let before = snapshot(&files);
        let parsed = self.parse()?;
        let items = parsed.items;

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
                Err(e) => return Err(e.into()),
            };
            if exists && !self.overwrite {
                return Err(ImportErrorKind::Exists {
                    namespace: item.namespace.clone(),
                    key: item.key.clone(),
                });
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

        // One atomic write of every record; without overwrite, each must still be absent.
        let mut batch = vault.batch();
        for item in &items {
            let ns = handle(&item.namespace).ok_or_else(|| internal("namespace handle"))?;
            if self.overwrite {
                batch.put(ns, &item.key, &item.token)?;
            } else {
                batch.put_if(ns, &item.key, &item.token, None)?;
            }
        }
        if let Err(conflict) = batch.commit()? {
            let item = items
                .get(conflict.index)
                .ok_or_else(|| internal("conflict index"))?;
            return Err(ImportErrorKind::Exists {
                namespace: item.namespace.clone(),
                key: item.key.clone(),
            });
        }

        for item in &items {
            let ns = handle(&item.namespace).ok_or_else(|| internal("namespace handle"))?;
            let same = match ns.get::<Token>(&item.key) {
                Ok(Some(stored)) => stored.same_as(&item.token),
                Ok(None) | Err(Error::Damaged(_) | Error::WrongRecordType { .. }) => false,
                Err(e) => return Err(e.into()),
            };
            if !same {
                return Err(ImportErrorKind::VerifyFailed {
                    namespace: item.namespace.clone(),
                    key: item.key.clone(),
                });
            }
        }

        if self.remove_source {
            remove(&files, &before, &mut report);
        }
        Ok(report)
    }

    /// Reads and checks the file, without looking at any vault: the records come back
    /// sorted by namespace and key, and valid for the vault.
    fn parse(&self) -> Result<Parsed, ImportErrorKind> {
        match &self.source {
            Source::GlobusSqlite => {
                let parsed = read_sqlite(&self.path)?;
                Ok(Parsed {
                    items: check(parsed.items)?,
                    skipped: parsed.skipped,
                })
            }
            Source::GlobusJson | Source::Sharetribe { .. } => {
                let (bytes, modified) = read_file(&self.path, self.max_file_len())?;
                self.parse_bytes(&bytes, modified)
            }
        }
    }

    /// Reads and checks the contents of a JSON source file last modified at `modified`, as
    /// [`parse`](Self::parse) does after reading the file: the fuzz target's way in. A SQLite
    /// database is read from its file only, so its source gives [`ImportErrorKind::Malformed`].
    pub(crate) fn parse_bytes(
        &self,
        bytes: &[u8],
        modified: SystemTime,
    ) -> Result<Parsed, ImportErrorKind> {
        let limit = self.max_file_len();
        if bytes.len() > limit {
            return Err(ImportErrorKind::TooLarge {
                limit: u64::try_from(limit).unwrap_or(u64::MAX),
            });
        }
        let parsed = match &self.source {
            Source::GlobusJson => globus::parse_file(bytes, &self.legacy_namespace)?,
            Source::Sharetribe { namespace, key } => {
                sharetribe::parse_file(bytes, modified, namespace, key)?
            }
            Source::GlobusSqlite => {
                return Err(ImportErrorKind::Malformed {
                    reason: "a SQLite database is read from its file".to_owned(),
                })
            }
        };
        Ok(Parsed {
            items: check(parsed.items)?,
            skipped: parsed.skipped,
        })
    }

    /// The largest source file read for this format (a SQLite database is bounded apart).
    fn max_file_len(&self) -> usize {
        match self.source {
            Source::Sharetribe { .. } => MAX_RESPONSE_LEN,
            Source::GlobusJson | Source::GlobusSqlite => MAX_IMPORT_FILE_LEN,
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

/// Where the tokens come from.
#[derive(Clone, Debug)]
enum Source {
    GlobusJson,
    GlobusSqlite,
    Sharetribe { namespace: String, key: String },
}

#[cfg(feature = "sqlite")]
fn read_sqlite(path: &Path) -> Result<Parsed, ImportErrorKind> {
    sqlite::read(path)
}

#[cfg(not(feature = "sqlite"))]
fn read_sqlite(_path: &Path) -> Result<Parsed, ImportErrorKind> {
    Err(ImportErrorKind::FeatureDisabled { feature: "sqlite" })
}

fn internal(what: &str) -> Error {
    Error::backend(format!("internal: import lost its {what}"))
}

/// Globus's default namespace, used for legacy files that have none.
const DEFAULT_NAMESPACE: &str = "DEFAULT";
