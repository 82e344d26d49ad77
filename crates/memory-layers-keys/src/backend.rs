use std::marker::PhantomData;

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::tensor::backend::Backend;
use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{Int, Tensor, TensorMetadata, TensorPrimitive};

use crate::reference;

/// The backend extension that selects the best product-key pairs and reads their scores.
///
/// [`product_topk`](Self::product_topk) takes the sub-key scores `[heads, 2, T, n_keys]` as the batched matmul leaves them (half 0
/// and half 1 of every head and token) and returns the positions `(i1, i2): [heads, T, knn]`
/// of the `knn` pairs with the largest `s1[i1] + s2[i2]`, best first. Only positions are
/// returned: [`pair_scores`](Self::pair_scores) then reads their sums, and on autodiff
/// backends the gradient flows through it to the sub-key scores. The default methods are plain
/// tensor ops ([`reference`]); fast kernels override them per backend.
pub trait RetrievalBackend: Backend {
    /// Positions `(i1, i2)`, `[heads, T, knn]` each, of the best pairs, by descending sum.
    fn product_topk(scores: FloatTensor<Self>, knn: usize) -> (IntTensor<Self>, IntTensor<Self>) {
        default_product_topk::<Self>(scores, knn)
    }

    /// The sums `s1[i1] + s2[i2]` of the selected pairs of sub-key scores `[heads, 2, T, n_keys]`,
    /// as rows `t·heads + h`: `[T·heads, knn]`.
    fn pair_scores(
        scores: FloatTensor<Self>,
        i1: IntTensor<Self>,
        i2: IntTensor<Self>,
    ) -> FloatTensor<Self> {
        default_pair_scores::<Self>(scores, i1, i2)
    }

    /// The gradient `[heads, 2, T, n_keys]` of [`pair_scores`](Self::pair_scores) for the output
    /// gradient `grad: [T·heads, knn]`: each pair's gradient added at both of its positions.
    fn pair_scores_backward(
        grad: FloatTensor<Self>,
        i1: IntTensor<Self>,
        i2: IntTensor<Self>,
        n_keys: usize,
    ) -> FloatTensor<Self> {
        default_pair_scores_backward::<Self>(grad, i1, i2, n_keys)
    }
}

/// [`reference::pair_scores`] on primitives.
pub(crate) fn default_pair_scores<B: Backend>(
    scores: FloatTensor<B>,
    i1: IntTensor<B>,
    i2: IntTensor<B>,
) -> FloatTensor<B> {
    let [i1, i2] = [i1, i2].map(Tensor::<B, 3, Int>::from_primitive);
    reference::pair_scores(float(scores), i1, i2)
        .into_primitive()
        .tensor()
}

/// [`reference::pair_scores_backward`] on primitives.
pub(crate) fn default_pair_scores_backward<B: Backend>(
    grad: FloatTensor<B>,
    i1: IntTensor<B>,
    i2: IntTensor<B>,
    n_keys: usize,
) -> FloatTensor<B> {
    let [i1, i2] = [i1, i2].map(Tensor::<B, 3, Int>::from_primitive);
    reference::pair_scores_backward(float(grad), i1, i2, n_keys)
        .into_primitive()
        .tensor()
}

/// A float primitive as a tensor of rank `D`.
fn float<B: Backend, const D: usize>(t: FloatTensor<B>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(t))
}

/// The plain-tensor-op selection: per-half `topk`, then `topk` of the `knn²` candidate sums.
pub(crate) fn default_product_topk<B: Backend>(
    scores: FloatTensor<B>,
    knn: usize,
) -> (IntTensor<B>, IntTensor<B>) {
    let scores = float::<B, 4>(scores);
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

/// Selection carries no gradient: it runs on the inner backend's kernel. The pair scores do:
/// forward on the inner kernel, backward through [`PairScoresBackward`].
impl<B: RetrievalBackend, C: CheckpointStrategy> RetrievalBackend for Autodiff<B, C> {
    fn product_topk(scores: FloatTensor<Self>, knn: usize) -> (IntTensor<Self>, IntTensor<Self>) {
        B::product_topk(scores.primitive, knn)
    }

    fn pair_scores(
        scores: FloatTensor<Self>,
        i1: IntTensor<Self>,
        i2: IntTensor<Self>,
    ) -> FloatTensor<Self> {
        let n_keys = scores.primitive.shape().dims::<4>()[3];
        let output = B::pair_scores(scores.primitive, i1.clone(), i2.clone());
        match PairScoresBackward::<C>(PhantomData)
            .prepare::<C>([scores.node])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish((i1, i2, n_keys), output),
            OpsKind::UnTracked(prep) => prep.finish(output),
        }
    }
}

/// Backward of `pair_scores` through [`RetrievalBackend::pair_scores_backward`].
#[derive(Debug)]
struct PairScoresBackward<C>(PhantomData<C>);

impl<B: RetrievalBackend, C: CheckpointStrategy> Backward<B, 1> for PairScoresBackward<C> {
    /// The selected positions and `n_keys`.
    type State = (IntTensor<B>, IntTensor<B>, usize);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (i1, i2, n_keys) = ops.state;
        let grad = grads.consume::<B>(&ops.node);
        let [node] = ops.parents;
        if let Some(node) = node {
            grads.register::<B>(node.id, B::pair_scores_backward(grad, i1, i2, n_keys));
        }
    }
}
