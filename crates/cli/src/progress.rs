//! Progress bars on a terminal (hidden when stderr is not a terminal, with `--json` or
//! `--quiet`). One bar per run, counting bytes; its message names the current phase.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

/// A byte-counting progress bar that may be hidden.
#[derive(Debug, Clone)]
pub struct Bar {
    bar: ProgressBar,
}

impl Bar {
    /// A bar drawn on stderr when `visible` and stderr is a terminal; hidden otherwise.
    pub fn new(visible: bool) -> Self {
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::hidden());
        if visible && std::io::stderr().is_terminal() {
            bar.set_draw_target(ProgressDrawTarget::stderr());
        }
        let style = ProgressStyle::with_template(
            "{msg:<28} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        Bar { bar }
    }

    /// Start a phase that will move `bytes` more bytes.
    pub fn phase(&self, name: &str, bytes: u64) {
        self.bar.set_message(name.to_string());
        self.bar.inc_length(bytes);
    }

    /// Remove the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl ib3_transfer::Progress for Bar {
    fn advance(&self, bytes: u64) {
        self.bar.inc(bytes);
    }
}
