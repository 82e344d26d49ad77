use burn::tensor::backend::Backend;
use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{Int, Tensor, TensorPrimitive};

/// The backend extension that selects the best product-key pairs.
///
/// Takes the sub-key scores `[heads, 2, T, n_keys]` as the batched matmul leaves them (half 0
/// and half 1 of every head and token) and returns the positions `(i1, i2): [heads, T, knn]`
/// of the `knn` pairs with the largest `s1[i1] + s2[i2]`, best first. Only positions are
/// returned: the scores are re-gathered by the caller so that gradients flow through them.
/// The default method uses plain tensor ops (two per-half top-k, then a top-k over the `knn²`
/// candidate sums); fast kernels override it per backend.
pub trait RetrievalBackend: Backend {
    /// Positions `(i1, i2)`, `[heads, T, knn]` each, of the best pairs, by descending sum.
    fn product_topk(scores: FloatTensor<Self>, knn: usize) -> (IntTensor<Self>, IntTensor<Self>) {
        default_product_topk::<Self>(scores, knn)
    }
}

/// The plain-tensor-op selection: per-half `topk`, then `topk` of the `knn²` candidate sums.
pub(crate) fn default_product_topk<B: Backend>(
    scores: FloatTensor<B>,
    knn: usize,
) -> (IntTensor<B>, IntTensor<B>) {
    let scores = Tensor::<B, 4>::from_primitive(TensorPrimitive::Float(scores));
    let [heads, _, t, n] = scores.dims();
    let half = |s: usize| {
        scores
            .clone()
            .slice_dim(1, s..s + 1)
            .reshape([heads * t, n])
    };
    let (v1, i1) = half(0).topk_with_indices(knn, 1);
    let (v2, i2) = half(1).topk_with_indices(knn, 1);
    let candidates =
        (v1.unsqueeze_dim::<3>(2) + v2.unsqueeze_dim(1)).reshape([heads * t, knn * knn]);
    let (_, best) = candidates.topk_with_indices(knn, 1);
    let a: Tensor<B, 2, Int> = best.clone().div_scalar(knn as i64);
    let b = best.remainder_scalar(knn as i64);
    let shape = [heads, t, knn];
    (
        i1.gather(1, a).reshape(shape).into_primitive(),
        i2.gather(1, b).reshape(shape).into_primitive(),
    )
}

/// Selection carries no gradient: run it on the inner backend's kernel.
impl<B, C> RetrievalBackend for burn::backend::Autodiff<B, C>
where
    B: RetrievalBackend,
    C: burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy,
{
    fn product_topk(scores: FloatTensor<Self>, knn: usize) -> (IntTensor<Self>, IntTensor<Self>) {
        B::product_topk(scores.primitive, knn)
    }
}
