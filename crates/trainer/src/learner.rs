//! One optimizer step: the model, its optimizer groups (AdamW for the model, dense AdamW or a
//! row-wise optimizer per value table), and the step itself. The training loop and the
//! benchmarks share it.

use std::path::Path;

use burn::module::{Module, ParamId};
use burn::optim::AdamWState;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::record::AdaptorRecord;
use burn::optim::{AdamW, GradientsAccumulator, GradientsParams, Optimizer};
use burn::record::{BinFileRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{ElementConversion, Tensor};
use memory_layer::{MemoryBackend, UsageStats, UsageSummary, ValueStore};
use memory_parallel::ShardedBackend;
use memory_values::{RowGrads, RowOptimizer, RowOptimizerRecord, ValueBackend};
use model_zoo::Transformer;

use crate::TrainError;
use crate::config::{OptimConfig, ValueOptimizer};
use crate::loss::lm_loss;
use crate::optim::{
    adamw, clip_factor, clip_global_norm, row_rule, row_squared_norms, scale_grads, scale_rows,
    value_param_ids, value_squared_norms, value_tables, value_tables_mut,
};
use crate::parallel::Peer;

type Rec = BinFileRecorder<FullPrecisionSettings>;
type Adam<B> = OptimizerAdaptor<AdamW, Transformer<B>, B>;

/// The model and its optimizer groups.
pub struct Learner<B: AutodiffBackend> {
    /// The model being trained.
    pub model: Transformer<B>,
    optim: Adam<B>,
    /// Dense AdamW of the value tables (with `value_optimizer = dense-adamw`).
    value_optim: Adam<B>,
    value_ids: Vec<ParamId>,
    /// One row-wise optimizer per value table (otherwise), in [`value_tables`] order.
    row_optims: Vec<RowOptimizer<B>>,
    config: OptimConfig,
}

/// What one step measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepReport {
    /// Mean loss over the micro-batches.
    pub loss: f64,
    /// Global gradient norm of all parameters but the values, before clipping.
    pub grad_norm: f64,
    /// Global gradient norm of the values, before clipping.
    pub value_grad_norm: f64,
    /// Usage of the first product-key layer on the last micro-batch, when asked for.
    pub usage: Option<UsageSummary>,
}

pub(crate) fn checkpoint_error(path: &Path, e: impl std::fmt::Display) -> TrainError {
    TrainError::Checkpoint {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

impl<B> Learner<B>
where
    B: AutodiffBackend + MemoryBackend,
{
    /// Fresh optimizer state for `model`. With a row-wise value optimizer, the value tables
    /// are switched to sparse gradients.
    pub fn new(mut model: Transformer<B>, config: &OptimConfig) -> Self {
        let adamw = adamw(config);
        let rule = row_rule(config);
        route_value_grads(&mut model, rule.is_some());
        let row_optims = match rule {
            Some(rule) => value_tables(&model)
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
        }
    }

    /// One step over `micro_batches` (each `batch_size` windows of `seq_len + 1` tokens) at
    /// learning-rate multiplier `multiplier`. With `usage_of = Some(size)`, the first
    /// product-key layer's usage on the last micro-batch is reported.
    pub fn step(
        &mut self,
        micro_batches: &[Vec<u32>],
        multiplier: f64,
        usage_of: Option<usize>,
        device: &B::Device,
    ) -> Result<StepReport, TrainError> {
        self.step_with(micro_batches, multiplier, usage_of, device, None)
    }

    fn step_with(
        &mut self,
        micro_batches: &[Vec<u32>],
        multiplier: f64,
        usage_of: Option<usize>,
        device: &B::Device,
        exchange: Option<&dyn Exchange<B>>,
    ) -> Result<StepReport, TrainError> {
        let o = &self.config;
        let count = micro_batches.len().max(1);
        let store = match exchange {
            Some(exchange) => exchange.values(&self.model)?,
            None => None,
        };
        let mut main = GradientsAccumulator::<Transformer<B>>::new();
        let mut values = GradientsAccumulator::<Transformer<B>>::new();
        let (mut loss_sum, mut usage) = (0.0, None);
        for (i, tokens) in micro_batches.iter().enumerate() {
            let (loss, output) =
                lm_loss(&self.model, tokens, o.batch_size, device, store.as_deref())?;
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
            if let (Some(size), true, Some((_, memory))) =
                (usage_of, i + 1 == count, output.memory.first())
            {
                let mut stats = UsageStats::new(size);
                if stats.record(memory).is_ok() {
                    usage = Some(stats.summary());
                }
            }
        }
        drop(store);
        let (mut main, mut values) = (main.grads(), values.grads());
        let mut rows = Vec::with_capacity(self.row_optims.len());
        if !self.row_optims.is_empty() {
            for table in value_tables(&self.model) {
                rows.push(table.take_row_grads()?);
            }
        }
        let mut loss = loss_sum / count as f64;
        let dense = self.row_optims.is_empty();
        if let Some(exchange) = exchange {
            exchange.average(&self.model, &mut main)?;
            if dense {
                exchange.average_values(&self.model, &mut values)?;
            } else {
                rows = exchange.average_rows(&self.model, rows)?;
            }
            loss = exchange.sum(loss)? / exchange.world() as f64;
        }
        let grad_norm = clip_global_norm(&self.model, &mut main, o.grad_clip);
        // The values' norm covers each table once: a table held by `c` peers (shards'
        // replicas, replicated tables) has the same averaged gradient on all of them.
        let squares = if dense {
            value_squared_norms(&self.model, &values)
        } else {
            row_squared_norms(&rows)
        };
        let value_grad_norm = match exchange {
            Some(exchange) => {
                let copies = exchange.table_copies(&self.model);
                let local = squares.iter().zip(copies).map(|(s, c)| s / c as f64);
                exchange.sum(local.sum())?
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
        let tables = value_tables_mut(&mut self.model);
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

    /// Writes model and optimizer records into folder `dir`.
    pub fn save(&self, dir: &Path) -> Result<(), TrainError> {
        let recorder = Rec::default();
        let fail = |e| checkpoint_error(dir, e);
        self.model
            .clone()
            .save_file(dir.join("model"), &recorder)
            .map_err(fail)?;
        recorder
            .record(self.optim.to_record(), dir.join("optim"))
            .map_err(fail)?;
        recorder
            .record(self.value_optim.to_record(), dir.join("value_optim"))
            .map_err(fail)?;
        let rows: Vec<RowOptimizerRecord<B>> = self
            .row_optims
            .iter()
            .map(RowOptimizer::to_record)
            .collect();
        recorder.record(rows, dir.join("value_rows")).map_err(fail)
    }

    /// Loads model and optimizer records from folder `dir`.
    pub fn load(mut self, dir: &Path, device: &B::Device) -> Result<Self, TrainError> {
        let recorder = Rec::default();
        let fail = |e| checkpoint_error(dir, e);
        self.model = load_model(self.model, dir, device)?;
        // Parameter ids come with the record: the value group must be found again.
        self.value_ids = value_param_ids(&self.model);
        self.optim = self
            .optim
            .load_record(recorder.load(dir.join("optim"), device).map_err(fail)?);
        self.value_optim = self.value_optim.load_record(
            recorder
                .load(dir.join("value_optim"), device)
                .map_err(fail)?,
        );
        let rows: Vec<RowOptimizerRecord<B>> = recorder
            .load(dir.join("value_rows"), device)
            .map_err(fail)?;
        if rows.len() != self.row_optims.len() {
            return Err(checkpoint_error(
                dir,
                format!(
                    "the checkpoint has {} row-wise value optimizers, this run {} \
                     (was it saved with another value_optimizer?)",
                    rows.len(),
                    self.row_optims.len()
                ),
            ));
        }
        self.row_optims = self
            .row_optims
            .into_iter()
            .zip(rows)
            .map(|(optim, record)| optim.load_record(record))
            .collect::<Result<_, _>>()?;
        Ok(self)
    }
}

/// Parallel runs: every peer holds the same learner restricted to its columns of the pool.
impl<B> Learner<B>
where
    B: AutodiffBackend + MemoryBackend,
{
    /// A copy of this whole learner for `peer` on its `device`: its share of the global batch
    /// per step (`batch_size / world`) and its columns of the pool and of the pool's optimizer
    /// state.
    /// The parameters are forked: peers that shared autodiff leaves would share one autodiff
    /// graph, and one peer's backward (which waits in collectives) would block the others'
    /// forward.
    pub fn for_peer(
        &self,
        peer: &Peer<B::InnerBackend>,
        device: &B::Device,
    ) -> Result<Self, TrainError> {
        let mut config = self.config.clone();
        config.batch_size /= peer.world();
        Self {
            model: self.model.clone().fork(device),
            optim: self.optim.clone(),
            value_optim: self.value_optim.clone(),
            value_ids: self.value_ids.clone(),
            row_optims: self
                .row_optims
                .iter()
                .map(|o| o.clone().to_device(device))
                .collect(),
            config,
        }
        .shard(peer)
    }

    /// This learner (the same on every peer) restricted to `peer`'s share: its columns of the
    /// pool and of the pool's optimizer state (lazy or dense AdamW moments).
    pub fn shard(mut self, peer: &Peer<B::InnerBackend>) -> Result<Self, TrainError> {
        let sharded = self.model.pool.is_some() && peer.shards() > 1;
        if sharded && self.config.value_optimizer == ValueOptimizer::RowwiseAdagrad {
            return Err(TrainError::Parallel(format!(
                "a value pool sharded over --memory-parallel {} devices cannot train with \
                 rowwise-adagrad (one accumulator per whole row); use sparse-adamw or \
                 dense-adamw, or --memory-parallel 1",
                peer.shards()
            )));
        }
        let whole = self
            .model
            .pool
            .as_ref()
            .map(|p| (p.weight.id, p.weight.dims()[1]));
        self.model = peer.shard(self.model)?;
        route_value_grads(&mut self.model, !self.row_optims.is_empty());
        self.value_ids = value_param_ids(&self.model);
        if let (Some((id, d)), true) = (whole, sharded) {
            let (offset, width) = peer.pool_columns(d);
            if self.row_optims.is_empty() {
                let rows = |t: Tensor<B::InnerBackend, 2>| {
                    let n = t.dims()[0];
                    Ok(t.slice([0..n, offset..offset + width]))
                };
                self.map_pool_adamw(id, rows)?;
            } else {
                let pool_optim = self.row_optims.remove(0);
                self.row_optims
                    .insert(0, pool_optim.columns(offset, width)?);
            }
        }
        Ok(self)
    }

    /// The whole learner from every peer's share (every peer calls it at the same time; all
    /// get the result): the pool and its optimizer state gathered from their column shards
    /// within this peer's memory group.
    pub fn gather(&self, peer: &Peer<B::InnerBackend>) -> Result<Self, TrainError> {
        let mut full = Self {
            model: self.model.clone(),
            optim: self.optim.clone(),
            value_optim: self.value_optim.clone(),
            value_ids: Vec::new(),
            row_optims: self.row_optims.clone(),
            config: self.config.clone(),
        };
        // The whole batch again (`for_peer` gave each peer its share).
        full.config.batch_size *= peer.world();
        if let (Some(pool), true) = (&self.model.pool, peer.shards() > 1) {
            let d = pool.columns().total;
            let values = peer.gather_columns(pool.weight.val().inner())?;
            let mut table =
                memory_values::ValueTable::from_tensor(Tensor::from_inner(values), 0, d)?;
            table.set_sparse_grads(pool.sparse_sink().is_some());
            let shard_id = pool.weight.id;
            full.model.pool = Some(table);
            match self.row_optims.first() {
                None => full.map_pool_adamw(shard_id, |t| peer.gather_columns(t))?,
                Some(pool_optim) => {
                    let mut record = pool_optim.to_record();
                    let gather =
                        |t: Option<Tensor<B, 2>>| -> Result<Option<Tensor<B, 2>>, TrainError> {
                            t.map(|t| Ok(Tensor::from_inner(peer.gather_columns(t.inner())?)))
                                .transpose()
                        };
                    record.m = gather(record.m)?;
                    record.v = gather(record.v)?;
                    let rule = row_rule(&self.config).expect("row optimizers exist");
                    let table = full.model.pool.as_ref().expect("set above");
                    full.row_optims[0] = RowOptimizer::new(rule, table).load_record(record)?;
                }
            }
        }
        full.value_ids = value_param_ids(&full.model);
        Ok(full)
    }

    /// Moves dense AdamW's state of the pool from parameter `from` to the pool this learner
    /// holds now, each moment through `f` (a column slice, or a gather of the shards).
    fn map_pool_adamw(
        &mut self,
        from: ParamId,
        mut f: impl FnMut(Tensor<B::InnerBackend, 2>) -> Result<Tensor<B::InnerBackend, 2>, TrainError>,
    ) -> Result<(), TrainError> {
        let to = self.model.pool.as_ref().map(|p| p.weight.id);
        let mut records = self.value_optim.to_record();
        if let (Some(record), Some(to)) = (records.remove(&from), to) {
            let mut state: AdamWState<B::InnerBackend, 2> = record.into_state();
            let m = &mut state.momentum;
            m.moment_1 = f(m.moment_1.clone())?;
            m.moment_2 = f(m.moment_2.clone())?;
            m.max_moment_2 = m.max_moment_2.clone().map(&mut f).transpose()?;
            records.insert(to, AdaptorRecord::from_state(state));
        }
        self.value_optim = self.value_optim.clone().load_record(records);
        Ok(())
    }
}

/// Value tables deliver sparse row gradients (for row-wise optimizers) or dense ones.
fn route_value_grads<B: AutodiffBackend>(model: &mut Transformer<B>, sparse: bool) {
    for table in value_tables_mut(model) {
        table.set_sparse_grads(sparse);
    }
}

/// Loads the model saved in checkpoint folder `dir` into `model`.
pub fn load_model<B: burn::tensor::backend::Backend>(
    model: Transformer<B>,
    dir: &Path,
    device: &B::Device,
) -> Result<Transformer<B>, TrainError> {
    model
        .load_file(dir.join("model"), &Rec::default(), device)
        .map_err(|e| checkpoint_error(dir, e))
}

/// What a parallel step adds to a single-device one ([`Peer`] implements it).
trait Exchange<B: AutodiffBackend> {
    /// The store the memory layers read instead of the model's pool.
    fn values<'a>(
        &'a self,
        model: &'a Transformer<B>,
    ) -> Result<Option<Box<dyn ValueStore<B> + 'a>>, TrainError>;
    /// Averages `grads` of `model` over the peers.
    fn average(
        &self,
        model: &Transformer<B>,
        grads: &mut GradientsParams,
    ) -> Result<(), TrainError>;
    /// Averages the dense value-table gradients in `grads` over the peers holding each table.
    fn average_values(
        &self,
        model: &Transformer<B>,
        grads: &mut GradientsParams,
    ) -> Result<(), TrainError>;
    /// Averages sparse value-table gradients over the peers holding each table.
    fn average_rows(
        &self,
        model: &Transformer<B>,
        rows: Vec<Option<RowGrads<B>>>,
    ) -> Result<Vec<Option<RowGrads<B>>>, TrainError>;
    /// How many peers hold each value table.
    fn table_copies(&self, model: &Transformer<B>) -> Vec<usize>;
    /// Sum of `value` over the peers.
    fn sum(&self, value: f64) -> Result<f64, TrainError>;
    /// Number of peers.
    fn world(&self) -> usize;
}

impl<B> Exchange<B> for Peer<B::InnerBackend>
where
    B: AutodiffBackend
        + MemoryBackend
        + ShardedBackend<Comm = <B as AutodiffBackend>::InnerBackend>,
    B::InnerBackend: ValueBackend,
{
    fn values<'a>(
        &'a self,
        model: &'a Transformer<B>,
    ) -> Result<Option<Box<dyn ValueStore<B> + 'a>>, TrainError> {
        Ok(Peer::values(self, model)?.map(|v| Box::new(v) as Box<dyn ValueStore<B>>))
    }

    fn average(
        &self,
        model: &Transformer<B>,
        grads: &mut GradientsParams,
    ) -> Result<(), TrainError> {
        Peer::average(self, model, grads)
    }

    fn average_values(
        &self,
        model: &Transformer<B>,
        grads: &mut GradientsParams,
    ) -> Result<(), TrainError> {
        Peer::average_values(self, model, grads)
    }

    fn average_rows(
        &self,
        model: &Transformer<B>,
        rows: Vec<Option<RowGrads<B>>>,
    ) -> Result<Vec<Option<RowGrads<B>>>, TrainError> {
        Peer::average_rows(self, model, rows)
    }

    fn table_copies(&self, model: &Transformer<B>) -> Vec<usize> {
        Peer::table_copies(self, model)
    }

    fn sum(&self, value: f64) -> Result<f64, TrainError> {
        Peer::sum(self, value)
    }

    fn world(&self) -> usize {
        Peer::world(self)
    }
}

impl<B> Learner<B>
where
    B: AutodiffBackend
        + MemoryBackend
        + ShardedBackend<Comm = <B as AutodiffBackend>::InnerBackend>,
    B::InnerBackend: ValueBackend,
{
    /// [`step`](Self::step) as one peer of a parallel run: `micro_batches` are this peer's
    /// slice of the global batch, the model was [sharded](Peer::shard) for `peer`, and every
    /// peer calls this at the same time. The report's loss is the mean over the peers.
    pub fn step_parallel(
        &mut self,
        peer: &Peer<B::InnerBackend>,
        micro_batches: &[Vec<u32>],
        multiplier: f64,
        usage_of: Option<usize>,
        device: &B::Device,
    ) -> Result<StepReport, TrainError> {
        self.step_with(micro_batches, multiplier, usage_of, device, Some(peer))
    }
}
