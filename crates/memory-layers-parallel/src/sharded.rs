//! A value table sharded on its columns over a memory group (the paper's parallel memory:
//! values sharded on the embedding dimension across devices).
//!
//! Every peer of a group of `P` holds all `N` rows and `d/P` columns. Forward: the group
//! all-gathers its indices and weights, each peer looks up the whole group's tokens on its
//! columns, and an all-to-all brings every token's `P` column blocks back to its owner.
//! Backward, in reverse: an all-to-all sends each column block of the output gradient to the
//! peer holding those columns; that peer's value gradient covers the whole group's tokens and is
//! scaled by `1/P` (so that averaging over data-parallel replicas gives the mean over all
//! tokens), and its partial weight gradient (summed over its columns) is reduce-scattered back
//! to the owners.

use std::marker::PhantomData;

use burn::backend::Autodiff;
use burn::backend::Flex;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::tensor::backend::Backend;
use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{Int, Tensor, TensorMetadata, TensorPrimitive};
use memory_layers_values::autodiff::deliver_value_grad;
use memory_layers_values::{RowGradSink, ValueBackend, ValueError, ValueStore, ValueTable};

use crate::{Group, ParallelError};

/// Backends that run the sharded lookup. Collectives run on [`Comm`](Self::Comm): the backend
/// itself, or the inner backend under autodiff.
pub trait ShardedBackend: ValueBackend {
    /// Where the collectives and the local kernels run.
    type Comm: ValueBackend;

    /// This peer's tokens' full-width lookup `[T, d]` from its column shard `values [N, d/P]`
    /// and its `indices`, `weights [T, K]`; every member calls it with the same `T` and `K`.
    fn sharded_bag_sum(
        values: FloatTensor<Self>,
        indices: IntTensor<Self>,
        weights: FloatTensor<Self>,
        group: &Group<Self::Comm>,
        sink: Option<&RowGradSink>,
    ) -> Result<FloatTensor<Self>, ParallelError>;
}

/// The output, and what the backward pass needs from the forward: the whole group's indices
/// and weights.
struct Gathered<B: Backend> {
    output: FloatTensor<B>,
    indices: Tensor<B, 2, Int>,
    weights: Tensor<B, 2>,
}

/// The forward pass on backend `B` (no autodiff), on primitives as both impls hold them.
fn forward<B: ValueBackend>(
    values: FloatTensor<B>,
    indices: IntTensor<B>,
    weights: FloatTensor<B>,
    group: &Group<B>,
) -> Result<Gathered<B>, ParallelError> {
    let [t, _] = indices.shape().dims::<2>();
    let width = values.shape().dims::<2>()[1];
    let indices = group.all_gather_ints(Tensor::from_primitive(indices))?;
    let weights = group.all_gather(float(weights))?;
    let local = float::<B>(B::bag_sum(
        values,
        indices.clone().into_primitive(),
        weights.clone().into_primitive().tensor(),
    ));
    // Block j of the group's tokens belongs to member j.
    let parts = (0..group.size())
        .map(|j| local.clone().slice([j * t..(j + 1) * t, 0..width]))
        .collect();
    let columns = group.all_to_all(parts)?;
    Ok(Gathered {
        output: Tensor::cat(columns, 1).into_primitive().tensor(),
        indices,
        weights,
    })
}

fn float<B: Backend>(t: FloatTensor<B>) -> Tensor<B, 2> {
    Tensor::from_primitive(TensorPrimitive::Float(t))
}

macro_rules! plain_sharded_backend {
    ($($backend:ty),*) => {$(
        impl ShardedBackend for $backend {
            type Comm = Self;

            fn sharded_bag_sum(
                values: FloatTensor<Self>,
                indices: IntTensor<Self>,
                weights: FloatTensor<Self>,
                group: &Group<Self>,
                _sink: Option<&RowGradSink>,
            ) -> Result<FloatTensor<Self>, ParallelError> {
                Ok(forward(values, indices, weights, group)?.output)
            }
        }
    )*};
}

plain_sharded_backend!(Flex);
#[cfg(feature = "wgpu")]
plain_sharded_backend!(burn::backend::Wgpu);
#[cfg(feature = "cuda")]
plain_sharded_backend!(burn::backend::Cuda);

/// A collective's result inside a backward pass, where a failure cannot be returned (Burn's
/// backward API has no error path); it means a peer is gone, and every peer stops the same way.
fn collective<T>(result: Result<T, ParallelError>) -> T {
    result.unwrap_or_else(|e| panic!("parallel memory backward: {e}"))
}

/// Backward of the sharded lookup.
#[derive(Debug)]
struct ShardedBackward<C>(PhantomData<C>);

type State<B> = (
    FloatTensor<B>,
    IntTensor<B>,
    FloatTensor<B>,
    Group<B>,
    Option<RowGradSink>,
);

impl<B: ValueBackend, C: CheckpointStrategy> Backward<B, 2> for ShardedBackward<C> {
    type State = State<B>;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (values, indices, weights, group, sink) = ops.state;
        let grad = float::<B>(grads.consume::<B>(&ops.node));
        let [values_node, weights_node] = ops.parents;
        let [n_rows, width] = values.shape().dims::<2>();
        let [t, _] = grad.dims();
        let blocks = (0..group.size())
            .map(|j| grad.clone().slice([0..t, j * width..(j + 1) * width]))
            .collect();
        let grad_all = Tensor::cat(collective(group.all_to_all(blocks)), 0);
        if let Some(node) = weights_node {
            let partial = float::<B>(B::bag_dot(
                values,
                indices.clone(),
                grad_all.clone().into_primitive().tensor(),
            ));
            let own = collective(group.reduce_scatter(partial));
            grads.register::<B>(node.id, own.into_primitive().tensor());
        }
        if let Some(node) = values_node {
            let scaled = grad_all.div_scalar(group.size() as f64);
            let rows = B::bag_rows(indices, weights, scaled.into_primitive().tensor());
            deliver_value_grad::<B, C>(grads, node.id, n_rows, sink, rows);
        }
    }
}

impl<B, C> ShardedBackend for Autodiff<B, C>
where
    B: ShardedBackend<Comm = B>,
    C: CheckpointStrategy,
{
    type Comm = B;

    fn sharded_bag_sum(
        values: FloatTensor<Self>,
        indices: IntTensor<Self>,
        weights: FloatTensor<Self>,
        group: &Group<B>,
        sink: Option<&RowGradSink>,
    ) -> Result<FloatTensor<Self>, ParallelError> {
        let gathered = forward::<B>(
            values.primitive.clone(),
            indices,
            weights.primitive.clone(),
            group,
        )?;
        Ok(
            match ShardedBackward::<C>(PhantomData)
                .prepare::<C>([values.node.clone(), weights.node.clone()])
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => prep.finish(
                    (
                        values.primitive,
                        gathered.indices.into_primitive(),
                        gathered.weights.into_primitive().tensor(),
                        group.clone(),
                        sink.cloned(),
                    ),
                    gathered.output,
                ),
                OpsKind::UnTracked(prep) => prep.finish(gathered.output),
            },
        )
    }
}

/// A [`ValueStore`] view of a value table sharded on columns over a memory group: this
/// peer's `shard` holds all rows and its `d/P` columns; lookups return full-width rows for
/// this peer's tokens. Every member of the group looks up the same number of tokens at once.
/// The shard stays a parameter of its model (optimizers and checkpoints see a plain table).
#[derive(Debug)]
pub struct ShardedValues<'a, B: ShardedBackend> {
    shard: &'a ValueTable<B>,
    group: &'a Group<B::Comm>,
}

impl<'a, B: ShardedBackend> ShardedValues<'a, B> {
    /// Views `shard` as this peer's part of the group's table; the group's size must divide
    /// the table's width and the shard must be the slice of the peer's position in the group.
    pub fn new(shard: &'a ValueTable<B>, group: &'a Group<B::Comm>) -> Result<Self, ParallelError> {
        let columns = shard.columns();
        let p = group.size();
        let width = columns.total / p;
        if !columns.total.is_multiple_of(p)
            || columns.width != width
            || columns.offset != group.position() * width
        {
            return Err(ParallelError::Layout(format!(
                "member {} of a memory group of {p} must hold columns {}..{} of {}, not {}..{}",
                group.position(),
                group.position() * width,
                (group.position() + 1) * width,
                columns.total,
                columns.offset,
                columns.offset + columns.width
            )));
        }
        Ok(Self { shard, group })
    }
}

impl<B: ShardedBackend> ValueStore<B> for ShardedValues<'_, B> {
    fn rows(&self) -> usize {
        self.shard.rows()
    }

    /// The whole table's width: lookups return every column.
    #[allow(clippy::misnamed_getters)]
    fn width(&self) -> usize {
        self.shard.columns().total
    }

    fn lookup(
        &self,
        indices: Tensor<B, 2, Int>,
        weights: Tensor<B, 2>,
    ) -> Result<Tensor<B, 2>, ValueError> {
        let [t, k] = indices.dims();
        if weights.dims() != [t, k] {
            return Err(ValueError::ShapeMismatch {
                what: "sharded lookup weights",
                expected: vec![t, k],
                actual: weights.dims().to_vec(),
            });
        }
        if t * k == 0 {
            // Every member has the same shape, so all skip the collectives together.
            return Ok(Tensor::zeros([t, self.width()], &weights.device()));
        }
        let indices = self.shard.checked_indices(indices)?;
        let output = B::sharded_bag_sum(
            self.shard.weight.val().into_primitive().tensor(),
            indices.into_primitive(),
            weights.into_primitive().tensor(),
            self.group,
            self.shard.sparse_sink(),
        )
        .map_err(|e| ValueError::Store(e.to_string()))?;
        Ok(float(output))
    }
}
