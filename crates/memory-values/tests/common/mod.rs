//! Helpers shared by this crate's integration tests.

/// `n` pseudo-random values in `[-0.5, 0.5)` from `seed` (an LCG: reproducible, no dependency).
pub fn pseudo_random(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        })
        .collect()
}
