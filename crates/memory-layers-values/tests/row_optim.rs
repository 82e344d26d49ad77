//! Row-wise optimizers: lazy AdamW equals Burn's dense AdamW when every row is touched, leaves
//! untouched rows alone, row-wise Adagrad follows its formula, and the state round-trips.

use burn::backend::{Autodiff, Flex};
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::{Int, Tensor, TensorData};
use memory_layers_values::{RowOptimizer, RowRule, ValueError, ValueTable};

type A = Autodiff<Flex>;

const RULE: RowRule = RowRule::AdamW {
    beta1: 0.9,
    beta2: 0.95,
    eps: 1e-8,
    weight_decay: 0.1,
};

use memory_layers_test_support::pseudo_random as seq;
use memory_layers_test_support::{assert_close, host};

fn table(rows: usize, dim: usize) -> ValueTable<A> {
    let values = Tensor::from_data(
        TensorData::new(seq(rows * dim, 1), [rows, dim]),
        &Default::default(),
    );
    let mut table = ValueTable::from_tensor(values, 0, dim).unwrap();
    table.set_sparse_grads(true);
    table
}

/// Backward of a loss over a lookup of `ids` (one per bag): delivers row gradients to the sink.
fn backward(table: &ValueTable<A>, ids: &[i64], seed: u64) {
    let dim = table.columns().width;
    let indices = Tensor::<A, 2, Int>::from_data(
        TensorData::new(ids.to_vec(), [ids.len(), 1]),
        &Default::default(),
    );
    let weights = Tensor::<A, 2>::ones([ids.len(), 1], &Default::default());
    let target = Tensor::<A, 2>::from_data(
        TensorData::new(seq(ids.len() * dim, seed), [ids.len(), dim]),
        &Default::default(),
    );
    (table.lookup(indices, weights).unwrap() * target)
        .sum()
        .backward();
}

fn values(table: &ValueTable<A>) -> Vec<f32> {
    host(table.weight.val())
}

#[test]
fn lazy_adamw_equals_dense_adamw_when_every_row_is_touched() {
    let (rows, dim) = (5, 3);
    let all: Vec<i64> = (0..rows as i64).collect();
    let mut sparse = table(rows, dim);
    let mut optim = RowOptimizer::new(RULE, &sparse);
    let mut dense = ValueTable::<A>::from_tensor(sparse.weight.val().detach(), 0, dim).unwrap();
    let mut adamw = AdamWConfig::new()
        .with_beta_1(0.9)
        .with_beta_2(0.95)
        .with_epsilon(1e-8)
        .with_weight_decay(0.1)
        .init::<A, ValueTable<A>>();
    for step in 0..3 {
        backward(&sparse, &all, step);
        let grads = sparse.take_row_grads().unwrap().unwrap();
        optim.step(0.01, &mut sparse, grads);

        let indices = Tensor::<A, 2, Int>::from_data(
            TensorData::new(all.clone(), [rows, 1]),
            &Default::default(),
        );
        let target = Tensor::<A, 2>::from_data(
            TensorData::new(seq(rows * dim, step), [rows, dim]),
            &Default::default(),
        );
        let loss = (dense
            .lookup(indices, Tensor::ones([rows, 1], &Default::default()))
            .unwrap()
            * target)
            .sum();
        let grads = GradientsParams::from_grads(loss.backward(), &dense);
        dense = adamw.step(0.01, dense, grads);
        assert_close(
            &values(&sparse),
            &values(&dense),
            1e-6,
            &format!("step {step}"),
        );
    }
    assert!(sparse.weight.is_require_grad(), "require_grad was lost");
}

#[test]
fn lazy_adamw_leaves_untouched_rows_alone() {
    let (rows, dim) = (8, 4);
    let mut t = table(rows, dim);
    let before = values(&t);
    let mut optim = RowOptimizer::new(RULE, &t);
    for step in 0..2 {
        backward(&t, &[1, 6, 1], step);
        let grads = t.take_row_grads().unwrap().unwrap();
        optim.step(0.01, &mut t, grads);
    }
    let after = values(&t);
    for r in 0..rows {
        let (b, a) = (
            &before[r * dim..(r + 1) * dim],
            &after[r * dim..(r + 1) * dim],
        );
        assert_eq!(a == b, r != 1 && r != 6, "row {r}: {b:?} -> {a:?}");
    }
    assert_eq!(optim.steps(), 2);
}

#[test]
fn rowwise_adagrad_follows_its_formula() {
    let (rows, dim, lr, eps) = (4, 2, 0.1, 1e-8);
    let mut t = table(rows, dim);
    let mut expected = values(&t);
    let mut acc = vec![0f32; rows];
    let mut optim = RowOptimizer::new(RowRule::Adagrad { eps }, &t);
    for step in 0..2 {
        let ids = [2i64, 0, 2];
        backward(&t, &ids, step);
        // Host reference: each bag adds its target row to its value row's gradient.
        let target = seq(ids.len() * dim, step);
        let mut g = vec![0f32; rows * dim];
        for (b, &id) in ids.iter().enumerate() {
            for c in 0..dim {
                g[id as usize * dim + c] += target[b * dim + c];
            }
        }
        for r in [0usize, 2] {
            let row = &g[r * dim..(r + 1) * dim];
            acc[r] += row.iter().map(|x| x * x).sum::<f32>() / dim as f32;
            for c in 0..dim {
                expected[r * dim + c] -= lr as f32 * row[c] / (acc[r].sqrt() + eps as f32);
            }
        }
        let grads = t.take_row_grads().unwrap().unwrap();
        optim.step(lr, &mut t, grads);
        assert_close(&values(&t), &expected, 1e-6, &format!("step {step}"));
    }
}

#[test]
fn state_round_trips_and_a_foreign_state_is_an_error() {
    let (rows, dim) = (6, 2);
    let run = |resume: bool| {
        let mut t = table(rows, dim);
        let mut optim = RowOptimizer::new(RULE, &t);
        for step in 0..3 {
            if step == 2 && resume {
                let record = optim.to_record();
                optim = RowOptimizer::new(RULE, &t).load_record(record).unwrap();
            }
            backward(&t, &[0, 3, 5], step);
            let grads = t.take_row_grads().unwrap().unwrap();
            optim.step(0.02, &mut t, grads);
        }
        values(&t)
    };
    assert_eq!(run(true), run(false));

    let t = table(rows, dim);
    let adagrad = RowOptimizer::new(RowRule::Adagrad { eps: 1e-8 }, &t).to_record();
    let err = RowOptimizer::new(RULE, &t)
        .load_record(adagrad)
        .unwrap_err();
    assert!(matches!(err, ValueError::RowOptimizer(_)), "{err}");
    let smaller = RowOptimizer::new(RULE, &table(rows - 1, dim)).to_record();
    assert!(RowOptimizer::new(RULE, &t).load_record(smaller).is_err());
}

/// Address of the table's value buffer (on the inner Flex backend).
fn buffer(table: &ValueTable<A>) -> usize {
    let inner = table.weight.val().inner().into_primitive().tensor();
    inner.as_slice::<f32>().unwrap().as_ptr() as usize
}

#[test]
fn row_updates_write_the_table_in_place() {
    // A table-sized copy per step would make the step cost grow with the table.
    let mut t = table(64, 8);
    let mut optim = RowOptimizer::new(RULE, &t);
    backward(&t, &[3, 9], 0);
    let grads = t.take_row_grads().unwrap().unwrap();
    optim.step(0.01, &mut t, grads);
    let before = buffer(&t);
    for step in 1..3 {
        backward(&t, &[3, 9, 40], step);
        let grads = t.take_row_grads().unwrap().unwrap();
        optim.step(0.01, &mut t, grads);
        assert_eq!(buffer(&t), before, "step {step} copied the table");
    }
}
