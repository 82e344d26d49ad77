//! Memory layers: shared pool gradients, shapes, statistics and every configuration error.

use burn::backend::{Autodiff, Flex};
use burn::tensor::{Distribution, Tensor};
use memory_layers_keys::KeysError;
use memory_layers_nn::{
    MemoryError, MemoryLayerConfig, PeerConfig, ProductKeysConfig, UsageStats, ValueTable,
    ValueTableConfig,
};
use memory_layers_test_support::{host, host_ints};
use memory_layers_values::ValueError;

type B = Flex;
type A = Autodiff<Flex>;

fn random<Bk: burn::tensor::backend::Backend, const D: usize>(shape: [usize; D]) -> Tensor<Bk, D> {
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), &Default::default())
}

#[test]
fn shared_pool_gradient_is_the_sum_of_every_layers() {
    let device = Default::default();
    let config = MemoryLayerConfig::new(ProductKeysConfig::new(12, 2, 6, 4, 5)).with_swilu(true);
    let pool: ValueTable<A> = config.init_values(&device).unwrap();
    let layers: Vec<_> = (0..3).map(|_| config.init::<A>(&device).unwrap()).collect();
    let inputs: Vec<Tensor<A, 3>> = (0..3).map(|_| random([2, 4, 12])).collect();
    let loss_of = |l: usize| {
        let out = layers[l].forward(inputs[l].clone(), &pool).unwrap().output;
        (out.clone() * out).sum()
    };
    let pool_grad = |loss: Tensor<A, 1>| pool.weight.val().grad(&loss.backward()).unwrap();

    let together = pool_grad(loss_of(0) + loss_of(1) + loss_of(2));
    let separate: Vec<_> = (0..3).map(|l| pool_grad(loss_of(l))).collect();
    for grad in &separate {
        assert!(
            grad.clone().abs().sum().into_scalar() > 0.0,
            "every layer reaches the pool"
        );
    }
    let sum = separate.into_iter().reduce(|a, b| a + b).unwrap();
    for (a, b) in host(together).into_iter().zip(host(sum)) {
        assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
    }
}

#[test]
fn output_keeps_the_input_shape_and_weights_sum_to_heads() {
    let device = Default::default();
    for config in [
        MemoryLayerConfig::memory(16, 6).with_knn(3),
        MemoryLayerConfig::memory_plus(16, 6)
            .with_knn(3)
            .with_gated(true),
        MemoryLayerConfig::new(ProductKeysConfig::new(16, 3, 4, 2, 4)).with_v_dim(Some(24)),
    ] {
        let memory = config.init_with_values::<B>(&device).unwrap();
        let out = memory.forward(random::<B, 3>([2, 5, 16])).unwrap();
        assert_eq!(out.output.dims(), [2, 5, 16]);
        assert_eq!(
            out.retrieval.indices.dims(),
            [10 * config.keys.heads, config.keys.knn]
        );
        let weights = burn::tensor::activation::softmax(out.retrieval.scores, 1)
            .reshape([10, config.keys.heads * config.keys.knn])
            .sum_dim(1);
        for w in host(weights) {
            assert!((w - config.keys.heads as f32).abs() < 1e-5);
        }
    }
    let peer = PeerConfig::new(ProductKeysConfig::new(16, 2, 8, 3, 5))
        .init::<B>(&device)
        .unwrap();
    assert_eq!(
        peer.forward(random::<B, 3>([3, 2, 16]))
            .unwrap()
            .output
            .dims(),
        [3, 2, 16]
    );
}

#[test]
fn memory_plus_init_follows_the_paper() {
    let device = Default::default();
    let config = MemoryLayerConfig::memory_plus(256, 4)
        .with_knn(2)
        .with_gated(true);
    let layer = config.init::<B>(&device).unwrap();
    let std = |t: Tensor<B, 2>| t.var(0).mean().sqrt().into_scalar();
    for linear in [&layer.swilu_projection, &layer.value_proj] {
        let linear = linear.as_ref().unwrap();
        assert!((std(linear.weight.val()) - 1.0 / 16.0).abs() < 0.004);
        assert_eq!(
            linear
                .bias
                .as_ref()
                .unwrap()
                .val()
                .abs()
                .sum()
                .into_scalar(),
            0.0
        );
    }
    assert!(layer.gating.is_some());
    assert_eq!(config.keys.k_dim, 128, "key dim = half the model dim");
    assert!(
        MemoryLayerConfig::memory(256, 4)
            .init::<B>(&device)
            .unwrap()
            .value_proj
            .is_none()
    );
}

#[test]
fn usage_statistics_count_what_was_selected() {
    let device = Default::default();
    let config = MemoryLayerConfig::new(ProductKeysConfig::new(8, 1, 4, 2, 3));
    let memory = config.init_with_values::<B>(&device).unwrap();
    let mut stats = UsageStats::new(9);
    assert_eq!(stats.summary().batches, 0);
    let out = memory.forward(random::<B, 2>([5, 8])).unwrap();
    stats.record(&out).unwrap();
    let indices: std::collections::BTreeSet<i64> = host_ints(out.retrieval.indices.clone())
        .into_iter()
        .collect();
    let summary = stats.summary();
    assert!((summary.used_pct - 100.0 * indices.len() as f64 / 9.0).abs() < 1e-9);
    assert!(summary.kl_uniform >= 0.0 && summary.kl_uniform <= 9f64.ln() + 1e-9);
    assert!(summary.kl_uniform_weighted >= 0.0);
    let best: Vec<f32> = out
        .retrieval
        .scores
        .clone()
        .slice([0..5, 0..1])
        .into_data()
        .to_vec()
        .unwrap();
    let mean_best = best.iter().map(|&s| s as f64).sum::<f64>() / 5.0;
    assert!((summary.top1_score - mean_best).abs() < 1e-6);
    assert!(summary.output_std > 0.0);
    stats.record(&out).unwrap();
    assert_eq!(stats.summary().batches, 2);
    assert!(
        (stats.summary().used_pct - summary.used_pct).abs() < 1e-9,
        "same batch twice"
    );
    stats.reset();
    assert_eq!(stats.summary().used_pct, 0.0);

    // Two distinct indices per row: at least one is past a memory of one value.
    let mut small = UsageStats::new(1);
    assert!(matches!(
        small.record(&out),
        Err(ValueError::IndexOutOfRange { rows: 1, .. })
    ));
    assert_eq!(small.summary().batches, 0);
}

#[test]
fn every_invalid_config_is_an_error_naming_the_field() {
    let device = Default::default();
    // Every field of ProductKeysConfig has its case in memory-layers-keys' retrieval tests; here,
    // one of them passed through as the layer's error.
    let too_many = MemoryLayerConfig::new(ProductKeysConfig::new(8, 1, 4, 3, 2));
    match too_many.init::<B>(&device) {
        Err(MemoryError::Keys(KeysError::InvalidConfig { field, .. })) => assert_eq!(field, "knn"),
        other => panic!("{too_many:?}: {other:?}"),
    }
    let zero_v = MemoryLayerConfig::new(ProductKeysConfig::new(8, 1, 4, 1, 2)).with_v_dim(Some(0));
    assert!(matches!(
        zero_v.init::<B>(&device),
        Err(MemoryError::InvalidConfig { field: "v_dim", .. })
    ));
    assert!(matches!(
        PeerConfig::new(ProductKeysConfig::new(8, 1, 4, 9, 2)).init::<B>(&device),
        Err(MemoryError::Keys(KeysError::InvalidConfig {
            field: "knn",
            ..
        }))
    ));
    let message = MemoryLayerConfig::new(ProductKeysConfig::new(8, 1, 4, 3, 2))
        .validate()
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("knn = 3") && message.contains("1..=n_keys"),
        "{message}"
    );
}

#[test]
fn mismatched_inputs_and_stores_are_errors() {
    let device = Default::default();
    let config = MemoryLayerConfig::new(ProductKeysConfig::new(8, 1, 4, 2, 3));
    let layer = config.init::<B>(&device).unwrap();
    let pool = config.init_values::<B>(&device).unwrap();
    assert_eq!(
        layer.forward(random::<B, 2>([2, 7]), &pool).unwrap_err(),
        MemoryError::InputDim {
            expected: 8,
            actual: 7
        }
    );
    let wrong_rows = ValueTableConfig::new(16, 8).init::<B>(&device).unwrap();
    assert!(matches!(
        layer.forward(random::<B, 2>([2, 8]), &wrong_rows),
        Err(MemoryError::StoreShape {
            rows: 16,
            expected_rows: 9,
            ..
        })
    ));
    let shard = ValueTableConfig::new(9, 8)
        .with_column_width(Some(4))
        .init::<B>(&device)
        .unwrap();
    assert!(matches!(
        layer.forward(random::<B, 2>([2, 8]), &shard),
        Err(MemoryError::StoreShape {
            width: 4,
            expected_width: 8,
            ..
        })
    ));
    let out = layer
        .forward(Tensor::<B, 2>::zeros([0, 8], &device), &pool)
        .unwrap();
    assert_eq!(out.output.dims(), [0, 8]);
}
