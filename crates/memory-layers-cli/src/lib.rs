//! The `memory-layers` command: train a memory-layer language model, evaluate a trained run,
//! continue a prompt with it; on the CPU (Flex), wgpu or CUDA.
//!
//! - `prepare --data PATH --out DIR`: tokenises a corpus into token shards.
//! - `train [...]`: trains a model and evaluates it (docs/training.md).
//! - `finetune --checkpoint RUN --data NEW --method M`: teaches a trained run new text.
//! - `background --checkpoint RUN`: counts its memory reads for sparse-memory finetuning.
//! - `eval --checkpoint DIR`: validation loss, held-out QA, memory usage (JSON).
//! - `generate --checkpoint DIR --prompt TEXT`: greedy or top-p sampling with a KV cache.
//! - `experiment SUITE`: a suite of training runs, its table and plots (docs/results.md).
//! - `export --checkpoint DIR --out DIR`: the weights under Hugging Face Llama names.
//!
//! A library as well, so that `cargo xtask` offers the same commands and runs its own on the
//! same backend dispatch ([`dispatch`]).

mod backend;
mod command;
mod eval;
mod experiment;
mod export;
mod finetune;
mod generate;
mod prepare;
mod signals;
mod summary;
mod train;

pub use backend::{BackendKind, Job, dispatch};
pub use command::Command;
pub use train::parse_count;

/// The exit of a command: 0, or 1 after the error and its causes as one sentence on stderr
/// (`Error: run.init_from: model.safetensors: missing tensor lm_head.weight`).
pub fn exit(result: anyhow::Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
