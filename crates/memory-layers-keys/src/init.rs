//! Building a [`Linear`] from a weight initialised by the caller: the memory layers and the
//! model zoo initialise their projections in their own ways (Xavier, normal, truncated normal,
//! lazily or eagerly), which Burn's `LinearConfig` cannot express (it draws the bias from the
//! weight's initializer, and has no truncated normal).

use burn::module::Param;
use burn::nn::Linear;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

/// A `Linear(d_in → d_out)` with `weight` `[d_in, d_out]` and, when `bias` is set, a zero bias
/// `[d_out]`. A lazily initialised weight stays lazy: its shape and device are read without
/// drawing it.
pub fn linear<B: Backend>(weight: Param<Tensor<B, 2>>, bias: bool) -> Linear<B> {
    let bias = bias.then(|| {
        let [_, d_out] = weight.lazy_shape().dims();
        Param::from_tensor(Tensor::zeros([d_out], &weight.lazy_device()))
    });
    Linear { weight, bias }
}
