//! `export` writes a trained run under Hugging Face Llama names, and the file loads back into
//! the same logits; `train --init-from` starts a memory model from an exported dense one.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;

use burn::backend::Flex;
use burn::tensor::Tensor;
use common::{fails_with, fresh, memory_layers, succeeds};
use memory_layers_train::{RunDir, open_run};
use memory_layers_zoo::hf::{load_hf, logits};
use safetensors::{Dtype, SafeTensors};

/// The command line of `train --size SIZE --model MODEL` for `steps` steps on 100 kB of the
/// plays into `out`, with `extra` flags.
fn train_args<'a>(
    out: &'a Path,
    size: &'a str,
    model: &'a str,
    steps: &'a str,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let flags = [
        &["--steps", steps, "--set", "data.embedded_bytes=100000"][..],
        extra,
    ]
    .concat();
    common::train_args(size, model, &flags, out)
}

/// [`train_args`] of a tiny model; panics unless it trains.
fn train(out: &Path, model: &str, steps: u32, extra: &[&str]) {
    let steps = steps.to_string();
    succeeds(
        memory_layers()
            .args(train_args(out, "tiny", model, &steps, extra))
            .stdout(Stdio::null()),
    );
}

/// `export --checkpoint RUN --out DIR`.
fn export_args<'a>(run: &'a Path, out: &'a Path) -> [&'a str; 5] {
    let [run, out] = [run, out].map(|p| p.to_str().unwrap());
    ["export", "--checkpoint", run, "--out", out]
}

/// [`export_args`]; panics unless it exports.
fn export(run: &Path, out: &Path) {
    succeeds(
        memory_layers()
            .args(export_args(run, out))
            .stdout(Stdio::null()),
    );
}

/// Every tensor of a safetensors file: name → (shape, f32 values; empty when not f32).
fn read(path: &Path) -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    file.tensors()
        .into_iter()
        .map(|(name, view)| {
            let values = match view.dtype() {
                Dtype::F32 => view
                    .data()
                    .chunks(4)
                    .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                    .collect(),
                _ => Vec::new(),
            };
            (name, (view.shape().to_vec(), values))
        })
        .collect()
}

/// The token ids of check.safetensors.
fn check_tokens(path: &Path) -> Vec<u32> {
    let bytes = std::fs::read(path).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let tokens = file.tensor("tokens").unwrap();
    assert_eq!(tokens.dtype(), Dtype::I64);
    tokens
        .data()
        .chunks(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as u32)
        .collect()
}

/// The names and shapes a tiny model exports (dim 64, 4 blocks, 4 heads over 2 key/value
/// heads, FFN 256, 256 tokens), with memory layers (16² values, 4 heads, k_dim 32) in
/// `memory`.
fn tiny_names(memory: &[usize]) -> BTreeMap<String, Vec<usize>> {
    let mut names = BTreeMap::new();
    let mut add = |name: String, shape: &[usize]| {
        names.insert(name, shape.to_vec());
    };
    add("model.embed_tokens.weight".into(), &[256, 64]);
    add("model.norm.weight".into(), &[64]);
    add("lm_head.weight".into(), &[256, 64]);
    for n in 0..4 {
        let p = format!("model.layers.{n}");
        add(format!("{p}.input_layernorm.weight"), &[64]);
        add(format!("{p}.post_attention_layernorm.weight"), &[64]);
        add(format!("{p}.self_attn.q_proj.weight"), &[64, 64]);
        add(format!("{p}.self_attn.k_proj.weight"), &[32, 64]);
        add(format!("{p}.self_attn.v_proj.weight"), &[32, 64]);
        add(format!("{p}.self_attn.o_proj.weight"), &[64, 64]);
        if memory.contains(&n) {
            add(format!("{p}.memory.keys"), &[128, 16]);
            add(
                format!("{p}.memory.query_proj.query_mlps.0.weight"),
                &[128, 64],
            );
            add(format!("{p}.memory.query_proj.query_mlps.0.bias"), &[128]);
            add(format!("{p}.memory.swilu_projection.weight"), &[64, 64]);
            add(format!("{p}.memory.swilu_projection.bias"), &[64]);
            add(format!("{p}.memory.value_proj.weight"), &[64, 64]);
            add(format!("{p}.memory.value_proj.bias"), &[64]);
        } else {
            add(format!("{p}.mlp.gate_proj.weight"), &[256, 64]);
            add(format!("{p}.mlp.up_proj.weight"), &[256, 64]);
            add(format!("{p}.mlp.down_proj.weight"), &[64, 256]);
        }
    }
    if !memory.is_empty() {
        add("model.memory_values.weight".into(), &[256, 64]);
    }
    names
}

/// `[rows, cols]` values of a 2-D tensor.
fn values(t: Tensor<Flex, 2>) -> Vec<f32> {
    t.into_data().into_vec::<f32>().unwrap()
}

#[test]
fn an_exported_run_has_llama_names_and_loads_back_to_the_same_logits() {
    for (model, memory) in [("dense", vec![]), ("memory-plus", vec![1, 2, 3])] {
        let run = fresh(&format!("export-{model}"));
        let out = fresh(&format!("export-{model}-hf"));
        train(&run, model, 2, &[]);
        export(&run, &out);
        let file = read(&out.join("model.safetensors"));
        let shapes: BTreeMap<String, Vec<usize>> = file
            .iter()
            .map(|(name, (shape, _))| (name.clone(), shape.clone()))
            .collect();
        assert_eq!(shapes, tiny_names(&memory), "{model}");
        let config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap())
                .unwrap();
        assert_eq!(config["model_type"], "llama");
        assert_eq!(config["num_key_value_heads"], 2);
        assert_eq!(config["rope_theta"], 10000.0);
        assert_eq!(config["intermediate_size"], 256);
        match memory.as_slice() {
            [] => assert!(config["memory_layers"].is_null()),
            _ => {
                let m = &config["memory_layers"];
                assert_eq!(m["kind"], "memory-plus");
                assert_eq!(m["layers"], serde_json::json!(memory));
                assert_eq!(
                    (m["n_keys"].clone(), m["knn"].clone()),
                    (16.into(), 16.into())
                );
                assert_eq!(m["qk_norm"], true);
                assert_eq!(m["shared_values"], "model.memory_values.weight");
            }
        }

        let device = Default::default();
        let opened = open_run::<Flex>(&run, &device).unwrap();
        let trained = &opened.model;
        // Trained: the final norm has left its initial ones.
        assert!(file["model.norm.weight"].1.iter().any(|&g| g != 1.0));
        // Linear weights are [out, in]; q_proj's rows in each head of 16 are in
        // rotate_half's order: row j is our row 2j below 8, 2(j - 8) + 1 above.
        let wq = values(trained.blocks[0].attention.wq.weight.val().transpose());
        let q_file = &file["model.layers.0.self_attn.q_proj.weight"].1;
        for head in 0..4 {
            for j in 0..16 {
                let ours = head * 16 + if j < 8 { 2 * j } else { 2 * (j - 8) + 1 };
                let hf = head * 16 + j;
                assert!(q_file[hf * 64..][..64] == wq[ours * 64..][..64], "row {hf}");
            }
        }
        let wo = values(trained.blocks[0].attention.wo.weight.val().transpose());
        assert!(
            file["model.layers.0.self_attn.o_proj.weight"].1 == wo,
            "o_proj"
        );

        // The reference logits are this model's, and the file loads back to them exactly.
        let tokens = check_tokens(&out.join("check.safetensors"));
        assert!(tokens.len() >= 32, "{}", tokens.len());
        let expected = logits(trained, &tokens, &device).unwrap();
        let check = read(&out.join("check.safetensors"));
        let worst = check["logits"]
            .1
            .iter()
            .zip(&expected)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst <= 1e-6, "{model}: check logits off by {worst}");
        let config = &opened.config.model;
        let other = config.init::<Flex>(&device).unwrap();
        assert!(logits(&other, &tokens, &device).unwrap() != expected);
        let (imported, report) = load_hf(other, config, &out.join("model.safetensors")).unwrap();
        assert_eq!(report.loaded.len(), file.len(), "{model}");
        assert!(report.fresh.is_empty() && report.ignored.is_empty());
        let back = logits(&imported, &tokens, &device).unwrap();
        let changed = back.iter().zip(&expected).filter(|(a, b)| a != b).count();
        assert_eq!(
            changed, 0,
            "{model}: import(export(model)) changed {changed} logits"
        );
    }
}

#[test]
fn a_memory_model_starts_from_an_exported_dense_one() {
    let dense = fresh("retrofit-dense");
    let hf = fresh("retrofit-dense-hf");
    train(&dense, "dense", 2, &[]);
    export(&dense, &hf);
    let weights = hf.join("model.safetensors");
    let weights_arg = weights.to_str().unwrap();

    // One step at a learning rate too small to move an f32 weight: the run's checkpoint
    // holds the model as --init-from made it.
    let plus = fresh("retrofit-plus");
    train(
        &plus,
        "memory-plus",
        1,
        &["--init-from", weights_arg, "--lr", "1e-30"],
    );
    let config = std::fs::read_to_string(RunDir::new(&plus).config()).unwrap();
    assert!(config.contains("init_from = "), "{config}");
    let plus_hf = fresh("retrofit-plus-hf");
    export(&plus, &plus_hf);
    let before = read(&weights);
    let after = read(&plus_hf.join("model.safetensors"));
    assert_eq!(
        after.keys().cloned().collect::<Vec<_>>(),
        tiny_names(&[1, 2, 3]).into_keys().collect::<Vec<_>>()
    );
    for (name, tensor) in &after {
        if name.contains(".memory.") || name.starts_with("model.memory_values") {
            assert!(!before.contains_key(name), "{name}");
        } else {
            assert!(tensor == &before[name], "{name} is not the exported tensor");
        }
    }
    // The memory layers are the seed's fresh ones: the same as without --init-from.
    let plain_run = fresh("retrofit-plain");
    train(&plain_run, "memory-plus", 1, &["--lr", "1e-30"]);
    let plain_hf = fresh("retrofit-plain-hf");
    export(&plain_run, &plain_hf);
    let plain = read(&plain_hf.join("model.safetensors"));
    for name in ["model.memory_values.weight", "model.layers.2.memory.keys"] {
        assert!(after[name] == plain[name], "{name} is not the seed's");
    }
    let name = "model.layers.0.mlp.up_proj.weight";
    assert!(after[name] != plain[name], "{name} is the seed's");

    // A resumed run takes its weights from its checkpoint, not from init_from.
    let moved = hf.join("moved.safetensors");
    std::fs::rename(&weights, &moved).unwrap();
    succeeds(
        memory_layers()
            .args(["train", "--resume", "--steps", "2", "--out"])
            .arg(&plus)
            .stdout(Stdio::null()),
    );
    std::fs::rename(&moved, &weights).unwrap();

    // Another size: the first tensor of another shape is named with both shapes.
    let small = fresh("retrofit-small");
    let stderr = fails_with(
        &train_args(
            &small,
            "small",
            "memory-plus",
            "1",
            &["--tokenizer", "byte", "--init-from", weights_arg],
        ),
        "model.embed_tokens.weight",
    );
    assert!(
        stderr.contains("[256, 64]") && stderr.contains("[256, 256]"),
        "{stderr}"
    );
    // A tensor missing from the file is named.
    let mut tensors = read(&weights);
    tensors.remove("model.layers.0.mlp.up_proj.weight");
    let cut = hf.join("cut.safetensors");
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|(name, (shape, values))| {
            let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            (name, shape, data)
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = bytes
        .iter()
        .map(|(name, shape, data)| {
            let view = safetensors::tensor::TensorView::new(Dtype::F32, shape.clone(), data);
            (name.clone(), view.unwrap())
        })
        .collect();
    std::fs::write(&cut, safetensors::serialize(views, None).unwrap()).unwrap();
    let dense2 = fresh("retrofit-missing");
    fails_with(
        &train_args(
            &dense2,
            "tiny",
            "dense",
            "1",
            &["--init-from", cut.to_str().unwrap()],
        ),
        "missing tensor model.layers.0.mlp.up_proj.weight",
    );
}

#[test]
fn moe_runs_are_not_exported() {
    let run = fresh("export-moe");
    train(&run, "moe", 1, &[]);
    let out = fresh("export-moe-hf");
    fails_with(&export_args(&run, &out), "moe models cannot be exported");
}
