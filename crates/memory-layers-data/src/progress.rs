//! Progress on stderr for the slow phases before and after training (reading the corpus,
//! training the tokenizer, tokenizing, evaluating): a line when a phase starts and one with its
//! result and time ([`Phase`]); for a phase of known length, its progress with a rate and an
//! ETA too ([`Progress`]): a bar on a terminal, a line every few seconds elsewhere (logs of
//! nohup, SLURM, CI).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

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

/// `seconds` as `1h02m`, `3m05s` or `42s`.
pub fn clock(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s / 60 % 60),
    }
}

/// How often a phase's progress line is printed off a terminal.
const LINE_EVERY: Duration = Duration::from_secs(5);

/// A phase of `total` units (sequences, questions) in progress: on a terminal a bar with the
/// rate and ETA, elsewhere a line with both every few seconds; [`Progress::done`] reports how
/// it ended, as [`Phase::done`] does.
pub struct Progress {
    phase: Phase,
    unit: &'static str,
    total: usize,
    done: usize,
    bar: Option<ProgressBar>,
    last_line: Instant,
}

impl Progress {
    /// Announces `what`, `total` `unit`s of work (when `show`).
    pub fn start(show: bool, what: impl Into<String>, total: usize, unit: &'static str) -> Self {
        let phase = Phase::start(show, what);
        let bar = (show && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new(total as u64);
            bar.set_style(
                ProgressStyle::with_template(&format!(
                    "{{bar:30}} {{pos}}/{{len}} {unit} | {{per_sec}} | ETA {{eta}}"
                ))
                .expect("a valid template"),
            );
            bar
        });
        Self {
            phase,
            unit,
            total,
            done: 0,
            bar,
            last_line: Instant::now(),
        }
    }

    /// Counts `n` more units done.
    pub fn add(&mut self, n: usize) {
        self.done += n;
        match &self.bar {
            Some(bar) => bar.set_position(self.done as u64),
            None if self.phase.show && self.last_line.elapsed() >= LINE_EVERY => {
                self.last_line = Instant::now();
                let seconds = self.phase.started.elapsed().as_secs_f64();
                let rate = self.done as f64 / seconds.max(1e-9);
                let left = self.total.saturating_sub(self.done) as f64 / rate.max(1e-9);
                eprintln!(
                    "{}: {} of {} {} ({rate:.0}/s, ETA {})",
                    self.phase.what,
                    self.done,
                    self.total,
                    self.unit,
                    clock(left)
                );
            }
            None => {}
        }
    }

    /// Reports `result` and the time the phase took.
    pub fn done(self, result: impl std::fmt::Display) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        self.phase.done(result);
    }
}
