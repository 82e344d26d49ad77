use burn::config::Config;
use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use crate::gate::{GateBackend, silu_gate};
use crate::init::linear;
use crate::rows::on_rows;

/// Configuration of [`SwiGluFfn`], the SwiGLU feed-forward block.
#[derive(Config, Debug)]
pub struct SwiGluFfnConfig {
    /// Model dimension (input and output).
    pub dim: usize,
    /// Hidden size.
    pub hidden: usize,
}

impl SwiGluFfnConfig {
    /// A block with truncated-normal weights (`std = dim^-½`).
    pub fn init<B: Backend>(&self, device: &B::Device) -> SwiGluFfn<B> {
        let std = (self.dim as f64).powf(-0.5);
        SwiGluFfn {
            w1: linear(self.dim, self.hidden, std, device),
            w2: linear(self.hidden, self.dim, std, device),
            w3: linear(self.dim, self.hidden, std, device),
        }
    }
}

/// The SwiGLU feed-forward block: `w2(silu(w1·x) ⊙ w3·x)`, no biases (a whole FFN, where
/// `burn::nn::SwiGlu` is only its gate).
#[derive(Module, Debug)]
pub struct SwiGluFfn<B: Backend> {
    /// Gate projection `dim → hidden`.
    pub w1: Linear<B>,
    /// Down projection `hidden → dim`.
    pub w2: Linear<B>,
    /// Up projection `dim → hidden`.
    pub w3: Linear<B>,
}

impl<B: GateBackend> SwiGluFfn<B> {
    /// `x [..., dim]` → `[..., dim]`.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        on_rows(x, |x| {
            self.w2
                .forward(silu_gate(self.w1.forward(x.clone()), self.w3.forward(x)))
        })
    }
}
