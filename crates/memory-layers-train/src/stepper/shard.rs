//! A [`Stepper`] and its optimizer state cut into each rank's share of a parallel run, and
//! joined again.

use burn::module::{Module, ParamId};
use burn::optim::AdamWState;
use burn::optim::Optimizer;
use burn::optim::record::AdaptorRecord;
use burn::tensor::Tensor;
use memory_layers_values::{RowOptimizer, ValueTable};
use memory_layers_zoo::Transformer;

use super::tuning::Tuning;
use super::{Stepper, route_value_grads};
use crate::config::ValueOptimizer;
use crate::optim::{row_rule, value_param_ids};
use crate::{Rank, TrainBackend, TrainError};

/// Parallel runs: every rank holds the same stepper restricted to its columns of the pool.
impl<B: TrainBackend> Stepper<B> {
    /// A copy of this whole stepper for `rank` on its `device`: its share of the global batch
    /// per step (`batch_size / world`) and its columns of the pool and of the pool's optimizer
    /// state.
    /// The parameters are forked: ranks that shared autodiff leaves would share one autodiff
    /// graph, and one rank's backward (which waits in collectives) would block the others'
    /// forward.
    pub fn for_rank(
        &self,
        rank: &Rank<B::InnerBackend>,
        device: &B::Device,
    ) -> Result<Self, TrainError> {
        let mut config = self.config.clone();
        config.batch_size /= rank.world();
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
            tuning: Tuning::All,
        }
        .shard(rank)
    }

    /// This stepper (the same on every rank) restricted to `rank`'s share: its columns of the
    /// pool and of the pool's optimizer state (lazy or dense AdamW moments).
    pub fn shard(mut self, rank: &Rank<B::InnerBackend>) -> Result<Self, TrainError> {
        let sharded = self.model.pool.is_some() && rank.shards() > 1;
        if sharded && self.config.value_optimizer == ValueOptimizer::RowwiseAdagrad {
            return Err(TrainError::Parallel(format!(
                "a value pool sharded over --memory-layers-parallel {} devices cannot train with \
                 rowwise-adagrad (one accumulator per whole row); use sparse-adamw or \
                 dense-adamw, or --memory-layers-parallel 1",
                rank.shards()
            )));
        }
        let whole = self
            .model
            .pool
            .as_ref()
            .map(|p| (p.weight.id, p.weight.dims()[1]));
        self.model = shard_pool(rank, self.model)?;
        route_value_grads(&mut self.model, !self.row_optims.is_empty());
        self.value_ids = value_param_ids(&self.model);
        if let (Some((id, d)), true) = (whole, sharded) {
            let (offset, width) = rank.pool_columns(d);
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

    /// The whole stepper from every rank's share (every rank calls it at the same time; all
    /// get the result): the pool and its optimizer state gathered from their column shards
    /// within this rank's memory group.
    pub fn gather(&self, rank: &Rank<B::InnerBackend>) -> Result<Self, TrainError> {
        let mut full = Self {
            model: self.model.clone(),
            optim: self.optim.clone(),
            value_optim: self.value_optim.clone(),
            value_ids: Vec::new(),
            row_optims: self.row_optims.clone(),
            config: self.config.clone(),
            tuning: Tuning::All,
        };
        // The whole batch again (`for_rank` gave each rank its share).
        full.config.batch_size *= rank.world();
        if let (Some(pool), true) = (&self.model.pool, rank.shards() > 1) {
            let d = pool.columns().total;
            let values = rank.gather_columns(pool.weight.val().inner())?;
            let mut table = ValueTable::from_tensor(Tensor::from_inner(values), 0, d)?;
            table.set_sparse_grads(pool.sparse_sink().is_some());
            let shard_id = pool.weight.id;
            full.model.pool = Some(table);
            match self.row_optims.first() {
                None => full.map_pool_adamw(shard_id, |t| rank.gather_columns(t))?,
                Some(pool_optim) => {
                    let mut record = pool_optim.to_record();
                    let gather =
                        |t: Option<Tensor<B, 2>>| -> Result<Option<Tensor<B, 2>>, TrainError> {
                            t.map(|t| Ok(Tensor::from_inner(rank.gather_columns(t.inner())?)))
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

    /// Moves dense AdamW's state of the pool from parameter `from` to the pool this stepper
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

/// Keeps `rank`'s columns of the pool of `model`, which holds the same values on every
/// rank (materialised: Burn initialises parameters lazily, separately in each clone) in
/// tensors of its own (`Module::fork`: ranks sharing autodiff leaves share one graph).
fn shard_pool<B: TrainBackend>(
    rank: &Rank<B::InnerBackend>,
    mut model: Transformer<B>,
) -> Result<Transformer<B>, TrainError> {
    let p = rank.shards();
    if p == 1 {
        return Ok(model);
    }
    if let Some(pool) = model.pool.take() {
        let [rows, d] = pool.weight.dims();
        if !d.is_multiple_of(p) {
            return Err(TrainError::Parallel(format!(
                "the value dimension {d} is not divisible by --memory-layers-parallel {p}"
            )));
        }
        let (offset, w) = rank.pool_columns(d);
        // Sliced outside the graph, so the shard is a fresh leaf parameter.
        let columns = Tensor::from_inner(
            pool.weight
                .val()
                .inner()
                .slice([0..rows, offset..offset + w]),
        );
        model.pool = Some(ValueTable::from_tensor(columns, offset, d)?);
    }
    Ok(model)
}
