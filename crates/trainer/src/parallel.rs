//! Data-parallel training with the value pool sharded over the peers (parallel memory).
//!
//! Every peer runs the same [`Learner`](crate::Learner) step on its slice of the global batch.
//! All peers form one memory group: the pool's columns are split over them
//! ([`ShardedValues`]), so each holds `d/P` of every value row and no value row is replicated;
//! every other gradient is averaged over the peers with an all-reduce. The result follows a
//! single device that sees the whole global batch (tested over 30 steps).

use std::sync::Arc;

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Tensor, TensorPrimitive};
use memory_parallel::{Collective, Group, ShardedBackend, ShardedValues};
use memory_values::ValueTable;
use model_zoo::{Ffn, Transformer};

use crate::TrainError;

/// This peer of a parallel run. `B` is the backend the collectives run on (the inner backend
/// of the training backend).
#[derive(Debug, Clone)]
pub struct Peer<B: Backend> {
    group: Group<B>,
    device: B::Device,
}

fn parallel_error(e: impl std::fmt::Display) -> TrainError {
    TrainError::Parallel(e.to_string())
}

impl<B: Backend> Peer<B> {
    /// The peer of rank `collective.rank()` among all `collective.world()` peers, on `device`.
    pub fn new(collective: Arc<dyn Collective<B>>, device: B::Device) -> Result<Self, TrainError> {
        let members = (0..collective.world()).collect();
        Ok(Self {
            group: Group::new(collective, members).map_err(parallel_error)?,
            device,
        })
    }

    /// This peer's rank.
    pub fn rank(&self) -> usize {
        self.group.position()
    }

    /// Number of peers.
    pub fn world(&self) -> usize {
        self.group.size()
    }

    /// Keeps this peer's columns of the pool of `model`, which holds the same values on every
    /// peer (materialised: Burn initialises parameters lazily, separately in each clone) in
    /// tensors of its own (`Module::fork`: peers sharing autodiff leaves share one graph).
    /// Models whose PEER expert tables would be replicated are not supported yet.
    pub fn shard<A>(&self, mut model: Transformer<A>) -> Result<Transformer<A>, TrainError>
    where
        A: AutodiffBackend<InnerBackend = B>,
    {
        if model.blocks.iter().any(|b| matches!(b.ffn, Ffn::Peer(_))) {
            return Err(TrainError::Parallel(
                "PEER models cannot train on several devices yet (their expert tables would be \
                 replicated and need a sparse all-reduce)"
                    .into(),
            ));
        }
        if let Some(pool) = model.pool.take() {
            let [rows, d] = pool.weight.dims();
            let p = self.world();
            if !d.is_multiple_of(p) {
                return Err(TrainError::Parallel(format!(
                    "the value dimension {d} is not divisible by {p} devices"
                )));
            }
            let w = d / p;
            let offset = self.rank() * w;
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

    /// The whole `[rows, d]` table from every peer's `[rows, d/P]` column shard (every peer
    /// calls it; all get the result).
    pub(crate) fn gather_columns(&self, shard: Tensor<B, 2>) -> Result<Tensor<B, 2>, TrainError> {
        let [rows, _] = shard.dims();
        let stacked = self.group.all_gather(shard).map_err(parallel_error)?;
        Ok(Tensor::cat(
            (0..self.world())
                .map(|j| stacked.clone().narrow(0, j * rows, rows))
                .collect(),
            1,
        ))
    }

    /// Every peer's outcome of a step that only some peers did (rank 0 writing a
    /// checkpoint): all succeed, or all fail, so that no peer waits for one that stopped.
    pub(crate) fn agree(&self, result: Result<(), TrainError>) -> Result<(), TrainError> {
        let failures = self.sum(if result.is_err() { 1.0 } else { 0.0 })?;
        match result {
            Err(e) => Err(e),
            Ok(()) if failures > 0.0 => Err(TrainError::Parallel(format!(
                "{failures} peer(s) failed; peer {} stops with them",
                self.rank()
            ))),
            Ok(()) => Ok(()),
        }
    }

    /// Sum of `value` over the peers.
    pub(crate) fn sum(&self, value: f64) -> Result<f64, TrainError> {
        let t = Tensor::<B, 1>::from_floats([value as f32], &self.device);
        let sum = self
            .group
            .collective()
            .all_reduce(t.into_primitive().tensor())
            .map_err(parallel_error)?;
        Ok(Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(sum))
            .into_scalar()
            .elem::<f64>())
    }

    /// Replaces every gradient in `grads` of `model`'s parameters by its mean over the peers
    /// (one all-reduce per parameter, in the model's order, the same on every peer).
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
            peer: &'a Peer<B>,
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
                let world = self.peer.world() as f64;
                match self
                    .peer
                    .group
                    .collective()
                    .all_reduce(g.into_primitive().tensor())
                {
                    Ok(sum) => {
                        let mean = Tensor::<A::InnerBackend, D>::from_primitive(
                            TensorPrimitive::Float(sum),
                        )
                        .div_scalar(world);
                        self.grads.register(param.id, mean);
                    }
                    Err(e) => self.error = Some(parallel_error(e)),
                }
            }
        }
        let mut visitor = Average {
            peer: self,
            grads,
            error: None,
        };
        model.visit(&mut visitor);
        visitor.error.map_or(Ok(()), Err)
    }

    /// The store the memory layers of `model` read: its pool, sharded over the peers.
    pub(crate) fn values<'a, A>(
        &'a self,
        model: &'a Transformer<A>,
    ) -> Result<Option<ShardedValues<'a, A>>, TrainError>
    where
        A: AutodiffBackend<InnerBackend = B> + ShardedBackend<Comm = B>,
    {
        model
            .pool
            .as_ref()
            .map(|pool| ShardedValues::new(pool, &self.group).map_err(parallel_error))
            .transpose()
    }
}
