//! One optimizer step: the model, its optimizer groups (AdamW for the model, dense AdamW or a
//! row-wise optimizer per value table), and the step itself, alone or as one rank of a
//! parallel run; for finetuning, with some parameters frozen or low-rank adapters trained
//! instead. The training loop and the benchmarks share it.

use burn::module::ParamId;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, GradientsAccumulator, GradientsParams, Optimizer};
use burn::tensor::ElementConversion;
use burn::tensor::backend::AutodiffBackend;
use memory_layers_nn::{MemoryOutput, UsageStats, ValueStore};
use memory_layers_values::RowOptimizer;
use memory_layers_zoo::{Lora, Transformer};

use crate::config::OptimConfig;
use crate::finetune::{Background, reads, retrieved};
use crate::loss::lm_loss;
use crate::optim::{
    adamw, clip_factor, clip_global_norm, row_rule, row_squared_norms, scale_grads, scale_rows,
    value_param_ids, value_squared_norms,
};
use crate::pool::on_pool;
use crate::{LayerUsage, Rank, TrainBackend, TrainError};

mod record;
mod shard;
mod streamed;
mod tuning;

use tuning::keep_rows;
pub(crate) use tuning::{Sparse, Tuning};

pub(crate) type Adam<B> = OptimizerAdaptor<AdamW, Transformer<B>, B>;

/// The model and its optimizer groups; [`step`](Self::step) trains it on one batch.
pub struct Stepper<B: AutodiffBackend> {
    /// The model being trained.
    pub model: Transformer<B>,
    optim: Adam<B>,
    /// Dense AdamW of the value tables (with `value_optimizer = dense-adamw`).
    value_optim: Adam<B>,
    value_ids: Vec<ParamId>,
    /// One row-wise optimizer per value table (otherwise), in [`value_tables`] order.
    row_optims: Vec<RowOptimizer<B>>,
    config: OptimConfig,
    tuning: Tuning<B>,
}

/// What one step measured.
#[derive(Debug, Clone, PartialEq)]
pub struct StepReport {
    /// Mean loss over the micro-batches.
    pub loss: f64,
    /// Global gradient norm of all parameters but the values, before clipping.
    pub grad_norm: f64,
    /// Global gradient norm of the values, before clipping.
    pub value_grad_norm: f64,
    /// Usage of every product-key layer on the last micro-batch, when asked for (empty
    /// otherwise, and for models without one).
    pub usage: Vec<LayerUsage>,
}

impl<B: TrainBackend> Stepper<B> {
    /// Fresh optimizer state for `model`. With a row-wise value optimizer, the value tables
    /// are switched to sparse gradients.
    pub fn new(model: Transformer<B>, config: &OptimConfig) -> Self {
        Self::tuned(model, config, Tuning::All)
    }

    /// A stepper that trains only the memory pool's rows, everything else frozen: the
    /// `memory` finetuning method, or with `sparse = Some((background, t))` sparse memory
    /// finetuning (each step's top `t` rows by TF-IDF against `background`).
    pub fn values_only(
        model: Transformer<B>,
        config: &OptimConfig,
        sparse: Option<(Background, usize)>,
    ) -> Self {
        let sparse = sparse.map(|(background, top_t)| Sparse { background, top_t });
        Self::tuned(model, config, Tuning::Values { sparse })
    }

    /// [`new`](Self::new) training what `tuning` says, everything else frozen.
    pub(crate) fn tuned(model: Transformer<B>, config: &OptimConfig, tuning: Tuning<B>) -> Self {
        let mut model = tuning.freeze(model);
        let adamw = adamw(config);
        let rule = row_rule(config);
        route_value_grads(&mut model, rule.is_some());
        let row_optims = match rule {
            Some(rule) => model
                .value_tables()
                .into_iter()
                .map(|table| RowOptimizer::new(rule, table))
                .collect(),
            None => Vec::new(),
        };
        Self {
            value_ids: value_param_ids(&model),
            model,
            optim: adamw.init(),
            value_optim: adamw.init(),
            row_optims,
            config: config.clone(),
            tuning,
        }
    }

    /// The model as evaluation and export see it: a LoRA tuning's adapters merged in.
    pub fn trained(&self) -> Transformer<B> {
        match &self.tuning {
            Tuning::Lora { lora, .. } => lora.merge(&self.model),
            _ => self.model.clone(),
        }
    }

    /// The adapters of a LoRA tuning.
    pub fn lora(&self) -> Option<&Lora<B>> {
        match &self.tuning {
            Tuning::Lora { lora, .. } => Some(lora),
            _ => None,
        }
    }

    /// One step over `micro_batches` (each `batch_size` windows of `seq_len + 1` tokens) at
    /// learning-rate multiplier `multiplier`. With `usage_of = Some(size)`, every
    /// product-key layer's usage on the last micro-batch is reported.
    pub fn step(
        &mut self,
        micro_batches: &[Vec<u32>],
        multiplier: f64,
        usage_of: Option<usize>,
        device: &B::Device,
    ) -> Result<StepReport, TrainError> {
        on_pool::<B, _>(|| self.step_with(micro_batches, multiplier, usage_of, device, None))
    }

    /// [`step`](Self::step) as one rank of a parallel run: `micro_batches` are this rank's
    /// slice of the global batch, the model was [sharded](Self::for_rank) for `rank`, and every
    /// rank calls this at the same time. The report's loss is the mean over the ranks.
    pub fn step_parallel(
        &mut self,
        rank: &Rank<B::InnerBackend>,
        micro_batches: &[Vec<u32>],
        multiplier: f64,
        usage_of: Option<usize>,
        device: &B::Device,
    ) -> Result<StepReport, TrainError> {
        self.step_with(micro_batches, multiplier, usage_of, device, Some(rank))
    }

    /// The step; with `rank`, the memory layers read the rank's sharded pool and every
    /// gradient, the loss and the values' norm are reduced over the ranks.
    pub(crate) fn step_with(
        &mut self,
        micro_batches: &[Vec<u32>],
        multiplier: f64,
        usage_of: Option<usize>,
        device: &B::Device,
        rank: Option<&Rank<B::InnerBackend>>,
    ) -> Result<StepReport, TrainError> {
        if let Tuning::Lora { .. } = self.tuning {
            return self.step_lora(micro_batches, multiplier, usage_of, device);
        }
        let o = &self.config;
        let count = micro_batches.len().max(1);
        let sharded = match rank {
            Some(rank) => rank.values(&self.model)?,
            None => None,
        };
        let store = sharded.as_ref().map(|s| s as &dyn ValueStore<B>);
        let mut main = GradientsAccumulator::<Transformer<B>>::new();
        let mut values = GradientsAccumulator::<Transformer<B>>::new();
        let (mut loss_sum, mut usage, mut read) = (0.0, Vec::new(), Vec::new());
        for (i, tokens) in micro_batches.iter().enumerate() {
            let (loss, output) = lm_loss(&self.model, tokens, o.batch_size, device, store)?;
            let objective = match output.aux_loss.clone() {
                Some(aux) => loss.clone() + aux,
                None => loss.clone(),
            };
            let mut grads = objective.div_scalar(count as f64).backward();
            loss_sum += loss.into_scalar().elem::<f64>();
            let value_grads =
                GradientsParams::from_params(&mut grads, &self.model, &self.value_ids);
            values.accumulate(&self.model, value_grads);
            main.accumulate(&self.model, GradientsParams::from_grads(grads, &self.model));
            if self.tuning.sparse().is_some() {
                read.extend(retrieved(&output.memory));
            }
            if let (Some(size), true) = (usage_of, i + 1 == count) {
                usage = layer_usage(&output.memory, size)?;
            }
        }
        let (mut main, mut values) = (main.grads(), values.grads());
        let mut rows = Vec::with_capacity(self.row_optims.len());
        if !self.row_optims.is_empty() {
            for table in self.model.value_tables() {
                rows.push(table.take_row_grads()?);
            }
        }
        // Sparse memory finetuning: only the step's top t rows by TF-IDF keep a gradient.
        if let Some(sparse) = self.tuning.sparse() {
            let top = sparse.background.top(&reads(read), sparse.top_t);
            rows = rows
                .into_iter()
                .map(|grads| grads.and_then(|g| keep_rows(g, &top)))
                .collect();
        }
        // Device backends check the step's lookup indices here, one read per table (after
        // the sinks are drained, so that a failed step leaves no rows behind).
        self.model.check_value_ranges()?;
        let mut loss = loss_sum / count as f64;
        let dense = self.row_optims.is_empty();
        if let Some(rank) = rank {
            rank.average(&self.model, &mut main)?;
            if dense {
                rank.average_values(&self.model, &mut values)?;
            } else {
                rows = rank.average_rows(&self.model, rows)?;
            }
            loss = rank.sum(loss)? / rank.world() as f64;
        }
        let grad_norm = clip_global_norm(&self.model, &mut main, o.grad_clip);
        // The values' norm covers each table once: a table held by `c` ranks (shards'
        // replicas, replicated tables) has the same averaged gradient on all of them.
        let squares = if dense {
            value_squared_norms(&self.model, &values)
        } else {
            row_squared_norms(&rows)
        };
        let value_grad_norm = match rank {
            Some(rank) => {
                let copies = rank.table_copies(&self.model);
                let local = squares.iter().zip(copies).map(|(s, c)| s / c as f64);
                rank.sum(local.sum())?
            }
            None => squares.iter().sum(),
        }
        .sqrt();
        if let Some(factor) = clip_factor(value_grad_norm, o.value_grad_clip) {
            if dense {
                scale_grads(&self.model, &mut values, factor);
            } else {
                scale_rows(&mut rows, factor);
            }
        }
        let model = self.model.clone();
        let model = self.optim.step(o.lr * multiplier, model, main);
        self.model = if self.value_ids.is_empty() || !self.row_optims.is_empty() {
            model
        } else {
            self.value_optim
                .step(o.value_lr * multiplier, model, values)
        };
        // The old model is gone: each table's buffers have one owner and update in place.
        let tables = self.model.value_tables_mut();
        for ((optim, table), grads) in self.row_optims.iter_mut().zip(tables).zip(rows) {
            if let Some(grads) = grads {
                optim.step(o.value_lr * multiplier, table, grads);
            }
        }
        Ok(StepReport {
            loss,
            grad_norm,
            value_grad_norm,
            usage,
        })
    }
}

impl<B: TrainBackend> Stepper<B> {
    /// A LoRA step: the loss of the model with the adapters applied, AdamW on the adapters
    /// (clipped at `grad_clip`); the model itself frozen. Alone only (finetuning is not
    /// parallel).
    fn step_lora(
        &mut self,
        micro_batches: &[Vec<u32>],
        multiplier: f64,
        usage_of: Option<usize>,
        device: &B::Device,
    ) -> Result<StepReport, TrainError> {
        let Tuning::Lora { lora, optim } = &mut self.tuning else {
            unreachable!("called for LoRA tunings only")
        };
        let o = &self.config;
        let count = micro_batches.len().max(1);
        let mut accumulated = GradientsAccumulator::<Lora<B>>::new();
        let (mut loss_sum, mut usage) = (0.0, Vec::new());
        for (i, tokens) in micro_batches.iter().enumerate() {
            // A graph per micro-batch: a backward pass consumes the one it runs through.
            let model = lora.apply(&self.model);
            let (loss, output) = lm_loss(&model, tokens, o.batch_size, device, None)?;
            let objective = match output.aux_loss.clone() {
                Some(aux) => loss.clone() + aux,
                None => loss.clone(),
            };
            let grads = objective.div_scalar(count as f64).backward();
            loss_sum += loss.into_scalar().elem::<f64>();
            accumulated.accumulate(&*lora, GradientsParams::from_grads(grads, &*lora));
            if let (Some(size), true) = (usage_of, i + 1 == count) {
                usage = layer_usage(&output.memory, size)?;
            }
        }
        self.model.check_value_ranges()?;
        let mut grads = accumulated.grads();
        let grad_norm = clip_global_norm(&*lora, &mut grads, o.grad_clip);
        *lora = optim.step(o.lr * multiplier, lora.clone(), grads);
        Ok(StepReport {
            loss: loss_sum / count as f64,
            grad_norm,
            value_grad_norm: 0.0,
            usage,
        })
    }
}

/// Usage of every product-key layer in `memory`, over a pool of `size` rows.
fn layer_usage<B: TrainBackend>(
    memory: &[(usize, MemoryOutput<B, 3>)],
    size: usize,
) -> Result<Vec<LayerUsage>, TrainError> {
    memory
        .iter()
        .map(|(layer, memory)| {
            let mut stats = UsageStats::new(size);
            stats.record(memory)?;
            Ok(LayerUsage::new(*layer, stats.summary()))
        })
        .collect()
}

/// Value tables deliver sparse row gradients (for row-wise optimizers) or dense ones.
pub(crate) fn route_value_grads<B: AutodiffBackend>(model: &mut Transformer<B>, sparse: bool) {
    for table in model.value_tables_mut() {
        table.set_sparse_grads(sparse);
    }
}
