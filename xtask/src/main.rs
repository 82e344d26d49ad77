//! `cargo xtask <command>`: the project's commands.
//!
//! - `parity FILE...`: checks the memory layers against reference fixtures
//!   (docs/parity-fixtures.md); `--backend flex|wgpu|cuda`.

mod backend;
mod parity;

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
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Parity(args) => parity::run(args),
    }
}
