use burn::module::Module;
use burn::nn::{RmsNorm, RmsNormConfig};
use burn::tensor::backend::Backend;

use crate::{Attention, AttentionConfig, Ffn, FfnConfig, ZooError};

/// Configuration of a [`Block`].
#[derive(Debug, Clone)]
pub struct BlockConfig {
    /// Both norms (before attention, before the FFN slot).
    pub norm: RmsNormConfig,
    /// Self-attention.
    pub attention: AttentionConfig,
    /// The FFN slot.
    pub ffn: FfnConfig,
}

impl BlockConfig {
    /// Initialises the block. The FFN draws its weights before the attention: seeded runs
    /// depend on that order.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Result<Block<B>, ZooError> {
        let ffn = self.ffn.init(device)?;
        Ok(Block {
            attn_norm: self.norm.init(device),
            attention: self.attention.init(device),
            ffn_norm: self.norm.init(device),
            ffn,
        })
    }
}

/// One pre-norm block: `h += attention(norm(h)); h += ffn(norm(h))`.
#[derive(Module, Debug)]
pub struct Block<B: Backend> {
    /// Norm before attention.
    pub attn_norm: RmsNorm<B>,
    /// Self-attention.
    pub attention: Attention<B>,
    /// Norm before the FFN slot.
    pub ffn_norm: RmsNorm<B>,
    /// The FFN slot.
    pub ffn: Ffn<B>,
}
