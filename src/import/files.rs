//! The source files of an import: bounded reading, and removal once the import is verified.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use zeroize::Zeroizing;

use super::error::{io, ImportErrorKind};
use super::report::ImportReport;

/// Reads the first bytes of a file into `head`, as many as it has and `head` holds; returns
/// how many.
pub(super) fn read_head(path: &Path, head: &mut [u8]) -> Result<usize, ImportErrorKind> {
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
    Ok(filled)
}

/// Reads a whole file into a wiped-on-drop buffer, refusing files over `limit` bytes. The
/// buffer is sized from the file's length up front so that it never grows: a reallocation
/// would leave an unwiped copy of the plaintext behind. Returns the modification time too.
pub(super) fn read_file(
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
pub(super) fn open_regular(path: &Path) -> Result<(fs::File, fs::Metadata), ImportErrorKind> {
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

/// Length, modification time and whether it is a symbolic link, of each file that exists
/// (not following links).
pub(super) type Snapshot = Vec<Option<(u64, Option<SystemTime>, bool)>>;

pub(super) fn snapshot(files: &[(PathBuf, bool)]) -> Snapshot {
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
pub(super) fn remove(files: &[(PathBuf, bool)], before: &Snapshot, report: &mut ImportReport) {
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

#[cfg(test)]
mod tests {
    use super::*;

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
