// The kernel tests of one CubeCL backend, included by cube.rs (wgpu) and cube_cuda.rs
// (CUDA) with the backend as `B`.

use burn::tensor::Tensor;
use memory_layers_keys::reference::{BruteForce, TopK, compare_topk};
use memory_layers_keys::retrieve;
use proptest::prelude::*;
use memory_layers_test_support::random_data as random;

fn check(
    n_keys: usize,
    knn: usize,
    heads: usize,
    k_dim: usize,
    tokens: usize,
    seed: u64,
    integers: bool,
) -> Result<(), String> {
    let device = Default::default();
    let queries =
        Tensor::<B, 3>::from_data(random(vec![tokens, heads, k_dim], seed, integers), &device);
    let keys = Tensor::<B, 4>::from_data(
        random(vec![heads, 2, n_keys, k_dim / 2], !seed, integers),
        &device,
    );
    let brute = BruteForce::new(queries.clone(), keys.clone());
    let actual = TopK::from_retrieval(&retrieve(queries, keys, knn));
    let tol = if integers { 0.0 } else { 1e-5 };
    compare_topk(
        &actual,
        &brute.topk(knn),
        |row, i| Some(brute.score(row, i)),
        tol,
    )
    .map_err(|m| m.to_string())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Continuous inputs and small-integer inputs (many ties), `knn` from 1 to `n_keys`.
    #[test]
    fn cube_selection_equals_brute_force(
        (n_keys, knn) in (1usize..48).prop_flat_map(|n| (Just(n), 1..=n)),
        heads in 1usize..=3,
        half in 1usize..=8,
        tokens in 1usize..=5,
        seed in any::<u64>(),
        integers in any::<bool>(),
    ) {
        prop_assert_eq!(check(n_keys, knn, heads, 2 * half, tokens, seed, integers), Ok(()));
    }
}

#[test]
fn cube_selection_at_the_bench_shape_edges() {
    // knn = n_keys (every pair of ranks is a candidate) and knn = 1.
    check(32, 32, 2, 16, 3, 1, false).unwrap();
    check(32, 32, 2, 16, 3, 2, true).unwrap();
    check(512, 1, 1, 8, 4, 3, false).unwrap();
}
