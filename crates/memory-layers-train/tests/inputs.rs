//! Every bad configuration is an error naming the field; every choice keeps its name.

use memory_layers_data::{DataError, TokenizerKind};
use memory_layers_train::{Decay, Precision, TrainConfig, TrainError, ValueOptimizer};
use memory_layers_zoo::{ModelKind, Size};
use serde::Serialize;
use serde::de::DeserializeOwned;

#[test]
fn config_rules() {
    let field = |edit: fn(&mut TrainConfig)| {
        let mut c = TrainConfig::new(ModelKind::MemoryPlus, Size::Tiny);
        edit(&mut c);
        match c.validate() {
            Err(TrainError::Config { field, .. }) => field,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(field(|c| c.optim.steps = 0), "optim.steps");
    assert_eq!(field(|c| c.optim.seq_len = 10_000), "optim.seq_len");
    assert_eq!(field(|c| c.optim.lr = 0.0), "optim.lr");
    assert_eq!(field(|c| c.optim.value_lr = f64::NAN), "optim.value_lr");
    assert_eq!(field(|c| c.optim.beta2 = 1.0), "optim.beta2");
    assert_eq!(field(|c| c.optim.min_lr_ratio = 2.0), "optim.min_lr_ratio");
    assert_eq!(field(|c| c.optim.grad_clip = -1.0), "optim.grad_clip");
    let mut c = TrainConfig::new(ModelKind::MemoryPlus, Size::Tiny);
    c.model.product_keys.knn = 99;
    assert!(c.validate().unwrap_err().to_string().contains("knn = 99"));

    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let broken = d.join("broken.toml");
    std::fs::write(&broken, b"[model]\ndim = \"wide\"\n").unwrap();
    let err = TrainConfig::load(&broken).unwrap_err();
    assert!(
        matches!(&err, TrainError::Data(DataError::Input { .. }))
            && err.to_string().contains("invalid config"),
        "{err}"
    );
    let c = TrainConfig::new(ModelKind::Moe, Size::Small);
    c.save(&d.join("roundtrip.toml")).unwrap();
    assert_eq!(TrainConfig::load(&d.join("roundtrip.toml")).unwrap(), c);
}

#[test]
fn schedule_warms_up_then_decays_to_the_floor() {
    let mut c = TrainConfig::new(ModelKind::Dense, Size::Tiny);
    c.optim.steps = 100;
    c.optim.warmup_steps = 10;
    c.optim.min_lr_ratio = 0.1;
    assert!((c.lr_multiplier(0) - 0.1).abs() < 1e-12);
    assert!((c.lr_multiplier(9) - 1.0).abs() < 1e-12);
    assert!((c.lr_multiplier(10) - 1.0).abs() < 1e-12);
    assert!((c.lr_multiplier(99) - 0.1).abs() < 1e-3);
    c.optim.decay = memory_layers_train::Decay::Linear;
    assert!((c.lr_multiplier(55) - 0.55).abs() < 1e-12);
}

/// Every choice keeps its command-line name and its `config.toml` name.
#[test]
fn choices_keep_their_names() {
    fn check<T>(expected: &[(T, &str, &str)])
    where
        T: std::str::FromStr<Err: std::fmt::Debug>
            + std::fmt::Display
            + Serialize
            + DeserializeOwned
            + PartialEq
            + std::fmt::Debug,
    {
        for (value, cli, toml) in expected {
            assert_eq!(value.to_string(), *cli);
            assert_eq!(&cli.parse::<T>().unwrap(), value);
            let quoted = format!("\"{toml}\"");
            assert_eq!(serde_json::to_string(value).unwrap(), quoted);
            assert_eq!(&serde_json::from_str::<T>(&quoted).unwrap(), value);
        }
    }
    check(&[
        (ValueOptimizer::DenseAdamW, "dense-adamw", "dense-adamw"),
        (ValueOptimizer::SparseAdamW, "sparse-adamw", "sparse-adamw"),
        (
            ValueOptimizer::RowwiseAdagrad,
            "rowwise-adagrad",
            "rowwise-adagrad",
        ),
    ]);
    assert_eq!(ValueOptimizer::DenseAdamW.to_string(), "dense-adamw");
    // config.toml files written before the names were unified still load.
    for (old, value) in [
        ("dense-adam-w", ValueOptimizer::DenseAdamW),
        ("sparse-adam-w", ValueOptimizer::SparseAdamW),
    ] {
        let parsed: ValueOptimizer = serde_json::from_str(&format!("\"{old}\"")).unwrap();
        assert_eq!(parsed, value);
    }
    check(&[
        (Precision::F32, "f32", "f32"),
        (Precision::Bf16, "bf16", "bf16"),
    ]);
    check(&[
        (TokenizerKind::Byte, "byte", "byte"),
        (TokenizerKind::Bpe, "bpe", "bpe"),
    ]);
    check(&[
        (Decay::Cosine, "cosine", "cosine"),
        (Decay::Linear, "linear", "linear"),
    ]);
}
