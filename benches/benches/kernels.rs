//! Product-key retrieval, value lookup and the Memory+ layer on the CPU (Flex), at the quick
//! size of the `cargo xtask bench` cases; the retrieval's selection alone at the experiments'
//! and the paper's pool sizes.

use burn::backend::{Autodiff, Flex};
use burn::tensor::{Distribution, Tensor};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use memory_layers_benches::{LookupCase, MemoryPlusCase, RetrievalCase};
use memory_layers_keys::RetrievalBackend;
use memory_layers_values::{RowOptimizer, RowRule};

/// Huge pages for large tensors, as in the xtask and memory-layers binaries.
#[global_allocator]
static ALLOC: memory_layers_huge_pages::HugePageAlloc = memory_layers_huge_pages::HugePageAlloc;

fn retrieval(c: &mut Criterion) {
    let device = Default::default();
    let case = RetrievalCase::QUICK;
    let (queries, sub_keys) = case.inputs::<Flex>(&device).unwrap();
    let id = format!("{}/{}x{}", RetrievalCase::NAME, case.tokens, case.heads);
    c.bench_function(&id, |b| {
        b.iter(|| {
            let r = memory_layers_keys::retrieve(queries.clone(), sub_keys.clone(), case.knn);
            r.indices.into_data()
        })
    });
}

/// The selection alone (`product_topk`) on random sub-key scores: at the experiments' pool
/// (128 sub-keys per half, 16 of them kept) and at the paper's (512, 32); 3 layers of
/// 4 heads × 512 tokens.
fn selection(c: &mut Criterion) {
    let device = Default::default();
    let mut group = c.benchmark_group("pk_topk");
    for (n_keys, knn) in [(128, 16), (512, 32)] {
        let scores = Tensor::<Flex, 4>::random(
            [4, 2, 3 * 512, n_keys],
            Distribution::Normal(0.0, 1.0),
            &device,
        );
        let scores = scores.into_primitive().tensor();
        group.bench_function(format!("4x1536/n_keys{n_keys}/knn{knn}"), |b| {
            b.iter(|| Flex::product_topk(scores.clone(), knn))
        });
    }
    group.finish();
}

fn lookup(c: &mut Criterion) {
    let device = Default::default();
    let case = LookupCase::QUICK;
    let shape = format!(
        "2^{}x{}/{}x{}",
        case.rows.ilog2(),
        case.dim,
        case.bags,
        case.per_bag
    );
    let table = case.table::<Flex>(&device).unwrap();
    let indices = case.indices::<Flex>(&device);
    let weights = case.weights::<Flex>(&device);
    let mut group = c.benchmark_group(LookupCase::FWD);
    group.throughput(Throughput::Bytes(case.bytes() as u64));
    group.bench_function(&shape, |b| {
        b.iter(|| {
            table
                .lookup(indices.clone(), weights.clone())
                .unwrap()
                .into_data()
        })
    });
    group.finish();

    // The training path: value gradients as sparse rows, then a lazy-AdamW step in place.
    let mut table = case.table::<Autodiff<Flex>>(&device).unwrap();
    table.set_sparse_grads(true);
    let indices = case.indices::<Autodiff<Flex>>(&device);
    let weights = case.weights::<Autodiff<Flex>>(&device).require_grad();
    c.bench_function(&format!("{}/{shape}", LookupCase::FWD_BWD), |b| {
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
    c.bench_function(&format!("row_adamw_step/{shape}"), |b| {
        b.iter(|| optim.step(1e-3, &mut table, grads.clone()))
    });
}

fn memory_plus(c: &mut Criterion) {
    type A = Autodiff<Flex>;
    let device = Default::default();
    let case = MemoryPlusCase::QUICK;
    let memory = case.config().init_with_values::<A>(&device).unwrap();
    let x = case.input::<A>(&device).require_grad();
    let mut group = c.benchmark_group(MemoryPlusCase::NAME);
    group.sample_size(10);
    let id = format!(
        "{}x{}x{}/n_keys{}",
        case.batch, case.seq, case.dim, case.n_keys
    );
    group.bench_function(&id, |b| {
        b.iter(|| memory.forward(x.clone()).unwrap().output.sum().backward())
    });
    group.finish();
}

criterion_group!(benches, retrieval, selection, lookup, memory_plus);
criterion_main!(benches);
