//! What one device of a training run holds at its peak, counted from the configuration before
//! anything is allocated: `train --dry-run` prints it, and a run whose estimate exceeds the
//! device's memory is refused with it instead of being killed by the operating system.
//!
//! The peak is the start of the backward pass of a micro-batch: the parameters, their
//! gradients and optimizer states, every activation the forward pass kept, and the gradient of
//! the logits. Activations are counted per token from what the layers keep for their backward
//! pass (docs/scaling.md lists them); attention keeps `O(len)` per head (its probabilities are
//! recomputed), so every term grows linearly with the tokens of a micro-batch.

use std::fmt;

use memory_layers_zoo::{ATTENTION_CHUNK, ModelKind, TransformerConfig, account};
use serde::Serialize;

use memory_layers_data::TokenizerKind;

use crate::{Layout, Precision, TrainConfig, TrainError, ValueOptimizer};

/// The process around the tensors: code, thread stacks, the allocator's slack, the batches
/// (measured at `tiny`, where the tensors are a few MB).
const RUNTIME_BYTES: u64 = 150 << 20;

/// What training a BPE tokenizer on the run's text and tokenizing it in this process leaves
/// resident (measured at `small` on the default 5.5 MB of text); a run on a prepared folder
/// (`--data-dir`) or with the byte tokenizer has none of it.
const TOKENIZING_BYTES: u64 = 400 << 20;

/// Bytes the checkpoint writer holds per byte of the record it writes, as a fraction
/// `SAVE_COPY.0 / SAVE_COPY.1`: the record's copy of the tensors and the writer's buffers
/// (measured at 134m, where the 3.5 GiB model is the largest record: 6.2 GiB above the state
/// with row-wise Adagrad, 6.1 with sparse AdamW).
const SAVE_COPY: (u64, u64) = (7, 4);

/// How the backend's attention trains: neither keeps its probabilities for the backward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum AttentionKernel {
    /// The CPU kernel (Flex): tiles of 64 query rows, a few MB while a tile runs.
    Tiled,
    /// The GPU backends (wgpu, CUDA): chunks of [`ATTENTION_CHUNK`] query rows from Burn's
    /// tensor operations, whose scores, probabilities and their gradients (`[batch, heads,
    /// chunk, len]`, five f32 tensors) live while a chunk of the backward pass runs.
    Chunked,
}

impl AttentionKernel {
    /// Bytes of attention scores alive at once for `sequences` of `len` tokens and `heads`.
    fn scores_bytes(self, sequences: usize, heads: usize, len: usize) -> u64 {
        match self {
            Self::Tiled => 0,
            Self::Chunked => (5 * 4 * sequences * heads * len.min(ATTENTION_CHUNK) * len) as u64,
        }
    }
}

/// Bytes one device holds at its peak, by what holds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MemoryEstimate {
    /// Parameters other than the value tables.
    pub dense_params: u64,
    /// This device's share of the value tables (the memory pool, sharded by parallel memory;
    /// PEER's experts, whole).
    pub value_params: u64,
    /// Gradients of the dense parameters.
    pub dense_grads: u64,
    /// AdamW's two moments of the dense parameters.
    pub dense_optimizer: u64,
    /// Gradients of the value rows a step reads (all of them with `dense-adamw`).
    pub value_grads: u64,
    /// The value optimizer's state (`sparse-adamw` and `dense-adamw`: two moments per value;
    /// `rowwise-adagrad`: one per row; `sgd`: none).
    pub value_optimizer: u64,
    /// Activations kept for the backward pass of one micro-batch, and the logits' gradient.
    pub activations: u64,
    /// Attention scores alive while a chunk of the attention runs ([`AttentionKernel::Chunked`]).
    pub attention_scores: u64,
    /// The process around the tensors, with what tokenizing the text in it left.
    pub runtime: u64,
    /// Whether a step accumulates micro-batches (their gradients are held across them).
    pub accumulates: bool,
    /// What saving a checkpoint adds while it writes its largest record (the model, the dense
    /// AdamW moments, or one moment table of the value optimizer).
    pub checkpoint_copy: u64,
}

impl MemoryEstimate {
    /// The estimate for one device of `config` trained on `layout` (`None`: one device) with
    /// `attention`.
    pub fn new(config: &TrainConfig, layout: Option<&Layout>, attention: AttentionKernel) -> Self {
        let (devices, memory_parallel) = layout.map_or((1, 1), |l| (l.devices, l.memory_parallel));
        let model = &config.model;
        let counts = account(model);
        // Parallel memory shards the memory pool over its group; PEER's tables stay whole.
        let shards = if model.kind.has_pool() {
            memory_parallel.max(1) as u64
        } else {
            1
        };
        let values = counts.value_params / shards;
        let dense = counts.total_params - counts.value_params;
        let sequences = (config.optim.batch_size / devices.max(1)).max(1);
        let tokens = sequences * config.optim.seq_len;
        let scores = attention.scores_bytes(sequences, model.heads, config.optim.seq_len);
        let read = value_rows_read(model, tokens) * value_width(model) / shards;
        let optimizer_state = |values: u64, rows: u64| match config.optim.value_optimizer {
            ValueOptimizer::DenseAdamW | ValueOptimizer::SparseAdamW => 2 * values,
            ValueOptimizer::RowwiseAdagrad => rows,
            ValueOptimizer::Sgd => 0,
        };
        let value_grads = match config.optim.value_optimizer {
            ValueOptimizer::DenseAdamW => values,
            _ => read,
        };
        let tokenizing = config.data.prepared.is_none()
            && config.data.tokenizer == TokenizerKind::Bpe
            && config.data.compact_facts.is_none();
        // A checkpoint holds the whole model, whatever the layout. Burn's recorder copies a
        // record whole while writing it: the model, AdamW's moments, and the values' moments
        // with dense-adamw. The row-wise optimizers' record is written a tensor at a time, and
        // one of its tensors is never larger than the model.
        let value_record = match config.optim.value_optimizer {
            ValueOptimizer::DenseAdamW => 2 * counts.value_params,
            _ => 0,
        };
        let largest_record = value_record.max(2 * dense).max(counts.total_params);
        let bytes = match config.run.precision {
            Precision::F32 => 4,
            Precision::Bf16 => 2,
        };
        Self {
            dense_params: bytes * dense,
            value_params: bytes * values,
            dense_grads: bytes * dense,
            dense_optimizer: bytes * 2 * dense,
            value_grads: bytes * value_grads,
            value_optimizer: bytes * optimizer_state(values, rows(model) / shards),
            activations: bytes * tokens as u64 * activation_floats_per_token(model),
            attention_scores: scores,
            runtime: RUNTIME_BYTES + if tokenizing { TOKENIZING_BYTES } else { 0 },
            accumulates: config.optim.grad_accum > 1,
            checkpoint_copy: bytes * largest_record * SAVE_COPY.0 / SAVE_COPY.1,
        }
    }

    /// Parameters, optimizer states and the runtime: what every moment of a run holds.
    fn resident(&self) -> u64 {
        self.dense_params
            + self.value_params
            + self.dense_optimizer
            + self.value_optimizer
            + self.runtime
    }

    /// The peak of a training step: the resident part, and the activations or the gradients,
    /// whichever is larger (the backward pass frees activations as it makes gradients); with
    /// gradient accumulation, the gradients summed so far besides.
    pub fn step_peak(&self) -> u64 {
        let grads = self.dense_grads + self.value_grads;
        let accumulated = if self.accumulates { grads } else { 0 };
        self.resident() + accumulated + (self.activations + self.attention_scores).max(grads)
    }

    /// The peak of a checkpoint save, after a step: the resident part, the value gradients'
    /// size (measured still resident after a step, at 134m with either value optimizer) and
    /// the copy of the record being written.
    pub fn save_peak(&self) -> u64 {
        self.resident() + self.value_grads + self.checkpoint_copy
    }

    /// The process's peak: the larger of a step's and a checkpoint save's.
    pub fn total(&self) -> u64 {
        self.step_peak().max(self.save_peak())
    }

    /// `(what, bytes)` of every part of a step, in the order [`Display`](fmt::Display) prints
    /// them.
    pub fn parts(&self) -> [(&'static str, u64); 9] {
        [
            ("parameters (dense)", self.dense_params),
            ("parameters (value tables)", self.value_params),
            ("gradients (dense)", self.dense_grads),
            ("gradients (value rows read)", self.value_grads),
            ("optimizer state (dense AdamW)", self.dense_optimizer),
            ("optimizer state (values)", self.value_optimizer),
            ("activations (one micro-batch)", self.activations),
            ("attention chunk (GPU backends)", self.attention_scores),
            ("runtime and data", self.runtime),
        ]
    }

    /// `Ok` when the estimate of `config` on `layout` fits in `available` bytes, else
    /// [`TrainError::DoesNotFit`] with the breakdown and the flags that would fit.
    pub fn check(
        config: &TrainConfig,
        layout: Option<&Layout>,
        attention: AttentionKernel,
        available: u64,
    ) -> Result<Self, TrainError> {
        let estimate = Self::new(config, layout, attention);
        if estimate.total() <= available {
            return Ok(estimate);
        }
        Err(TrainError::DoesNotFit {
            estimate: Box::new(estimate),
            available,
            advice: advice(config, layout, attention, available),
        })
    }
}

/// What [`MemoryEstimate::check`] suggests for a run that does not fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FitAdvice {
    /// The run fits with these changes (`None`: the run's own setting kept).
    Fits {
        /// A smaller micro-batch and the accumulation that keeps the global batch:
        /// `(batch_size, grad_accum)`.
        batch: Option<(usize, usize)>,
        /// Another value optimizer.
        value_optimizer: Option<ValueOptimizer>,
        /// The estimate's total with the changes, in bytes.
        needed: u64,
    },
    /// No smaller micro-batch fits, nor (for a model with value tables) row-wise Adagrad.
    NothingFits {
        /// Whether the model has value tables (fewer keys or more devices would help).
        value_tables: bool,
    },
}

/// The flags that fit, or what else would.
impl fmt::Display for FitAdvice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Fits {
                batch,
                value_optimizer,
                needed,
            } => {
                write!(f, "it would fit ({}) with:", gib(needed))?;
                if let Some((batch_size, grad_accum)) = batch {
                    write!(f, " --batch-size {batch_size} --grad-accum {grad_accum}")?;
                }
                if let Some(optimizer) = value_optimizer {
                    write!(f, " --value-optimizer {optimizer}")?;
                }
                Ok(())
            }
            Self::NothingFits {
                value_tables: false,
            } => f.write_str(
                "no smaller micro-batch fits: take a shorter --seq-len, a smaller --size, or a \
                 device with more memory",
            ),
            Self::NothingFits { value_tables: true } => f.write_str(
                "no smaller micro-batch or value optimizer fits: take a shorter --seq-len, a \
                 smaller --n-keys or --size, or more devices (--memory-parallel splits the \
                 value tables)",
            ),
        }
    }
}

/// The first change that fits: a smaller micro-batch with more accumulation (the same
/// global batch), then also the row-wise Adagrad value optimizer (one state per row).
fn advice(
    config: &TrainConfig,
    layout: Option<&Layout>,
    attention: AttentionKernel,
    available: u64,
) -> FitAdvice {
    let devices = layout.map_or(1, |l| l.devices.max(1));
    let optim = &config.optim;
    let global = optim.batch_size * optim.grad_accum;
    // Micro-batches halved while each device keeps a whole share: the global batch stays.
    let mut batches = vec![optim.batch_size];
    while let Some(&b) = batches
        .last()
        .filter(|&&b| b > 1 && b % 2 == 0 && (b / 2) % devices == 0)
    {
        batches.push(b / 2);
    }
    let mut optimizers = vec![optim.value_optimizer];
    // Row-wise Adagrad keeps one accumulator per whole row: refused with a sharded pool.
    let sharded = layout.is_some_and(|l| l.memory_parallel > 1);
    if rows(&config.model) > 0
        && !sharded
        && optim.value_optimizer != ValueOptimizer::RowwiseAdagrad
    {
        optimizers.push(ValueOptimizer::RowwiseAdagrad);
    }
    for value_optimizer in optimizers {
        for &batch in &batches {
            let mut trial = config.clone();
            trial.optim.batch_size = batch;
            trial.optim.grad_accum = global / batch;
            trial.optim.value_optimizer = value_optimizer;
            let needed = MemoryEstimate::new(&trial, layout, attention).total();
            if needed > available {
                continue;
            }
            return FitAdvice::Fits {
                batch: (batch != optim.batch_size).then_some((batch, global / batch)),
                value_optimizer: (value_optimizer != optim.value_optimizer)
                    .then_some(value_optimizer),
                needed,
            };
        }
    }
    FitAdvice::NothingFits {
        value_tables: rows(&config.model) > 0,
    }
}

/// Memory the operating system can give this process now (`MemAvailable` of
/// `/proc/meminfo`), or `None` where that file does not say.
pub fn available_ram() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// One line per part and the total, in GiB.
impl fmt::Display for MemoryEstimate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (what, bytes) in self.parts() {
            writeln!(f, "  {what:<32} {:>9}", gib(bytes))?;
        }
        writeln!(
            f,
            "  {:<32} {:>9}",
            "peak of a training step",
            gib(self.step_peak())
        )?;
        writeln!(
            f,
            "  {:<32} {:>9}",
            "checkpoint save: record copy",
            gib(self.checkpoint_copy)
        )?;
        writeln!(
            f,
            "  {:<32} {:>9}",
            "peak of a checkpoint save",
            gib(self.save_peak())
        )?;
        write!(f, "  {:<32} {:>9}", "peak (the larger)", gib(self.total()))
    }
}

/// `bytes` in GiB, two decimals.
pub fn gib(bytes: u64) -> String {
    format!("{:.2} GiB", bytes as f64 / (1u64 << 30) as f64)
}

/// Rows of the value tables (memory pool or each PEER table).
fn rows(model: &TransformerConfig) -> u64 {
    match model.kind {
        ModelKind::Dense | ModelKind::Moe => 0,
        _ => (model.product_keys.n_keys * model.product_keys.n_keys) as u64,
    }
}

/// Floats per value row: the memory's value dimension; PEER's two expert vectors.
fn value_width(model: &TransformerConfig) -> u64 {
    match model.kind {
        ModelKind::Dense | ModelKind::Moe => 0,
        ModelKind::Peer => 2 * model.dim as u64 * model.product_key_layers().len() as u64,
        ModelKind::Memory | ModelKind::MemoryPlus => model.memory_layer().v_dim() as u64,
    }
}

/// Distinct value rows a micro-batch of `tokens` can read: every read distinct, at most the table.
fn value_rows_read(model: &TransformerConfig, tokens: usize) -> u64 {
    let pk = &model.product_keys;
    let layers = match model.kind {
        ModelKind::Peer => 1,
        _ => model.product_key_layers().len(),
    };
    ((tokens * pk.heads * pk.knn * layers) as u64).min(rows(model))
}

/// f32 values a token keeps for the backward pass, over every block and the output head.
///
/// A block keeps its input and the normalised input of each of its halves, the attention's
/// rotated queries and keys, values and output, and its FFN slot's own: SwiGLU the two hidden
/// projections and their gated product; a memory layer its query, the sub-key scores of both
/// halves, the selected rows' weights and indices, and its output and gate; an MoE the hidden
/// projections of the experts a token visits. The head keeps the final norm's input and
/// output and the logits; the backward pass adds the logits' gradient.
fn activation_floats_per_token(model: &TransformerConfig) -> u64 {
    let d = model.dim as u64;
    let kv = (model.kv_heads * model.head_dim()) as u64;
    let hidden = model.ffn_hidden as u64;
    // The block's input, its norm, the rotated queries, the output, the FFN half's input;
    // the rotated keys and the values.
    let attention = 5 * d + 2 * kv;
    let swiglu = d + 3 * hidden;
    let pk = &model.product_keys;
    let product_keys = (pk.heads * (2 * pk.k_dim + 2 * pk.n_keys) + 3 * pk.heads * pk.knn) as u64;
    let memory_layers = model.product_key_layers();
    let ffn = |layer: usize| match model.kind {
        ModelKind::Moe => model.moe.top_k as u64 * swiglu + model.moe.experts as u64,
        ModelKind::Memory | ModelKind::MemoryPlus if memory_layers.contains(&layer) => {
            d + product_keys + 4 * model.memory_layer().v_dim() as u64
        }
        ModelKind::Peer if memory_layers.contains(&layer) => {
            d + product_keys + 3 * (pk.heads * pk.knn) as u64
        }
        _ => swiglu,
    };
    let blocks: u64 = (0..model.layers).map(|layer| attention + ffn(layer)).sum();
    let vocab = model.vocab_size as u64;
    blocks + 2 * d + 2 * vocab
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;
    use burn::module::Module;
    use memory_layers_zoo::Size;

    use super::*;

    fn estimate(config: &TrainConfig) -> MemoryEstimate {
        MemoryEstimate::new(config, None, AttentionKernel::Tiled)
    }

    fn tiny() -> TrainConfig {
        TrainConfig::new(ModelKind::MemoryPlus, Size::Tiny)
    }

    #[test]
    fn parameters_and_states_are_the_models_own_counts() {
        let config = tiny();
        let model = config.model.init::<Flex>(&Default::default()).unwrap();
        let pool = model.pool.as_ref().expect("Memory+ has a pool");
        let values = pool.num_params() as u64;
        let dense = model.num_params() as u64 - values;
        let e = estimate(&config);
        assert_eq!((e.dense_params, e.value_params), (4 * dense, 4 * values));
        assert_eq!(e.dense_grads, 4 * dense);
        assert_eq!(e.dense_optimizer, 8 * dense, "two AdamW moments");
        assert_eq!(
            e.value_optimizer,
            8 * values,
            "sparse AdamW keeps two moments per value"
        );
        // 8 × 64 tokens, 3 layers, 4 heads × 16 reads: more reads than the 256 rows.
        let width = config.model.memory_layer().v_dim() as u64;
        assert_eq!(e.value_grads, 4 * 256 * width);

        let mut adagrad = config.clone();
        adagrad.optim.value_optimizer = ValueOptimizer::RowwiseAdagrad;
        assert_eq!(estimate(&adagrad).value_optimizer, 4 * 256);
        let mut sgd = config.clone();
        sgd.optim.value_optimizer = ValueOptimizer::Sgd;
        assert_eq!(estimate(&sgd).value_optimizer, 0);

        // Two peers sharing the pool hold half of it each, and half of each batch.
        let layout = Layout {
            devices: 2,
            memory_parallel: 2,
        };
        let shared = MemoryEstimate::new(&config, Some(&layout), AttentionKernel::Tiled);
        assert_eq!(shared.value_params, e.value_params / 2);
        assert_eq!(shared.activations, e.activations / 2);
    }

    #[test]
    fn activations_grow_with_the_tokens_of_a_micro_batch() {
        let mut config = tiny();
        let one = estimate(&config);
        config.optim.batch_size *= 2;
        let two = estimate(&config);
        assert_eq!(two.activations, 2 * one.activations);
        assert_eq!(two.dense_params, one.dense_params);
        config.optim.seq_len *= 2;
        assert_eq!(estimate(&config).activations, 4 * one.activations);
    }

    #[test]
    fn paper_presets_split_their_step_to_fit_an_80_gb_gpu() {
        for size in [Size::M134, Size::M373, Size::M720, Size::B1_3, Size::B8] {
            for kind in [ModelKind::Dense, ModelKind::MemoryPlus] {
                let config = TrainConfig::new(kind, size);
                let optim = &config.optim;
                assert_eq!(optim.batch_size * optim.grad_accum, 8, "{kind} {size}");
                let needed = MemoryEstimate::new(&config, None, AttentionKernel::Chunked).total();
                // The largest micro-batch that fits: twice it would not.
                let mut twice = config.clone();
                twice.optim.batch_size *= 2;
                let bigger = MemoryEstimate::new(&twice, None, AttentionKernel::Chunked).total();
                let fits = needed <= 80_000_000_000;
                assert!(fits || optim.batch_size == 1, "{kind} {size}: {needed}");
                assert!(
                    optim.batch_size == 8 || bigger > 80_000_000_000,
                    "{kind} {size}"
                );
            }
        }
        let memory_plus = TrainConfig::new(ModelKind::MemoryPlus, Size::M373).optim;
        assert_eq!((memory_plus.batch_size, memory_plus.grad_accum), (4, 2));
    }

    #[test]
    fn a_run_that_does_not_fit_is_refused_with_flags_that_do() {
        let mut config = tiny();
        config.optim.batch_size = 64;
        let e = estimate(&config);
        // Room for everything but three quarters of the activations, and for the gradients
        // an accumulating step holds across its micro-batches.
        let available = e.total() - e.activations * 3 / 4 + e.dense_grads + e.value_grads;
        let err =
            MemoryEstimate::check(&config, None, AttentionKernel::Tiled, available).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("activations (one micro-batch)"),
            "{message}"
        );
        assert!(
            message.contains("--batch-size 16 --grad-accum 4"),
            "{message}"
        );
        let TrainError::DoesNotFit {
            estimate,
            available: offered,
            advice,
        } = err
        else {
            panic!("not DoesNotFit: {message}")
        };
        assert_eq!((*estimate, offered), (e, available));
        assert!(
            matches!(
                advice,
                FitAdvice::Fits {
                    batch: Some((16, 4)),
                    value_optimizer: None,
                    needed,
                } if needed <= available
            ),
            "{advice:?}"
        );
        assert!(MemoryEstimate::check(&config, None, AttentionKernel::Tiled, e.total()).is_ok());
    }
}
