//! Group operations on MPI, one peer per process: run under a launcher, e.g.
//! `mpirun -np 4 target/release/deps/mpi-HASH` (CI runs 2 and 4 processes). Its own `main`
//! (no test harness): MPI is initialised once per process and must be finalised before it
//! exits, which the harness's threads and statics would not allow.
//! Every group operation on the groups' own communicators must give exactly what the same
//! operation gives on world all-reduces (the burn-collective path), on every mesh the world
//! size allows; integer-valued data makes the sums exact in any order. Alone (no launcher),
//! the process is a world of one.
#![cfg(feature = "mpi")]

use std::sync::Arc;

use burn::backend::Flex;
use burn::tensor::{Int, Tensor, TensorData};
use memory_layers_parallel::{Collective, Mesh, MpiCollective, WorldGroups};
use memory_layers_test_support::{host, host_all};
use memory_layers_values::RowGrads;

type B = Flex;

fn floats(values: Vec<f32>, shape: [usize; 2]) -> Tensor<B, 2> {
    Tensor::from_data(TensorData::new(values, shape), &Default::default())
}

/// Every group operation of `mesh`'s memory and replica groups, as host values.
fn operations(mesh: &Mesh<B>, rank: usize) -> Vec<(String, Vec<f32>)> {
    let device = Default::default();
    let mut out = Vec::new();
    for (name, group) in [("memory", mesh.memory()), ("replicas", mesh.replicas())] {
        let size = group.size();
        let mine = floats((0..6).map(|i| (10 * rank + i) as f32).collect(), [2, 3]);
        out.push((
            format!("{name} all_gather"),
            host(group.all_gather(mine.clone()).unwrap()),
        ));
        let big = Tensor::<B, 2, Int>::from_data(
            TensorData::new(vec![(1i64 << 30) + rank as i64, 7], [1, 2]),
            &device,
        );
        let ints = group.all_gather_ints(big).unwrap().into_data();
        out.push((
            format!("{name} all_gather_ints"),
            ints.convert::<f64>()
                .iter::<f64>()
                .map(|v| v as f32 - (1 << 30) as f32)
                .collect(),
        ));
        let parts = (0..size)
            .map(|j| floats(vec![(100 * rank + j) as f32; 3], [1, 3]))
            .collect();
        out.push((
            format!("{name} all_to_all"),
            host_all(group.all_to_all(parts).unwrap()),
        ));
        let rows = floats(
            (0..2 * size).map(|i| (rank * i + 1) as f32).collect(),
            [size, 2],
        );
        out.push((
            format!("{name} reduce_scatter"),
            host(group.reduce_scatter(rows).unwrap()),
        ));
        let mine = Tensor::<B, 1>::from_floats([rank as f32, 1.0, 2.0], &device);
        out.push((
            format!("{name} all_reduce"),
            Tensor::<B, 1>::into_data(group.all_reduce(mine).unwrap())
                .iter::<f32>()
                .collect(),
        ));
        // Rank r touched rows r and 5, and rank 1 none.
        let touched = (rank != 1).then(|| RowGrads {
            ids: Tensor::<B, 1, Int>::from_data(
                TensorData::new(vec![rank as i64, 5], [2]),
                &device,
            ),
            rows: floats(vec![rank as f32 + 1.0, 2.0, 1.0, 1.0], [2, 2]),
        });
        let summed = group.sum_rows(touched, 2, &device).unwrap();
        let (ids, rows) = summed.map_or((Vec::new(), Vec::new()), |g| {
            let ids = g.ids.into_data().convert::<f32>().to_vec::<f32>().unwrap();
            (ids, host(g.rows))
        });
        out.push((format!("{name} sum_rows ids"), ids));
        out.push((format!("{name} sum_rows rows"), rows));
    }
    out
}

fn native_group_operations_equal_the_world_all_reduce_ones(native: &Arc<MpiCollective<B>>) {
    let (rank, world) = (native.rank(), native.world());
    for shards in (1..=world).filter(|s| world.is_multiple_of(*s)) {
        let mesh = Mesh::new(native.clone() as Arc<dyn Collective<B>>, shards).unwrap();
        let emulated = Mesh::new(
            Arc::new(WorldGroups(native.clone() as Arc<dyn Collective<B>>)),
            shards,
        )
        .unwrap();
        let (got, expected) = (operations(&mesh, rank), operations(&emulated, rank));
        for ((name, got), (_, expected)) in got.iter().zip(&expected) {
            assert_eq!(
                got, expected,
                "rank {rank} of {world}, shards {shards}: {name}"
            );
        }
    }
}

fn group_operations_give_the_documented_values(mpi: &Arc<MpiCollective<B>>) {
    let (rank, world) = (mpi.rank(), mpi.world());
    // One memory group of the whole world.
    let mesh = Mesh::new(mpi.clone() as Arc<dyn Collective<B>>, world).unwrap();
    let group = mesh.memory();
    let mine = floats(vec![rank as f32; 2], [1, 2]);
    let expected: Vec<f32> = (0..world).flat_map(|r| [r as f32; 2]).collect();
    assert_eq!(host(group.all_gather(mine).unwrap()), expected);
    let parts = (0..world)
        .map(|j| floats(vec![(10 * rank + j) as f32], [1, 1]))
        .collect();
    let received = host_all(group.all_to_all(parts).unwrap());
    let expected: Vec<f32> = (0..world).map(|src| (10 * src + rank) as f32).collect();
    assert_eq!(received, expected, "block j from member j");
    let ones = floats(vec![1.0; world * 3], [world, 3]);
    assert_eq!(
        host(group.reduce_scatter(ones).unwrap()),
        vec![world as f32; 3]
    );
    let root = (rank == 0).then(|| floats(vec![4.0, 5.0, 6.0, 7.0], [2, 2]));
    let shared = mpi
        .broadcast(root.map(|t| t.into_primitive().tensor()))
        .unwrap();
    let shared = Tensor::<B, 2>::from_primitive(burn::tensor::TensorPrimitive::Float(shared));
    assert_eq!(shared.dims(), [2, 2], "the shape travels too");
    assert_eq!(host(shared), vec![4.0, 5.0, 6.0, 7.0]);
    let traffic = mpi.traffic().expect("MPI counts");
    if world > 1 {
        assert!(
            traffic["all_gather"] > 0 && traffic["reduce_scatter"] > 0,
            "{traffic:?}"
        );
    }
}

/// One check of this process's peer.
type Check = fn(&Arc<MpiCollective<B>>);

fn main() {
    let mpi = Arc::new(MpiCollective::<B>::init().expect("MPI starts"));
    let checks: [(&str, Check); 2] = [
        (
            "native group operations = world all-reduce ones",
            native_group_operations_equal_the_world_all_reduce_ones,
        ),
        (
            "group operations give the documented values",
            group_operations_give_the_documented_values,
        ),
    ];
    for (name, check) in checks {
        check(&mpi);
        println!("rank {} of {}: {name}: ok", mpi.rank(), mpi.world());
    }
    // The last handle: MPI is finalised here, before the process exits.
    drop(mpi);
}
