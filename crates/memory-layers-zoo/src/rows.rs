//! Layers applied to the rows of an activation.
//!
//! Burn's `Linear` on a `[batch, len, d_in]` input computes its weight gradient as one matrix
//! product per batch index and then sums them: `batch` weight-sized temporaries and products
//! of depth `len`. Flattened to `[batch·len, d_in]`, the same gradient is one product of depth
//! `batch·len` (the output head's alone was 8 temporaries of 4 MB per `small` step).

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

/// `f` applied to `x [..., d_in]` viewed as rows `[N, d_in]`; the result keeps `x`'s leading
/// dimensions.
pub(crate) fn on_rows<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    f: impl FnOnce(Tensor<B, 2>) -> Tensor<B, 2>,
) -> Tensor<B, D> {
    let mut dims = x.dims();
    let n = dims[..D - 1].iter().product();
    let y = f(x.reshape([n, dims[D - 1]]));
    dims[D - 1] = y.dims()[1];
    y.reshape(dims)
}
