//! Export: `model.safetensors` and `config.json` of a model, and `check.safetensors`: token ids
//! with the logits the model gives them.

use std::collections::HashMap;
use std::path::Path;

use crate::{ModelKind, Transformer, TransformerConfig, ZooBackend};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Int, Tensor};
use burn_store::{
    BurnToPyTorchAdapter, ModuleAdapter, ModuleSnapshot, PathFilter, SafetensorsStore,
};
use safetensors::Dtype;
use serde_json::{Value, json};

use super::error::{HfError, io_error};
use super::names::{HfTensor, exact_remapper, hf_tensors};
use super::rope::RopeRows;
use super::{CHECK_FILE, CONFIG_FILE, MODEL_FILE, POOL_NAME};

/// What [`export_model`] wrote.
#[derive(Debug, Clone)]
pub struct ExportedModel {
    /// Every tensor of `model.safetensors`.
    pub tensors: Vec<HfTensor>,
    /// `config.json`.
    pub config: Value,
}

/// Writes `model.safetensors` and `config.json` of `model` (of `config`) into `dir`.
pub fn export_model<B: Backend>(
    model: &Transformer<B>,
    config: &TransformerConfig,
    dir: &Path,
) -> Result<ExportedModel, HfError> {
    let tensors = hf_tensors(model, config.kind)?;
    std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    let path = dir.join(MODEL_FILE);
    let adapter = BurnToPyTorchAdapter.chain(RopeRows {
        head_dim: config.head_dim(),
        to_hf: true,
        dtype: DType::F32,
    });
    let remapper = exact_remapper(tensors.iter().map(|t| (t.path.as_str(), t.name.as_str())));
    let mut store = SafetensorsStore::from_file(&path)
        .overwrite(true)
        // transformers refuses safetensors files whose metadata lacks format "pt".
        .clear_metadata()
        .metadata("format", "pt")
        .metadata("producer", "memory-layers-rs")
        .with_to_adapter(adapter)
        .filter(PathFilter::new().with_full_paths(tensors.iter().map(|t| t.path.clone())))
        .remap(remapper);
    model.save_into(&mut store).map_err(|e| HfError::Format {
        path: path.clone(),
        message: format!("cannot write the tensors: {e}"),
    })?;
    let config = hf_config(config);
    let config_path = dir.join(CONFIG_FILE);
    let text = serde_json::to_string_pretty(&config).expect("JSON values serialise");
    std::fs::write(&config_path, text + "\n").map_err(io_error(&config_path))?;
    Ok(ExportedModel { tensors, config })
}

/// The `config.json` of a model: Hugging Face's `LlamaConfig` fields and a `memory_layers`
/// object (`null` for dense models) that says which blocks hold which layer and its settings.
pub fn hf_config(config: &TransformerConfig) -> Value {
    let memory = match config.kind {
        ModelKind::Dense | ModelKind::Moe => Value::Null,
        kind => {
            let keys = &config.product_keys;
            let peer = kind == ModelKind::Peer;
            let layer = config.memory_layer();
            let mut memory = json!({
                "kind": kind.to_string(),
                "layers": config.product_key_layers(),
                "prefix": "model.layers.{N}.memory.",
                "n_keys": keys.n_keys,
                "heads": keys.heads,
                "knn": keys.knn,
                "k_dim": keys.k_dim,
                "qk_norm": keys.qk_norm,
                "qk_norm_eps": 1e-6,
            });
            let fields = memory.as_object_mut().expect("an object");
            if peer {
                fields.insert("activation".into(), json!("gelu"));
            } else {
                fields.extend([
                    ("v_dim".to_string(), json!(layer.v_dim())),
                    ("swilu".to_string(), json!(layer.swilu)),
                    ("gated".to_string(), json!(layer.gated)),
                    ("value_proj".to_string(), json!(layer.has_value_proj())),
                    ("shared_values".to_string(), json!(POOL_NAME)),
                ]);
            }
            memory
        }
    };
    json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": config.dim,
        "intermediate_size": config.ffn_hidden,
        "num_hidden_layers": config.layers,
        "num_attention_heads": config.heads,
        "num_key_value_heads": config.kv_heads,
        "head_dim": config.head_dim(),
        "hidden_act": "silu",
        "rms_norm_eps": config.norm_eps,
        "rope_theta": config.rope_theta,
        "rope_scaling": null,
        "vocab_size": config.vocab_size,
        "max_position_embeddings": config.max_seq_len,
        "tie_word_embeddings": false,
        "attention_bias": false,
        "mlp_bias": false,
        "torch_dtype": "float32",
        "memory_layers": memory,
    })
}

/// The logits `[T · vocab]` (f32) of `model` for one sequence `tokens`.
pub fn logits<B: ZooBackend>(
    model: &Transformer<B>,
    tokens: &[u32],
    device: &B::Device,
) -> Result<Vec<f32>, HfError> {
    let ids: Vec<i64> = tokens.iter().map(|&t| i64::from(t)).collect();
    let input = Tensor::<B, 1, Int>::from_ints(ids.as_slice(), device).reshape([1, tokens.len()]);
    let out = model.forward(input)?;
    Ok(out
        .logits
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .expect("f32 after conversion"))
}

/// Writes `tokens` and their `logits` (`[T · vocab]`, from [`logits`]) as `check.safetensors`
/// in `dir`, for `tools/export/check_logits.py` to compare an independent forward pass with.
pub fn write_check(
    dir: &Path,
    tokens: &[u32],
    logits: &[f32],
    vocab: usize,
) -> Result<(), HfError> {
    let path = &dir.join(CHECK_FILE);
    let t = tokens.len();
    let token_bytes: Vec<u8> = tokens
        .iter()
        .flat_map(|&id| i64::from(id).to_le_bytes())
        .collect();
    let logit_bytes: Vec<u8> = logits.iter().flat_map(|x| x.to_le_bytes()).collect();
    fn view(dtype: Dtype, shape: Vec<usize>, data: &[u8]) -> safetensors::tensor::TensorView<'_> {
        safetensors::tensor::TensorView::new(dtype, shape, data).expect("sizes match the shapes")
    }
    let tensors = [
        ("tokens", view(Dtype::I64, vec![1, t], &token_bytes)),
        ("logits", view(Dtype::F32, vec![1, t, vocab], &logit_bytes)),
    ];
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    let bytes = safetensors::serialize(tensors, Some(metadata)).map_err(|e| HfError::Format {
        path: path.to_path_buf(),
        message: format!("cannot write: {e}"),
    })?;
    std::fs::write(path, bytes).map_err(io_error(path))
}
