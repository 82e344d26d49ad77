//! Memory layers (paper "Memory Layers at Scale"): product-key retrieval, then a weighted
//! lookup into a value table.
//!
//! - [`MemoryLayer`] / [`MemoryLayerConfig`]: Memory and Memory+ (swilu), with the optional
//!   sigmoid gate, qk-norm and `v_dim ≠ dim` projection. The layer does not own its values: it
//!   reads them from a [`ValueStore`] passed to `forward`, so one [`ValueTable`] can serve
//!   several layers (the paper's shared pool); [`Memory`] bundles a layer with its own table.
//! - [`Peer`] / [`PeerConfig`]: PEER, two tables `u`, `v`; `Σ softmax(s)·gelu(⟨x,u⟩)·v`.
//! - [`UsageStats`]: how the memory is used over a window of batches.
//! - [`import`]: layers from safetensors files in the reference implementation's names.
//!
//! ```
//! use burn::backend::Flex;
//! use burn::tensor::Tensor;
//! use memory_layers_nn::MemoryLayerConfig;
//!
//! let device = Default::default();
//! let config = MemoryLayerConfig::memory_plus(32, 8).with_knn(4);
//! let pool = config.init_values::<Flex>(&device).unwrap();
//! let layers: Vec<_> = (0..3).map(|_| config.init::<Flex>(&device).unwrap()).collect();
//! let x = Tensor::<Flex, 3>::ones([2, 5, 32], &device);
//! for layer in &layers {
//!     let out = layer.forward(x.clone(), &pool).unwrap();
//!     assert_eq!(out.output.dims(), [2, 5, 32]);
//! }
//! ```

mod backend;
mod error;
pub mod import;
mod memory;
mod peer;
mod stats;

pub use backend::MemoryBackend;
pub use error::{FileError, MemoryError};
pub use memory::{Memory, MemoryLayer, MemoryLayerConfig, MemoryOutput};
pub use memory_layers_keys::{ProductKeys, ProductKeysConfig, Retrieval};
pub use memory_layers_values::{ValueStore, ValueTable, ValueTableConfig};
pub use peer::{Peer, PeerConfig};
pub use stats::{UsageStats, UsageSummary};
