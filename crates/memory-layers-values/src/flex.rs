//! CPU kernels of the lookup primitives for the Flex backend: one pass over the selected rows,
//! no `[T, K, d]` intermediate, multi-threaded (rayon); value gradients as sparse rows by a
//! deterministic sort; row-wise optimizer steps in place. Inputs in other dtypes than f32
//! (bf16, f64) fall back to the reference.

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{DType, TensorData, TensorMetadata};
use rayon::prelude::*;

use crate::{RowAdagrad, RowAdamW, ValueBackend, fallback};

/// Value indices of an int tensor as `usize` (i32 and i64 storage).
fn indices(tensor: &FlexTensor) -> Vec<usize> {
    let tensor = tensor.to_contiguous();
    if let Some(ids) = tensor.as_slice::<i32>() {
        ids.iter().map(|&i| i as usize).collect()
    } else if let Some(ids) = tensor.as_slice::<i64>() {
        ids.iter().map(|&i| i as usize).collect()
    } else {
        tensor
            .into_data()
            .convert::<i64>()
            .into_vec::<i64>()
            .expect("int tensor")
            .into_iter()
            .map(|i| i as usize)
            .collect()
    }
}

/// Contiguous f32 values of a tensor, or `None` for other dtypes.
fn f32s(tensor: &FlexTensor) -> Option<FlexTensor> {
    (tensor.dtype() == DType::F32).then(|| tensor.to_contiguous())
}

fn output(values: Vec<f32>, shape: [usize; 2]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

/// Rows per rayon task: enough work to amortise scheduling.
const ROWS_PER_TASK: usize = 16;

/// How many (token, slot) pairs ahead the lookup prefetches value rows.
const PREFETCH_DISTANCE: usize = 8;

impl ValueBackend for Flex {
    fn bag_sum(
        values: FloatTensor<Self>,
        indices_t: IntTensor<Self>,
        weights: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let (Some(v), Some(w)) = (f32s(&values), f32s(&weights)) else {
            return fallback::bag_sum::<Flex>(values, indices_t, weights);
        };
        let [_, d] = values.shape().dims::<2>();
        let [t, k] = indices_t.shape().dims::<2>();
        let (v, w, idx) = (
            v.as_slice::<f32>().expect("f32"),
            w.as_slice::<f32>().expect("f32"),
            indices(&indices_t),
        );
        let mut out = vec![0f32; t * d];
        let (arch, table) = (pulp::Arch::new(), Table { v, idx: &idx, d, k });
        out.par_chunks_mut(d.max(1) * ROWS_PER_TASK)
            .enumerate()
            .for_each(|(chunk, rows)| {
                arch.dispatch(Task::Sum(rows, chunk * ROWS_PER_TASK, table, w));
            });
        output(out, [t, d])
    }

    fn bag_dot(
        values: FloatTensor<Self>,
        indices_t: IntTensor<Self>,
        x: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let (Some(v), Some(xs)) = (f32s(&values), f32s(&x)) else {
            return fallback::bag_dot::<Flex>(values, indices_t, x);
        };
        let [_, d] = values.shape().dims::<2>();
        let [t, k] = indices_t.shape().dims::<2>();
        let (v, xs, idx) = (
            v.as_slice::<f32>().expect("f32"),
            xs.as_slice::<f32>().expect("f32"),
            indices(&indices_t),
        );
        let mut out = vec![0f32; t * k];
        let (arch, table) = (pulp::Arch::new(), Table { v, idx: &idx, d, k });
        out.par_chunks_mut(k.max(1) * ROWS_PER_TASK)
            .enumerate()
            .for_each(|(chunk, rows)| {
                arch.dispatch(Task::Dot(rows, chunk * ROWS_PER_TASK, table, xs));
            });
        output(out, [t, k])
    }

    fn bag_rows(
        indices_t: IntTensor<Self>,
        weights: FloatTensor<Self>,
        x: FloatTensor<Self>,
    ) -> (IntTensor<Self>, FloatTensor<Self>) {
        let (Some(w), Some(xs)) = (f32s(&weights), f32s(&x)) else {
            return fallback::bag_rows::<Flex>(indices_t, weights, x);
        };
        let [_, d] = x.shape().dims::<2>();
        let [_, k] = indices_t.shape().dims::<2>();
        let (w, xs, idx) = (
            w.as_slice::<f32>().expect("f32"),
            xs.as_slice::<f32>().expect("f32"),
            indices(&indices_t),
        );
        // Sorted (row, position) keys: equal rows become a segment, in position order, so every
        // row sums its contributions in the same order on every run.
        let Some(keys) = sorted_row_position_keys(&idx) else {
            return fallback::bag_rows::<Flex>(indices_t, weights, x);
        };
        let row = |key: u64| (key >> 32) as usize;
        let starts: Vec<usize> = (0..keys.len())
            .filter(|&s| s == 0 || row(keys[s]) != row(keys[s - 1]))
            .chain(std::iter::once(keys.len()))
            .collect();
        let ids: Vec<i64> = starts[..starts.len() - 1]
            .iter()
            .map(|&s| row(keys[s]) as i64)
            .collect();
        let mut out = vec![0f32; ids.len() * d];
        let arch = pulp::Arch::new();
        out.par_chunks_mut(d.max(1))
            .zip(starts.par_windows(2))
            .for_each(|(out_row, segment)| {
                let keys = &keys[segment[0]..segment[1]];
                arch.dispatch(Task::Row(out_row, keys, [w, xs], [d, k]));
            });
        let u = ids.len();
        (
            FlexTensor::from_data(TensorData::new(ids, [u])),
            output(out, [u, d]),
        )
    }

    fn merge_rows(
        parts: Vec<(IntTensor<Self>, FloatTensor<Self>)>,
    ) -> (IntTensor<Self>, FloatTensor<Self>) {
        let ids: Vec<Vec<usize>> = parts.iter().map(|(ids, _)| indices(ids)).collect();
        let rows: Option<Vec<FlexTensor>> = parts.iter().map(|(_, rows)| f32s(rows)).collect();
        let (Some(rows), true) = (rows, ids.iter().all(|ids| ascending(ids))) else {
            return fallback::merge_rows::<Flex>(parts);
        };
        let Some(d) = rows.first().map(|r| r.shape().dims::<2>()[1]) else {
            return fallback::merge_rows::<Flex>(parts);
        };
        let rows: Vec<&[f32]> = rows
            .iter()
            .map(|r| r.as_slice::<f32>().expect("f32"))
            .collect();
        // A k-way merge: every distinct id, ascending, with the (part, row) pairs that hold it
        // in part order.
        let mut next = vec![0usize; ids.len()];
        let (mut union, mut sources, mut starts) = (Vec::new(), Vec::new(), vec![0]);
        while let Some(id) = ids
            .iter()
            .zip(&next)
            .filter_map(|(ids, &n)| ids.get(n))
            .min()
        {
            let id = *id;
            for (part, (ids, n)) in ids.iter().zip(&mut next).enumerate() {
                if ids.get(*n) == Some(&id) {
                    sources.push((part, *n));
                    *n += 1;
                }
            }
            union.push(id as i64);
            starts.push(sources.len());
        }
        let mut out = vec![0f32; union.len() * d];
        out.par_chunks_mut(d.max(1))
            .zip(starts.par_windows(2))
            .for_each(|(row, segment)| {
                for (n, &(part, r)) in sources[segment[0]..segment[1]].iter().enumerate() {
                    add_scaled(row, 1.0, &rows[part][r * d..(r + 1) * d], n == 0);
                }
            });
        let u = union.len();
        (
            FlexTensor::from_data(TensorData::new(union, [u])),
            output(out, [u, d]),
        )
    }

    fn rows_adamw(
        [weight, m, v]: [FloatTensor<Self>; 3],
        ids_t: IntTensor<Self>,
        grads: FloatTensor<Self>,
        step: &RowAdamW,
    ) -> [FloatTensor<Self>; 3] {
        let ids = indices(&ids_t);
        let all_f32 = [&weight, &m, &v, &grads]
            .iter()
            .all(|t| t.dtype() == DType::F32);
        let [_, d] = weight.shape().dims::<2>();
        if !all_f32 || !ascending(&ids) {
            return fallback::rows_adamw::<Flex>([weight, m, v], ids_t, grads, step);
        }
        let g = f32s(&grads).expect("f32");
        let g = g.as_slice::<f32>().expect("f32");
        let (mut weight, mut m, mut v) = (owned(weight), owned(m), owned(v));
        let rule = AdamWRule::of(step);
        let mut rows: Vec<_> = rows_mut(weight.storage_mut::<f32>(), d, &ids)
            .into_iter()
            .zip(rows_mut(m.storage_mut::<f32>(), d, &ids))
            .zip(rows_mut(v.storage_mut::<f32>(), d, &ids))
            .collect();
        let arch = pulp::Arch::new();
        rows.par_chunks_mut(ROWS_PER_TASK * 4)
            .zip(g.par_chunks(d.max(1) * ROWS_PER_TASK * 4))
            .for_each(|(rows, g)| {
                arch.dispatch(Task::AdamW(&rule, rows, g, d));
            });
        [weight, m, v]
    }

    fn rows_sgd(
        weight: FloatTensor<Self>,
        ids_t: IntTensor<Self>,
        grads: FloatTensor<Self>,
        lr: f64,
    ) -> FloatTensor<Self> {
        let ids = indices(&ids_t);
        let [_, d] = weight.shape().dims::<2>();
        let all_f32 = weight.dtype() == DType::F32 && grads.dtype() == DType::F32;
        if !all_f32 || !ascending(&ids) {
            return fallback::rows_sgd::<Flex>(weight, ids_t, grads, lr);
        }
        let g = f32s(&grads).expect("f32");
        let g = g.as_slice::<f32>().expect("f32");
        let mut weight = owned(weight);
        rows_mut(weight.storage_mut::<f32>(), d, &ids)
            .into_par_iter()
            .zip(g.par_chunks(d.max(1)))
            .for_each(|(w, g)| add_scaled(w, -(lr as f32), g, false));
        weight
    }

    fn rows_adagrad(
        weight: FloatTensor<Self>,
        acc: FloatTensor<Self>,
        ids_t: IntTensor<Self>,
        grads: FloatTensor<Self>,
        step: &RowAdagrad,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let ids = indices(&ids_t);
        let all_f32 = [&weight, &acc, &grads]
            .iter()
            .all(|t| t.dtype() == DType::F32);
        let [_, d] = weight.shape().dims::<2>();
        if !all_f32 || !ascending(&ids) {
            return fallback::rows_adagrad::<Flex>(weight, acc, ids_t, grads, step);
        }
        let g = f32s(&grads).expect("f32");
        let g = g.as_slice::<f32>().expect("f32");
        let (mut weight, mut acc) = (owned(weight), owned(acc));
        let (lr, eps) = (step.lr as f32, step.eps as f32);
        rows_mut(weight.storage_mut::<f32>(), d, &ids)
            .into_par_iter()
            .zip(rows_mut(acc.storage_mut::<f32>(), 1, &ids))
            .zip(g.par_chunks(d.max(1)))
            .for_each(|((w, a), g)| {
                a[0] += g.iter().map(|x| x * x).sum::<f32>() / d as f32;
                let scale = lr / (a[0].sqrt() + eps);
                add_scaled(w, -scale, g, false);
            });
        (weight, acc)
    }
}

/// One row-wise AdamW step's constants in f32.
struct AdamWRule {
    b1: f32,
    b2: f32,
    eps: f32,
    /// Bias corrections of the two moments.
    c1: f32,
    c2: f32,
    lr: f32,
    /// `1 − lr·weight_decay`.
    decay: f32,
}

impl AdamWRule {
    fn of(step: &RowAdamW) -> Self {
        let [c1, c2] = step.bias_corrections().map(|c| c as f32);
        Self {
            b1: step.beta1 as f32,
            b2: step.beta2 as f32,
            eps: step.eps as f32,
            c1,
            c2,
            lr: step.lr as f32,
            decay: (1.0 - step.lr * step.weight_decay) as f32,
        }
    }

    /// The step on one task's rows (weight, first and second moment) with their gradients
    /// `g` (`rows × d`).
    #[inline(always)]
    fn apply(&self, rows: &mut [RowTriple<'_>], g: &[f32], d: usize) {
        let Self {
            b1,
            b2,
            eps,
            c1,
            c2,
            lr,
            decay,
        } = *self;
        for (r, g) in g.chunks(d.max(1)).enumerate() {
            // Touched rows are scattered over three table-sized buffers.
            if let Some(((w, m), v)) = rows.get(r + PREFETCH_DISTANCE / 2) {
                prefetch_row(w);
                prefetch_row(m);
                prefetch_row(v);
            }
            let ((w, m), v) = &mut rows[r];
            // Zipped, not indexed: no bounds checks, so the loop vectorises.
            let columns = w.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g);
            for (((w, m), v), &g) in columns {
                *m = b1 * *m + (1.0 - b1) * g;
                *v = b2 * *v + (1.0 - b2) * g * g;
                *w = *w * decay - lr * (*m / c1) / ((*v / c2).sqrt() + eps);
            }
        }
    }
}

/// Rows of a value table read by a lookup: `v` (`rows × d`) and `k` indices per token.
#[derive(Clone, Copy)]
struct Table<'a> {
    v: &'a [f32],
    idx: &'a [usize],
    d: usize,
    k: usize,
}

impl Table<'_> {
    /// Row `i` of the values.
    #[inline(always)]
    fn row(&self, i: usize) -> &[f32] {
        &self.v[i * self.d..(i + 1) * self.d]
    }

    /// Asks for the row the lookup reads `PREFETCH_DISTANCE` pairs after pair `p`: rows are
    /// random.
    #[inline(always)]
    fn prefetch_after(&self, p: usize) {
        if let Some(&ahead) = self.idx.get(p + PREFETCH_DISTANCE) {
            prefetch_row(self.row(ahead));
        }
    }
}

/// One rayon task of a kernel, dispatched by [`pulp::Arch`] so that its loops compile for the
/// machine's widest registers: as a closure, the body stays at the baseline's four lanes
/// (measured in the binary: no AVX instruction in these loops).
enum Task<'a, 'r> {
    /// `bag_sum`: output rows of tokens `first..`, weights per pair.
    Sum(&'a mut [f32], usize, Table<'a>, &'a [f32]),
    /// `bag_dot`: output rows (`k` dots) of tokens `first..` against `x` (`T × d`).
    Dot(&'a mut [f32], usize, Table<'a>, &'a [f32]),
    /// `bag_rows`: one gradient row summed over its `(row, position)` keys from the weights
    /// and `x`, `[d, k]`.
    Row(&'a mut [f32], &'a [u64], [&'a [f32]; 2], [usize; 2]),
    /// A row-wise AdamW step on some rows with their gradients (`rows × d`).
    AdamW(&'a AdamWRule, &'a mut [RowTriple<'r>], &'a [f32], usize),
}

impl pulp::WithSimd for Task<'_, '_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        match self {
            Self::Sum(rows, first, table, weights) => {
                for (token, row) in (first..).zip(rows.chunks_mut(table.d.max(1))) {
                    for j in 0..table.k {
                        let p = token * table.k + j;
                        table.prefetch_after(p);
                        add_scaled(row, weights[p], table.row(table.idx[p]), j == 0);
                    }
                }
            }
            Self::Dot(rows, first, table, x) => {
                for (token, row) in (first..).zip(rows.chunks_mut(table.k.max(1))) {
                    let xt = &x[token * table.d..(token + 1) * table.d];
                    for (j, slot) in row.iter_mut().enumerate() {
                        let p = token * table.k + j;
                        table.prefetch_after(p);
                        *slot = dot(table.row(table.idx[p]), xt);
                    }
                }
            }
            Self::Row(out, keys, [weights, x], [d, k]) => {
                for (n, &key) in keys.iter().enumerate() {
                    let p = (key as u32) as usize;
                    let token = p / k;
                    add_scaled(out, weights[p], &x[token * d..(token + 1) * d], n == 0);
                }
            }
            Self::AdamW(rule, rows, g, d) => rule.apply(rows, g, d),
        }
    }
}

/// A touched row of the weights, the first and the second moment.
type RowTriple<'a> = ((&'a mut [f32], &'a mut [f32]), &'a mut [f32]);

/// Per lookup, `row·2^32 + position`: one `u64` sorts faster than a pair. `None` where a row or
/// a position does not fit 32 bits.
fn row_position_keys(idx: &[usize]) -> Option<Vec<u64>> {
    u32::try_from(idx.len()).ok()?;
    idx.iter()
        .enumerate()
        .map(|(p, &i)| Some((u64::from(u32::try_from(i).ok()?) << 32) | p as u64))
        .collect()
}

/// [`row_position_keys`], sorted. Where the rows a batch can address are few beside its
/// lookups (small tables), a counting sort by row: one pass to count, one to place, positions
/// ascending within a row as they come; elsewhere a parallel sort of the packed keys.
fn sorted_row_position_keys(idx: &[usize]) -> Option<Vec<u64>> {
    let mut keys = row_position_keys(idx)?;
    let rows = idx.iter().max().map_or(0, |&m| m + 1);
    if rows > 2 * idx.len() {
        keys.par_sort_unstable();
        return Some(keys);
    }
    let mut starts = vec![0usize; rows + 1];
    for &i in idx {
        starts[i + 1] += 1;
    }
    for r in 0..rows {
        starts[r + 1] += starts[r];
    }
    let mut sorted = vec![0u64; keys.len()];
    for &key in &keys {
        let slot = &mut starts[(key >> 32) as usize];
        sorted[*slot] = key;
        *slot += 1;
    }
    Some(sorted)
}

/// Whether ids are strictly ascending (distinct), as the in-place row updates need.
fn ascending(ids: &[usize]) -> bool {
    ids.windows(2).all(|w| w[0] < w[1])
}

/// A contiguous tensor to update in place (copied only if its storage is shared).
fn owned(tensor: FlexTensor) -> FlexTensor {
    if tensor.is_contiguous() {
        tensor
    } else {
        tensor.to_contiguous()
    }
}

/// The rows `ids` (strictly ascending) of a row-major `[N, d]` buffer, as disjoint slices.
fn rows_mut<'a>(mut data: &'a mut [f32], d: usize, ids: &[usize]) -> Vec<&'a mut [f32]> {
    let mut next = 0;
    ids.iter()
        .map(|&id| {
            let (_, tail) = std::mem::take(&mut data).split_at_mut((id - next) * d);
            let (row, rest) = tail.split_at_mut(d);
            data = rest;
            next = id + 1;
            row
        })
        .collect()
}

/// Hints the CPU to load a row into cache (every 64-byte line of it).
#[inline(always)]
fn prefetch_row(row: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    for line in row.chunks(16) {
        // SAFETY: a prefetch is a hint that never faults or changes memory; the address
        // comes from a live slice.
        #[allow(unsafe_code)]
        unsafe {
            use core::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            _mm_prefetch::<_MM_HINT_T0>(line.as_ptr().cast());
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = row;
}

/// `y = a·x` for a fresh output row's first term (`first`), `y += a·x` otherwise. Output rows
/// are written before they are read, so no pass writes zeros first, and a freshly mapped page
/// faults once (reading it first would map the shared zero page and fault again on the write,
/// making the kernel flush every thread's TLB: measured, most of the time of `bag_rows` on
/// 400 MB outputs).
#[inline(always)]
fn add_scaled(y: &mut [f32], a: f32, x: &[f32], first: bool) {
    if first {
        for (y, x) in y.iter_mut().zip(x) {
            *y = a * x;
        }
    } else {
        for (y, x) in y.iter_mut().zip(x) {
            *y += a * x;
        }
    }
}

/// `⟨a, b⟩` with 8 independent accumulators (vectorises).
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::row_position_keys;

    #[cfg(target_pointer_width = "64")]
    #[test]
    fn keys_pack_row_and_position_and_refuse_rows_past_32_bits() {
        assert_eq!(row_position_keys(&[3, 0]), Some(vec![3 << 32, 1]));
        assert_eq!(row_position_keys(&[0, 1 << 32]), None);
    }
}
