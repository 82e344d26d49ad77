//! Causal attention on Flex, memory-efficient: tiles of query rows against the keys they see,
//! strided GEMMs over the projections in their own layout, the probabilities recomputed in the
//! backward pass from each row's log-sum-exp.

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{DType, TensorData, TensorMetadata};
use rayon::prelude::*;

use super::{CausalBackend, Heads, chunked};
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

    /// The view `rows` rows further down.
    fn down(self, rows: usize) -> Self {
        Self {
            offset: self.offset + rows * self.row_stride,
            ..self
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

/// Query rows per tile. A tile's scores are `TILE × len` floats (1 MB at 4096 tokens) and its
/// rows are whole (every key a query sees), so the softmax needs no running rescale and the
/// extra memory grows with the length, not with its square.
const TILE: usize = 64;

/// The shape of one call: `[batch, len, head_dim]`, the head counts, the scale `1/√head_dim`.
#[derive(Debug, Clone, Copy)]
struct Shape {
    batch: usize,
    len: usize,
    d: usize,
    heads: Heads,
    scale: f32,
}

impl Shape {
    /// The shape of `q`, `k`, `v` (`[batch, len, heads·head_dim]`, `[batch, len,
    /// kv_heads·head_dim]` twice), or `None` where they do not make one.
    fn of(q: &FlexTensor, k: &FlexTensor, v: &FlexTensor, heads: Heads) -> Option<Self> {
        let [batch, len, width] = q.shape().dims::<3>();
        let f32 = [q, k, v].iter().all(|t| t.dtype() == DType::F32);
        let d = width / heads.heads.max(1);
        (f32 && chunked::fits::<Flex>(q, k, v, heads)).then(|| Self {
            batch,
            len,
            d,
            heads,
            scale: (d as f32).powf(-0.5),
        })
    }

    /// The rows of query head `head` of batch element `n` in `q [batch, len, heads·d]`.
    fn query(self, n: usize, head: usize) -> View {
        let width = self.heads.heads * self.d;
        View::rows(n * self.len * width + head * self.d, width)
    }

    /// The rows of the key/value head that query head `head` reads, in `k` or `v`.
    fn key(self, n: usize, head: usize) -> View {
        let width = self.heads.kv_heads * self.d;
        let group = self.heads.heads / self.heads.kv_heads;
        View::rows(n * self.len * width + head / group * self.d, width)
    }

    /// The tiles of query rows: `(first row, rows)`; a tile's queries see keys `..first + rows`.
    fn tiles(self) -> impl Iterator<Item = (usize, usize)> {
        (0..self.len)
            .step_by(TILE)
            .map(move |i0| (i0, TILE.min(self.len - i0)))
    }

    /// `scale · q·kᵀ` for the tile at `i0` of query head `head`: `scores [rows, i0 + rows]`.
    fn scores(
        self,
        (q, k): (&[f32], &[f32]),
        n: usize,
        head: usize,
        tile: (usize, usize),
        scores: &mut [f32],
    ) {
        let (i0, rows) = tile;
        let end = i0 + rows;
        matmul(
            (scores, View::rows(0, end)),
            (q, self.query(n, head).down(i0)),
            (k, self.key(n, head).t()),
            [rows, self.d, end],
            self.scale,
            false,
        );
    }
}

/// Lanes of the folds below: independent partial results, one AVX-512 register of them (a
/// single running sum would be a serial chain of adds that does not vectorise).
const LANES: usize = 16;

/// `f(0) ∘ f(1) ∘ … ∘ f(n − 1)` for an associative and commutative `op` with identity
/// `init`, in [`LANES`] interleaved partial results.
#[inline(always)]
fn lane_fold(n: usize, init: f32, f: impl Fn(usize) -> f32, op: impl Fn(f32, f32) -> f32) -> f32 {
    let mut acc = [init; LANES];
    let whole = n / LANES * LANES;
    for base in (0..whole).step_by(LANES) {
        for (lane, acc) in acc.iter_mut().enumerate() {
            *acc = op(*acc, f(base + lane));
        }
    }
    let lanes = acc.into_iter().fold(init, &op);
    (whole..n).map(f).fold(lanes, op)
}

/// `Σ f(i)` over `0..n`.
#[inline(always)]
fn lane_sum(n: usize, f: impl Fn(usize) -> f32) -> f32 {
    lane_fold(n, 0.0, f, |a, b| a + b)
}

/// `eˣ` within 2 ulp (Cephes' `expf`: `x = n·ln 2 + r`, a degree-7 polynomial in `r`,
/// `2ⁿ` in the exponent bits), inlined so that the loops calling it vectorise; `x` below
/// −87 gives about 1e-38, not 0.
#[inline(always)]
fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5·2²³ rounds to the nearest integer in any vector width.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let n = (x * LOG2E + ROUND) - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let p = p * r * r + r + 1.0;
    f32::from_bits(((n as i32 + 127) as u32) << 23) * p
}

/// Row `r` of `scores [rows, i0 + rows]` sees its first `i0 + r + 1` entries: the softmax over
/// them, zeros after, and each row's log-sum-exp into `lse`.
#[inline(always)]
fn causal_softmax(scores: &mut [f32], i0: usize, lse: &mut [f32]) {
    let end = i0 + lse.len();
    for ((r, row), lse) in scores.chunks_mut(end).enumerate().zip(lse) {
        let (seen, hidden) = row.split_at_mut(i0 + r + 1);
        // A plain comparison vectorises; `f32::max` (which ignores NaNs) does not.
        let max = lane_fold(
            seen.len(),
            f32::NEG_INFINITY,
            |j| seen[j],
            |a, b| {
                if a > b { a } else { b }
            },
        );
        seen.iter_mut().for_each(|p| *p = exp(*p - max));
        let sum = lane_sum(seen.len(), |j| seen[j]);
        let inverse = 1.0 / sum;
        seen.iter_mut().for_each(|p| *p *= inverse);
        hidden.fill(0.0);
        *lse = max + sum.ln();
    }
}

/// The probabilities of `scores [rows, i0 + rows]` again, from their rows' log-sum-exp.
#[inline(always)]
fn causal_probs(scores: &mut [f32], i0: usize, lse: &[f32]) {
    let end = i0 + lse.len();
    for ((r, row), lse) in scores.chunks_mut(end).enumerate().zip(lse) {
        let (seen, hidden) = row.split_at_mut(i0 + r + 1);
        seen.iter_mut().for_each(|s| *s = exp(*s - lse));
        hidden.fill(0.0);
    }
}

/// The softmax's backward on rows of `end`: `∂s = p ⊙ (∂p − rowsum(p ⊙ ∂p))`, over `∂p` in
/// place.
#[inline(always)]
fn softmax_backward(ds: &mut [f32], p: &[f32], end: usize) {
    for (ds, p) in ds.chunks_mut(end).zip(p.chunks(end)) {
        let mean = lane_sum(end, |j| ds[j] * p[j]);
        ds.iter_mut()
            .zip(p)
            .for_each(|(ds, p)| *ds = p * (*ds - mean));
    }
}

/// A row pass of a tile, run by [`pulp::Arch::dispatch`] inside a function compiled for the
/// machine's widest vectors: `with_simd` and the passes are `#[inline(always)]` (a closure's
/// body would stay a baseline function, 4 lanes wide).
enum RowPass<'a> {
    /// [`causal_softmax`].
    Softmax(&'a mut [f32], usize, &'a mut [f32]),
    /// [`causal_probs`].
    Probs(&'a mut [f32], usize, &'a [f32]),
    /// [`softmax_backward`].
    Backward(&'a mut [f32], &'a [f32], usize),
}

impl pulp::WithSimd for RowPass<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        match self {
            Self::Softmax(scores, i0, lse) => causal_softmax(scores, i0, lse),
            Self::Probs(scores, i0, lse) => causal_probs(scores, i0, lse),
            Self::Backward(ds, p, end) => softmax_backward(ds, p, end),
        }
    }
}

/// Copies `[len, d]` blocks, one per `(n, head)` in `order`, into their columns of a
/// `[batch, len, heads·d]` tensor.
fn interleave(
    blocks: Vec<Vec<f32>>,
    order: impl Iterator<Item = (usize, usize)>,
    [b, t, h, d]: [usize; 4],
) -> FlexTensor {
    let mut out = vec![0f32; b * t * h * d];
    for (block, (n, head)) in blocks.into_iter().zip(order) {
        for (i, row) in block.chunks(d).enumerate() {
            out[(n * t + i) * h * d + head * d..][..d].copy_from_slice(row);
        }
    }
    FlexTensor::from_data(TensorData::new(out, [b, t, h * d]))
}

/// One rayon task per (batch element, query head), tile after tile of its query rows: every
/// product is a GEMM on the heads where they lie in the projections (strided views, no head
/// swaps); each task's output block is copied into its columns at the end, and only the output
/// and each row's log-sum-exp are kept.
impl CausalBackend for Flex {
    fn causal_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        heads: Heads,
    ) -> Option<[FloatTensor<Self>; 2]> {
        let Some(s) = Shape::of(&q, &k, &v, heads) else {
            // Other float types (bf16) take the chunked path, which any dtype runs.
            return chunked::fits::<Self>(&q, &k, &v, heads)
                .then(|| chunked::forward::<Self>(q, k, v, heads));
        };
        let (t, d, h) = (s.len, s.d, heads.heads);
        let (q, k, v) = (q.to_contiguous(), k.to_contiguous(), v.to_contiguous());
        let (q, k, v) = (f32s(&q), f32s(&k), f32s(&v));
        let pairs = || (0..s.batch).flat_map(move |n| (0..h).map(move |head| (n, head)));
        // The row loops vectorise with the machine's widest registers.
        let arch = pulp::Arch::new();
        let (outs, lses): (Vec<_>, Vec<_>) = pairs()
            .collect::<Vec<_>>()
            .into_par_iter()
            .map(|(n, head)| {
                let (mut out, mut lse) = (vec![0f32; t * d], vec![0f32; t]);
                let mut scores = vec![0f32; TILE.min(t) * t];
                for (i0, rows) in s.tiles() {
                    let end = i0 + rows;
                    let scores = &mut scores[..rows * end];
                    s.scores((q, k), n, head, (i0, rows), scores);
                    arch.dispatch(RowPass::Softmax(scores, i0, &mut lse[i0..end]));
                    matmul(
                        (&mut out, View::rows(i0 * d, d)),
                        (scores, View::rows(0, end)),
                        (v, s.key(n, head)),
                        [rows, end, d],
                        1.0,
                        false,
                    );
                }
                (out, lse)
            })
            .unzip();
        let lse = FlexTensor::from_data(TensorData::new(lses.concat(), [s.batch, h, t]));
        Some([interleave(outs, pairs(), [s.batch, t, h, d]), lse])
    }

    /// Per tile, the probabilities `p` recomputed from `lse`, then `∂v += pᵀ·∂o`;
    /// `∂s = p ⊙ (∂o·vᵀ − rowsum(p ⊙ ∂o·vᵀ))`; `∂q = ∂s·k / √d`; `∂k += ∂sᵀ·q / √d`. One task
    /// per (batch element, key/value head), which sums over the query heads it serves.
    fn causal_attention_backward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        lse: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        heads: Heads,
    ) -> [FloatTensor<Self>; 3] {
        let Some(s) = Shape::of(&q, &k, &v, heads) else {
            return chunked::backward::<Self>(q, k, v, lse, grad, heads);
        };
        let (t, d, h, kv) = (s.len, s.d, heads.heads, heads.kv_heads);
        let group = h / kv;
        let [q, k, v, lse, grad] = [q, k, v, lse, grad].map(|t| t.to_contiguous());
        let (q, k, v, lse, g) = (f32s(&q), f32s(&k), f32s(&v), f32s(&lse), f32s(&grad));
        let pairs = || (0..s.batch).flat_map(move |n| (0..kv).map(move |c| (n, c)));
        let arch = pulp::Arch::new();
        let gradients: Vec<_> = pairs()
            .collect::<Vec<_>>()
            .into_par_iter()
            .map(|(n, c)| {
                let (mut dk, mut dv) = (vec![0f32; t * d], vec![0f32; t * d]);
                let mut dqs = Vec::with_capacity(group);
                let mut p = vec![0f32; TILE.min(t) * t];
                let mut ds = p.clone();
                for head in c * group..(c + 1) * group {
                    let mut dq = vec![0f32; t * d];
                    let lse = &lse[(n * h + head) * t..][..t];
                    let (qh, kh) = (s.query(n, head), s.key(n, head));
                    for (i0, rows) in s.tiles() {
                        let end = i0 + rows;
                        let (p, ds) = (&mut p[..rows * end], &mut ds[..rows * end]);
                        let (tile, local) = (View::rows(0, end), View::rows(0, d));
                        s.scores((q, k), n, head, (i0, rows), p);
                        arch.dispatch(RowPass::Probs(p, i0, &lse[i0..end]));
                        let (qi, gi) = (qh.down(i0), qh.down(i0));
                        matmul(
                            (&mut dv, local),
                            (p, tile.t()),
                            (g, gi),
                            [end, rows, d],
                            1.0,
                            true,
                        );
                        matmul((ds, tile), (g, gi), (v, kh.t()), [rows, d, end], 1.0, false);
                        arch.dispatch(RowPass::Backward(ds, p, end));
                        let dq_tile = View::rows(i0 * d, d);
                        matmul(
                            (&mut dq, dq_tile),
                            (ds, tile),
                            (k, kh),
                            [rows, end, d],
                            s.scale,
                            false,
                        );
                        matmul(
                            (&mut dk, local),
                            (ds, tile.t()),
                            (q, qi),
                            [end, rows, d],
                            s.scale,
                            true,
                        );
                    }
                    dqs.push(dq);
                }
                (dqs, dk, dv)
            })
            .collect();
        let shape = [s.batch, t, kv, d];
        let (mut dqs, mut dks, mut dvs) = (Vec::new(), Vec::new(), Vec::new());
        for (dq, dk, dv) in gradients {
            dqs.extend(dq);
            dks.push(dk);
            dvs.push(dv);
        }
        [
            interleave(
                dqs,
                (0..s.batch).flat_map(move |n| (0..h).map(move |head| (n, head))),
                [s.batch, t, h, d],
            ),
            interleave(dks, pairs(), shape),
            interleave(dvs, pairs(), shape),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_the_standard_libraries_to_two_ulps() {
        for i in -87_000..=88_000 {
            let x = (i as f32 / 1000.0 + 0.000_37).min(88.0);
            let (ours, std) = (exp(x), x.exp());
            assert!(
                (ours - std).abs() <= 2.0 * f32::EPSILON * std,
                "exp({x}) = {ours}, not {std}"
            );
        }
        assert!(
            exp(-87.3) < 1.7e-38 && exp(-1e4) < 1.7e-38,
            "below the range: about 0"
        );
        assert!(exp(f32::NAN).is_nan(), "NaN stays NaN");
    }

    #[test]
    fn lane_sums_add_every_term() {
        for n in [0, 1, 15, 16, 17, 100] {
            let sum = lane_sum(n, |i| i as f32);
            assert_eq!(sum, (n * n.saturating_sub(1) / 2) as f32, "n = {n}");
        }
    }
}
