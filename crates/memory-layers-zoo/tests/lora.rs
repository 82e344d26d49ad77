//! LoRA: an adapted model starts as its base, gradients reach the adapters alone, and the
//! merged weights (what a checkpoint and an export hold) compute what the adapters do.

use burn::backend::{Autodiff, Flex};
use burn::module::{AutodiffModule, Module, Param};
use burn::tensor::{Distribution, Int, Tensor};
use memory_layers_zoo::hf::{MODEL_FILE, export_model, load_hf};
use memory_layers_zoo::{LoraConfig, ModelKind, Size, Transformer, preset};

type B = Autodiff<Flex>;

fn logits(model: &Transformer<Flex>) -> Vec<f32> {
    let tokens = Tensor::<Flex, 2, Int>::from_ints(
        [[1, 5, 9, 200, 17, 3], [4, 4, 8, 15, 16, 23]],
        &Default::default(),
    );
    model
        .forward(tokens)
        .unwrap()
        .logits
        .into_data()
        .convert::<f32>()
        .into_vec()
        .unwrap()
}

#[test]
fn adapters_start_at_the_base_and_merge_into_what_they_compute() {
    let device = Default::default();
    for kind in [ModelKind::Dense, ModelKind::MemoryPlus] {
        let config = preset(kind, Size::Tiny, None);
        let model = config.init::<B>(&device).unwrap();
        let lora = LoraConfig::new(4, 8.0).init(&model, &device).unwrap();
        // Per block wq, wk, wv, wo, and w1, w2, w3 where the FFN is dense.
        let dense = config.layers - config.product_key_layers().len();
        assert_eq!(lora.len(), 4 * config.layers + 3 * dense, "{kind}");

        // B = 0: the adapted model is the base, bit for bit.
        let base = logits(&model.valid());
        assert_eq!(logits(&lora.apply(&model).valid()), base, "{kind}");

        // Gradients reach A and B (B's first, A's after B moves) and not the base.
        let frozen = model.clone().no_grad();
        let tokens = Tensor::<B, 2, Int>::from_ints([[1, 2, 3, 4]], &device);
        let loss = lora.apply(&frozen).forward(tokens).unwrap().logits.mean();
        let grads = loss.backward();
        let pair = &lora.pairs[0];
        assert!(pair.b.val().grad(&grads).is_some(), "B gets a gradient");
        assert!(
            frozen.blocks[0]
                .attention
                .wq
                .weight
                .val()
                .grad(&grads)
                .is_none()
        );

        // Random B: merging equals applying, and an export of the merge loads back to it.
        let mut moved = lora.clone();
        for pair in &mut moved.pairs {
            let [r, d] = pair.b.val().dims();
            pair.b = Param::from_tensor(Tensor::random(
                [r, d],
                Distribution::Normal(0.0, 0.1),
                &device,
            ));
        }
        let applied = logits(&moved.apply(&model).valid());
        let merged = moved.merge(&model).valid();
        assert_ne!(applied, base, "{kind}: the adapters change the model");
        assert_eq!(logits(&merged), applied, "{kind}: merged = applied");
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("export");
        export_model(&merged, &config, &dir).unwrap();
        let fresh = config.init::<Flex>(&device).unwrap();
        let (loaded, _) = load_hf(fresh, &config, &dir.join(MODEL_FILE)).unwrap();
        let exported = logits(&loaded);
        let worst = exported
            .iter()
            .zip(&applied)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-4, "{kind}: exported merge differs by {worst}");
    }
}

#[test]
fn a_rank_of_zero_or_a_bad_scale_is_named() {
    let model = preset(ModelKind::Dense, Size::Tiny, None)
        .init::<Flex>(&Default::default())
        .unwrap();
    let e = LoraConfig::new(0, 8.0)
        .init(&model, &Default::default())
        .err()
        .unwrap();
    assert!(e.to_string().contains("lora.rank"), "{e}");
    let e = LoraConfig::new(4, -1.0)
        .init(&model, &Default::default())
        .err()
        .unwrap();
    assert!(e.to_string().contains("lora.alpha"), "{e}");
}
