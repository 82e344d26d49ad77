//! Helpers shared by the workspace's integration tests (not published).
//!
//! - [`Lcg`], [`pseudo_random`], [`random_data`]: reproducible inputs without a dependency;
//! - [`host`], [`host_f64`], [`host_ints`]: read a tensor back to the host;
//! - [`assert_close`]: element-wise comparison with a relative tolerance;
//! - [`run_peers`], [`serial`]: peers on threads, each registered with burn-collective.

mod check;
mod peers;
mod rng;

pub use check::{assert_close, host, host_f64, host_ints};
pub use peers::{run_peers, serial};
pub use rng::{Lcg, pseudo_random, random_data};
