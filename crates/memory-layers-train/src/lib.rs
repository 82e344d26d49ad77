//! Training and evaluation of the model zoo.
//!
//! - [`TrainConfig`]: everything a run needs (`config.toml`); [`TrainOverrides`]: changes from
//!   a command line, applied by the configuration's own rules.
//! - [`prepare_data`] builds a run's data (its tokenizer, batches, QA and recall probes) from
//!   the configuration with [`memory_layers_data`].
//! - [`train`]: AdamW with the value tables as their own group (own learning rate and
//!   clipping), warmup then cosine or linear decay, gradient accumulation, atomic checkpoints
//!   with exact resume, `metrics.jsonl`, `eval.json`, `loss.svg`.
//! - [`train_parallel`]: the same on the ranks of a [`Layout`], data parallel with the value
//!   pool sharded over them (parallel memory).
//! - [`train_peer`]: one rank of such a run per process (MPI: rank 0 sets the run up and
//!   writes, the others read what it wrote).
//! - [`TrainConfig::finetune`]: a run that finetunes a trained one on new data ([`FinetuneMethod`]:
//!   every parameter, LoRA, the memory values, or sparse memory finetuning against
//!   [`Background`] access counts); trained, resumed and evaluated as any run.
//! - [`Stepper`]: the model and its optimizer groups; one step alone ([`Stepper::step`]) or as
//!   one [`Rank`] of a parallel run ([`Stepper::step_parallel`]).
//! - [`evaluate`] → [`EvalReport`]: validation loss, QA exact match / F1 / answer NLL, fact
//!   recall, memory usage; [`open_run`] loads a trained run for evaluation or generation.
//! - [`RunDir`]: the run directory, every file in it named once.
//! - [`export_run`]: a run's weights under Hugging Face Llama names
//!   ([`memory_layers_zoo::hf`]) with its tokenizer and reference logits.

mod backend;
mod checkpoint;
mod config;
mod config_keys;
mod error;
mod estimate;
mod eval;
mod export;
mod finetune;
mod knowledge;
mod layout;
mod loss;
mod metrics;
mod open;
mod optim;
mod overrides;
mod pool;
mod prepare;
mod probe;
mod rank;
mod run;
mod run_dir;
mod stepper;
mod strategy;
mod train_loop;
mod usage;

pub use backend::TrainBackend;
pub use checkpoint::TrainState;
pub use config::{
    DataConfig, Decay, OptimConfig, Precision, RunConfig, TrainConfig, ValueOptimizer,
};
pub use error::TrainError;
pub use estimate::{AttentionKernel, FitAdvice, MemoryEstimate, available_ram, gib};
pub use eval::{EvalOptions, EvalReport, evaluate, evaluate_run};
pub use export::{CHECK_PROMPT, CHECK_TOKENS, ExportSummary, export_run};
pub use finetune::{
    Background, DEFAULT_TOP_T, FinetuneConfig, FinetuneMethod, base_checkpoint, count_background,
};
pub use knowledge::{Knowledge, answer_nlls, knowledge};
pub use layout::Layout;
pub use metrics::{MetricsLine, read_metrics};
pub use open::{OpenRun, open_run};
pub use optim::value_param_ids;
pub use overrides::TrainOverrides;
pub use prepare::{RunData, prepare_data};
pub use rank::Rank;
pub use run::{Interrupt, TrainOptions};
pub use run_dir::{CheckpointDir, Record, RunDir};
pub use stepper::{StepReport, Stepper};
pub use strategy::{train, train_parallel, train_peer};
pub use train_loop::TrainSummary;
pub use usage::LayerUsage;
