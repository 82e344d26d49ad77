//! `memory-layers train --devices 2 --memory-parallel 2` (two peers on CPU threads, the value
//! pool sharded over them) and `--devices 4 --memory-parallel 2` (two replicas of a pool
//! sharded over two peers) follow `--devices 1` with the same global batch and seed (lazy
//! and dense AdamW), and a checkpoint killed mid-run on two devices resumes on one.

mod common;

use common::{checkpoint_step, fresh, kill_after_checkpoint, losses, resume, train};

/// The runs of this file: 30 steps from one seed.
const STEPS: u32 = 30;
const SEED: u64 = 5;

fn assert_follows(actual: &[(u64, f64)], expected: &[(u64, f64)], what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: logged steps");
    for ((step, a), (s, e)) in actual.iter().zip(expected) {
        assert_eq!(step, s, "{what}: steps");
        assert!(
            (a - e).abs() <= 1e-3 * e.abs(),
            "{what}, step {step}: loss {a} vs {e}"
        );
    }
}

#[test]
fn several_devices_follow_one_and_their_checkpoint_resumes_on_one() {
    let one = fresh("one");
    assert!(train(&one, STEPS, SEED, &[]).status().unwrap().success());
    let expected = losses(&one);
    assert_eq!(expected.last().unwrap().0, 30);

    let two = fresh("two");
    let args = ["--devices", "2", "--memory-parallel", "2"];
    assert!(train(&two, STEPS, SEED, &args).status().unwrap().success());
    assert_follows(&losses(&two), &expected, "2 devices");

    let four = fresh("four");
    let mesh = ["--devices", "4", "--memory-parallel", "2"];
    assert!(train(&four, STEPS, SEED, &mesh).status().unwrap().success());
    assert_follows(&losses(&four), &expected, "4 devices, memory groups of 2");

    // Dense AdamW: the run's parameters are materialised in one order however it runs (Burn
    // initialises them lazily, in the order of first use, which each optimizer changes).
    let dense = ["--value-optimizer", "dense-adamw"];
    let one_dense = fresh("one-dense");
    assert!(
        train(&one_dense, STEPS, SEED, &dense)
            .status()
            .unwrap()
            .success()
    );
    let two_dense = fresh("two-dense");
    assert!(
        train(&two_dense, STEPS, SEED, &[&args[..], &dense[..]].concat())
            .status()
            .unwrap()
            .success()
    );
    assert_follows(
        &losses(&two_dense),
        &losses(&one_dense),
        "2 devices, dense AdamW",
    );

    // Killed after a checkpoint on two devices, resumed on one.
    let cut = fresh("cut");
    kill_after_checkpoint(train(&cut, STEPS, SEED, &args), &cut, 10);
    assert!(resume(&cut, &[]));
    assert_eq!(checkpoint_step(&cut), 30);
    assert_follows(&losses(&cut), &expected, "resumed on 1 device");
}
