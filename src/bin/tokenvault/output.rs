//! Writing results to standard output: text for people, JSON for scripts.
//!
//! Stored strings (names, keys, scopes, identities, ...) may come from a planted import file.
//! In text output they are passed through [`escaped`], so that none can send control or
//! escape sequences to the operator's terminal; error messages are too (`failure.rs`). JSON
//! output escapes what serde_json leaves raw (DEL, the C1 controls, U+2028 and U+2029).
//!
//! Output that may hold a secret is built in a wiped buffer with room reserved up front (so
//! that growing it leaves no copies behind) and written in one call. A closed pipe (`tokenvault
//! ls | head -1`) ends the output quietly.

use std::borrow::Cow;
use std::io::Write;

use serde::Serialize;
use zeroize::Zeroizing;

use crate::failure::{Failure, Outcome};

/// Room reserved in an output buffer beyond the secrets it will hold.
const SLACK: usize = 16 * 1024;
/// JSON escapes a character into at most 6 bytes (`\u0000`).
const JSON_ESCAPE_FACTOR: usize = 6;

/// Prints `value` as pretty JSON and a newline. `room` bounds the length of the strings
/// `value` holds (0 when it holds no secret), so that the buffers are reserved once and never
/// reallocate.
///
/// serde_json escapes the C0 controls; DEL, the C1 controls (U+0080 to U+009F, which some
/// terminals obey), the bidirectional-text controls and U+2028/U+2029 it writes raw. They can
/// only be inside strings, so they are escaped here as `\uXXXX`: the same JSON value, safe
/// on a terminal.
pub(crate) fn json<T: Serialize>(value: &T, room: usize) -> Outcome {
    let capacity = SLACK + room.saturating_mul(JSON_ESCAPE_FACTOR);
    let mut buf = Zeroizing::new(Vec::with_capacity(capacity));
    serde_json::to_writer_pretty(&mut *buf, value)
        .map_err(|e| Failure::other(format!("cannot write JSON: {e}")))?;
    buf.push(b'\n');
    let text =
        std::str::from_utf8(&buf).map_err(|_| Failure::other("cannot write JSON: not UTF-8"))?;
    if !text.chars().any(json_leaves_raw) {
        return write_stdout(&buf);
    }
    let mut out = Zeroizing::new(String::with_capacity(capacity));
    for c in text.chars() {
        if json_leaves_raw(c) {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    write_stdout(out.as_bytes())
}

/// A character serde_json writes raw that [`escaped`] would escape: DEL and the C1 controls,
/// the bidirectional-text controls and the line separators. (It escapes the C0 controls
/// itself; outside strings, the only ones are its own newlines.)
fn json_leaves_raw(c: char) -> bool {
    matches!(c, '\u{7f}'..='\u{9f}') || (!c.is_ascii() && is_unsafe(c))
}

/// `text` with everything that could act on a terminal made visible: control characters (C0,
/// DEL and C1: escape sequences, newlines and tabs among them), bidirectional-text controls
/// and the line and paragraph separators, each written as Rust escapes it (`\u{1b}`, `\n`,
/// `\t`, `\u{202e}`). The one escaping of stored strings in text output (and of error
/// messages). Escaped text is left as it is by a second pass.
pub(crate) fn escaped(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() * ESCAPE_FACTOR);
    push_escaped(&mut out, text);
    Cow::Owned(out)
}

/// `text` escaped and in double quotes, to name a stored string in a sentence.
pub(crate) fn quoted(text: &str) -> String {
    format!("\"{}\"", escaped(text))
}

/// Appends `text` to `out`, escaped as [`escaped`] does.
fn push_escaped(out: &mut String, text: &str) {
    for c in text.chars() {
        if is_unsafe(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
}

/// Whether `c` is escaped in text output.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{61c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
                | '\u{2028}'
                | '\u{2029}'
        )
}

/// Escaping writes a character in at most 6 bytes per byte of it (`\u{1b}` for one byte).
const ESCAPE_FACTOR: usize = 6;

/// Prints text that holds no secret.
pub(crate) fn text(text: &str) -> Outcome {
    write_stdout(text.as_bytes())
}

/// A text buffer for output that holds secrets: wiped when dropped.
pub(crate) struct SecretText(Zeroizing<String>);

impl SecretText {
    /// An empty buffer with room for `room` bytes of values (escaped) plus the labels.
    pub(crate) fn with_room(room: usize) -> Self {
        Self(Zeroizing::new(String::with_capacity(
            SLACK + room.saturating_mul(ESCAPE_FACTOR),
        )))
    }

    /// Appends a `name  value` line, the value [`escaped`] (directly into the buffer).
    pub(crate) fn line(&mut self, name: &str, value: &str) {
        self.0.push_str(name);
        for _ in name.len()..LABEL_WIDTH {
            self.0.push(' ');
        }
        push_escaped(&mut self.0, value);
        self.0.push('\n');
    }

    /// Appends raw text, unescaped (`--print-secret` prints a secret as it is).
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
