//! `train`: trains a model from the command line's flags (over a config.toml when given) and
//! evaluates it.

use std::path::PathBuf;

use anyhow::Context;
use clap::ValueEnum;
use memory_layers_experiments::{Spread, SummaryRow, default_run, groups, si};
use memory_layers_zoo::{ModelKind, Size, preset};
use memory_layers_train::data::TokenizerKind;
use memory_layers_train::{
    Layout, Precision, TrainBackend, TrainConfig, TrainOptions, TrainSummary, ValueOptimizer,
    train, train_parallel,
};

use crate::backend::{BackendKind, Job, dispatch};

/// Arguments of `memory-layers train` (and `cargo xtask train`): the flags override the preset
/// that `--model` and `--size` name, or the `--config` file.
#[derive(clap::Args)]
pub struct TrainArgs {
    /// Model: dense, moe, peer, memory, memory-plus.
    #[arg(long)]
    model: Option<ModelKind>,
    /// Size: tiny, small, 134m, 373m, 720m, 1.3b, 8b. Default: the experiments' base (tiny
    /// dims, 6 blocks, 128² values, facts-rich data), as in `experiment models`.
    #[arg(long)]
    size: Option<Size>,
    /// Training text (repeatable): .txt files, .jsonl files (one document per record), either
    /// compressed (.gz, .zst), parquet files (one document per row), or folders of them;
    /// prepared into token shards in OUT/data/ once, whole documents held out for validation. Default: the embedded Shakespeare plays
    /// and the generated knowledge corpus.
    #[arg(long = "data")]
    data: Vec<PathBuf>,
    /// A folder `prepare` wrote (token shards, tokenizer, manifest), instead of --data.
    #[arg(long, conflicts_with_all = ["data", "tokenizer", "text_field"])]
    data_dir: Option<PathBuf>,
    /// The field of a .jsonl record that holds its text (default "text").
    #[arg(long)]
    text_field: Option<String>,
    /// Held-out QA set (.jsonl with "question" and "answer") for the final evaluation.
    #[arg(long)]
    qa: Option<PathBuf>,
    /// Fact-recall probes (.jsonl with "prompt" and "answer") for the final evaluation.
    #[arg(long)]
    recall: Option<PathBuf>,
    /// Optimizer steps.
    #[arg(long)]
    steps: Option<usize>,
    /// Sequences per micro-batch.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Tokens per sequence.
    #[arg(long)]
    seq_len: Option<usize>,
    /// Micro-batches per step.
    #[arg(long)]
    grad_accum: Option<usize>,
    /// Sub-keys per half of product-key layers (n_keys² values).
    #[arg(long)]
    n_keys: Option<usize>,
    /// Peak learning rate.
    #[arg(long)]
    lr: Option<f64>,
    /// Peak learning rate of the value tables.
    #[arg(long)]
    value_lr: Option<f64>,
    /// Optimizer of the value tables: sparse-adamw (lazy AdamW on the rows a step touched;
    /// default), rowwise-adagrad, or dense-adamw (the paper's exact recipe; cost grows with
    /// the table).
    #[arg(long, value_enum)]
    value_optimizer: Option<ValueOptimizer>,
    /// Tokenizer: byte, bpe (trained on the run's text), or a Hugging Face tokenizer.json
    /// (GPT-2, Llama, …), whose vocabulary size the model takes. Documents are separated by
    /// its end-of-text token when it has one, else by a blank line.
    #[arg(long, value_parser = parse_tokenizer)]
    tokenizer: Option<TokenizerChoice>,
    /// Floating-point type: f32 or bf16 (where the backend computes in bf16).
    #[arg(long, value_enum)]
    precision: Option<Precision>,
    /// Leave out the generated knowledge corpus.
    #[arg(long)]
    no_facts: bool,
    /// Data-parallel peers in the whole run (threads on the CPU, one per GPU with CUDA); the
    /// global batch is split over them. Default 1; with --mpi, the number of processes.
    #[arg(long)]
    devices: Option<usize>,
    /// Peers sharing one copy of the value pool, each holding 1/P of its columns (P divides
    /// --devices and the value dimension); --devices / P replicas of it average gradients.
    #[arg(long, default_value_t = 1)]
    memory_parallel: usize,
    /// One peer per process of an MPI job (`mpirun -np N memory-layers train --mpi ...`, or
    /// `srun`): rank and world size from the launcher, rank 0 writing the run directory. Needs
    /// a build with the `mpi` feature (docs/parallel-memory.md).
    #[arg(long)]
    mpi: bool,
    /// With --mpi: run the memory groups on world all-reduces of slot buffers, as on
    /// burn-collective, instead of their own communicators (to measure what those save).
    #[arg(long, requires = "mpi")]
    mpi_world_groups: bool,
    /// Backend.
    #[arg(long, value_enum, default_value = "flex")]
    backend: BackendKind,
    /// Seed of initialisation and data order.
    #[arg(long)]
    seed: Option<u64>,
    /// Start from this config.toml (as a run writes it); flags override it.
    #[arg(long, conflicts_with = "resume")]
    config: Option<PathBuf>,
    /// Run directory.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Steps between checkpoints.
    #[arg(long)]
    checkpoint_every: Option<usize>,
    /// Checkpoints to keep: the latest in checkpoint/, earlier ones in checkpoint-STEP/.
    #[arg(long)]
    keep_checkpoints: Option<usize>,
    /// Set any key of config.toml, e.g. --set optim.warmup_steps=100 (repeatable; applied
    /// after every other flag).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Continue the run in --out from its last checkpoint, with its config.toml; --steps
    /// extends it (the schedule stretches over the new total), flags that would change the
    /// model, data or optimizer are refused.
    #[arg(long)]
    resume: bool,
    /// Replace the run already in --out (without it, training into an existing run is an
    /// error).
    #[arg(long, conflicts_with = "resume")]
    overwrite: bool,
    /// Initialise the new model from a safetensors file with Hugging Face Llama names (what
    /// `export` writes, or a Llama checkpoint of the same shapes): embeddings, attention,
    /// norms, the FFNs of dense blocks and lm_head must be there; memory layers load where the
    /// file has them, else stay fresh (docs/training.md, "Export and retrofit").
    #[arg(long, value_name = "FILE.safetensors", conflicts_with = "resume")]
    init_from: Option<PathBuf>,
}

/// `--tokenizer`: a kind, or a tokenizer file.
#[derive(Debug, Clone)]
pub(crate) enum TokenizerChoice {
    Kind(TokenizerKind),
    File(PathBuf),
}

impl TokenizerChoice {
    /// The choice as a kind and an optional tokenizer file.
    pub(crate) fn resolve(&self) -> (TokenizerKind, Option<PathBuf>) {
        match self {
            Self::Kind(kind) => (*kind, None),
            Self::File(path) => (TokenizerKind::Bpe, Some(path.clone())),
        }
    }
}

/// `byte` or `bpe`, else a path to a `.json` file.
pub(crate) fn parse_tokenizer(value: &str) -> Result<TokenizerChoice, String> {
    if let Ok(kind) = TokenizerKind::from_str(value, true) {
        return Ok(TokenizerChoice::Kind(kind));
    }
    if value.ends_with(".json") {
        return Ok(TokenizerChoice::File(PathBuf::from(value)));
    }
    Err(format!(
        "expected byte, bpe or a tokenizer .json file, got {value:?}"
    ))
}

impl TrainArgs {
    /// The configuration the flags describe: over the run's own config.toml when resuming,
    /// else over `--config` or the preset; `--set` last.
    fn config(&self) -> anyhow::Result<TrainConfig> {
        let saved = match (self.resume, &self.out) {
            (true, Some(out)) => Some(TrainConfig::load(&out.join("config.toml"))?),
            (true, None) => anyhow::bail!("--resume needs --out DIR (the run to continue)"),
            (false, _) => None,
        };
        let mut config = match (&saved, &self.config) {
            (Some(saved), _) => saved.clone(),
            (None, Some(path)) => TrainConfig::load(path)?,
            (None, None) => {
                let kind = self.model.unwrap_or(ModelKind::MemoryPlus);
                match self.size {
                    Some(size) => TrainConfig::new(kind, size),
                    None => default_run(kind),
                }
            }
        };
        if (saved.is_some() || self.config.is_some())
            && (self.model.is_some() || self.size.is_some())
        {
            let kind = self.model.unwrap_or(config.model.kind);
            let size = self.size.context(
                "--model over a config.toml needs --size too: the new model's dims come from a \
                 preset, not from the file",
            )?;
            config.model = preset(kind, size, None);
        }
        if let Some(n_keys) = self.n_keys {
            let pk = &mut config.model.product_keys;
            pk.n_keys = n_keys;
            pk.knn = pk.knn.min(n_keys);
        }
        if !self.data.is_empty() {
            config.data.paths = self.data.clone();
        }
        set(&mut config.data.qa, self.qa.clone().map(Some));
        set(&mut config.data.recall, self.recall.clone().map(Some));
        if let Some(dir) = &self.data_dir {
            config.data.prepared = Some(dir.clone());
        }
        if let Some(choice) = &self.tokenizer {
            (config.data.tokenizer, config.data.tokenizer_file) = choice.resolve();
        }
        set(&mut config.data.text_field, self.text_field.clone());
        if self.no_facts {
            config.data.facts = None;
        }
        // A new run keeps warmup's share of the steps (below); a resumed one its warmup.
        let base = (config.optim.steps, config.optim.warmup_steps);
        set(&mut config.optim.steps, self.steps);
        let o = &mut config.optim;
        set(&mut o.batch_size, self.batch_size);
        set(&mut o.seq_len, self.seq_len);
        set(&mut o.grad_accum, self.grad_accum);
        if let Some(lr) = self.lr {
            // Values keep their ratio to the rest (10× in the presets) unless given; the
            // ratio rounded so that 0.03 / 0.003 is 10, not 9.999999999999998.
            let ratio = (o.value_lr / o.lr * 1e9).round() / 1e9;
            o.value_lr = lr * ratio;
            o.lr = lr;
        }
        set(&mut o.value_lr, self.value_lr);
        set(&mut o.value_optimizer, self.value_optimizer);
        set(&mut config.run.seed, self.seed);
        set(&mut config.run.out, self.out.clone());
        set(&mut config.run.checkpoint_every, self.checkpoint_every);
        set(&mut config.run.keep_checkpoints, self.keep_checkpoints);
        set(&mut config.run.precision, self.precision);
        if let Some(path) = &self.init_from {
            anyhow::ensure!(
                path.is_file(),
                "--init-from {}: no such file",
                path.display()
            );
            config.run.init_from = Some(path.clone());
        }
        let mut keys = Vec::new();
        for assignment in &self.set {
            let (key, value) = assignment
                .split_once('=')
                .with_context(|| format!("--set {assignment}: write KEY=VALUE"))?;
            config.set(key.trim(), value.trim())?;
            keys.push(key.trim());
        }
        // --steps or --set optim.steps: warmup keeps its share of the base's steps, unless
        // --set gives it.
        if saved.is_none() && config.optim.steps != base.0 && !keys.contains(&"optim.warmup_steps")
        {
            let steps = config.optim.steps;
            (config.optim.steps, config.optim.warmup_steps) = base;
            config.set_steps(steps);
        }
        Ok(config)
    }
}

/// The parallel layout the flags describe (`None`: one device; an MPI job's world size is
/// known only once MPI starts, so `--mpi` without `--devices` leaves it 0 until then).
fn layout(args: &TrainArgs) -> Option<Layout> {
    let devices = args.devices.unwrap_or(usize::from(!args.mpi));
    (args.mpi || devices != 1 || args.memory_parallel != 1).then_some(Layout {
        devices,
        memory_parallel: args.memory_parallel,
    })
}

fn set<T>(field: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *field = value;
    }
}

/// A training run: on one device, on the peers of a layout ([`train_parallel`]), or as this
/// process's peer of an MPI job ([`memory_layers_train::train_peer`]).
struct Train {
    config: TrainConfig,
    options: TrainOptions,
    layout: Option<Layout>,
    mpi: bool,
    mpi_world_groups: bool,
}

impl Job for Train {
    /// The summary; `None` on the ranks of an MPI job but rank 0.
    type Output = Option<TrainSummary>;

    fn devices(&self) -> usize {
        match (&self.layout, self.mpi) {
            (Some(layout), false) => layout.devices,
            // Devices up to this process's own (the last), as GPU `local rank` of its node.
            (_, true) => mpi_device() + 1,
            (None, false) => 1,
        }
    }

    fn run<B: TrainBackend>(self, devices: &[B::Device]) -> anyhow::Result<Option<TrainSummary>> {
        Ok(match (&self.layout, self.mpi) {
            (Some(layout), true) => train_mpi::<B>(
                self.config,
                devices.last().expect("one device at least"),
                self.options,
                layout,
                self.mpi_world_groups,
            )?,
            (Some(layout), false) => Some(train_parallel::<B>(
                self.config,
                devices,
                self.options,
                layout,
            )?),
            (None, _) => Some(train::<B>(self.config, &devices[0], self.options)?),
        })
    }
}

/// [`memory_layers_train::train_peer`] on MPI: the world size fills in a layout without `--devices`.
#[cfg(feature = "mpi")]
fn train_mpi<B: TrainBackend>(
    config: TrainConfig,
    device: &B::Device,
    options: TrainOptions,
    layout: &Layout,
    world_groups: bool,
) -> anyhow::Result<Option<TrainSummary>> {
    use std::sync::Arc;

    use memory_layers_parallel::{Collective, MpiCollective, WorldGroups};
    let mpi = Arc::new(MpiCollective::<B::InnerBackend>::init()?);
    let layout = Layout {
        devices: match layout.devices {
            0 => mpi.world(),
            n => n,
        },
        ..layout.clone()
    };
    let mut collective: Arc<dyn Collective<B::InnerBackend>> = mpi.clone();
    if world_groups {
        collective = Arc::new(WorldGroups(collective));
    }
    match memory_layers_train::train_peer::<B>(config, device, options, &layout, collective) {
        Ok(summary) => Ok(summary),
        // The other ranks may be waiting in a collective for this one: end the whole job.
        Err(e) => {
            eprintln!("Error on rank {} of {}: {e}", mpi.rank(), mpi.world());
            mpi.abort(1)
        }
    }
}

#[cfg(not(feature = "mpi"))]
fn train_mpi<B: TrainBackend>(
    _: TrainConfig,
    _: &B::Device,
    _: TrainOptions,
    _: &Layout,
    _: bool,
) -> anyhow::Result<Option<TrainSummary>> {
    anyhow::bail!(
        "--mpi: this build has no MPI; build with the `mpi` feature (cargo build --release \
         -p memory-layers-cli --features mpi; Open MPI or MPICH and libclang installed)"
    )
}

/// The device of this process in an MPI job: its rank on its node (Open MPI, MPICH, SLURM),
/// or 0 where `CUDA_VISIBLE_DEVICES` shows it a single GPU (`srun --gpus-per-task=1`).
fn mpi_device() -> usize {
    let one_gpu = std::env::var("CUDA_VISIBLE_DEVICES").is_ok_and(|v| !v.contains(','));
    let local = [
        "OMPI_COMM_WORLD_LOCAL_RANK",
        "MPI_LOCALRANKID",
        "SLURM_LOCALID",
    ]
    .iter()
    .find_map(|name| std::env::var(name).ok()?.parse().ok());
    if one_gpu { 0 } else { local.unwrap_or(0) }
}

/// This process's rank as the MPI launcher gives it (Open MPI, MPICH/PMI, SLURM), if any.
fn launcher_rank() -> Option<usize> {
    [
        "OMPI_COMM_WORLD_RANK",
        "PMI_RANK",
        "PMIX_RANK",
        "SLURM_PROCID",
    ]
    .iter()
    .find_map(|name| std::env::var(name).ok()?.parse().ok())
}

/// Trains, then prints a summary table.
pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    let layout = layout(&args);
    let config = args.config()?;
    // A bad value is refused before the banner announces a run.
    config.validate()?;
    let out = config.run.out.clone();
    let lead = !args.mpi || launcher_rank().is_none_or(|rank| rank == 0);
    if lead {
        println!(
            "training {} ({}) for {} steps on {:?}; run directory {}",
            config.model.kind,
            if args.resume {
                "resumed".to_string()
            } else {
                format!("seed {}", config.run.seed)
            },
            config.optim.steps,
            args.backend,
            out.display()
        );
    }
    let options = TrainOptions {
        resume: args.resume,
        overwrite: args.overwrite,
        progress: true,
        interrupt: crate::signals::interrupt_on_signals()?,
    };
    let job = Train {
        config,
        options,
        layout,
        mpi: args.mpi,
        mpi_world_groups: args.mpi_world_groups,
    };
    if let Some(summary) = dispatch(args.backend, job)? {
        print_summary(&summary);
        print_reference(&summary.config);
    }
    Ok(())
}

/// The committed result of `experiment models` (docs/results/models/summary.json), built
/// into the binary so that it travels with it.
const REFERENCE: &str = include_str!("../../../docs/results/models/summary.json");

/// After a run of the `models` suite's base (the default `train`), the suite's committed
/// results at the same budget: dense at the same FLOPs per token, and at about 2× and 4×.
fn print_reference(config: &TrainConfig) {
    let mut base = default_run(config.model.kind);
    (base.run.out, base.run.seed) = (config.run.out.clone(), config.run.seed);
    if base != *config {
        return;
    }
    let rows: Vec<SummaryRow> = match serde_json::from_str(REFERENCE) {
        Ok(rows) => rows,
        Err(err) => {
            println!("(the committed `experiment models` result does not parse: {err})");
            return;
        }
    };
    println!(
        "\nthe committed `experiment models` result at the same {} tokens (docs/results.md):",
        si(config.optim.steps as f64 * (config.optim.batch_size * config.optim.seq_len) as f64)
    );
    println!(
        "{:<14} {:>12} {:>12} {:>14} {:>10}",
        "run", "FLOPs/token", "val loss", "fact recall %", "QA EM %"
    );
    for group in groups(&rows) {
        let mean = |f: &dyn Fn(&SummaryRow) -> Option<f64>| {
            Spread::of(group.rows.iter().filter_map(|r| f(r))).map_or(f64::NAN, |s| s.mean)
        };
        println!(
            "{:<14} {:>12} {:>12.3} {:>14.1} {:>10.1}",
            group.label,
            si(group.rows[0].flops_per_token as f64),
            mean(&|r| Some(r.val_loss)),
            mean(&|r| r.fact_recall),
            mean(&|r| Some(r.qa_exact_match)),
        );
    }
}

/// The end-of-run table.
fn print_summary(s: &TrainSummary) {
    let e = &s.eval;
    let c = &s.config;
    let rows = [
        (
            "model",
            format!(
                "{} (dim {}, {} blocks)",
                c.model.kind, c.model.dim, c.model.layers
            ),
        ),
        ("steps", s.steps.to_string()),
        ("tokens", s.tokens.to_string()),
        (
            "train time",
            format!(
                "{:.0} s ({:.0} tokens/s)",
                s.train_seconds,
                s.tokens as f64 / s.train_seconds.max(1e-9)
            ),
        ),
        ("final train loss", format!("{:.4}", s.final_loss)),
        (
            "val loss / ppl",
            format!("{:.4} / {:.2}", e.val_loss, e.val_ppl),
        ),
    ];
    let probes = if e.qa_total == 0 {
        vec![("QA", "no QA set".to_string())]
    } else {
        vec![
            (
                "QA exact match",
                format!(
                    "{:.2}% ({} of {} questions asked)",
                    e.qa_exact_match, e.qa_count, e.qa_total
                ),
            ),
            ("QA F1", format!("{:.2}%", e.qa_f1)),
            ("QA answer NLL", format!("{:.4}", e.qa_answer_nll)),
        ]
    };
    let recall = match e.fact_recall {
        Some(recall) => format!(
            "{recall:.2}% ({} of {} probes asked)",
            e.recall_count, e.recall_total
        ),
        None => "no recall probes".to_string(),
    };
    println!("\n{:-<60}", "");
    for (name, value) in rows.into_iter().chain(probes) {
        println!("{name:<20} {value}");
    }
    println!("{:<20} {recall}", "fact recall");
    for layer in &e.memory_layers {
        println!(
            "{:<20} used {:.1}%  KL(uniform) {:.3}  top-1 score {:.3}",
            format!("memory @ block {}", layer.layer),
            layer.used_pct,
            layer.kl_uniform,
            layer.top1_score
        );
    }
    println!("{:-<60}", "");
    println!(
        "wrote {}/{{config.toml, metrics.jsonl, eval.json, loss.svg, checkpoint/}}",
        c.run.out.display()
    );
}
