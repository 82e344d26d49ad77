use burn::tensor::TensorData;

/// A 64-bit linear congruential stream (Knuth's MMIX constants): reproducible test inputs
/// from a seed, with no dependency.
#[derive(Debug, Clone)]
pub struct Lcg(u64);

impl Lcg {
    /// A stream starting from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// Advances the state and returns it.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0
    }

    /// Uniform in `[0, 1)` with 24 bits (exact in `f32`).
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform in `[0, 1)` with 31 bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 33) as f64 / (1u64 << 31) as f64
    }
}

/// `n` values uniform in `[-0.5, 0.5)` from `seed`.
pub fn pseudo_random(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = Lcg::new(seed);
    (0..n).map(|_| rng.next_f32() - 0.5).collect()
}

/// A tensor of `shape` uniform in `[-1, 1)`, or with `integers`, whole numbers in `-3..=3`
/// (many exact ties, which the top-k tests need).
pub fn random_data(shape: Vec<usize>, seed: u64, integers: bool) -> TensorData {
    let mut rng = Lcg::new(seed ^ 0x9e37_79b9_7f4a_7c15);
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n)
        .map(|_| {
            let u = rng.next_f32();
            if integers {
                (u * 7.0).floor() - 3.0
            } else {
                u * 2.0 - 1.0
            }
        })
        .collect();
    TensorData::new(values, shape)
}
