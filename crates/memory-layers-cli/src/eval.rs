//! `eval`: scores a trained run (validation loss, held-out QA, fact recall, memory usage) and
//! prints the report as JSON.

use std::path::PathBuf;

use anyhow::Context;
use memory_layers_train::data::{PrepareConfig, TokenizerKind, prepare_corpus};
use memory_layers_train::{EvalReport, RunData, TrainBackend, evaluate, open_run, prepare_data};

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
        // The given text, tokenised with the run's tokenizer, all of it held out.
        let scratch = Scratch(
            std::env::temp_dir().join(format!("memory-layers-eval-{}", std::process::id())),
        );
        if !self.data.is_empty() {
            let tokenizer_file = (config.data.tokenizer == TokenizerKind::Bpe)
                .then(|| run.dir.join("tokenizer.json"));
            let prepare = PrepareConfig {
                text_field: config.data.text_field.clone(),
                tokenizer: config.data.tokenizer,
                tokenizer_file,
                val_fraction: 1.0,
                ..PrepareConfig::new(self.data.clone(), scratch.0.clone())
            };
            prepare_corpus(&prepare, &[], true)?;
            config.data.paths.clear();
            config.data.tokenizer_file = None;
            config.data.prepared = Some(scratch.0.clone());
            config.data.facts = None;
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

/// A folder removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
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
