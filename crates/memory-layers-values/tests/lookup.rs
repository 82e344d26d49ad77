//! The weighted lookup and its gradients against plain loops on the host.

use burn::backend::{Autodiff, Flex};
use burn::tensor::{Int, Tensor, TensorData};
use memory_layers_test_support::{Lcg, densify, host, host_ints};
use memory_layers_values::{ValueError, ValueStore, ValueTable, ValueTableConfig};

type B = Flex;
type A = Autodiff<Flex>;

struct Case {
    rows: usize,
    dim: usize,
    values: Vec<f32>,
    indices: Vec<i64>,
    weights: Vec<f32>,
    x: Vec<f32>,
    t: usize,
    k: usize,
}

impl Case {
    /// Indices drawn from few rows, so that duplicates (within and across bags) are common.
    fn new(rows: usize, dim: usize, t: usize, k: usize, seed: u64) -> Self {
        let mut rng = Lcg::new(seed);
        let mut next = move || rng.next_f64();
        Self {
            rows,
            dim,
            values: (0..rows * dim).map(|_| next() as f32 - 0.5).collect(),
            indices: (0..t * k).map(|_| (next() * rows as f64) as i64).collect(),
            weights: (0..t * k).map(|_| next() as f32).collect(),
            x: (0..t * dim).map(|_| next() as f32 - 0.5).collect(),
            t,
            k,
        }
    }

    fn table<Bk: memory_layers_values::ValueBackend>(&self) -> ValueTable<Bk> {
        let values = TensorData::new(self.values.clone(), [self.rows, self.dim]);
        ValueTable::from_tensor(Tensor::from_data(values, &Default::default()), 0, self.dim)
            .unwrap()
    }

    fn indices<Bk: burn::tensor::backend::Backend>(&self) -> Tensor<Bk, 2, Int> {
        Tensor::from_data(
            TensorData::new(self.indices.clone(), [self.t, self.k]),
            &Default::default(),
        )
    }

    fn float<Bk: burn::tensor::backend::Backend>(
        &self,
        data: &[f32],
        cols: usize,
    ) -> Tensor<Bk, 2> {
        Tensor::from_data(
            TensorData::new(data.to_vec(), [data.len() / cols, cols]),
            &Default::default(),
        )
    }

    fn row(&self, r: i64) -> &[f32] {
        &self.values[r as usize * self.dim..(r as usize + 1) * self.dim]
    }

    fn expected_sum(&self) -> Vec<f32> {
        let mut out = vec![0.0; self.t * self.dim];
        for p in 0..self.t * self.k {
            let t = p / self.k;
            for (c, v) in self.row(self.indices[p]).iter().enumerate() {
                out[t * self.dim + c] += self.weights[p] * v;
            }
        }
        out
    }

    fn expected_dot(&self, x: &[f32]) -> Vec<f32> {
        (0..self.t * self.k)
            .map(|p| {
                let t = p / self.k;
                let xt = &x[t * self.dim..(t + 1) * self.dim];
                self.row(self.indices[p])
                    .iter()
                    .zip(xt)
                    .map(|(a, b)| a * b)
                    .sum()
            })
            .collect()
    }

    fn expected_scatter(&self, weights: &[f32], x: &[f32]) -> Vec<f32> {
        let mut out = vec![0.0; self.rows * self.dim];
        for (p, (&index, &w)) in self.indices.iter().zip(weights).enumerate() {
            let (t, r) = (p / self.k, index as usize);
            for c in 0..self.dim {
                out[r * self.dim + c] += w * x[t * self.dim + c];
            }
        }
        out
    }
}

fn assert_close(actual: Tensor<impl burn::tensor::backend::Backend, 2>, expected: &[f32]) {
    memory_layers_test_support::assert_close(&host(actual), expected, 1e-5, "lookup");
}

#[test]
fn lookup_and_dot_equal_loops() {
    for (rows, dim, t, k, seed) in [(7, 5, 9, 4, 1), (1, 3, 4, 6, 2), (50, 16, 3, 1, 3)] {
        let case = Case::new(rows, dim, t, k, seed);
        let table = case.table::<B>();
        let out = table
            .lookup(case.indices(), case.float(&case.weights, k))
            .unwrap();
        assert_close(out, &case.expected_sum());
        let dot = table.dot(case.indices(), case.float(&case.x, dim)).unwrap();
        assert_close(dot, &case.expected_dot(&case.x));
    }
}

#[test]
fn lookup_gradients_equal_loops() {
    let case = Case::new(6, 4, 8, 5, 7);
    let table = case.table::<A>();
    let weights = case.float::<A>(&case.weights, case.k).require_grad();
    let out = table.lookup(case.indices(), weights.clone()).unwrap();
    let grad_out = case.float::<A>(&case.x, case.dim);
    let grads = (out * grad_out).sum().backward();
    let grad_values = table.weight.val().grad(&grads).unwrap();
    assert_close(grad_values, &case.expected_scatter(&case.weights, &case.x));
    assert_close(weights.grad(&grads).unwrap(), &case.expected_dot(&case.x));
}

#[test]
fn dot_gradients_equal_loops() {
    let case = Case::new(5, 3, 6, 4, 11);
    let table = case.table::<A>();
    let x = case.float::<A>(&case.x, case.dim).require_grad();
    let out = table.dot(case.indices(), x.clone()).unwrap();
    // Output gradient = the case's weights, so d/dx = lookup(weights), d/dV = scatter(weights, x).
    let grads = (out * case.float::<A>(&case.weights, case.k))
        .sum()
        .backward();
    assert_close(
        table.weight.val().grad(&grads).unwrap(),
        &case.expected_scatter(&case.weights, &case.x),
    );
    assert_close(x.grad(&grads).unwrap(), &case.expected_sum());
}

#[test]
fn out_of_range_indices_are_errors() {
    let case = Case::new(4, 2, 2, 2, 5);
    let table = case.table::<B>();
    let device = Default::default();
    let weights = Tensor::<B, 2>::ones([2, 2], &device);
    for (bad, reported) in [(4, 4), (-1, -1), (1000, 1000)] {
        let indices =
            Tensor::<B, 2, Int>::from_data(TensorData::new(vec![0i64, 1, bad, 2], [2, 2]), &device);
        assert_eq!(
            table.lookup(indices.clone(), weights.clone()).unwrap_err(),
            ValueError::IndexOutOfRange {
                index: reported,
                rows: 4
            }
        );
        let x = Tensor::<B, 2>::ones([2, 2], &device);
        assert!(matches!(
            table.dot(indices, x),
            Err(ValueError::IndexOutOfRange { .. })
        ));
    }
}

#[test]
fn mismatched_shapes_are_errors() {
    let case = Case::new(4, 3, 2, 2, 5);
    let table = case.table::<B>();
    let device = Default::default();
    let err = table
        .lookup(case.indices(), Tensor::ones([2, 3], &device))
        .unwrap_err();
    assert!(
        matches!(
            err,
            ValueError::ShapeMismatch {
                what: "lookup weights",
                ..
            }
        ),
        "{err}"
    );
    let err = table
        .dot(case.indices(), Tensor::ones([2, 2], &device))
        .unwrap_err();
    assert!(
        matches!(
            err,
            ValueError::ShapeMismatch {
                what: "dot input",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn empty_batches_give_empty_or_zero_outputs() {
    let device = Default::default();
    let table = ValueTableConfig::new(8, 3).init::<B>(&device).unwrap();
    let out = table
        .lookup(
            Tensor::zeros([0, 4], &device),
            Tensor::zeros([0, 4], &device),
        )
        .unwrap();
    assert_eq!(out.dims(), [0, 3]);
    let out = table
        .lookup(
            Tensor::zeros([2, 0], &device),
            Tensor::zeros([2, 0], &device),
        )
        .unwrap();
    assert_eq!(out.into_data().to_vec::<f32>().unwrap(), vec![0.0; 6]);
}

#[test]
fn column_shard_looks_up_its_slice_of_the_whole_table() {
    let case = Case::new(9, 12, 5, 3, 13);
    let whole = case.table::<B>();
    let shard_values = whole.weight.val().slice([0..9, 4..8]);
    let shard = ValueTable::from_tensor(shard_values, 4, 12).unwrap();
    assert_eq!(shard.columns().offset, 4);
    assert_eq!(ValueStore::width(&shard), 4);
    assert!(!shard.columns().is_whole() && whole.columns().is_whole());
    let weights = case.float::<B>(&case.weights, case.k);
    let full = whole
        .lookup(case.indices(), weights.clone())
        .unwrap()
        .slice([0..5, 4..8]);
    let part = shard.lookup(case.indices(), weights).unwrap();
    assert_close(part, &full.into_data().to_vec::<f32>().unwrap());
}

#[test]
fn every_invalid_config_is_named() {
    let cases = [
        (ValueTableConfig::new(0, 4), "rows"),
        (ValueTableConfig::new(4, 0), "dim"),
        (
            ValueTableConfig::new(4, 4).with_column_offset(4),
            "column_offset",
        ),
        (
            ValueTableConfig::new(4, 4).with_column_width(Some(0)),
            "column_width",
        ),
        (
            ValueTableConfig::new(4, 4)
                .with_column_offset(2)
                .with_column_width(Some(3)),
            "column_width",
        ),
    ];
    for (config, field) in cases {
        match config.init::<B>(&Default::default()) {
            Err(ValueError::InvalidConfig { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{config:?} gave {other:?}"),
        }
    }
    let device = Default::default();
    assert!(ValueTable::<B>::from_tensor(Tensor::zeros([3, 5], &device), 2, 6).is_err());
}

#[test]
fn init_is_normal_with_std_dim_to_the_minus_half() {
    let device = Default::default();
    let table = ValueTableConfig::new(4096, 64)
        .with_column_offset(16)
        .with_column_width(Some(32))
        .init::<B>(&device)
        .unwrap();
    assert_eq!(table.weight.dims(), [4096, 32]);
    let values = table.weight.val();
    let std = values.clone().var(0).mean().sqrt().into_scalar();
    assert!(
        (std - 0.125).abs() < 0.005,
        "std {std}, want 64^-1/2 of the logical table"
    );
    let mean = values.mean().into_scalar();
    assert!(mean.abs() < 0.005);
}

/// The dense form of sparse row gradients, after checking the ids are distinct and ascending.
fn dense_grads(grads: memory_layers_values::RowGrads<A>, rows: usize) -> Tensor<B, 2> {
    let dim = grads.rows.dims()[1];
    let ids = host_ints(grads.ids);
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ids not ascending: {ids:?}"
    );
    let dense = densify(&ids, &host(grads.rows), rows, dim);
    Tensor::from_data(TensorData::new(dense, [rows, dim]), &Default::default())
}

#[test]
fn sparse_gradients_equal_the_dense_ones_and_leave_the_graph() {
    // A table small beside its lookups (grouped by counting) and a large one (by sorting).
    for case in [Case::new(9, 4, 8, 5, 13), Case::new(600, 4, 8, 5, 14)] {
        sparse_gradient_case(&case);
    }
}

fn sparse_gradient_case(case: &Case) {
    let mut table = case.table::<A>();
    table.set_sparse_grads(true);
    let weights = case.float::<A>(&case.weights, case.k).require_grad();
    let out = table.lookup(case.indices(), weights.clone()).unwrap();
    let grads = (out * case.float::<A>(&case.x, case.dim)).sum().backward();
    assert!(
        table.weight.val().grad(&grads).is_none(),
        "a dense gradient was registered"
    );
    assert_close(weights.grad(&grads).unwrap(), &case.expected_dot(&case.x));
    let sparse = table.take_row_grads().unwrap().expect("row gradients");
    assert_close(
        dense_grads(sparse, case.rows),
        &case.expected_scatter(&case.weights, &case.x),
    );
    assert!(
        table.take_row_grads().unwrap().is_none(),
        "the sink was not drained"
    );
}

#[test]
fn sparse_gradients_of_several_reads_are_summed_per_row() {
    // One table read by a lookup and a dot (as a shared pool or PEER's tables are): the
    // coalesced rows equal the sum of both dense gradients.
    let case = Case::new(6, 3, 7, 4, 17);
    let mut table = case.table::<A>();
    table.set_sparse_grads(true);
    let lookup = table
        .lookup(case.indices(), case.float::<A>(&case.weights, case.k))
        .unwrap();
    let dot = table
        .dot(case.indices(), case.float::<A>(&case.x, case.dim))
        .unwrap();
    let loss = (lookup * case.float::<A>(&case.x, case.dim)).sum()
        + (dot * case.float::<A>(&case.weights, case.k)).sum();
    loss.backward();
    let once = case.expected_scatter(&case.weights, &case.x);
    let twice: Vec<f32> = once.iter().map(|g| 2.0 * g).collect();
    assert_close(
        dense_grads(table.take_row_grads().unwrap().unwrap(), case.rows),
        &twice,
    );
}
