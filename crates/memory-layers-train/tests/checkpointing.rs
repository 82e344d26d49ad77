//! Activation checkpointing (`train --checkpoint-activations`: Burn's balanced strategy, the
//! results of element-wise operations recomputed in the backward pass) trains the same model:
//! for every variant, the losses, gradient norms and value gradient norms of a few steps
//! follow the run that keeps every activation. Our own operations (retrieval, value lookups,
//! attention, RoPE, the gate, the loss) keep their state either way; this checks that the
//! recomputed operations around them feed them the same tensors.

use burn::backend::autodiff::checkpoint::strategy::BalancedCheckpointing;
use burn::backend::{Autodiff, Flex};
use memory_layers_data::TokenizerKind;
use memory_layers_train::{RunDir, TrainBackend, TrainConfig, TrainOptions, read_metrics, train};
use memory_layers_zoo::{ModelKind, Size};

/// `[loss, grad_norm, value_grad_norm]` of every step of 4 steps of tiny `kind` on `B`.
fn steps<B: TrainBackend>(kind: ModelKind) -> Vec<[f64; 3]> {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = TrainConfig::new(kind, Size::Tiny);
    config.data.embedded_bytes = Some(100_000);
    config.data.facts = None;
    config.data.tokenizer = TokenizerKind::Byte;
    config.optim.steps = 4;
    config.run.out = tmp.path().join("run");
    (config.run.log_every, config.run.eval_every) = (1, 0);
    (
        config.run.eval_tokens,
        config.run.qa_limit,
        config.run.recall_limit,
    ) = (512, 1, 1);
    train::<B>(config, &Default::default(), TrainOptions::default()).unwrap();
    let run = RunDir::new(tmp.path().join("run"));
    read_metrics(&run.metrics())
        .unwrap()
        .iter()
        .map(|l| [l.loss, l.grad_norm, l.value_grad_norm])
        .collect()
}

#[test]
fn every_variant_trains_the_same_with_checkpointed_activations() {
    for kind in ModelKind::ALL {
        let kept = steps::<Autodiff<Flex>>(kind);
        let recomputed = steps::<Autodiff<Flex, BalancedCheckpointing>>(kind);
        assert_eq!(kept.len(), 4, "{kind}: a metrics line per step");
        assert_eq!(recomputed.len(), 4, "{kind}: a metrics line per step");
        for (step, (kept, recomputed)) in kept.iter().zip(&recomputed).enumerate() {
            for (what, (a, b)) in ["loss", "grad_norm", "value_grad_norm"]
                .iter()
                .zip(kept.iter().zip(recomputed))
            {
                assert!(a.is_finite(), "{kind} step {step}: {what} {a}");
                assert!(
                    (a - b).abs() <= 1e-5 * a.abs().max(1e-3),
                    "{kind} step {step}: {what} {a} kept, {b} recomputed"
                );
            }
        }
    }
}
