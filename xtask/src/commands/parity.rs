//! `cargo xtask parity`: checks the memory layers against fixtures written by an independent
//! PyTorch implementation.

use std::path::PathBuf;

use anyhow::{Context, bail};
use memory_layers_cli::{BackendKind, Job, dispatch};
use memory_layers_parity::{F32_TOLERANCE, ParityReport, check_fixture};
use memory_layers_train::TrainBackend;

/// Arguments of `cargo xtask parity`.
#[derive(clap::Args)]
pub struct ParityArgs {
    /// Fixture files (safetensors: the layer's config, weights, input, output and gradients;
    /// docs/parity-fixtures.md).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Largest accepted normwise relative error.
    #[arg(long, default_value_t = F32_TOLERANCE)]
    tolerance: f64,
    /// Backend to run the layers on.
    #[arg(long, value_enum, default_value = "flex")]
    backend: BackendKind,
}

/// Checks every fixture on one backend.
struct CheckAll<'a>(&'a ParityArgs);

impl Job for CheckAll<'_> {
    type Output = Vec<ParityReport>;

    fn run<B: TrainBackend>(self, devices: &[B::Device]) -> anyhow::Result<Self::Output> {
        let (args, device) = (self.0, &devices[0]);
        args.files
            .iter()
            .map(|path| {
                check_fixture::<B>(path, device, args.tolerance)
                    .with_context(|| format!("checking {}", path.display()))
            })
            .collect()
    }
}

/// Loads each fixture into the layer, runs forward and backward (on the CPU unless
/// `--backend` says otherwise), prints the error of every tensor, and fails if any is past the
/// tolerance.
pub fn run(args: ParityArgs) -> anyhow::Result<()> {
    let reports = dispatch(args.backend, CheckAll(&args))?;
    let mut failed = Vec::new();
    for report in &reports {
        let path = &report.path;
        println!("{}  {}", path.display(), describe(&report.config));
        for check in &report.checks {
            let verdict = if check.passed { "ok" } else { "FAIL" };
            println!(
                "  {:<36} max abs {:>10.3e}  rel {:>10.3e}  {verdict}",
                check.name, check.max_abs, check.relative
            );
        }
        match &report.retrieval {
            Ok(()) => println!("  {:<36} equal up to ties  ok", "indices"),
            Err(mismatch) => println!("  {:<36} {mismatch}  FAIL", "indices"),
        }
        if !report.passed() {
            failed.push(path.display().to_string());
        }
    }
    let total = args.files.len();
    println!("{} passed, {} failed", total - failed.len(), failed.len());
    if !failed.is_empty() {
        bail!(
            "parity failed (tolerance {:e}) for: {}",
            args.tolerance,
            failed.join(", ")
        );
    }
    Ok(())
}

fn describe(config: &memory_layers_nn::import::ReferenceConfig) -> String {
    format!(
        "dim {} heads {} knn {} n_keys {} k_dim {} v_dim {}{}{}{}",
        config.dim,
        config.heads,
        config.knn,
        config.n_keys,
        config.k_dim,
        config.v_dim,
        if config.swilu { " swilu" } else { "" },
        if config.gated { " gated" } else { "" },
        if config.peer { " peer" } else { "" },
    )
}
