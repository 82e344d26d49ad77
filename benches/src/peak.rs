//! The host's measured f32 FMA throughput, all threads: the yardstick a train step's achieved
//! FLOP rate is a share of. Each thread runs independent chains of fused multiply-adds in
//! registers, at the widest SIMD level the kernels dispatch to, long enough to hide the
//! latency of each (12 chains × the lanes of a register).

use std::time::Instant;

use pulp::{Arch, Simd, WithSimd};
use rayon::prelude::*;

/// Independent accumulators per thread: more than the FMA latency × issue width of current
/// x86 cores (4 cycles × 2 units), so that the units never wait.
const CHAINS: usize = 12;

/// FMA rounds per thread per timing.
const ROUNDS: usize = 20_000_000;

struct Chains;

impl WithSimd for Chains {
    /// (FLOPs done, a value that depends on every one of them).
    type Output = (f64, f32);

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) -> Self::Output {
        let lanes = core::mem::size_of::<S::f32s>() / 4;
        let (a, b) = (simd.splat_f32s(0.999_999), simd.splat_f32s(1e-7));
        let mut acc = [simd.splat_f32s(1.0); CHAINS];
        for _ in 0..ROUNDS {
            for x in &mut acc {
                *x = simd.mul_add_e_f32s(a, *x, b);
            }
        }
        let sum = acc
            .iter()
            .fold(simd.splat_f32s(0.0), |s, &x| simd.add_f32s(s, x));
        let flops = 2.0 * (lanes * CHAINS * ROUNDS) as f64;
        (flops, simd.reduce_sum_f32s(sum))
    }
}

/// Measured FMA throughput of every thread of rayon's pool, GFLOP/s (best of 3).
pub fn fma_peak_gflops() -> f64 {
    let threads = rayon::current_num_threads();
    (0..3)
        .map(|_| {
            let started = Instant::now();
            let (flops, check): (f64, f32) = (0..threads)
                .into_par_iter()
                .map(|_| Arch::new().dispatch(Chains))
                .reduce(|| (0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
            assert!(check.is_finite(), "the chains stay finite");
            flops / started.elapsed().as_secs_f64() / 1e9
        })
        .fold(0.0, f64::max)
}
