//! The vault directory's own files: who may own the directory, and how files in it are
//! opened and created without following a link or reusing a file someone else planted.
//!
//! The vault directory is private (mode 0700, owned by the user running the vault). A
//! directory that another user owns, or that group or others can write, is refused at open:
//! anyone who can write it could plant a link or a file under a name the vault is about to
//! use (the header's temporary file, the lock file) and read or redirect what is written
//! there. Files are opened with `O_NOFOLLOW` (a link is an error, never followed), created
//! with `O_EXCL` (never an existing file), and get their mode on the descriptor.

use std::borrow::Cow;
use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;
use std::path::Path;

use super::{BackendError, BackendErrorKind};

/// Refuses a vault directory that another user owns or that group or others can write.
/// Follows a link to the directory (the path is the caller's choice), then checks the
/// directory itself.
pub(super) fn check_private_dir(dir: &Path) -> Result<(), BackendError> {
    let meta = check_owner(dir)?;
    #[cfg(not(unix))]
    let _ = meta;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let mode = meta.mode() & 0o7777;
        if mode & 0o022 != 0 {
            return Err(unsafe_path(
                dir,
                format!(
                    "has mode {mode:o}, which lets group or others create files in it; \
                     chmod 700 it"
                ),
            ));
        }
    }
    Ok(())
}

/// Refuses a path that is not a directory or that another user owns; returns its metadata.
pub(super) fn check_owner(dir: &Path) -> Result<fs::Metadata, BackendError> {
    let meta = fs::metadata(dir)?;
    if !meta.is_dir() {
        return Err(unsafe_path(dir, "is not a directory"));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let me = rustix::process::geteuid().as_raw();
        if meta.uid() != me {
            return Err(unsafe_path(
                dir,
                format!(
                    "is owned by user id {}, not by this process's user (id {me}); another \
                     user could replace the vault's files",
                    meta.uid()
                ),
            ));
        }
    }
    Ok(meta)
}

/// Options that never follow a link at the last component of the path.
fn no_follow(options: &mut OpenOptions) -> &mut OpenOptions {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // O_NONBLOCK: opening a FIFO planted under the name returns at once (and is then
        // refused as not a regular file) instead of blocking.
        let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK;
        // The flags are small positive constants: the conversion cannot fail.
        options.custom_flags(i32::try_from(flags.bits()).unwrap_or(0));
    }
    options
}

/// Opens an existing regular file for reading, without following a link; `None` if absent.
pub(super) fn open_regular(path: &Path) -> Result<Option<File>, BackendError> {
    let file = match no_follow(OpenOptions::new().read(true)).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(refused(path, e)),
    };
    check_regular(path, &file)?;
    Ok(Some(file))
}

/// Opens or creates the lock file: never through a link, only a regular file, mode 0600.
pub(super) fn open_lock_file(path: &Path) -> Result<File, BackendError> {
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let file = no_follow(&mut options)
        .open(path)
        .map_err(|e| refused(path, e))?;
    check_regular(path, &file)?;
    set_private(&file)?;
    Ok(file)
}

/// Creates `path` as a new file, mode 0600 set on the descriptor: never an existing file and
/// never through a link. A file already under that name (left by a crash, or planted) is
/// removed first (removing a link removes the link, not its target), once: if the name is
/// taken again before the creation, someone is racing us, and that is an error.
pub(super) fn create_new_private(path: &Path) -> Result<File, BackendError> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    no_follow(&mut options);
    let file = match options.open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            remove_if_present(path)?;
            options.open(path).map_err(|e| refused(path, e))?
        }
        Err(e) => return Err(e.into()),
    };
    // The mode given at creation is masked by the umask; make it exact on the descriptor.
    set_private(&file)?;
    Ok(file)
}

/// Removes `path` (a file or a link, never what a link points to); fine if it is absent.
pub(super) fn remove_if_present(path: &Path) -> Result<bool, BackendError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e.into()),
    }
}

fn check_regular(path: &Path, file: &File) -> Result<(), BackendError> {
    if file.metadata()?.is_file() {
        Ok(())
    } else {
        Err(unsafe_path(path, "is not a regular file"))
    }
}

fn set_private(file: &File) -> Result<(), BackendError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
    }
    #[cfg(not(unix))]
    let _ = file;
    Ok(())
}

/// An open refused because the name is a link (`ELOOP` under `O_NOFOLLOW`) or already
/// taken, as a typed error; other I/O errors as they are.
fn refused(path: &Path, e: std::io::Error) -> BackendError {
    #[cfg(unix)]
    if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) {
        return unsafe_path(
            path,
            "is a symbolic link; the vault's files are never opened through a link",
        );
    }
    if e.kind() == ErrorKind::AlreadyExists {
        return unsafe_path(
            path,
            "was created again by someone else while the vault replaced it",
        );
    }
    BackendError::from(e).with_path(path)
}

/// A [`BackendErrorKind::UnsafePath`] error about `path`; `reason` reads after the path.
fn unsafe_path(path: &Path, reason: impl Into<Cow<'static, str>>) -> BackendError {
    BackendError::new(BackendErrorKind::UnsafePath, reason).with_path(path)
}
