//! Parallel memory on real collectives (burn-collective, one thread per peer on Flex): group
//! operations on a 2 × 2 mesh, and the sharded lookup against the single-device lookup on
//! meshes of N peers in memory groups of P (P = N = 1, 2, 4; P < N): outputs, weight gradients
//! on the owners, value gradients scaled by 1/P and averaged over the replicas, i.e. 1/N.

use burn::backend::{Autodiff, Flex};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Int, Tensor, TensorData};
use memory_layers_parallel::{Collective, Mesh, ShardedValues};
use memory_layers_test_support::{
    assert_close, densify, host, host_all, host_ints, pseudo_random as seq, run_peers, serial,
};
use memory_layers_values::{RowGrads, ValueStore, ValueTable};

type A = Autodiff<Flex>;

#[test]
fn group_operations_on_a_two_by_two_mesh() {
    let _serial = serial();
    // World ranks 0..4; memory groups {0, 1} and {2, 3}; replica groups {0, 2} and {1, 3}.
    let results = run_peers::<Flex, _>(4, |_, collective| {
        let rank = collective.rank();
        let mesh = Mesh::new(collective, 2).unwrap();
        let group = mesh.memory();
        let device = Default::default();
        let mine =
            Tensor::<Flex, 2>::from_data(TensorData::new(vec![rank as f32; 6], [2, 3]), &device);
        let gathered = host(group.all_gather(mine.clone()).unwrap());
        let big = Tensor::<Flex, 2, Int>::from_data(
            TensorData::new(vec![(1i64 << 30) + rank as i64, 7], [1, 2]),
            &device,
        );
        let ints = host_ints(group.all_gather_ints(big).unwrap());
        // Part j carries 10·rank + j.
        let parts = (0..2)
            .map(|j| {
                Tensor::<Flex, 2>::from_data(
                    TensorData::new(vec![(10 * rank + j) as f32; 3], [1, 3]),
                    &device,
                )
            })
            .collect();
        let received = host_all(group.all_to_all(parts).unwrap());
        let rows = Tensor::<Flex, 2>::from_data(
            TensorData::new(vec![rank as f32, 1.0, rank as f32, 2.0], [2, 2]),
            &device,
        );
        let scattered = host(group.reduce_scatter(rows).unwrap());
        let mine = Tensor::<Flex, 1>::from_floats([rank as f32, 1.0], &device);
        let summed = host(mesh.replicas().all_reduce(mine).unwrap());
        // Rank r touched rows r and 5 (rank 3 none): rows [r + 1; 2] and [1; 2].
        let touched = (rank != 3).then(|| RowGrads {
            ids: Tensor::<Flex, 1, Int>::from_data(
                TensorData::new(vec![rank as i64, 5], [2]),
                &device,
            ),
            rows: Tensor::from_data(
                TensorData::new(vec![rank as f32 + 1.0, rank as f32 + 1.0, 1.0, 1.0], [2, 2]),
                &device,
            ),
        });
        let sparse = mesh
            .replicas()
            .sum_rows(touched, 2, &device)
            .unwrap()
            .unwrap();
        let sparse = (host_ints(sparse.ids), host(sparse.rows));
        (rank, gathered, ints, received, scattered, summed, sparse)
    });
    for (rank, gathered, ints, received, scattered, summed, sparse) in results {
        let (a, b) = if rank < 2 { (0.0, 1.0) } else { (2.0, 3.0) };
        let expected: Vec<f32> = [vec![a; 6], vec![b; 6]].concat();
        assert_eq!(gathered, expected, "rank {rank} all_gather");
        let base = if rank < 2 { 0 } else { 2 };
        assert_eq!(
            ints,
            vec![(1 << 30) + base, 7, (1 << 30) + base + 1, 7],
            "rank {rank} all_gather_ints"
        );
        let q = (rank % 2) as f32;
        let expected: Vec<f32> = [vec![10.0 * a + q; 3], vec![10.0 * b + q; 3]].concat();
        assert_eq!(received, expected, "rank {rank} all_to_all");
        let expected = if rank % 2 == 0 {
            vec![a + b, 2.0]
        } else {
            vec![a + b, 4.0]
        };
        assert_eq!(scattered, expected, "rank {rank} reduce_scatter");
        let expected = if rank % 2 == 0 { 2.0 } else { 4.0 };
        assert_eq!(
            summed,
            vec![expected, 2.0],
            "rank {rank} all_reduce of the replicas"
        );
        let expected = if rank % 2 == 0 {
            (vec![0, 2, 5], vec![1.0, 1.0, 3.0, 3.0, 2.0, 2.0])
        } else {
            (vec![1, 5], vec![2.0, 2.0, 1.0, 1.0])
        };
        assert_eq!(sparse, expected, "rank {rank} sum_rows of the replicas");
    }
}

/// One lookup problem over the whole table and all tokens.
#[derive(Clone)]
struct Case {
    rows: usize,
    dim: usize,
    tokens: usize,
    k: usize,
    values: Vec<f32>,
    indices: Vec<i64>,
    weights: Vec<f32>,
    grad_out: Vec<f32>,
}

impl Case {
    fn new() -> Self {
        let (rows, dim, tokens, k) = (13, 8, 8, 3);
        let indices = seq(tokens * k, 3)
            .iter()
            .map(|v| ((v + 0.5) * rows as f32) as i64 % rows as i64)
            .collect();
        Self {
            rows,
            dim,
            tokens,
            k,
            values: seq(rows * dim, 1),
            indices,
            weights: seq(tokens * k, 5),
            grad_out: seq(tokens * dim, 7),
        }
    }

    fn float<const D: usize>(&self, data: Vec<f32>, shape: [usize; D]) -> Tensor<A, D> {
        Tensor::from_data(TensorData::new(data, shape), &Default::default())
    }

    /// Output and weight gradient of tokens `from..to` read from `table`, and all gradients
    /// of `sum(output ⊙ grad_out)`.
    fn run(
        &self,
        table: &impl ValueStore<A>,
        from: usize,
        to: usize,
    ) -> (Vec<f32>, Vec<f32>, <A as AutodiffBackend>::Gradients) {
        let (t, k, d) = (to - from, self.k, self.dim);
        let indices = Tensor::<A, 2, Int>::from_data(
            TensorData::new(self.indices[from * k..to * k].to_vec(), [t, k]),
            &Default::default(),
        );
        let weights = self
            .float(self.weights[from * k..to * k].to_vec(), [t, k])
            .require_grad();
        let out = table.lookup(indices, weights.clone()).unwrap();
        let grads = (out.clone() * self.float(self.grad_out[from * d..to * d].to_vec(), [t, d]))
            .sum()
            .backward();
        let weight_grad = host(weights.grad(&grads).unwrap());
        (host(out), weight_grad, grads)
    }
}

#[test]
fn sharded_lookup_equals_the_single_device_lookup() {
    let _serial = serial();
    let case = Case::new();
    let full = case.float(case.values.clone(), [case.rows, case.dim]);
    let table = ValueTable::from_tensor(full, 0, case.dim).unwrap();
    let (out, weight_grad, grads) = case.run(&table, 0, case.tokens);
    let value_grad = host(table.weight.val().grad(&grads).unwrap());

    // (world N, memory group P): N/P replicas of a pool split over P peers; value gradients
    // dense (through autodiff) or sparse (rows through the table's sink).
    let layouts = [(1, 1), (2, 2), (4, 4), (4, 2), (4, 1), (2, 1)];
    for ((n, p), sparse) in layouts.into_iter().flat_map(|l| [(l, false), (l, true)]) {
        let shared = case.clone();
        let results = run_peers::<Flex, _>(n, move |_, collective| {
            let case = &shared;
            let rank = collective.rank();
            let mesh = Mesh::new(collective, p).unwrap();
            let shard_at = mesh.memory().position();
            let width = case.dim / p;
            let columns = case
                .float(case.values.clone(), [case.rows, case.dim])
                .slice([0..case.rows, shard_at * width..(shard_at + 1) * width]);
            let mut shard = ValueTable::from_tensor(columns, shard_at * width, case.dim).unwrap();
            shard.set_sparse_grads(sparse);
            let store = ShardedValues::new(&shard, mesh.memory()).unwrap();
            let per = case.tokens / n;
            let (o, w, grads) = case.run(&store, rank * per, (rank + 1) * per);
            // Data-parallel averaging over the shard's replicas (the trainer's step).
            let replicas = mesh.replicas();
            let copies = replicas.size() as f32;
            let v = if sparse {
                let rows = shard.take_row_grads().unwrap().map(|g| RowGrads {
                    ids: g.ids.inner(),
                    rows: g.rows.inner(),
                });
                let rows = replicas
                    .sum_rows(rows, width, &Default::default())
                    .unwrap()
                    .unwrap();
                densify(&host_ints(rows.ids), &host(rows.rows), case.rows, width)
                    .iter()
                    .map(|g| g / copies)
                    .collect()
            } else {
                let dense = shard.weight.val().grad(&grads).unwrap();
                host(replicas.all_reduce(dense).unwrap().div_scalar(copies))
            };
            (rank, shard_at, o, w, v)
        });
        let per = case.tokens / n;
        let width = case.dim / p;
        for (rank, shard_at, o, w, v) in results {
            let what = format!("N={n} P={p} sparse={sparse} rank {rank}");
            let rows = rank * per..(rank + 1) * per;
            assert_close(
                &o,
                &out[rows.start * case.dim..rows.end * case.dim],
                1e-5,
                &format!("{what} output"),
            );
            assert_close(
                &w,
                &weight_grad[rows.start * case.k..rows.end * case.k],
                1e-5,
                &format!("{what} weight gradient"),
            );
            let expected: Vec<f32> = (0..case.rows)
                .flat_map(|r| {
                    let row = &value_grad[r * case.dim..(r + 1) * case.dim];
                    row[shard_at * width..(shard_at + 1) * width]
                        .iter()
                        .map(|g| g / n as f32)
                        .collect::<Vec<_>>()
                })
                .collect();
            assert_close(&v, &expected, 1e-5, &format!("{what} value gradient"));
        }
    }
}
