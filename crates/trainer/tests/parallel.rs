//! Data-parallel training with the value pool sharded over the peers (burn-collective, one
//! thread per peer on Flex) follows one device that sees the whole global batch.

use std::sync::Arc;
use std::thread;

use burn::backend::{Autodiff, Flex};
use burn::collective::reset_collective;
use burn::module::Module;
use memory_parallel::{BurnCollective, CollectiveConfig};
use model_zoo::{ModelKind, Size, preset};
use trainer::{Learner, Peer, TrainConfig, TrainError, ValueOptimizer};

type A = Autodiff<Flex>;

const STEPS: usize = 30;
const BATCH: usize = 4;
const SEQ: usize = 16;

/// burn-collective keeps one server per backend type: one test at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The global batch of step `step`: `BATCH` windows of `SEQ + 1` tokens.
fn global_batch(step: usize) -> Vec<u32> {
    (0..BATCH * (SEQ + 1))
        .map(|i| ((i * 31 + step * 17 + (i * i) % 7) % 256) as u32)
        .collect()
}

fn config(value_optimizer: ValueOptimizer, batch: usize) -> TrainConfig {
    let mut config = TrainConfig::new(ModelKind::MemoryPlus, Size::Tiny);
    (config.optim.batch_size, config.optim.seq_len) = (batch, SEQ);
    config.optim.value_optimizer = value_optimizer;
    config
}

/// Per-step losses of `devices` peers training together (mean over the peers).
fn parallel_losses(
    model: &model_zoo::Transformer<A>,
    devices: usize,
    value_optimizer: ValueOptimizer,
) -> Vec<f64> {
    reset_collective::<Flex>();
    let handles: Vec<_> = (0..devices)
        .map(|rank| {
            let model = model.clone();
            thread::spawn(move || -> Result<Vec<f64>, TrainError> {
                let device = Default::default();
                let collective = BurnCollective::<Flex>::register(
                    rank,
                    &device,
                    CollectiveConfig::default().with_num_devices(devices),
                    devices,
                )
                .unwrap();
                let peer = Peer::new(Arc::new(collective), device)?;
                let per = BATCH / devices;
                let mut learner = match value_optimizer {
                    // What `train_parallel` does: one whole learner, one share per peer.
                    ValueOptimizer::SparseAdamW => {
                        Learner::new(model, &config(value_optimizer, BATCH).optim)
                            .for_peer(&peer, &device)?
                    }
                    // Dense AdamW's state does not split, but a fresh one may start sharded.
                    _ => Learner::new(
                        peer.shard(model.fork(&device))?,
                        &config(value_optimizer, per).optim,
                    ),
                };
                (0..STEPS)
                    .map(|step| {
                        let tokens = global_batch(step);
                        let window = SEQ + 1;
                        let mine = tokens[rank * per * window..(rank + 1) * per * window].to_vec();
                        let report = learner.step_parallel(&peer, &[mine], 1.0, None, &device)?;
                        assert!(report.value_grad_norm > 0.0, "no value gradient");
                        Ok(report.loss)
                    })
                    .collect()
            })
        })
        .collect();
    let losses: Vec<Vec<f64>> = handles
        .into_iter()
        .map(|h| h.join().unwrap().unwrap())
        .collect();
    for other in &losses[1..] {
        assert_eq!(other, &losses[0], "peers report different losses");
    }
    losses.into_iter().next().unwrap()
}

#[test]
fn sharded_data_parallel_training_follows_one_device() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let device = Default::default();
    let model = preset(ModelKind::MemoryPlus, Size::Tiny, None)
        .init::<A>(&device)
        .unwrap();
    // Burn initialises parameters lazily, per clone: materialise them once for every peer.
    let record = model.clone().into_record();
    let model = model.load_record(record);
    for value_optimizer in [ValueOptimizer::SparseAdamW, ValueOptimizer::DenseAdamW] {
        let mut single = Learner::new(model.clone(), &config(value_optimizer, BATCH).optim);
        let expected: Vec<f64> = (0..STEPS)
            .map(|step| {
                single
                    .step(&[global_batch(step)], 1.0, None, &device)
                    .unwrap()
                    .loss
            })
            .collect();
        for devices in [2, 4] {
            let losses = parallel_losses(&model, devices, value_optimizer);
            for (step, (l, e)) in losses.iter().zip(&expected).enumerate() {
                assert!(
                    (l - e).abs() <= 1e-3 * e.abs(),
                    "{value_optimizer}, {devices} devices, step {step}: {l} vs {e}"
                );
            }
        }
        assert!(
            expected[STEPS - 1] < expected[0],
            "{value_optimizer}: the model did not learn"
        );
    }
}

#[test]
fn unsupported_layouts_are_clear_errors() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let device = Default::default();
    reset_collective::<Flex>();
    let collective = BurnCollective::<Flex>::register(
        0,
        &device,
        CollectiveConfig::default().with_num_devices(1),
        1,
    )
    .unwrap();
    let peer = Peer::new(Arc::new(collective), device).unwrap();
    let peer_model = preset(ModelKind::Peer, Size::Tiny, None)
        .init::<A>(&device)
        .unwrap();
    let err = peer.shard(peer_model).unwrap_err();
    assert!(err.to_string().contains("PEER"), "{err}");
}
