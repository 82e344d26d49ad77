//! Product-key retrieval against the brute-force search over all `n_keys²` keys.

use burn::backend::Flex;
use burn::tensor::{Distribution, Tensor};
use memory_layers_keys::reference::{BruteForce, TopK, compare_topk};
use memory_layers_keys::{KeysError, ProductKeysConfig, QK_NORM_EPS, retrieve};
use memory_layers_test_support::host;
use memory_layers_test_support::random_data as random;
use proptest::prelude::*;

type B = Flex;

/// Checks `retrieve` on the given queries and sub-keys against the brute force.
fn check(
    queries: Tensor<B, 3>,
    sub_keys: Tensor<B, 4>,
    knn: usize,
    tol: f64,
) -> Result<(), String> {
    let brute = BruteForce::new(queries.clone(), sub_keys.clone());
    let retrieval = retrieve(queries, sub_keys, knn);
    let actual = TopK::from_retrieval(&retrieval);
    let expected = brute.topk(knn);
    compare_topk(&actual, &expected, |row, i| Some(brute.score(row, i)), tol)
        .map_err(|m| m.to_string())
}

fn case() -> impl Strategy<Value = (usize, usize, usize, usize, usize, u64)> {
    (
        1usize..160,
        1usize..=4,
        1usize..=16,
        1usize..=3,
        any::<u64>(),
    )
        .prop_flat_map(|(n_keys, heads, half, tokens, seed)| {
            (
                Just(n_keys),
                1..=n_keys,
                Just(heads),
                Just(2 * half),
                Just(tokens),
                Just(seed),
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Continuous random inputs: equal to brute force up to f32 rounding (and ties within it).
    #[test]
    fn product_keys_equal_brute_force((n_keys, knn, heads, k_dim, tokens, seed) in case()) {
        let device = Default::default();
        let queries = Tensor::<B, 3>::from_data(random(vec![tokens, heads, k_dim], seed, false), &device);
        let keys = Tensor::<B, 4>::from_data(random(vec![heads, 2, n_keys, k_dim / 2], !seed, false), &device);
        prop_assert_eq!(check(queries, keys, knn, 1e-5), Ok(()));
    }

    /// Small integer inputs: sums are exact and ties are frequent; scores must match exactly,
    /// and so must the indices: ties go to the smaller value index, as in the brute force.
    #[test]
    fn product_keys_equal_brute_force_with_ties((n_keys, knn, heads, k_dim, tokens, seed) in case()) {
        let device = Default::default();
        let queries = Tensor::<B, 3>::from_data(random(vec![tokens, heads, k_dim], seed, true), &device);
        let keys = Tensor::<B, 4>::from_data(random(vec![heads, 2, n_keys, k_dim / 2], !seed, true), &device);
        prop_assert_eq!(check(queries.clone(), keys.clone(), knn, 0.0), Ok(()));
        let brute = BruteForce::new(queries.clone(), keys.clone());
        let actual = TopK::from_retrieval(&retrieve(queries, keys, knn));
        prop_assert_eq!(actual.indices, brute.topk(knn).indices);
    }
}

#[test]
fn module_retrieval_equals_brute_force_with_and_without_qk_norm() {
    let device = Default::default();
    for qk_norm in [false, true] {
        let keys = ProductKeysConfig::new(24, 3, 10, 6, 13)
            .with_qk_norm(qk_norm)
            .init::<B>(&device)
            .unwrap();
        let x = Tensor::<B, 2>::random([7, 24], Distribution::Normal(0.0, 1.0), &device);
        let retrieval = keys.forward(x.clone());
        assert_eq!(retrieval.scores.dims(), [7 * 3, 6]);
        let brute = BruteForce::new(keys.queries(x), keys.sub_keys());
        let actual = TopK::from_retrieval(&retrieval);
        compare_topk(
            &actual,
            &brute.topk(6),
            |r, i| Some(brute.score(r, i)),
            1e-5,
        )
        .unwrap();
    }
}

/// Each half-query and sub-key leaves qk-norm with mean square `m / (m + eps)`, `m` its raw
/// mean square: 1 up to the epsilon. Compared with that formula (not with 1), so a raw vector
/// that happens to be tiny does not make the test flaky.
#[test]
fn qk_norm_normalises_queries_and_keys() {
    let device = Default::default();
    let keys = ProductKeysConfig::new(8, 2, 6, 2, 4)
        .with_qk_norm(true)
        .init::<B>(&device)
        .unwrap();
    let x = Tensor::<B, 2>::random([3, 8], Distribution::Normal(0.0, 5.0), &device);
    let mean_square = |t: Tensor<B, 2>| host(t.square().mean_dim(1));
    let raw_queries = keys.query_proj.forward(x.clone()).reshape([3 * 2 * 2, 3]);
    let raw_keys = keys.keys.val().reshape([2 * 2 * 4, 3]);
    let queries = keys.queries(x).reshape([3 * 2 * 2, 3]);
    let sub_keys = keys.sub_keys().reshape([2 * 2 * 4, 3]);
    let raw = mean_square(raw_queries)
        .into_iter()
        .chain(mean_square(raw_keys));
    let normalised = mean_square(queries)
        .into_iter()
        .chain(mean_square(sub_keys));
    let mut n = 0;
    for (m, ms) in raw.zip(normalised) {
        let expected = m / (m + QK_NORM_EPS as f32);
        assert!(
            (ms - expected).abs() < 1e-5,
            "mean square {ms}, expected {expected} (raw {m})"
        );
        n += 1;
    }
    assert_eq!(n, 3 * 2 * 2 + 2 * 2 * 4);
}

#[test]
fn empty_batch_gives_empty_retrieval() {
    let device = Default::default();
    let keys = ProductKeysConfig::new(8, 2, 4, 3, 5)
        .init::<B>(&device)
        .unwrap();
    let retrieval = keys.forward(Tensor::<B, 2>::zeros([0, 8], &device));
    assert_eq!(retrieval.scores.dims(), [0, 3]);
    assert_eq!(retrieval.indices.dims(), [0, 3]);
}

#[test]
fn knn_equal_to_n_keys_and_knn_one() {
    let device = Default::default();
    for (n_keys, knn) in [(5, 5), (9, 1), (1, 1)] {
        let q = Tensor::<B, 3>::from_data(random(vec![4, 2, 6], 3, false), &device);
        let k = Tensor::<B, 4>::from_data(random(vec![2, 2, n_keys, 3], 4, false), &device);
        check(q, k, knn, 1e-5).unwrap();
    }
}

#[test]
fn init_follows_the_paper() {
    let device = Default::default();
    let keys = ProductKeysConfig::new(64, 4, 32, 8, 64)
        .init::<B>(&device)
        .unwrap();
    assert_eq!(keys.keys.dims(), [2 * 4 * 64, 16]);
    let bound = 1.0 / 32f32.sqrt();
    let values = host(keys.keys.val());
    assert!(values.iter().all(|v| v.abs() <= bound));
    assert!(
        values.iter().any(|v| v.abs() > 0.9 * bound),
        "spread over the whole range"
    );
    let bias = keys.query_proj.bias.as_ref().unwrap().val();
    assert_eq!(bias.abs().sum().into_scalar(), 0.0);
    let xavier = (6.0f32 / (64.0 + 128.0)).sqrt();
    let weight = host(keys.query_proj.weight.val());
    assert!(weight.iter().all(|w| w.abs() <= xavier));
}

#[test]
fn every_invalid_config_is_named() {
    let cases = [
        (ProductKeysConfig::new(0, 1, 4, 1, 4), "dim"),
        (ProductKeysConfig::new(8, 0, 4, 1, 4), "heads"),
        (ProductKeysConfig::new(8, 1, 5, 1, 4), "k_dim"),
        (ProductKeysConfig::new(8, 1, 0, 1, 4), "k_dim"),
        (ProductKeysConfig::new(8, 1, 4, 1, 0), "n_keys"),
        (ProductKeysConfig::new(8, 1, 4, 1, 50_000), "n_keys"),
        (ProductKeysConfig::new(8, 1, 4, 0, 4), "knn"),
        (ProductKeysConfig::new(8, 1, 4, 5, 4), "knn"),
    ];
    for (config, field) in cases {
        match config.validate() {
            Err(KeysError::InvalidConfig { field: f, .. }) => assert_eq!(f, field, "{config:?}"),
            other => panic!("{config:?} gave {other:?}"),
        }
        assert!(config.init::<B>(&Default::default()).is_err());
    }
    let message = ProductKeysConfig::new(8, 1, 5, 1, 4)
        .validate()
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("k_dim = 5") && message.contains("even"),
        "{message}"
    );
}
