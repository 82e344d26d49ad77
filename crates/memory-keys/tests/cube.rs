//! The CubeCL selection kernel on wgpu (Mesa lavapipe in CI) against the brute force:
//! `cargo test -p memory-keys --features wgpu --test cube`.
#![cfg(feature = "wgpu")]

use burn::backend::Wgpu;
use burn::tensor::{Tensor, TensorData};
use memory_keys::reference::{BruteForce, TopK, compare_topk};
use memory_keys::retrieve;
use proptest::prelude::*;

type B = Wgpu;

fn random(shape: Vec<usize>, seed: u64, integers: bool) -> TensorData {
    let mut state = seed ^ 0x9e37_79b9_7f4a_7c15;
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = (state >> 40) as f32 / (1u64 << 24) as f32;
            if integers {
                (u * 7.0).floor() - 3.0
            } else {
                u * 2.0 - 1.0
            }
        })
        .collect();
    TensorData::new(values, shape)
}

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
