//! The contract cases that `cargo xtask bench` times and the criterion benches measure: their
//! shapes (the contract's size, and a quicker one for criterion on the CPU) and inputs.

use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Int, Tensor};
use memory_layers_keys::{KeysError, ProductKeysConfig};
use memory_layers_nn::MemoryLayerConfig;
use memory_layers_values::{ValueError, ValueTable, ValueTableConfig};

fn normal<B: Backend, const D: usize>(shape: [usize; D], device: &B::Device) -> Tensor<B, D> {
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), device)
}

/// `pk_retrieval_fwd`: top-`knn` product-key retrieval for `tokens × heads` queries.
#[derive(Debug, Clone, Copy)]
pub struct RetrievalCase {
    /// Input width of the keys' query projection (built, not timed).
    pub dim: usize,
    /// Tokens.
    pub tokens: usize,
    /// Heads per token.
    pub heads: usize,
    /// Query dimension per head.
    pub k_dim: usize,
    /// Sub-keys per half.
    pub n_keys: usize,
    /// Values retrieved per query.
    pub knn: usize,
}

impl RetrievalCase {
    /// The contract's name.
    pub const NAME: &str = "pk_retrieval_fwd";
    /// The contract's size.
    pub const CONTRACT: Self = Self {
        dim: 512,
        tokens: 2048,
        heads: 4,
        k_dim: 256,
        n_keys: 512,
        knn: 32,
    };
    /// A quarter of the contract's queries.
    pub const QUICK: Self = Self {
        dim: 256,
        tokens: 512,
        ..Self::CONTRACT
    };

    /// Queries retrieved for.
    pub fn queries(&self) -> usize {
        self.tokens * self.heads
    }

    /// Freshly initialised sub-keys, then random queries `[tokens, heads, k_dim]`.
    pub fn inputs<B: Backend>(
        &self,
        device: &B::Device,
    ) -> Result<(Tensor<B, 3>, Tensor<B, 4>), KeysError> {
        let keys = ProductKeysConfig::new(self.dim, self.heads, self.k_dim, self.knn, self.n_keys)
            .init::<B>(device)?;
        let queries = normal([self.tokens, self.heads, self.k_dim], device);
        Ok((queries, keys.sub_keys()))
    }
}

/// `lookup_fwd` and `lookup_fwd_bwd`: softmax-weighted sums of `per_bag` random rows of a
/// `rows × dim` value table, for `bags` bags.
#[derive(Debug, Clone, Copy)]
pub struct LookupCase {
    /// Rows of the table.
    pub rows: usize,
    /// Width of a row.
    pub dim: usize,
    /// Weighted sums.
    pub bags: usize,
    /// Rows per sum.
    pub per_bag: usize,
}

impl LookupCase {
    /// The forward contract's name.
    pub const FWD: &str = "lookup_fwd";
    /// The forward-and-backward contract's name.
    pub const FWD_BWD: &str = "lookup_fwd_bwd";
    /// The contract's size.
    pub const CONTRACT: Self = Self {
        rows: 1 << 20,
        dim: 256,
        bags: 16384,
        per_bag: 32,
    };
    /// 2^16 rows and an eighth of the bags.
    pub const QUICK: Self = Self {
        rows: 1 << 16,
        bags: 2048,
        ..Self::CONTRACT
    };

    /// Bytes of the rows one lookup reads (f32).
    pub fn bytes(&self) -> usize {
        self.bags * self.per_bag * self.dim * 4
    }

    /// A freshly initialised table.
    pub fn table<B: Backend>(&self, device: &B::Device) -> Result<ValueTable<B>, ValueError> {
        ValueTableConfig::new(self.rows, self.dim).init::<B>(device)
    }

    /// Uniform random row indices `[bags, per_bag]`.
    pub fn indices<B: Backend>(&self, device: &B::Device) -> Tensor<B, 2, Int> {
        random_indices::<B>(self.rows, self.bags, self.per_bag, device)
    }

    /// Softmax weights `[bags, per_bag]`.
    pub fn weights<B: Backend>(&self, device: &B::Device) -> Tensor<B, 2> {
        softmax_weights::<B>(self.bags, self.per_bag, device)
    }
}

/// `memory_plus_fwd_bwd`: forward and backward of a swilu memory layer over a
/// `[batch, seq, dim]` input.
#[derive(Debug, Clone, Copy)]
pub struct MemoryPlusCase {
    /// Model dimension.
    pub dim: usize,
    /// Memory heads.
    pub heads: usize,
    /// Query dimension per head.
    pub k_dim: usize,
    /// Values selected per head and token.
    pub knn: usize,
    /// Sub-keys per half.
    pub n_keys: usize,
    /// Sequences.
    pub batch: usize,
    /// Tokens per sequence.
    pub seq: usize,
}

impl MemoryPlusCase {
    /// The contract's name.
    pub const NAME: &str = "memory_plus_fwd_bwd";
    /// The contract's size.
    pub const CONTRACT: Self = Self {
        dim: 512,
        heads: 4,
        k_dim: 256,
        knn: 32,
        n_keys: 512,
        batch: 8,
        seq: 256,
    };
    /// 128² values and an eighth of the tokens.
    pub const QUICK: Self = Self {
        n_keys: 128,
        batch: 2,
        seq: 128,
        ..Self::CONTRACT
    };

    /// Tokens of the input.
    pub fn tokens(&self) -> usize {
        self.batch * self.seq
    }

    /// The layer: Memory+ (swilu values).
    pub fn config(&self) -> MemoryLayerConfig {
        MemoryLayerConfig::new(ProductKeysConfig::new(
            self.dim,
            self.heads,
            self.k_dim,
            self.knn,
            self.n_keys,
        ))
        .with_swilu(true)
    }

    /// A random input `[batch, seq, dim]`.
    pub fn input<B: Backend>(&self, device: &B::Device) -> Tensor<B, 3> {
        normal([self.batch, self.seq, self.dim], device)
    }
}

/// Uniform random value indices `[bags, per_bag]` in `0..rows`.
fn random_indices<B: Backend>(
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
fn softmax_weights<B: Backend>(bags: usize, per_bag: usize, device: &B::Device) -> Tensor<B, 2> {
    let scores = Tensor::random([bags, per_bag], Distribution::Normal(0.0, 1.0), device);
    burn::tensor::activation::softmax(scores, 1)
}
