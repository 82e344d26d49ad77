//! Criterion benchmarks of the memory-layer kernels (`cargo bench -p memory-layers-benches`), and the
//! bench cases they share with `cargo xtask bench`.
//!
//! The cases whose names are a contract (retrieval, lookup, the Memory+ layer) are defined
//! once, in [`RetrievalCase`], [`LookupCase`] and [`MemoryPlusCase`]: their shapes at the
//! contract's size (`cargo xtask bench`) and at a quicker one (criterion), and their inputs.

mod cases;

pub use cases::{LookupCase, MemoryPlusCase, RetrievalCase};
