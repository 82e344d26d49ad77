//! The language-model loss, token NLL under the logits, as a backend extension.
//!
//! Through Burn's ops `-log_softmax(logits)[target]` is a max, a subtraction, an `exp`, a sum,
//! a `log` and a gather forward and as many gradients backward, each a pass over
//! `[tokens, vocab]` (the largest activation of a small model). [`NllBackend::nll`] reads each
//! row of logits once (its log-sum-exp and the target's logit) and
//! [`NllBackend::nll_backward`] writes the gradient `softmax − onehot` in one pass (a kernel
//! on Flex, tensor ops elsewhere).

use std::marker::PhantomData;

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::tensor::backend::Backend;
use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{IndexingUpdateOp, Int, Tensor, TensorPrimitive};

/// The backend extension for the token NLL.
pub trait NllBackend: Backend {
    /// `(nll [rows], lse [rows])` of `targets [rows]` under `logits [rows, vocab]`:
    /// `lse = log Σ_v exp(logits[r, v])` and `nll = lse − logits[r, targets[r]]`.
    fn nll(logits: FloatTensor<Self>, targets: IntTensor<Self>) -> [FloatTensor<Self>; 2] {
        reference_nll::<Self>(logits, targets)
    }

    /// The gradient `[rows, vocab]` of `Σ_r grad[r] · nll[r]` for the logits:
    /// `grad[r] · (exp(logits[r, v] − lse[r]) − [v = targets[r]])`.
    fn nll_backward(
        logits: FloatTensor<Self>,
        targets: IntTensor<Self>,
        lse: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        reference_nll_backward::<Self>(logits, targets, lse, grad)
    }
}

/// Per-token NLL `[batch, len]` of `targets [batch, len]` under `logits [batch, len, vocab]`.
pub fn token_nll<B: NllBackend>(logits: Tensor<B, 3>, targets: Tensor<B, 2, Int>) -> Tensor<B, 2> {
    let [b, t, v] = logits.dims();
    let logits = logits.reshape([b * t, v]).into_primitive().tensor();
    let [nll, _] = B::nll(logits, targets.reshape([b * t]).into_primitive());
    Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(nll)).reshape([b, t])
}

/// [`NllBackend::nll`] in Burn's tensor ops: the reference the kernels are tested against.
fn reference_nll<B: Backend>(logits: FloatTensor<B>, targets: IntTensor<B>) -> [FloatTensor<B>; 2] {
    let logits = Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(logits));
    let targets = Tensor::<B, 1, Int>::from_primitive(targets).unsqueeze_dim::<2>(1);
    let max = logits.clone().max_dim(1).detach();
    let lse = (logits.clone() - max.clone()).exp().sum_dim(1).log() + max;
    let nll = lse.clone() - logits.gather(1, targets);
    [nll, lse].map(|t| t.squeeze_dim::<1>(1).into_primitive().tensor())
}

/// [`NllBackend::nll_backward`] in Burn's tensor ops.
fn reference_nll_backward<B: Backend>(
    logits: FloatTensor<B>,
    targets: IntTensor<B>,
    lse: FloatTensor<B>,
    grad: FloatTensor<B>,
) -> FloatTensor<B> {
    let float = |t| Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(t)).unsqueeze_dim::<2>(1);
    let logits = Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(logits));
    let (lse, grad) = (float(lse), float(grad));
    let targets = Tensor::<B, 1, Int>::from_primitive(targets).unsqueeze_dim::<2>(1);
    let onehot =
        logits
            .zeros_like()
            .scatter(1, targets, grad.clone().ones_like(), IndexingUpdateOp::Add);
    ((logits - lse).exp() - onehot)
        .mul(grad)
        .into_primitive()
        .tensor()
}

/// Backward of `nll(logits, targets)` through [`NllBackend::nll_backward`].
#[derive(Debug)]
struct NllBackward<C>(PhantomData<C>);

impl<B: NllBackend, C: CheckpointStrategy> Backward<B, 1> for NllBackward<C> {
    type State = (FloatTensor<B>, IntTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (logits, targets, lse) = ops.state;
        let grad = grads.consume::<B>(&ops.node);
        if let [Some(node)] = ops.parents {
            grads.register::<B>(node.id, B::nll_backward(logits, targets, lse, grad));
        }
    }
}

/// Forward on the inner backend's kernel, backward through [`NllBackward`]; `lse` is not
/// differentiable (only `nll` is).
impl<B: NllBackend, C: CheckpointStrategy> NllBackend for Autodiff<B, C> {
    fn nll(logits: FloatTensor<Self>, targets: IntTensor<Self>) -> [FloatTensor<Self>; 2] {
        let [nll, lse] = B::nll(logits.primitive.clone(), targets.clone());
        let nll = match NllBackward::<C>(PhantomData)
            .prepare::<C>([logits.node])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish((logits.primitive, targets, lse.clone()), nll),
            OpsKind::UnTracked(prep) => prep.finish(nll),
        };
        [
            nll,
            <Self as burn::tensor::backend::AutodiffBackend>::from_inner(lse),
        ]
    }
}

mod flex {
    use burn::backend::Flex;
    use burn::backend::flex::FlexTensor;
    use burn::tensor::ops::{FloatTensor, IntTensor};
    use burn::tensor::{DType, TensorData, TensorMetadata};
    use rayon::prelude::*;

    use super::NllBackend;
    use crate::host::{f32s, ints};

    /// Rows per rayon task.
    const ROWS_PER_TASK: usize = 8;

    /// The targets as row offsets, each checked against the vocabulary.
    fn targets(t: IntTensor<Flex>, rows: usize, vocab: usize) -> Vec<usize> {
        let ids = ints(t);
        assert_eq!(ids.len(), rows, "one target per row of logits");
        ids.into_iter()
            .map(|id| {
                assert!(
                    (0..vocab as i64).contains(&id),
                    "target token {id} outside a vocabulary of {vocab}"
                );
                id as usize
            })
            .collect()
    }

    /// `log Σ exp(row)`, stably.
    fn log_sum_exp(row: &[f32]) -> f32 {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        max + row.iter().map(|&x| (x - max).exp()).sum::<f32>().ln()
    }

    /// One pass per row each way over f32 logits; other dtypes take the tensor-op path.
    impl NllBackend for Flex {
        fn nll(logits: FloatTensor<Self>, ids: IntTensor<Self>) -> [FloatTensor<Self>; 2] {
            if logits.dtype() != DType::F32 {
                return super::reference_nll::<Flex>(logits, ids);
            }
            let [rows, vocab] = logits.shape().dims::<2>();
            let (logits, ids) = (logits.to_contiguous(), targets(ids, rows, vocab));
            let (mut nll, mut lse) = (vec![0f32; rows], vec![0f32; rows]);
            nll.par_chunks_mut(ROWS_PER_TASK)
                .zip(lse.par_chunks_mut(ROWS_PER_TASK))
                .zip(f32s(&logits).par_chunks(vocab * ROWS_PER_TASK))
                .zip(ids.par_chunks(ROWS_PER_TASK))
                .for_each(|(((nll, lse), logits), ids)| {
                    for (((nll, lse), row), &id) in nll
                        .iter_mut()
                        .zip(lse.iter_mut())
                        .zip(logits.chunks(vocab))
                        .zip(ids)
                    {
                        *lse = log_sum_exp(row);
                        *nll = *lse - row[id];
                    }
                });
            [nll, lse].map(|v| FlexTensor::from_data(TensorData::new(v, [rows])))
        }

        fn nll_backward(
            logits: FloatTensor<Self>,
            ids: IntTensor<Self>,
            lse: FloatTensor<Self>,
            grad: FloatTensor<Self>,
        ) -> FloatTensor<Self> {
            if [&logits, &lse, &grad]
                .iter()
                .any(|t| t.dtype() != DType::F32)
            {
                return super::reference_nll_backward::<Flex>(logits, ids, lse, grad);
            }
            let [rows, vocab] = logits.shape().dims::<2>();
            let (logits, lse, grad) = (
                logits.to_contiguous(),
                lse.to_contiguous(),
                grad.to_contiguous(),
            );
            let (ids, lse, grad) = (targets(ids, rows, vocab), f32s(&lse), f32s(&grad));
            let mut out = vec![0f32; rows * vocab];
            out.par_chunks_mut(vocab * ROWS_PER_TASK)
                .zip(f32s(&logits).par_chunks(vocab * ROWS_PER_TASK))
                .enumerate()
                .for_each(|(chunk, (out, logits))| {
                    let first = chunk * ROWS_PER_TASK;
                    for (r, (out, row)) in
                        out.chunks_mut(vocab).zip(logits.chunks(vocab)).enumerate()
                    {
                        let (lse, g) = (lse[first + r], grad[first + r]);
                        for (o, &x) in out.iter_mut().zip(row) {
                            *o = g * (x - lse).exp();
                        }
                        out[ids[first + r]] -= g;
                    }
                });
            FlexTensor::from_data(TensorData::new(out, [rows, vocab]))
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::{Distribution, TensorData, Tolerance};

    use super::*;

    /// Burn's `-log_softmax(logits)[target]`, the formula the loss had before this kernel.
    fn burn_nll<B: Backend>(logits: Tensor<B, 3>, targets: Tensor<B, 2, Int>) -> Tensor<B, 2> {
        let [b, t, _] = logits.dims();
        burn::tensor::activation::log_softmax(logits, 2)
            .gather(2, targets.unsqueeze_dim(2))
            .reshape([b, t])
            .neg()
    }

    fn case<B: Backend>(b: usize, t: usize, v: usize) -> (Tensor<B, 3>, Tensor<B, 2, Int>) {
        let device = Default::default();
        let logits = Tensor::random([b, t, v], Distribution::Normal(0.0, 5.0), &device);
        let ids: Vec<i64> = (0..b * t).map(|i| (i * 7919 % v) as i64).collect();
        (
            logits,
            Tensor::from_data(TensorData::new(ids, [b, t]), &device),
        )
    }

    #[test]
    fn the_kernel_and_the_reference_equal_burns_log_softmax() {
        let (logits, targets) = case::<Flex>(3, 11, 1000);
        let expected = burn_nll(logits.clone(), targets.clone()).into_data();
        let tolerance = Tolerance::absolute(2e-5);
        token_nll(logits.clone(), targets.clone())
            .into_data()
            .assert_approx_eq::<f32>(&expected, tolerance);
        let [b, t, v] = logits.dims();
        let [reference, _] = reference_nll::<Flex>(
            logits.reshape([b * t, v]).into_primitive().tensor(),
            targets.reshape([b * t]).into_primitive(),
        );
        Tensor::<Flex, 1>::from_primitive(TensorPrimitive::Float(reference))
            .reshape([b, t])
            .into_data()
            .assert_approx_eq::<f32>(&expected, tolerance);
    }

    #[test]
    fn the_gradient_is_burns_gradient() {
        type A = Autodiff<Flex>;
        let (logits, targets) = case::<A>(2, 40, 3000);
        let weights = Tensor::<A, 2>::random([2, 40], Distribution::Default, &Default::default());
        let grad = |f: &dyn Fn(Tensor<A, 3>) -> Tensor<A, 2>| {
            let x = logits.clone().require_grad();
            let grads = (f(x.clone()) * weights.clone()).sum().backward();
            x.grad(&grads).expect("a gradient").into_data()
        };
        let ours = grad(&|x| token_nll(x, targets.clone()));
        let expected = grad(&|x| burn_nll(x, targets.clone()));
        ours.assert_approx_eq::<f32>(&expected, Tolerance::rel_abs(2e-5, 1e-6));
    }
}
