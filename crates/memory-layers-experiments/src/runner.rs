//! Running a suite: budgets resolved once, finished runs skipped, an interrupted run resumed
//! from its checkpoint, the report rewritten after every run.

use std::collections::BTreeMap;

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use memory_layers_train::{
    Interrupt, RunDir, TrainBackend, TrainConfig, TrainOptions, TrainSummary, train,
};

use crate::budget::{resolve_tokens, seconds_per_token};
use crate::report::write_report;
use crate::summary::{SummaryRow, read_json, write_json};
use crate::{Base, Budget, ContinualRow, ExperimentError, RunSpec, Suite, SuiteDir};

/// What a suite is asked to do.
#[derive(Debug, Clone)]
pub struct SuitePlan {
    /// The suite.
    pub suite: Suite,
    /// Its base (data, seeds); `tokens` is set from the budget.
    pub base: Base,
    /// How much training it gets.
    pub budget: Budget,
    /// The suite's directory.
    pub out: SuiteDir,
    /// Runs trained at the same time (each on its own thread).
    pub jobs: usize,
    /// Stops the runs in progress (each writes a checkpoint), and so the suite.
    pub interrupt: Interrupt,
}

/// What the runner reports as it goes.
#[derive(Debug, Clone)]
pub enum Event<'a> {
    /// Step times measured (seconds per training token, per configuration).
    Calibrated {
        /// Training tokens every run gets.
        tokens_per_run: u64,
        /// Measured seconds per training token of each configuration still to train.
        seconds_per_token: &'a BTreeMap<String, f64>,
    },
    /// Run `index` (1-based) of `total` starts, or resumes.
    Start {
        /// 1-based position.
        index: usize,
        /// Runs in the suite.
        total: usize,
        /// The run.
        spec: &'a RunSpec,
        /// Whether it continues from a checkpoint.
        resumed: bool,
        /// This run's expected training time.
        run_eta: Duration,
        /// Expected time until the whole suite is done.
        suite_eta: Duration,
    },
    /// Run `index` was already finished.
    Skipped {
        /// 1-based position.
        index: usize,
        /// Runs in the suite.
        total: usize,
        /// The run.
        spec: &'a RunSpec,
    },
    /// Finetuning run `index` (continual suite) was already finished and scored.
    FinetuneSkipped {
        /// 1-based position.
        index: usize,
        /// Finetuning runs in the suite.
        total: usize,
        /// The run's id.
        id: &'a str,
    },
    /// Finetuning run `index` starts, or resumes.
    Finetuning {
        /// 1-based position.
        index: usize,
        /// Finetuning runs in the suite.
        total: usize,
        /// The run's id.
        id: &'a str,
    },
    /// A checkpoint of finetuning run `index` was scored.
    Finetuned {
        /// 1-based position.
        index: usize,
        /// Finetuning runs in the suite.
        total: usize,
        /// Its row.
        row: &'a ContinualRow,
    },
    /// Run `index` finished.
    Finished {
        /// 1-based position.
        index: usize,
        /// Runs in the suite.
        total: usize,
        /// Its summary row.
        row: &'a SummaryRow,
    },
}

/// Runs the suite on `device`, `plan.jobs` runs at a time, reporting progress to
/// `on_event`; returns every row, in the suite's order. With one job at a time each run shows
/// its own progress (bar or log lines).
pub fn run_suite<B: TrainBackend>(
    plan: &SuitePlan,
    device: &B::Device,
    on_event: &(dyn Fn(Event<'_>) + Sync),
) -> Result<Vec<SummaryRow>, ExperimentError> {
    let out = &plan.out;
    out.create()
        .map_err(|e| ExperimentError::file(out.path(), e))?;
    let probe = plan.suite.runs(&Base {
        tokens: 1,
        ..plan.base.clone()
    })?;
    let pending: Vec<&RunSpec> = probe.iter().filter(|s| !out.row(&s.id).exists()).collect();
    let cost = seconds_per_token::<B>(&pending, device)?;
    let tokens = resolve_tokens(plan, &probe, &cost)?;
    on_event(Event::Calibrated {
        tokens_per_run: tokens,
        seconds_per_token: &cost,
    });
    let specs = plan.suite.runs(&Base {
        tokens,
        ..plan.base.clone()
    })?;
    let jobs = plan.jobs.clamp(1, specs.len().max(1));
    let suite = Progress {
        specs: &specs,
        cost: &cost,
        tokens,
        jobs,
        state: Mutex::new(State {
            rows: vec![None; specs.len()],
            started: vec![false; specs.len()],
            ..State::default()
        }),
    };
    in_pools(jobs, specs.len(), |i| {
        suite.run::<B>(plan, i, device, jobs == 1, on_event)
    })?;
    let rows: Vec<SummaryRow> = suite
        .state
        .into_inner()
        .expect("no worker panicked")
        .rows
        .into_iter()
        .flatten()
        .collect();
    write_report(out, plan.suite, &rows)?;
    Ok(rows)
}

/// Calls `work(i)` for every `i` in `0..count`, `jobs` at a time, each worker in a rayon pool
/// of its own; after a failure no new `i` is taken. Returns the results in order, or the
/// first error.
pub(crate) fn in_pools<T: Send>(
    jobs: usize,
    count: usize,
    work: impl Fn(usize) -> Result<T, ExperimentError> + Sync,
) -> Result<Vec<T>, ExperimentError> {
    let jobs = jobs.clamp(1, count.max(1));
    let (next, failed) = (AtomicUsize::new(0), AtomicBool::new(false));
    let done: Mutex<Vec<Option<T>>> = Mutex::new((0..count).map(|_| None).collect());
    let worker = || -> Result<(), ExperimentError> {
        loop {
            let i = next.fetch_add(1, Ordering::SeqCst);
            if i >= count || failed.load(Ordering::SeqCst) {
                return Ok(());
            }
            match work(i) {
                Ok(value) => {
                    done.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(value);
                }
                Err(error) => {
                    failed.store(true, Ordering::SeqCst);
                    return Err(error);
                }
            }
        }
    };
    // Jobs side by side split the CPU threads between them, each in a pool of its own: in one
    // shared pool two small runs wait on each other's tasks (measured: a width-16 capacity run
    // 2.3× slower beside another than alone, no gain in total).
    let threads = (rayon::current_num_threads() / jobs).max(1);
    let in_own_pool = || {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build();
        match pool {
            Ok(pool) if jobs > 1 => pool.install(worker),
            _ => worker(),
        }
    };
    let results: Vec<Result<(), ExperimentError>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..jobs).map(|_| scope.spawn(in_own_pool)).collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("a suite worker panicked"))
            .collect()
    });
    results.into_iter().collect::<Result<Vec<()>, _>>()?;
    Ok(done
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .map(|v| v.expect("every job ran"))
        .collect())
}

/// The runs of a suite and what is known of them, shared by its workers.
struct Progress<'a> {
    specs: &'a [RunSpec],
    cost: &'a BTreeMap<String, f64>,
    tokens: u64,
    jobs: usize,
    state: Mutex<State>,
}

/// What the workers have done so far.
#[derive(Default)]
struct State {
    /// Finished runs, by position.
    rows: Vec<Option<SummaryRow>>,
    /// Runs taken by a worker.
    started: Vec<bool>,
    /// Training seconds measured and predicted, and other seconds (data, evaluation), over
    /// the `fresh` runs started from scratch in this process.
    measured: f64,
    predicted: f64,
    overhead: f64,
    fresh: usize,
}

impl Progress<'_> {
    /// Predicted training seconds of a run from the measured step times.
    fn predict(&self, spec: &RunSpec) -> f64 {
        self.cost.get(&spec.label).copied().unwrap_or(0.0) * self.tokens as f64
    }

    /// Expected seconds of a run, corrected by what finished runs measured.
    fn eta(&self, state: &State, spec: &RunSpec) -> f64 {
        let scale = if state.predicted > 0.0 {
            state.measured / state.predicted
        } else {
            1.0
        };
        self.predict(spec) * scale + state.overhead / state.fresh.max(1) as f64
    }

    /// Runs (or skips) run `i`.
    fn run<B: TrainBackend>(
        &self,
        plan: &SuitePlan,
        i: usize,
        device: &B::Device,
        progress: bool,
        on_event: &(dyn Fn(Event<'_>) + Sync),
    ) -> Result<(), ExperimentError> {
        let (spec, total, index) = (&self.specs[i], self.specs.len(), i + 1);
        let out = &plan.out;
        let path = out.row(&spec.id);
        if path.exists() {
            // A finished run counts only if it is the run the suite asks for now (another
            // --people, --data or --budget is another suite).
            let saved = out
                .run(&spec.id)
                .load_config()
                .map_err(|error| ExperimentError::Run {
                    run: spec.id.clone(),
                    error: Box::new(error),
                })?;
            let mut asked = spec.config.clone();
            asked.model.vocab_size = saved.model.vocab_size;
            asked.run.out = saved.run.out.clone();
            if asked != saved {
                return Err(ExperimentError::Setting {
                    field: "out",
                    value: out.path().display().to_string(),
                    rule: "holds a finished run trained with other settings (data, people, \
                           budget or a changed suite); use a new --out for these settings",
                });
            }
            let row: SummaryRow = read_json(&path)?;
            self.lock().rows[i] = Some(row);
            on_event(Event::Skipped { index, total, spec });
            return Ok(());
        }
        let dir = out.run(&spec.id);
        let resumed = prepare_dir(&dir)?;
        {
            let mut state = self.lock();
            state.started[i] = true;
            let run_eta = self.eta(&state, spec);
            let left: f64 = (i..total)
                .filter(|&j| j == i || (!state.started[j] && !out.row(&self.specs[j].id).exists()))
                .map(|j| self.eta(&state, &self.specs[j]))
                .sum();
            on_event(Event::Start {
                index,
                total,
                spec,
                resumed,
                run_eta: Duration::from_secs_f64(run_eta),
                suite_eta: Duration::from_secs_f64(left / self.jobs as f64),
            });
        }
        let started = Instant::now();
        let mut config = spec.config.clone();
        config.run.out = dir.path().to_path_buf();
        let options = TrainOptions {
            resume: resumed,
            overwrite: false,
            progress,
            interrupt: plan.interrupt.clone(),
        };
        let summary = train_run::<B>(&spec.id, config, device, options)?;
        let row = SummaryRow::new(
            &spec.id,
            &spec.label,
            &summary.config,
            summary.tokens,
            summary.train_seconds,
            &summary.eval,
            "tiny",
        );
        write_json(&path, &row)?;
        let mut state = self.lock();
        if !resumed {
            state.measured += summary.train_seconds;
            state.predicted += self.predict(spec);
            state.overhead += (started.elapsed().as_secs_f64() - summary.train_seconds).max(0.0);
            state.fresh += 1;
        }
        on_event(Event::Finished {
            index,
            total,
            row: &row,
        });
        state.rows[i] = Some(row);
        let rows: Vec<SummaryRow> = state.rows.iter().flatten().cloned().collect();
        write_report(out, plan.suite, &rows)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Readies a run directory: `true` to resume its checkpoint (the trainer checks that the
/// configuration is the same), `false` to start afresh (anything there without a checkpoint
/// is removed).
fn prepare_dir(dir: &RunDir) -> Result<bool, ExperimentError> {
    if dir.latest_checkpoint().is_some() {
        return Ok(true);
    }
    let path = dir.path();
    if path.exists() {
        std::fs::remove_dir_all(path).map_err(|e| ExperimentError::file(path, e))?;
    }
    Ok(false)
}

/// Trains `config` as the suite's run `id`; a failure names the run.
pub(crate) fn train_run<B: TrainBackend>(
    id: &str,
    config: TrainConfig,
    device: &B::Device,
    options: TrainOptions,
) -> Result<TrainSummary, ExperimentError> {
    train::<B>(config, device, options).map_err(|error| ExperimentError::Run {
        run: id.to_string(),
        error: Box::new(error),
    })
}
