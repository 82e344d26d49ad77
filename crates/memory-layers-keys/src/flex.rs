//! CPU kernels of the product-key retrieval for the Flex backend, per row (multi-threaded):
//! - the selection: two passes over each half keep the few sub-keys that can be among its best
//!   `knn`, then the best `knn` of the `knn²` pair sums come from the `≈ knn·ln knn` pairs of
//!   ranks that can reach them, in `O(n_keys + knn·log knn)` per row on random scores. Ties are
//!   broken by the smaller value index, as in the brute-force reference (exactly where sums are
//!   exact; a rounding tie between a better and a worse half may rank either first);
//! - the selected pairs' scores, and their gradient back onto the sub-key scores.
//!
//! Inputs in other dtypes than f32 scores and i32/i64 positions fall back to plain tensor ops.

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{DType, Int, Tensor, TensorData, TensorMetadata};
use rayon::prelude::*;

use crate::RetrievalBackend;
use crate::backend::{default_pair_scores, default_pair_scores_backward, default_product_topk};

/// Rows per rayon task.
const ROWS_PER_TASK: usize = 8;

impl RetrievalBackend for Flex {
    fn product_topk(scores: FloatTensor<Self>, knn: usize) -> (IntTensor<Self>, IntTensor<Self>) {
        if scores.dtype() != DType::F32 {
            return default_product_topk::<Flex>(scores, knn);
        }
        let [heads, _, t, n] = scores.shape().dims::<4>();
        assert!(knn <= n, "knn {knn} exceeds the {n} sub-keys per half");
        if n.checked_mul(n).is_none_or(|pairs| pairs > 1 << 32) {
            // Sub-key positions past 16 bits do not fit the kernel's packed pair keys.
            return default_product_topk::<Flex>(scores, knn);
        }
        let scores = scores.to_contiguous();
        let all = scores.as_slice::<f32>().expect("f32");
        let mut i1 = vec![0i32; heads * t * knn];
        let mut i2 = vec![0i32; heads * t * knn];
        let arch = pulp::Arch::new();
        let rows = knn.max(1) * ROWS_PER_TASK;
        i1.par_chunks_mut(rows)
            .zip(i2.par_chunks_mut(rows))
            .enumerate()
            .for_each(|(chunk, (out1, out2))| {
                arch.dispatch(SelectRows {
                    scores: all,
                    shape: [t, n, knn],
                    first: chunk * ROWS_PER_TASK,
                    out1,
                    out2,
                })
            });
        let device = Default::default();
        let int = |ids: Vec<i32>| {
            Tensor::<Flex, 3, Int>::from_data(TensorData::new(ids, [heads, t, knn]), &device)
                .into_primitive()
        };
        (int(i1), int(i2))
    }

    fn pair_scores(
        scores: FloatTensor<Self>,
        i1: IntTensor<Self>,
        i2: IntTensor<Self>,
    ) -> FloatTensor<Self> {
        if scores.dtype() != DType::F32 || !int_ids(&[&i1, &i2]) {
            return default_pair_scores::<Flex>(scores, i1, i2);
        }
        let [heads, _, t, n] = scores.shape().dims::<4>();
        let knn = i1.shape().dims::<3>()[2];
        let [scores, i1, i2] = [scores, i1, i2].map(|x| x.to_contiguous());
        let all = scores.as_slice::<f32>().expect("f32");
        let (p1, p2) = (positions(&i1, n), positions(&i2, n));
        let mut out = vec![0f32; t * heads * knn];
        // Output row t·heads + h reads half s of (h, s, t) at ((h·2 + s)·T + t)·n.
        out.par_chunks_mut(knn.max(1) * ROWS_PER_TASK)
            .enumerate()
            .for_each(|(chunk, rows)| {
                for (r, row) in rows.chunks_mut(knn).enumerate() {
                    let row_index = chunk * ROWS_PER_TASK + r;
                    let (tt, h) = (row_index / heads, row_index % heads);
                    let picked = (h * t + tt) * knn..(h * t + tt + 1) * knn;
                    let h1 = &all[(h * 2 * t + tt) * n..][..n];
                    let h2 = &all[((h * 2 + 1) * t + tt) * n..][..n];
                    for ((o, &a), &b) in row.iter_mut().zip(&p1[picked.clone()]).zip(&p2[picked]) {
                        *o = h1[a] + h2[b];
                    }
                }
            });
        float_tensor(out, [t * heads, knn])
    }

    fn pair_scores_backward(
        grad: FloatTensor<Self>,
        i1: IntTensor<Self>,
        i2: IntTensor<Self>,
        n_keys: usize,
    ) -> FloatTensor<Self> {
        if grad.dtype() != DType::F32 || !int_ids(&[&i1, &i2]) {
            return default_pair_scores_backward::<Flex>(grad, i1, i2, n_keys);
        }
        let [heads, t, knn] = i1.shape().dims::<3>();
        let n = n_keys;
        let [grad, i1, i2] = [grad, i1, i2].map(|x| x.to_contiguous());
        let grad = grad.as_slice::<f32>().expect("f32");
        let (p1, p2) = (positions(&i1, n), positions(&i2, n));
        let mut out = vec![0f32; heads * 2 * t * n];
        // Row (h·2 + s)·T + t of the gradient collects half s of every pair of row t·heads + h.
        out.par_chunks_mut(n.max(1) * ROWS_PER_TASK)
            .enumerate()
            .for_each(|(chunk, rows)| {
                for (r, row) in rows.chunks_mut(n).enumerate() {
                    let row_index = chunk * ROWS_PER_TASK + r;
                    let (hs, tt) = (row_index / t, row_index % t);
                    let (h, half) = (hs / 2, hs % 2);
                    let picked = &[&p1, &p2][half][(h * t + tt) * knn..][..knn];
                    let g = &grad[(tt * heads + h) * knn..][..knn];
                    for (&p, &g) in picked.iter().zip(g) {
                        row[p] += g;
                    }
                }
            });
        float_tensor(out, [heads, 2, t, n])
    }
}

/// One rayon task's rows of [`best_pairs`], dispatched by [`pulp::Arch`] so that the floor and
/// filter passes compile for the machine's widest registers (a closure's body would stay at the
/// baseline's).
struct SelectRows<'a> {
    /// Sub-key scores `[heads, 2, T, n]`, contiguous.
    scores: &'a [f32],
    /// `[T, n, knn]`.
    shape: [usize; 3],
    /// The output row (`h·T + t`) of the task's first.
    first: usize,
    out1: &'a mut [i32],
    out2: &'a mut [i32],
}

impl pulp::WithSimd for SelectRows<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let Self {
            scores,
            shape: [t, n, knn],
            first,
            out1,
            out2,
        } = self;
        let mut scratch = Scratch::default();
        let rows = out1.chunks_mut(knn.max(1)).zip(out2.chunks_mut(knn.max(1)));
        for (row, (o1, o2)) in (first..).zip(rows) {
            // Output row h·T + t reads half s of (h, s, t) at ((h·2 + s)·T + t)·n.
            let half = |s: usize| &scores[(((row / t) * 2 + s) * t + row % t) * n..][..n];
            best_pairs(half(0), half(1), knn, o1, o2, &mut scratch);
        }
    }
}

/// Whether every index tensor holds i32 (Flex's default) or i64.
fn int_ids(tensors: &[&FlexTensor]) -> bool {
    tensors
        .iter()
        .all(|t| matches!(t.dtype(), DType::I32 | DType::I64))
}

/// Contiguous positions as `usize`, each checked against `n` (a position past the sub-keys is
/// a caller's bug, named here rather than read out of bounds).
fn positions(ids: &FlexTensor, n: usize) -> Vec<usize> {
    let check = |p: i64| {
        usize::try_from(p)
            .ok()
            .filter(|&p| p < n)
            .unwrap_or_else(|| panic!("pair position {p} outside 0..{n} sub-keys"))
    };
    match ids.dtype() {
        DType::I32 => ids
            .as_slice::<i32>()
            .expect("i32")
            .iter()
            .map(|&p| check(p.into()))
            .collect(),
        _ => ids
            .as_slice::<i64>()
            .expect("i64")
            .iter()
            .map(|&p| check(p))
            .collect(),
    }
}

/// A Flex float tensor of `values` in `shape`.
fn float_tensor<const D: usize>(values: Vec<f32>, shape: [usize; D]) -> FlexTensor {
    Tensor::<Flex, D>::from_data(TensorData::new(values, shape), &Default::default())
        .into_primitive()
        .tensor()
}

/// Unsigned rank of a score whose order is `f32::total_cmp`'s with both zeros equal: the
/// magnitude bits of negatives are flipped, then the sign bit.
#[inline(always)]
fn ordered(v: f32) -> u32 {
    // `-0.0 + 0.0` is `+0.0`: the two zeros are one score, tied like any other.
    let bits = (v + 0.0).to_bits();
    bits ^ ((((bits as i32) >> 31) as u32) >> 1) ^ 0x8000_0000
}

/// Sort key of score `v` at `position` (< 2^32: a sub-key, or a pair `(i1, i2)` packed as
/// `i1·2^16 + i2`, which orders pairs as their value indices `i1·n_keys + i2` with
/// `n_keys ≤ 2^16`): ascending keys are descending scores, ties broken by the smaller
/// position. Keys are unique per half and per row of pairs.
#[inline(always)]
fn rank_key(v: f32, position: usize) -> u64 {
    (u64::from(!ordered(v)) << 32) | position as u64
}

/// The best `k` of `keys` in ascending order, in place at its front: a selection first where
/// there are many more than `k`, a plain sort where there are few (cheaper than selecting).
#[inline(always)]
fn smallest_sorted(keys: &mut [u64], k: usize) -> &[u64] {
    let k = k.min(keys.len());
    if keys.len() > 4 * k.max(8) {
        keys.select_nth_unstable(k);
        keys[..k].sort_unstable();
    } else {
        keys.sort_unstable();
    }
    &keys[..k]
}

/// Writes the positions of the best `k` scores of `half` into `out`, best first (ties: smaller
/// position first).
///
/// A floor first, that the `k`-th best cannot fall below: [`floor`]. A second pass keeps the
/// scores at or above it (on random scores about `1.5·k`), and only those are selected and
/// sorted. `scratch` and `out` are reused between calls.
#[inline(always)]
fn top_positions(half: &[f32], k: usize, scratch: &mut Vec<u64>, out: &mut Vec<u32>) {
    let floor = floor(half, k);
    // A mask of the kept scores per 64 (a vectorisable compare), then only those written.
    scratch.clear();
    for (chunk, scores) in half.chunks(64).enumerate() {
        let mut mask = scores
            .iter()
            .enumerate()
            .fold(0u64, |m, (i, &v)| m | u64::from(ordered(v) >= floor) << i);
        while mask != 0 {
            let position = chunk * 64 + mask.trailing_zeros() as usize;
            mask &= mask - 1;
            scratch.push(rank_key(half[position], position));
        }
    }
    out.clear();
    out.extend(smallest_sorted(scratch, k).iter().map(|&key| key as u32));
}

/// Scores per lane that [`floor`] tracks.
const TRACKED: usize = 4;

/// An ordered score that at least `k` scores of `half` reach (0, every score, where `k` is 0
/// or above 64, or where a lane would hold fewer than `r` scores).
///
/// `half` is read as rows of `L ≥ ⌈k / r⌉` lanes (`r = min(k, 4)`, `L` a power of two for
/// the registers): each lane, a strided group of scores, keeps its best `r`, and the smallest
/// of the lanes' `r`-th best is reached by `L·r ≥ k` scores. On random scores that keeps about
/// `1.5·k`, against `2.7·k` for the smallest maximum of `k` groups.
#[inline(always)]
fn floor(half: &[f32], k: usize) -> u32 {
    let r = k.min(TRACKED);
    match k.div_ceil(TRACKED) {
        1 => lane_floor::<1>(half, r),
        2 => lane_floor::<2>(half, r),
        3..=4 => lane_floor::<4>(half, r),
        5..=8 => lane_floor::<8>(half, r),
        9..=16 => lane_floor::<16>(half, r),
        _ => 0,
    }
}

/// [`floor`] over `L` lanes: the smallest of the lanes' `r`-th best (0 where a lane has fewer
/// than `r` scores).
#[inline(always)]
fn lane_floor<const L: usize>(half: &[f32], r: usize) -> u32 {
    if half.len() / L < r {
        return 0;
    }
    let mut best = [[0u32; L]; TRACKED];
    for row in half.chunks_exact(L) {
        let mut x: [u32; L] = std::array::from_fn(|lane| ordered(row[lane]));
        // Insert into each lane's sorted best four: a max/min chain, no branches.
        for level in &mut best {
            for (b, x) in level.iter_mut().zip(&mut x) {
                (*b, *x) = ((*b).max(*x), (*b).min(*x));
            }
        }
    }
    best[r - 1].iter().copied().min().unwrap_or(0)
}

/// Reusable buffers of one rayon task: the per-half candidates and best positions, then the
/// pair candidates.
#[derive(Default)]
struct Scratch {
    keys: Vec<u64>,
    p1: Vec<u32>,
    p2: Vec<u32>,
    pairs: Vec<u64>,
}

/// Writes the positions `(i1, i2)` of the best `k` pairs of one row, best first.
///
/// With both halves sorted, the pair of ranks `(a, b)` is beaten or tied-and-preceded by the
/// `(a + 1)·(b + 1) − 1` pairs of better ranks (ties in a half are sorted by position, so they
/// also have smaller value indices). Only pairs with `(a + 1)·(b + 1) ≤ k` can be among the
/// best `k`: about `k·ln k` candidates. Of those, the `k` pairs `(a, 0)` and the `k` pairs
/// `(0, b)` each reach the sum of their last, so the larger of the two sums is a floor; the
/// candidates at or above it are selected and sorted by [`rank_key`].
#[inline(always)]
fn best_pairs(
    h1: &[f32],
    h2: &[f32],
    k: usize,
    out1: &mut [i32],
    out2: &mut [i32],
    scratch: &mut Scratch,
) {
    let Scratch {
        keys,
        p1,
        p2,
        pairs,
    } = scratch;
    top_positions(h1, k, keys, p1);
    top_positions(h2, k, keys, p2);
    let (Some(&first1), Some(&first2)) = (p1.first(), p2.first()) else {
        return;
    };
    let (last1, last2) = (p1[p1.len() - 1], p2[p2.len() - 1]);
    // Sums as the candidates compute them: rounding is monotonic, so the floor holds.
    let sum = |i1: u32, i2: u32| h1[i1 as usize] + h2[i2 as usize];
    let floor = ordered(sum(last1, first2)).max(ordered(sum(first1, last2)));
    let reach = |a: usize| (k / (a + 1)).min(p2.len());
    let candidates = (0..p1.len()).map(reach).sum::<usize>();
    pairs.resize(pairs.len().max(candidates), 0);
    // Branch-free filter, as for the halves.
    let mut keep = |floor: u32| {
        let mut kept = 0;
        for (a, &i1) in p1.iter().enumerate() {
            for &i2 in &p2[..reach(a)] {
                let v = sum(i1, i2);
                pairs[kept] = rank_key(v, (i1 as usize) << 16 | i2 as usize);
                kept += usize::from(ordered(v) >= floor);
            }
        }
        kept
    };
    let mut kept = keep(floor);
    if kept < k.min(candidates) {
        // Infinite scores of opposite signs sum to NaN, which breaks the floor's monotonicity.
        kept = keep(0);
    }
    for ((o1, o2), &key) in out1
        .iter_mut()
        .zip(out2.iter_mut())
        .zip(smallest_sorted(&mut pairs[..kept], k))
    {
        *o1 = (key as u32 >> 16) as i32;
        *o2 = (key as u16) as i32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `∞ + (-∞)` is NaN, which `ordered` ranks below every number where the hardware's NaN is
    /// negative (x86) and above every number where it is positive: either way one of these
    /// rows makes the pairs' floor no floor, and every output position must still be written,
    /// with distinct pairs.
    #[test]
    fn infinite_scores_of_opposite_signs_still_fill_every_pair() {
        let (inf, neg) = (f32::INFINITY, f32::NEG_INFINITY);
        let rows = [
            ([inf, 1.0, 0.0, 0.0], [neg; 4]),
            ([1.0, neg, neg, neg], [inf, 0.0, 0.0, 0.0]),
        ];
        for (h1, h2) in rows {
            // Opaque to the optimiser, whose constant folding makes a positive NaN.
            let (h1, h2) = std::hint::black_box((h1, h2));
            let (mut out1, mut out2) = ([-1; 2], [-1; 2]);
            best_pairs(&h1, &h2, 2, &mut out1, &mut out2, &mut Scratch::default());
            assert!(out1.iter().chain(&out2).all(|&p| (0..4).contains(&p)));
            assert_ne!((out1[0], out2[0]), (out1[1], out2[1]));
        }
    }
}
