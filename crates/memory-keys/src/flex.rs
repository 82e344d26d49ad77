//! CPU kernel of the product-key selection for the Flex backend, per row (multi-threaded):
//! one thresholded pass selects the best `knn` sub-keys of each half (no sort), then the best
//! `knn` of the `knn²` pair sums by a k-best-pairs heap over the two sorted halves, in
//! `O(n_keys + knn·log knn)`. Ties are broken by the smaller value index, as in the
//! brute-force reference. Inputs in other dtypes than f32 fall back to plain tensor ops.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use burn::backend::Flex;
use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{DType, Int, Tensor, TensorData, TensorMetadata};
use rayon::prelude::*;

use crate::RetrievalBackend;

/// Rows per rayon task.
const ROWS_PER_TASK: usize = 8;

impl RetrievalBackend for Flex {
    fn product_topk(scores: FloatTensor<Self>, knn: usize) -> (IntTensor<Self>, IntTensor<Self>) {
        if scores.dtype() != DType::F32 {
            return crate::backend::default_product_topk::<Flex>(scores, knn);
        }
        let [heads, _, t, n] = scores.shape().dims::<4>();
        let scores = scores.to_contiguous();
        let all = scores.as_slice::<f32>().expect("f32");
        let mut i1 = vec![0i64; heads * t * knn];
        let mut i2 = vec![0i64; heads * t * knn];
        // Output row r = h·T + t reads half s of row (h, s, t) at ((h·2 + s)·T + t)·n.
        let half = |r: usize, s: usize| {
            let start = (((r / t) * 2 + s) * t + r % t) * n;
            &all[start..start + n]
        };
        i1.par_chunks_mut(knn * ROWS_PER_TASK)
            .zip(i2.par_chunks_mut(knn * ROWS_PER_TASK))
            .enumerate()
            .for_each(|(chunk, (out1, out2))| {
                let mut scratch = Scratch::default();
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
        let device = Default::default();
        let int = |ids: Vec<i64>| {
            Tensor::<Flex, 3, Int>::from_data(TensorData::new(ids, [heads, t, knn]), &device)
                .into_primitive()
        };
        (int(i1), int(i2))
    }
}

/// Unsigned rank of a score whose order is `f32::total_cmp`'s: the magnitude bits of negatives
/// are flipped, then the sign bit.
fn ordered(v: f32) -> u32 {
    let bits = v.to_bits();
    bits ^ ((((bits as i32) >> 31) as u32) >> 1) ^ 0x8000_0000
}

/// Sort key of score `v` at `position`: ascending keys are descending scores, ties broken by
/// the smaller position. Keys are unique per half.
fn rank_key(v: f32, position: usize) -> u64 {
    (u64::from(!ordered(v)) << 32) | position as u64
}

/// Positions of the best `k` scores of `half`, best first (ties: smaller position first).
///
/// Each of `k` equal blocks has its maximum among the scores, so the smallest block maximum is
/// a floor that the `k`-th best cannot fall below. A vectorisable pass finds it, a second keeps
/// the scores at or above it (on random scores a few `k`), and only those are selected and
/// sorted. `scratch` is reused between calls.
fn top_positions(half: &[f32], k: usize, scratch: &mut Vec<u64>) -> Vec<u32> {
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
    let candidates = &mut scratch[..kept];
    if k < candidates.len() {
        candidates.select_nth_unstable(k);
    }
    let best = &mut candidates[..k.min(kept)];
    best.sort_unstable();
    best.iter().map(|&key| key as u32).collect()
}

/// Reusable buffers of one rayon task: the per-half candidate keys and the pair heap, whose
/// entries are `(key, a, b)`: the [`rank_key`] of the pair's sum and value index, and the ranks
/// of its two halves. Keys are unique, so the ranks never decide the order.
#[derive(Default)]
struct Scratch {
    keys: Vec<u64>,
    heap: BinaryHeap<Reverse<(u64, u32, u32)>>,
}

/// Writes the positions `(i1, i2)` of the best `k` pairs of one row, best first.
fn best_pairs(
    h1: &[f32],
    h2: &[f32],
    k: usize,
    out1: &mut [i64],
    out2: &mut [i64],
    scratch: &mut Scratch,
) {
    let n = h1.len();
    let p1 = top_positions(h1, k, &mut scratch.keys);
    let p2 = top_positions(h2, k, &mut scratch.keys);
    let pair = |a: usize, b: usize| {
        let (i1, i2) = (p1[a] as usize, p2[b] as usize);
        Reverse((rank_key(h1[i1] + h2[i2], i1 * n + i2), a as u32, b as u32))
    };
    // Frontier expansion: from (a, b) go to (a, b+1), and to (a+1, 0) from the first column,
    // so every pair is pushed at most once and only after a better one was popped.
    let heap = &mut scratch.heap;
    heap.clear();
    heap.push(pair(0, 0));
    for slot in 0..k {
        let Reverse((_, a, b)) = heap.pop().expect("k ≤ n_keys pairs remain");
        let (a, b) = (a as usize, b as usize);
        out1[slot] = i64::from(p1[a]);
        out2[slot] = i64::from(p2[b]);
        if b + 1 < k {
            heap.push(pair(a, b + 1));
        }
        if b == 0 && a + 1 < k {
            heap.push(pair(a + 1, 0));
        }
    }
}
