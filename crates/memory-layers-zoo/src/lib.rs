//! The model zoo: Llama-style decoders whose FFN slots are dense SwiGLU, MoE, PEER, Memory or
//! Memory+ (the variants the paper compares), the paper's sizes, parameter/FLOP accounting and
//! generation.
//!
//! - [`TransformerConfig`] → [`Transformer`]: pre-norm RMSNorm, RoPE, causal attention with
//!   optional grouped KV heads, SwiGLU, untied embeddings; [`ModelKind`] picks the FFNs.
//!   Memory and Memory+ layers share one value pool owned by the model.
//! - The parts, each an `XxxConfig` with `init`: [`BlockConfig`], [`AttentionConfig`],
//!   [`FfnConfig`] (the FFN slot), [`SwiGluFfnConfig`], [`MoeConfig`].
//! - [`preset`]: `tiny`, `small` and the paper's 134m … 8b ([`Size`]).
//! - [`account`]: total and active parameters and FLOPs per token, from the config alone.
//! - [`generate`]: greedy, temperature and top-p sampling with a KV cache.
//! - [`LoraConfig`] → [`Lora`]: low-rank adapters on the attention and dense FFN projections,
//!   beside a frozen model, applied in a step or merged for export.
//! - [`hf`]: the models under Hugging Face Llama names, written and loaded (safetensors).
//!
//! ```
//! use burn::backend::Flex;
//! use burn::tensor::{Int, Tensor};
//! use memory_layers_zoo::{ModelKind, Size, preset};
//!
//! let device = Default::default();
//! let model = preset(ModelKind::MemoryPlus, Size::Tiny, None).init::<Flex>(&device).unwrap();
//! let tokens = Tensor::<Flex, 2, Int>::zeros([2, 16], &device);
//! let out = model.forward(tokens).unwrap();
//! assert_eq!(out.logits.dims(), [2, 16, 256]);
//! ```

mod accounting;
mod attention;
mod block;
mod causal;
mod config;
mod error;
mod ffn;
mod gate;
mod generate;
pub mod hf;
mod host;
mod init;
mod lora;
mod moe;
mod nll;
mod presets;
mod rng;
mod rope;
mod rows;
mod swiglu;
mod transformer;
pub mod value_name;

pub use accounting::{Accounting, account};
pub use attention::{Attention, AttentionConfig, KvCache};
pub use block::{Block, BlockConfig};
pub use causal::{ATTENTION_CHUNK, CausalBackend, Heads, causal_attention};
pub use config::{MemoryConfig, ModelKind, TransformerConfig, llama_ffn_hidden};
pub use error::ZooError;
pub use ffn::{Ffn, FfnConfig};
pub use gate::GateBackend;
pub use generate::{Sampler, generate};
pub use lora::{Lora, LoraConfig, LoraPair};
pub use moe::{Assignment, Moe, MoeConfig, Routing};
pub use nll::{NllBackend, token_nll};
pub use presets::{Size, preset};
pub use rng::SplitMix64;
pub use rope::{RopeBackend, RopeTables};
pub use swiglu::{SwiGluFfn, SwiGluFfnConfig};
pub use transformer::{ModelOutput, Transformer};

/// CubeCL backends (wgpu, CUDA) run these extensions on Burn's tensor ops: their defaults.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
macro_rules! tensor_op_defaults {
    ($($extension:ident),*) => {$(
        impl<R, F, I, BT> $extension for burn_cubecl::CubeBackend<R, F, I, BT>
        where
            R: burn_cubecl::CubeRuntime,
            F: burn_cubecl::FloatElement,
            I: burn_cubecl::IntElement,
            BT: burn_cubecl::BoolElement,
        {
        }
    )*};
}

#[cfg(any(feature = "wgpu", feature = "cuda"))]
tensor_op_defaults!(RopeBackend, GateBackend, NllBackend, CausalBackend);

/// Every backend extension a model needs: the memory layers', rotary position encoding,
/// causal attention, SwiGLU's gate and the token NLL.
pub trait ZooBackend:
    memory_layers_nn::MemoryBackend + RopeBackend + GateBackend + NllBackend + CausalBackend
{
}

impl<B> ZooBackend for B where
    B: memory_layers_nn::MemoryBackend + RopeBackend + GateBackend + NllBackend + CausalBackend
{
}
