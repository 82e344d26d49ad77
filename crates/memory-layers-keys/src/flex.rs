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
            // Value indices past 32 bits do not fit the kernel's packed keys.
            return default_product_topk::<Flex>(scores, knn);
        }
        let scores = scores.to_contiguous();
        let all = scores.as_slice::<f32>().expect("f32");
        let mut i1 = vec![0i32; heads * t * knn];
        let mut i2 = vec![0i32; heads * t * knn];
        // Output row r = h·T + t reads half s of row (h, s, t) at ((h·2 + s)·T + t)·n.
        let half = |r: usize, s: usize| {
            let start = (((r / t) * 2 + s) * t + r % t) * n;
            &all[start..start + n]
        };
        let arch = pulp::Arch::new();
        i1.par_chunks_mut(knn * ROWS_PER_TASK)
            .zip(i2.par_chunks_mut(knn * ROWS_PER_TASK))
            .enumerate()
            .for_each(|(chunk, (out1, out2))| {
                let mut scratch = Scratch::default();
                // The floor and filter passes vectorise with the machine's widest registers.
                arch.dispatch(|| {
                    for r in 0..out1.len() / knn.max(1) {
                        let row = chunk * ROWS_PER_TASK + r;
                        let range = r * knn..(r + 1) * knn;
                        best_pairs(
                            half(row, 0),
                            half(row, 1),
                            knn,
                            &mut out1[range.clone()],
                            &mut out2[range],
                            &mut scratch,
                        );
                    }
                });
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

/// Sort key of score `v` at `position` (< 2^32: a sub-key, or a value index of at most
/// `n_keys² ≤ 2^32` pairs): ascending keys are descending scores, ties broken by the smaller
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
/// Each of `k` equal blocks has its maximum among the scores, so the smallest block maximum is
/// a floor that the `k`-th best cannot fall below. A vectorisable pass finds it, a second keeps
/// the scores at or above it (on random scores a few `k`), and only those are selected and
/// sorted. `scratch` and `out` are reused between calls.
#[inline(always)]
fn top_positions(half: &[f32], k: usize, scratch: &mut Vec<u64>, out: &mut Vec<u32>) {
    let block = half.len() / k.max(1);
    let floor = if k > 0 && block >= 2 {
        half.chunks_exact(block)
            .take(k)
            .map(|b| b.iter().map(|&v| ordered(v)).max().unwrap_or(0))
            .min()
            .unwrap_or(0)
    } else {
        0
    };
    // Branch-free filter: every key is written, only those at or above the floor are kept.
    scratch.resize(scratch.len().max(half.len()), 0);
    let mut kept = 0;
    for (position, &v) in half.iter().enumerate() {
        scratch[kept] = rank_key(v, position);
        kept += usize::from(ordered(v) >= floor);
    }
    out.clear();
    out.extend(
        smallest_sorted(&mut scratch[..kept], k)
            .iter()
            .map(|&key| key as u32),
    );
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
/// best `k`: about `k·ln k` candidates, selected and sorted by [`rank_key`].
#[inline(always)]
fn best_pairs(
    h1: &[f32],
    h2: &[f32],
    k: usize,
    out1: &mut [i32],
    out2: &mut [i32],
    scratch: &mut Scratch,
) {
    let n = h1.len();
    let Scratch {
        keys,
        p1,
        p2,
        pairs,
    } = scratch;
    top_positions(h1, k, keys, p1);
    top_positions(h2, k, keys, p2);
    pairs.clear();
    for (a, &i1) in p1.iter().enumerate() {
        let (i1, s1) = (i1 as usize, h1[i1 as usize]);
        pairs.extend(
            p2[..(k / (a + 1)).min(p2.len())]
                .iter()
                .map(|&i2| rank_key(s1 + h2[i2 as usize], i1 * n + i2 as usize)),
        );
    }
    for ((o1, o2), &key) in out1
        .iter_mut()
        .zip(out2.iter_mut())
        .zip(smallest_sorted(pairs, k))
    {
        let index = (key as u32) as usize;
        *o1 = (index / n) as i32;
        *o2 = (index % n) as i32;
    }
}
