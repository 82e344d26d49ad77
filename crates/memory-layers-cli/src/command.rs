//! The commands, as a clap subcommand enum that `cargo xtask` flattens into its own.

use clap::Subcommand;

use crate::{eval, experiment, export, finetune, generate, prepare, train};

/// A `memory-layers` command. Every flag takes negative numbers as values (`--temperature
/// -1` is a value, refused with a reason, not an unknown flag).
#[derive(Subcommand)]
pub enum Command {
    /// Tokenize a corpus once into token shards for `train --data-dir` (parallel, streamed,
    /// whole documents held out for validation).
    #[command(allow_negative_numbers = true)]
    Prepare(prepare::PrepareArgs),
    /// Train a model (defaults: Memory+ on the experiments' base, embedded data, CPU).
    #[command(allow_negative_numbers = true)]
    Train(Box<train::TrainArgs>),
    /// Teach a trained run new text into a new run directory: full, lora, memory or
    /// sparse-memory finetuning (docs/finetuning.md).
    #[command(allow_negative_numbers = true)]
    Finetune(Box<finetune::FinetuneArgs>),
    /// Count a run's background memory reads (background.json) for sparse-memory finetuning.
    #[command(allow_negative_numbers = true)]
    Background(finetune::BackgroundArgs),
    /// Evaluate a trained run: validation loss, QA, memory usage.
    #[command(allow_negative_numbers = true)]
    Eval(eval::EvalArgs),
    /// Continue a prompt with a trained run (greedy, temperature, top-p; KV cache).
    #[command(allow_negative_numbers = true)]
    Generate(generate::GenerateArgs),
    /// Train a suite of runs (models, memory-size, ablations) and write its table and plots.
    #[command(allow_negative_numbers = true)]
    Experiment(experiment::ExperimentArgs),
    /// Write a trained run's weights under Hugging Face Llama names (model.safetensors,
    /// config.json) with reference logits for tools/export/check_logits.py.
    #[command(allow_negative_numbers = true)]
    Export(export::ExportArgs),
}

impl Command {
    /// Runs the command.
    pub fn run(self) -> anyhow::Result<()> {
        match self {
            Command::Prepare(args) => prepare::run(args),
            Command::Train(args) => train::run(*args),
            Command::Finetune(args) => finetune::run(*args),
            Command::Background(args) => finetune::background(args),
            Command::Eval(args) => eval::run(args),
            Command::Generate(args) => generate::run(args),
            Command::Experiment(args) => experiment::run(args),
            Command::Export(args) => export::run(args),
        }
    }
}
