//! Helpers shared by the workspace's integration tests (not published).
//!
//! - [`Lcg`], [`pseudo_random`], [`random_data`]: reproducible inputs without a dependency;
//! - [`host`], [`host_f64`], [`host_ints`], [`host_all`]: read tensors back to the host;
//! - [`densify`]: sparse rows as their dense table;
//! - [`check_close`], [`assert_close`]: element-wise comparison with a relative tolerance;
//! - [`fixtures`], [`fixture`], [`rewrite_fixture`]: the parity fixtures
//!   (`fixtures/parity/*.safetensors`) and edited copies of them;
//! - with the feature `peers`, `run_peers` and `serial`: peers on threads, each registered
//!   with burn-collective. Only the crates that test peers (memory-layers-parallel, memory-layers-train) enable
//!   it, so the kernel crates' tests build neither burn-collective nor memory-layers-parallel.

mod check;
mod fixtures;
#[cfg(feature = "peers")]
mod peers;
mod rng;

pub use check::{assert_close, check_close, densify, host, host_all, host_f64, host_ints};
pub use fixtures::{Tensors, fixture, fixtures, rewrite_fixture};
#[cfg(feature = "peers")]
pub use peers::{run_peers, serial};
pub use rng::{Lcg, pseudo_random, random_data};
/// A temporary file's path, removed when dropped (what `rewrite_fixture` returns).
pub use tempfile::TempPath;
