//! Progress bars for long work, drawn on standard error only when it is a terminal (and not
//! with `--quiet`): scripts and logs see nothing.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::Global;

/// A progress bar, or nothing when there is no terminal to draw it on.
pub(crate) struct Bar(Option<ProgressBar>);

impl Bar {
    /// A bar counting records, labelled `message`.
    pub(crate) fn records(global: &Global, message: &str) -> Self {
        Self::make(global, message, || {
            let bar = ProgressBar::no_length();
            if let Ok(style) =
                ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} records ({elapsed})")
            {
                bar.set_style(style.progress_chars("=> "));
            }
            bar
        })
    }

    /// A spinner, for work whose size is unknown.
    pub(crate) fn spinner(global: &Global, message: &str) -> Self {
        Self::make(global, message, || {
            let bar = ProgressBar::new_spinner();
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        })
    }

    fn make(global: &Global, message: &str, build: impl FnOnce() -> ProgressBar) -> Self {
        if global.quiet || !std::io::stderr().is_terminal() {
            return Self(None);
        }
        let bar = build();
        bar.set_message(message.to_owned());
        Self(Some(bar))
    }

    /// Shows `progress`.
    pub(crate) fn update(&self, progress: tokenvault::maintenance::Progress) {
        if let Some(bar) = &self.0 {
            if let Some(total) = progress.total {
                bar.set_length(total.max(progress.done));
            }
            bar.set_position(progress.done);
        }
    }

    /// Removes the bar from the terminal.
    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.finish();
    }
}
