//! Knowledge in bits (Allen-Zhu & Li, "Physics of Language Models: Part 3.3, Knowledge
//! Capacity Scaling Laws", 2024): a fact whose value is one of `choices` equally likely
//! values holds `log2(choices)` bits, and a model holds `max(0, log2(choices) − CE)` of them,
//! `CE` being its cross-entropy in bits on the value after the prompt. Unlike exact recall,
//! a half-learned fact counts for what the model knows of it; guessing counts for nothing.

use burn::tensor::{Int, Tensor, TensorData};
use memory_layers_data::{RecallProbe, Tokenizer};
use memory_layers_zoo::{Transformer, ZooBackend, token_nll};
use serde::{Deserialize, Serialize};

use crate::TrainError;

/// Sequences scored in one forward pass.
const BATCH: usize = 256;

/// What a model holds of the probed facts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Knowledge {
    /// Bits the model holds, summed over the facts.
    pub bits: f64,
    /// Bits the facts hold (their entropy): the most a model could hold.
    pub total_bits: f64,
    /// Facts probed.
    pub facts: usize,
}

impl Knowledge {
    /// The knowledge of facts given as `(choices, nll)`: the values each could take, and the
    /// model's negative log-likelihood of its value in nats.
    pub fn of(facts: impl IntoIterator<Item = (usize, f64)>) -> Self {
        let (mut bits, mut total_bits, mut count) = (0.0, 0.0, 0);
        for (choices, nll) in facts {
            let entropy = (choices as f64).log2();
            bits += (entropy - nll / std::f64::consts::LN_2).max(0.0);
            total_bits += entropy;
            count += 1;
        }
        Self {
            bits,
            total_bits,
            facts: count,
        }
    }
}

/// The knowledge `model` holds of the probes that say how many values their fact could take
/// (`None` if none does).
pub fn knowledge<B: ZooBackend>(
    model: &Transformer<B>,
    tokenizer: &Tokenizer,
    probes: &[RecallProbe],
    device: &B::Device,
) -> Result<Option<Knowledge>, TrainError> {
    let probed: Vec<&RecallProbe> = probes.iter().filter(|p| p.choices.is_some()).collect();
    if probed.is_empty() {
        return Ok(None);
    }
    let nlls = answer_nlls(model, tokenizer, &probed, device)?;
    let choices = probed.iter().map(|p| p.choices.unwrap_or(1));
    Ok(Some(Knowledge::of(choices.zip(nlls))))
}

/// The negative log-likelihood in nats of each probe's answer (` {answer}`, tokenised apart
/// from the prompt, as QA answers are) after its prompt, scored in batches padded on the right
/// (the model is causal: padding after a sequence does not change its logits). A prompt
/// longer than the context keeps its end.
pub fn answer_nlls<B: ZooBackend>(
    model: &Transformer<B>,
    tokenizer: &Tokenizer,
    probes: &[&RecallProbe],
    device: &B::Device,
) -> Result<Vec<f64>, TrainError> {
    let context = model.max_seq_len();
    let sequences: Vec<(Vec<u32>, usize)> = probes
        .iter()
        .map(|probe| {
            let answer = tokenizer.encode(&format!(" {}", probe.answer));
            let mut ids = tokenizer.encode(&probe.prompt);
            let keep = context.saturating_sub(answer.len()).max(1);
            ids.drain(..ids.len().saturating_sub(keep));
            ids.extend(&answer);
            ids.truncate(context);
            let answer_len = answer.len().min(ids.len() - 1);
            (ids, answer_len)
        })
        .collect();
    let mut nlls = Vec::with_capacity(sequences.len());
    for batch in sequences.chunks(BATCH) {
        let len = batch.iter().map(|(ids, _)| ids.len()).max().unwrap_or(1);
        let mut flat = vec![0i64; batch.len() * len];
        for (row, (ids, _)) in flat.chunks_mut(len).zip(batch) {
            for (slot, &id) in row.iter_mut().zip(ids) {
                *slot = i64::from(id);
            }
        }
        let all = Tensor::<B, 2, Int>::from_data(TensorData::new(flat, [batch.len(), len]), device);
        let logits = model.forward(all.clone().slice_dim(1, 0..len - 1))?.logits;
        model.check_value_ranges()?;
        let per_token = token_nll(logits, all.slice_dim(1, 1..len))
            .into_data()
            .convert::<f64>()
            .into_vec::<f64>()
            .expect("f64 after conversion");
        for (row, (ids, answer_len)) in per_token.chunks(len - 1).zip(batch) {
            // Target position t predicts ids[t + 1]: the answer's tokens are the last
            // `answer_len` of the sequence.
            let end = ids.len() - 1;
            nlls.push(row[end - answer_len..end].iter().sum());
        }
    }
    Ok(nlls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_perfect_predictor_holds_the_entropy_and_a_guess_nothing() {
        let facts = [(16, 0.0), (30, 0.0), (16800, 0.0)];
        let perfect = Knowledge::of(facts);
        let entropy = 4.0 + 30f64.log2() + 16800f64.log2();
        assert!((perfect.bits - entropy).abs() < 1e-9);
        assert_eq!(perfect.total_bits, perfect.bits);
        assert_eq!(perfect.facts, 3);
        // A uniform guess over the values holds nothing; a worse one is floored at 0.
        let guess = Knowledge::of(facts.map(|(c, _)| (c, (c as f64).ln())));
        assert!(guess.bits.abs() < 1e-9, "{}", guess.bits);
        assert_eq!(Knowledge::of(facts.map(|(c, _)| (c, 100.0))).bits, 0.0);
        // One bit of 4 known: the value narrowed from 16 to 8.
        let half = Knowledge::of([(16, 8f64.ln())]);
        assert!((half.bits - 1.0).abs() < 1e-9);
    }
}
