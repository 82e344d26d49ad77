//! Product-key retrieval: the query network, per-head sub-key tables and the exact top-k over
//! `n_keys²` product keys, each the pair of one sub-key from each half.
//!
//! - [`ProductKeys`] / [`ProductKeysConfig`]: the module; [`ProductKeys::forward`] returns a
//!   [`Retrieval`] of scores and value indices, `[T·heads, knn]`, sorted descending.
//! - [`RetrievalBackend`]: the backend extension that selects the top pairs and reads their
//!   scores; its default methods are plain tensor ops, fast kernels override them per backend.
//! - [`init::linear`]: a `Linear` around a weight initialised by the caller, shared with the
//!   layers built on these keys.
//! - [`reference`]: the brute-force search over all `n_keys²` keys, and the tie-aware
//!   comparison used by tests and by the parity check (crate `memory-layers-parity`).
//!
//! ```
//! use burn::backend::Flex;
//! use burn::tensor::Tensor;
//! use memory_layers_keys::ProductKeysConfig;
//!
//! let device = Default::default();
//! let keys = ProductKeysConfig::new(16, 2, 8, 3, 4).init::<Flex>(&device).unwrap();
//! let retrieval = keys.forward(Tensor::<Flex, 2>::ones([5, 16], &device));
//! assert_eq!(retrieval.indices.dims(), [5 * 2, 3]);
//! ```

mod backend;
#[cfg(any(feature = "wgpu", feature = "cuda"))]
mod cube;
mod error;
mod flex;
pub mod init;
mod product_keys;
pub mod reference;

pub use backend::RetrievalBackend;
pub use error::KeysError;
pub use product_keys::{ProductKeys, ProductKeysConfig, QK_NORM_EPS, Retrieval, retrieve};
