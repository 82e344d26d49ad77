//! Plain-tensor-op implementations of the lookup primitives.
//!
//! Empty batches (`T·K = 0`) give zeros. They are the default methods of [`ValueBackend`](crate::ValueBackend) and the reference
//! every fast kernel is tested against. They favour clarity over memory: `bag_sum` and
//! `bag_dot` materialise the gathered rows `[T, K, d]`, and `bag_scatter` a dense `[N, d]`
//! gradient.

use burn::tensor::backend::Backend;
use burn::tensor::{IndexingUpdateOp, Int, Tensor};

/// Gathers `values[indices]` as `[T, K, d]`.
fn gather_rows<B: Backend>(values: Tensor<B, 2>, indices: Tensor<B, 2, Int>) -> Tensor<B, 3> {
    let [t, k] = indices.dims();
    let [_, d] = values.dims();
    values
        .select(0, indices.reshape([t * k]))
        .reshape([t, k, d])
}

/// `out[t] = Σ_j weights[t,j] · values[indices[t,j]]`, shape `[T, d]`.
pub fn bag_sum<B: Backend>(
    values: Tensor<B, 2>,
    indices: Tensor<B, 2, Int>,
    weights: Tensor<B, 2>,
) -> Tensor<B, 2> {
    let [t, k] = indices.dims();
    let [_, d] = values.dims();
    if t * k == 0 {
        return Tensor::zeros([t, d], &values.device());
    }
    let rows = gather_rows(values, indices);
    (rows * weights.unsqueeze_dim(2)).sum_dim(1).reshape([t, d])
}

/// `out[t,j] = ⟨values[indices[t,j]], x[t]⟩`, shape `[T, K]`.
pub fn bag_dot<B: Backend>(
    values: Tensor<B, 2>,
    indices: Tensor<B, 2, Int>,
    x: Tensor<B, 2>,
) -> Tensor<B, 2> {
    let [t, k] = indices.dims();
    if t * k == 0 {
        return Tensor::zeros([t, k], &values.device());
    }
    let rows = gather_rows(values, indices);
    (rows * x.unsqueeze_dim(1)).sum_dim(2).reshape([t, k])
}

/// `out[r] = Σ_{(t,j) : indices[t,j] = r} weights[t,j] · x[t]`, a dense `[rows, d]` tensor.
pub fn bag_scatter<B: Backend>(
    rows: usize,
    indices: Tensor<B, 2, Int>,
    weights: Tensor<B, 2>,
    x: Tensor<B, 2>,
) -> Tensor<B, 2> {
    let [t, k] = indices.dims();
    let [_, d] = x.dims();
    if t * k == 0 {
        return Tensor::zeros([rows, d], &x.device());
    }
    let contributions = (weights.unsqueeze_dim::<3>(2) * x.unsqueeze_dim(1)).reshape([t * k, d]);
    Tensor::zeros([rows, d], &contributions.device()).select_assign(
        0,
        indices.reshape([t * k]),
        contributions,
        IndexingUpdateOp::Add,
    )
}
