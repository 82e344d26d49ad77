//! The knowledge measure in bits: batched scoring equals scoring each fact alone by hand, a
//! model that has learned nothing holds about nothing, and the facts' entropy is exact.

use std::sync::Mutex;

use burn::backend::Flex;
use burn::tensor::activation::log_softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use memory_layers_data::{CompactFacts, CompactFactsConfig, Tokenizer};
use memory_layers_train::{Knowledge, answer_nlls, knowledge};
use memory_layers_zoo::{ModelKind, Size, Transformer, preset};

fn corpus() -> (CompactFactsConfig, CompactFacts) {
    let config = CompactFactsConfig {
        people: 30,
        attributes: 4,
        values: 16,
        exposures: 1,
        seed: 9,
    };
    let facts = CompactFacts::generate(&config).unwrap();
    (config, facts)
}

/// An untrained model, seeded: unseeded, one draw in a few dozen held 5.8% of the bits (28 of
/// 480; seeds 0–29 give 0.7–3.8%).
fn model(vocab: usize) -> Transformer<Flex> {
    // The RNG is the backend's, shared by the tests' threads: one seeded draw at a time.
    static RNG: Mutex<()> = Mutex::new(());
    let _draw = RNG.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut config = preset(ModelKind::MemoryPlus, Size::Tiny, None);
    config.vocab_size = vocab;
    Flex::seed(&Default::default(), 0);
    config.init::<Flex>(&Default::default()).unwrap()
}

/// The NLL of `answer` after `prompt`, from one unpadded forward pass and a log-softmax.
fn by_hand(model: &Transformer<Flex>, tokenizer: &Tokenizer, prompt: &str, answer: &str) -> f64 {
    let (prompt, answer) = (
        tokenizer.encode(prompt),
        tokenizer.encode(&format!(" {answer}")),
    );
    let ids: Vec<i64> = prompt
        .iter()
        .chain(&answer)
        .map(|&t| i64::from(t))
        .collect();
    let n = ids.len();
    let input = Tensor::<Flex, 2, Int>::from_data(
        TensorData::new(ids[..n - 1].to_vec(), [1, n - 1]),
        &Default::default(),
    );
    let logp = log_softmax(model.forward(input).unwrap().logits, 2)
        .into_data()
        .convert::<f64>()
        .into_vec::<f64>()
        .unwrap();
    let vocab = logp.len() / (n - 1);
    (0..answer.len())
        .map(|i| {
            let position = prompt.len() - 1 + i;
            -logp[position * vocab + answer[i] as usize]
        })
        .sum()
}

#[test]
fn batched_scores_equal_each_fact_scored_alone() {
    let (_, facts) = corpus();
    let model = model(facts.tokenizer.vocab_size());
    let probes: Vec<_> = facts.probes.iter().collect();
    let batched = answer_nlls(&model, &facts.tokenizer, &probes, &Default::default()).unwrap();
    assert_eq!(batched.len(), probes.len());
    for (probe, nll) in probes.iter().zip(&batched) {
        let alone = by_hand(&model, &facts.tokenizer, &probe.prompt, &probe.answer);
        assert!(
            (nll - alone).abs() < 1e-4 * alone.abs().max(1.0),
            "{nll} vs {alone}"
        );
    }
}

#[test]
fn an_untrained_model_holds_about_nothing_of_an_exact_entropy() {
    let (config, facts) = corpus();
    let model = model(facts.tokenizer.vocab_size());
    let known = knowledge(&model, &facts.tokenizer, &facts.probes, &Default::default())
        .unwrap()
        .unwrap();
    assert_eq!(known.facts, 30 * 4);
    assert!((known.total_bits - config.bits()).abs() < 1e-9);
    assert!((config.bits() - 30.0 * 4.0 * 4.0).abs() < 1e-12);
    // About log2(vocab) bits of cross-entropy against 4 bits a fact: nothing, or next to it.
    assert!(known.bits < 0.05 * known.total_bits, "{known:?}");
    // Probes without a number of choices are not facts of the measure.
    let mut plain = facts.probes.clone();
    plain.iter_mut().for_each(|p| p.choices = None);
    assert_eq!(
        knowledge(&model, &facts.tokenizer, &plain, &Default::default()).unwrap(),
        None::<Knowledge>
    );
}
