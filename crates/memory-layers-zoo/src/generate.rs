use crate::ZooBackend;
use burn::tensor::{Int, Tensor, TensorData};

use crate::{SplitMix64, Transformer, ZooError};

/// How the next token is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampler {
    /// The most likely token.
    Greedy,
    /// Sample from `softmax(logits / temperature)`, restricted to the `top_k` most likely
    /// tokens (`0`: no limit) and within them to the smallest set whose probability reaches
    /// `top_p` (`top_p = 1` keeps all).
    Sample {
        /// Softmax temperature (> 0).
        temperature: f64,
        /// Most likely tokens kept (`0`: all).
        top_k: usize,
        /// Nucleus mass in `(0, 1]`.
        top_p: f64,
        /// Seed of the sampler's random stream.
        seed: u64,
    },
}

/// Continues `prompt` by up to `max_tokens` tokens with a KV cache, stopping as soon as
/// `stop(generated)` is true (e.g. the decoded text holds a newline). Returns the new tokens.
pub fn generate<B: ZooBackend>(
    model: &Transformer<B>,
    prompt: &[u32],
    max_tokens: usize,
    sampler: Sampler,
    mut stop: impl FnMut(&[u32]) -> bool,
) -> Result<Vec<u32>, ZooError> {
    let device = model.embedding.weight.device();
    let mut caches = model.new_caches();
    let mut rng = match sampler {
        Sampler::Sample { seed, .. } => SplitMix64::new(seed),
        Sampler::Greedy => SplitMix64::new(0),
    };
    let mut next_input: Vec<u32> = prompt.to_vec();
    let mut generated = Vec::new();
    while generated.len() < max_tokens && !next_input.is_empty() {
        let ids: Vec<i64> = next_input.iter().map(|&t| t as i64).collect();
        let len = ids.len();
        let tokens = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [1, len]), &device);
        let logits = model.forward_cached(tokens, &mut caches)?.logits;
        model.check_value_ranges()?;
        let [_, _, vocab] = logits.dims();
        let last: Vec<f64> = logits
            .slice_dim(1, len - 1..len)
            .reshape([vocab])
            .into_data()
            .convert::<f64>()
            .into_vec()
            .expect("converted to f64");
        let token = choose(&last, sampler, &mut rng);
        generated.push(token);
        if stop(&generated) {
            break;
        }
        next_input = vec![token];
    }
    Ok(generated)
}

fn choose(logits: &[f64], sampler: Sampler, rng: &mut SplitMix64) -> u32 {
    let argmax = || {
        (0..logits.len())
            .max_by(|&a, &b| logits[a].total_cmp(&logits[b]).then(b.cmp(&a)))
            .unwrap_or(0) as u32
    };
    let Sampler::Sample {
        temperature,
        top_k,
        top_p,
        ..
    } = sampler
    else {
        return argmax();
    };
    if temperature <= 0.0 {
        return argmax();
    }
    let best = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut probs: Vec<(usize, f64)> = logits
        .iter()
        .enumerate()
        .map(|(i, &l)| (i, ((l - best) / temperature).exp()))
        .collect();
    probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    if top_k > 0 {
        probs.truncate(top_k);
    }
    let total: f64 = probs.iter().map(|p| p.1).sum();
    let mut kept = 0.0;
    let mut nucleus = Vec::new();
    for (i, p) in probs {
        nucleus.push((i, p));
        kept += p / total;
        if kept >= top_p {
            break;
        }
    }
    let mass: f64 = nucleus.iter().map(|p| p.1).sum();
    let mut u = rng.next_f64() * mass;
    for &(i, p) in &nucleus {
        if u < p {
            return i as u32;
        }
        u -= p;
    }
    nucleus.last().map_or(0, |p| p.0 as u32)
}
