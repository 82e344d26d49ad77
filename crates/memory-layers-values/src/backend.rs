use burn::tensor::backend::Backend;
use burn::tensor::ops::{FloatTensor, IntTensor};

use crate::{RowAdagrad, RowAdamW, RowGradSink, fallback};

/// The backend extension for value tables.
///
/// Three primitives cover the lookup and its gradients (and PEER's key-value dot products):
/// `bag_sum` is the lookup, `bag_dot` its weight gradient, `bag_rows` its value gradient as
/// sparse rows. Two more update touched rows in place for the row-wise optimizers.
/// Default methods run [`reference`](crate::reference); a backend with a faster kernel overrides them.
/// Shapes: `values [N, d]`, `indices [T, K]` (each in `0..N`), `weights [T, K]`, `x [T, d]`.
pub trait ValueBackend: Backend {
    /// Whether [`ValueTable`](crate::ValueTable) checks lookup indices lazily: a device backend
    /// keeps their extremes on the device for one read per step rather than a read (a wait
    /// for the device) per lookup. `false`: checked at once, where reading is free.
    fn defers_range_checks() -> bool {
        false
    }

    /// `out[t] = Σ_j weights[t,j] · values[indices[t,j]]` → `[T, d]`.
    fn bag_sum(
        values: FloatTensor<Self>,
        indices: IntTensor<Self>,
        weights: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        fallback::bag_sum::<Self>(values, indices, weights)
    }

    /// `out[t,j] = ⟨values[indices[t,j]], x[t]⟩` → `[T, K]`.
    fn bag_dot(
        values: FloatTensor<Self>,
        indices: IntTensor<Self>,
        x: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        fallback::bag_dot::<Self>(values, indices, x)
    }

    /// Sparse rows `(ids [U], rows [U, d])`: the distinct indices in ascending order and
    /// `rows[u] = Σ_{indices[t,j] = ids[u]} weights[t,j] · x[t]`, summed in `(t, j)` order.
    fn bag_rows(
        indices: IntTensor<Self>,
        weights: FloatTensor<Self>,
        x: FloatTensor<Self>,
    ) -> (IntTensor<Self>, FloatTensor<Self>) {
        fallback::bag_rows::<Self>(indices, weights, x)
    }

    /// The sum of sparse row sets `parts`, each `(ids [U_i], rows [U_i, d])`: the distinct ids,
    /// ascending, and per id its rows added in part order, which is what
    /// [`bag_rows`](Self::bag_rows) of their concatenation with unit weights gives (the
    /// default). The gradient of a table several layers read. `parts` is not empty; a kernel
    /// may count on each part's ids being distinct and ascending (as `bag_rows` makes them)
    /// and fall back to the default otherwise.
    fn merge_rows(
        parts: Vec<(IntTensor<Self>, FloatTensor<Self>)>,
    ) -> (IntTensor<Self>, FloatTensor<Self>) {
        fallback::merge_rows::<Self>(parts)
    }

    /// The dense value gradient `[n_rows, d]`: `bag_rows` scattered into zeros by default
    /// (deterministic); a backend with float atomics may add every contribution in place
    /// instead (the order of the additions is then unspecified).
    fn bag_scatter(
        n_rows: usize,
        indices: IntTensor<Self>,
        weights: FloatTensor<Self>,
        x: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let (ids, rows) = Self::bag_rows(indices, weights, x);
        fallback::scatter_rows::<Self>(n_rows, ids, rows)
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

    /// Groups the positions `0..P` of `keys [P]` (ints in `0..2^32`, `P ≥ 1`) by key:
    /// `(ids [U], order [P], starts [U + 1])`, the distinct keys ascending, the positions in key
    /// order (ascending within a key), and segment `u` of `order` at `starts[u]..starts[u + 1]`.
    /// MoE routing groups tokens by expert with it. By default the keys are read and sorted on
    /// the host (free on the CPU); device backends group on the device.
    fn group_by_key(keys: IntTensor<Self>) -> [IntTensor<Self>; 3] {
        fallback::group_by_key::<Self>(keys)
    }

    /// One lazy-AdamW step on rows `ids` (distinct, ascending) of `[weight, m, v]`.
    fn rows_adamw(
        tensors: [FloatTensor<Self>; 3],
        ids: IntTensor<Self>,
        grads: FloatTensor<Self>,
        step: &RowAdamW,
    ) -> [FloatTensor<Self>; 3] {
        fallback::rows_adamw::<Self>(tensors, ids, grads, step)
    }

    /// One plain SGD step, `w[ids] -= lr · grads`, on rows `ids` (distinct, ascending) of
    /// `weight`; returns `weight`. No state: the update sparse memory finetuning uses.
    fn rows_sgd(
        weight: FloatTensor<Self>,
        ids: IntTensor<Self>,
        grads: FloatTensor<Self>,
        lr: f64,
    ) -> FloatTensor<Self> {
        fallback::rows_sgd::<Self>(weight, ids, grads, lr)
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
        fallback::rows_adagrad::<Self>(weight, acc, ids, grads, step)
    }
}
