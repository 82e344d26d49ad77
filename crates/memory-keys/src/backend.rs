use burn::tensor::backend::Backend;
use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{Int, Tensor, TensorPrimitive};

/// The backend extension that selects the best product-key pairs.
///
/// Given half scores `s1, s2: [G, n_keys]` (one row per token and head), returns the positions
/// `(i1, i2): [G, knn]` of the `knn` pairs with the largest `s1[i1] + s2[i2]`, best first.
/// Only positions are returned: the scores are re-gathered from `s1, s2` by the caller so that
/// gradients flow through them. The default method uses plain tensor ops (two per-half top-k,
/// then a top-k over the `knn²` candidate sums); fast kernels override it per backend.
pub trait RetrievalBackend: Backend {
    /// Positions `(i1, i2)`, `[G, knn]` each, of the best pairs, sorted by descending sum.
    fn product_topk(
        s1: FloatTensor<Self>,
        s2: FloatTensor<Self>,
        knn: usize,
    ) -> (IntTensor<Self>, IntTensor<Self>) {
        let s1 = Tensor::<Self, 2>::from_primitive(TensorPrimitive::Float(s1));
        let s2 = Tensor::<Self, 2>::from_primitive(TensorPrimitive::Float(s2));
        let (i1, i2) = default_product_topk(s1, s2, knn);
        (i1.into_primitive(), i2.into_primitive())
    }
}

/// The plain-tensor-op selection: per-half `topk`, then `topk` of the `knn²` candidate sums.
pub(crate) fn default_product_topk<B: Backend>(
    s1: Tensor<B, 2>,
    s2: Tensor<B, 2>,
    knn: usize,
) -> (Tensor<B, 2, Int>, Tensor<B, 2, Int>) {
    let [g, _] = s1.dims();
    let (v1, i1) = s1.topk_with_indices(knn, 1);
    let (v2, i2) = s2.topk_with_indices(knn, 1);
    let candidates = (v1.unsqueeze_dim::<3>(2) + v2.unsqueeze_dim(1)).reshape([g, knn * knn]);
    let (_, best) = candidates.topk_with_indices(knn, 1);
    let a: Tensor<B, 2, Int> = best.clone().div_scalar(knn as i64);
    let b = best.remainder_scalar(knn as i64);
    (i1.gather(1, a), i2.gather(1, b))
}

#[cfg(feature = "wgpu")]
impl RetrievalBackend for burn::backend::Wgpu {}

#[cfg(feature = "cuda")]
impl RetrievalBackend for burn::backend::Cuda {}

/// Selection carries no gradient: run it on the inner backend's kernel.
impl<B, C> RetrievalBackend for burn::backend::Autodiff<B, C>
where
    B: RetrievalBackend,
    C: burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy,
{
    fn product_topk(
        s1: FloatTensor<Self>,
        s2: FloatTensor<Self>,
        knn: usize,
    ) -> (IntTensor<Self>, IntTensor<Self>) {
        B::product_topk(s1.primitive, s2.primitive, knn)
    }
}
