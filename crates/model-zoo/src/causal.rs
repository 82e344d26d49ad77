//! Causal self-attention as a backend extension, for whole sequences (training, evaluation).
//!
//! Burn's attention on `[batch, heads, len, head_dim]` needs the projections' heads swapped
//! out of `[batch, len, heads·head_dim]` and back (a copy each way, forward and backward), a
//! mask, and a softmax and two products per direction: on the CPU the layout copies alone were
//! a tenth of a train step. [`CausalBackend::causal_attention`] reads the projections in
//! their own layout and skips the masked half; Flex has a kernel, other backends return `None`
//! and the model uses Burn's attention.

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

/// The backend extension for causal self-attention over whole sequences.
pub trait CausalBackend: Backend {
    /// `softmax(q·kᵀ/√head_dim + causal mask)·v` per head, with `q [batch, len, heads·head_dim]`
    /// and `k`, `v` `[batch, len, kv_heads·head_dim]` (heads side by side, as the projections
    /// make them): `(out [batch, len, heads·head_dim], probs [batch, heads, len, len])`, or
    /// `None` where the backend has no kernel.
    fn causal_attention(
        _q: FloatTensor<Self>,
        _k: FloatTensor<Self>,
        _v: FloatTensor<Self>,
        _heads: Heads,
    ) -> Option<[FloatTensor<Self>; 2]> {
        None
    }

    /// The gradients `[∂q, ∂k, ∂v]` of [`causal_attention`](Self::causal_attention) for the
    /// output gradient `grad`, from its inputs and `probs`. Called only where the forward
    /// returned a result.
    fn causal_attention_backward(
        _q: FloatTensor<Self>,
        _k: FloatTensor<Self>,
        _v: FloatTensor<Self>,
        _probs: FloatTensor<Self>,
        _grad: FloatTensor<Self>,
        _heads: Heads,
    ) -> [FloatTensor<Self>; 3] {
        unreachable!("causal_attention_backward without a causal_attention kernel")
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
        let ([q, k, v, probs], heads) = ops.state;
        let grad = grads.consume::<B>(&ops.node);
        let gradients = B::causal_attention_backward(q, k, v, probs, grad, heads);
        for (node, gradient) in ops.parents.into_iter().zip(gradients) {
            if let Some(node) = node {
                grads.register::<B>(node.id, gradient);
            }
        }
    }
}

/// Forward on the inner backend's kernel, backward through [`CausalBackward`]; `probs` is not
/// differentiable.
impl<B: CausalBackend, C: CheckpointStrategy> CausalBackend for Autodiff<B, C> {
    fn causal_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        heads: Heads,
    ) -> Option<[FloatTensor<Self>; 2]> {
        let [out, probs] = B::causal_attention(
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
                (
                    [q.primitive, k.primitive, v.primitive, probs.clone()],
                    heads,
                ),
                out,
            ),
            OpsKind::UnTracked(prep) => prep.finish(out),
        };
        Some([
            out,
            <Self as burn::tensor::backend::AutodiffBackend>::from_inner(probs),
        ])
    }
}

#[cfg(any(feature = "wgpu", feature = "cuda"))]
impl<R, F, I, BT> CausalBackend for burn_cubecl::CubeBackend<R, F, I, BT>
where
    R: burn_cubecl::CubeRuntime,
    F: burn_cubecl::FloatElement,
    I: burn_cubecl::IntElement,
    BT: burn_cubecl::BoolElement,
{
}

mod flex {
    use burn::backend::Flex;
    use burn::backend::flex::FlexTensor;
    use burn::tensor::ops::FloatTensor;
    use burn::tensor::{DType, TensorData, TensorMetadata};
    use rayon::prelude::*;

    use super::{CausalBackend, Heads};

    /// `Σ a·b` with 16 independent partial sums (vectorised; the order is fixed).
    #[inline]
    fn dot(a: &[f32], b: &[f32]) -> f32 {
        let mut lanes = [0f32; 16];
        let (xs, ys) = (a.chunks_exact(16), b.chunks_exact(16));
        let tail: f32 = xs
            .remainder()
            .iter()
            .zip(ys.remainder())
            .map(|(x, y)| x * y)
            .sum();
        for (x, y) in xs.zip(ys) {
            for l in 0..16 {
                lanes[l] += x[l] * y[l];
            }
        }
        lanes.iter().sum::<f32>() + tail
    }

    /// `y += a·x`.
    #[inline]
    fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
        for (y, x) in y.iter_mut().zip(x) {
            *y += a * x;
        }
    }

    /// The sizes of one call: `[batch, len, head_dim]`, from `q` and the head counts.
    fn dims(q: &FlexTensor, heads: Heads) -> [usize; 3] {
        let [b, t, width] = q.shape().dims::<3>();
        [b, t, width / heads.heads]
    }

    fn f32s(t: &FlexTensor) -> &[f32] {
        t.as_slice::<f32>().expect("f32")
    }

    /// Each batch element on its own rayon task (its heads in turn): rows of `q`, `k`, `v` and
    /// the output are read and written where they lie, only the causal half of each score
    /// matrix is computed, and the probabilities are kept for the backward pass.
    impl CausalBackend for Flex {
        fn causal_attention(
            q: FloatTensor<Self>,
            k: FloatTensor<Self>,
            v: FloatTensor<Self>,
            heads: Heads,
        ) -> Option<[FloatTensor<Self>; 2]> {
            if [&q, &k, &v].iter().any(|t| t.dtype() != DType::F32) {
                return None;
            }
            let [b, t, d] = dims(&q, heads);
            let (h, kv) = (heads.heads, heads.kv_heads);
            let (group, scale) = (h / kv, (d as f32).powf(-0.5));
            let (q, k, v) = (q.to_contiguous(), k.to_contiguous(), v.to_contiguous());
            let (q, k, v) = (f32s(&q), f32s(&k), f32s(&v));
            let mut out = vec![0f32; b * t * h * d];
            let mut probs = vec![0f32; b * h * t * t];
            out.par_chunks_mut(t * h * d)
                .zip(probs.par_chunks_mut(h * t * t))
                .enumerate()
                .for_each(|(n, (out, probs))| {
                    let (q, k, v) = (
                        &q[n * t * h * d..],
                        &k[n * t * kv * d..],
                        &v[n * t * kv * d..],
                    );
                    for head in 0..h {
                        let c = head / group * d;
                        for i in 0..t {
                            let qi = &q[(i * h + head) * d..][..d];
                            let row = &mut probs[(head * t + i) * t..][..i + 1];
                            let mut max = f32::NEG_INFINITY;
                            for (j, p) in row.iter_mut().enumerate() {
                                *p = dot(qi, &k[j * kv * d + c..][..d]) * scale;
                                max = max.max(*p);
                            }
                            let mut sum = 0.0;
                            for p in row.iter_mut() {
                                *p = (*p - max).exp();
                                sum += *p;
                            }
                            let oi = &mut out[(i * h + head) * d..][..d];
                            for (j, p) in row.iter_mut().enumerate() {
                                *p /= sum;
                                axpy(oi, *p, &v[j * kv * d + c..][..d]);
                            }
                        }
                    }
                });
            Some([
                FlexTensor::from_data(TensorData::new(out, [b, t, h * d])),
                FlexTensor::from_data(TensorData::new(probs, [b, h, t, t])),
            ])
        }

        /// `∂v_j = Σ_i p_ij ∂o_i`; `∂s_ij = p_ij (∂o_i·v_j − Σ_l p_il ∂o_i·v_l)`;
        /// `∂q_i = Σ_j ∂s_ij k_j / √d`; `∂k_j = Σ_i ∂s_ij q_i / √d`.
        fn causal_attention_backward(
            q: FloatTensor<Self>,
            k: FloatTensor<Self>,
            v: FloatTensor<Self>,
            probs: FloatTensor<Self>,
            grad: FloatTensor<Self>,
            heads: Heads,
        ) -> [FloatTensor<Self>; 3] {
            let [b, t, d] = dims(&q, heads);
            let (h, kv) = (heads.heads, heads.kv_heads);
            let (group, scale) = (h / kv, (d as f32).powf(-0.5));
            let [q, k, v, probs, grad] = [q, k, v, probs, grad].map(|t| t.to_contiguous());
            let (q, k, v, probs, g) = (f32s(&q), f32s(&k), f32s(&v), f32s(&probs), f32s(&grad));
            let mut dq = vec![0f32; b * t * h * d];
            let (mut dk, mut dv) = (vec![0f32; b * t * kv * d], vec![0f32; b * t * kv * d]);
            dq.par_chunks_mut(t * h * d)
                .zip(
                    dk.par_chunks_mut(t * kv * d)
                        .zip(dv.par_chunks_mut(t * kv * d)),
                )
                .enumerate()
                .for_each(|(n, (dq, (dk, dv)))| {
                    let (q, k, v) = (
                        &q[n * t * h * d..],
                        &k[n * t * kv * d..],
                        &v[n * t * kv * d..],
                    );
                    let (probs, g) = (&probs[n * h * t * t..], &g[n * t * h * d..]);
                    let mut dp = vec![0f32; t];
                    for head in 0..h {
                        let c = head / group * d;
                        for i in 0..t {
                            let (at, row) =
                                ((i * h + head) * d, &probs[(head * t + i) * t..][..i + 1]);
                            let (qi, gi) = (&q[at..][..d], &g[at..][..d]);
                            let mut mean = 0.0;
                            for (j, (dp, &p)) in dp.iter_mut().zip(row).enumerate() {
                                *dp = dot(gi, &v[j * kv * d + c..][..d]);
                                mean += p * *dp;
                            }
                            for (j, &p) in row.iter().enumerate() {
                                let at = j * kv * d + c;
                                let ds = p * (dp[j] - mean) * scale;
                                axpy(&mut dq[(i * h + head) * d..][..d], ds, &k[at..][..d]);
                                axpy(&mut dk[at..][..d], ds, qi);
                                axpy(&mut dv[at..][..d], p, gi);
                            }
                        }
                    }
                });
            let tensor =
                |values, width| FlexTensor::from_data(TensorData::new(values, [b, t, width]));
            [tensor(dq, h * d), tensor(dk, kv * d), tensor(dv, kv * d)]
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::module::attention;
    use burn::tensor::ops::AttentionModuleOptions;
    use burn::tensor::{Distribution, Tolerance};

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

    fn inputs<B: Backend>(heads: Heads, d: usize) -> [Tensor<B, 3>; 3] {
        let device = Default::default();
        let (b, t) = (3, 37);
        let random = |width| Tensor::random([b, t, width], Distribution::Normal(0.0, 1.5), &device);
        [
            random(heads.heads * d),
            random(heads.kv_heads * d),
            random(heads.kv_heads * d),
        ]
    }

    /// Full and grouped key/value heads; a head dimension with a tail past 16 lanes.
    const CASES: [(Heads, usize); 2] = [
        (
            Heads {
                heads: 4,
                kv_heads: 4,
            },
            32,
        ),
        (
            Heads {
                heads: 6,
                kv_heads: 2,
            },
            20,
        ),
    ];

    #[test]
    fn the_kernel_attends_like_burns_attention() {
        for (heads, d) in CASES {
            let [q, k, v] = inputs::<Flex>(heads, d);
            let ours = causal_attention(q.clone(), k.clone(), v.clone(), heads).expect("a kernel");
            ours.into_data().assert_approx_eq::<f32>(
                &burn_causal(q, k, v, heads).into_data(),
                Tolerance::absolute(1e-5),
            );
        }
    }

    #[test]
    fn the_gradients_are_burns_gradients() {
        type A = Autodiff<Flex>;
        for (heads, d) in CASES {
            let [q, k, v] = inputs::<A>(heads, d);
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
