//! Weights out and in under Hugging Face Llama names.
//!
//! - [`export_run`] writes a trained run as `model.safetensors` (Llama names for the dense
//!   parts, `model.layers.N.memory.*` for the product-key layers, the shared value pool once
//!   as `model.memory_values.weight`), `config.json` (a `LlamaConfig` plus a `memory_layers`
//!   object), the run's `tokenizer.json` when it has one, and `check.safetensors`: the token
//!   ids of a fixed prompt and the logits this model gives them, for
//!   `tools/export/check_logits.py` to compare an independent forward pass with.
//! - [`load_hf`] loads such a file, or a real Llama checkpoint's, into a model of a given
//!   configuration: every tensor the file has for the model is loaded, the rest stays as
//!   initialised ("retrofit": a dense model's weights under fresh memory layers).
//!
//! The tensors go through burn-store's safetensors store: its `BurnToPyTorchAdapter` /
//! `PyTorchToBurnAdapter` transpose the Linear weights (`[in, out]` here, `[out, in]` in
//! PyTorch), a [`KeyRemapper`] of exact names renames each parameter, and one adapter of this
//! module (`RopeRows`) reorders the rows of `q_proj` and `k_proj` and casts the dtype.
//! The `safetensors` crate is used directly only where no module is involved: reading a
//! file's header (names, dtypes, shapes) to check it before loading, as
//! `memory_layer::import` does, and writing `check.safetensors`, which holds no parameters.
//!
//! RoPE: ours rotates interleaved pairs `(x[2i], x[2i+1])` of each head, Hugging Face's
//! `rotate_half` the pairs `(x[i], x[i + d/2])`, both with frequency `θ^(-2i/d)`. Exported
//! row `h·d + j` of `q_proj`/`k_proj` is our row `h·d + 2j` for `j < d/2` and
//! `h·d + 2(j − d/2) + 1` above: the queries and keys come out in the order `rotate_half`
//! expects, and their dot products (hence attention) are unchanged.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use burn::tensor::backend::Backend;
use burn::tensor::{DType, Int, Tensor, TensorData};
use burn_store::{
    BurnToPyTorchAdapter, KeyRemapper, ModuleAdapter, ModuleSnapshot, PathFilter,
    PyTorchToBurnAdapter, SafetensorsStore, TensorSnapshot,
};
use model_zoo::{Ffn, ModelKind, Transformer, TransformerConfig, ZooBackend, ZooError};
use safetensors::{Dtype, SafeTensors};
use serde_json::{Value, json};
use thiserror::Error;

use crate::{TrainError, open_run};

/// The tensors of the model, in a file `config.json` describes.
pub const MODEL_FILE: &str = "model.safetensors";
/// The configuration of the exported model.
pub const CONFIG_FILE: &str = "config.json";
/// The reference logits of [`export_run`].
pub const CHECK_FILE: &str = "check.safetensors";
/// The name of the value pool shared by the memory layers.
pub const POOL_NAME: &str = "model.memory_values.weight";
/// The text whose tokens [`export_run`] writes with their logits (cut to the context and to
/// [`CHECK_TOKENS`] tokens).
pub const CHECK_PROMPT: &str = "ROMEO.\nBut soft, what light through yonder window breaks?\n\
                                It is the east, and Juliet is the sun.\n";
/// The most tokens of [`CHECK_PROMPT`] the check holds.
pub const CHECK_TOKENS: usize = 64;

/// Errors of export and import; each names the file and, where it applies, the tensor.
#[derive(Debug, Error)]
pub enum ExportError {
    /// The run could not be opened.
    #[error(transparent)]
    Run(#[from] TrainError),
    /// The model failed.
    #[error(transparent)]
    Model(#[from] ZooError),
    /// A model with parts that have no Hugging Face name.
    #[error("{kind} models cannot be exported: {reason}")]
    Unsupported {
        /// The model kind.
        kind: ModelKind,
        /// Why.
        reason: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error (in the message, not a source: printed once).
        error: std::io::Error,
    },
    /// Not a safetensors file, or one burn-store could not read or write.
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Tensors the model needs are not in the file.
    #[error("{path}: missing tensor{} {}", if names.len() == 1 { "" } else { "s" }, names.join(", "))]
    Missing {
        /// The file.
        path: PathBuf,
        /// The missing tensors' names.
        names: Vec<String>,
    },
    /// A tensor of the file has another shape than the model's parameter, or is not a float.
    #[error("{path}: tensor {name} is {actual}, this model's is {expected}")]
    Tensor {
        /// The file.
        path: PathBuf,
        /// The tensor's name.
        name: String,
        /// Its dtype and shape in the model (PyTorch layout).
        expected: String,
        /// Its dtype and shape in the file.
        actual: String,
    },
    /// The file holds blocks the model does not have.
    #[error("{path}: tensor {name} is for block {block}; this model has {layers} blocks")]
    ExtraBlock {
        /// The file.
        path: PathBuf,
        /// The tensor's name.
        name: String,
        /// Its block.
        block: usize,
        /// The model's blocks.
        layers: usize,
    },
    /// The `config.json` beside the file describes another model.
    #[error("{path}: {field} is {file}, this model's is {model}")]
    Config {
        /// The config.json.
        path: PathBuf,
        /// The field.
        field: &'static str,
        /// Its value in the file.
        file: String,
        /// The model's.
        model: String,
    },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ExportError + '_ {
    move |error| ExportError::Io {
        path: path.to_path_buf(),
        error,
    }
}

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
    // Memory and Memory+: the reference implementation's names (memory_layer::import).
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
fn hf_block(name: &str) -> Option<usize> {
    name.strip_prefix("model.layers.")?
        .split_once('.')?
        .0
        .parse()
        .ok()
}

/// Whether the parameter at `path` belongs to a product-key layer or the value pool (loaded
/// when the file has it, left as initialised otherwise).
fn is_memory_path(path: &str) -> bool {
    path == "pool.weight" || path.contains(".ffn.Memory.") || path.contains(".ffn.Peer.")
}

/// The row of our `q_proj`/`k_proj` (in a head of `head_dim`) that Hugging Face's row `j` is.
fn rope_row(j: usize, head_dim: usize) -> usize {
    let half = head_dim / 2;
    if j < half { 2 * j } else { 2 * (j - half) + 1 }
}

/// Reorders the rows of an `[out, in]` matrix head by head: to Hugging Face's RoPE order
/// (`to_hf`) or back.
fn permute_rows(data: TensorData, head_dim: usize, to_hf: bool) -> TensorData {
    let (shape, dtype) = (data.shape.clone(), data.dtype);
    let row = shape[1] * dtype.size();
    let bytes = data.as_bytes();
    let mut out = vec![0u8; bytes.len()];
    for head in 0..shape[0] / head_dim {
        for j in 0..head_dim {
            let (hf, ours) = (head * head_dim + j, head * head_dim + rope_row(j, head_dim));
            let (to, from) = if to_hf { (hf, ours) } else { (ours, hf) };
            out[to * row..(to + 1) * row].copy_from_slice(&bytes[from * row..(from + 1) * row]);
        }
    }
    TensorData::from_bytes_vec(out, shape, dtype)
}

/// The adapter of this module: the RoPE row order of `attention.wq` and `attention.wk`
/// (applied to the `[out, in]` layout) and a cast to `dtype`.
#[derive(Debug, Clone)]
struct RopeRows {
    head_dim: usize,
    to_hf: bool,
    dtype: DType,
}

impl ModuleAdapter for RopeRows {
    fn adapt(&self, snapshot: &TensorSnapshot) -> TensorSnapshot {
        let path = snapshot.full_path();
        let rope = path.ends_with("attention.wq.weight") || path.ends_with("attention.wk.weight");
        let cast = snapshot.dtype != self.dtype;
        if !rope && !cast {
            return snapshot.clone();
        }
        let data = snapshot.clone_data_fn();
        let (head_dim, to_hf, dtype) = (self.head_dim, self.to_hf, self.dtype);
        let data = Rc::new(move || {
            let mut data = data()?;
            if rope && data.shape.len() == 2 {
                data = permute_rows(data, head_dim, to_hf);
            }
            Ok(if cast {
                data.convert_dtype(dtype)
            } else {
                data
            })
        });
        TensorSnapshot::from_closure(
            data,
            self.dtype,
            snapshot.shape.clone(),
            snapshot.path_stack.clone().unwrap_or_default(),
            snapshot.container_stack.clone().unwrap_or_default(),
            snapshot.tensor_id.unwrap_or_default(),
        )
    }

    fn clone_box(&self) -> Box<dyn ModuleAdapter> {
        Box::new(self.clone())
    }
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
) -> Result<Vec<HfTensor>, ExportError> {
    if model.blocks.iter().any(|b| matches!(b.ffn, Ffn::Moe(_))) {
        return Err(ExportError::Unsupported {
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
            let name = hf_name(&path).ok_or_else(|| ExportError::Unsupported {
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
fn exact_remapper<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> KeyRemapper {
    KeyRemapper::from_pattern_iter(pairs.map(|(from, to)| {
        let from = from.replace('.', r"\.");
        (format!("^{from}$"), to.to_string())
    }))
    .expect("escaped tensor names are valid patterns")
}

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
) -> Result<ExportedModel, ExportError> {
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
    model
        .save_into(&mut store)
        .map_err(|e| ExportError::Format {
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

/// What [`export_run`] wrote.
#[derive(Debug, Clone)]
pub struct ExportSummary {
    /// The model's tensors and configuration.
    pub model: ExportedModel,
    /// Whether `tokenizer.json` was copied.
    pub tokenizer: bool,
    /// The token ids of `check.safetensors`.
    pub check_tokens: Vec<u32>,
}

/// Exports the run (or checkpoint folder) `checkpoint` into `out`: `model.safetensors`,
/// `config.json`, `tokenizer.json` (BPE runs) and `check.safetensors` (`tokens [1, T]` i64 and
/// `logits [1, T, vocab]` f32 of [`CHECK_PROMPT`], computed by this model on `device`).
pub fn export_run<B: ZooBackend>(
    checkpoint: &Path,
    out: &Path,
    device: &B::Device,
) -> Result<ExportSummary, ExportError> {
    let run = open_run::<B>(checkpoint, device)?;
    let model = export_model(&run.model, &run.config.model, out)?;
    let tokenizer = run.dir.join("tokenizer.json");
    let copied = tokenizer.exists();
    if copied {
        let to = out.join("tokenizer.json");
        std::fs::copy(&tokenizer, &to).map_err(io_error(&to))?;
    }
    let mut tokens = run.tokenizer.encode(CHECK_PROMPT);
    let vocab = run.config.model.vocab_size as u32;
    tokens.retain(|&t| t < vocab);
    tokens.truncate(CHECK_TOKENS.min(run.config.model.max_seq_len));
    if tokens.is_empty() {
        tokens = (0..CHECK_TOKENS.min(run.config.model.max_seq_len) as u32)
            .map(|t| t % vocab)
            .collect();
    }
    let logits = logits(&run.model, &tokens, device)?;
    write_check(&out.join(CHECK_FILE), &tokens, &logits, vocab as usize)?;
    Ok(ExportSummary {
        model,
        tokenizer: copied,
        check_tokens: tokens,
    })
}

/// The logits `[T · vocab]` (f32) of `model` for one sequence `tokens`.
pub fn logits<B: ZooBackend>(
    model: &Transformer<B>,
    tokens: &[u32],
    device: &B::Device,
) -> Result<Vec<f32>, ExportError> {
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

/// Writes `tokens` and their `logits` as `check.safetensors`.
fn write_check(
    path: &Path,
    tokens: &[u32],
    logits: &[f32],
    vocab: usize,
) -> Result<(), ExportError> {
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
    let bytes =
        safetensors::serialize(tensors, Some(metadata)).map_err(|e| ExportError::Format {
            path: path.to_path_buf(),
            message: format!("cannot write: {e}"),
        })?;
    std::fs::write(path, bytes).map_err(io_error(path))
}

/// What [`load_hf`] did with each tensor.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HfLoadReport {
    /// Parameters loaded from the file (Hugging Face names).
    pub loaded: Vec<String>,
    /// Parameters the file does not have, left as initialised (product-key layers, pool).
    pub fresh: Vec<String>,
    /// Tensors of the file the model has no place for (the FFN of a block that is a memory
    /// block here, buffers such as `rotary_emb.inv_freq`).
    pub ignored: Vec<String>,
    /// `lm_head.weight` was absent and the output head took the embeddings (tied weights).
    pub tied_lm_head: bool,
}

/// `names` with the tensors of one module of a block written once, as
/// `model.layers.N.memory.*`, where there are several.
fn grouped(names: &[String]) -> Vec<String> {
    let group = |name: &str| match name.splitn(5, '.').collect::<Vec<_>>().as_slice() {
        ["model", "layers", n, module, _] => Some(format!("model.layers.{n}.{module}.*")),
        _ => None,
    };
    let mut out: Vec<String> = Vec::new();
    for name in names {
        let shown = match group(name) {
            Some(g)
                if names
                    .iter()
                    .filter(|n| group(n).as_ref() == Some(&g))
                    .count()
                    > 1 =>
            {
                g
            }
            _ => name.clone(),
        };
        if !out.contains(&shown) {
            out.push(shown);
        }
    }
    out
}

impl HfLoadReport {
    /// One line: counts, and the fresh and ignored tensors (a block's module as one).
    pub fn summary(&self) -> String {
        let list = |names: &[String]| {
            if names.is_empty() {
                String::new()
            } else {
                format!(" ({})", grouped(names).join(", "))
            }
        };
        format!(
            "{} tensors loaded{}; {} left as initialised{}; {} in the file unused{}",
            self.loaded.len(),
            if self.tied_lm_head {
                ", lm_head tied to the embeddings"
            } else {
                ""
            },
            self.fresh.len(),
            list(&self.fresh),
            self.ignored.len(),
            list(&self.ignored),
        )
    }
}

/// Checks the `config.json` beside a weights file, when there is one, against `config`: the
/// fields the tensor shapes cannot tell (heads, key/value heads, RoPE base, norm epsilon).
fn check_sibling_config(file: &Path, config: &TransformerConfig) -> Result<(), ExportError> {
    let path = file.with_file_name(CONFIG_FILE);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(());
    };
    let json: Value = serde_json::from_str(&text).map_err(|e| ExportError::Format {
        path: path.clone(),
        message: format!("not JSON: {e}"),
    })?;
    let heads = json["num_attention_heads"].as_u64();
    let fields: [(&'static str, Option<f64>, f64); 4] = [
        (
            "num_attention_heads",
            heads.map(|h| h as f64),
            config.heads as f64,
        ),
        (
            "num_key_value_heads",
            json["num_key_value_heads"]
                .as_u64()
                .or(heads)
                .map(|h| h as f64),
            config.kv_heads as f64,
        ),
        ("rope_theta", json["rope_theta"].as_f64(), config.rope_theta),
        (
            "rms_norm_eps",
            json["rms_norm_eps"].as_f64(),
            config.norm_eps,
        ),
    ];
    for (field, file, model) in fields {
        if let Some(file) = file
            && (file - model).abs() > 1e-9 * model.abs()
        {
            return Err(ExportError::Config {
                path,
                field,
                file: file.to_string(),
                model: model.to_string(),
            });
        }
    }
    Ok(())
}

/// Loads the safetensors file `path` (Hugging Face Llama names, as [`export_model`] writes
/// them) into `model` (of `config`), and says what it did ([`HfLoadReport`]).
///
/// The rules:
/// - every dense parameter (embeddings, attention, norms, the FFN of each dense block) must be
///   in the file, else an error names every missing tensor; `lm_head.weight` may be missing
///   when the embeddings are there (tied weights: the head takes them);
/// - the product-key layers (`model.layers.N.memory.*`) and the value pool
///   (`model.memory_values.weight`) are loaded tensor by tensor where the file has them, and
///   stay as initialised where it does not;
/// - every tensor loaded must have the model's shape (PyTorch layout) and a float dtype (cast
///   to the model's), else an error names it with both shapes;
/// - a tensor for a block the model does not have is an error; other tensors without a place
///   (the FFN of a block that is a memory block here, buffers) are ignored and listed;
/// - a `config.json` beside the file, when there is one, must agree on the fields the shapes
///   cannot tell: `num_attention_heads`, `num_key_value_heads`, `rope_theta`,
///   `rms_norm_eps` (without one, a file of other heads but the same shapes loads, and its
///   attention is wrong: the RoPE row order depends on the head dimension).
pub fn load_hf<B: Backend>(
    mut model: Transformer<B>,
    config: &TransformerConfig,
    path: &Path,
) -> Result<(Transformer<B>, HfLoadReport), ExportError> {
    let expected = hf_tensors(&model, config.kind)?;
    let bytes = std::fs::read(path).map_err(io_error(path))?;
    let (_, metadata) = SafeTensors::read_metadata(&bytes).map_err(|e| ExportError::Format {
        path: path.to_path_buf(),
        message: format!("not a safetensors file: {e}"),
    })?;
    let file: BTreeMap<String, (Dtype, Vec<usize>)> = metadata
        .tensors()
        .into_iter()
        .map(|(name, info)| (name, (info.dtype, info.shape.clone())))
        .collect();
    let mut report = HfLoadReport::default();
    let mut missing = Vec::new();
    for tensor in &expected {
        match file.get(&tensor.name) {
            Some((dtype, shape)) => {
                let float = matches!(dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16 | Dtype::F64);
                if !float || *shape != tensor.shape {
                    return Err(ExportError::Tensor {
                        path: path.to_path_buf(),
                        name: tensor.name.clone(),
                        expected: format!("float {:?}", tensor.shape),
                        actual: format!("{dtype:?} {shape:?}"),
                    });
                }
                report.loaded.push(tensor.name.clone());
            }
            None if is_memory_path(&tensor.path) => report.fresh.push(tensor.name.clone()),
            None if tensor.path == "output.weight"
                && file.contains_key("model.embed_tokens.weight") =>
            {
                report.tied_lm_head = true;
            }
            None => missing.push(tensor.name.clone()),
        }
    }
    if !missing.is_empty() {
        return Err(ExportError::Missing {
            path: path.to_path_buf(),
            names: missing,
        });
    }
    for name in file.keys() {
        if expected.iter().any(|t| &t.name == name) {
            continue;
        }
        if let Some(block) = hf_block(name)
            && block >= config.layers
        {
            return Err(ExportError::ExtraBlock {
                path: path.to_path_buf(),
                name: name.clone(),
                block,
                layers: config.layers,
            });
        }
        report.ignored.push(name.clone());
    }
    check_sibling_config(path, config)?;
    let dtype = model.embedding.weight.val().dtype();
    let adapter = RopeRows {
        head_dim: config.head_dim(),
        to_hf: false,
        dtype,
    }
    .chain(PyTorchToBurnAdapter);
    let loaded: Vec<&HfTensor> = expected
        .iter()
        .filter(|t| report.loaded.contains(&t.name))
        .collect();
    let remapper = exact_remapper(loaded.iter().map(|t| (t.name.as_str(), t.path.as_str())));
    let mut store = SafetensorsStore::from_bytes(Some(bytes))
        .remap(remapper)
        .with_from_adapter(adapter)
        .filter(PathFilter::new().with_full_paths(loaded.iter().map(|t| t.path.clone())))
        .allow_partial(true);
    let result = model
        .load_from(&mut store)
        .map_err(|e| ExportError::Format {
            path: path.to_path_buf(),
            message: format!("cannot load the tensors: {e}"),
        })?;
    if result.applied.len() != loaded.len() || !result.errors.is_empty() {
        return Err(ExportError::Format {
            path: path.to_path_buf(),
            message: format!(
                "loaded {} of {} tensors: {:?}",
                result.applied.len(),
                loaded.len(),
                result.errors
            ),
        });
    }
    if report.tied_lm_head {
        let embedding = model.embedding.weight.val();
        let device = embedding.device();
        let data = embedding.transpose().into_data();
        model.output.weight = model.output.weight.map(|weight| {
            let require_grad = weight.is_require_grad();
            Tensor::from_data(data, &device).set_require_grad(require_grad)
        });
    }
    Ok((model, report))
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;
    use burn::module::Module;
    use burn::nn::RotaryEncodingConfig;
    use burn::tensor::Distribution;
    use model_zoo::{RopeTables, Size, preset};

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

    #[test]
    fn the_row_order_makes_rotate_half_rope_equal_to_ours() {
        // q [1, t, heads·d] rotated our way, then permuted, equals q permuted, then rotated
        // with rotate_half (the frequencies θ^(-2i/d) of pair i in both).
        type B = Flex;
        let device = Default::default();
        let (t, heads, d, theta) = (5, 3, 8, 500.0f64);
        let rope = RotaryEncodingConfig::new(16, d)
            .with_theta(theta as f32)
            .init::<B>(&device);
        let q = Tensor::<B, 3>::random([1, t, heads * d], Distribution::Default, &device);
        let ours = RopeTables::new(&rope, 0, t).apply(q.clone());
        let permute = |x: Vec<f32>| -> Vec<f32> {
            let mut out = vec![0.0; x.len()];
            for (row, chunk) in x.chunks(heads * d).enumerate() {
                for h in 0..heads {
                    for j in 0..d {
                        out[row * heads * d + h * d + j] = chunk[h * d + rope_row(j, d)];
                    }
                }
            }
            out
        };
        let vec = |x: Tensor<B, 3>| x.into_data().into_vec::<f32>().unwrap();
        let expected = permute(vec(ours));
        let q = permute(vec(q));
        let mut hf = vec![0.0f32; q.len()];
        for p in 0..t {
            for h in 0..heads {
                let x = &q[(p * heads + h) * d..][..d];
                for i in 0..d / 2 {
                    let angle = p as f64 * theta.powf(-2.0 * i as f64 / d as f64);
                    let (cos, sin) = (angle.cos() as f32, angle.sin() as f32);
                    let out = &mut hf[(p * heads + h) * d..][..d];
                    out[i] = x[i] * cos - x[i + d / 2] * sin;
                    out[i + d / 2] = x[i + d / 2] * cos + x[i] * sin;
                }
            }
        }
        for (a, b) in hf.iter().zip(&expected) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }

    /// Rewrites the safetensors file `path` keeping the tensors for which `keep` holds, and
    /// adding `extra` (name, shape) zero tensors.
    fn rewrite(path: &Path, keep: impl Fn(&str) -> bool, extra: &[(&str, Vec<usize>)]) {
        let bytes = std::fs::read(path).unwrap();
        let file = SafeTensors::deserialize(&bytes).unwrap();
        let zeros: Vec<(String, Vec<usize>, Vec<u8>)> = extra
            .iter()
            .map(|(name, shape)| {
                let len = shape.iter().product::<usize>() * 4;
                (name.to_string(), shape.clone(), vec![0u8; len])
            })
            .collect();
        let mut views: Vec<(String, safetensors::tensor::TensorView<'_>)> = file
            .tensors()
            .into_iter()
            .filter(|(name, _)| keep(name))
            .collect();
        for (name, shape, data) in &zeros {
            let view = safetensors::tensor::TensorView::new(Dtype::F32, shape.clone(), data);
            views.push((name.clone(), view.unwrap()));
        }
        let out = safetensors::serialize(views, None).unwrap();
        std::fs::write(path, out).unwrap();
    }

    #[test]
    fn the_import_ties_the_head_refuses_extra_blocks_and_checks_the_config() {
        let device = Default::default();
        let dir = std::env::temp_dir().join(format!("export-unit-{}", std::process::id()));
        let config = preset(ModelKind::Dense, Size::Tiny, None);
        let model = config.init::<Flex>(&device).unwrap();
        export_model(&model, &config, &dir).unwrap();
        let file = dir.join(MODEL_FILE);
        let fresh = || config.init::<Flex>(&device).unwrap();

        // Without lm_head.weight the head takes the embeddings.
        rewrite(&file, |name| name != "lm_head.weight", &[]);
        let (loaded, report) = load_hf(fresh(), &config, &file).unwrap();
        assert!(report.tied_lm_head);
        let head = loaded.output.weight.val().transpose().into_data();
        assert_eq!(head, model.embedding.weight.val().into_data());
        let norm = loaded.norm.gamma.val().into_data();
        assert_eq!(norm, model.norm.gamma.val().into_data());

        // Unused tensors are listed; a block the model does not have is an error.
        rewrite(&file, |_| true, &[("model.rotary_emb.inv_freq", vec![8])]);
        let (_, report) = load_hf(fresh(), &config, &file).unwrap();
        assert_eq!(
            report.ignored,
            vec!["model.rotary_emb.inv_freq".to_string()]
        );
        let extra = ("model.layers.4.input_layernorm.weight", vec![64]);
        rewrite(&file, |_| true, &[extra]);
        let err = load_hf(fresh(), &config, &file).unwrap_err().to_string();
        assert!(err.contains("block 4; this model has 4 blocks"), "{err}");

        // A config.json of other heads is refused (the shapes cannot tell).
        rewrite(&file, |name| !name.starts_with("model.layers.4."), &[]);
        let json = dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&json).unwrap();
        let text = text.replace("\"num_attention_heads\": 4", "\"num_attention_heads\": 2");
        std::fs::write(&json, text).unwrap();
        let err = load_hf(fresh(), &config, &file).unwrap_err().to_string();
        assert!(
            err.contains("num_attention_heads is 2, this model's is 4"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rows_go_to_hugging_face_order_and_back() {
        let rows: Vec<f32> = (0..16).map(|r| r as f32).collect();
        let data = TensorData::new(rows.clone(), [8, 2]);
        let hf = permute_rows(data, 4, true);
        // Head 0 (rows 0-3): HF order 0, 2, 1, 3 of ours; each row of 2 columns moves whole.
        assert_eq!(
            hf.to_vec::<f32>().unwrap(),
            vec![
                0., 1., 4., 5., 2., 3., 6., 7., 8., 9., 12., 13., 10., 11., 14., 15.
            ]
        );
        let back = permute_rows(hf, 4, false);
        assert_eq!(back.to_vec::<f32>().unwrap(), rows);
    }
}
