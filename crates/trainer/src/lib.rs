//! Training and evaluation of the model zoo.
//!
//! - [`data`]: text corpora (files, folders, .jsonl), the embedded Shakespeare plays, the
//!   generated knowledge corpus with QA sets, byte and BPE tokenizers, deterministic batches.
//! - [`TrainConfig`]: everything a run needs (`config.toml`).
//! - [`train`]: AdamW with the value tables as their own group (own learning rate and
//!   clipping), warmup then cosine or linear decay, gradient accumulation, atomic checkpoints
//!   with exact resume, `metrics.jsonl`, `eval.json`, `loss.svg`.
//! - [`eval`]: validation loss, QA exact match / F1 / answer NLL, memory usage.

mod checkpoint;
mod config;
pub mod data;
mod error;
pub mod eval;
mod loss;
pub mod metrics;
mod optim;
mod run;

pub use checkpoint::{TrainState, find_checkpoint, load_state};
pub use config::{DataConfig, Decay, OptimConfig, Precision, RunConfig, TrainConfig};
pub use error::TrainError;
pub use optim::{adamw, clip_global_norm, value_param_ids};
pub use run::{
    OpenRun, RunData, TrainOptions, TrainSummary, evaluate, load_model, open_run, prepare_data,
    train,
};
