//! The memory stays in use: with the presets' retrieval settings (qk-norm, knn 16, values at
//! 10× the learning rate) a tiny Memory+ model keeps reading a large share of a 64² pool over
//! its validation set after training, where the earlier settings (no qk-norm, knn 4, values at
//! a third of the learning rate) collapse onto a few percent of it.

use burn::backend::{Autodiff, Flex};
use memory_layers_train::{TrainConfig, TrainOptions, train};
use memory_layers_zoo::{ModelKind, Size};

type B = Autodiff<Flex>;

/// Least mean percentage of the pool used per memory layer over the validation set.
const HEALTHY_PCT: f64 = 40.0;

/// Trains tiny Memory+ with `settings` applied and returns the mean used % of its layers.
fn used_pct(name: &str, settings: impl Fn(&mut TrainConfig)) -> f64 {
    let tmp = tempfile::Builder::new()
        .prefix(&format!("usage-{name}-"))
        .tempdir()
        .unwrap();
    let mut config = TrainConfig::new(ModelKind::MemoryPlus, Size::Tiny);
    config.model.product_keys.n_keys = 64;
    config.data.embedded_bytes = Some(300_000);
    config.optim.steps = 200;
    config.optim.warmup_steps = 10;
    config.run.out = tmp.path().join("run");
    (config.run.qa_limit, config.run.recall_limit) = (1, 1);
    (config.run.eval_every, config.run.checkpoint_every) = (0, 200);
    settings(&mut config);
    let summary = train::<B>(config, &Default::default(), TrainOptions::default()).unwrap();
    let layers = &summary.eval.memory_layers;
    layers.iter().map(|l| l.usage.used_pct).sum::<f64>() / layers.len() as f64
}

#[test]
fn the_preset_keeps_the_memory_in_use_where_the_old_settings_collapse() {
    let preset = used_pct("preset", |_| {});
    let old = used_pct("old", |c| {
        let keys = &mut c.model.product_keys;
        (keys.knn, keys.qk_norm) = (4, false);
        c.optim.value_lr = 1e-3;
    });
    eprintln!("used: preset {preset:.1}%, old settings {old:.1}%");
    assert!(preset >= HEALTHY_PCT, "preset settings use {preset:.1}%");
    assert!(
        old < HEALTHY_PCT,
        "the old settings use {old:.1}%: the test would not tell"
    );
}
