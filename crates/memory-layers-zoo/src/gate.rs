//! SwiGLU's gate `silu(a) ⊙ b` as a backend extension.
//!
//! Through Burn's ops the gate is a sigmoid, two products and, backward, the sigmoid's and the
//! products' gradients: seven passes over `[tokens, hidden]` and an `exp` in each direction
//! (on the CPU the scalar `exp` alone was 7.5% of a dense `small` train step's samples,
//! docs/performance-notes.md).
//! [`GateBackend::silu_gate`] is one pass forward and [`GateBackend::silu_gate_backward`] one
//! pass backward (a kernel on Flex, tensor ops elsewhere).

use std::marker::PhantomData;

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::tensor::activation::{sigmoid, silu};
use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Tensor, TensorMetadata, TensorPrimitive};

/// The backend extension for SwiGLU's gate.
pub trait GateBackend: Backend {
    /// `silu(a) ⊙ b` for `a`, `b` of one shape.
    fn silu_gate(a: FloatTensor<Self>, b: FloatTensor<Self>) -> FloatTensor<Self> {
        reference_primitive::<Self>(a, b)
    }

    /// The gradients `(∂a, ∂b)` of [`silu_gate`](Self::silu_gate) for the output gradient
    /// `grad`: `∂a = grad ⊙ b ⊙ σ(a)(1 + a(1 − σ(a)))`, `∂b = grad ⊙ silu(a)`.
    fn silu_gate_backward(
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        reference_backward_primitive::<Self>(a, b, grad)
    }
}

/// `silu(a) ⊙ b` in Burn's tensor ops: the reference the kernels are tested against.
pub fn reference<B: Backend, const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>) -> Tensor<B, D> {
    silu(a) * b
}

/// `silu(a) ⊙ b` through the backend's gate.
pub fn silu_gate<B: GateBackend, const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>) -> Tensor<B, D> {
    let out = B::silu_gate(a.into_primitive().tensor(), b.into_primitive().tensor());
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

/// [`reference`] on primitives (flattened, then back to `a`'s shape).
fn reference_primitive<B: Backend>(a: FloatTensor<B>, b: FloatTensor<B>) -> FloatTensor<B> {
    let shape = a.shape();
    let [a, b] = [a, b].map(flat::<B>);
    B::float_reshape(reference(a, b).into_primitive().tensor(), shape)
}

/// The gradients of [`reference`] in tensor ops (the formulas of
/// [`GateBackend::silu_gate_backward`]).
fn reference_backward_primitive<B: Backend>(
    a: FloatTensor<B>,
    b: FloatTensor<B>,
    grad: FloatTensor<B>,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let shape = a.shape();
    let [a, b, grad] = [a, b, grad].map(flat::<B>);
    let s = sigmoid(a.clone());
    let da = grad.clone() * b * s.clone() * (a.clone() * (s.clone().neg() + 1.0) + 1.0);
    let db = grad * a * s;
    let back = |t: Tensor<B, 1>| B::float_reshape(t.into_primitive().tensor(), shape.clone());
    (back(da), back(db))
}

/// `t` as one row of its elements.
fn flat<B: Backend>(t: FloatTensor<B>) -> Tensor<B, 1> {
    let n = t.shape().num_elements();
    Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(B::float_reshape(t, [n].into())))
}

/// Backward of `silu_gate(a, b)` through [`GateBackend::silu_gate_backward`].
#[derive(Debug)]
struct GateBackward<C>(PhantomData<C>);

impl<B: GateBackend, C: CheckpointStrategy> Backward<B, 2> for GateBackward<C> {
    type State = (FloatTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (a, b) = ops.state;
        let grad = grads.consume::<B>(&ops.node);
        let (da, db) = B::silu_gate_backward(a, b, grad);
        let [node_a, node_b] = ops.parents;
        if let Some(node) = node_a {
            grads.register::<B>(node.id, da);
        }
        if let Some(node) = node_b {
            grads.register::<B>(node.id, db);
        }
    }
}

/// Forward on the inner backend's kernel, backward through [`GateBackward`].
impl<B: GateBackend, C: CheckpointStrategy> GateBackend for Autodiff<B, C> {
    fn silu_gate(a: FloatTensor<Self>, b: FloatTensor<Self>) -> FloatTensor<Self> {
        let output = B::silu_gate(a.primitive.clone(), b.primitive.clone());
        match GateBackward::<C>(PhantomData)
            .prepare::<C>([a.node, b.node])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish((a.primitive, b.primitive), output),
            OpsKind::UnTracked(prep) => prep.finish(output),
        }
    }
}

mod flex {
    use burn::backend::Flex;
    use burn::backend::flex::FlexTensor;
    use burn::tensor::ops::FloatTensor;
    use burn::tensor::{DType, TensorData, TensorMetadata};
    use rayon::prelude::*;

    use super::GateBackend;
    use crate::host::f32s;

    /// Elements per rayon task.
    const PER_TASK: usize = 1 << 14;

    /// `1 / (1 + e^{-x})`.
    fn sigmoid(x: f32) -> f32 {
        1.0 / (1.0 + (-x).exp())
    }

    /// Whether the one-pass kernels apply (else: the tensor-op path).
    fn f32_only(tensors: &[&FlexTensor]) -> bool {
        tensors.iter().all(|t| t.dtype() == DType::F32)
    }

    /// One pass each way over contiguous f32 tensors; anything else takes the tensor-op path.
    impl GateBackend for Flex {
        fn silu_gate(a: FloatTensor<Self>, b: FloatTensor<Self>) -> FloatTensor<Self> {
            if !f32_only(&[&a, &b]) {
                return super::reference_primitive::<Flex>(a, b);
            }
            let shape = a.shape();
            assert_eq!(shape, b.shape(), "silu_gate of tensors of two shapes");
            let (a, b) = (a.to_contiguous(), b.to_contiguous());
            let (a, b) = (f32s(&a), f32s(&b));
            let mut out = vec![0f32; a.len()];
            out.par_chunks_mut(PER_TASK)
                .zip(a.par_chunks(PER_TASK).zip(b.par_chunks(PER_TASK)))
                .for_each(|(out, (a, b))| {
                    for ((o, &a), &b) in out.iter_mut().zip(a).zip(b) {
                        *o = a * sigmoid(a) * b;
                    }
                });
            FlexTensor::from_data(TensorData::new(out, shape))
        }

        fn silu_gate_backward(
            a: FloatTensor<Self>,
            b: FloatTensor<Self>,
            grad: FloatTensor<Self>,
        ) -> (FloatTensor<Self>, FloatTensor<Self>) {
            if !f32_only(&[&a, &b, &grad]) {
                return super::reference_backward_primitive::<Flex>(a, b, grad);
            }
            let shape = a.shape();
            assert!(
                shape == b.shape() && shape == grad.shape(),
                "silu_gate_backward of tensors of several shapes"
            );
            let (a, b, grad) = (a.to_contiguous(), b.to_contiguous(), grad.to_contiguous());
            let (a, b, g) = (f32s(&a), f32s(&b), f32s(&grad));
            let (mut da, mut db) = (vec![0f32; a.len()], vec![0f32; a.len()]);
            da.par_chunks_mut(PER_TASK)
                .zip(db.par_chunks_mut(PER_TASK))
                .zip(a.par_chunks(PER_TASK).zip(b.par_chunks(PER_TASK)))
                .zip(g.par_chunks(PER_TASK))
                .for_each(|(((da, db), (a, b)), g)| {
                    for i in 0..a.len() {
                        let s = sigmoid(a[i]);
                        da[i] = g[i] * b[i] * s * (1.0 + a[i] * (1.0 - s));
                        db[i] = g[i] * a[i] * s;
                    }
                });
            (
                FlexTensor::from_data(TensorData::new(da, shape.clone())),
                FlexTensor::from_data(TensorData::new(db, shape)),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::{Distribution, Tolerance};

    use super::*;

    #[test]
    fn the_kernel_gates_like_the_reference() {
        let device = Default::default();
        let a = Tensor::<Flex, 3>::random([2, 5, 33], Distribution::Normal(0.0, 4.0), &device);
        let b = Tensor::<Flex, 3>::random([2, 5, 33], Distribution::Default, &device);
        silu_gate(a.clone(), b.clone())
            .into_data()
            .assert_approx_eq::<f32>(&reference(a, b).into_data(), Tolerance::absolute(1e-6));
    }

    #[test]
    fn the_gradients_are_the_reference_gradients() {
        type A = Autodiff<Flex>;
        let device = Default::default();
        let a = Tensor::<A, 2>::random([7, 40_000], Distribution::Normal(0.0, 4.0), &device);
        let b = Tensor::<A, 2>::random([7, 40_000], Distribution::Default, &device);
        let weights = Tensor::<A, 2>::random([7, 40_000], Distribution::Default, &device);
        let grads = |f: &dyn Fn(Tensor<A, 2>, Tensor<A, 2>) -> Tensor<A, 2>| {
            let (a, b) = (a.clone().require_grad(), b.clone().require_grad());
            let grads = (f(a.clone(), b.clone()) * weights.clone()).sum().backward();
            [a.grad(&grads), b.grad(&grads)].map(|g| g.expect("a gradient").into_data())
        };
        let ours = grads(&|a, b| silu_gate(a, b));
        let expected = grads(&|a, b| reference(a, b));
        for (ours, expected) in ours.iter().zip(&expected) {
            ours.assert_approx_eq::<f32>(expected, Tolerance::absolute(1e-5));
        }
    }
}
