// The kernel tests of one CubeCL backend, included by cube.rs (wgpu) and cube_cuda.rs
// (CUDA) with the backend as `G`.

use std::sync::Arc;

use burn::tensor::{Tensor, TensorPrimitive};
use memory_layers_parallel::Collective;
use memory_layers_test_support::{host, run_peers};

#[test]
fn every_peer_on_one_device_gets_its_own_result() {
    const OPS: usize = 5000;
    let results = run_peers::<G, _>(2, |rank, collective| {
        let device = Default::default();
        let mut wrong = Vec::new();
        for op in 0..OPS {
            let mine = Tensor::<G, 1>::ones([1024], &device).mul_scalar((rank + 1 + op) as f32);
            let sum = collective
                .all_reduce(mine.into_primitive().tensor())
                .unwrap();
            // The mean: in place when this peer's handle is the last one.
            let mean =
                Tensor::<G, 1>::from_primitive(TensorPrimitive::Float(sum)).div_scalar(2.0);
            let expected = (3 + 2 * op) as f32 / 2.0;
            let values = host(mean);
            if values
                .iter()
                .any(|v| (v - expected).abs() > 1e-3 * expected)
            {
                wrong.push((op, values[0], expected));
            }
        }
        Arc::into_inner(collective).unwrap().finish().unwrap();
        (rank, wrong)
    });
    for (rank, wrong) in results {
        assert!(
            wrong.is_empty(),
            "peer {rank}: {} of {OPS} means wrong, first (op, got, expected): {:?}",
            wrong.len(),
            wrong.first()
        );
    }
}
