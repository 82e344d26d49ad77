//! Causal attention on Flex: strided GEMMs over the projections in their own layout, the
//! softmax in place, the backward from the kept probabilities.

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{DType, TensorData, TensorMetadata};
use rayon::prelude::*;

use super::{CausalBackend, Heads};
use crate::host::f32s;

/// A strided matrix in a buffer: element `(i, j)` at `offset + i·row_stride + j·col_stride`.
#[derive(Debug, Clone, Copy)]
struct View {
    offset: usize,
    row_stride: usize,
    col_stride: usize,
}

impl View {
    /// Row-major, rows `row_stride` apart.
    fn rows(offset: usize, row_stride: usize) -> Self {
        Self {
            offset,
            row_stride,
            col_stride: 1,
        }
    }

    /// The transpose.
    fn t(self) -> Self {
        Self {
            offset: self.offset,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
        }
    }

    /// Whether every element of an `m × n` matrix lies below `len` (the strides are not
    /// negative: the last element is the farthest), with no overflow on the way.
    fn fits(self, [m, n]: [usize; 2], len: usize) -> bool {
        let last = (m - 1)
            .checked_mul(self.row_stride)
            .zip((n - 1).checked_mul(self.col_stride))
            .and_then(|(a, b)| a.checked_add(b)?.checked_add(self.offset));
        let strides = isize::try_from(self.row_stride.max(self.col_stride)).is_ok();
        strides && last.is_some_and(|last| last < len)
    }
}

/// `dst ← [dst +] scale · lhs·rhs` for `lhs [m, k]`, `rhs [k, n]` and `dst [m, n]` (views
/// into their buffers), by Flex's own GEMM (the `gemm` crate) on this thread.
#[allow(clippy::too_many_arguments)]
fn matmul(
    (dst, d): (&mut [f32], View),
    (lhs, l): (&[f32], View),
    (rhs, r): (&[f32], View),
    [m, k, n]: [usize; 3],
    scale: f32,
    accumulate: bool,
) {
    assert!(m > 0 && k > 0 && n > 0, "an empty product");
    assert!(
        d.fits([m, n], dst.len()) && l.fits([m, k], lhs.len()) && r.fits([k, n], rhs.len()),
        "matmul views outside their buffers"
    );
    assert!(
        d.col_stride == 1 && d.row_stride >= n,
        "the output view's rows do not overlap"
    );
    // SAFETY: every element the three views address lies inside its slice (checked above,
    // without overflow), the output's elements are distinct (row-major rows that do not
    // overlap), and `dst` is borrowed mutably, so it aliases neither input.
    #[allow(unsafe_code)]
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr().add(d.offset),
            d.col_stride as isize,
            d.row_stride as isize,
            accumulate,
            lhs.as_ptr().add(l.offset),
            l.col_stride as isize,
            l.row_stride as isize,
            rhs.as_ptr().add(r.offset),
            r.col_stride as isize,
            r.row_stride as isize,
            1.0,
            scale,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// The sizes of one call: `[batch, len, head_dim]`, from `q` and the head counts.
fn dims(q: &FlexTensor, heads: Heads) -> [usize; 3] {
    let [b, t, width] = q.shape().dims::<3>();
    [b, t, width / heads.heads]
}

/// Softmax of row `i` of `scores [t, t]` over its first `i + 1` entries, zeros after.
fn causal_softmax(scores: &mut [f32], t: usize) {
    for (i, row) in scores.chunks_mut(t).enumerate() {
        let (seen, hidden) = row.split_at_mut(i + 1);
        let max = seen.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0;
        for p in seen.iter_mut() {
            *p = (*p - max).exp();
            sum += *p;
        }
        seen.iter_mut().for_each(|p| *p /= sum);
        hidden.fill(0.0);
    }
}

/// Each batch element on its own rayon task, its heads in turn: every product is a GEMM on
/// the heads where they lie in the projections (strided views, no copies), and the
/// probabilities are kept for the backward pass.
impl CausalBackend for Flex {
    fn causal_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        heads: Heads,
    ) -> Option<[FloatTensor<Self>; 2]> {
        if [&q, &k, &v].iter().any(|t| t.dtype() != DType::F32) {
            return None;
        }
        let (h, kv) = (heads.heads, heads.kv_heads);
        let [b, t, width] = q.shape().dims::<3>();
        let kv_shape = [b, t, width / h.max(1) * kv];
        let valid = h > 0 && kv > 0 && h % kv == 0 && width % h == 0;
        let shapes = k.shape().dims::<3>() == kv_shape && v.shape().dims::<3>() == kv_shape;
        if !valid || !shapes || b * t * width == 0 {
            return None;
        }
        let d = width / h;
        let (group, scale) = (h / kv, (d as f32).powf(-0.5));
        let (q, k, v) = (q.to_contiguous(), k.to_contiguous(), v.to_contiguous());
        let (q, k, v) = (f32s(&q), f32s(&k), f32s(&v));
        let mut out = vec![0f32; b * t * h * d];
        let mut probs = vec![0f32; b * h * t * t];
        out.par_chunks_mut(t * h * d)
            .zip(probs.par_chunks_mut(h * t * t))
            .enumerate()
            .for_each(|(n, (out, probs))| {
                let (q, k, v) = (
                    &q[n * t * h * d..][..t * h * d],
                    &k[n * t * kv * d..][..t * kv * d],
                    &v[n * t * kv * d..][..t * kv * d],
                );
                for (head, p) in probs.chunks_mut(t * t).enumerate() {
                    let (qh, c) = (
                        View::rows(head * d, h * d),
                        View::rows(head / group * d, kv * d),
                    );
                    matmul(
                        (p, View::rows(0, t)),
                        (q, qh),
                        (k, c.t()),
                        [t, d, t],
                        scale,
                        false,
                    );
                    causal_softmax(p, t);
                    matmul(
                        (out, qh),
                        (p, View::rows(0, t)),
                        (v, c),
                        [t, t, d],
                        1.0,
                        false,
                    );
                }
            });
        Some([
            FlexTensor::from_data(TensorData::new(out, [b, t, h * d])),
            FlexTensor::from_data(TensorData::new(probs, [b, h, t, t])),
        ])
    }

    /// `∂v = pᵀ·∂o`; `∂s = p ⊙ (∂o·vᵀ − rowsum(p ⊙ ∂o·vᵀ))`; `∂q = ∂s·k / √d`;
    /// `∂k = ∂sᵀ·q / √d` (key/value heads summed over the query heads they serve).
    fn causal_attention_backward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        probs: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        heads: Heads,
    ) -> [FloatTensor<Self>; 3] {
        let [b, t, d] = dims(&q, heads);
        let (h, kv) = (heads.heads, heads.kv_heads);
        let (group, scale) = (h / kv, (d as f32).powf(-0.5));
        let [q, k, v, probs, grad] = [q, k, v, probs, grad].map(|t| t.to_contiguous());
        let (q, k, v, probs, g) = (f32s(&q), f32s(&k), f32s(&v), f32s(&probs), f32s(&grad));
        let mut dq = vec![0f32; b * t * h * d];
        let (mut dk, mut dv) = (vec![0f32; b * t * kv * d], vec![0f32; b * t * kv * d]);
        dq.par_chunks_mut(t * h * d)
            .zip(
                dk.par_chunks_mut(t * kv * d)
                    .zip(dv.par_chunks_mut(t * kv * d)),
            )
            .enumerate()
            .for_each(|(n, (dq, (dk, dv)))| {
                let (q, g) = (
                    &q[n * t * h * d..][..t * h * d],
                    &g[n * t * h * d..][..t * h * d],
                );
                let (k, v) = (
                    &k[n * t * kv * d..][..t * kv * d],
                    &v[n * t * kv * d..][..t * kv * d],
                );
                let probs = &probs[n * h * t * t..][..h * t * t];
                let mut ds = vec![0f32; t * t];
                let square = View::rows(0, t);
                for (head, p) in probs.chunks(t * t).enumerate() {
                    let (qh, c) = (
                        View::rows(head * d, h * d),
                        View::rows(head / group * d, kv * d),
                    );
                    // The key/value heads' first query head writes, the others add.
                    let first = head % group == 0;
                    matmul((dv, c), (p, square.t()), (g, qh), [t, t, d], 1.0, !first);
                    matmul(
                        (&mut ds, square),
                        (g, qh),
                        (v, c.t()),
                        [t, d, t],
                        1.0,
                        false,
                    );
                    for (ds, p) in ds.chunks_mut(t).zip(p.chunks(t)) {
                        let mean: f32 = ds.iter().zip(p).map(|(ds, p)| ds * p).sum();
                        ds.iter_mut()
                            .zip(p)
                            .for_each(|(ds, p)| *ds = p * (*ds - mean));
                    }
                    matmul((dq, qh), (&ds, square), (k, c), [t, t, d], scale, false);
                    matmul(
                        (dk, c),
                        (&ds, square.t()),
                        (q, qh),
                        [t, t, d],
                        scale,
                        !first,
                    );
                }
            });
        let tensor = |values, width| FlexTensor::from_data(TensorData::new(values, [b, t, width]));
        [tensor(dq, h * d), tensor(dk, kv * d), tensor(dv, kv * d)]
    }
}
