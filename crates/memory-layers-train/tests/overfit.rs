//! Every model variant can memorise one batch through [`Stepper::step`], with every value
//! optimizer where the model has value tables: the loss, gradients (dense and sparse) and the
//! optimizer groups work together.

use burn::backend::{Autodiff, Flex};
use memory_layers_train::{Stepper, TrainConfig, ValueOptimizer, value_param_ids};
use memory_layers_zoo::{ModelKind, Size, preset};

type B = Autodiff<Flex>;

#[test]
fn one_batch_is_memorised_by_every_variant_and_value_optimizer() {
    let device = Default::default();
    let (batch, len) = (4, 24);
    let tokens: Vec<u32> = (0..(batch * (len + 1)) as u32)
        .map(|i| (i * 7919 + 13) % 256)
        .collect();
    for kind in ModelKind::ALL {
        let model = preset(kind, Size::Tiny, None).init::<B>(&device).unwrap();
        let has_values = !value_param_ids(&model).is_empty();
        assert_eq!(
            has_values,
            !matches!(kind, ModelKind::Dense | ModelKind::Moe),
            "{kind}"
        );
        let optimizers: &[ValueOptimizer] = if has_values {
            &[
                ValueOptimizer::DenseAdamW,
                ValueOptimizer::SparseAdamW,
                ValueOptimizer::RowwiseAdagrad,
            ]
        } else {
            &[ValueOptimizer::default()]
        };
        for &value_optimizer in optimizers {
            let mut config = TrainConfig::new(kind, Size::Tiny);
            let o = &mut config.optim;
            (o.batch_size, o.seq_len, o.lr, o.value_lr) = (batch, len, 3e-3, 1e-2);
            o.value_optimizer = value_optimizer;
            let mut stepper = Stepper::new(model.clone(), &config.optim);
            let batches = vec![tokens.clone()];
            let losses: Vec<f64> = (0..60)
                .map(|_| stepper.step(&batches, 1.0, None, &device).unwrap())
                .map(|report| {
                    if has_values {
                        assert!(report.value_grad_norm > 0.0, "{kind} {value_optimizer}");
                    }
                    report.loss
                })
                .collect();
            let (first, last) = (losses[0], *losses.last().unwrap());
            assert!(
                last < 0.2 * first,
                "{kind} with {value_optimizer}: loss {first:.3} → {last:.3}"
            );
        }
    }
}
