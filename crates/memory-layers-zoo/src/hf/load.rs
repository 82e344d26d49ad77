//! Import: a safetensors file under Hugging Face Llama names into a model, checked against
//! the model's tensors and the `config.json` beside it, and the report of what was loaded.

use std::collections::BTreeMap;
use std::path::Path;

use crate::{Transformer, TransformerConfig};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use burn_store::{
    ModuleAdapter, ModuleSnapshot, PathFilter, PyTorchToBurnAdapter, SafetensorsStore,
};
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;

use super::CONFIG_FILE;
use super::error::{HfError, io_error};
use super::names::{HfTensor, exact_remapper, hf_block, hf_tensors, is_memory_path};
use super::rope::RopeRows;

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
fn check_sibling_config(file: &Path, config: &TransformerConfig) -> Result<(), HfError> {
    let path = file.with_file_name(CONFIG_FILE);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(());
    };
    let json: Value = serde_json::from_str(&text).map_err(|e| HfError::Format {
        path: path.clone(),
        message: format!("not JSON: {e}"),
    })?;
    // Settings this architecture does not have: loading would give silently wrong outputs.
    let unsupported = [
        (
            "rope_scaling",
            json.get("rope_scaling").filter(|v| !v.is_null()),
            "none",
        ),
        (
            "hidden_act",
            json.get("hidden_act")
                .filter(|v| v.as_str() != Some("silu")),
            "silu",
        ),
    ];
    for (field, file, model) in unsupported {
        if let Some(file) = file {
            return Err(HfError::Config {
                path,
                field,
                file: file.to_string(),
                model: model.into(),
            });
        }
    }
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
            return Err(HfError::Config {
                path,
                field,
                file: file.to_string(),
                model: model.to_string(),
            });
        }
    }
    Ok(())
}

/// Loads the safetensors file `path` (Hugging Face Llama names, as [`export_model`](super::export_model) writes
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
) -> Result<(Transformer<B>, HfLoadReport), HfError> {
    let expected = hf_tensors(&model, config.kind)?;
    let bytes = std::fs::read(path).map_err(io_error(path))?;
    let (_, metadata) = SafeTensors::read_metadata(&bytes).map_err(|e| HfError::Format {
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
                    return Err(HfError::Tensor {
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
        return Err(HfError::Missing {
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
            return Err(HfError::ExtraBlock {
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
    let result = model.load_from(&mut store).map_err(|e| HfError::Format {
        path: path.to_path_buf(),
        message: format!("cannot load the tensors: {e}"),
    })?;
    if result.applied.len() != loaded.len() || !result.errors.is_empty() {
        return Err(HfError::Format {
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
    use crate::{ModelKind, Size, preset};
    use burn::backend::Flex;

    use super::*;
    use crate::hf::{MODEL_FILE, export_model};

    /// A config.json with Llama 3's RoPE scaling or another activation is refused by name.
    #[test]
    fn settings_this_model_lacks_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let file = dir.join(MODEL_FILE);
        let config = preset(ModelKind::Dense, Size::Tiny, None);
        for (json, field) in [
            (
                r#"{"rope_scaling": {"rope_type": "llama3", "factor": 8.0}}"#,
                "rope_scaling",
            ),
            (r#"{"hidden_act": "gelu"}"#, "hidden_act"),
        ] {
            std::fs::write(dir.join(CONFIG_FILE), json).unwrap();
            let err = check_sibling_config(&file, &config)
                .unwrap_err()
                .to_string();
            assert!(err.contains(field), "{err}");
        }
        std::fs::write(
            dir.join(CONFIG_FILE),
            r#"{"rope_scaling": null, "hidden_act": "silu"}"#,
        )
        .unwrap();
        check_sibling_config(&file, &config).unwrap();
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
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("export");
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
    }
}
