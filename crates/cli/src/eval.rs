use std::path::PathBuf;

use anyhow::Context;
use burn::tensor::backend::AutodiffBackend;
use memory_layer::MemoryBackend;
use model_zoo::{Sampler, generate};
use trainer::eval::EvalReport;
use trainer::{RunData, evaluate, open_run, prepare_data};

use crate::backend::{BackendKind, Job, dispatch};

/// Arguments of `cargo xtask eval`.
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
    /// Also write the report to this JSON file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Backend.
    #[arg(long, value_enum, default_value = "flex")]
    backend: BackendKind,
}

impl Job for &EvalArgs {
    type Output = EvalReport;

    fn run<B>(self, device: B::Device) -> anyhow::Result<EvalReport>
    where
        B: AutodiffBackend + MemoryBackend,
        B::InnerBackend: MemoryBackend,
    {
        let run = open_run::<B::InnerBackend>(&self.checkpoint, &device)?;
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
        let data: RunData = prepare_data(&mut config, &run.dir, true)?;
        Ok(evaluate(&run.model, &config, &data, &device)?)
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

/// Arguments of `cargo xtask generate`.
#[derive(clap::Args)]
pub struct GenerateArgs {
    /// Run directory (or its checkpoint folder).
    #[arg(long)]
    checkpoint: PathBuf,
    /// Text to continue.
    #[arg(long)]
    prompt: String,
    /// Tokens to generate at most.
    #[arg(long, default_value_t = 100)]
    max_tokens: usize,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    temperature: f64,
    /// Nucleus (top-p) mass when sampling.
    #[arg(long, default_value_t = 1.0)]
    top_p: f64,
    /// Seed of the sampler.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Backend.
    #[arg(long, value_enum, default_value = "flex")]
    backend: BackendKind,
}

impl Job for &GenerateArgs {
    type Output = String;

    fn run<B>(self, device: B::Device) -> anyhow::Result<String>
    where
        B: AutodiffBackend + MemoryBackend,
        B::InnerBackend: MemoryBackend,
    {
        anyhow::ensure!(
            self.temperature >= 0.0 && self.top_p > 0.0 && self.top_p <= 1.0,
            "--temperature must be ≥ 0 and --top-p in (0, 1]"
        );
        let run = open_run::<B::InnerBackend>(&self.checkpoint, &device)?;
        let prompt = run.tokenizer.encode(&self.prompt);
        anyhow::ensure!(!prompt.is_empty(), "--prompt is empty");
        let sampler = if self.temperature == 0.0 {
            Sampler::Greedy
        } else {
            Sampler::Sample {
                temperature: self.temperature,
                top_p: self.top_p,
                seed: self.seed,
            }
        };
        let room = run.config.model.max_seq_len.saturating_sub(prompt.len());
        let tokens = generate(
            &run.model,
            &prompt,
            self.max_tokens.min(room),
            sampler,
            |_| false,
        )?;
        Ok(run.tokenizer.decode(&tokens))
    }
}

/// Prints the prompt and its continuation.
pub fn generate_text(args: GenerateArgs) -> anyhow::Result<()> {
    let text = dispatch(args.backend, &args)?;
    println!("{}{}", args.prompt, text);
    Ok(())
}
