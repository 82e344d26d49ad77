use burn::tensor::backend::Backend;
use memory_layers_values::ValueError;

use crate::MemoryOutput;

/// How a memory is used, accumulated over a window of batches: how many values are read at
/// all, how unevenly, how confident the retrieval is, and the scale of the output.
///
/// Call [`UsageStats::record`] after each forward pass you want counted, read
/// [`UsageStats::summary`] at the end of the window, then [`UsageStats::reset`]. Recording
/// reads indices and scores back to the host: do it on logging steps, not on every step.
#[derive(Debug, Clone)]
pub struct UsageStats {
    counts: Vec<u64>,
    weights: Vec<f64>,
    top1_sum: f64,
    rows: u64,
    output_std_sum: f64,
    batches: u64,
}

/// Usage over a window.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct UsageSummary {
    /// Percentage of values selected at least once.
    pub used_pct: f64,
    /// KL divergence of the selection counts (normalised) to the uniform distribution.
    pub kl_uniform: f64,
    /// The same, each selection counted with its softmax weight.
    pub kl_uniform_weighted: f64,
    /// Mean best (pre-softmax) score per token and head.
    pub top1_score: f64,
    /// Mean over batches of the standard deviation of the layer's output.
    #[serde(default)]
    pub output_std: f64,
    /// Batches recorded.
    #[serde(default)]
    pub batches: u64,
}

impl UsageStats {
    /// Statistics for a memory of `size` values (`n_keys²`).
    pub fn new(size: usize) -> Self {
        Self {
            counts: vec![0; size],
            weights: vec![0.0; size],
            top1_sum: 0.0,
            rows: 0,
            output_std_sum: 0.0,
            batches: 0,
        }
    }

    /// Adds one forward pass. An index outside the memory is an error (nothing is recorded).
    pub fn record<B: Backend, const D: usize>(
        &mut self,
        output: &MemoryOutput<B, D>,
    ) -> Result<(), ValueError> {
        let [rows, knn] = output.retrieval.scores.dims();
        let scores = host::<B, 2, f64>(output.retrieval.scores.clone());
        let indices = output
            .retrieval
            .indices
            .clone()
            .into_data()
            .convert::<i64>()
            .into_vec::<i64>()
            .expect("converted on the host");
        let size = self.counts.len();
        if let Some(&index) = indices.iter().find(|&&i| i < 0 || i as usize >= size) {
            return Err(ValueError::IndexOutOfRange { index, rows: size });
        }
        for (row_scores, row_indices) in scores.chunks(knn).zip(indices.chunks(knn)) {
            let best = row_scores[0];
            let exp: Vec<f64> = row_scores.iter().map(|s| (s - best).exp()).collect();
            let total: f64 = exp.iter().sum();
            for (&index, e) in row_indices.iter().zip(exp) {
                self.counts[index as usize] += 1;
                self.weights[index as usize] += e / total;
            }
            self.top1_sum += best;
        }
        self.rows += rows as u64;
        let values = host::<B, D, f64>(output.output.clone());
        self.output_std_sum += std_dev(&values);
        self.batches += 1;
        Ok(())
    }

    /// The statistics of everything recorded since the last reset.
    pub fn summary(&self) -> UsageSummary {
        let used = self.counts.iter().filter(|&&c| c > 0).count();
        let counts: Vec<f64> = self.counts.iter().map(|&c| c as f64).collect();
        let per_row = |sum: f64| {
            if self.rows == 0 {
                0.0
            } else {
                sum / self.rows as f64
            }
        };
        UsageSummary {
            used_pct: 100.0 * used as f64 / self.counts.len().max(1) as f64,
            kl_uniform: kl_to_uniform(&counts),
            kl_uniform_weighted: kl_to_uniform(&self.weights),
            top1_score: per_row(self.top1_sum),
            output_std: if self.batches == 0 {
                0.0
            } else {
                self.output_std_sum / self.batches as f64
            },
            batches: self.batches,
        }
    }

    /// Starts a new window.
    pub fn reset(&mut self) {
        *self = Self::new(self.counts.len());
    }
}

/// `KL(p ‖ uniform) = Σ p_i ln(p_i · N)` for `p` the normalised `mass`; 0 for no mass.
fn kl_to_uniform(mass: &[f64]) -> f64 {
    let total: f64 = mass.iter().sum();
    if total <= 0.0 {
        return 0.0;
    }
    let n = mass.len() as f64;
    mass.iter()
        .filter(|&&m| m > 0.0)
        .map(|&m| {
            let p = m / total;
            p * (p * n).ln()
        })
        .sum()
}

fn std_dev(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt()
}

fn host<B: Backend, const D: usize, E: burn::tensor::Element>(
    tensor: burn::tensor::Tensor<B, D>,
) -> Vec<E> {
    tensor
        .into_data()
        .convert::<E>()
        .into_vec::<E>()
        .expect("converted on the host")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kl_of_uniform_is_zero_and_of_one_hot_is_ln_n() {
        assert!(kl_to_uniform(&[2.0, 2.0, 2.0, 2.0]).abs() < 1e-12);
        assert!((kl_to_uniform(&[0.0, 5.0, 0.0, 0.0]) - 4f64.ln()).abs() < 1e-12);
        assert_eq!(kl_to_uniform(&[0.0, 0.0]), 0.0);
    }

    #[test]
    fn std_dev_of_constant_is_zero() {
        assert_eq!(std_dev(&[3.0; 5]), 0.0);
        assert!((std_dev(&[1.0, -1.0]) - 1.0).abs() < 1e-12);
    }
}
