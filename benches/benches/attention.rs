//! Causal self-attention forward and backward on the CPU (Flex) at the 134m preset's heads
//! (12 × 64), one sequence of 1024 and of 4096 tokens: the time per token says whether the
//! memory-efficient kernel keeps up at long sequences.

use burn::backend::{Autodiff, Flex};
use burn::tensor::{Distribution, Tensor};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use memory_layers_zoo::{Heads, causal_attention};

/// Huge pages for large tensors, as in the xtask and memory-layers binaries.
#[global_allocator]
static ALLOC: memory_layers_huge_pages::HugePageAlloc = memory_layers_huge_pages::HugePageAlloc;

const HEADS: Heads = Heads {
    heads: 12,
    kv_heads: 12,
};
const HEAD_DIM: usize = 64;

fn attention(c: &mut Criterion) {
    type A = Autodiff<Flex>;
    let device = Default::default();
    let mut group = c.benchmark_group("causal_attention_fwd_bwd");
    group.sample_size(10);
    for len in [1024, 4096] {
        let width = HEADS.heads * HEAD_DIM;
        let input = || {
            Tensor::<A, 3>::random([1, len, width], Distribution::Normal(0.0, 1.0), &device)
                .require_grad()
        };
        let (q, k, v) = (input(), input(), input());
        group.throughput(Throughput::Elements(len as u64));
        group.bench_function(format!("1x{len}x{}x{HEAD_DIM}", HEADS.heads), |b| {
            b.iter(|| {
                let out = causal_attention(q.clone(), k.clone(), v.clone(), HEADS)
                    .expect("Flex has a kernel");
                out.sum().backward()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, attention);
criterion_main!(benches);
