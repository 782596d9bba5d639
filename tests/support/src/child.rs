//! A child process the test talks to line by line: its standard input piped in, its standard
//! output read as lines (the test harness prints lines of its own, so a reply is looked for
//! behind a marker), killed when dropped.

use std::io::{BufRead, BufReader, Lines, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

/// A child process with piped standard input and output.
pub struct Piped {
    child: Child,
    /// `None` once closed by [`finish`](Piped::finish).
    stdin: Option<ChildStdin>,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Piped {
    /// Spawns `command` with its standard input and output piped (standard error inherited).
    ///
    /// # Panics
    /// If the process cannot be started.
    pub fn spawn(mut command: Command) -> Self {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            panic!("the child's pipes are missing");
        };
        Self {
            child,
            stdin: Some(stdin),
            lines: BufReader::new(stdout).lines(),
        }
    }

    /// The rest of the next line that holds `marker`, after it (other lines are skipped).
    ///
    /// # Panics
    /// If the child's output ends first.
    pub fn after(&mut self, marker: &str) -> String {
        loop {
            let line = match self.lines.next() {
                Some(Ok(line)) => line,
                _ => panic!("the child process ended before a line with {marker:?}"),
            };
            if let Some(at) = line.find(marker) {
                return line[at + marker.len()..].trim().to_owned();
            }
        }
    }

    /// Writes `line` and a newline to the child's standard input.
    ///
    /// # Panics
    /// If the child no longer reads its input.
    pub fn send(&mut self, line: &str) {
        let Some(stdin) = self.stdin.as_mut() else {
            panic!("the child's input is closed");
        };
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("cannot write to the child: {e}"));
    }

    /// The child's process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Closes the child's standard input and waits for it; whether it exited successfully.
    pub fn finish(mut self) -> bool {
        drop(self.stdin.take());
        self.child.wait().is_ok_and(|status| status.success())
    }
}

impl Drop for Piped {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
