//! Value tables for memory layers.
//!
//! - [`ValueTable`] / [`ValueTableConfig`]: the trainable `N × v_dim` table (or a column shard
//!   of it) and its checked weighted lookup `out[t] = Σ_j w[t,j]·V[idx[t,j]]`.
//! - [`ValueBackend`]: the backend extension behind the lookup. Its default methods are the
//!   plain-tensor-op reference ([`reference`]); fast kernels override them per backend, and the
//!   `Autodiff` implementation wires their backward, so layers never change.
//! - [`RowGrads`] / [`RowGradSink`]: the value gradient as the rows a batch touched, delivered
//!   outside the autodiff graph when a table asks for it ([`ValueTable::set_sparse_grads`]).
//! - [`RowOptimizer`]: lazy AdamW and row-wise Adagrad on those rows, in place, at a cost
//!   proportional to the rows touched.
//!
//! ```
//! use burn::backend::Flex;
//! use burn::tensor::{Int, Tensor};
//! use memory_layers_values::ValueTableConfig;
//!
//! let device = Default::default();
//! let table = ValueTableConfig::new(16, 4).init::<Flex>(&device).unwrap();
//! let indices = Tensor::<Flex, 2, Int>::from_ints([[0, 3], [15, 15]], &device);
//! let weights = Tensor::<Flex, 2>::from_floats([[0.5, 0.5], [1.0, 0.25]], &device);
//! let out = table.lookup(indices, weights).unwrap();
//! assert_eq!(out.dims(), [2, 4]);
//! ```

pub mod autodiff;
mod backend;
#[cfg(any(feature = "wgpu", feature = "cuda"))]
mod cube;
mod error;
mod fallback;
mod flex;
mod optim;
pub mod reference;
mod sparse;
mod table;

pub use backend::ValueBackend;
pub use error::ValueError;
pub use optim::{RowAdagrad, RowAdamW, RowOptimizer, RowOptimizerRecord, RowRule};
pub use sparse::{RowGradSink, RowGrads};
pub use table::{ColumnSlice, ValueStore, ValueTable, ValueTableConfig};
