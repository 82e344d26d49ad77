//! Every model variant can memorise one batch: the loss, gradients and both optimizer groups
//! work together.

use burn::backend::{Autodiff, Flex};
use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::activation::log_softmax;
use burn::tensor::{ElementConversion, Int, Tensor, TensorData};
use model_zoo::{ModelKind, Size, preset};
use trainer::{TrainConfig, adamw, clip_global_norm, value_param_ids};

type B = Autodiff<Flex>;

#[test]
fn one_batch_is_memorised_by_every_variant() {
    let device = Default::default();
    let (batch, len) = (4, 24);
    let ids: Vec<i64> = (0..(batch * (len + 1)) as i64)
        .map(|i| (i * 7919 + 13) % 256)
        .collect();
    let tokens = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [batch, len + 1]), &device);
    let inputs = tokens.clone().slice_dim(1, 0..len);
    let targets = tokens.slice_dim(1, 1..len + 1);
    for kind in ModelKind::ALL {
        let config = TrainConfig::new(kind, Size::Tiny);
        let mut model = preset(kind, Size::Tiny, None).init::<B>(&device).unwrap();
        let mut optim = adamw(&config.optim).init::<B, _>();
        let mut value_optim = adamw(&config.optim).init::<B, _>();
        let value_ids = value_param_ids(&model);
        assert_eq!(
            value_ids.is_empty(),
            matches!(kind, ModelKind::Dense | ModelKind::Moe),
            "{kind}"
        );
        let mut losses = Vec::new();
        for _ in 0..60 {
            let logits = model.forward(inputs.clone()).unwrap().logits;
            let loss = log_softmax(logits, 2)
                .gather(2, targets.clone().unsqueeze_dim(2))
                .mean()
                .neg();
            losses.push(loss.clone().into_scalar().elem::<f64>());
            let mut grads = loss.backward();
            let mut values = GradientsParams::from_params(&mut grads, &model, &value_ids);
            let mut main = GradientsParams::from_grads(grads, &model);
            clip_global_norm(&model, &mut main, 1.0);
            clip_global_norm(&model, &mut values, 1.0);
            model = optim.step(3e-3, model, main);
            if !value_ids.is_empty() {
                model = value_optim.step(1e-2, model, values);
            }
        }
        let (first, last) = (losses[0], *losses.last().unwrap());
        assert!(last < 0.2 * first, "{kind}: loss {first:.3} → {last:.3}");
    }
}
