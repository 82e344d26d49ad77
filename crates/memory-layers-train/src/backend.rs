//! The backends a run trains on.

use burn::tensor::backend::AutodiffBackend;
use memory_layers_parallel::ShardedBackend;
use memory_layers_zoo::ZooBackend;

/// An autodiff backend with the memory-layer kernels, on itself and on its inner backend, and
/// the sharded value lookup, whose collectives run on the inner backend: what a
/// [`Stepper`](crate::Stepper) steps on, alone or as one [`Rank`](crate::Rank) of a parallel
/// run. Every such backend implements it.
///
/// The bound on the inner backend is written in the supertrait (`InnerBackend: ZooBackend`)
/// rather than as a where-clause, so that `B: TrainBackend` implies it wherever it is used.
pub trait TrainBackend:
    AutodiffBackend<InnerBackend: ZooBackend>
    + ZooBackend
    + ShardedBackend<Comm = <Self as AutodiffBackend>::InnerBackend>
{
}

impl<B> TrainBackend for B
where
    B: AutodiffBackend + ZooBackend + ShardedBackend<Comm = <B as AutodiffBackend>::InnerBackend>,
    B::InnerBackend: ZooBackend,
{
}
