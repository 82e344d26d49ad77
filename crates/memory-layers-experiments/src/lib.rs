//! Experiment suites: the paper's comparisons in shape, on the machine at hand.
//!
//! - [`Suite`]: `models`, `memory-size`, `ablations`, `capacity`, `continual`; [`Suite::runs`] turns a [`Base`] (data,
//!   tokens per run, seeds) into [`RunSpec`]s that differ only in what is compared.
//! - [`Budget`]: tokens per run or minutes per suite, one knob for every run.
//! - [`run_suite`]: trains the runs in order, skips finished ones and resumes an interrupted
//!   one, and rewrites the report after each.
//! - [`run_continual`]: the continual suite's bases, then every finetuning run of its sweep,
//!   each checkpoint scored into a [`ContinualRow`].
//! - [`SummaryRow`], [`markdown`], [`write_report`]: `summary.json`, `summary.md` and the
//!   figures (recall and QA against FLOPs per token and parameters, validation loss).

mod budget;
mod continual;
mod error;
mod report;
mod runner;
mod suite;
mod suite_dir;
mod summary;

pub use budget::Budget;
pub use continual::{
    CONTINUAL_BACKGROUND, CONTINUAL_STEPS, ContinualRow, FinetuneSpec, continual_markdown, facts_b,
    finetune_specs, matched, run_continual, sweep,
};
pub use error::ExperimentError;
pub use report::write_report;
pub use runner::{Event, SuitePlan, run_suite};
pub use suite::{
    BASE_LAYERS, BASE_N_KEYS, Base, CAPACITY_DIMS, CAPACITY_EXPOSURES, CAPACITY_FACTS,
    CAPACITY_N_KEYS, RunSpec, SUITE_FACTS, SUITE_TEXT_BYTES, Suite, default_run,
};
pub use suite_dir::{Figure, SuiteDir};
pub use summary::{
    LayerRow, Spread, SummaryRow, capacity_markdown, groups, markdown, read_json, si,
};
