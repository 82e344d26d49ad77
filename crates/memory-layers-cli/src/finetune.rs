//! `finetune`: teaches a trained run new text into a new run directory, with one of four
//! methods (docs/finetuning.md); `background`: counts a run's background access counts once.

use std::path::PathBuf;

use anyhow::Context;
use memory_layers_train::{
    FinetuneMethod, RunDir, TrainBackend, TrainConfig, TrainOptions, TrainOverrides,
    ValueOptimizer, count_background, train,
};

use crate::backend::{BackendKind, Job, dispatch};
use crate::train::parse_count;

/// Arguments of `memory-layers finetune` (and `cargo xtask finetune`).
#[derive(clap::Args)]
pub struct FinetuneArgs {
    /// The trained run (or a checkpoint folder in one) to start from; it is only read.
    #[arg(long, required_unless_present = "resume")]
    checkpoint: Option<PathBuf>,
    /// What is trained: full (every parameter), lora (low-rank adapters on the attention and
    /// dense FFN projections), memory (the value rows each batch reads), or sparse-memory
    /// (the top-t value rows of each batch by TF-IDF against background reads).
    #[arg(long, default_value = "sparse-memory")]
    method: FinetuneMethod,
    /// The new text (repeatable): files and folders as `train --data` reads them.
    #[arg(long = "data")]
    data: Vec<PathBuf>,
    /// A folder `prepare` wrote with the base run's tokenizer, instead of --data.
    #[arg(long, conflicts_with = "data")]
    data_dir: Option<PathBuf>,
    /// The field of a .jsonl record that holds its text (default "text").
    #[arg(long)]
    text_field: Option<String>,
    /// Fact-recall probes (.jsonl with "prompt" and "answer") for the final evaluation: what
    /// the new text should have taught.
    #[arg(long)]
    recall: Option<PathBuf>,
    /// Held-out QA set (.jsonl with "question" and "answer") for the final evaluation.
    #[arg(long)]
    qa: Option<PathBuf>,
    /// Optimizer steps (default 100).
    #[arg(long)]
    steps: Option<usize>,
    /// Sequences per micro-batch (default: the base run's).
    #[arg(long)]
    batch_size: Option<usize>,
    /// Learning rate of what is trained (constant). Defaults: full a tenth of the base's
    /// peak, lora the base's peak, memory and sparse-memory 1 (SGD on the rows).
    #[arg(long)]
    lr: Option<f64>,
    /// Optimizer of the value rows (memory, sparse-memory): sgd (Lin et al.'s; default) or
    /// adamw (lazy AdamW on the rows a step updates).
    #[arg(long, value_parser = ["sgd", "adamw"])]
    optimizer: Option<String>,
    /// Adapter rank (lora; default 8).
    #[arg(long)]
    lora_rank: Option<usize>,
    /// Adapter scale numerator α: the adapters add (α/r)·A·B (lora; default 16).
    #[arg(long)]
    lora_alpha: Option<f64>,
    /// Value rows updated per step (sparse-memory; default 500).
    #[arg(long)]
    top_t: Option<usize>,
    /// Background access counts (sparse-memory): a background.json, a run directory (its
    /// background.json, else counted on its training data) or a folder `prepare` wrote.
    /// Default: the base run.
    #[arg(long)]
    background: Option<PathBuf>,
    /// Background documents counted when they are counted for this run (default 1000).
    #[arg(long, value_parser = parse_count)]
    background_batches: Option<usize>,
    /// Validation tokens the final evaluation scores (0: all).
    #[arg(long, value_parser = parse_count)]
    eval_tokens: Option<usize>,
    /// Seed of the data order (and of LoRA's adapters).
    #[arg(long)]
    seed: Option<u64>,
    /// Run directory (default: the base run's, suffixed with the method).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Set any key of config.toml, e.g. --set optim.grad_clip=0 (repeatable; applied last).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Continue the finetuning run in --out from its last checkpoint.
    #[arg(long, conflicts_with = "checkpoint")]
    resume: bool,
    /// Replace the run already in --out.
    #[arg(long, conflicts_with = "resume")]
    overwrite: bool,
    /// Backend.
    #[arg(long, value_enum, default_value = "flex")]
    backend: BackendKind,
}

impl FinetuneArgs {
    /// The finetuning run's configuration: the base's, or the run's own when resuming, with
    /// the flags applied.
    fn config(&self) -> anyhow::Result<TrainConfig> {
        let base = match (&self.checkpoint, self.resume, &self.out) {
            (_, true, Some(out)) => RunDir::new(out).load_config()?,
            (_, true, None) => anyhow::bail!("--resume needs --out DIR (the run to continue)"),
            (Some(base), false, _) => TrainConfig::finetune(base, self.method)?,
            (None, false, _) => anyhow::bail!("--checkpoint RUN names the run to finetune"),
        };
        let set = crate::train::parse_set(&self.set)?;
        let overrides = TrainOverrides {
            data: self.data.clone(),
            prepared: self.data_dir.clone(),
            text_field: self.text_field.clone(),
            eval_tokens: self.eval_tokens,
            qa: self.qa.clone(),
            recall: self.recall.clone(),
            steps: self.steps,
            batch_size: self.batch_size,
            lr: self.lr,
            value_optimizer: self.optimizer.as_deref().map(|name| match name {
                "sgd" => ValueOptimizer::Sgd,
                _ => ValueOptimizer::SparseAdamW,
            }),
            seed: self.seed,
            out: self.out.clone(),
            lora_rank: self.lora_rank,
            lora_alpha: self.lora_alpha,
            top_t: self.top_t,
            background: self.background.clone(),
            background_batches: self.background_batches,
            set,
            ..TrainOverrides::default()
        };
        Ok(overrides.apply(base, self.resume)?)
    }
}

/// A finetuning run on one device.
struct Finetune {
    config: TrainConfig,
    options: TrainOptions,
}

impl Job for Finetune {
    type Output = memory_layers_train::TrainSummary;

    fn run<B: TrainBackend>(self, devices: &[B::Device]) -> anyhow::Result<Self::Output> {
        Ok(train::<B>(self.config, &devices[0], self.options)?)
    }
}

/// Finetunes, then prints the summary table.
pub fn run(args: FinetuneArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    config.validate()?;
    let finetune = config.finetune.as_ref().context("not a finetuning run")?;
    println!(
        "finetuning {} ({}) from {} for {} steps on {:?}; run directory {}",
        config.model.kind,
        finetune.method,
        finetune.base.display(),
        config.optim.steps,
        args.backend,
        config.run.out.display()
    );
    let options = TrainOptions {
        resume: args.resume,
        overwrite: args.overwrite,
        progress: true,
        interrupt: crate::signals::interrupt_on_signals()?,
    };
    let summary = dispatch(args.backend, Finetune { config, options })?;
    crate::summary::print_summary(&summary);
    Ok(())
}

/// Arguments of `memory-layers background`.
#[derive(clap::Args)]
pub struct BackgroundArgs {
    /// The run (or a checkpoint folder in one) whose memory reads are counted; its
    /// background.json is written into the run directory.
    #[arg(long)]
    checkpoint: PathBuf,
    /// Documents of its training data counted.
    #[arg(long, default_value = "1000", value_parser = parse_count)]
    documents: usize,
    /// Sequences per document.
    #[arg(long, default_value_t = 1)]
    sequences: usize,
    /// Backend.
    #[arg(long, value_enum, default_value = "flex")]
    backend: BackendKind,
}

impl Job for &BackgroundArgs {
    type Output = ();

    fn run<B: TrainBackend>(self, devices: &[B::Device]) -> anyhow::Result<()> {
        let counts = count_background::<B::InnerBackend>(
            &self.checkpoint,
            (self.documents, self.sequences),
            &devices[0],
            true,
        )?;
        let read = counts.df.iter().filter(|&&d| d > 0).count();
        println!(
            "{} documents: {read} of {} value rows read; written to {}",
            counts.batches,
            counts.values,
            RunDir::containing(&self.checkpoint).background().display()
        );
        Ok(())
    }
}

/// Counts a run's background reads into its `background.json`.
pub fn background(args: BackgroundArgs) -> anyhow::Result<()> {
    dispatch(args.backend, &args)
}
