//! The model zoo: Llama-style decoders whose FFN slots are dense SwiGLU, MoE, PEER, Memory or
//! Memory+ (spec §5, §8–9), the paper's sizes, parameter/FLOP accounting and generation.
//!
//! - [`TransformerConfig`] → [`Transformer`]: pre-norm RMSNorm, RoPE, causal attention with
//!   optional grouped KV heads, SwiGLU, untied embeddings; [`ModelKind`] picks the FFNs.
//!   Memory and Memory+ layers share one value pool owned by the model.
//! - [`preset`]: `tiny`, `small` and the paper's 134m … 8b ([`Size`]).
//! - [`account`]: total and active parameters and FLOPs per token, from the config alone.
//! - [`generate`]: greedy, temperature and top-p sampling with a KV cache.
//!
//! ```
//! use burn::backend::Flex;
//! use burn::tensor::{Int, Tensor};
//! use model_zoo::{ModelKind, Size, preset};
//!
//! let device = Default::default();
//! let model = preset(ModelKind::MemoryPlus, Size::Tiny, None).init::<Flex>(&device).unwrap();
//! let tokens = Tensor::<Flex, 2, Int>::zeros([2, 16], &device);
//! let out = model.forward(tokens).unwrap();
//! assert_eq!(out.logits.dims(), [2, 16, 256]);
//! ```

mod accounting;
mod attention;
mod config;
mod error;
mod ffn;
mod generate;
mod init;
mod moe;
mod presets;
mod rng;
mod transformer;

pub use accounting::{Accounting, account};
pub use attention::{Attention, KvCache};
pub use config::{
    ModelKind, MoeConfig, ProductKeyConfig, Routing, TransformerConfig, llama_ffn_hidden,
};
pub use error::ZooError;
pub use ffn::{Ffn, SwiGlu};
pub use generate::{Sampler, generate};
pub use moe::{Assignment, Moe};
pub use presets::{Size, preset};
pub use rng::SplitMix64;
pub use transformer::{Block, ModelOutput, Transformer};
