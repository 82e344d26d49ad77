//! Data-parallel training with the value pool sharded over memory groups of the ranks
//! (burn-collective, one thread per rank on Flex) follows one device that sees the whole
//! global batch: every layout of N ranks in groups of P, each value optimizer, PEER's
//! replicated expert tables.

use burn::backend::{Autodiff, Flex};
use burn::module::Module;
use burn::tensor::backend::Backend;
use memory_layers_test_support::{run_peers, serial};
use memory_layers_train::{Rank, Stepper, TrainConfig, TrainError, ValueOptimizer};
use memory_layers_zoo::{ModelKind, Size, preset};

type A = Autodiff<Flex>;

const STEPS: usize = 30;
const BATCH: usize = 4;
const SEQ: usize = 16;

/// The global batch of step `step`: `BATCH` windows of `SEQ + 1` tokens, eight batches in turn
/// (so that 30 steps visibly lower the loss).
fn global_batch(step: usize) -> Vec<u32> {
    (0..BATCH * (SEQ + 1))
        .map(|i| ((i * 31 + (step % 8) * 17 + (i * i) % 7) % 256) as u32)
        .collect()
}

fn config(kind: ModelKind, value_optimizer: ValueOptimizer, batch: usize) -> TrainConfig {
    let mut config = TrainConfig::new(kind, Size::Tiny);
    (config.optim.batch_size, config.optim.seq_len) = (batch, SEQ);
    config.optim.value_optimizer = value_optimizer;
    config
}

/// Per-step losses of `devices` ranks in memory groups of `shards` training together (mean
/// over the ranks), or the first rank's error.
fn parallel_losses(
    kind: ModelKind,
    model: &memory_layers_zoo::Transformer<A>,
    (devices, shards): (usize, usize),
    value_optimizer: ValueOptimizer,
) -> Result<Vec<f64>, TrainError> {
    let losses = run_peers::<Flex, _>(devices, |index, collective| {
        let device = Default::default();
        let rank = Rank::new(collective, device, shards)?;
        let per = BATCH / devices;
        // What `train_parallel` does: one whole stepper, one share per rank.
        let mut stepper = Stepper::new(model.clone(), &config(kind, value_optimizer, BATCH).optim)
            .for_rank(&rank, &device)?;
        (0..STEPS)
            .map(|step| {
                let tokens = global_batch(step);
                let window = SEQ + 1;
                let mine = tokens[index * per * window..(index + 1) * per * window].to_vec();
                let report = stepper.step_parallel(&rank, &[mine], 1.0, None, &device)?;
                assert!(report.value_grad_norm > 0.0, "no value gradient");
                Ok(report.loss)
            })
            .collect::<Result<Vec<f64>, TrainError>>()
    })
    .into_iter()
    .collect::<Result<Vec<_>, _>>()?;
    for other in &losses[1..] {
        assert_eq!(other, &losses[0], "ranks report different losses");
    }
    Ok(losses.into_iter().next().unwrap())
}

/// A freshly initialised model of `kind`, its parameters materialised (Burn initialises them
/// lazily, per clone) so that every rank starts from the same values.
fn model(kind: ModelKind) -> memory_layers_zoo::Transformer<A> {
    let device = Default::default();
    <A as Backend>::seed(&device, 5);
    let model = preset(kind, Size::Tiny, None).init::<A>(&device).unwrap();
    let record = model.clone().into_record();
    model.load_record(record)
}

/// Each case: model, value optimizer, (devices, memory group) layouts.
fn check_layouts(kind: ModelKind, value_optimizer: ValueOptimizer, layouts: &[(usize, usize)]) {
    let device = Default::default();
    let model = model(kind);
    let mut single = Stepper::new(model.clone(), &config(kind, value_optimizer, BATCH).optim);
    let expected: Vec<f64> = (0..STEPS)
        .map(|step| {
            single
                .step(&[global_batch(step)], 1.0, None, &device)
                .unwrap()
                .loss
        })
        .collect();
    for &layout in layouts {
        let losses = parallel_losses(kind, &model, layout, value_optimizer).unwrap();
        for (step, (l, e)) in losses.iter().zip(&expected).enumerate() {
            assert!(
                (l - e).abs() <= 1e-3 * e.abs(),
                "{kind:?}, {value_optimizer}, (devices, memory group) {layout:?}, step {step}: \
                 {l} vs {e}"
            );
        }
    }
    let mean = |losses: &[f64]| losses.iter().sum::<f64>() / losses.len() as f64;
    assert!(
        mean(&expected[STEPS - 4..]) < mean(&expected[..4]),
        "{kind:?}, {value_optimizer}: the model did not learn: {expected:?}"
    );
}

#[test]
fn sharded_data_parallel_training_follows_one_device() {
    let _serial = serial();
    let memory_plus = ModelKind::MemoryPlus;
    check_layouts(
        memory_plus,
        ValueOptimizer::SparseAdamW,
        &[(2, 2), (4, 4), (4, 2), (4, 1)],
    );
    check_layouts(
        memory_plus,
        ValueOptimizer::DenseAdamW,
        &[(2, 2), (4, 2), (2, 1)],
    );
    check_layouts(memory_plus, ValueOptimizer::RowwiseAdagrad, &[(2, 1)]);
}

#[test]
fn replicated_peer_experts_follow_one_device() {
    let _serial = serial();
    check_layouts(ModelKind::Peer, ValueOptimizer::SparseAdamW, &[(2, 1)]);
    check_layouts(ModelKind::Peer, ValueOptimizer::DenseAdamW, &[(2, 2)]);
}

/// Trained 10 steps alone, 10 as two ranks with the pool split in two, then gathered and
/// trained 10 more alone, a stepper follows 30 steps alone: sharding and gathering carry the
/// optimizer state (lazy and dense AdamW moments) both ways.
#[test]
fn optimizer_state_survives_shard_and_gather() {
    let _serial = serial();
    let kind = ModelKind::MemoryPlus;
    let device = Default::default();
    for value_optimizer in [ValueOptimizer::SparseAdamW, ValueOptimizer::DenseAdamW] {
        let optim = config(kind, value_optimizer, BATCH).optim;
        let model = model(kind);
        let mut alone = Stepper::new(model.clone(), &optim);
        let step = |stepper: &mut Stepper<A>, step| {
            stepper
                .step(&[global_batch(step)], 1.0, None, &device)
                .unwrap()
                .loss
        };
        let expected: Vec<f64> = (0..30).map(|s| step(&mut alone, s)).collect();

        let mut stepper = Stepper::new(model, &optim);
        let mut losses: Vec<f64> = (0..10).map(|s| step(&mut stepper, s)).collect();
        let stepper = &stepper;
        let (rank_losses, gathered) = run_peers::<Flex, _>(2, |index, collective| {
            let device = Default::default();
            let rank = Rank::new(collective, device, 2).unwrap();
            let mut mine = stepper.for_rank(&rank, &device).unwrap();
            let per = BATCH / 2 * (SEQ + 1);
            let losses: Vec<f64> = (10..20)
                .map(|s| {
                    let tokens = global_batch(s)[index * per..(index + 1) * per].to_vec();
                    mine.step_parallel(&rank, &[tokens], 1.0, None, &device)
                        .unwrap()
                        .loss
                })
                .collect();
            (losses, mine.gather(&rank).unwrap())
        })
        .swap_remove(0);
        losses.extend(rank_losses);
        let mut stepper = gathered;
        losses.extend((20..30).map(|s| step(&mut stepper, s)));
        for (s, (l, e)) in losses.iter().zip(&expected).enumerate() {
            assert!(
                (l - e).abs() <= 1e-3 * e.abs(),
                "{value_optimizer}, step {s}: {l} vs {e}"
            );
        }
    }
}

#[test]
fn unsupported_layouts_are_clear_errors() {
    let _serial = serial();
    let kind = ModelKind::MemoryPlus;
    let err =
        parallel_losses(kind, &model(kind), (2, 2), ValueOptimizer::RowwiseAdagrad).unwrap_err();
    assert!(err.to_string().contains("sparse-adamw"), "{err}");
    let err = parallel_losses(kind, &model(kind), (2, 3), ValueOptimizer::SparseAdamW).unwrap_err();
    assert!(err.to_string().contains("do not divide"), "{err}");
}
