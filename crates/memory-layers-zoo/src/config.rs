use burn::nn::RmsNormConfig;
use memory_layers_nn::{MemoryLayerConfig, PeerConfig, ProductKeysConfig};
use serde::{Deserialize, Serialize};

use crate::{AttentionConfig, BlockConfig, FfnConfig, MoeConfig, SwiGluFfnConfig, ZooError};

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

    /// Whether the model has product-key layers (PEER, Memory, Memory+).
    pub fn has_product_keys(self) -> bool {
        matches!(self, Self::Peer | Self::Memory | Self::MemoryPlus)
    }

    /// Whether the model has a shared value pool (Memory, Memory+).
    pub fn has_pool(self) -> bool {
        matches!(self, Self::Memory | Self::MemoryPlus)
    }
}

crate::serde_names!(ModelKind);

/// The product-key layers beyond their keys: which blocks hold them (PEER, Memory, Memory+)
/// and the value side of the memory layers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryConfig {
    /// Blocks whose FFN is replaced; `None` = the paper's placement.
    #[serde(default)]
    pub layers: Option<Vec<usize>>,
    /// Value dimension (memory only); `None` = model dim.
    #[serde(default)]
    pub v_dim: Option<usize>,
    /// Sigmoid gate on the memory output.
    #[serde(default)]
    pub gated: bool,
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
    /// Product-key retrieval (used by `peer`, `memory`, `memory-plus`); its `dim` is the
    /// model's.
    pub product_keys: ProductKeysConfig,
    /// Placement of the product-key layers and the memory layers' values.
    #[serde(default)]
    pub memory: MemoryConfig,
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
    /// An explicit `memory.layers` list overrides this.
    pub fn product_key_layers(&self) -> Vec<usize> {
        if !self.kind.has_product_keys() {
            return Vec::new();
        }
        if let Some(layers) = &self.memory.layers {
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
        MemoryLayerConfig::new(self.product_keys.clone())
            .with_v_dim(self.memory.v_dim)
            .with_swilu(self.kind == ModelKind::MemoryPlus)
            .with_gated(self.memory.gated)
    }

    /// The PEER layer configuration.
    pub fn peer_layer(&self) -> PeerConfig {
        PeerConfig::new(self.product_keys.clone())
    }

    /// The SwiGLU FFN of dense blocks (and of every MoE expert).
    pub fn swiglu(&self) -> SwiGluFfnConfig {
        SwiGluFfnConfig::new(self.dim, self.ffn_hidden)
    }

    /// The configuration of block `layer`: its FFN slot per [`ModelKind`] and
    /// [`product_key_layers`](Self::product_key_layers).
    pub fn block(&self, layer: usize) -> BlockConfig {
        let product_keys = self.product_key_layers().contains(&layer);
        let ffn = match self.kind {
            ModelKind::Moe => FfnConfig::Moe {
                moe: self.moe.clone(),
                expert: self.swiglu(),
            },
            ModelKind::Peer if product_keys => FfnConfig::Peer(self.peer_layer()),
            ModelKind::Memory | ModelKind::MemoryPlus if product_keys => {
                FfnConfig::Memory(self.memory_layer())
            }
            _ => FfnConfig::Dense(self.swiglu()),
        };
        BlockConfig {
            norm: RmsNormConfig::new(self.dim).with_epsilon(self.norm_eps),
            attention: AttentionConfig::new(self.dim, self.heads, self.kv_heads),
            ffn,
        }
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
        if self.kind.has_product_keys() && self.product_keys.dim != self.dim {
            return Err(ZooError::invalid(
                "product_keys.dim",
                self.product_keys.dim,
                "must equal dim",
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
                "memory.layers",
                format!("{layers:?}"),
                "must list at least one block, each once",
            ));
        }
        if let Some(&bad) = layers.iter().find(|&&l| l >= self.layers) {
            return Err(ZooError::invalid(
                "memory.layers",
                bad,
                "must be a block index below layers",
            ));
        }
        Ok(())
    }
}
