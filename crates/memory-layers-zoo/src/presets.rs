use memory_layers_nn::ProductKeysConfig;
use serde::{Deserialize, Serialize};

use crate::{MemoryConfig, ModelKind, MoeConfig, TransformerConfig, llama_ffn_hidden};

/// Model sizes: two for experiments here, and the paper's five (134M to 8B parameters before
/// any memory).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Size {
    /// Unit tests: dim 64, 4 blocks, byte vocabulary.
    #[serde(rename = "tiny")]
    Tiny,
    /// CPU experiments in minutes: dim 256, 6 blocks.
    #[serde(rename = "small")]
    Small,
    /// 134M base (inferred from parameter arithmetic).
    #[serde(rename = "134m")]
    M134,
    /// 373M base (the reference configuration).
    #[serde(rename = "373m")]
    M373,
    /// 720M base (dimensions unconfirmed).
    #[serde(rename = "720m")]
    M720,
    /// 1.3B base (inferred; reproduces the paper's parameter totals).
    #[serde(rename = "1.3b")]
    B1_3,
    /// Llama 3 8B.
    #[serde(rename = "8b")]
    B8,
}

impl Size {
    /// Every size, smallest first.
    pub const ALL: [Size; 7] = [
        Self::Tiny,
        Self::Small,
        Self::M134,
        Self::M373,
        Self::M720,
        Self::B1_3,
        Self::B8,
    ];

    /// Whether the dimensions are inferred rather than stated by the paper or its code.
    pub fn inferred(self) -> bool {
        matches!(self, Self::M134 | Self::M720 | Self::B1_3)
    }
}

crate::serde_names!(Size);

/// Base dimensions of a size.
struct Base {
    vocab: usize,
    dim: usize,
    layers: usize,
    heads: usize,
    kv_heads: usize,
    ffn_hidden: Option<usize>,
    theta: f64,
    seq: usize,
    experts: usize,
    n_keys: usize,
    peer_n_keys: usize,
    knn: usize,
    /// qk-norm of the product-key layers: on for the CPU sizes, where it keeps the memory in
    /// use (docs/results.md); off at the paper's sizes, as in the reference implementation.
    qk_norm: bool,
}

fn base(size: Size) -> Base {
    let paper = |dim, layers, heads, theta, experts| Base {
        vocab: 32_000,
        dim,
        layers,
        heads,
        kv_heads: heads,
        ffn_hidden: None,
        theta,
        seq: 4096,
        experts,
        n_keys: 1024,
        peer_n_keys: 768,
        knn: 32,
        qk_norm: false,
    };
    match size {
        Size::Tiny => Base {
            vocab: 256,
            dim: 64,
            layers: 4,
            heads: 4,
            kv_heads: 2,
            ffn_hidden: None,
            theta: 10_000.0,
            seq: 128,
            experts: 4,
            n_keys: 16,
            peer_n_keys: 16,
            knn: 16,
            qk_norm: true,
        },
        Size::Small => Base {
            vocab: 4096,
            dim: 256,
            layers: 6,
            heads: 4,
            kv_heads: 4,
            ffn_hidden: None,
            theta: 10_000.0,
            seq: 256,
            experts: 4,
            n_keys: 128,
            peer_n_keys: 64,
            knn: 16,
            qk_norm: true,
        },
        Size::M134 => paper(768, 12, 12, 10_000.0, 16),
        Size::M373 => paper(1024, 24, 16, 500_000.0, 8),
        Size::M720 => paper(1536, 22, 16, 500_000.0, 6),
        Size::B1_3 => paper(2048, 22, 16, 500_000.0, 4),
        Size::B8 => Base {
            vocab: 128_256,
            kv_heads: 8,
            ffn_hidden: Some(14_336),
            seq: 8192,
            ..paper(4096, 32, 32, 500_000.0, 4)
        },
    }
}

/// The configuration of model `kind` at `size`. `n_keys` overrides the number of sub-keys of
/// product-key layers (the paper's memory-size sweep).
pub fn preset(kind: ModelKind, size: Size, n_keys: Option<usize>) -> TransformerConfig {
    let b = base(size);
    let default_keys = if kind == ModelKind::Peer {
        b.peer_n_keys
    } else {
        b.n_keys
    };
    let n_keys = n_keys.unwrap_or(default_keys);
    let product_keys = ProductKeysConfig::paper(b.dim, n_keys)
        .with_knn(b.knn)
        .with_n_keys(n_keys)
        .with_qk_norm(b.qk_norm);
    TransformerConfig {
        kind,
        vocab_size: b.vocab,
        dim: b.dim,
        layers: b.layers,
        heads: b.heads,
        kv_heads: b.kv_heads,
        ffn_hidden: b.ffn_hidden.unwrap_or_else(|| llama_ffn_hidden(b.dim)),
        rope_theta: b.theta,
        norm_eps: 1e-5,
        max_seq_len: b.seq,
        moe: MoeConfig::expert_choice(b.experts),
        product_keys,
        memory: MemoryConfig::default(),
    }
}
