//! Training and evaluation of the model zoo.
//!
//! - [`data`]: text corpora (files, folders, .jsonl), the embedded Shakespeare plays, the
//!   generated knowledge corpus with QA sets, byte and BPE tokenizers, deterministic batches;
//!   [`prepare_data`] builds a run's from its configuration.
//! - [`TrainConfig`]: everything a run needs (`config.toml`).
//! - [`train`]: AdamW with the value tables as their own group (own learning rate and
//!   clipping), warmup then cosine or linear decay, gradient accumulation, atomic checkpoints
//!   with exact resume, `metrics.jsonl`, `eval.json`, `loss.svg`.
//! - [`train_parallel`]: the same on the ranks of a [`Layout`], data parallel with the value
//!   pool sharded over them (parallel memory).
//! - [`train_peer`]: one rank of such a run per process (MPI: rank 0 sets the run up and
//!   writes, the others read what it wrote).
//! - [`Stepper`]: the model and its optimizer groups; one step alone ([`Stepper::step`]) or as
//!   one [`Rank`] of a parallel run ([`Stepper::step_parallel`]).
//! - [`evaluate`] → [`EvalReport`]: validation loss, QA exact match / F1 / answer NLL, fact
//!   recall, memory usage; [`open_run`] loads a trained run for evaluation or generation.
//! - [`plot`]: SVG charts (loss curves, experiment figures).
//! - [`export`]: a run's weights under Hugging Face Llama names (`model.safetensors`,
//!   `config.json`), and such a file loaded into a fresh model (`run.init_from`).

mod atomic;
mod backend;
mod checkpoint;
mod config;
mod config_keys;
pub mod data;
mod error;
mod eval;
pub mod export;
mod layout;
mod loss;
mod metrics;
mod optim;
mod phase;
pub mod plot;
mod prepare;
mod probe;
mod rank;
mod run;
mod stepper;
mod strategy;
mod train_loop;

pub use backend::TrainBackend;
pub use checkpoint::find_checkpoint;
pub use config::{
    DataConfig, Decay, OptimConfig, Precision, RunConfig, TrainConfig, ValueOptimizer,
};
pub use error::TrainError;
pub use eval::{EvalReport, LayerUsage, OpenRun, evaluate, open_run};
pub use layout::Layout;
pub use metrics::{MetricsLine, read_metrics};
pub use optim::value_param_ids;
pub use prepare::{RunData, prepare_data};
pub use rank::Rank;
pub use run::{Interrupt, TrainOptions};
pub use stepper::{StepReport, Stepper};
pub use strategy::{train, train_parallel, train_peer};
pub use train_loop::TrainSummary;
