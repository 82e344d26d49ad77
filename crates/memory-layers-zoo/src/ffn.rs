use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use memory_layers_nn::{
    MemoryBackend, MemoryLayer, MemoryLayerConfig, MemoryOutput, Peer, PeerConfig, ValueStore,
};

use crate::{GateBackend, Moe, MoeConfig, SwiGluFfn, SwiGluFfnConfig, ZooError};

/// Configuration of one block's FFN slot.
#[derive(Debug, Clone)]
pub enum FfnConfig {
    /// SwiGLU.
    Dense(SwiGluFfnConfig),
    /// A mixture of SwiGLU experts.
    Moe {
        /// Experts and routing.
        moe: MoeConfig,
        /// The shape of every expert.
        expert: SwiGluFfnConfig,
    },
    /// PEER.
    Peer(PeerConfig),
    /// A memory layer; its values are the model's pool.
    Memory(MemoryLayerConfig),
}

impl FfnConfig {
    /// Initialises the slot.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Result<Ffn<B>, ZooError> {
        Ok(match self {
            Self::Dense(config) => Ffn::Dense(config.init(device)),
            Self::Moe { moe, expert } => Ffn::Moe(moe.init(expert, device)),
            Self::Peer(config) => Ffn::Peer(config.init(device)?),
            Self::Memory(config) => Ffn::Memory(config.init(device)?),
        })
    }
}

/// What fills one block's FFN slot.
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)] // one per block; never moved in a hot loop
pub enum Ffn<B: Backend> {
    /// SwiGLU.
    Dense(SwiGluFfn<B>),
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

impl<B: MemoryBackend + GateBackend> Ffn<B> {
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
