//! The server password, from a password file in libpq's format (`PGPASSFILE`, else
//! `~/.pgpass`), never from the URL: a URL ends up in argument lists, shell histories and
//! logs.
//!
//! Each line is `hostname:port:database:username:password`; any of the first four may be
//! `*`; `\` escapes `:` and `\`; lines starting with `#` are comments; the first matching line
//! wins. Unlike libpq, which skips a file that group or others can read, this refuses it
//! (and one that another user owns), naming the file, never its contents.

use std::io::Read;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::backend::{BackendError, BackendErrorKind};

/// The largest password file read (libpq has no limit; a file this large is not one).
const MAX_LEN: u64 = 1 << 20;

/// What a line must match.
pub(super) struct Target<'a> {
    pub(super) host: &'a str,
    pub(super) port: u16,
    pub(super) database: &'a str,
    pub(super) user: &'a str,
}

/// The password file to read: `PGPASSFILE`, else `~/.pgpass` (`None` when neither is set).
pub(super) fn default_file() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("PGPASSFILE") {
        return Some(PathBuf::from(path));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".pgpass"))
}

/// The password of the first line of `file` that matches `target`; `None` when none does.
///
/// # Errors
/// [`BackendErrorKind::UnsafePath`] for a file that is not a regular file only its owner
/// can access; [`BackendErrorKind::Io`] if it cannot be read; [`BackendErrorKind::Other`]
/// for a file too large or not UTF-8.
pub(super) fn lookup(
    file: &Path,
    target: &Target<'_>,
) -> Result<Option<Zeroizing<String>>, BackendError> {
    let opened = crate::keys::open_private_file(file).map_err(|reason| {
        BackendError::new(
            BackendErrorKind::UnsafePath,
            format!("password file: {reason}"),
        )
        .with_path(file)
    })?;
    let mut data = Zeroizing::new(Vec::new());
    opened
        .take(MAX_LEN + 1)
        .read_to_end(&mut data)
        .map_err(|e| {
            BackendError::new(BackendErrorKind::Io, "cannot read the password file")
                .with_path(file)
                .with_source(e)
        })?;
    if data.len() as u64 > MAX_LEN {
        return Err(
            BackendError::new(BackendErrorKind::Other, "the password file is too large")
                .with_path(file),
        );
    }
    let text = std::str::from_utf8(&data).map_err(|_| {
        BackendError::new(BackendErrorKind::Other, "the password file is not UTF-8").with_path(file)
    })?;
    Ok(find(text, target))
}

/// The password of the first line of `text` matching `target`.
pub(super) fn find(text: &str, target: &Target<'_>) -> Option<Zeroizing<String>> {
    let port = target.port.to_string();
    let wanted = [target.host, port.as_str(), target.database, target.user];
    for line in text.lines() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let fields = split(line);
        if fields.len() != 5 {
            continue;
        }
        let matches = fields[..4]
            .iter()
            .zip(wanted)
            .all(|(field, want)| field.as_str() == "*" || field.as_str() == want);
        if matches {
            return Some(Zeroizing::new(fields[4].to_string()));
        }
    }
    None
}

/// The fields of a line, unescaped (`\:` and `\\`; a `\` before anything else stands for
/// itself, as in libpq). The password field, the last, takes the rest of the line.
fn split(line: &str) -> Vec<Zeroizing<String>> {
    let mut fields = vec![Zeroizing::new(String::new())];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        let last = fields.len() - 1;
        match c {
            '\\' => match chars.next() {
                Some(next) => fields[last].push(next),
                None => fields[last].push('\\'),
            },
            ':' if fields.len() < 5 => fields.push(Zeroizing::new(String::new())),
            c => fields[last].push(c),
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target<'static> {
        Target {
            host: "db.example",
            port: 5432,
            database: "tokens",
            user: "svc",
        }
    }

    #[test]
    fn the_first_matching_line_wins_with_wildcards_and_escapes() {
        let text = "# comment\n\
                    other:5432:tokens:svc:wrong\n\
                    db.example:5433:*:svc:wrong-port\n\
                    db.example:*:tok*:svc:no-glob\n\
                    db.example:5432:*:svc:p\\:a\\\\ss:word\n\
                    *:*:*:*:fallback\n";
        assert_eq!(
            find(text, &target()).as_deref().map(String::as_str),
            Some("p:a\\ss:word")
        );
        let text = "*:*:*:*:fallback\r\n";
        assert_eq!(
            find(text, &target()).as_deref().map(String::as_str),
            Some("fallback")
        );
        assert!(
            find("db.example:5432:tokens:svc\n", &target()).is_none(),
            "4 fields"
        );
        assert!(find("", &target()).is_none());
    }

    #[test]
    fn a_file_others_can_read_is_refused_without_its_contents() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgpass");
        std::fs::write(&path, "*:*:*:*:hunter2\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = lookup(&path, &target()).unwrap_err();
        assert_eq!(err.kind(), BackendErrorKind::UnsafePath);
        assert!(!format!("{err} {err:?}").contains("hunter2"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let found = lookup(&path, &target()).unwrap();
        assert_eq!(found.as_deref().map(String::as_str), Some("hunter2"));
    }
}
