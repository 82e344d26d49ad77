//! The parity check of memory layers: a fixture, written by an independent implementation of
//! the layers, holds a layer's parameters in the reference names, an input, an upstream
//! gradient, and the expected output, retrieval and gradients. The layer is imported with
//! [`memory_layers_nn::import`], run forward and backward here, and every result compared.
//!
//! - [`check_fixture`] → [`ParityReport`]: one [`TensorCheck`] per output and gradient, and the
//!   comparison of indices up to ties.
//! - A fixture's own tensors (input, upstream gradient, expected results, `grad.*`) are read
//!   with burn-store.
//!
//! Tensors are compared by their normwise relative error `max|ours − ref| / max|ref|`
//! (denominator at least 1e-6). Indices are compared up to ties (see
//! [`memory_layers_keys::reference::compare_topk`]).

mod check;
mod error;
mod fixture;

pub use check::{F32_TOLERANCE, ParityReport, TensorCheck, check_fixture};
pub use error::ParityError;
