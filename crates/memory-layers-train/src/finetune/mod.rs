//! Finetuning a trained run on new data: every parameter, low-rank adapters, the memory values,
//! or only the value rows the new data reads much more than the pretraining data did (sparse
//! memory finetuning, Lin et al., "Continual Learning via Sparse Memory Finetuning", 2025).
//!
//! A finetuning run is a run: its own directory, whose `config.toml` names the base
//! checkpoint in a `[finetune]` table; it resumes, evaluates and exports like any other. The
//! base run is only read.

use std::path::{Path, PathBuf};

use memory_layers_zoo::{LoraConfig, TransformerConfig};
use serde::{Deserialize, Serialize};

use crate::config::{Decay, TrainConfig, ValueOptimizer};
use crate::run_dir::RunDir;
use crate::{TrainError, checkpoint::checkpoint_error};

mod background;

pub use background::{Background, count_background};
pub(crate) use background::{reads, retrieved};

/// What a finetuning run trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FinetuneMethod {
    /// Every parameter: AdamW, the value tables with their own optimizer.
    Full,
    /// Low-rank adapters on the attention and dense feed-forward projections; the base frozen
    /// and the adapters merged into the weights a checkpoint holds.
    Lora,
    /// Every value row a batch reads; everything else frozen.
    Memory,
    /// The `top_t` value rows of each batch with the highest TF-IDF against the background
    /// access counts; everything else frozen.
    SparseMemory,
}

memory_layers_zoo::serde_names!(FinetuneMethod);

impl FinetuneMethod {
    /// Every method: every parameter, adapters, the values, some of the values.
    pub const ALL: [Self; 4] = [Self::Full, Self::Lora, Self::Memory, Self::SparseMemory];

    /// Whether the method trains the memory values alone.
    pub fn values_only(self) -> bool {
        matches!(self, Self::Memory | Self::SparseMemory)
    }
}

/// How a finetuning run changes its base model (`[finetune]` in `config.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinetuneConfig {
    /// The base run's checkpoint folder the run starts from; only read.
    pub base: PathBuf,
    /// The step of that checkpoint when the run started: a base that has moved on since (a
    /// resumed base run) is refused, so that a resumed finetuning run continues from the same
    /// weights.
    pub base_step: usize,
    /// What is trained.
    pub method: FinetuneMethod,
    /// Rank of each adapter (`lora`).
    pub lora_rank: usize,
    /// Adapter scale numerator (`lora`): each adapted weight reads `W + (α/r)·A·B`.
    pub lora_alpha: f64,
    /// Value rows updated per step (`sparse-memory`).
    pub top_t: usize,
    /// Where the background access counts come from (`sparse-memory`): a `background.json`,
    /// a run directory (its `background.json`, else counted on its training data) or a folder
    /// `prepare` wrote. `None`: the base run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub background: Option<PathBuf>,
    /// Background documents counted when the counts are made for this run.
    pub background_batches: usize,
    /// Sequences per background document.
    pub background_sequences: usize,
}

/// Value rows a sparse-memory step updates by default: Lin et al.'s t = 500 (of a 1M-row pool;
/// scale it with the pool).
pub const DEFAULT_TOP_T: usize = 500;

impl FinetuneConfig {
    /// `method` from the checkpoint folder `base`, with the defaults: rank-8 adapters scaled
    /// by α = 16, t = 500, background counts over 1000 single-sequence documents of the base
    /// run's training data.
    pub fn new(base: PathBuf, base_step: usize, method: FinetuneMethod) -> Self {
        Self {
            base,
            base_step,
            method,
            lora_rank: 8,
            lora_alpha: 16.0,
            top_t: DEFAULT_TOP_T,
            background: None,
            background_batches: 1000,
            background_sequences: 1,
        }
    }

    /// The adapters' settings.
    pub fn lora(&self) -> LoraConfig {
        LoraConfig::new(self.lora_rank, self.lora_alpha)
    }

    /// Checks the settings against the base `model`; the error names the field and the rule.
    pub fn validate(&self, model: &TransformerConfig) -> Result<(), TrainError> {
        if self.method == FinetuneMethod::Lora {
            self.lora().validate()?;
        }
        if self.method.values_only() && !model.kind.has_pool() {
            return Err(TrainError::config(
                "finetune.method",
                self.method,
                "trains memory values: the base model has no memory layers (a Memory or \
                 Memory+ model has them)",
            ));
        }
        if self.method == FinetuneMethod::SparseMemory {
            let pool = model.product_keys.n_keys.pow(2);
            if self.top_t == 0 || self.top_t > pool {
                return Err(TrainError::config(
                    "finetune.top_t",
                    format!("{} (the pool has {pool} rows)", self.top_t),
                    "must be at least 1 and at most the rows of the memory pool",
                ));
            }
            for (field, value) in [
                ("finetune.background_batches", self.background_batches),
                ("finetune.background_sequences", self.background_sequences),
            ] {
                if value == 0 {
                    return Err(TrainError::config(field, value, "must be at least 1"));
                }
            }
        }
        Ok(())
    }
}

/// The checkpoint folder a finetuning run starts from: `path` itself, or the latest
/// checkpoint of the run directory `path`.
pub fn base_checkpoint(path: &Path) -> Result<PathBuf, TrainError> {
    let dir = RunDir::containing(path);
    if dir.path() != path {
        return Ok(path.to_path_buf());
    }
    if !dir.config().exists() {
        return Err(checkpoint_error(
            path,
            "is not a run directory (no config.toml): give the run to finetune",
        ));
    }
    Ok(dir
        .latest_checkpoint()
        .ok_or_else(|| checkpoint_error(path, "no checkpoint in this run directory"))?
        .path()
        .to_path_buf())
}

/// The step of the base checkpoint `checkpoint` (its `state.json`).
pub(crate) fn base_step(checkpoint: &Path) -> Result<usize, TrainError> {
    Ok(crate::checkpoint::load_state(&crate::CheckpointDir::at(checkpoint))?.step)
}

impl TrainConfig {
    /// A run finetuning the run or checkpoint `base` with `method`: the base's model,
    /// tokenizer and settings, no training text until some is given (`data.paths`,
    /// `data.prepared` or `data.facts`), a constant learning rate from the first step, 100
    /// steps and the method's learning rate:
    /// - `full`: a tenth of the base's peak rates;
    /// - `lora`: the base's peak rate for the adapters;
    /// - `memory`, `sparse-memory`: SGD on the value rows (Lin et al.'s optimizer) at
    ///   `value_lr` 1.
    ///
    /// The run directory defaults to the base run's, suffixed with the method.
    pub fn finetune(base: &Path, method: FinetuneMethod) -> Result<Self, TrainError> {
        let checkpoint = base_checkpoint(base)?;
        let base_dir = RunDir::containing(&checkpoint);
        let mut config = base_dir.load_config()?;
        let name = base_dir
            .path()
            .file_name()
            .map_or_else(|| "run".into(), |n| n.to_string_lossy().into_owned());
        config.run.out = base_dir.path().with_file_name(format!("{name}-{method}"));
        config.run.init_from = None;
        config.run.eval_every = 0;
        let data = &mut config.data;
        data.paths.clear();
        data.prepared = None;
        data.qa = None;
        data.recall = None;
        data.facts = None;
        data.compact_facts = None;
        data.tokenizer_file = None;
        data.embedded_bytes = Some(0);
        let o = &mut config.optim;
        o.steps = 100;
        o.warmup_steps = 0;
        o.decay = Decay::Cosine;
        o.min_lr_ratio = 1.0;
        match method {
            FinetuneMethod::Full => {
                o.lr /= 10.0;
                o.value_lr /= 10.0;
            }
            FinetuneMethod::Lora => {}
            FinetuneMethod::Memory | FinetuneMethod::SparseMemory => {
                o.value_optimizer = ValueOptimizer::Sgd;
                o.value_lr = 1.0;
            }
        }
        let step = base_step(&checkpoint)?;
        config.finetune = Some(FinetuneConfig::new(checkpoint, step, method));
        Ok(config)
    }
}
