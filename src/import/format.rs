//! The formats an import reads, and telling them apart.

use std::fmt;
use std::path::Path;

use serde_json::Value;

use super::error::{ImportError, ImportErrorKind};
use super::files::{read_file, read_head};
use super::records::json;
use super::MAX_IMPORT_FILE_LEN;
use crate::response::wipe;

/// The formats an [`Import`](crate::import::Import) reads. [`ImportFormat::detect`] tells them apart.
///
/// ```
/// use tokenvault::import::{Import, ImportFormat};
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

impl ImportFormat {
    /// Sniffs the format of the file at `path`: SQLite's magic header, or JSON with Globus's
    /// `format_version`/`data`/`by_rs` fields, or a token response with an `access_token`.
    ///
    /// ```
    /// use tokenvault::import::{Import, ImportFormat};
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

impl fmt::Display for ImportFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::GlobusJson => "Globus SDK JSON token storage",
            Self::GlobusSqlite => "Globus SDK SQLite token storage",
            Self::SharetribeFile => "Sharetribe file token store",
        })
    }
}

fn detect(path: &Path) -> Result<ImportFormat, ImportErrorKind> {
    let mut head = [0u8; SQLITE_MAGIC.len()];
    let filled = read_head(path, &mut head)?;
    let head = head.get(..filled).unwrap_or_default();
    if head == SQLITE_MAGIC {
        return Ok(ImportFormat::GlobusSqlite);
    }
    // A first byte other than `{` is no JSON format; a head of whitespace only says nothing.
    if head
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b != b'{')
    {
        return Err(ImportErrorKind::UnrecognizedFormat);
    }
    let (bytes, _) = read_file(path, MAX_IMPORT_FILE_LEN)?;
    detect_bytes(&bytes)
}

/// [`ImportFormat::detect`] on a file's contents.
pub(crate) fn detect_bytes(bytes: &[u8]) -> Result<ImportFormat, ImportErrorKind> {
    if bytes.starts_with(SQLITE_MAGIC) {
        return Ok(ImportFormat::GlobusSqlite);
    }
    if bytes.len() > MAX_IMPORT_FILE_LEN {
        return Err(ImportErrorKind::TooLarge {
            limit: u64::try_from(MAX_IMPORT_FILE_LEN).unwrap_or(u64::MAX),
        });
    }
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ImportErrorKind::UnrecognizedFormat);
    }
    classify_json(bytes)
}

/// A JSON file's format, from its top-level fields.
fn classify_json(bytes: &[u8]) -> Result<ImportFormat, ImportErrorKind> {
    let mut value = json(bytes)?;
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

/// The first 16 bytes of every SQLite 3 database file.
pub(super) const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";
