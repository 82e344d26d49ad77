//! `eval`: scores a trained run (validation loss, held-out QA, fact recall, memory usage) and
//! prints the report as JSON.

use std::path::PathBuf;

use anyhow::Context;
use trainer::{EvalReport, RunData, TrainBackend, evaluate, open_run, prepare_data};

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
    /// Evaluate the loss on this text instead of the run's validation split (repeatable).
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
        let mut config = run.config.clone();
        if !self.data.is_empty() {
            // Evaluate (nearly) all of the given text: one sequence must stay "training".
            config.data.paths = self.data.clone();
            config.data.facts = None;
            config.data.val_fraction = 0.999;
        }
        if let Some(qa) = &self.qa {
            config.data.qa = Some(qa.clone());
        }
        if let Some(limit) = self.qa_limit {
            config.run.qa_limit = limit;
        }
        if let Some(recall) = &self.recall {
            config.data.recall = Some(recall.clone());
        }
        if let Some(limit) = self.recall_limit {
            config.run.recall_limit = limit;
        }
        let data: RunData = prepare_data(&mut config, &run.dir, true, true)?;
        Ok(evaluate(&run.model, &config, &data, device, true)?)
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
