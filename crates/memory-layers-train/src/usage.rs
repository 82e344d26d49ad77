//! How each product-key layer of a model was used, by block.

use memory_layers_nn::UsageSummary;
use serde::{Deserialize, Serialize};

/// The usage of the product-key layer in one block, as `eval.json` and `metrics.jsonl` hold it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LayerUsage {
    /// Block index.
    pub layer: usize,
    /// Values (or PEER experts) used, selection divergence, scores.
    #[serde(flatten)]
    pub usage: UsageSummary,
}

impl LayerUsage {
    /// The usage `usage` of the product-key layer in block `layer`.
    pub fn new(layer: usize, usage: UsageSummary) -> Self {
        Self { layer, usage }
    }
}
