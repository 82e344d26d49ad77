use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::Tensor;
use burn::tensor::activation::silu;
use burn::tensor::backend::Backend;
use memory_layer::{MemoryBackend, MemoryLayer, MemoryOutput, Peer, ValueStore};

use crate::ZooError;
use crate::init::linear;
use crate::moe::Moe;

/// The SwiGLU feed-forward block: `w2(silu(w1·x) ⊙ w3·x)`, no biases.
#[derive(Module, Debug)]
pub struct SwiGlu<B: Backend> {
    /// Gate projection `dim → hidden`.
    pub w1: Linear<B>,
    /// Down projection `hidden → dim`.
    pub w2: Linear<B>,
    /// Up projection `dim → hidden`.
    pub w3: Linear<B>,
}

impl<B: Backend> SwiGlu<B> {
    /// A block with truncated-normal weights (`std = dim^-½`).
    pub fn new(dim: usize, hidden: usize, device: &B::Device) -> Self {
        let std = (dim as f64).powf(-0.5);
        Self {
            w1: linear(dim, hidden, std, device),
            w2: linear(hidden, dim, std, device),
            w3: linear(dim, hidden, std, device),
        }
    }

    /// `x [..., dim]` → `[..., dim]`.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        self.w2
            .forward(silu(self.w1.forward(x.clone())) * self.w3.forward(x))
    }
}

/// What fills one block's FFN slot.
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)] // one per block; never moved in a hot loop
pub enum Ffn<B: Backend> {
    /// SwiGLU.
    Dense(SwiGlu<B>),
    /// Mixture of SwiGLU experts.
    Moe(Moe<B>),
    /// PEER.
    Peer(Peer<B>),
    /// A memory layer reading the model's value pool.
    Memory(MemoryLayer<B>),
}

/// An FFN's output, and what the model reports about it.
pub(crate) struct FfnOutput<B: Backend> {
    pub output: Tensor<B, 3>,
    pub aux_loss: Option<Tensor<B, 1>>,
    pub memory: Option<MemoryOutput<B, 3>>,
}

impl<B: MemoryBackend> Ffn<B> {
    pub(crate) fn forward(
        &self,
        x: Tensor<B, 3>,
        pool: Option<&dyn ValueStore<B>>,
    ) -> Result<FfnOutput<B>, ZooError> {
        let plain = |output| FfnOutput {
            output,
            aux_loss: None,
            memory: None,
        };
        Ok(match self {
            Self::Dense(ffn) => plain(ffn.forward(x)),
            Self::Moe(moe) => {
                let (output, aux_loss) = moe.forward(x);
                FfnOutput {
                    output,
                    aux_loss,
                    memory: None,
                }
            }
            Self::Peer(peer) => {
                let out = peer.forward(x)?;
                FfnOutput {
                    output: out.output.clone(),
                    aux_loss: None,
                    memory: Some(out),
                }
            }
            Self::Memory(layer) => {
                let pool = pool.expect("models with memory layers own a value pool");
                let out = layer.forward(x, pool)?;
                FfnOutput {
                    output: out.output.clone(),
                    aux_loss: None,
                    memory: Some(out),
                }
            }
        })
    }
}
