//! `eval`: scores a trained run (validation loss, held-out QA, fact recall, memory usage) and
//! prints the report as JSON.

use std::path::PathBuf;

use anyhow::Context;
use memory_layers_train::{EvalOptions, EvalReport, TrainBackend, evaluate_run, open_run};

use crate::backend::{BackendKind, Job, dispatch};

/// Arguments of `memory-layers eval` (and `cargo xtask eval`).
#[derive(clap::Args)]
pub struct EvalArgs {
    /// Run directory (or its checkpoint folder).
    #[arg(long)]
    checkpoint: PathBuf,
    /// QA set (.jsonl) instead of the run's held-out QA.
    #[arg(long)]
    qa: Option<PathBuf>,
    /// Evaluate the loss on this text instead of the run's validation split (repeatable; files
    /// and folders as `train --data` reads them).
    #[arg(long = "data")]
    data: Vec<PathBuf>,
    /// Questions scored (0: all).
    #[arg(long)]
    qa_limit: Option<usize>,
    /// Fact-recall probes (.jsonl with "prompt" and "answer") instead of the run's.
    #[arg(long)]
    recall: Option<PathBuf>,
    /// Recall probes scored (0: all).
    #[arg(long)]
    recall_limit: Option<usize>,
    /// Validation tokens scored, spread over the split (default: the run's
    /// run.eval_tokens, 1M): the loss with its standard error.
    #[arg(long, value_parser = crate::train::parse_count, conflicts_with = "all")]
    eval_tokens: Option<usize>,
    /// Score every validation token (as long as that takes).
    #[arg(long)]
    all: bool,
    /// Also write the report to this JSON file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Backend.
    #[arg(long, value_enum, default_value = "flex")]
    backend: BackendKind,
}

impl Job for &EvalArgs {
    type Output = EvalReport;

    fn run<B: TrainBackend>(self, devices: &[B::Device]) -> anyhow::Result<EvalReport> {
        let device = &devices[0];
        let run = open_run::<B::InnerBackend>(&self.checkpoint, device)?;
        let options = EvalOptions {
            data: self.data.clone(),
            qa: self.qa.clone(),
            qa_limit: self.qa_limit,
            recall: self.recall.clone(),
            recall_limit: self.recall_limit,
            eval_tokens: if self.all { Some(0) } else { self.eval_tokens },
            progress: true,
        };
        Ok(evaluate_run(&run, &options, device)?)
    }
}

/// Evaluates a trained run and prints the report (JSON).
pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    let report = dispatch(args.backend, &args)?;
    let text = serde_json::to_string_pretty(&report)?;
    println!("{text}");
    if let Some(path) = &args.json {
        std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
