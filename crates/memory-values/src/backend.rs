use burn::tensor::backend::Backend;
use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{Int, Tensor, TensorPrimitive};

use crate::{RowAdagrad, RowAdamW, RowGradSink, reference};

/// The backend extension for value tables.
///
/// Three primitives cover the lookup and its gradients (and PEER's key-value dot products):
/// `bag_sum` is the lookup, `bag_dot` its weight gradient, `bag_rows` its value gradient as
/// sparse rows. Two more update touched rows in place for the row-wise optimizers.
/// Default methods run [`reference`]; a backend with a faster kernel overrides them.
/// Shapes: `values [N, d]`, `indices [T, K]` (each in `0..N`), `weights [T, K]`, `x [T, d]`.
pub trait ValueBackend: Backend {
    /// `out[t] = Σ_j weights[t,j] · values[indices[t,j]]` → `[T, d]`.
    fn bag_sum(
        values: FloatTensor<Self>,
        indices: IntTensor<Self>,
        weights: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        reference::bag_sum::<Self>(float(values), int(indices), float(weights))
            .into_primitive()
            .tensor()
    }

    /// `out[t,j] = ⟨values[indices[t,j]], x[t]⟩` → `[T, K]`.
    fn bag_dot(
        values: FloatTensor<Self>,
        indices: IntTensor<Self>,
        x: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        reference::bag_dot::<Self>(float(values), int(indices), float(x))
            .into_primitive()
            .tensor()
    }

    /// Sparse rows `(ids [U], rows [U, d])`: the distinct indices in ascending order and
    /// `rows[u] = Σ_{indices[t,j] = ids[u]} weights[t,j] · x[t]`, summed in `(t, j)` order.
    fn bag_rows(
        indices: IntTensor<Self>,
        weights: FloatTensor<Self>,
        x: FloatTensor<Self>,
    ) -> (IntTensor<Self>, FloatTensor<Self>) {
        let (ids, rows) = reference::bag_rows::<Self>(int(indices), float(weights), float(x));
        (ids.into_primitive(), rows.into_primitive().tensor())
    }

    /// [`bag_sum`](Self::bag_sum) whose gradient for `values` goes to `sink` as sparse rows
    /// instead of the autodiff graph. Backends without autodiff have no gradient to route.
    fn bag_sum_sparse(
        values: FloatTensor<Self>,
        indices: IntTensor<Self>,
        weights: FloatTensor<Self>,
        _sink: &RowGradSink,
    ) -> FloatTensor<Self> {
        Self::bag_sum(values, indices, weights)
    }

    /// [`bag_dot`](Self::bag_dot) whose gradient for `values` goes to `sink` as sparse rows.
    fn bag_dot_sparse(
        values: FloatTensor<Self>,
        indices: IntTensor<Self>,
        x: FloatTensor<Self>,
        _sink: &RowGradSink,
    ) -> FloatTensor<Self> {
        Self::bag_dot(values, indices, x)
    }

    /// One lazy-AdamW step on rows `ids` (distinct, ascending) of `[weight, m, v]`.
    fn rows_adamw(
        [weight, m, v]: [FloatTensor<Self>; 3],
        ids: IntTensor<Self>,
        grads: FloatTensor<Self>,
        step: &RowAdamW,
    ) -> [FloatTensor<Self>; 3] {
        reference::rows_adamw::<Self>(
            [float(weight), float(m), float(v)],
            Tensor::from_primitive(ids),
            float(grads),
            step,
        )
        .map(|t| t.into_primitive().tensor())
    }

    /// One row-wise Adagrad step on rows `ids` (distinct, ascending) of `weight` and the
    /// per-row accumulator `acc [N]`; returns `(weight, acc)`.
    fn rows_adagrad(
        weight: FloatTensor<Self>,
        acc: FloatTensor<Self>,
        ids: IntTensor<Self>,
        grads: FloatTensor<Self>,
        step: &RowAdagrad,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (weight, acc) = reference::rows_adagrad::<Self>(
            float(weight),
            Tensor::from_primitive(TensorPrimitive::Float(acc)),
            Tensor::from_primitive(ids),
            float(grads),
            step,
        );
        (
            weight.into_primitive().tensor(),
            acc.into_primitive().tensor(),
        )
    }
}

fn float<B: Backend>(tensor: FloatTensor<B>) -> Tensor<B, 2> {
    Tensor::from_primitive(TensorPrimitive::Float(tensor))
}

fn int<B: Backend>(tensor: IntTensor<B>) -> Tensor<B, 2, Int> {
    Tensor::from_primitive(tensor)
}
