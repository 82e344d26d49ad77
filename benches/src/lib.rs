//! Criterion benchmarks of the memory-layer kernels (`cargo bench -p memory-benches`), and the
//! bench cases they share with `cargo xtask bench`.
//!
//! The cases whose names are a contract (retrieval, lookup, the Memory+ layer) are defined
//! once, in [`RetrievalCase`], [`LookupCase`] and [`MemoryPlusCase`]: their shapes at the
//! contract's size (`cargo xtask bench`) and at a quicker one (criterion), and their inputs.

mod cases;

pub use cases::{LookupCase, MemoryPlusCase, RetrievalCase};

use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Int, Tensor};

/// Uniform random value indices `[bags, per_bag]` in `0..rows`.
pub fn random_indices<B: Backend>(
    rows: usize,
    bags: usize,
    per_bag: usize,
    device: &B::Device,
) -> Tensor<B, 2, Int> {
    Tensor::<B, 2>::random(
        [bags, per_bag],
        Distribution::Uniform(0.0, rows as f64),
        device,
    )
    .int()
    .clamp(0, rows as i64 - 1)
}

/// Softmax weights `[bags, per_bag]`.
pub fn softmax_weights<B: Backend>(
    bags: usize,
    per_bag: usize,
    device: &B::Device,
) -> Tensor<B, 2> {
    let scores = Tensor::random([bags, per_bag], Distribution::Normal(0.0, 1.0), device);
    burn::tensor::activation::softmax(scores, 1)
}
