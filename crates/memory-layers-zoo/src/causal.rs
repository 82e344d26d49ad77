//! Causal self-attention as a backend extension, for whole sequences (training, evaluation).
//!
//! Burn's attention on `[batch, heads, len, head_dim]` needs the projections' heads swapped
//! out of `[batch, len, heads·head_dim]` and back (a copy each way, forward and backward), a
//! mask, and a softmax and two products per direction: on the CPU the layout copies alone were
//! a tenth of a train step. [`CausalBackend::causal_attention`] reads the projections in
//! their own layout (strided GEMMs on Flex, no copies); other backends return `None`
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

mod flex {
    use burn::backend::Flex;
    use burn::backend::flex::FlexTensor;
    use burn::tensor::ops::FloatTensor;
    use burn::tensor::{DType, TensorData, TensorMetadata};
    use rayon::prelude::*;

    use super::{CausalBackend, Heads};
    use crate::host::f32s;

    /// A strided matrix in a buffer: element `(i, j)` at `offset + i·row_stride + j·col_stride`.
    #[derive(Debug, Clone, Copy)]
    struct View {
        offset: usize,
        row_stride: usize,
        col_stride: usize,
    }

    impl View {
        /// Row-major, rows `row_stride` apart.
        fn rows(offset: usize, row_stride: usize) -> Self {
            Self {
                offset,
                row_stride,
                col_stride: 1,
            }
        }

        /// The transpose.
        fn t(self) -> Self {
            Self {
                offset: self.offset,
                row_stride: self.col_stride,
                col_stride: self.row_stride,
            }
        }

        /// Whether every element of an `m × n` matrix lies below `len` (the strides are not
        /// negative: the last element is the farthest), with no overflow on the way.
        fn fits(self, [m, n]: [usize; 2], len: usize) -> bool {
            let last = (m - 1)
                .checked_mul(self.row_stride)
                .zip((n - 1).checked_mul(self.col_stride))
                .and_then(|(a, b)| a.checked_add(b)?.checked_add(self.offset));
            let strides = isize::try_from(self.row_stride.max(self.col_stride)).is_ok();
            strides && last.is_some_and(|last| last < len)
        }
    }

    /// `dst ← [dst +] scale · lhs·rhs` for `lhs [m, k]`, `rhs [k, n]` and `dst [m, n]` (views
    /// into their buffers), by Flex's own GEMM (the `gemm` crate) on this thread.
    #[allow(clippy::too_many_arguments)]
    fn matmul(
        (dst, d): (&mut [f32], View),
        (lhs, l): (&[f32], View),
        (rhs, r): (&[f32], View),
        [m, k, n]: [usize; 3],
        scale: f32,
        accumulate: bool,
    ) {
        assert!(m > 0 && k > 0 && n > 0, "an empty product");
        assert!(
            d.fits([m, n], dst.len()) && l.fits([m, k], lhs.len()) && r.fits([k, n], rhs.len()),
            "matmul views outside their buffers"
        );
        assert!(
            d.col_stride == 1 && d.row_stride >= n,
            "the output view's rows do not overlap"
        );
        // SAFETY: every element the three views address lies inside its slice (checked above,
        // without overflow), the output's elements are distinct (row-major rows that do not
        // overlap), and `dst` is borrowed mutably, so it aliases neither input.
        #[allow(unsafe_code)]
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                dst.as_mut_ptr().add(d.offset),
                d.col_stride as isize,
                d.row_stride as isize,
                accumulate,
                lhs.as_ptr().add(l.offset),
                l.col_stride as isize,
                l.row_stride as isize,
                rhs.as_ptr().add(r.offset),
                r.col_stride as isize,
                r.row_stride as isize,
                1.0,
                scale,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
    }

    /// The sizes of one call: `[batch, len, head_dim]`, from `q` and the head counts.
    fn dims(q: &FlexTensor, heads: Heads) -> [usize; 3] {
        let [b, t, width] = q.shape().dims::<3>();
        [b, t, width / heads.heads]
    }

    /// Softmax of row `i` of `scores [t, t]` over its first `i + 1` entries, zeros after.
    fn causal_softmax(scores: &mut [f32], t: usize) {
        for (i, row) in scores.chunks_mut(t).enumerate() {
            let (seen, hidden) = row.split_at_mut(i + 1);
            let max = seen.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0.0;
            for p in seen.iter_mut() {
                *p = (*p - max).exp();
                sum += *p;
            }
            seen.iter_mut().for_each(|p| *p /= sum);
            hidden.fill(0.0);
        }
    }

    /// Each batch element on its own rayon task, its heads in turn: every product is a GEMM on
    /// the heads where they lie in the projections (strided views, no copies), and the
    /// probabilities are kept for the backward pass.
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
            let (h, kv) = (heads.heads, heads.kv_heads);
            let [b, t, width] = q.shape().dims::<3>();
            let kv_shape = [b, t, width / h.max(1) * kv];
            let valid = h > 0 && kv > 0 && h % kv == 0 && width % h == 0;
            let shapes = k.shape().dims::<3>() == kv_shape && v.shape().dims::<3>() == kv_shape;
            if !valid || !shapes || b * t * width == 0 {
                return None;
            }
            let d = width / h;
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
                        &q[n * t * h * d..][..t * h * d],
                        &k[n * t * kv * d..][..t * kv * d],
                        &v[n * t * kv * d..][..t * kv * d],
                    );
                    for (head, p) in probs.chunks_mut(t * t).enumerate() {
                        let (qh, c) = (
                            View::rows(head * d, h * d),
                            View::rows(head / group * d, kv * d),
                        );
                        matmul(
                            (p, View::rows(0, t)),
                            (q, qh),
                            (k, c.t()),
                            [t, d, t],
                            scale,
                            false,
                        );
                        causal_softmax(p, t);
                        matmul(
                            (out, qh),
                            (p, View::rows(0, t)),
                            (v, c),
                            [t, t, d],
                            1.0,
                            false,
                        );
                    }
                });
            Some([
                FlexTensor::from_data(TensorData::new(out, [b, t, h * d])),
                FlexTensor::from_data(TensorData::new(probs, [b, h, t, t])),
            ])
        }

        /// `∂v = pᵀ·∂o`; `∂s = p ⊙ (∂o·vᵀ − rowsum(p ⊙ ∂o·vᵀ))`; `∂q = ∂s·k / √d`;
        /// `∂k = ∂sᵀ·q / √d` (key/value heads summed over the query heads they serve).
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
                    let (q, g) = (
                        &q[n * t * h * d..][..t * h * d],
                        &g[n * t * h * d..][..t * h * d],
                    );
                    let (k, v) = (
                        &k[n * t * kv * d..][..t * kv * d],
                        &v[n * t * kv * d..][..t * kv * d],
                    );
                    let probs = &probs[n * h * t * t..][..h * t * t];
                    let mut ds = vec![0f32; t * t];
                    let square = View::rows(0, t);
                    for (head, p) in probs.chunks(t * t).enumerate() {
                        let (qh, c) = (
                            View::rows(head * d, h * d),
                            View::rows(head / group * d, kv * d),
                        );
                        // The key/value heads' first query head writes, the others add.
                        let first = head % group == 0;
                        matmul((dv, c), (p, square.t()), (g, qh), [t, t, d], 1.0, !first);
                        matmul(
                            (&mut ds, square),
                            (g, qh),
                            (v, c.t()),
                            [t, d, t],
                            1.0,
                            false,
                        );
                        for (ds, p) in ds.chunks_mut(t).zip(p.chunks(t)) {
                            let mean: f32 = ds.iter().zip(p).map(|(ds, p)| ds * p).sum();
                            ds.iter_mut()
                                .zip(p)
                                .for_each(|(ds, p)| *ds = p * (*ds - mean));
                        }
                        matmul((dq, qh), (&ds, square), (k, c), [t, t, d], scale, false);
                        matmul(
                            (dk, c),
                            (&ds, square.t()),
                            (q, qh),
                            [t, t, d],
                            scale,
                            !first,
                        );
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
