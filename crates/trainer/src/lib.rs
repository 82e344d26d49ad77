//! Training and evaluation of the model zoo.
//!
//! - [`data`]: text corpora (files, folders, .jsonl), the embedded Shakespeare plays, the
//!   generated knowledge corpus with QA sets, byte and BPE tokenizers, deterministic batches.
//! - [`TrainConfig`]: everything a run needs (`config.toml`).
//! - [`train`]: AdamW with the value tables as their own group (own learning rate and
//!   clipping), warmup then cosine or linear decay, gradient accumulation, atomic checkpoints
//!   with exact resume, `metrics.jsonl`, `eval.json`, `loss.svg`.
//! - [`eval`]: validation loss, QA exact match / F1 / answer NLL, memory usage.
//! - [`Peer`] and [`Learner::step_parallel`]: data-parallel steps with the value pool sharded
//!   over the peers (parallel memory).

mod checkpoint;
mod config;
pub mod data;
mod error;
pub mod eval;
mod learner;
mod loss;
pub mod metrics;
mod optim;
mod parallel;
mod run;

pub use checkpoint::{TrainState, find_checkpoint, load_state};
pub use config::{
    DataConfig, Decay, OptimConfig, Precision, RunConfig, TrainConfig, ValueOptimizer,
};
pub use error::TrainError;
pub use learner::{Learner, StepReport, load_model};
pub use optim::{
    adamw, clip_factor, clip_global_norm, clip_row_grads, row_rule, row_squared_norms, scale_grads,
    scale_rows, squared_norm, value_param_ids, value_squared_norms, value_tables, value_tables_mut,
};
pub use parallel::{Layout, Peer};
pub use run::{
    OpenRun, RunData, TrainOptions, TrainSummary, evaluate, open_run, prepare_data, train,
    train_parallel,
};
