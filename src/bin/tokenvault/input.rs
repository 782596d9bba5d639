//! Reading secrets: from files, file descriptors, standard input and environment variables
//! (the terminal is `terminal.rs`); and writing new key files.
//!
//! Every buffer that holds a secret is wiped: it is a `Zeroizing` buffer with its full size
//! reserved before reading, so that it never grows (growing would leave unwiped copies).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use secrecy::SecretString;
use zeroize::{Zeroize, Zeroizing};

use crate::failure::{io_failure, Exit, Failure, Outcome};

/// Largest passphrase file read, in bytes.
pub(crate) const MAX_PASSPHRASE_LEN: usize = 64 * 1024;

/// Where a secret is read from.
#[derive(Clone, Debug)]
pub(crate) enum Input {
    /// A file.
    File(PathBuf),
    /// A file that holds a passphrase: refused unless it is a regular file that only its
    /// owner can access, owned by this user or root (the rules of key files).
    PassphraseFile(PathBuf),
    /// An open file descriptor (Unix), read through `/dev/fd/N`.
    Fd(u32),
    /// Standard input.
    Stdin,
    /// An environment variable, by name.
    Env(String),
}

impl Input {
    /// A file path, where `-` means standard input.
    pub(crate) fn file_or_stdin(path: &Path) -> Self {
        if path.as_os_str() == "-" {
            Self::Stdin
        } else {
            Self::File(path.to_path_buf())
        }
    }

    /// Whether this input reads standard input (directly or as descriptor 0).
    pub(crate) fn is_stdin(&self) -> bool {
        matches!(self, Self::Stdin | Self::Fd(0))
    }

    /// Reads the whole input, at most `limit` bytes; `what` names it in errors.
    pub(crate) fn read_bytes(&self, limit: usize, what: &str) -> Outcome<Zeroizing<Vec<u8>>> {
        let mut buf = Zeroizing::new(Vec::with_capacity(limit.saturating_add(1)));
        let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
        let result = match self {
            Self::File(path) => {
                let file = File::open(path).map_err(|e| {
                    io_failure(
                        format!("cannot open the {what} file {}", path.display()),
                        &e,
                    )
                    .hint("check the path and the file's permissions")
                })?;
                file.take(cap).read_to_end(&mut buf)
            }
            Self::PassphraseFile(path) => {
                let file = open_private(path).map_err(|e| {
                    let what = format!("the {what} file {}", path.display());
                    if e.kind() == std::io::ErrorKind::NotFound {
                        return io_failure(what, &e).hint("check the path");
                    }
                    Failure::usage(format!("{what}: {e}")).hint(
                        "a passphrase file must be a regular file of yours (or root's), mode \
                         0600; give a pipe with --passphrase-fd",
                    )
                })?;
                file.take(cap).read_to_end(&mut buf)
            }
            Self::Fd(fd) => {
                let path = fd_path(*fd)?;
                let file = File::open(&path).map_err(|e| {
                    io_failure(
                        format!("cannot read the {what} from file descriptor {fd}"),
                        &e,
                    )
                })?;
                file.take(cap).read_to_end(&mut buf)
            }
            Self::Stdin => std::io::stdin().lock().take(cap).read_to_end(&mut buf),
            Self::Env(name) => return env_bytes(name, what),
        };
        result.map_err(|e| {
            Failure::other(format!(
                "cannot read the {what} from {}: {e}",
                self.describe()
            ))
        })?;
        if buf.len() > limit {
            return Err(Failure::other(format!(
                "the {what} from {} is longer than {limit} bytes",
                self.describe()
            )));
        }
        Ok(buf)
    }

    /// Reads a text secret, less one trailing newline (`\n` or `\r\n`) unless it comes from
    /// an environment variable.
    pub(crate) fn read_text(&self, limit: usize, what: &str) -> Outcome<Zeroizing<String>> {
        let mut bytes = self.read_bytes(limit, what)?;
        if !matches!(self, Self::Env(_)) {
            strip_newline(&mut bytes);
        }
        let text = String::from_utf8(std::mem::take(&mut *bytes)).map_err(|e| {
            e.into_bytes().zeroize();
            Failure::other(format!(
                "the {what} from {} is not UTF-8 text",
                self.describe()
            ))
        })?;
        Ok(Zeroizing::new(text))
    }

    /// Where the input comes from, for messages.
    fn describe(&self) -> String {
        match self {
            Self::File(path) | Self::PassphraseFile(path) => path.display().to_string(),
            Self::Fd(fd) => format!("file descriptor {fd}"),
            Self::Stdin => "standard input".to_owned(),
            Self::Env(name) => format!("environment variable {name}"),
        }
    }
}

/// A secret as a `SecretString` (copied into an exactly sized buffer; the source is wiped by
/// its owner).
pub(crate) fn secret(text: &Zeroizing<String>) -> SecretString {
    SecretString::from(text.as_str())
}

/// Writes a new key file at `path`: 32 random bytes as 64 hex digits and a newline, mode
/// 0600. Never replaces an existing file.
pub(crate) fn generate_key_file(path: &Path) -> Outcome {
    let mut key = Zeroizing::new([0u8; 32]);
    getrandom::fill(&mut *key)
        .map_err(|e| Failure::other(format!("cannot get random bytes from the system: {e}")))?;
    let mut text = Zeroizing::new([0u8; 65]);
    for (i, byte) in key.iter().enumerate() {
        text[2 * i] = HEX[usize::from(byte >> 4)];
        text[2 * i + 1] = HEX[usize::from(byte & 0xf)];
    }
    text[64] = b'\n';
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|e| {
        io_failure(format!("cannot create the key file {}", path.display()), &e)
            .hint("--generate-key-file never replaces a file; choose a new path")
    })?;
    file.write_all(&*text)
        .and_then(|()| file.sync_all())
        .map_err(|e| {
            let _ = std::fs::remove_file(path);
            Failure::other(format!("cannot write the key file {}: {e}", path.display()))
        })
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn strip_newline(bytes: &mut Zeroizing<Vec<u8>>) {
    let len = bytes.len();
    if bytes.ends_with(b"\r\n") {
        bytes.truncate(len - 2);
    } else if bytes.ends_with(b"\n") {
        bytes.truncate(len - 1);
    }
}

/// A variable's value, in a wiped buffer (the environment keeps its own copy).
fn env_bytes(name: &str, what: &str) -> Outcome<Zeroizing<Vec<u8>>> {
    match std::env::var(name) {
        Ok(value) => Ok(Zeroizing::new(value.into_bytes())),
        Err(std::env::VarError::NotPresent) => Err(Failure::usage(format!(
            "the environment variable {name} (the {what}) is not set"
        ))
        .hint(format!(
            "export {name} first, or name the {what} another way"
        ))),
        Err(std::env::VarError::NotUnicode(raw)) => {
            raw.into_encoded_bytes().zeroize();
            Err(Failure::other(format!(
                "the environment variable {name} is not UTF-8 text"
            )))
        }
    }
}

/// The path through which descriptor `fd` is read.
fn fd_path(fd: u32) -> Outcome<PathBuf> {
    if cfg!(unix) {
        Ok(PathBuf::from(format!("/dev/fd/{fd}")))
    } else {
        Err(
            Failure::new(Exit::Usage, "--passphrase-fd works only on Unix")
                .hint("use --passphrase-file or --passphrase-env instead"),
        )
    }
}

/// Opens a file that holds a secret, refusing (with the reason) anything but a regular file
/// that only its owner can access, owned by this process's effective user or by root: the
/// library's rules for key files.
///
/// The type is checked before opening, so a FIFO or a device is never opened (opening a FIFO
/// would block until a writer comes). The open does not block either (`O_NONBLOCK`), in case
/// the path was swapped for a FIFO in between; and the opened file must be the one checked
/// (same device and inode), and pass the checks again.
pub(crate) fn open_private(path: &Path) -> std::io::Result<File> {
    let refuse = |why: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, why);
    let before = std::fs::metadata(path)?;
    if !before.is_file() {
        return Err(refuse("not a regular file".into()));
    }
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use rustix::fs::OFlags;
        use std::os::unix::fs::OpenOptionsExt;
        let flags = OFlags::NONBLOCK | OFlags::NOCTTY;
        options.custom_flags(i32::try_from(flags.bits()).unwrap_or(0));
    }
    let file = options.open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(refuse("not a regular file".into()));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if (meta.dev(), meta.ino()) != (before.dev(), before.ino()) {
            return Err(refuse("it was replaced while being opened".into()));
        }
        let mode = meta.mode();
        if mode & 0o077 != 0 {
            return Err(refuse(format!(
                "mode {:o} lets group or others access it; chmod 600 it",
                mode & 0o777
            )));
        }
        let euid = rustix::process::geteuid().as_raw();
        if meta.uid() != euid && meta.uid() != 0 {
            return Err(refuse(format!(
                "it is owned by user id {}, not by this user ({euid}) or root; chown it",
                meta.uid()
            )));
        }
    }
    Ok(file)
}
