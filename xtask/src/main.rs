//! `cargo xtask <command>`: the project's commands.
//!
//! - `parity FILE...`: checks the memory layers against reference fixtures
//!   (docs/parity-fixtures.md); `--backend flex|wgpu|cuda`.
//! - `train [...]`: trains a model and evaluates it (docs/training.md).
//! - `eval --checkpoint DIR`, `generate --checkpoint DIR --prompt TEXT`.
//! - `bench [--suite NAME] [--json FILE] [--report]` (docs/performance.md).
//! - `zoo [--json FILE]`: parameters and FLOPs of every preset and model.

mod backend;
mod bench;
mod eval;
mod parity;
mod report;
mod train;
mod zoo;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Memory-layer project commands")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check the layers against reference fixtures (safetensors files).
    Parity(parity::ParityArgs),
    /// Train a model (defaults: Memory+, small, embedded data, CPU).
    Train(Box<train::TrainArgs>),
    /// Evaluate a trained run: validation loss, QA, memory usage.
    Eval(eval::EvalArgs),
    /// Continue a prompt with a trained run (greedy, temperature, top-p; KV cache).
    Generate(eval::GenerateArgs),
    /// Time the benchmark cases (JSON), or write docs/performance.md with --report.
    Bench(bench::BenchArgs),
    /// Print total and active parameters and FLOPs per token of every preset and model.
    Zoo(zoo::ZooArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Parity(args) => parity::run(args),
        Command::Zoo(args) => zoo::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Train(args) => train::run(*args),
        Command::Eval(args) => eval::run(args),
        Command::Generate(args) => eval::generate_text(args),
    }
}
