//! Product-key retrieval, value lookup and the Memory+ layer on the CPU (Flex).

use burn::backend::{Autodiff, Flex};
use burn::tensor::{Distribution, Tensor};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use memory_benches::{random_indices, softmax_weights};
use memory_keys::ProductKeysConfig;
use memory_layer::MemoryLayerConfig;
use memory_values::{RowOptimizer, RowRule, ValueTableConfig};

fn retrieval(c: &mut Criterion) {
    let device = Default::default();
    // pk_retrieval_fwd at a quarter of the `cargo xtask bench` size.
    let keys = ProductKeysConfig::new(256, 4, 256, 32, 512)
        .init::<Flex>(&device)
        .unwrap();
    let queries = Tensor::<Flex, 3>::random([512, 4, 256], Distribution::Normal(0.0, 1.0), &device);
    let sub_keys = keys.sub_keys();
    c.bench_function("pk_retrieval_fwd/512x4", |b| {
        b.iter(|| {
            let r = memory_keys::retrieve(queries.clone(), sub_keys.clone(), 32);
            r.indices.into_data()
        })
    });
}

fn lookup(c: &mut Criterion) {
    let device = Default::default();
    let (rows, dim, bags, per_bag) = (1 << 16, 256, 2048, 32);
    let table = ValueTableConfig::new(rows, dim)
        .init::<Flex>(&device)
        .unwrap();
    let indices = random_indices::<Flex>(rows, bags, per_bag, &device);
    let weights = softmax_weights::<Flex>(bags, per_bag, &device);
    let mut group = c.benchmark_group("lookup_fwd");
    group.throughput(Throughput::Bytes((bags * per_bag * dim * 4) as u64));
    group.bench_function("2^16x256/2048x32", |b| {
        b.iter(|| {
            table
                .lookup(indices.clone(), weights.clone())
                .unwrap()
                .into_data()
        })
    });
    group.finish();

    // The training path: value gradients as sparse rows, then a lazy-AdamW step in place.
    let mut table = ValueTableConfig::new(rows, dim)
        .init::<Autodiff<Flex>>(&device)
        .unwrap();
    table.set_sparse_grads(true);
    let indices = random_indices::<Autodiff<Flex>>(rows, bags, per_bag, &device);
    let weights = softmax_weights::<Autodiff<Flex>>(bags, per_bag, &device).require_grad();
    c.bench_function("lookup_fwd_bwd/2^16x256/2048x32", |b| {
        b.iter(|| {
            let out = table.lookup(indices.clone(), weights.clone()).unwrap();
            let _ = out.sum().backward();
            table.take_row_grads().unwrap()
        })
    });
    let rule = RowRule::AdamW {
        beta1: 0.9,
        beta2: 0.95,
        eps: 1e-8,
        weight_decay: 0.1,
    };
    let mut optim = RowOptimizer::new(rule, &table);
    let out = table.lookup(indices.clone(), weights.clone()).unwrap();
    let _ = out.sum().backward();
    let grads = table.take_row_grads().unwrap().expect("rows were read");
    c.bench_function("row_adamw_step/2^16x256/2048x32", |b| {
        b.iter(|| optim.step(1e-3, &mut table, grads.clone()))
    });
}

fn memory_plus(c: &mut Criterion) {
    type A = Autodiff<Flex>;
    let device = Default::default();
    let config =
        MemoryLayerConfig::new(ProductKeysConfig::new(512, 4, 256, 32, 128)).with_swilu(true);
    let memory = config.init_with_values::<A>(&device).unwrap();
    let x = Tensor::<A, 3>::random([2, 128, 512], Distribution::Normal(0.0, 1.0), &device)
        .require_grad();
    let mut group = c.benchmark_group("memory_plus_fwd_bwd");
    group.sample_size(10);
    group.bench_function("2x128x512/n_keys128", |b| {
        b.iter(|| memory.forward(x.clone()).unwrap().output.sum().backward())
    });
    group.finish();
}

criterion_group!(benches, retrieval, lookup, memory_plus);
criterion_main!(benches);
