use burn::tensor::backend::Backend;
use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{Tensor, TensorPrimitive};

use crate::reference;

/// The backend extension for value-table lookups.
///
/// Three primitives cover the lookup and its gradients (and PEER's key-value dot products):
/// `bag_sum` is the lookup, `bag_dot` its weight gradient, `bag_scatter` its value gradient.
/// Default methods run [`reference`]; a backend with a faster kernel overrides them.
/// Shapes: `values [N, d]`, `indices [T, K]` (each in `0..N`), `weights [T, K]`, `x [T, d]`.
pub trait ValueBackend: Backend {
    /// `out[t] = Σ_j weights[t,j] · values[indices[t,j]]` → `[T, d]`.
    fn bag_sum(
        values: FloatTensor<Self>,
        indices: IntTensor<Self>,
        weights: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        reference::bag_sum::<Self>(float(values), int(indices), float(weights))
            .into_primitive()
            .tensor()
    }

    /// `out[t,j] = ⟨values[indices[t,j]], x[t]⟩` → `[T, K]`.
    fn bag_dot(
        values: FloatTensor<Self>,
        indices: IntTensor<Self>,
        x: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        reference::bag_dot::<Self>(float(values), int(indices), float(x))
            .into_primitive()
            .tensor()
    }

    /// `out[r] = Σ_{indices[t,j] = r} weights[t,j] · x[t]` → dense `[rows, d]`.
    fn bag_scatter(
        rows: usize,
        indices: IntTensor<Self>,
        weights: FloatTensor<Self>,
        x: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        reference::bag_scatter::<Self>(rows, int(indices), float(weights), float(x))
            .into_primitive()
            .tensor()
    }
}

fn float<B: Backend>(tensor: FloatTensor<B>) -> Tensor<B, 2> {
    Tensor::from_primitive(TensorPrimitive::Float(tensor))
}

fn int<B: Backend>(tensor: IntTensor<B>) -> Tensor<B, 2, burn::tensor::Int> {
    Tensor::from_primitive(tensor)
}

#[cfg(feature = "wgpu")]
impl ValueBackend for burn::backend::Wgpu {}

#[cfg(feature = "cuda")]
impl ValueBackend for burn::backend::Cuda {}
