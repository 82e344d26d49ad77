//! `generate`: continues a prompt with a trained run (greedy, or sampling with temperature,
//! top-k and top-p; KV cache), printing the text as it comes.

use std::io::Write;
use std::path::PathBuf;

use memory_layers_train::{TrainBackend, open_run};
use memory_layers_zoo::{Sampler, generate};

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
    /// Tokens to generate at most (generation also ends at the model's context length).
    #[arg(long, default_value_t = 100)]
    max_tokens: usize,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    temperature: f64,
    /// Sample among the k most likely tokens only (0: all).
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    /// Nucleus (top-p) mass when sampling.
    #[arg(long, default_value_t = 1.0)]
    top_p: f64,
    /// Continuations to sample, with seeds --seed, --seed + 1, ….
    #[arg(long, default_value_t = 1)]
    num_samples: usize,
    /// Seed of the sampler.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Keep only the end of a prompt longer than the context (by default such a prompt is
    /// an error).
    #[arg(long)]
    truncate_prompt: bool,
    /// Backend.
    #[arg(long, value_enum, default_value = "flex")]
    backend: BackendKind,
}

impl Job for &GenerateArgs {
    type Output = ();

    fn run<B: TrainBackend>(self, devices: &[B::Device]) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.temperature >= 0.0 && self.top_p > 0.0 && self.top_p <= 1.0,
            "--temperature must be ≥ 0 and --top-p in (0, 1]"
        );
        anyhow::ensure!(self.num_samples >= 1, "--num-samples must be at least 1");
        let run = open_run::<B::InnerBackend>(&self.checkpoint, &devices[0])?;
        let mut prompt = run.tokenizer.encode(&self.prompt);
        anyhow::ensure!(!prompt.is_empty(), "--prompt is empty");
        let context = run.config.model.max_seq_len;
        if prompt.len() >= context {
            anyhow::ensure!(
                self.truncate_prompt,
                "the prompt is {} tokens, the model's context {context}: shorten it, or pass \
                 --truncate-prompt to keep its last {} tokens",
                prompt.len(),
                context - 1
            );
            prompt.drain(..prompt.len() + 1 - context);
            eprintln!("(prompt cut to its last {} tokens)", prompt.len());
        }
        let room = context - prompt.len();
        if self.max_tokens > room {
            let tokens = if room == 1 {
                "token fits"
            } else {
                "tokens fit"
            };
            eprintln!("(at most {room} {tokens} in the context after the prompt)");
        }
        for sample in 0..self.num_samples as u64 {
            let sampler = if self.temperature == 0.0 {
                Sampler::Greedy
            } else {
                Sampler::Sample {
                    temperature: self.temperature,
                    top_k: self.top_k,
                    top_p: self.top_p,
                    seed: self.seed + sample,
                }
            };
            if self.num_samples > 1 {
                println!("--- sample {} (seed {})", sample + 1, self.seed + sample);
            }
            print!("{}", run.tokenizer.decode(&prompt));
            // Print what each new token adds to the decoded text (a token may end mid-character).
            let mut shown = String::new();
            generate(
                &run.model,
                &prompt,
                self.max_tokens.min(room),
                sampler,
                |ids| {
                    let text = run.tokenizer.decode(ids);
                    if let Some(new) = text.strip_prefix(shown.as_str()) {
                        print!("{new}");
                        let _ = std::io::stdout().flush();
                        shown = text;
                    }
                    false
                },
            )?;
            println!();
            if self.temperature == 0.0 && self.num_samples > 1 {
                eprintln!("(greedy decoding: every sample is the same)");
                break;
            }
        }
        Ok(())
    }
}

/// Prints the prompt and its continuations as they are generated.
pub fn run(args: GenerateArgs) -> anyhow::Result<()> {
    dispatch(args.backend, &args)
}
