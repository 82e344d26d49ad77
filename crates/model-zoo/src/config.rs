use std::fmt;
use std::str::FromStr;

use memory_layer::{MemoryLayerConfig, PeerConfig};
use serde::{Deserialize, Serialize};

use crate::ZooError;

/// The model variants of the paper's comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// Every FFN dense (SwiGLU).
    Dense,
    /// Every FFN a mixture of full-size experts.
    Moe,
    /// One FFN replaced by PEER.
    Peer,
    /// One FFN replaced by a memory layer.
    Memory,
    /// Three FFNs replaced by swilu memory layers sharing one value pool.
    MemoryPlus,
}

impl ModelKind {
    /// Every kind, in the paper's order.
    pub const ALL: [ModelKind; 5] = [
        Self::Dense,
        Self::Moe,
        Self::Peer,
        Self::Memory,
        Self::MemoryPlus,
    ];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Dense => "dense",
            Self::Moe => "moe",
            Self::Peer => "peer",
            Self::Memory => "memory",
            Self::MemoryPlus => "memory-plus",
        }
    }

    /// Whether the model has product-key layers (PEER, Memory, Memory+).
    pub fn has_product_keys(self) -> bool {
        matches!(self, Self::Peer | Self::Memory | Self::MemoryPlus)
    }
}

impl fmt::Display for ModelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ModelKind {
    type Err = ZooError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == name)
            .ok_or_else(|| ZooError::UnknownName {
                what: "model",
                name: name.into(),
                expected: "dense, moe, peer, memory, memory-plus",
            })
    }
}

/// How MoE tokens reach experts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Routing {
    /// Training: each expert picks its top tokens (capacity factor); evaluation: top-1 per
    /// token (the paper's MoE baseline).
    ExpertChoice,
    /// Each token picks its top-k experts, with a load-balancing loss.
    TokenChoice,
}

/// Mixture-of-experts settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MoeConfig {
    /// Full-size SwiGLU experts per layer.
    pub experts: usize,
    /// Routing scheme.
    pub routing: Routing,
    /// Expert-choice capacity: each expert takes `capacity_factor · tokens / experts` tokens.
    pub capacity_factor: f64,
    /// Token-choice: experts per token.
    pub top_k: usize,
    /// Token-choice: weight of the load-balancing loss.
    pub balance_coef: f64,
}

impl MoeConfig {
    /// Expert-choice routing with capacity factor 1.
    pub fn expert_choice(experts: usize) -> Self {
        Self {
            experts,
            routing: Routing::ExpertChoice,
            capacity_factor: 1.0,
            top_k: 1,
            balance_coef: 0.01,
        }
    }
}

/// Product-key layer settings (PEER, Memory, Memory+).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProductKeyConfig {
    /// Sub-keys per half: `n_keys²` values (or PEER experts).
    pub n_keys: usize,
    /// Heads.
    pub heads: usize,
    /// Values selected per head.
    pub knn: usize,
    /// Key dimension per head (paper: half the model dim).
    pub k_dim: usize,
    /// Value dimension (memory only); `None` = model dim.
    #[serde(default)]
    pub v_dim: Option<usize>,
    /// Sigmoid gate on the memory output.
    #[serde(default)]
    pub gated: bool,
    /// RMS-normalise queries and sub-keys.
    #[serde(default)]
    pub qk_norm: bool,
    /// Layers whose FFN is replaced; `None` = the paper's placement.
    #[serde(default)]
    pub layers: Option<Vec<usize>>,
}

impl ProductKeyConfig {
    /// The paper's defaults at model dim `dim`: 4 heads, knn 32, `k_dim = dim / 2`.
    pub fn paper(dim: usize, n_keys: usize) -> Self {
        Self {
            n_keys,
            heads: 4,
            knn: 32.min(n_keys),
            k_dim: (dim / 2).max(2) & !1,
            v_dim: None,
            gated: false,
            qk_norm: false,
            layers: None,
        }
    }
}

/// A Llama-style decoder: pre-norm RMSNorm, RoPE, causal attention with optional grouped KV
/// heads, untied embeddings, and FFN slots filled per [`ModelKind`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransformerConfig {
    /// What fills the FFN slots.
    pub kind: ModelKind,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Model dimension.
    pub dim: usize,
    /// Transformer blocks.
    pub layers: usize,
    /// Attention heads.
    pub heads: usize,
    /// Key/value heads (grouped-query attention when fewer than `heads`).
    pub kv_heads: usize,
    /// SwiGLU hidden size (Llama rule by default: [`llama_ffn_hidden`]).
    pub ffn_hidden: usize,
    /// RoPE base.
    pub rope_theta: f64,
    /// RMSNorm epsilon.
    pub norm_eps: f64,
    /// Longest sequence (context length).
    pub max_seq_len: usize,
    /// MoE settings (used by `moe`).
    pub moe: MoeConfig,
    /// Product-key settings (used by `peer`, `memory`, `memory-plus`).
    pub product_keys: ProductKeyConfig,
}

/// The Llama FFN rule: `256 · ceil(8·dim/3 / 256)`.
pub fn llama_ffn_hidden(dim: usize) -> usize {
    (8 * dim).div_ceil(3 * 256) * 256
}

impl TransformerConfig {
    /// Attention head dimension.
    pub fn head_dim(&self) -> usize {
        self.dim / self.heads
    }

    /// Blocks whose FFN is a product-key layer (empty for dense and MoE).
    ///
    /// Memory and PEER: the middle block. Memory+: three blocks centred on the middle, stride 4
    /// up to 12 blocks and 8 beyond (blocks 4, 12, 20 of 24), narrowed to fit small models.
    /// An explicit `product_keys.layers` list overrides this.
    pub fn product_key_layers(&self) -> Vec<usize> {
        if !self.kind.has_product_keys() {
            return Vec::new();
        }
        if let Some(layers) = &self.product_keys.layers {
            return layers.clone();
        }
        let mid = self.layers / 2;
        if self.kind != ModelKind::MemoryPlus {
            return vec![mid];
        }
        let stride = if self.layers <= 12 { 4 } else { 8 };
        let stride = stride.min(mid).min(self.layers.saturating_sub(1 + mid));
        let mut layers = vec![mid - stride, mid, mid + stride];
        layers.dedup();
        layers
    }

    /// The memory layer configuration (Memory and Memory+).
    pub fn memory_layer(&self) -> MemoryLayerConfig {
        let pk = &self.product_keys;
        MemoryLayerConfig::new(self.dim, pk.heads, pk.k_dim, pk.knn, pk.n_keys)
            .with_v_dim(pk.v_dim)
            .with_swilu(self.kind == ModelKind::MemoryPlus)
            .with_gated(pk.gated)
            .with_qk_norm(pk.qk_norm)
    }

    /// The PEER layer configuration.
    pub fn peer_layer(&self) -> PeerConfig {
        let pk = &self.product_keys;
        PeerConfig::new(self.dim, pk.heads, pk.k_dim, pk.knn, pk.n_keys).with_qk_norm(pk.qk_norm)
    }

    /// Checks every rule; the error names the field and the rule.
    pub fn validate(&self) -> Result<(), ZooError> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("dim", self.dim),
            ("layers", self.layers),
            ("heads", self.heads),
            ("kv_heads", self.kv_heads),
            ("ffn_hidden", self.ffn_hidden),
            ("max_seq_len", self.max_seq_len),
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err(ZooError::invalid(field, value, "must be at least 1"));
            }
        }
        if !self.dim.is_multiple_of(self.heads) || !self.head_dim().is_multiple_of(2) {
            return Err(ZooError::invalid(
                "heads",
                self.heads,
                "must divide dim into an even head dimension (RoPE)",
            ));
        }
        if !self.heads.is_multiple_of(self.kv_heads) {
            return Err(ZooError::invalid(
                "kv_heads",
                self.kv_heads,
                "must divide heads",
            ));
        }
        if !self.rope_theta.is_finite() || self.rope_theta <= 0.0 {
            return Err(ZooError::invalid(
                "rope_theta",
                self.rope_theta,
                "must be positive",
            ));
        }
        if !self.norm_eps.is_finite() || self.norm_eps <= 0.0 {
            return Err(ZooError::invalid(
                "norm_eps",
                self.norm_eps,
                "must be positive",
            ));
        }
        match self.kind {
            ModelKind::Moe => self.validate_moe(),
            ModelKind::Peer => {
                self.validate_layers()?;
                Ok(self.peer_layer().validate()?)
            }
            ModelKind::Memory | ModelKind::MemoryPlus => {
                self.validate_layers()?;
                Ok(self.memory_layer().validate()?)
            }
            ModelKind::Dense => Ok(()),
        }
    }

    fn validate_moe(&self) -> Result<(), ZooError> {
        let moe = &self.moe;
        if moe.experts == 0 {
            return Err(ZooError::invalid(
                "moe.experts",
                moe.experts,
                "must be at least 1",
            ));
        }
        if !moe.capacity_factor.is_finite() || moe.capacity_factor <= 0.0 {
            return Err(ZooError::invalid(
                "moe.capacity_factor",
                moe.capacity_factor,
                "must be positive",
            ));
        }
        if moe.top_k == 0 || moe.top_k > moe.experts {
            return Err(ZooError::invalid(
                "moe.top_k",
                moe.top_k,
                "must be in 1..=experts",
            ));
        }
        Ok(())
    }

    fn validate_layers(&self) -> Result<(), ZooError> {
        let layers = self.product_key_layers();
        let mut sorted = layers.clone();
        sorted.sort_unstable();
        sorted.dedup();
        if layers.is_empty() || sorted.len() != layers.len() {
            return Err(ZooError::invalid(
                "product_keys.layers",
                format!("{layers:?}"),
                "must list at least one block, each once",
            ));
        }
        if let Some(&bad) = layers.iter().find(|&&l| l >= self.layers) {
            return Err(ZooError::invalid(
                "product_keys.layers",
                bad,
                "must be a block index below layers",
            ));
        }
        Ok(())
    }
}
