//! One rank of a data-parallel run with the value pool sharded over the ranks (parallel
//! memory), and the collectives its step runs.
//!
//! Every rank runs the same [`Stepper`](crate::Stepper) step on its slice of the global batch.
//! The ranks form a [`Mesh`] of `N/P` replicas × `P` shards: within a memory group of `P`
//! ranks the pool's columns are split ([`ShardedValues`]), each rank holding `d/P` of every
//! value row; the `N/P` ranks holding the same columns average their value gradient (dense, or
//! sparse rows), PEER expert tables are replicated on every rank and averaged over all of them,
//! and every other gradient is averaged over all ranks. The result follows a single device
//! that sees the whole global batch (tested over 30 steps).

use std::sync::Arc;

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Tensor};
use memory_layers_parallel::{Collective, Group, Mesh, ShardedBackend, ShardedValues};
use memory_layers_values::{RowGrads, ValueBackend};
use memory_layers_zoo::Transformer;

use crate::TrainError;

/// This rank of a parallel run: its place in the mesh of ranks. `B` is the backend the
/// collectives run on (the inner backend of the training backend).
#[derive(Debug, Clone)]
pub struct Rank<B: Backend> {
    mesh: Mesh<B>,
    device: B::Device,
}

impl<B: Backend> Rank<B> {
    /// Rank `collective.rank()` among all `collective.world()` ranks, on `device`, in memory
    /// groups of `memory_parallel` ranks.
    pub fn new(
        collective: Arc<dyn Collective<B>>,
        device: B::Device,
        memory_parallel: usize,
    ) -> Result<Self, TrainError> {
        Ok(Self {
            mesh: Mesh::new(collective, memory_parallel)?,
            device,
        })
    }

    /// This rank's index among the ranks.
    pub fn index(&self) -> usize {
        self.mesh.world().position()
    }

    /// Number of ranks.
    pub fn world(&self) -> usize {
        self.mesh.world().size()
    }

    /// Ranks sharing one copy of the value pool (`P`).
    pub fn shards(&self) -> usize {
        self.mesh.memory().size()
    }

    /// Where this rank's pool columns start, and how many it holds, for a pool `d` wide.
    pub(crate) fn pool_columns(&self, d: usize) -> (usize, usize) {
        let w = d / self.shards();
        (self.mesh.memory().position() * w, w)
    }

    /// The whole `[rows, d]` table from every rank's `[rows, d/P]` column shard (every rank
    /// calls it; all get the result).
    pub(crate) fn gather_columns(&self, shard: Tensor<B, 2>) -> Result<Tensor<B, 2>, TrainError> {
        let [rows, _] = shard.dims();
        let stacked = self.mesh.memory().all_gather(shard)?;
        Ok(Tensor::cat(
            (0..self.shards())
                .map(|j| stacked.clone().narrow(0, j * rows, rows))
                .collect(),
            1,
        ))
    }

    /// Every rank's outcome of a step that only some ranks did (rank 0 writing a
    /// checkpoint): all succeed, or all fail, so that no rank waits for one that stopped.
    pub(crate) fn agree(&self, result: Result<(), TrainError>) -> Result<(), TrainError> {
        let failures = self.sum(if result.is_err() { 1.0 } else { 0.0 })?;
        match result {
            Err(e) => Err(e),
            Ok(()) if failures > 0.0 => Err(TrainError::Parallel(format!(
                "{failures} peer(s) failed; peer {} stops with them",
                self.index()
            ))),
            Ok(()) => Ok(()),
        }
    }

    /// Sum of `value` over the ranks.
    pub(crate) fn sum(&self, value: f64) -> Result<f64, TrainError> {
        let t = Tensor::<B, 1>::from_floats([value as f32], &self.device);
        let sum = self.mesh.world().all_reduce(t)?;
        Ok(sum.into_scalar().elem::<f64>())
    }

    /// Replaces every gradient in `grads` of `model`'s parameters by its mean over the ranks
    /// (one all-reduce per parameter, in the model's order, the same on every rank).
    pub(crate) fn average<A, M>(
        &self,
        model: &M,
        grads: &mut GradientsParams,
    ) -> Result<(), TrainError>
    where
        A: AutodiffBackend<InnerBackend = B>,
        M: Module<A>,
    {
        struct Average<'a, B: Backend> {
            rank: &'a Rank<B>,
            grads: &'a mut GradientsParams,
            error: Option<TrainError>,
        }
        impl<A: AutodiffBackend> ModuleVisitor<A> for Average<'_, A::InnerBackend> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<A, D>>) {
                if self.error.is_some() {
                    return;
                }
                let Some(g) = self.grads.remove::<A::InnerBackend, D>(param.id) else {
                    return;
                };
                match mean(self.rank.mesh.world(), g) {
                    Ok(mean) => self.grads.register(param.id, mean),
                    Err(e) => self.error = Some(e),
                }
            }
        }
        let mut visitor = Average {
            rank: self,
            grads,
            error: None,
        };
        model.visit(&mut visitor);
        visitor.error.map_or(Ok(()), Err)
    }

    /// The ranks each value table of `model` (in [`value_tables`] order) is replicated on:
    /// the pool's shard replicas, then every rank for PEER's expert tables.
    fn table_groups<A: AutodiffBackend>(&self, model: &Transformer<A>) -> Vec<&Group<B>> {
        let pool = model.pool.iter().map(|_| self.mesh.replicas());
        let tables = model.value_tables().len();
        pool.chain(std::iter::repeat(self.mesh.world()))
            .take(tables)
            .collect()
    }

    /// How many ranks hold each value table of `model` (in [`value_tables`] order): its
    /// averaged gradient is the same on all of them.
    pub(crate) fn table_copies<A: AutodiffBackend>(&self, model: &Transformer<A>) -> Vec<usize> {
        self.table_groups(model).iter().map(|g| g.size()).collect()
    }

    /// Replaces the dense gradients of `model`'s value tables in `grads` by their mean over
    /// the ranks holding each table.
    pub(crate) fn average_values<A>(
        &self,
        model: &Transformer<A>,
        grads: &mut GradientsParams,
    ) -> Result<(), TrainError>
    where
        A: AutodiffBackend<InnerBackend = B>,
    {
        for (table, group) in model
            .value_tables()
            .into_iter()
            .zip(self.table_groups(model))
        {
            if let Some(g) = grads.remove::<B, 2>(table.weight.id) {
                grads.register(table.weight.id, mean(group, g)?);
            }
        }
        Ok(())
    }

    /// The mean of each value table's sparse row gradients (in [`value_tables`] order) over
    /// the ranks holding the table.
    pub(crate) fn average_rows<A>(
        &self,
        model: &Transformer<A>,
        rows: Vec<Option<RowGrads<A>>>,
    ) -> Result<Vec<Option<RowGrads<A>>>, TrainError>
    where
        A: AutodiffBackend<InnerBackend = B>,
        B: ValueBackend,
    {
        let tables = model.value_tables();
        rows.into_iter()
            .zip(tables.iter().zip(self.table_groups(model)))
            .map(|(rows, (table, group))| {
                let local = rows.map(|g| RowGrads {
                    ids: g.ids.inner(),
                    rows: g.rows.inner(),
                });
                let summed = group.sum_rows(local, table.columns().width, &self.device)?;
                Ok(summed.map(|g| RowGrads {
                    ids: Tensor::from_inner(g.ids),
                    rows: Tensor::from_inner(g.rows.div_scalar(group.size() as f64)),
                }))
            })
            .collect()
    }

    /// The store the memory layers of `model` read: its pool sharded over the memory group,
    /// or `None` (the pool itself) when every rank holds a whole copy.
    pub(crate) fn values<'a, A>(
        &'a self,
        model: &'a Transformer<A>,
    ) -> Result<Option<ShardedValues<'a, A>>, TrainError>
    where
        A: AutodiffBackend<InnerBackend = B> + ShardedBackend<Comm = B>,
    {
        if self.shards() == 1 {
            return Ok(None);
        }
        model
            .pool
            .as_ref()
            .map(|pool| ShardedValues::new(pool, self.mesh.memory()).map_err(TrainError::from))
            .transpose()
    }
}

/// The mean of `tensor` over `group`.
fn mean<B: Backend, const D: usize>(
    group: &Group<B>,
    tensor: Tensor<B, D>,
) -> Result<Tensor<B, D>, TrainError> {
    Ok(group.all_reduce(tensor)?.div_scalar(group.size() as f64))
}
