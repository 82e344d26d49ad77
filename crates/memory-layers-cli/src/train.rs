//! `train`: trains a model from the command line's flags (over a config.toml when given) and
//! evaluates it.

use std::path::PathBuf;

use anyhow::Context;
use memory_layers_data::{DocSeparator, TokenizerKind};
use memory_layers_experiments::default_run;
use memory_layers_parallel::{launcher_rank, local_device};
use memory_layers_train::{
    AttentionKernel, Layout, MemoryEstimate, Precision, RunDir, TrainBackend, TrainConfig,
    TrainOptions, TrainOverrides, TrainSummary, ValueOptimizer, available_ram, gib, train,
    train_parallel,
};
use memory_layers_zoo::{ModelKind, Size};

use crate::backend::{BackendKind, Job, dispatch, dispatch_checkpointed};

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
    /// What ends a document in a text file of --data: whole (default), blank-line, or a
    /// marker such as '<|endoftext|>' (as `prepare --doc-separator`).
    #[arg(long)]
    doc_separator: Option<DocSeparator>,
    /// Hold out validation documents of --data by tokens (1M), drawn from the whole corpus,
    /// instead of a share of them.
    #[arg(long, value_parser = parse_count)]
    val_tokens: Option<usize>,
    /// Train the BPE on a sample of --data of this many bytes (100M) instead of all of it.
    #[arg(long, value_parser = parse_count)]
    tokenizer_sample: Option<usize>,
    /// Validation tokens the final evaluation scores, spread over the split (0: all;
    /// default 1M); eval.json gives the tokens scored and the standard error.
    #[arg(long, value_parser = parse_count)]
    eval_tokens: Option<usize>,
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
    #[arg(long)]
    value_optimizer: Option<ValueOptimizer>,
    /// Tokenizer: byte, bpe (trained on the run's text), or a Hugging Face tokenizer.json
    /// (GPT-2, Llama, …), whose vocabulary size the model takes. Documents are separated by
    /// its end-of-text token when it has one, else by a blank line.
    #[arg(long, value_parser = parse_tokenizer)]
    tokenizer: Option<TokenizerChoice>,
    /// Floating-point type: f32 or bf16 (where the backend computes in bf16).
    #[arg(long)]
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
    /// Print the memory estimate of one device (parameters, gradients, optimizer states,
    /// activations) and whether it fits, then stop before anything is allocated.
    #[arg(long)]
    dry_run: bool,
    /// Memory of one device in bytes, decimal suffixes (80G = 80·10⁹), for the estimate:
    /// default the RAM available now on the CPU (shared by the --devices peers), unknown on a
    /// GPU and under --mpi (no check).
    #[arg(long, value_parser = parse_count)]
    device_memory: Option<usize>,
    /// Train even where the memory estimate exceeds the device's memory.
    #[arg(long)]
    ignore_memory_estimate: bool,
    /// Recompute the results of element-wise operations (norms, residual sums, activations)
    /// in the backward pass instead of keeping them: Burn's balanced activation
    /// checkpointing. Less memory (measured at 134m Memory+, one sequence of 4096 tokens:
    /// 10.2 → 9.4 GiB), the same model; the memory estimate does not count the saving.
    #[arg(long)]
    checkpoint_activations: bool,
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

/// A count with an optional decimal suffix: `1000`, `500k`, `1M`, `2G`.
pub fn parse_count(value: &str) -> Result<usize, String> {
    let t = value.trim();
    let (number, scale) = match t.char_indices().last() {
        Some((i, 'k' | 'K')) => (&t[..i], 1e3),
        Some((i, 'M')) => (&t[..i], 1e6),
        Some((i, 'G')) => (&t[..i], 1e9),
        _ => (t, 1.0),
    };
    match number.trim().parse::<f64>() {
        Ok(n) if n.is_finite() && n >= 0.0 => Ok((n * scale).round() as usize),
        _ => Err(format!(
            "expected a count such as 1000, 500k or 1M, got {value:?}"
        )),
    }
}

/// `--set KEY=VALUE` assignments as pairs.
pub(crate) fn parse_set(assignments: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    assignments
        .iter()
        .map(|assignment| {
            let (key, value) = assignment
                .split_once('=')
                .with_context(|| format!("--set {assignment}: write KEY=VALUE"))?;
            Ok((key.trim().to_string(), value.trim().to_string()))
        })
        .collect()
}

/// `byte` or `bpe`, else a path to a `.json` file.
pub(crate) fn parse_tokenizer(value: &str) -> Result<TokenizerChoice, String> {
    if let Ok(kind) = value.parse::<TokenizerKind>() {
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
            (true, Some(out)) => Some(RunDir::new(out).load_config()?),
            (true, None) => anyhow::bail!("--resume needs --out DIR (the run to continue)"),
            (false, _) => None,
        };
        let file = match (&saved, &self.config) {
            (Some(saved), _) => Some(saved.clone()),
            (None, Some(path)) => Some(TrainConfig::load(path)?),
            (None, None) => None,
        };
        let kind = self.model.unwrap_or(ModelKind::MemoryPlus);
        let (base, model) = match file {
            // Over a file, --model and --size replace its model by a preset.
            Some(config) if self.model.is_some() || self.size.is_some() => {
                let size = self.size.context(
                    "--model over a config.toml needs --size too: the new model's dims come \
                     from a preset, not from the file",
                )?;
                (config, Some((self.model.unwrap_or(kind), size)))
            }
            Some(config) => (config, None),
            None => match self.size {
                Some(size) => (TrainConfig::new(kind, size), None),
                None => (default_run(kind), None),
            },
        };
        let set = parse_set(&self.set)?;
        let overrides = TrainOverrides {
            model,
            data: self.data.clone(),
            prepared: self.data_dir.clone(),
            text_field: self.text_field.clone(),
            doc_separator: self.doc_separator.clone(),
            val_tokens: self.val_tokens,
            tokenizer_sample: self.tokenizer_sample,
            eval_tokens: self.eval_tokens,
            qa: self.qa.clone(),
            recall: self.recall.clone(),
            tokenizer: self.tokenizer.as_ref().map(TokenizerChoice::resolve),
            no_facts: self.no_facts,
            steps: self.steps,
            batch_size: self.batch_size,
            seq_len: self.seq_len,
            grad_accum: self.grad_accum,
            n_keys: self.n_keys,
            lr: self.lr,
            value_lr: self.value_lr,
            value_optimizer: self.value_optimizer,
            precision: self.precision,
            seed: self.seed,
            out: self.out.clone(),
            checkpoint_every: self.checkpoint_every,
            keep_checkpoints: self.keep_checkpoints,
            init_from: self.init_from.clone(),
            set,
            ..TrainOverrides::default()
        };
        Ok(overrides.apply(base, saved.is_some())?)
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
            (_, true) => local_device() + 1,
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

/// The memory estimate of one device against its memory: printed with `--dry-run` (then
/// `false`: stop), else a run that does not fit is refused with it.
fn memory_check(
    args: &TrainArgs,
    config: &TrainConfig,
    layout: Option<&Layout>,
) -> anyhow::Result<bool> {
    // CPU peers are threads of this process: they share its RAM.
    let peers = layout.map_or(1, |l| l.devices.max(1));
    // An MPI job's ranks would each read the node's RAM: only --device-memory checks them.
    let available = match (args.device_memory, args.backend) {
        (Some(bytes), _) => Some(bytes as u64),
        (None, BackendKind::Flex) if !args.mpi => available_ram().map(|ram| ram / peers as u64),
        (None, _) => None,
    };
    let attention = match args.backend {
        BackendKind::Flex => AttentionKernel::Tiled,
        BackendKind::Wgpu | BackendKind::Cuda => AttentionKernel::Chunked,
    };
    if args.dry_run {
        let estimate = MemoryEstimate::new(config, layout, attention);
        println!(
            "memory estimate of one device, {} × {} tokens a micro-batch:\n{estimate}",
            config.optim.batch_size / peers,
            config.optim.seq_len
        );
        match available {
            Some(available) => match MemoryEstimate::check(config, layout, attention, available) {
                Ok(_) => println!("fits in {} (this device)", gib(available)),
                Err(e) => println!("{e}"),
            },
            None => println!("device memory unknown: pass --device-memory (80G) to check it"),
        }
        return Ok(false);
    }
    if let (Some(available), false) = (available, args.ignore_memory_estimate) {
        MemoryEstimate::check(config, layout, attention, available)
            .map_err(|e| anyhow::anyhow!("{e}\n(--ignore-memory-estimate trains anyway)"))?;
    }
    Ok(true)
}

/// Trains, then prints a summary table.
pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    let layout = layout(&args);
    let config = args.config()?;
    // A bad value is refused before the banner announces a run.
    config.validate()?;
    if !memory_check(&args, &config, layout.as_ref())? {
        return Ok(());
    }
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
    let summary = if args.checkpoint_activations {
        dispatch_checkpointed(args.backend, job)?
    } else {
        dispatch(args.backend, job)?
    };
    if let Some(summary) = summary {
        crate::summary::print_summary(&summary);
        crate::summary::print_reference(&summary.config);
    }
    Ok(())
}
