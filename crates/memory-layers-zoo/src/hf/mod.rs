//! Weights out and in under Hugging Face Llama names.
//!
//! - [`export_run`] writes a trained run as `model.safetensors` (Llama names for the dense
//!   parts, `model.layers.N.memory.*` for the product-key layers, the shared value pool once
//!   as `model.memory_values.weight`), `config.json` (a `LlamaConfig` plus a `memory_layers`
//!   object), the run's `tokenizer.json` when it has one, and `check.safetensors`: the token
//!   ids of a fixed prompt and the logits this model gives them, for
//!   `tools/export/check_logits.py` to compare an independent forward pass with.
//! - [`load_hf`] loads such a file, or a real Llama checkpoint's, into a model of a given
//!   configuration: every tensor the file has for the model is loaded, the rest stays as
//!   initialised ("retrofit": a dense model's weights under fresh memory layers).
//!
//! The tensors go through burn-store's safetensors store: its `BurnToPyTorchAdapter` /
//! `PyTorchToBurnAdapter` transpose the Linear weights (`[in, out]` here, `[out, in]` in
//! PyTorch), a [`KeyRemapper`](burn_store::KeyRemapper) of exact names renames each parameter, and one adapter of this
//! module (`RopeRows`) reorders the rows of `q_proj` and `k_proj` and casts the dtype.
//! The `safetensors` crate is used directly only where no module is involved: reading a
//! file's header (names, dtypes, shapes) to check it before loading, as
//! `memory_layers_nn::import` does, and writing `check.safetensors`, which holds no parameters.
//!
//! RoPE: ours rotates interleaved pairs `(x[2i], x[2i+1])` of each head, Hugging Face's
//! `rotate_half` the pairs `(x[i], x[i + d/2])`, both with frequency `θ^(-2i/d)`. Exported
//! row `h·d + j` of `q_proj`/`k_proj` is our row `h·d + 2j` for `j < d/2` and
//! `h·d + 2(j − d/2) + 1` above: the queries and keys come out in the order `rotate_half`
//! expects, and their dot products (hence attention) are unchanged.

mod error;
mod load;
mod names;
mod rope;
mod write;

pub use error::HfError;
pub use load::{HfLoadReport, load_hf};
pub use names::{HfTensor, hf_name, hf_tensors};
pub use write::{ExportedModel, export_model, hf_config, logits, write_check};

/// The tensors of the model, in a file `config.json` describes.
pub const MODEL_FILE: &str = "model.safetensors";
/// The configuration of the exported model.
pub const CONFIG_FILE: &str = "config.json";
/// Token ids and the logits the model gives them ([`write_check`]).
pub const CHECK_FILE: &str = "check.safetensors";
/// The name of the value pool shared by the memory layers.
pub const POOL_NAME: &str = "model.memory_values.weight";
