//! What an import shows while it runs: a bar per table on a terminal, plain lines
//! every few seconds otherwise, and warnings that do not break the bars.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Progress on a terminal (a bar per table), or plain lines every few seconds.
pub(super) struct Progress {
    bars: Option<MultiProgress>,
    current: Option<ProgressBar>,
    last_line: Instant,
}

impl Progress {
    pub(super) fn new() -> Self {
        let terminal = std::io::stderr().is_terminal();
        Self {
            bars: terminal.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
            current: None,
            last_line: Instant::now(),
        }
    }

    pub(super) fn start(&mut self, table: &str, total: u64) {
        if let Some(bars) = &self.bars {
            let bar = bars.add(ProgressBar::new(total));
            bar.set_style(
                ProgressStyle::with_template("{prefix:>13} [{bar:40}] {pos}/{len} {per_sec} {eta}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            bar.set_prefix(table.to_string());
            self.current = Some(bar);
        } else {
            eprintln!("import: {table}: {total} rows");
        }
    }

    pub(super) fn advance(&mut self, table: &str, done: u64, total: u64) {
        match &self.current {
            Some(bar) => bar.set_position(done),
            None if self.last_line.elapsed() >= Duration::from_secs(2) || done == total => {
                self.last_line = Instant::now();
                eprintln!("import: {table}: {done}/{total}");
            }
            None => {}
        }
    }

    pub(super) fn finish(&mut self) {
        if let Some(bar) = self.current.take() {
            bar.finish();
        }
    }

    pub(super) fn warn(&self, line: &str) {
        match &self.bars {
            Some(bars) => {
                let _ = bars.println(format!("warning: {line}"));
            }
            None => eprintln!("warning: {line}"),
        }
    }
}
