//! CubeCL kernel of the product-key selection: one source for CUDA and wgpu (`CubeBackend`).
//!
//! One thread per (head, token) row. Each half's best `knn` positions are kept sorted by
//! insertion (scratch in global memory); then only the pairs of ranks `(a, b)` with
//! `(a + 1)·(b + 1) ≤ knn` can be among the best `knn` sums (each is beaten or tied by the
//! `(a + 1)·(b + 1) − 1` pairs of better ranks), about `knn·ln knn` candidates, inserted into
//! the sorted output by the same insertion. Ties go to the smaller position (value index), as
//! in the brute-force reference.

use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{DType, TensorMetadata};
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::{BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement};
use cubecl::calculate_cube_count_elemwise;
use cubecl::prelude::CubeDim;

use crate::RetrievalBackend;
use crate::product_keys::MAX_N_KEYS;
use kernels::product_topk_kernel;

/// The kernel, in CubeCL's dialect of Rust.
mod kernels {
    use cubecl::prelude::*;

    /// Inserts `(s, key)` into the list `best[out..out + k]`, `keys[out..out + k]` of `count`
    /// entries, kept sorted by score descending and then by key ascending (the brute force's
    /// order of ties); a full list takes it only in place of its last. Returns the new count.
    #[cube]
    fn insert_sorted<F: Float, I: Int>(
        best: &mut Tensor<F>,
        keys: &mut Tensor<I>,
        out: usize,
        k: usize,
        count: usize,
        s: F,
        key: usize,
    ) -> usize {
        let mut kept = count;
        let mut admit = count < k;
        if !admit {
            let last = out + k - 1;
            admit = s > best[last] || (s == best[last] && key < usize::cast_from(keys[last]));
        }
        if admit {
            let mut slot = count;
            if count == k {
                slot = k - 1;
            } else {
                kept += 1;
            }
            loop {
                if slot == 0 {
                    break;
                }
                let prev = out + slot - 1;
                let prev_key = usize::cast_from(keys[prev]);
                if best[prev] > s || (best[prev] == s && prev_key < key) {
                    break;
                }
                best[prev + 1] = best[prev];
                keys[prev + 1] = keys[prev];
                slot -= 1;
            }
            best[out + slot] = s;
            keys[out + slot] = I::cast_from(key);
        }
        kept
    }

    /// The best `k` positions of `scores[base..base + n]` into `top[out..out + k]`, best first
    /// (ties: smaller position first); `best` holds their scores meanwhile.
    #[cube]
    fn top_half<F: Float, I: Int>(
        scores: &Tensor<F>,
        base: usize,
        n: usize,
        k: usize,
        best: &mut Tensor<F>,
        top: &mut Tensor<I>,
        out: usize,
    ) {
        let mut count = 0usize;
        for p in 0..n {
            count = insert_sorted::<F, I>(best, top, out, k, count, scores[base + p], p);
        }
    }

    /// `(i1, i2)[row]`: positions of the best `k` pair sums of row `row = h·T + t`.
    #[cube(launch)]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn product_topk_kernel<F: Float, I: Int>(
        scores: &Tensor<F>,
        top1: &mut Tensor<I>,
        top2: &mut Tensor<I>,
        best: &mut Tensor<F>,
        i1: &mut Tensor<I>,
        i2: &mut Tensor<I>,
    ) {
        let (heads, t_count, n) = (scores.shape(0), scores.shape(2), scores.shape(3));
        let k = i1.shape(2);
        let row = ABSOLUTE_POS;
        if row >= heads * t_count {
            terminate!();
        }
        let (h, t) = (row / t_count, row % t_count);
        let base1 = ((h * 2) * t_count + t) * n;
        let base2 = ((h * 2 + 1) * t_count + t) * n;
        let out = row * k;
        top_half::<F, I>(scores, base1, n, k, best, top1, out);
        top_half::<F, I>(scores, base2, n, k, best, top2, out);

        // The pairs are kept by value index `p1·n + p2` in `i1`, then split into positions;
        // there are at least `k` candidates (those of a = 0).
        let mut count = 0usize;
        for a in 0..k {
            let p1 = usize::cast_from(top1[out + a]);
            let s1 = scores[base1 + p1];
            for b in 0..k / (a + 1) {
                let p2 = usize::cast_from(top2[out + b]);
                let s = s1 + scores[base2 + p2];
                count = insert_sorted::<F, I>(best, i1, out, k, count, s, p1 * n + p2);
            }
        }
        for j in 0..k {
            let index = usize::cast_from(i1[out + j]);
            i1[out + j] = I::cast_from(index / n);
            i2[out + j] = I::cast_from(index % n);
        }
    }
}

/// An uninitialised contiguous tensor like `like` with `shape` and `dtype`.
fn empty<R: CubeRuntime>(like: &CubeTensor<R>, shape: [usize; 3], dtype: DType) -> CubeTensor<R> {
    let bytes = shape.iter().product::<usize>() * dtype.size();
    CubeTensor::new_contiguous(
        like.client.clone(),
        like.device.clone(),
        shape.to_vec().into(),
        like.client.empty(bytes.max(1)),
        dtype,
    )
}

impl<R, F, I, BT> RetrievalBackend for CubeBackend<R, F, I, BT>
where
    R: CubeRuntime,
    F: FloatElement,
    I: IntElement,
    BT: BoolElement,
{
    fn product_topk(scores: FloatTensor<Self>, knn: usize) -> (IntTensor<Self>, IntTensor<Self>) {
        let [heads, _, t, n] = scores.shape().dims::<4>();
        // The kernel keeps pairs by value index `p1·n + p2`, which must fit 32 bits.
        if scores.dtype != F::dtype() || heads * t * knn == 0 || n > MAX_N_KEYS {
            return crate::backend::default_product_topk::<Self>(scores, knn);
        }
        let scores = into_contiguous(scores);
        let shape = [heads, t, knn];
        let (top1, top2) = (
            empty(&scores, shape, I::dtype()),
            empty(&scores, shape, I::dtype()),
        );
        let best = empty(&scores, shape, F::dtype());
        let (i1, i2) = (
            empty(&scores, shape, I::dtype()),
            empty(&scores, shape, I::dtype()),
        );
        let client = scores.client.clone();
        let dim = CubeDim::new(&client, heads * t);
        let count = calculate_cube_count_elemwise(&client, heads * t, dim);
        product_topk_kernel::launch::<F, I, R>(
            &client,
            count,
            dim,
            scores.into_tensor_arg(),
            top1.into_tensor_arg(),
            top2.into_tensor_arg(),
            best.into_tensor_arg(),
            i1.clone().into_tensor_arg(),
            i2.clone().into_tensor_arg(),
        );
        (i1, i2)
    }
}
