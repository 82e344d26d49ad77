//! Parameter and FLOP accounting from a configuration alone (no tensors), so that the paper's
//! largest models can be counted on a laptop. Tests check it against `Module::num_params`.
//!
//! - total parameters: everything, including embeddings and unselected experts or values;
//! - active parameters per token: total minus what a token does not touch (unselected MoE
//!   experts, unselected memory values and PEER experts);
//! - FLOPs per token (forward): `2 ×` the multiply-adds of every matrix product a token goes
//!   through (input embedding excluded, output head included, memory: query network, the
//!   `2·n_keys` sub-key scores per head, the weighted sum of `heads·knn` value rows, W1/W2),
//!   plus attention over a full context: `2 · 2 · layers · max_seq_len · dim`.

use serde::Serialize;

use crate::{ModelKind, TransformerConfig};

/// The size of a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Accounting {
    /// All parameters.
    pub total_params: u64,
    /// Parameters a token uses.
    pub active_params: u64,
    /// Forward FLOPs per token.
    pub flops_per_token: u64,
    /// Parameters of the token embeddings and the output head: a table per token that can
    /// store no fact about a combination of tokens.
    pub embedding_params: u64,
    /// Parameters of the value tables (the memory pool, PEER's experts).
    pub value_params: u64,
}

/// Parameters and multiply-adds of one piece.
#[derive(Default, Clone, Copy)]
struct Part {
    params: u64,
    active: u64,
    macs: u64,
}

impl Part {
    fn dense(params: u64) -> Self {
        Self {
            params,
            active: params,
            macs: params,
        }
    }
}

impl std::ops::Add for Part {
    type Output = Part;
    fn add(self, o: Part) -> Part {
        Part {
            params: self.params + o.params,
            active: self.active + o.active,
            macs: self.macs + o.macs,
        }
    }
}

fn linear(d_in: usize, d_out: usize, bias: bool) -> Part {
    Part::dense((d_in * d_out + if bias { d_out } else { 0 }) as u64)
}

fn swiglu(dim: usize, hidden: usize) -> Part {
    linear(dim, hidden, false) + linear(dim, hidden, false) + linear(hidden, dim, false)
}

/// Query network and sub-keys of a product-key layer.
fn product_keys(c: &TransformerConfig) -> Part {
    let pk = &c.product_keys;
    let query = linear(c.dim, pk.heads * pk.k_dim, true);
    let keys = (2 * pk.heads * pk.n_keys * pk.k_dim / 2) as u64;
    // Every token scores all sub-keys of both halves of every head.
    query
        + Part {
            params: keys,
            active: keys,
            macs: keys,
        }
}

/// A table of `rows × width` of which a token reads `read` rows.
fn table(rows: usize, width: usize, read: usize) -> Part {
    Part {
        params: (rows * width) as u64,
        active: (read * width) as u64,
        macs: (read * width) as u64,
    }
}

/// Counts a configuration.
pub fn account(c: &TransformerConfig) -> Accounting {
    let (d, v) = (c.dim, c.vocab_size);
    let embedding = Part {
        params: (v * d) as u64,
        active: (v * d) as u64,
        macs: 0,
    };
    let head = linear(d, v, false);
    let norm = Part {
        params: d as u64,
        active: d as u64,
        macs: 0,
    };
    let kv = c.kv_heads * c.head_dim();
    let attention =
        linear(d, d, false) + linear(d, kv, false) + linear(d, kv, false) + linear(d, d, false);
    let dense_ffn = swiglu(d, c.ffn_hidden);
    let pk_layers = c.product_key_layers();
    let pk = &c.product_keys;
    let read = pk.heads * pk.knn;
    let ffn = |layer: usize| -> Part {
        match c.kind {
            ModelKind::Dense => dense_ffn,
            ModelKind::Moe => {
                let experts = c.moe.experts as u64;
                let per_token = c.moe.top_k as u64;
                let router = linear(d, c.moe.experts, false);
                router
                    + Part {
                        params: dense_ffn.params * experts,
                        active: dense_ffn.params * per_token,
                        macs: dense_ffn.macs * per_token,
                    }
            }
            _ if !pk_layers.contains(&layer) => dense_ffn,
            ModelKind::Peer => {
                let rows = pk.n_keys * pk.n_keys;
                product_keys(c) + table(rows, d, read) + table(rows, d, read)
            }
            ModelKind::Memory | ModelKind::MemoryPlus => {
                let layer = c.memory_layer();
                let v_dim = layer.v_dim();
                let mut part = product_keys(c);
                if layer.swilu {
                    part = part + linear(d, v_dim, true);
                }
                if layer.has_value_proj() {
                    part = part + linear(v_dim, d, true);
                }
                if layer.gated {
                    part = part + linear(d, 1, true);
                }
                // The shared pool is counted once, below; a token reads `read` rows per layer.
                part + Part {
                    params: 0,
                    active: 0,
                    macs: (read * v_dim) as u64,
                }
            }
        }
    };
    let mut total = embedding + head + norm;
    for layer in 0..c.layers {
        total = total + norm + norm + attention + ffn(layer);
    }
    if matches!(c.kind, ModelKind::Memory | ModelKind::MemoryPlus) {
        // One pool shared by every memory layer; its lookups' MACs are counted per layer.
        let v_dim = c.memory_layer().v_dim();
        let rows = pk.n_keys * pk.n_keys;
        let reads = (read * pk_layers.len()).min(rows);
        total = total
            + Part {
                params: (rows * v_dim) as u64,
                active: (reads * v_dim) as u64,
                macs: 0,
            };
    }
    let attention_flops = 2 * 2 * c.layers as u64 * c.max_seq_len as u64 * d as u64;
    let rows = (pk.n_keys * pk.n_keys) as u64;
    let value_params = match c.kind {
        ModelKind::Dense | ModelKind::Moe => 0,
        ModelKind::Peer => 2 * rows * d as u64 * pk_layers.len() as u64,
        ModelKind::Memory | ModelKind::MemoryPlus => rows * c.memory_layer().v_dim() as u64,
    };
    Accounting {
        total_params: total.params,
        active_params: total.active,
        flops_per_token: 2 * total.macs + attention_flops,
        embedding_params: embedding.params + head.params,
        value_params,
    }
}
