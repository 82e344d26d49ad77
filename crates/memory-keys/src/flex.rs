//! CPU kernel of the product-key selection for the Flex backend, per row (multi-threaded):
//! partial selection of the best `knn` sub-keys of each half (no full sort), then the best
//! `knn` of the `knn²` pair sums by a k-best-pairs heap over the two sorted halves, in
//! `O(n_keys + knn·log knn)`. Ties are broken by the smaller value index, as in the
//! brute-force reference. Inputs in other dtypes than f32 fall back to plain tensor ops.

use std::cmp::Ordering;
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
                for r in 0..out1.len() / knn.max(1) {
                    let row = chunk * ROWS_PER_TASK + r;
                    let range = r * knn..(r + 1) * knn;
                    best_pairs(
                        half(row, 0),
                        half(row, 1),
                        knn,
                        &mut out1[range.clone()],
                        &mut out2[range],
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

/// Positions of the best `k` scores of `half`, best first (ties: smaller position first).
fn top_positions(half: &[f32], k: usize) -> Vec<u32> {
    let better = |x: &u32, y: &u32| {
        half[*y as usize]
            .total_cmp(&half[*x as usize])
            .then(x.cmp(y))
    };
    let mut order: Vec<u32> = (0..half.len() as u32).collect();
    if k < order.len() {
        order.select_nth_unstable_by(k, better);
        order.truncate(k);
    }
    order.sort_unstable_by(better);
    order
}

/// A candidate pair `(a, b)` of ranks in the two sorted halves.
#[derive(PartialEq)]
struct Pair {
    score: f32,
    index: usize,
    a: usize,
    b: usize,
}

impl Eq for Pair {}

impl Ord for Pair {
    /// Higher score first; among equal scores the smaller value index.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then(other.index.cmp(&self.index))
    }
}

impl PartialOrd for Pair {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Writes the positions `(i1, i2)` of the best `k` pairs of one row, best first.
fn best_pairs(h1: &[f32], h2: &[f32], k: usize, out1: &mut [i64], out2: &mut [i64]) {
    let n = h1.len();
    let (p1, p2) = (top_positions(h1, k), top_positions(h2, k));
    let pair = |a: usize, b: usize| Pair {
        score: h1[p1[a] as usize] + h2[p2[b] as usize],
        index: p1[a] as usize * n + p2[b] as usize,
        a,
        b,
    };
    // Frontier expansion: from (a, b) go to (a, b+1), and to (a+1, 0) from the first column,
    // so every pair is pushed at most once and only after a better one was popped.
    let mut heap = BinaryHeap::with_capacity(2 * k);
    heap.push(pair(0, 0));
    for slot in 0..k {
        let best = heap.pop().expect("k ≤ n_keys pairs remain");
        out1[slot] = i64::from(p1[best.a]);
        out2[slot] = i64::from(p2[best.b]);
        if best.b + 1 < k {
            heap.push(pair(best.a, best.b + 1));
        }
        if best.b == 0 && best.a + 1 < k {
            heap.push(pair(best.a + 1, 0));
        }
    }
}
