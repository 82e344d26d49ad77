//! Causal self-attention as a backend extension, for whole sequences (training, evaluation).
//!
//! Burn's attention on `[batch, heads, len, head_dim]` needs the projections' heads swapped
//! out of `[batch, len, heads·head_dim]` and back (a copy each way, forward and backward), a
//! mask, and a softmax and two products per direction: on the CPU the layout copies alone were
//! a tenth of a train step. [`CausalBackend::causal_attention`] reads the projections in
//! their own layout (strided GEMMs on Flex, no head swaps) and keeps only each row's log-sum-exp
//! for the backward pass, which recomputes the probabilities: a training step holds `O(len)`
//! of attention state per head, not the `[len, len]` probabilities (6.4 GB a layer at the 134m
//! preset's 8 × 4096 tokens). Other backends (the CubeCL ones) run the same algorithm from
//! Burn's tensor operations, a chunk of query rows at a time (`chunked.rs`); Burn's own
//! attention, as its autodiff trains it, keeps the probabilities.

use std::marker::PhantomData;

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Tensor, TensorPrimitive};

/// Head counts of one attention call: `heads` query heads share `kv_heads` key/value heads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heads {
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (divides `heads`).
    pub kv_heads: usize,
}

/// The backend extension for causal self-attention over whole sequences. The default methods
/// are memory-efficient attention from Burn's tensor operations (chunks of query rows, the
/// probabilities recomputed in the backward pass); Flex has a kernel of its own.
pub trait CausalBackend: Backend {
    /// `softmax(q·kᵀ/√head_dim + causal mask)·v` per head, with `q [batch, len, heads·head_dim]`
    /// and `k`, `v` `[batch, len, kv_heads·head_dim]` (heads side by side, as the projections
    /// make them): `(out [batch, len, heads·head_dim], lse [batch, heads, len])`, with `lse`
    /// the log-sum-exp of each row's scaled scores, or `None` where the call is not one this
    /// backend computes (then the model uses Burn's attention).
    fn causal_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        heads: Heads,
    ) -> Option<[FloatTensor<Self>; 2]> {
        chunked::fits::<Self>(&q, &k, &v, heads).then(|| chunked::forward::<Self>(q, k, v, heads))
    }

    /// The gradients `[∂q, ∂k, ∂v]` of [`causal_attention`](Self::causal_attention) for the
    /// output gradient `grad`, from its inputs and the forward's `lse`. Called only where the
    /// forward returned a result.
    fn causal_attention_backward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        lse: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        heads: Heads,
    ) -> [FloatTensor<Self>; 3] {
        chunked::backward::<Self>(q, k, v, lse, grad, heads)
    }
}

/// [`CausalBackend::causal_attention`] on tensors: the output, or `None` without a kernel.
pub fn causal_attention<B: CausalBackend>(
    q: Tensor<B, 3>,
    k: Tensor<B, 3>,
    v: Tensor<B, 3>,
    heads: Heads,
) -> Option<Tensor<B, 3>> {
    let prim = |t: Tensor<B, 3>| t.into_primitive().tensor();
    let [out, _] = B::causal_attention(prim(q), prim(k), prim(v), heads)?;
    Some(Tensor::from_primitive(TensorPrimitive::Float(out)))
}

/// Backward of `causal_attention(q, k, v)` through [`CausalBackend::causal_attention_backward`].
#[derive(Debug)]
struct CausalBackward<C>(PhantomData<C>);

impl<B: CausalBackend, C: CheckpointStrategy> Backward<B, 3> for CausalBackward<C> {
    type State = ([FloatTensor<B>; 4], Heads);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let ([q, k, v, lse], heads) = ops.state;
        let grad = grads.consume::<B>(&ops.node);
        let gradients = B::causal_attention_backward(q, k, v, lse, grad, heads);
        for (node, gradient) in ops.parents.into_iter().zip(gradients) {
            if let Some(node) = node {
                grads.register::<B>(node.id, gradient);
            }
        }
    }
}

/// Forward on the inner backend's kernel, backward through [`CausalBackward`]; `lse` is not
/// differentiable.
impl<B: CausalBackend, C: CheckpointStrategy> CausalBackend for Autodiff<B, C> {
    fn causal_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        heads: Heads,
    ) -> Option<[FloatTensor<Self>; 2]> {
        let [out, lse] = B::causal_attention(
            q.primitive.clone(),
            k.primitive.clone(),
            v.primitive.clone(),
            heads,
        )?;
        let out = match CausalBackward::<C>(PhantomData)
            .prepare::<C>([q.node, k.node, v.node])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(
                ([q.primitive, k.primitive, v.primitive, lse.clone()], heads),
                out,
            ),
            OpsKind::UnTracked(prep) => prep.finish(out),
        };
        Some([
            out,
            <Self as burn::tensor::backend::AutodiffBackend>::from_inner(lse),
        ])
    }
}

mod chunked;
mod flex;

pub use chunked::CHUNK as ATTENTION_CHUNK;

#[cfg(test)]
mod tests {
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::module::attention;
    use burn::tensor::ops::AttentionModuleOptions;
    use burn::tensor::{Distribution, FloatDType, Tolerance};

    use super::*;

    /// Burn's causal attention on `[batch, len, heads·head_dim]` projections: heads split out,
    /// key/value heads repeated, merged back.
    fn burn_causal<B: Backend>(
        q: Tensor<B, 3>,
        k: Tensor<B, 3>,
        v: Tensor<B, 3>,
        heads: Heads,
    ) -> Tensor<B, 3> {
        let [b, t, width] = q.dims();
        let d = width / heads.heads;
        let group = heads.heads / heads.kv_heads;
        let split = |x: Tensor<B, 3>, n: usize| x.reshape([b, t, n, d]).swap_dims(1, 2);
        let repeat = |x: Tensor<B, 4>| {
            x.unsqueeze_dim::<5>(2)
                .expand([b, heads.kv_heads, group, t, d])
                .reshape([b, heads.heads, t, d])
        };
        let options = AttentionModuleOptions {
            scale: None,
            softcap: None,
            is_causal: true,
        };
        let (q, k, v) = (
            split(q, heads.heads),
            repeat(split(k, heads.kv_heads)),
            repeat(split(v, heads.kv_heads)),
        );
        attention(q, k, v, None, None, options)
            .swap_dims(1, 2)
            .reshape([b, t, width])
    }

    fn inputs<B: Backend>(heads: Heads, d: usize, t: usize) -> [Tensor<B, 3>; 3] {
        let device = Default::default();
        let b = 2;
        let random = |width| Tensor::random([b, t, width], Distribution::Normal(0.0, 1.5), &device);
        [
            random(heads.heads * d),
            random(heads.kv_heads * d),
            random(heads.kv_heads * d),
        ]
    }

    /// Full and grouped key/value heads; a head dimension with a tail past 16 lanes; one
    /// sequence shorter than a tile, one of three tiles (the last one ragged) and one row.
    const CASES: [(Heads, usize, usize); 4] = [
        (
            Heads {
                heads: 4,
                kv_heads: 4,
            },
            32,
            37,
        ),
        (
            Heads {
                heads: 6,
                kv_heads: 2,
            },
            20,
            150,
        ),
        (
            Heads {
                heads: 3,
                kv_heads: 1,
            },
            8,
            129,
        ),
        (
            Heads {
                heads: 2,
                kv_heads: 2,
            },
            4,
            1,
        ),
    ];

    #[test]
    fn the_kernel_attends_like_burns_attention() {
        for (heads, d, t) in CASES {
            let [q, k, v] = inputs::<Flex>(heads, d, t);
            let ours = causal_attention(q.clone(), k.clone(), v.clone(), heads).expect("a kernel");
            ours.into_data().assert_approx_eq::<f32>(
                &burn_causal(q, k, v, heads).into_data(),
                Tolerance::absolute(1e-5),
            );
        }
    }

    #[test]
    fn the_chunked_path_attends_and_differentiates_like_burns_attention() {
        type A = Autodiff<Flex>;
        // Lengths past one chunk of 256 rows and a ragged last chunk; grouped heads.
        let cases = [(CASES[1].0, 8, 300), (CASES[0].0, 8, 37)];
        for (heads, d, t) in cases {
            let [q, k, v] = inputs::<A>(heads, d, t);
            let weights = Tensor::<A, 3>::random(q.dims(), Distribution::Default, &q.device());
            let [q, k, v] = [&q, &k, &v].map(|x| x.clone().require_grad());
            let expected = burn_causal(q.clone(), k.clone(), v.clone(), heads);
            let grads = (expected.clone() * weights.clone()).sum().backward();
            let prim = |x: &Tensor<A, 3>| x.clone().inner().into_primitive().tensor();
            let [out, lse] = chunked::forward::<Flex>(prim(&q), prim(&k), prim(&v), heads);
            Tensor::<Flex, 3>::from_primitive(TensorPrimitive::Float(out))
                .into_data()
                .assert_approx_eq::<f32>(&expected.inner().into_data(), Tolerance::absolute(1e-5));
            let ours =
                chunked::backward::<Flex>(prim(&q), prim(&k), prim(&v), lse, prim(&weights), heads);
            for (ours, x) in ours.into_iter().zip([&q, &k, &v]) {
                Tensor::<Flex, 3>::from_primitive(TensorPrimitive::Float(ours))
                    .into_data()
                    .assert_approx_eq::<f32>(
                        &x.grad(&grads).expect("a gradient").into_data(),
                        Tolerance::rel_abs(1e-4, 1e-5),
                    );
            }
        }
    }

    #[test]
    fn flex_in_bf16_takes_the_chunked_path() {
        let (heads, d, t) = CASES[1];
        let [q, k, v] = inputs::<Flex>(heads, d, t);
        let expected = burn_causal(q.clone(), k.clone(), v.clone(), heads);
        let bf16 = |x: Tensor<Flex, 3>| x.cast(FloatDType::BF16);
        let ours = causal_attention(bf16(q), bf16(k), bf16(v), heads).expect("the chunked path");
        ours.cast(FloatDType::F32)
            .into_data()
            .assert_approx_eq::<f32>(&expected.into_data(), Tolerance::absolute(0.1));
    }

    #[test]
    fn the_gradients_are_burns_gradients() {
        type A = Autodiff<Flex>;
        for (heads, d, t) in CASES {
            let [q, k, v] = inputs::<A>(heads, d, t);
            let weights = Tensor::<A, 3>::random(q.dims(), Distribution::Default, &q.device());
            let grads = |f: &dyn Fn(Tensor<A, 3>, Tensor<A, 3>, Tensor<A, 3>) -> Tensor<A, 3>| {
                let [q, k, v] = [&q, &k, &v].map(|x| x.clone().require_grad());
                let grads = (f(q.clone(), k.clone(), v.clone()) * weights.clone())
                    .sum()
                    .backward();
                [q, k, v].map(|x| x.grad(&grads).expect("a gradient").into_data())
            };
            let ours = grads(&|q, k, v| causal_attention(q, k, v, heads).expect("a kernel"));
            let expected = grads(&|q, k, v| burn_causal(q, k, v, heads));
            for (ours, expected) in ours.iter().zip(&expected) {
                ours.assert_approx_eq::<f32>(expected, Tolerance::rel_abs(1e-4, 1e-5));
            }
        }
    }
}
