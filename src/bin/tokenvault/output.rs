//! Writing results to standard output: text for people, JSON for scripts.
//!
//! Output that may hold a secret is built in a wiped buffer with room reserved up front (so
//! that growing it leaves no copies behind) and written in one call. A closed pipe (`tokenvault
//! ls | head -1`) ends the output quietly.

use std::io::Write;

use serde::Serialize;
use zeroize::Zeroizing;

use crate::failure::{Failure, Outcome};

/// Room reserved in an output buffer beyond the secrets it will hold.
const SLACK: usize = 16 * 1024;
/// JSON escapes a character into at most 6 bytes (`\u0000`).
const JSON_ESCAPE_FACTOR: usize = 6;

/// Prints `value` as pretty JSON and a newline. `room` bounds the length of the strings
/// `value` holds (0 when it holds no secret), so that the buffer is reserved once and never
/// reallocates.
pub(crate) fn json<T: Serialize>(value: &T, room: usize) -> Outcome {
    let capacity = SLACK + room.saturating_mul(JSON_ESCAPE_FACTOR);
    let mut buf = Zeroizing::new(Vec::with_capacity(capacity));
    serde_json::to_writer_pretty(&mut *buf, value)
        .map_err(|e| Failure::other(format!("cannot write JSON: {e}")))?;
    buf.push(b'\n');
    write_stdout(&buf)
}

/// Prints text that holds no secret.
pub(crate) fn text(text: &str) -> Outcome {
    write_stdout(text.as_bytes())
}

/// A text buffer for output that holds secrets: wiped when dropped.
pub(crate) struct SecretText(Zeroizing<String>);

impl SecretText {
    /// An empty buffer with room for `room` bytes of values plus the labels.
    pub(crate) fn with_room(room: usize) -> Self {
        Self(Zeroizing::new(String::with_capacity(SLACK + room)))
    }

    /// Appends a `name  value` line.
    pub(crate) fn line(&mut self, name: &str, value: &str) {
        self.0.push_str(name);
        for _ in name.len()..LABEL_WIDTH {
            self.0.push(' ');
        }
        self.0.push_str(value);
        self.0.push('\n');
    }

    /// Appends raw text.
    pub(crate) fn push(&mut self, text: &str) {
        self.0.push_str(text);
    }

    /// Writes the buffer to standard output.
    pub(crate) fn print(&self) -> Outcome {
        write_stdout(self.0.as_bytes())
    }
}

/// Width of the label column of `name  value` lines.
const LABEL_WIDTH: usize = 17;

/// A `name  value` line, for text without secrets.
pub(crate) fn line(name: &str, value: impl std::fmt::Display) -> String {
    format!("{name:<LABEL_WIDTH$}{value}\n")
}

/// Writes `bytes` to standard output in one call; a closed pipe is not an error.
fn write_stdout(bytes: &[u8]) -> Outcome {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Failure::other(format!(
            "cannot write to standard output: {e}"
        ))),
    }
}

/// Writes a status message (not a result) to standard error.
pub(crate) fn note(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

/// Writes secret bytes as they are (binary secrets: no newline is added).
pub(crate) fn raw_secret(bytes: &[u8]) -> Outcome {
    write_stdout(bytes)
}
