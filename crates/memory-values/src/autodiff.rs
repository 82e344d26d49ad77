//! Gradients of the lookup ops, expressed with the same three primitives so that a backend's
//! fast kernels serve the backward pass too.

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, binary};
use burn::tensor::TensorMetadata;
use burn::tensor::ops::{FloatTensor, IntTensor};

use crate::ValueBackend;

/// Backward of `bag_sum(values, indices, weights)`.
#[derive(Debug)]
struct BagSumBackward;

impl<B: ValueBackend> Backward<B, 2> for BagSumBackward {
    type State = (FloatTensor<B>, IntTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (values, indices, weights) = ops.state;
        let rows = values.shape().dims::<2>()[0];
        let indices_for_values = indices.clone();
        binary::<B, _, _>(
            ops.parents,
            ops.node,
            grads,
            |grad| B::bag_scatter(rows, indices_for_values, weights, grad),
            |grad| B::bag_dot(values, indices, grad),
        );
    }
}

/// Backward of `bag_dot(values, indices, x)`.
#[derive(Debug)]
struct BagDotBackward;

impl<B: ValueBackend> Backward<B, 2> for BagDotBackward {
    type State = (FloatTensor<B>, IntTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (values, indices, x) = ops.state;
        let rows = values.shape().dims::<2>()[0];
        let indices_for_values = indices.clone();
        binary::<B, _, _>(
            ops.parents,
            ops.node,
            grads,
            |grad| B::bag_scatter(rows, indices_for_values, grad, x),
            |grad| B::bag_sum(values, indices, grad),
        );
    }
}

/// Forward on the inner backend's kernels, backward through [`BagSumBackward`] and
/// [`BagDotBackward`]. `bag_scatter` keeps the differentiable default: it only runs inside
/// backward passes, on the inner backend.
impl<B: ValueBackend, C: CheckpointStrategy> ValueBackend for Autodiff<B, C> {
    fn bag_sum(
        values: FloatTensor<Self>,
        indices: IntTensor<Self>,
        weights: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let output = B::bag_sum(
            values.primitive.clone(),
            indices.clone(),
            weights.primitive.clone(),
        );
        match BagSumBackward
            .prepare::<C>([values.node.clone(), weights.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                prep.finish((values.primitive, indices, weights.primitive), output)
            }
            OpsKind::UnTracked(prep) => prep.finish(output),
        }
    }

    fn bag_dot(
        values: FloatTensor<Self>,
        indices: IntTensor<Self>,
        x: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let output = B::bag_dot(
            values.primitive.clone(),
            indices.clone(),
            x.primitive.clone(),
        );
        match BagDotBackward
            .prepare::<C>([values.node.clone(), x.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish((values.primitive, indices, x.primitive), output),
            OpsKind::UnTracked(prep) => prep.finish(output),
        }
    }
}
