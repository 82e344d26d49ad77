//! CPU kernel of the product-key selection for the Flex backend, per row (multi-threaded):
//! partial selection of the best `knn` sub-keys of each half (no full sort), then the best
//! `knn` of the `knn²` pair sums by a k-best-pairs heap over the two sorted halves, in
//! `O(n_keys + knn·log knn)`. Ties are broken by the smaller value index, as in the
//! brute-force reference. Inputs in other dtypes than f32 fall back to plain tensor ops.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{DType, Int, Tensor, TensorData, TensorMetadata, TensorPrimitive};
use rayon::prelude::*;

use crate::RetrievalBackend;

/// Rows per rayon task.
const ROWS_PER_TASK: usize = 8;

impl RetrievalBackend for Flex {
    fn product_topk(
        s1: FloatTensor<Self>,
        s2: FloatTensor<Self>,
        knn: usize,
    ) -> (IntTensor<Self>, IntTensor<Self>) {
        if s1.dtype() != DType::F32 || s2.dtype() != DType::F32 {
            return reference_topk(s1, s2, knn);
        }
        let [g, n] = s1.shape().dims::<2>();
        let (s1, s2) = (s1.to_contiguous(), s2.to_contiguous());
        let (a, b) = (
            s1.as_slice::<f32>().expect("f32"),
            s2.as_slice::<f32>().expect("f32"),
        );
        let mut i1 = vec![0i64; g * knn];
        let mut i2 = vec![0i64; g * knn];
        i1.par_chunks_mut(knn * ROWS_PER_TASK)
            .zip(i2.par_chunks_mut(knn * ROWS_PER_TASK))
            .enumerate()
            .for_each(|(chunk, (out1, out2))| {
                let rows = out1.len() / knn.max(1);
                for r in 0..rows {
                    let row = chunk * ROWS_PER_TASK + r;
                    let (h1, h2) = (&a[row * n..(row + 1) * n], &b[row * n..(row + 1) * n]);
                    let range = r * knn..(r + 1) * knn;
                    best_pairs(h1, h2, knn, &mut out1[range.clone()], &mut out2[range]);
                }
            });
        let device = Default::default();
        let int = |ids: Vec<i64>| {
            Tensor::<Flex, 2, Int>::from_data(TensorData::new(ids, [g, knn]), &device)
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

fn reference_topk(s1: FlexTensor, s2: FlexTensor, knn: usize) -> (FlexTensor, FlexTensor) {
    let s1 = Tensor::<Flex, 2>::from_primitive(TensorPrimitive::Float(s1));
    let s2 = Tensor::<Flex, 2>::from_primitive(TensorPrimitive::Float(s2));
    let (i1, i2) = crate::backend::default_product_topk(s1, s2, knn);
    (i1.into_primitive(), i2.into_primitive())
}
