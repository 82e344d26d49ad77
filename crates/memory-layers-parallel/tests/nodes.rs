//! Two processes (nodes) on 127.0.0.1 meet through burn-collective's orchestrator and
//! all-reduce across the process boundary.
//!
//! The test re-runs its own binary as the two nodes (`MEMORY_PARALLEL_NODE` set), with the
//! orchestrator on a thread of the parent. burn-collective 0.21 completes only the first
//! global all-reduce of a process: its node sync (`SyncService::sync`) clears a copy of the
//! list of synced nodes, so the second sync never sees a fresh list and waits forever.
//! `consecutive_all_reduces_across_nodes` shows it and is ignored until Burn fixes it
//! (docs/parallel-memory.md, "Several nodes").

use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use burn::backend::Flex;
use burn::tensor::{Tensor, TensorPrimitive};
use memory_layers_parallel::{BurnCollective, Collective, node_config, run_orchestrator};

const NODE: &str = "MEMORY_PARALLEL_NODE";
const OPS: &str = "MEMORY_PARALLEL_OPS";

/// This process as node `rank` of 2 (one peer each): `ops` all-reduces of `[rank + 1; 4]`,
/// each of which must give `[3; 4]`.
fn node(rank: usize, ops: usize, ports: [u16; 3]) {
    let device = Default::default();
    let config = node_config(
        1,
        2,
        &format!("ws://127.0.0.1:{}", ports[0]),
        &format!("ws://127.0.0.1:{}", ports[1 + rank]),
    )
    .unwrap();
    let collective = Arc::new(BurnCollective::<Flex>::register(rank, &device, config, 2).unwrap());
    for op in 0..ops {
        let mine = Tensor::<Flex, 1>::ones([4], &device).mul_scalar(rank as f32 + 1.0);
        let sum = collective
            .all_reduce(mine.into_primitive().tensor())
            .unwrap();
        let sum = Tensor::<Flex, 1>::from_primitive(TensorPrimitive::Float(sum));
        let values = sum.into_data().to_vec::<f32>().unwrap();
        assert_eq!(values, vec![3.0; 4], "node {rank}, all-reduce {op}");
    }
    Arc::into_inner(collective).unwrap().finish().unwrap();
}

/// Runs `test` (this file's test of that name) as two node processes with `ops` all-reduces
/// each; true if both succeed within `limit`.
fn two_nodes(test: &str, ops: usize, ports: [u16; 3], limit: Duration) -> bool {
    std::thread::spawn(move || run_orchestrator(ports[0]));
    std::thread::sleep(Duration::from_millis(300));
    let spawn = |rank: usize| -> Child {
        Command::new(std::env::current_exe().unwrap())
            .args([test, "--exact", "--include-ignored", "--nocapture"])
            .env(NODE, rank.to_string())
            .env(OPS, ops.to_string())
            .spawn()
            .unwrap()
    };
    let mut children = [spawn(0), spawn(1)];
    let start = Instant::now();
    let mut ok = [None, None];
    while ok.iter().any(Option::is_none) && start.elapsed() < limit {
        for (child, ok) in children.iter_mut().zip(&mut ok) {
            if ok.is_none() {
                *ok = child.try_wait().unwrap().map(|s| s.success());
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for child in &mut children {
        let _ = child.kill();
        let _ = child.wait();
    }
    ok == [Some(true), Some(true)]
}

/// In a node process: that node's part, and true. In the test process: false.
fn as_node(ports: [u16; 3]) -> bool {
    let Ok(rank) = std::env::var(NODE) else {
        return false;
    };
    let ops = std::env::var(OPS).unwrap().parse().unwrap();
    node(rank.parse().unwrap(), ops, ports);
    true
}

#[test]
fn two_processes_all_reduce_through_the_orchestrator() {
    let ports = [39_611, 39_612, 39_613];
    if as_node(ports) {
        return;
    }
    let test = "two_processes_all_reduce_through_the_orchestrator";
    assert!(
        two_nodes(test, 1, ports, Duration::from_secs(60)),
        "the two nodes did not both all-reduce"
    );
}

/// Fails on burn-collective 0.21 (the second global all-reduce never completes); run with
/// `--ignored` after a Burn upgrade.
#[test]
#[ignore = "burn-collective 0.21: the second global all-reduce of a process never completes"]
fn consecutive_all_reduces_across_nodes() {
    let ports = [39_621, 39_622, 39_623];
    if as_node(ports) {
        return;
    }
    let test = "consecutive_all_reduces_across_nodes";
    assert!(
        two_nodes(test, 3, ports, Duration::from_secs(30)),
        "the two nodes did not complete 3 all-reduces in 30 s"
    );
}
