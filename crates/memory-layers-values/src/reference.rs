//! Plain-tensor-op implementations of the lookup primitives.
//!
//! They are the default methods of [`ValueBackend`](crate::ValueBackend) and the reference every
//! fast kernel is tested against; empty batches give zeros (or no rows). They favour clarity
//! over memory: `bag_sum` and `bag_dot` materialise the gathered rows `[T, K, d]`, and the row
//! updates rewrite whole tables on backends whose `select_assign` copies.

use burn::tensor::backend::Backend;
use burn::tensor::{Bool, IndexingUpdateOp, Int, Tensor, TensorData};

use crate::{RowAdagrad, RowAdamW};

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

/// The sparse value gradient of a lookup: the distinct rows `ids` (ascending) that `indices`
/// touch, and `rows[u] = Σ_{(t,j) : indices[t,j] = ids[u]} weights[t,j] · x[t]`, `[U, d]`.
pub fn bag_rows<B: Backend>(
    indices: Tensor<B, 2, Int>,
    weights: Tensor<B, 2>,
    x: Tensor<B, 2>,
) -> (Tensor<B, 1, Int>, Tensor<B, 2>) {
    let [t, k] = indices.dims();
    let [_, d] = x.dims();
    let (m, device) = (t * k, x.device());
    if m == 0 {
        return (Tensor::zeros([0], &device), Tensor::zeros([0, d], &device));
    }
    let contributions = (weights.unsqueeze_dim::<3>(2) * x.unsqueeze_dim(1)).reshape([m, d]);
    let (sorted, order) = indices.reshape([m]).sort_with_indices(0);
    // A row's segment starts where the sorted index changes.
    let starts = Tensor::cat(
        vec![
            Tensor::<B, 1, Bool>::from_bool(TensorData::from([true]), &device),
            sorted
                .clone()
                .slice(1..m)
                .not_equal(sorted.clone().slice(0..m - 1)),
        ],
        0,
    );
    let segment = starts.clone().int().cumsum(0) - 1;
    let ids = sorted.select(0, starts.argwhere().squeeze_dim(1));
    let rows = Tensor::zeros([ids.dims()[0], d], &device).select_assign(
        0,
        segment,
        contributions.select(0, order),
        IndexingUpdateOp::Add,
    );
    (ids, rows)
}

/// The dense `[n, d]` form of sparse rows: `rows[u]` at row `ids[u]`, zeros elsewhere.
pub fn scatter_rows<B: Backend>(
    n: usize,
    ids: Tensor<B, 1, Int>,
    rows: Tensor<B, 2>,
) -> Tensor<B, 2> {
    let [u, d] = rows.dims();
    let zeros = Tensor::zeros([n, d], &rows.device());
    if u == 0 {
        // CubeCL's select_assign divides by the number of indices.
        return zeros;
    }
    zeros.select_assign(0, ids, rows, IndexingUpdateOp::Add)
}

/// One lazy-AdamW step on the rows `ids` (distinct) of `weight` and its moments `m`, `v`
/// (see [`RowAdamW`](crate::RowAdamW)); returns the updated `[weight, m, v]`.
pub fn rows_adamw<B: Backend>(
    [weight, m, v]: [Tensor<B, 2>; 3],
    ids: Tensor<B, 1, Int>,
    grads: Tensor<B, 2>,
    step: &RowAdamW,
) -> [Tensor<B, 2>; 3] {
    if ids.dims()[0] == 0 {
        return [weight, m, v];
    }
    let rows = |t: &Tensor<B, 2>| t.clone().select(0, ids.clone());
    let (w0, m0, v0) = (rows(&weight), rows(&m), rows(&v));
    let m1 = m0.clone().mul_scalar(step.beta1) + grads.clone().mul_scalar(1.0 - step.beta1);
    let v1 = v0.clone().mul_scalar(step.beta2) + grads.square().mul_scalar(1.0 - step.beta2);
    let [c1, c2] = step.bias_corrections();
    let delta = m1.clone().div_scalar(c1) / (v1.clone().div_scalar(c2).sqrt().add_scalar(step.eps));
    let w1 = w0.clone().mul_scalar(1.0 - step.lr * step.weight_decay) - delta.mul_scalar(step.lr);
    let apply = |t: Tensor<B, 2>, new: Tensor<B, 2>, old: Tensor<B, 2>| {
        t.select_assign(0, ids.clone(), new - old, IndexingUpdateOp::Add)
    };
    [apply(weight, w1, w0), apply(m, m1, m0), apply(v, v1, v0)]
}

/// One SGD step on the rows `ids` (distinct) of `weight`: `w[ids] -= lr · grads`.
pub fn rows_sgd<B: Backend>(
    weight: Tensor<B, 2>,
    ids: Tensor<B, 1, Int>,
    grads: Tensor<B, 2>,
    lr: f64,
) -> Tensor<B, 2> {
    if ids.dims()[0] == 0 {
        return weight;
    }
    weight.select_assign(0, ids, grads.mul_scalar(-lr), IndexingUpdateOp::Add)
}

/// One row-wise Adagrad step on the rows `ids` (distinct) of `weight` and its per-row
/// accumulator `acc` `[N]` (see [`RowAdagrad`](crate::RowAdagrad)); returns `[weight, acc]`.
pub fn rows_adagrad<B: Backend>(
    weight: Tensor<B, 2>,
    acc: Tensor<B, 1>,
    ids: Tensor<B, 1, Int>,
    grads: Tensor<B, 2>,
    step: &RowAdagrad,
) -> (Tensor<B, 2>, Tensor<B, 1>) {
    if ids.dims()[0] == 0 {
        return (weight, acc);
    }
    let added = grads.clone().square().mean_dim(1).squeeze_dim(1);
    let acc = acc.select_assign(0, ids.clone(), added, IndexingUpdateOp::Add);
    let scale = acc
        .clone()
        .select(0, ids.clone())
        .sqrt()
        .add_scalar(step.eps)
        .recip()
        .mul_scalar(-step.lr);
    let delta = grads * scale.unsqueeze_dim(1);
    (
        weight.select_assign(0, ids, delta, IndexingUpdateOp::Add),
        acc,
    )
}
