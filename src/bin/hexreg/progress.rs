//! A progress bar on stderr for long runs: shown only when stderr is a terminal and `--quiet`
//! is not given, so CI logs and pipes get nothing.

use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};

/// The engine's progress, as a bar per phase, or nothing.
pub struct Bar {
    quiet: bool,
    bar: Mutex<Option<ProgressBar>>,
}

impl Bar {
    /// Bars unless `quiet`.
    pub fn new(quiet: bool) -> Bar {
        Bar {
            quiet,
            bar: Mutex::new(None),
        }
    }

    fn with(&self, f: impl FnOnce(&mut Option<ProgressBar>)) {
        f(&mut self.bar.lock().unwrap_or_else(|e| e.into_inner()));
    }
}

impl hexreg::engine::Progress for Bar {
    /// A bar of `total` steps labelled `what`, if there is more than a handful of work.
    fn start(&self, what: &'static str, total: usize) {
        if self.quiet || total < 64 || !std::io::stderr().is_terminal() {
            return;
        }
        let bar = ProgressBar::new(total as u64);
        if let Ok(style) =
            ProgressStyle::with_template("{msg:>18} [{bar:40}] {pos}/{len}, {eta} left")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(what);
        self.with(|slot| *slot = Some(bar));
    }

    fn advance(&self, n: usize) {
        self.with(|slot| {
            if let Some(bar) = slot {
                bar.inc(n as u64);
            }
        });
    }

    fn finish(&self) {
        self.with(|slot| {
            if let Some(bar) = slot.take() {
                bar.finish_and_clear();
            }
        });
    }
}
