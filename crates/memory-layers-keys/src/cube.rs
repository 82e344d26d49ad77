//! CubeCL kernel of the product-key selection: one source for CUDA and wgpu (`CubeBackend`).
//!
//! One thread per (head, token) row. Each half's best `knn` positions are kept sorted by
//! insertion (scratch in global memory); then only the pairs of ranks `(a, b)` with
//! `(a + 1)·(b + 1) ≤ knn` can be among the best `knn` sums (each is beaten or tied by the
//! `(a + 1)·(b + 1) − 1` pairs of better ranks), about `knn·ln knn` candidates, inserted into
//! the sorted output. Ties go to the smaller position, as in the brute-force reference.

use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{DType, TensorMetadata};
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::{BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement};
use cubecl::calculate_cube_count_elemwise;
use cubecl::prelude::CubeDim;

use crate::RetrievalBackend;
use kernels::product_topk_kernel;

/// The kernel, in CubeCL's dialect of Rust.
mod kernels {
    use cubecl::prelude::*;

    /// Sorted insertion of the best `k` positions of `scores[base..base + n]` into
    /// `top[out..out + k]`, best first (ties: smaller position first).
    #[cube]
    fn top_half<F: Float, I: Int>(
        scores: &Tensor<F>,
        base: usize,
        n: usize,
        k: usize,
        top: &mut Tensor<I>,
        out: usize,
    ) {
        let mut count = 0usize;
        for p in 0..n {
            let s = scores[base + p];
            let mut admit = count < k;
            if !admit {
                admit = s > scores[base + usize::cast_from(top[out + k - 1])];
            }
            if admit {
                let mut slot = count;
                if count == k {
                    slot = k - 1;
                } else {
                    count += 1;
                }
                // Later positions lose ties, so move only past strictly worse entries.
                loop {
                    if slot == 0 {
                        break;
                    }
                    if scores[base + usize::cast_from(top[out + slot - 1])] >= s {
                        break;
                    }
                    top[out + slot] = top[out + slot - 1];
                    slot -= 1;
                }
                top[out + slot] = I::cast_from(p);
            }
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
        top_half::<F, I>(scores, base1, n, k, top1, out);
        top_half::<F, I>(scores, base2, n, k, top2, out);

        let mut count = 0usize;
        for a in 0..k {
            let p1 = usize::cast_from(top1[out + a]);
            let s1 = scores[base1 + p1];
            for b in 0..k / (a + 1) {
                let p2 = usize::cast_from(top2[out + b]);
                let s = s1 + scores[base2 + p2];
                let index = p1 * n + p2;
                let mut admit = count < k;
                if !admit {
                    let last = out + k - 1;
                    let last_index = usize::cast_from(i1[last]) * n + usize::cast_from(i2[last]);
                    admit = s > best[last] || (s == best[last] && index < last_index);
                }
                if admit {
                    let mut slot = count;
                    if count == k {
                        slot = k - 1;
                    } else {
                        count += 1;
                    }
                    loop {
                        if slot == 0 {
                            break;
                        }
                        let prev = out + slot - 1;
                        let prev_index =
                            usize::cast_from(i1[prev]) * n + usize::cast_from(i2[prev]);
                        if best[prev] > s || (best[prev] == s && prev_index < index) {
                            break;
                        }
                        best[prev + 1] = best[prev];
                        i1[prev + 1] = i1[prev];
                        i2[prev + 1] = i2[prev];
                        slot -= 1;
                    }
                    best[out + slot] = s;
                    i1[out + slot] = I::cast_from(p1);
                    i2[out + slot] = I::cast_from(p2);
                }
            }
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
        let [heads, _, t, _] = scores.shape().dims::<4>();
        if scores.dtype != F::dtype() || heads * t * knn == 0 {
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
