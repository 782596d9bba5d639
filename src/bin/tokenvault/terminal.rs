//! Asking for a passphrase on the terminal, without echo and without unwiped copies.
//!
//! The terminal is put in a quiet mode (no echo, no line editing by the terminal, no signals
//! from Ctrl-C or Ctrl-Z) and read one byte at a time, unbuffered, into a wiped buffer whose
//! full size is reserved up front: nothing holds the passphrase but that buffer, and it never
//! grows (growing would leave a copy behind). Erasing (Backspace, Ctrl-U) is done here; Ctrl-C
//! cancels. The terminal's settings are restored when reading ends, on an error or a panic
//! too. A signal from elsewhere (`kill`, a hang-up) ends the process without restoring them;
//! `stty sane` repairs the terminal then.

use std::io::{ErrorKind, IsTerminal, Read, Write};

use secrecy::SecretString;
use zeroize::{Zeroize, Zeroizing};

use crate::failure::{Failure, Outcome};
use crate::input::MAX_PASSPHRASE_LEN;

/// Asks for a passphrase on the terminal without echo; twice when `confirm`. Refuses at once
/// when standard input or standard error is not a terminal: `hint` says which flags to use.
pub(crate) fn prompt(label: &str, confirm: bool, hint: &str) -> Outcome<SecretString> {
    if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
        return Err(Failure::usage(
            "no passphrase source given, and no terminal to ask on (standard input or error is not a terminal)",
        )
        .hint(hint));
    }
    let first = ask(label)?;
    if first.is_empty() {
        return Err(Failure::usage("the passphrase is empty"));
    }
    if confirm {
        let second = ask("Repeat it: ")?;
        if *first != *second {
            return Err(Failure::usage(
                "the two passphrases differ; nothing was changed",
            ));
        }
    }
    let text = std::str::from_utf8(&first)
        .map_err(|_| Failure::usage("the passphrase is not UTF-8 text"))?;
    Ok(SecretString::from(text))
}

/// Writes `label` on standard error and reads one line from the terminal, quietly.
fn ask(label: &str) -> Outcome<Zeroizing<Vec<u8>>> {
    let fail = |e: std::io::Error| match e.kind() {
        ErrorKind::Interrupted => Failure::usage("cancelled; nothing was changed"),
        _ => Failure::other(format!("cannot read the passphrase from the terminal: {e}")),
    };
    let mut err = std::io::stderr().lock();
    err.write_all(label.as_bytes())
        .and_then(|()| err.flush())
        .map_err(fail)?;
    let line = read_quietly().map_err(fail);
    // The user's Enter was not echoed: end the prompt's line.
    let _ = err.write_all(b"\n").and_then(|()| err.flush());
    line
}

#[cfg(unix)]
fn read_quietly() -> std::io::Result<Zeroizing<Vec<u8>>> {
    use std::os::fd::AsFd;

    let stdin = std::io::stdin();
    // A file on a duplicate of descriptor 0: reads go straight to the terminal, with none of
    // standard input's buffering (whose buffer would keep a copy).
    let tty = std::fs::File::from(stdin.as_fd().try_clone_to_owned()?);
    let _quiet = Quiet::new(&tty)?;
    read_secret_line(&mut &tty, MAX_PASSPHRASE_LEN)
}

#[cfg(not(unix))]
fn read_quietly() -> std::io::Result<Zeroizing<Vec<u8>>> {
    // No termios: console's reader (its line is a `String` that may grow while reading).
    let line = Zeroizing::new(console::Term::stderr().read_secure_line()?);
    let mut buf = Zeroizing::new(Vec::with_capacity(line.len()));
    buf.extend_from_slice(line.as_bytes());
    Ok(buf)
}

/// The terminal in quiet mode while this lives; its settings as they were after.
#[cfg(unix)]
struct Quiet<'a> {
    tty: &'a std::fs::File,
    saved: rustix::termios::Termios,
}

#[cfg(unix)]
impl<'a> Quiet<'a> {
    fn new(tty: &'a std::fs::File) -> std::io::Result<Self> {
        use rustix::termios::{
            tcgetattr, tcsetattr, LocalModes, OptionalActions, SpecialCodeIndex,
        };

        let saved = tcgetattr(tty)?;
        let mut quiet = saved.clone();
        quiet
            .local_modes
            .remove(LocalModes::ECHO | LocalModes::ICANON | LocalModes::ISIG | LocalModes::IEXTEN);
        quiet.special_codes[SpecialCodeIndex::VMIN] = 1;
        quiet.special_codes[SpecialCodeIndex::VTIME] = 0;
        tcsetattr(tty, OptionalActions::Now, &quiet)?;
        Ok(Self { tty, saved })
    }
}

#[cfg(unix)]
impl Drop for Quiet<'_> {
    fn drop(&mut self) {
        let _ = rustix::termios::tcsetattr(
            self.tty,
            rustix::termios::OptionalActions::Now,
            &self.saved,
        );
    }
}

/// Reads a line of at most `limit` bytes from `input`, one byte per read, into a wiped buffer
/// reserved up front (it never reallocates). The line ends at `\n` or `\r` (not included), or
/// at the end of the input. Backspace (DEL or `^H`) erases a character, Ctrl-U the line;
/// Ctrl-C is [`ErrorKind::Interrupted`]; Ctrl-D on an empty line, or the end of the input
/// before any byte, is [`ErrorKind::UnexpectedEof`]. A longer line is an error (and its
/// bytes are wiped).
pub(crate) fn read_secret_line(
    input: &mut impl Read,
    limit: usize,
) -> std::io::Result<Zeroizing<Vec<u8>>> {
    let mut line = Zeroizing::new(Vec::with_capacity(limit));
    let mut byte = Zeroizing::new([0u8; 1]);
    let mut any = false;
    loop {
        let n = match input.read(&mut byte[..]) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            return if any {
                Ok(line)
            } else {
                Err(ErrorKind::UnexpectedEof.into())
            };
        }
        any = true;
        match byte[0] {
            b'\n' | b'\r' => return Ok(line),
            0x03 => return Err(std::io::Error::new(ErrorKind::Interrupted, "cancelled")),
            0x04 if line.is_empty() => return Err(ErrorKind::UnexpectedEof.into()),
            0x7f | 0x08 => {
                // Erase one character: its UTF-8 continuation bytes and its first byte.
                while let Some(last) = line.pop() {
                    if last & 0xc0 != 0x80 {
                        break;
                    }
                }
            }
            0x15 => line.zeroize(),
            b if line.len() < limit => line.push(b),
            _ => {
                return Err(std::io::Error::new(
                    ErrorKind::InvalidData,
                    format!("the passphrase is longer than {limit} bytes"),
                ))
            }
        }
        byte.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out one byte per call, as a terminal in quiet mode does.
    fn read(bytes: &[u8], limit: usize) -> std::io::Result<Zeroizing<Vec<u8>>> {
        read_secret_line(&mut std::io::Cursor::new(bytes.to_vec()), limit)
    }

    #[test]
    fn lines_end_at_a_newline_and_erase_works() {
        assert_eq!(&**read(b"secret\nrest", 64).unwrap(), b"secret");
        assert_eq!(&**read(b"secret\r", 64).unwrap(), b"secret");
        assert_eq!(&**read(b"at end", 64).unwrap(), b"at end");
        assert_eq!(&**read(b"ab\x7fc\x08d\n", 64).unwrap(), b"ad");
        assert_eq!(&**read("x\u{e9}\x7f\n".as_bytes(), 64).unwrap(), b"x");
        assert_eq!(&**read(b"wrong\x15right\n", 64).unwrap(), b"right");
        assert_eq!(&**read(b"\n", 64).unwrap(), b"");
        assert_eq!(read(b"", 64).unwrap_err().kind(), ErrorKind::UnexpectedEof);
        assert_eq!(
            read(b"\x04", 64).unwrap_err().kind(),
            ErrorKind::UnexpectedEof
        );
        assert_eq!(
            read(b"ab\x03cd\n", 64).unwrap_err().kind(),
            ErrorKind::Interrupted
        );
    }

    #[test]
    fn the_buffer_is_reserved_once_and_the_limit_holds() {
        let limit = 1000;
        let long = vec![b'p'; limit];
        let mut input = long.clone();
        input.push(b'\n');
        let line = read(&input, limit).unwrap();
        assert_eq!(&**line, &long[..]);
        // Never reallocated: the buffer is the one reserved at the start, still that size.
        assert_eq!(line.capacity(), limit);
        let mut input = long.clone();
        input.extend_from_slice(b"q\n");
        let err = read(&input, limit).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidData);
        assert!(!err.to_string().contains("ppp"), "{err}");
    }

    #[test]
    fn reads_one_byte_at_a_time() {
        // What follows the line stays unread in the input (nothing is buffered here).
        let mut input = std::io::Cursor::new(b"one\ntwo\n".to_vec());
        assert_eq!(&**read_secret_line(&mut input, 64).unwrap(), b"one");
        assert_eq!(input.position(), 4);
        assert_eq!(&**read_secret_line(&mut input, 64).unwrap(), b"two");
    }
}
