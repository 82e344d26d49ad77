//! `memory-layers <command>`: train, evaluate and sample memory-layer language models.

use clap::Parser;
use memory_layers_cli::Command;

/// Huge pages for large tensors in every process (crate memory-layers-huge-pages says why).
#[global_allocator]
static ALLOC: memory_layers_huge_pages::HugePageAlloc = memory_layers_huge_pages::HugePageAlloc;

#[derive(Parser)]
#[command(
    name = "memory-layers",
    about = "Train, evaluate and sample memory-layer language models"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

fn main() -> std::process::ExitCode {
    memory_layers_cli::exit(Cli::parse().command.run())
}
