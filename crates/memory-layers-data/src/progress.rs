//! One stderr line when a slow phase before or after training (reading the corpus, training
//! the tokenizer, tokenizing, evaluating) starts, and one with its result and time.

use std::time::Instant;

/// A phase in progress; [`Phase::done`] reports how it ended.
pub struct Phase {
    show: bool,
    what: String,
    started: Instant,
}

impl Phase {
    /// Announces `what` (when `show`).
    pub fn start(show: bool, what: impl Into<String>) -> Self {
        let what = what.into();
        if show {
            eprintln!("{what} …");
        }
        Self {
            show,
            what,
            started: Instant::now(),
        }
    }

    /// Reports `result` and the time the phase took.
    pub fn done(self, result: impl std::fmt::Display) {
        if self.show {
            eprintln!(
                "{}: {result} ({:.1}s)",
                self.what,
                self.started.elapsed().as_secs_f64()
            );
        }
    }
}

/// `bytes` as `4.9 MB` or `812 kB`.
pub fn megabytes(bytes: usize) -> String {
    if bytes >= 1_000_000 {
        format!("{:.1} MB", bytes as f64 / 1e6)
    } else {
        format!("{} kB", bytes.div_ceil(1000))
    }
}
