//! Rotary position encoding as a backend extension.
//!
//! Burn's `RotaryEncoding::apply` rotates each pair with a batched 2×4 matrix product and a
//! broadcast over a `[.., d, 2]` view; on the CPU that was an eighth of a `small` train step
//! forward alone (docs/performance-notes.md). The rotation itself is one pass:
//! `out[2i] = x[2i]·cos − x[2i+1]·sin`, `out[2i+1] = x[2i+1]·cos + x[2i]·sin`, the same
//! frequencies and interleaved pairs. [`RopeBackend::rope`] is that pass (a kernel on Flex,
//! element-wise tensor ops elsewhere), and its gradient is the rotation by the opposite angle.

use std::marker::PhantomData;

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::nn::RotaryEncoding;
use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Tensor, TensorPrimitive};

/// The backend extension for rotary position encoding.
pub trait RopeBackend: Backend {
    /// Rotates `x [batch, len, heads·head_dim]` pairwise by `cos` and the signed `sin`
    /// (`[len, head_dim]`, as [`RopeTables`] holds them):
    /// `out = x ⊙ cos + swap(x) ⊙ sin`, `swap` exchanging the elements of each pair.
    fn rope(
        x: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        reference_primitive::<Self>(x, cos, sin)
    }
}

/// [`RopeBackend::rope`] in tensor operations: the reference the kernels are tested against.
pub fn reference<B: Backend>(
    x: Tensor<B, 3>,
    cos: Tensor<B, 2>,
    sin: Tensor<B, 2>,
) -> Tensor<B, 3> {
    let [b, t, width] = x.dims();
    let heads = width / cos.dims()[1];
    let table = |t: Tensor<B, 2>| t.repeat_dim(1, heads).unsqueeze::<3>();
    let swapped = x
        .clone()
        .reshape([b, t, width / 2, 2])
        .flip([3])
        .reshape([b, t, width]);
    x * table(cos) + swapped * table(sin)
}

/// The rotation of `len` positions from `start`, for heads of `head_dim`.
#[derive(Debug, Clone)]
pub struct RopeTables<B: Backend> {
    /// `cos` of each position and pair, repeated for both elements of the pair: `[len, head_dim]`.
    cos: Tensor<B, 2>,
    /// `sin` likewise, negative on the first element of each pair: `[len, head_dim]`.
    sin: Tensor<B, 2>,
}

impl<B: Backend> RopeTables<B> {
    /// The tables of `rope`'s frequencies at positions `start..start + len`.
    pub fn new(rope: &RotaryEncoding<B>, start: usize, len: usize) -> Self {
        // freq_complex: [positions, head_dim, 2] = (cos, sin), already repeated per pair.
        let [_, head_dim, _] = rope.freq_complex.dims();
        let freq = rope.freq_complex.clone().narrow(0, start, len);
        let part = |i: usize| freq.clone().narrow(2, i, 1).reshape([len, head_dim]);
        let signs: Vec<f32> = (0..head_dim)
            .map(|j| if j % 2 == 0 { -1.0 } else { 1.0 })
            .collect();
        let signs = Tensor::<B, 1>::from_floats(signs.as_slice(), &freq.device());
        Self {
            cos: part(0),
            sin: part(1) * signs.unsqueeze::<2>(),
        }
    }
}

impl<B: RopeBackend> RopeTables<B> {
    /// Rotates `x [batch, len, heads·head_dim]` (heads side by side, as a projection makes them).
    pub fn apply(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let prim = |t: &Tensor<B, 2>| t.clone().into_primitive().tensor();
        let out = B::rope(
            x.into_primitive().tensor(),
            prim(&self.cos),
            prim(&self.sin),
        );
        Tensor::from_primitive(TensorPrimitive::Float(out))
    }
}

/// Backward of `rope(x, cos, sin)`: the rotation by the opposite angle, `rope(grad, cos, −sin)`.
#[derive(Debug)]
struct RopeBackward<C>(PhantomData<C>);

impl<B: RopeBackend, C: CheckpointStrategy> Backward<B, 1> for RopeBackward<C> {
    type State = (FloatTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (cos, sin) = ops.state;
        let grad = grads.consume::<B>(&ops.node);
        if let [Some(node)] = ops.parents {
            grads.register::<B>(node.id, B::rope(grad, cos, B::float_neg(sin)));
        }
    }
}

/// Forward on the inner backend's kernel, backward through [`RopeBackward`]; the tables are
/// constants.
impl<B: RopeBackend, C: CheckpointStrategy> RopeBackend for Autodiff<B, C> {
    fn rope(
        x: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let (cos, sin) = (cos.primitive, sin.primitive);
        let output = B::rope(x.primitive, cos.clone(), sin.clone());
        match RopeBackward::<C>(PhantomData)
            .prepare::<C>([x.node])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish((cos, sin), output),
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

    use super::RopeBackend;

    /// Rows (batch, position) per rayon task.
    const ROWS_PER_TASK: usize = 32;

    /// One pass over contiguous f32 rows; other dtypes take the tensor-op path.
    impl RopeBackend for Flex {
        fn rope(
            x: FloatTensor<Self>,
            cos: FloatTensor<Self>,
            sin: FloatTensor<Self>,
        ) -> FloatTensor<Self> {
            if [&x, &cos, &sin].iter().any(|t| t.dtype() != DType::F32) {
                return super::reference_primitive::<Flex>(x, cos, sin);
            }
            let shape = x.shape().dims::<3>();
            let [_, t, width] = shape;
            let head_dim = cos.shape().dims::<2>()[1];
            let (x, cos, sin) = (x.to_contiguous(), cos.to_contiguous(), sin.to_contiguous());
            let (xs, c, s) = (
                x.as_slice::<f32>().expect("f32"),
                cos.as_slice::<f32>().expect("f32"),
                sin.as_slice::<f32>().expect("f32"),
            );
            let mut out = vec![0f32; xs.len()];
            out.par_chunks_mut(width * ROWS_PER_TASK)
                .zip(xs.par_chunks(width * ROWS_PER_TASK))
                .enumerate()
                .for_each(|(chunk, (out, xs))| {
                    for (r, (out, xs)) in out.chunks_mut(width).zip(xs.chunks(width)).enumerate() {
                        let p = (chunk * ROWS_PER_TASK + r) % t;
                        let (c, s) = (
                            &c[p * head_dim..][..head_dim],
                            &s[p * head_dim..][..head_dim],
                        );
                        for (out, xs) in out.chunks_mut(head_dim).zip(xs.chunks(head_dim)) {
                            for i in (0..head_dim).step_by(2) {
                                let (a, b) = (xs[i], xs[i + 1]);
                                out[i] = a * c[i] + b * s[i];
                                out[i + 1] = b * c[i + 1] + a * s[i + 1];
                            }
                        }
                    }
                });
            FlexTensor::from_data(TensorData::new(out, shape))
        }
    }
}

/// [`reference`] on primitives.
fn reference_primitive<B: Backend>(
    x: FloatTensor<B>,
    cos: FloatTensor<B>,
    sin: FloatTensor<B>,
) -> FloatTensor<B> {
    let table = |t: FloatTensor<B>| Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(t));
    let x = Tensor::<B, 3>::from_primitive(TensorPrimitive::Float(x));
    reference(x, table(cos), table(sin))
        .into_primitive()
        .tensor()
}

#[cfg(test)]
mod tests {
    use burn::backend::{Autodiff, Flex};
    use burn::nn::RotaryEncodingConfig;
    use burn::tensor::{Distribution, Tolerance};

    use super::*;

    #[test]
    fn the_kernel_rotates_like_burns_rotary_encoding_and_the_reference() {
        let device = Default::default();
        let (b, t, heads, head_dim) = (2, 5, 3, 8);
        let rope = RotaryEncodingConfig::new(16, head_dim)
            .with_theta(500.0)
            .init::<Flex>(&device);
        let x = Tensor::<Flex, 3>::random([b, t, heads * head_dim], Distribution::Default, &device);
        for start in [0, 7] {
            let tables = RopeTables::new(&rope, start, t);
            let ours = tables.apply(x.clone());
            let heads_first = x.clone().reshape([b, t, heads, head_dim]).swap_dims(1, 2);
            let burn =
                rope.apply(heads_first, start)
                    .swap_dims(1, 2)
                    .reshape([b, t, heads * head_dim]);
            let tolerance = Tolerance::absolute(1e-6);
            ours.clone()
                .into_data()
                .assert_approx_eq::<f32>(&burn.into_data(), tolerance);
            reference(x.clone(), tables.cos.clone(), tables.sin.clone())
                .into_data()
                .assert_approx_eq::<f32>(&ours.into_data(), tolerance);
        }
    }

    #[test]
    fn the_gradient_is_the_reference_gradient() {
        type A = Autodiff<Flex>;
        let device = Default::default();
        let rope = RotaryEncodingConfig::new(8, 4).init::<A>(&device);
        let tables = RopeTables::new(&rope, 1, 3);
        let x = Tensor::<A, 3>::random([2, 3, 8], Distribution::Default, &device);
        let weights = Tensor::<A, 3>::random([2, 3, 8], Distribution::Default, &device);
        let grad = |f: &dyn Fn(Tensor<A, 3>) -> Tensor<A, 3>| {
            let x = x.clone().require_grad();
            let grads = (f(x.clone()) * weights.clone()).sum().backward();
            x.grad(&grads).expect("x has a gradient")
        };
        let ours = grad(&|x| tables.apply(x));
        let expected = grad(&|x| reference(x, tables.cos.clone(), tables.sin.clone()));
        ours.into_data()
            .assert_approx_eq::<f32>(&expected.into_data(), Tolerance::absolute(1e-6));
    }
}
