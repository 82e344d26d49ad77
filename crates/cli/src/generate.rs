//! `generate`: continues a prompt with a trained run (greedy or top-p sampling, KV cache).

use std::path::PathBuf;

use model_zoo::{Sampler, generate};
use trainer::{TrainBackend, open_run};

use crate::backend::{BackendKind, Job, dispatch};

/// Arguments of `memory-layers generate` (and `cargo xtask generate`).
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

    fn run<B: TrainBackend>(self, devices: &[B::Device]) -> anyhow::Result<String> {
        anyhow::ensure!(
            self.temperature >= 0.0 && self.top_p > 0.0 && self.top_p <= 1.0,
            "--temperature must be ≥ 0 and --top-p in (0, 1]"
        );
        let run = open_run::<B::InnerBackend>(&self.checkpoint, &devices[0])?;
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
pub fn run(args: GenerateArgs) -> anyhow::Result<()> {
    let text = dispatch(args.backend, &args)?;
    println!("{}{}", args.prompt, text);
    Ok(())
}
