//! With a row-wise value optimizer, a step updates the value pool where it lies: a copy of the
//! table per step would make step time grow with the table instead of the rows touched.

use burn::backend::{Autodiff, Flex};
use memory_layers_train::{Stepper, TrainConfig, ValueOptimizer};
use memory_layers_zoo::{ModelKind, Size, preset};

type B = Autodiff<Flex>;

fn pool_buffer(stepper: &Stepper<B>) -> usize {
    let pool = stepper.model.pool.as_ref().expect("Memory+ has a pool");
    let inner = pool.weight.val().inner().into_primitive().tensor();
    inner.as_slice::<f32>().unwrap().as_ptr() as usize
}

#[test]
fn row_wise_value_optimizers_update_the_pool_in_place() {
    let device = Default::default();
    for value_optimizer in [ValueOptimizer::SparseAdamW, ValueOptimizer::RowwiseAdagrad] {
        let mut config = TrainConfig::new(ModelKind::MemoryPlus, Size::Tiny);
        (config.optim.batch_size, config.optim.seq_len) = (2, 16);
        config.optim.value_optimizer = value_optimizer;
        let model = preset(ModelKind::MemoryPlus, Size::Tiny, None)
            .init::<B>(&device)
            .unwrap();
        let mut stepper = Stepper::new(model, &config.optim);
        let tokens: Vec<u32> = (0..2 * 17).map(|i| (i * 31 + 7) % 256).collect();
        let batches = vec![tokens];
        stepper.step(&batches, 1.0, None, &device).unwrap();
        let before = pool_buffer(&stepper);
        for step in 1..3 {
            stepper.step(&batches, 1.0, None, &device).unwrap();
            assert_eq!(
                pool_buffer(&stepper),
                before,
                "{value_optimizer}: step {step} copied the pool"
            );
        }
    }
}
