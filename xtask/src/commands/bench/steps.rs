//! Whole train steps and finetuning steps, timed at the contract's sizes and at the sizes the
//! experiment suites train.

use anyhow::Context;
use memory_layers_data::CompactFacts;
use memory_layers_experiments::{Base, Suite as ExperimentSuite, default_run};
use memory_layers_train::{
    Background, DEFAULT_TOP_T, Stepper, TrainBackend, TrainConfig, ValueOptimizer,
};
use memory_layers_zoo::{ModelKind, Size, account, preset};

use super::{result, time};
use crate::bench_result::BenchResult;

/// Bytes available for new allocations (Linux), if known.
fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// A named train-step case.
type TrainCase = (String, TrainConfig);

/// Train steps at `size`: dense and Memory+, and at `small` Memory+ with pools of 2^16, 2^20
/// and 2^22 values.
pub(super) fn size_cases(size: Size) -> Vec<TrainCase> {
    let case = |kind, n_keys| {
        let mut config = TrainConfig::new(kind, size);
        config.model = preset(kind, size, n_keys);
        config
    };
    let mut cases = vec![
        (
            format!("train_step_dense_{size}"),
            case(ModelKind::Dense, None),
        ),
        (
            format!("train_step_memory_plus_{size}"),
            case(ModelKind::MemoryPlus, None),
        ),
    ];
    if size == Size::Small {
        for (bits, n_keys) in [(16, 256), (20, 1024), (22, 2048)] {
            let name = format!("train_step_memory_plus_small_values_{bits}");
            cases.push((name, case(ModelKind::MemoryPlus, Some(n_keys))));
        }
    }
    cases
}

/// The steps the experiment suites take: the base of `models`, `memory-size` and `ablations`
/// (what `train` runs without a size: dim 64, 6 blocks, 128² values, 8 × 64 tokens), and the
/// capacity suite's narrowest dense model and its Memory+ with 128² values (dim 16, 32 × 64
/// tokens, a word vocabulary).
pub(super) fn experiment_cases() -> anyhow::Result<Vec<TrainCase>> {
    let mut cases = vec![
        (
            "train_step_dense_experiments".to_string(),
            default_run(ModelKind::Dense),
        ),
        (
            "train_step_memory_plus_experiments".to_string(),
            default_run(ModelKind::MemoryPlus),
        ),
    ];
    let capacity = ExperimentSuite::Capacity.runs(&Base::new(1, 1))?;
    for (name, label) in [
        ("train_step_dense_capacity", "dense-16"),
        ("train_step_memory_plus_capacity", "memory-plus-16-128sq"),
    ] {
        let spec = capacity
            .iter()
            .find(|s| s.label == label)
            .with_context(|| format!("the capacity suite has no {label}"))?;
        let mut config = spec.config.clone();
        let compact = config
            .data
            .compact_facts
            .clone()
            .context("a compact corpus")?;
        config.model.vocab_size = CompactFacts::generate(&compact)?.tokenizer.vocab_size();
        cases.push((name.to_string(), config));
    }
    Ok(cases)
}

/// The names `--only` keeps: those containing one of its patterns (all without one; an empty
/// pattern, as from a trailing comma, is none).
#[derive(Clone, Copy)]
pub(super) struct Only<'a>(pub &'a [String]);

impl Only<'_> {
    fn keeps(self, name: &str) -> bool {
        let mut patterns = self.0.iter().filter(|p| !p.is_empty()).peekable();
        patterns.peek().is_none() || patterns.any(|p| name.contains(p.as_str()))
    }
}

/// Times one optimizer step of every case that `only` keeps.
pub(super) fn train_cases<B: TrainBackend>(
    device: &B::Device,
    mut cases: Vec<TrainCase>,
    only: Only,
) -> anyhow::Result<Vec<BenchResult>> {
    let mut out = Vec::new();
    cases.retain(|(name, _)| only.keeps(name));
    for (name, config) in cases {
        let kind = config.model.kind;
        let (batch, seq) = (config.optim.batch_size, config.optim.seq_len);
        let values = config.model.product_keys.n_keys.pow(2) * config.model.dim;
        let value_optimizer = config.optim.value_optimizer;
        let (m, keys, o) = (&config.model, &config.model.product_keys, &config.optim);
        // Everything tools/bench/torch_train.py builds the same model from.
        let case_config = serde_json::json!({
            "model": kind, "dim": m.dim, "layers": m.layers, "heads": m.heads,
            "kv_heads": m.kv_heads, "ffn_hidden": m.ffn_hidden, "vocab": m.vocab_size,
            "rope_theta": m.rope_theta, "batch": batch, "seq_len": seq, "lr": o.lr,
            "value_lr": o.value_lr,
            "memory_layers": m.product_key_layers(),
            "memory": {"heads": keys.heads, "k_dim": keys.k_dim, "knn": keys.knn,
                       "n_keys": keys.n_keys, "qk_norm": keys.qk_norm},
            "values": if kind == ModelKind::Dense { 0 } else { keys.n_keys.pow(2) },
            "value_optimizer": value_optimizer.to_string(),
            "train_flops_per_token": 3 * account(m).flops_per_token,
        });
        // Values, two moments and a temporary (initialisation); dense AdamW adds a gradient.
        let copies = if value_optimizer == ValueOptimizer::DenseAdamW {
            5
        } else {
            4
        };
        let needed = copies * 4 * values as u64;
        if kind != ModelKind::Dense && available_memory().is_some_and(|m| needed > m * 8 / 10) {
            eprintln!(
                "{name:<40} skipped: needs ~{:.1} GB with {value_optimizer}",
                needed as f64 / 1e9
            );
            out.push(BenchResult {
                name,
                config: case_config,
                median_s: None,
                throughput: None,
                unit: "tokens/s".into(),
            });
            continue;
        }
        let model = config.model.init::<B>(device)?;
        let stepper = Stepper::new(model, &config.optim);
        out.push(step_result::<B>(
            &name,
            case_config,
            &config,
            stepper,
            device,
        ));
    }
    Ok(out)
}

/// Times one step of `stepper` on a batch of `config`'s shape.
fn step_result<B: TrainBackend>(
    name: &str,
    case_config: serde_json::Value,
    config: &TrainConfig,
    mut stepper: Stepper<B>,
    device: &B::Device,
) -> BenchResult {
    let (batch, seq) = (config.optim.batch_size, config.optim.seq_len);
    let vocab = config.model.vocab_size as u32;
    let tokens: Vec<u32> = (0..batch * (seq + 1))
        .map(|i| (i as u32 * 2654435761) % vocab)
        .collect();
    let batches = vec![tokens];
    let seconds = time::<B>(device, || {
        stepper.step(&batches, 1.0, None, device).expect("step");
    });
    result(name, case_config, seconds, (batch * seq) as f64, "tokens/s")
}

/// Finetuning steps on the experiments' Memory+ base: the frozen model's forward-backward with
/// every read value row updated by SGD (method `memory`), and sparse memory finetuning's step
/// (the same plus the TF-IDF ranking; only the top 500 rows updated), against background
/// counts drawn at random.
pub(super) fn finetune_cases<B: TrainBackend>(
    device: &B::Device,
    only: Only,
) -> anyhow::Result<Vec<BenchResult>> {
    let mut config = default_run(ModelKind::MemoryPlus);
    config.optim.value_optimizer = ValueOptimizer::Sgd;
    config.optim.value_lr = 1.0;
    let values = config.model.product_keys.n_keys.pow(2);
    let background = Background {
        batches: 1000,
        sequences: 1,
        seq_len: config.optim.seq_len,
        values,
        df: (0..values as u32)
            .map(|i| i.wrapping_mul(2654435761) % 1001)
            .collect(),
    };
    let mut out = Vec::new();
    for (name, sparse) in [
        ("finetune_step_memory_experiments", None),
        (
            "finetune_step_sparse_memory_experiments",
            Some((background, DEFAULT_TOP_T)),
        ),
    ] {
        if !only.keeps(name) {
            continue;
        }
        let case_config = serde_json::json!({
            "model": ModelKind::MemoryPlus, "values": values, "value_optimizer": "sgd",
            "top_t": sparse.as_ref().map(|(_, t)| t),
            "batch": config.optim.batch_size, "seq_len": config.optim.seq_len,
        });
        let model = config.model.init::<B>(device)?;
        let stepper = Stepper::values_only(model, &config.optim, sparse);
        out.push(step_result::<B>(
            name,
            case_config,
            &config,
            stepper,
            device,
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::Only;

    #[test]
    fn only_keeps_names_containing_one_of_its_patterns() {
        let patterns = [
            "tiny".to_string(),
            "_experiments".to_string(),
            String::new(),
        ];
        let only = Only(&patterns);
        assert!(only.keeps("train_step_dense_tiny"));
        assert!(only.keeps("finetune_step_memory_experiments"));
        assert!(!only.keeps("train_step_dense_small"));
        assert!(Only(&[]).keeps("train_step_dense_small"));
        assert!(Only(&[String::new()]).keeps("train_step_dense_small"));
    }
}
