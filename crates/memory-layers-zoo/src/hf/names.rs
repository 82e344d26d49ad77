//! Our parameter paths and their Hugging Face names: the name tables, the tensors of a
//! model under those names, and the exact-name remapper that renames them for burn-store.

use crate::{Ffn, ModelKind, Transformer};
use burn::tensor::backend::Backend;
use burn_store::{BurnToPyTorchAdapter, KeyRemapper, ModuleSnapshot};

use super::POOL_NAME;
use super::error::HfError;

/// Block-relative names: ours (after `blocks.N.`) and Hugging Face's (after `model.layers.N.`).
const BLOCK_NAMES: [(&str, &str); 23] = [
    ("attn_norm.gamma", "input_layernorm.weight"),
    ("attention.wq.weight", "self_attn.q_proj.weight"),
    ("attention.wk.weight", "self_attn.k_proj.weight"),
    ("attention.wv.weight", "self_attn.v_proj.weight"),
    ("attention.wo.weight", "self_attn.o_proj.weight"),
    ("ffn_norm.gamma", "post_attention_layernorm.weight"),
    ("ffn.Dense.w1.weight", "mlp.gate_proj.weight"),
    ("ffn.Dense.w3.weight", "mlp.up_proj.weight"),
    ("ffn.Dense.w2.weight", "mlp.down_proj.weight"),
    // Memory and Memory+: the reference implementation's names (memory_layers_nn::import).
    ("ffn.Memory.keys.keys", "memory.keys"),
    (
        "ffn.Memory.keys.query_proj.weight",
        "memory.query_proj.query_mlps.0.weight",
    ),
    (
        "ffn.Memory.keys.query_proj.bias",
        "memory.query_proj.query_mlps.0.bias",
    ),
    (
        "ffn.Memory.swilu_projection.weight",
        "memory.swilu_projection.weight",
    ),
    (
        "ffn.Memory.swilu_projection.bias",
        "memory.swilu_projection.bias",
    ),
    ("ffn.Memory.value_proj.weight", "memory.value_proj.weight"),
    ("ffn.Memory.value_proj.bias", "memory.value_proj.bias"),
    ("ffn.Memory.gating.weight", "memory.gating.weight"),
    ("ffn.Memory.gating.bias", "memory.gating.bias"),
    // PEER: the same retrieval names, its own expert tables.
    ("ffn.Peer.keys.keys", "memory.keys"),
    (
        "ffn.Peer.keys.query_proj.weight",
        "memory.query_proj.query_mlps.0.weight",
    ),
    (
        "ffn.Peer.keys.query_proj.bias",
        "memory.query_proj.query_mlps.0.bias",
    ),
    ("ffn.Peer.values_u.weight", "memory.values_u.weight"),
    ("ffn.Peer.values_v.weight", "memory.values_v.weight"),
];

/// Names outside the blocks.
const TOP_NAMES: [(&str, &str); 4] = [
    ("embedding.weight", "model.embed_tokens.weight"),
    ("norm.gamma", "model.norm.weight"),
    ("output.weight", "lm_head.weight"),
    ("pool.weight", POOL_NAME),
];

/// The Hugging Face name of the parameter at `path` in a [`Transformer`] (burn-store's path,
/// enum variants included), if it has one.
pub fn hf_name(path: &str) -> Option<String> {
    if let Some((_, hf)) = TOP_NAMES.iter().find(|(ours, _)| *ours == path) {
        return Some(hf.to_string());
    }
    let rest = path.strip_prefix("blocks.")?;
    let (block, rest) = rest.split_once('.')?;
    let block: usize = block.parse().ok()?;
    let (_, hf) = BLOCK_NAMES.iter().find(|(ours, _)| *ours == rest)?;
    Some(format!("model.layers.{block}.{hf}"))
}

/// The block of a `model.layers.N.…` name.
pub(super) fn hf_block(name: &str) -> Option<usize> {
    name.strip_prefix("model.layers.")?
        .split_once('.')?
        .0
        .parse()
        .ok()
}

/// Whether the parameter at `path` belongs to a product-key layer or the value pool (loaded
/// when the file has it, left as initialised otherwise).
pub(super) fn is_memory_path(path: &str) -> bool {
    path == "pool.weight" || path.contains(".ffn.Memory.") || path.contains(".ffn.Peer.")
}

/// One exported parameter: its path in the model, Hugging Face name and PyTorch-layout shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HfTensor {
    /// burn-store's path in the [`Transformer`].
    pub path: String,
    /// The name in the file.
    pub name: String,
    /// The shape in the file (Linear weights `[out, in]`).
    pub shape: Vec<usize>,
}

/// Every parameter of `model` with its Hugging Face name; a parameter without one (MoE
/// experts and routers) is an error.
pub fn hf_tensors<B: Backend>(
    model: &Transformer<B>,
    kind: ModelKind,
) -> Result<Vec<HfTensor>, HfError> {
    if model.blocks.iter().any(|b| matches!(b.ffn, Ffn::Moe(_))) {
        return Err(HfError::Unsupported {
            kind,
            reason: "Llama has no mixture-of-experts FFN, and no names for its experts and \
                     router"
                .into(),
        });
    }
    model
        .collect(None, Some(Box::new(BurnToPyTorchAdapter)), false)
        .into_iter()
        .map(|snapshot| {
            let path = snapshot.full_path();
            let name = hf_name(&path).ok_or_else(|| HfError::Unsupported {
                kind,
                reason: format!("parameter {path} has no Hugging Face name"),
            })?;
            Ok(HfTensor {
                path,
                name,
                shape: snapshot.shape.to_vec(),
            })
        })
        .collect()
}

/// Exact-name remapping `from` → `to` for each pair.
pub(super) fn exact_remapper<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> KeyRemapper {
    KeyRemapper::from_pattern_iter(pairs.map(|(from, to)| {
        let from = from.replace('.', r"\.");
        (format!("^{from}$"), to.to_string())
    }))
    .expect("escaped tensor names are valid patterns")
}

#[cfg(test)]
mod tests {
    use crate::{Size, preset};
    use burn::backend::Flex;
    use burn::module::Module;

    use super::*;

    #[test]
    fn every_parameter_of_every_exportable_model_has_one_name() {
        let device = Default::default();
        for kind in [
            ModelKind::Dense,
            ModelKind::Peer,
            ModelKind::Memory,
            ModelKind::MemoryPlus,
        ] {
            let config = preset(kind, Size::Tiny, None);
            let model = config.init::<Flex>(&device).unwrap();
            let tensors = hf_tensors(&model, kind).unwrap();
            let params: usize = tensors
                .iter()
                .map(|t| t.shape.iter().product::<usize>())
                .sum();
            assert_eq!(params, model.num_params(), "{kind}");
            let mut names: Vec<&String> = tensors.iter().map(|t| &t.name).collect();
            names.sort();
            names.dedup();
            assert_eq!(names.len(), tensors.len(), "{kind}: a name used twice");
        }
        let moe = preset(ModelKind::Moe, Size::Tiny, None);
        let model = moe.init::<Flex>(&device).unwrap();
        let err = hf_tensors(&model, ModelKind::Moe).unwrap_err().to_string();
        assert!(err.contains("moe models cannot be exported"), "{err}");
    }
}
