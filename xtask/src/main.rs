//! `cargo xtask <command>`: the developer commands, and the `memory-layers` commands.
//!
//! - `parity FILE...`: checks the memory layers against reference fixtures
//!   (docs/parity-fixtures.md); `--backend flex|wgpu|cuda`.
//! - `train [...]`, `eval --checkpoint DIR`, `generate --checkpoint DIR --prompt TEXT`,
//!   `experiment SUITE`: the `memory-layers` commands (crate memory-layers-cli), run in this
//!   process.
//! - `bench [--suite NAME] [--json FILE] [--report]` (docs/performance.md).
//! - `zoo [--json FILE]`: parameters and FLOPs of every preset and model.
//! - `results`: the suites' tables into docs/results.md and README.md.

mod bench_result;
mod commands;

use clap::{Parser, Subcommand};
use commands::{bench, parity, results, zoo};

/// Huge pages for large tensors in every process (crate memory-layers-huge-pages says why).
#[global_allocator]
static ALLOC: memory_layers_huge_pages::HugePageAlloc = memory_layers_huge_pages::HugePageAlloc;

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
    #[command(flatten)]
    Product(memory_layers_cli::Command),
    /// Time the benchmark cases (JSON), or write docs/performance.md with --report.
    Bench(bench::BenchArgs),
    /// Print total and active parameters and FLOPs per token of every preset and model.
    Zoo(zoo::ZooArgs),
    /// Copy each suite's table (docs/results/SUITE/summary.md) into docs/results.md and README.md.
    Results(results::ResultsArgs),
}

fn main() -> std::process::ExitCode {
    memory_layers_cli::exit(match Cli::parse().command {
        Command::Parity(args) => parity::run(args),
        Command::Product(command) => command.run(),
        Command::Bench(args) => bench::run(args),
        Command::Zoo(args) => zoo::run(args),
        Command::Results(args) => results::run(args),
    })
}
