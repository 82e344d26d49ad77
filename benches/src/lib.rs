//! Criterion benchmarks of the memory-layer kernels (`cargo bench -p memory-layers-benches`), and the
//! bench cases they share with `cargo xtask bench`.
//!
//! The cases whose names are a contract (retrieval, lookup, the Memory+ layer) are defined
//! once, in [`RetrievalCase`], [`LookupCase`] and [`MemoryPlusCase`]: their shapes at the
//! contract's size (`cargo xtask bench`) and at a quicker one (criterion), and their inputs.
//! [`Host`] names the machine a result came from; [`fma_peak_gflops`] measures its FMA
//! throughput, the yardstick of the train steps.

mod cases;
mod host;
mod peak;

pub use cases::{LookupCase, MemoryPlusCase, RetrievalCase};
pub use host::{Host, simd_level};
pub use peak::fma_peak_gflops;
