//! Gradients of the lookup ops, expressed with the same primitives so that a backend's fast
//! kernels serve the backward pass too. The value gradient is computed as sparse rows; it goes
//! to the autodiff graph as a dense tensor, or to a [`RowGradSink`] when the table asks for
//! sparse gradients.

use std::marker::PhantomData;

use burn::backend::Autodiff;
use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{Tensor, TensorMetadata, TensorPrimitive};

use crate::{RowAdagrad, RowAdamW, RowGradSink, RowGrads, ValueBackend, reference};

/// What a lookup op keeps for its backward: the table, the indices, the other operand
/// (`weights` of `bag_sum`, `x` of `bag_dot`) and where the value gradient goes.
type State<B> = (
    FloatTensor<B>,
    IntTensor<B>,
    FloatTensor<B>,
    Option<RowGradSink>,
);

/// Delivers a value table's gradient, given as sparse rows `(ids, rows)` of the inner backend:
/// to `sink` when the table asks for sparse gradients, else to the graph as a dense
/// `[n_rows, d]` tensor for `node`. Public for the backward passes of other ops that read a
/// table (the sharded lookup of parallel memory).
pub fn deliver_value_grad<B: ValueBackend, C: CheckpointStrategy>(
    grads: &mut Gradients,
    node: NodeId,
    n_rows: usize,
    sink: Option<RowGradSink>,
    (ids, rows): (IntTensor<B>, FloatTensor<B>),
) {
    match sink {
        Some(sink) => sink.push(RowGrads::<Autodiff<B, C>> {
            ids: Tensor::from_primitive(ids),
            rows: Tensor::from_primitive(TensorPrimitive::Float(Autodiff::<B, C>::from_inner(
                rows,
            ))),
        }),
        None => {
            let dense = reference::scatter_rows::<B>(
                n_rows,
                Tensor::from_primitive(ids),
                Tensor::from_primitive(TensorPrimitive::Float(rows)),
            );
            grads.register::<B>(node, dense.into_primitive().tensor());
        }
    }
}

/// The value gradient of a lookup, `Σ weights[t,j]·x[t]` per row `indices[t,j]`: sparse rows
/// to the sink, or the backend's dense scatter to the graph.
fn value_grad<B: ValueBackend, C: CheckpointStrategy>(
    grads: &mut Gradients,
    node: NodeId,
    n_rows: usize,
    sink: Option<RowGradSink>,
    (indices, weights, x): (IntTensor<B>, FloatTensor<B>, FloatTensor<B>),
) {
    match sink {
        Some(sink) => {
            let sparse = B::bag_rows(indices, weights, x);
            deliver_value_grad::<B, C>(grads, node, n_rows, Some(sink), sparse);
        }
        None => grads.register::<B>(node, B::bag_scatter(n_rows, indices, weights, x)),
    }
}

/// Backward of `bag_sum(values, indices, weights)`.
#[derive(Debug)]
struct BagSumBackward<C>(PhantomData<C>);

impl<B: ValueBackend, C: CheckpointStrategy> Backward<B, 2> for BagSumBackward<C> {
    type State = State<B>;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (values, indices, weights, sink) = ops.state;
        let grad = grads.consume::<B>(&ops.node);
        let [values_node, weights_node] = ops.parents;
        let rows = values.shape().dims::<2>()[0];
        if let Some(node) = weights_node {
            let grad = B::bag_dot(values, indices.clone(), grad.clone());
            grads.register::<B>(node.id, grad);
        }
        if let Some(node) = values_node {
            value_grad::<B, C>(grads, node.id, rows, sink, (indices, weights, grad));
        }
    }
}

/// Backward of `bag_dot(values, indices, x)`.
#[derive(Debug)]
struct BagDotBackward<C>(PhantomData<C>);

impl<B: ValueBackend, C: CheckpointStrategy> Backward<B, 2> for BagDotBackward<C> {
    type State = State<B>;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (values, indices, x, sink) = ops.state;
        let grad = grads.consume::<B>(&ops.node);
        let [values_node, x_node] = ops.parents;
        let rows = values.shape().dims::<2>()[0];
        if let Some(node) = x_node {
            let grad = B::bag_sum(values, indices.clone(), grad.clone());
            grads.register::<B>(node.id, grad);
        }
        if let Some(node) = values_node {
            value_grad::<B, C>(grads, node.id, rows, sink, (indices, grad, x));
        }
    }
}

/// Forward on the inner backend's kernels, backward through [`BagSumBackward`] and
/// [`BagDotBackward`]. `bag_rows` and the row updates run on the inner backend outside the
/// graph: they only serve backward passes and optimizers.
impl<B: ValueBackend, C: CheckpointStrategy> ValueBackend for Autodiff<B, C> {
    fn defers_range_checks() -> bool {
        B::defers_range_checks()
    }

    fn group_by_key(keys: IntTensor<Self>) -> [IntTensor<Self>; 3] {
        B::group_by_key(keys)
    }

    fn bag_sum(
        values: FloatTensor<Self>,
        indices: IntTensor<Self>,
        weights: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        bag_sum::<B, C>(values, indices, weights, None)
    }

    fn bag_dot(
        values: FloatTensor<Self>,
        indices: IntTensor<Self>,
        x: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        bag_dot::<B, C>(values, indices, x, None)
    }

    fn bag_sum_sparse(
        values: FloatTensor<Self>,
        indices: IntTensor<Self>,
        weights: FloatTensor<Self>,
        sink: &RowGradSink,
    ) -> FloatTensor<Self> {
        bag_sum::<B, C>(values, indices, weights, Some(sink.clone()))
    }

    fn bag_dot_sparse(
        values: FloatTensor<Self>,
        indices: IntTensor<Self>,
        x: FloatTensor<Self>,
        sink: &RowGradSink,
    ) -> FloatTensor<Self> {
        bag_dot::<B, C>(values, indices, x, Some(sink.clone()))
    }

    fn bag_rows(
        indices: IntTensor<Self>,
        weights: FloatTensor<Self>,
        x: FloatTensor<Self>,
    ) -> (IntTensor<Self>, FloatTensor<Self>) {
        let (ids, rows) = B::bag_rows(indices, weights.primitive, x.primitive);
        (ids, Self::from_inner(rows))
    }

    fn merge_rows(
        parts: Vec<(IntTensor<Self>, FloatTensor<Self>)>,
    ) -> (IntTensor<Self>, FloatTensor<Self>) {
        let parts = parts
            .into_iter()
            .map(|(ids, rows)| (ids, rows.primitive))
            .collect();
        let (ids, rows) = B::merge_rows(parts);
        (ids, Self::from_inner(rows))
    }

    fn bag_scatter(
        n_rows: usize,
        indices: IntTensor<Self>,
        weights: FloatTensor<Self>,
        x: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        Self::from_inner(B::bag_scatter(
            n_rows,
            indices,
            weights.primitive,
            x.primitive,
        ))
    }

    fn rows_adamw(
        [weight, m, v]: [FloatTensor<Self>; 3],
        ids: IntTensor<Self>,
        grads: FloatTensor<Self>,
        step: &RowAdamW,
    ) -> [FloatTensor<Self>; 3] {
        B::rows_adamw(
            [weight.primitive, m.primitive, v.primitive],
            ids,
            grads.primitive,
            step,
        )
        .map(Self::from_inner)
    }

    fn rows_sgd(
        weight: FloatTensor<Self>,
        ids: IntTensor<Self>,
        grads: FloatTensor<Self>,
        lr: f64,
    ) -> FloatTensor<Self> {
        Self::from_inner(B::rows_sgd(weight.primitive, ids, grads.primitive, lr))
    }

    fn rows_adagrad(
        weight: FloatTensor<Self>,
        acc: FloatTensor<Self>,
        ids: IntTensor<Self>,
        grads: FloatTensor<Self>,
        step: &RowAdagrad,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (weight, acc) =
            B::rows_adagrad(weight.primitive, acc.primitive, ids, grads.primitive, step);
        (Self::from_inner(weight), Self::from_inner(acc))
    }
}

fn bag_sum<B: ValueBackend, C: CheckpointStrategy>(
    values: FloatTensor<Autodiff<B, C>>,
    indices: IntTensor<Autodiff<B, C>>,
    weights: FloatTensor<Autodiff<B, C>>,
    sink: Option<RowGradSink>,
) -> FloatTensor<Autodiff<B, C>> {
    let output = B::bag_sum(
        values.primitive.clone(),
        indices.clone(),
        weights.primitive.clone(),
    );
    match BagSumBackward::<C>(PhantomData)
        .prepare::<C>([values.node.clone(), weights.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            prep.finish((values.primitive, indices, weights.primitive, sink), output)
        }
        OpsKind::UnTracked(prep) => prep.finish(output),
    }
}

fn bag_dot<B: ValueBackend, C: CheckpointStrategy>(
    values: FloatTensor<Autodiff<B, C>>,
    indices: IntTensor<Autodiff<B, C>>,
    x: FloatTensor<Autodiff<B, C>>,
    sink: Option<RowGradSink>,
) -> FloatTensor<Autodiff<B, C>> {
    let output = B::bag_dot(
        values.primitive.clone(),
        indices.clone(),
        x.primitive.clone(),
    );
    match BagDotBackward::<C>(PhantomData)
        .prepare::<C>([values.node.clone(), x.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            prep.finish((values.primitive, indices, x.primitive, sink), output)
        }
        OpsKind::UnTracked(prep) => prep.finish(output),
    }
}
