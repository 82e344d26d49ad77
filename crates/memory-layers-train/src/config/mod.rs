use std::path::{Path, PathBuf};

use memory_layers_zoo::{ModelKind, Size, TransformerConfig, preset};
use serde::{Deserialize, Serialize};

use memory_layers_data::{
    CompactFactsConfig, DataError, DocSeparator, FactsConfig, TokenizerKind, read_utf8,
    write_atomic,
};

use crate::{AttentionKernel, MemoryEstimate, TrainError};

mod validate;
use crate::finetune::FinetuneConfig;

/// Everything a run needs; written to `config.toml` in the run directory, and accepted back
/// with `--config`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// The model (vocabulary size resolved from the tokenizer).
    pub model: TransformerConfig,
    /// Training data.
    pub data: DataConfig,
    /// Optimisation.
    pub optim: OptimConfig,
    /// Seeds, output and logging.
    pub run: RunConfig,
    /// For a run that finetunes a trained one: its base and what it trains.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finetune: Option<FinetuneConfig>,
}

/// Training data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataConfig {
    /// Text files, .jsonl files (one document per line, in `text_field`), either of them
    /// compressed (`.gz`, `.zst`), parquet files (`text_field` is their column), or folders of
    /// such files. Empty (and no `prepared`): the
    /// embedded Shakespeare plays.
    #[serde(default)]
    pub paths: Vec<PathBuf>,
    /// A folder `memory-layers prepare` wrote (token shards, tokenizer, manifest) to train
    /// on instead of `paths`; its tokenizer replaces `tokenizer`. Runs given `paths` prepare
    /// them into `RUN/data/` themselves.
    #[serde(default)]
    pub prepared: Option<PathBuf>,
    /// The field of a .jsonl record that holds its text.
    #[serde(default = "text_field")]
    pub text_field: String,
    /// Held-out QA set for evaluation (.jsonl). Default: the generated facts' held-out set.
    #[serde(default)]
    pub qa: Option<PathBuf>,
    /// Fact-recall probes for evaluation (.jsonl with "prompt" and "answer"). Default: the
    /// generated facts' probes.
    #[serde(default)]
    pub recall: Option<PathBuf>,
    /// Bytes of the embedded plays to train on, from their start, cut at a line end
    /// (`None`: all 4.85 MB; `0`: none, as a finetuning run on other text has it); the next
    /// 100 kB are held out for the natural-text validation loss. Used when `paths` is empty.
    #[serde(default)]
    pub embedded_bytes: Option<usize>,
    /// The generated knowledge corpus mixed into training (`None`: none).
    #[serde(default)]
    pub facts: Option<FactsConfig>,
    /// A compact knowledge corpus as the whole training text (`None`: none): every name and
    /// value one token of its own vocabulary (`tokenizer = "words"`), for measuring how many
    /// bits of facts a model stores. Excludes `paths`, `prepared` and `facts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compact_facts: Option<CompactFactsConfig>,
    /// Tokenizer.
    pub tokenizer: TokenizerKind,
    /// A Hugging Face `tokenizer.json` to use instead of training one (with `tokenizer =
    /// "bpe"`); the vocabulary size comes from it.
    #[serde(default)]
    pub tokenizer_file: Option<PathBuf>,
    /// Fraction of sequences kept for validation (of documents, for `paths`).
    pub val_fraction: f64,
    /// For `paths`: hold out whole documents drawn from the whole corpus until they hold this
    /// many tokens, instead of `val_fraction` of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_tokens: Option<usize>,
    /// For `paths`: what ends a document in a text file (`whole`, the default: a file is one;
    /// `blank-line`; or `{ marker = "<|endoftext|>" }`).
    #[serde(default, skip_serializing_if = "is_whole")]
    pub doc_separator: DocSeparator,
    /// For `paths` with a BPE trained here: train it on a uniform sample of documents of
    /// about this many bytes instead of the whole corpus.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer_sample: Option<usize>,
}

fn is_whole(separator: &DocSeparator) -> bool {
    *separator == DocSeparator::Whole
}

/// Learning-rate decay after warmup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Decay {
    /// Cosine from 1 to `min_lr_ratio`.
    Cosine,
    /// Linear from 1 to `min_lr_ratio`.
    Linear,
}

/// How the value tables (the memory pool, PEER's experts) are optimised.
///
/// Named `dense-adamw`, `sparse-adamw`, `rowwise-adagrad` on the command line and in
/// `config.toml`; configs written before the names were unified (`dense-adam-w`,
/// `sparse-adam-w`) still load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ValueOptimizer {
    /// Burn's AdamW on a dense gradient: every row's moments decay and every row is decayed at
    /// every step, exactly the paper's recipe; cost grows with the table.
    #[serde(rename = "dense-adamw", alias = "dense-adam-w")]
    DenseAdamW,
    /// Lazy AdamW on the rows a step touched (sparse gradients, in-place update); untouched rows
    /// keep their moments and weight. Cost grows with the rows touched, not the table.
    #[default]
    #[serde(rename = "sparse-adamw", alias = "sparse-adam-w")]
    SparseAdamW,
    /// Row-wise Adagrad (one accumulator per row) on the rows a step touched.
    RowwiseAdagrad,
    /// Plain SGD on the rows a step touched, without state: sparse memory finetuning's
    /// update (Lin et al. 2025).
    Sgd,
}

memory_layers_zoo::serde_names!(Decay, ValueOptimizer, Precision);

/// Optimisation: AdamW with the value table as its own parameter group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OptimConfig {
    /// Optimizer steps.
    pub steps: usize,
    /// Sequences per micro-batch.
    pub batch_size: usize,
    /// Tokens per sequence.
    pub seq_len: usize,
    /// Micro-batches per step (gradient accumulation).
    pub grad_accum: usize,
    /// Peak learning rate of all parameters but the values.
    pub lr: f64,
    /// Peak learning rate of the value table(s); the same schedule multiplier applies.
    pub value_lr: f64,
    /// Linear warmup steps.
    pub warmup_steps: usize,
    /// Decay after warmup.
    pub decay: Decay,
    /// Final learning rate as a fraction of the peak.
    pub min_lr_ratio: f64,
    /// AdamW β1.
    pub beta1: f64,
    /// AdamW β2.
    pub beta2: f64,
    /// AdamW ε.
    pub eps: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
    /// Global gradient-norm clip of all parameters but the values (0: off).
    pub grad_clip: f64,
    /// Global gradient-norm clip of the values, separately (0: off).
    pub value_grad_clip: f64,
    /// The value tables' optimizer (β, ε and weight decay above apply to both AdamWs).
    #[serde(default)]
    pub value_optimizer: ValueOptimizer,
}

/// Floating-point type of parameters, activations and optimizer state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Precision {
    /// f32 everywhere.
    #[default]
    F32,
    /// bf16 everywhere (as the reference keeps its values), where the backend computes in it.
    Bf16,
}

/// Seeds, output and logging.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    /// Seed of the model initialisation, data order and generated facts.
    pub seed: u64,
    /// Run directory.
    pub out: PathBuf,
    /// Steps between checkpoints (the last step is always saved).
    pub checkpoint_every: usize,
    /// Checkpoints kept: the latest in `checkpoint/`, earlier ones in `checkpoint-STEP/`.
    #[serde(default = "one")]
    pub keep_checkpoints: usize,
    /// Steps between metrics lines.
    pub log_every: usize,
    /// Steps between validation losses in metrics.jsonl (0: only at the end).
    pub eval_every: usize,
    /// Validation batches per evaluation during training (0: all), spread over the split.
    pub eval_batches: usize,
    /// Validation tokens the final evaluation scores, in sequences spread over the split
    /// (0: all of them); its standard error says how close that is to the whole split's.
    #[serde(default = "default_eval_tokens")]
    pub eval_tokens: usize,
    /// QA questions scored at the end (0: all).
    pub qa_limit: usize,
    /// Recall probes scored at the end (0: all).
    #[serde(default = "default_recall_limit")]
    pub recall_limit: usize,
    /// Floating-point type.
    #[serde(default)]
    pub precision: Precision,
    /// A safetensors file with Hugging Face Llama names (`memory-layers export` writes one)
    /// whose tensors initialise a new run's model ([`crate::export::load_hf`] has the rules);
    /// a resumed run takes its weights from its checkpoint instead.
    #[serde(default)]
    pub init_from: Option<PathBuf>,
}

fn one() -> usize {
    1
}

fn text_field() -> String {
    "text".into()
}

/// Recall probes scored by default: 300 (50 people of the generated corpus).
fn default_recall_limit() -> usize {
    300
}

/// The device the paper-size presets are split for: an 80 GB GPU (H100, A100 80GB).
const PRESET_DEVICE_MEMORY: u64 = 80_000_000_000;

/// Validation tokens the final evaluation scores by default: about a million, a standard
/// error near 0.005 nats on natural text, in well under a minute on a CPU for the small
/// models.
pub const DEFAULT_EVAL_TOKENS: usize = 1 << 20;

fn default_eval_tokens() -> usize {
    DEFAULT_EVAL_TOKENS
}

impl RunConfig {
    /// The validation sequences of `seq_len` tokens the final evaluation scores (`None`: all).
    pub fn eval_sequences(&self, seq_len: usize) -> Option<usize> {
        (self.eval_tokens > 0).then(|| self.eval_tokens.div_ceil(seq_len.max(1)))
    }
}

impl TrainConfig {
    /// The defaults for `model` at `size`: small steps for a CPU, the paper's optimizer
    /// settings, the embedded data and generated facts. The paper's sizes take its 8 × 4096
    /// tokens a step (one device's share in the paper), in the largest micro-batch whose
    /// estimate fits one 80 GB GPU, and gradient accumulation for the rest
    /// ([`MemoryEstimate`](crate::MemoryEstimate)); one sequence where none fits.
    pub fn new(kind: ModelKind, size: Size) -> Self {
        let mut config = Self::unsplit(kind, size);
        if !matches!(size, Size::Tiny | Size::Small) {
            let sequences = config.optim.batch_size;
            let fits = |batch| {
                let mut trial = config.clone();
                trial.optim.batch_size = batch;
                trial.optim.grad_accum = sequences / batch;
                let estimate = MemoryEstimate::new(&trial, None, AttentionKernel::Chunked);
                estimate.total() <= PRESET_DEVICE_MEMORY
            };
            let batch = (2..=sequences)
                .rev()
                .filter(|&b| sequences.is_multiple_of(b))
                .find(|&b| fits(b))
                .unwrap_or(1);
            config.optim.batch_size = batch;
            config.optim.grad_accum = sequences / batch;
        }
        config
    }

    /// [`TrainConfig::new`] with the whole step in one micro-batch.
    fn unsplit(kind: ModelKind, size: Size) -> Self {
        let model = preset(kind, size, None);
        let (steps, batch_size, seq_len, lr) = match size {
            Size::Tiny => (200, 8, 64, 3e-3),
            Size::Small => (240, 8, 128, 2e-3),
            _ => (100_000, 8, 4096, 1e-4),
        };
        let seq_len = seq_len.min(model.max_seq_len);
        let tokenizer = if size == Size::Tiny {
            TokenizerKind::Byte
        } else {
            TokenizerKind::Bpe
        };
        Self {
            model,
            data: DataConfig {
                paths: Vec::new(),
                prepared: None,
                text_field: text_field(),
                qa: None,
                recall: None,
                embedded_bytes: None,
                facts: Some(FactsConfig::default()),
                compact_facts: None,
                tokenizer,
                tokenizer_file: None,
                val_fraction: 0.02,
                val_tokens: None,
                doc_separator: DocSeparator::Whole,
                tokenizer_sample: None,
            },
            optim: OptimConfig {
                steps,
                batch_size,
                seq_len,
                grad_accum: 1,
                lr,
                // The paper's ratio (1e-3 for values, 1e-4 for the rest): slower values let
                // the retrieval collapse onto a few slots (docs/results.md).
                value_lr: 10.0 * lr,
                warmup_steps: (steps / 20).max(1),
                decay: Decay::Cosine,
                min_lr_ratio: 0.1,
                beta1: 0.9,
                beta2: 0.95,
                eps: 1e-8,
                weight_decay: 0.1,
                grad_clip: 1.0,
                value_grad_clip: 1.0,
                value_optimizer: ValueOptimizer::default(),
            },
            run: RunConfig {
                seed: 0,
                out: PathBuf::from("runs").join(format!("{kind}-{size}")),
                checkpoint_every: 50,
                keep_checkpoints: 1,
                log_every: 10,
                eval_every: 50,
                eval_batches: 16,
                eval_tokens: DEFAULT_EVAL_TOKENS,
                qa_limit: if size == Size::Tiny { 60 } else { 300 },
                recall_limit: default_recall_limit(),
                precision: Precision::F32,
                init_from: None,
            },
            finetune: None,
        }
    }

    /// Reads a `config.toml` (as a run writes it); unknown keys are errors.
    pub fn load(path: &Path) -> Result<Self, TrainError> {
        let text = read_utf8(path)?;
        Self::parse(&text)
            .map_err(|e| DataError::input(path, None, format!("invalid config: {e}")).into())
    }

    /// Sets the number of steps, keeping warmup the same fraction of them.
    pub fn set_steps(&mut self, steps: usize) {
        let o = &mut self.optim;
        let fraction = o.warmup_steps as f64 / o.steps.max(1) as f64;
        o.steps = steps;
        o.warmup_steps = ((steps as f64 * fraction).round() as usize).clamp(1, steps.max(1));
    }

    /// Writes the config as TOML.
    pub fn save(&self, path: &Path) -> Result<(), TrainError> {
        let text = toml::to_string_pretty(self)
            .map_err(|e| TrainError::config("run", e, "cannot be written as TOML"))?;
        Ok(write_atomic(path, text.as_bytes())?)
    }

    /// Learning-rate multiplier at `step`: linear warmup, then decay to `min_lr_ratio`.
    pub fn lr_multiplier(&self, step: usize) -> f64 {
        let o = &self.optim;
        if step < o.warmup_steps {
            return (step + 1) as f64 / o.warmup_steps as f64;
        }
        let span = (o.steps.saturating_sub(o.warmup_steps)).max(1) as f64;
        let progress = ((step - o.warmup_steps) as f64 / span).min(1.0);
        let shape = match o.decay {
            Decay::Cosine => 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()),
            Decay::Linear => 1.0 - progress,
        };
        o.min_lr_ratio + (1.0 - o.min_lr_ratio) * shape
    }
}
