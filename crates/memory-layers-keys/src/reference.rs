//! Brute-force retrieval over all `n_keys²` keys, a tie-aware comparison of top-k results, and
//! the pair scores in plain tensor ops (the default of [`RetrievalBackend`](crate::RetrievalBackend)
//! that kernels are tested against).
//!
//! The brute force concatenates the two sub-keys of every pair into a full key and scores it
//! in f64, independent of the product-key shortcut it checks. Top-k results are compared up to
//! ties: rank by rank the scores must agree, and every returned index must really have the
//! score returned for it; indices may differ only where scores tie within the tolerance.

use std::fmt;

use burn::tensor::backend::Backend;
use burn::tensor::{IndexingUpdateOp, Int, Tensor};

use crate::Retrieval;

/// `s1[i1] + s2[i2]` for sub-key scores `[heads, 2, T, n_keys]` and positions `[heads, T, knn]`,
/// as rows `t·heads + h`: `[T·heads, knn]`.
pub fn pair_scores<B: Backend>(
    scores: Tensor<B, 4>,
    i1: Tensor<B, 3, Int>,
    i2: Tensor<B, 3, Int>,
) -> Tensor<B, 2> {
    let [heads, t, knn] = i1.dims();
    scores
        .gather(3, positions(i1, i2))
        .sum_dim(1)
        .reshape([heads, t, knn])
        .swap_dims(0, 1)
        .reshape([t * heads, knn])
}

/// The gradient `[heads, 2, T, n_keys]` of [`pair_scores`] for `grad: [T·heads, knn]`.
pub fn pair_scores_backward<B: Backend>(
    grad: Tensor<B, 2>,
    i1: Tensor<B, 3, Int>,
    i2: Tensor<B, 3, Int>,
    n_keys: usize,
) -> Tensor<B, 4> {
    let [heads, t, knn] = i1.dims();
    let grad = grad
        .reshape([t, heads, knn])
        .swap_dims(0, 1)
        .unsqueeze_dim::<4>(1);
    let device = grad.device();
    Tensor::zeros([heads, 2, t, n_keys], &device).scatter(
        3,
        positions(i1, i2),
        Tensor::cat(vec![grad.clone(), grad], 1),
        IndexingUpdateOp::Add,
    )
}

/// Both halves' positions `[heads, 2, T, knn]`.
fn positions<B: Backend>(i1: Tensor<B, 3, Int>, i2: Tensor<B, 3, Int>) -> Tensor<B, 4, Int> {
    Tensor::cat(vec![i1.unsqueeze_dim(1), i2.unsqueeze_dim(1)], 1)
}

/// Top-k rows on the host: entry `j` of row `r` is at `r·k + j`, best first.
#[derive(Debug, Clone, PartialEq)]
pub struct TopK {
    /// Entries per row.
    pub k: usize,
    /// Scores, descending within each row.
    pub scores: Vec<f64>,
    /// Value indices.
    pub indices: Vec<i64>,
}

impl TopK {
    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.scores.len().checked_div(self.k).unwrap_or(0)
    }

    /// Reads a retrieval back to the host.
    pub fn from_retrieval<B: Backend>(retrieval: &Retrieval<B>) -> Self {
        let [_, k] = retrieval.scores.dims();
        let scores = host_f64(retrieval.scores.clone());
        let indices = retrieval
            .indices
            .clone()
            .into_data()
            .convert::<i64>()
            .into_vec::<i64>()
            .expect("converted to i64");
        Self { k, scores, indices }
    }
}

/// Exact search over every full key `[k1[i1]; k2[i2]]`, scored in f64.
#[derive(Debug, Clone)]
pub struct BruteForce {
    queries: Vec<f64>,
    sub_keys: Vec<f64>,
    heads: usize,
    n_keys: usize,
    half: usize,
}

impl BruteForce {
    /// Takes queries `[T, heads, k_dim]` and sub-keys `[heads, 2, n_keys, k_dim/2]`.
    pub fn new<B: Backend>(queries: Tensor<B, 3>, sub_keys: Tensor<B, 4>) -> Self {
        let [heads, _, n_keys, half] = sub_keys.dims();
        Self {
            queries: host_f64(queries),
            sub_keys: host_f64(sub_keys),
            heads,
            n_keys,
            half,
        }
    }

    /// Number of query rows (`T·heads`).
    pub fn rows(&self) -> usize {
        self.queries.len() / (2 * self.half)
    }

    /// Exact score of value `index` for query row `row` (row `t·heads + h`).
    pub fn score(&self, row: usize, index: i64) -> f64 {
        let head = row % self.heads;
        let (i1, i2) = (index as usize / self.n_keys, index as usize % self.n_keys);
        let query = &self.queries[row * 2 * self.half..(row + 1) * 2 * self.half];
        let key = |side: usize, i: usize| {
            let start = ((head * 2 + side) * self.n_keys + i) * self.half;
            &self.sub_keys[start..start + self.half]
        };
        // The full key is the concatenation of the two sub-keys.
        let full_key = key(0, i1).iter().chain(key(1, i2));
        query.iter().zip(full_key).map(|(q, k)| q * k).sum()
    }

    /// The best `k` of all `n_keys²` keys per row, ties broken by the smaller index.
    pub fn topk(&self, k: usize) -> TopK {
        let n = (self.n_keys * self.n_keys) as i64;
        let mut scores = Vec::with_capacity(self.rows() * k);
        let mut indices = Vec::with_capacity(self.rows() * k);
        for row in 0..self.rows() {
            let mut all: Vec<(f64, i64)> = (0..n).map(|i| (self.score(row, i), i)).collect();
            // Descending score, the two zeros equal (`-0.0 + 0.0` is `+0.0`), then smaller index.
            all.sort_by(|a, b| (b.0 + 0.0).total_cmp(&(a.0 + 0.0)).then(a.1.cmp(&b.1)));
            for &(score, index) in &all[..k] {
                scores.push(score);
                indices.push(index);
            }
        }
        TopK { k, scores, indices }
    }
}

/// Where two top-k results disagree.
#[derive(Debug, Clone, PartialEq)]
pub struct TopKMismatch {
    /// Query row.
    pub row: usize,
    /// Rank within the row.
    pub rank: usize,
    /// What disagrees.
    pub reason: String,
}

impl fmt::Display for TopKMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "row {}, rank {}: {}", self.row, self.rank, self.reason)
    }
}

impl std::error::Error for TopKMismatch {}

/// Checks that `actual` is a correct top-k given the `expected` one, up to ties.
///
/// `score_of(row, index)` gives the true score of an index when it is known (`None` when it is
/// not, e.g. an index absent from a fixture's list: it is then accepted only as a tie with the
/// expected last score). Scores agree when `|a - b| ≤ tol · max(1, |b|)`.
pub fn compare_topk(
    actual: &TopK,
    expected: &TopK,
    score_of: impl Fn(usize, i64) -> Option<f64>,
    tol: f64,
) -> Result<(), TopKMismatch> {
    let close = |a: f64, b: f64| (a - b).abs() <= tol * b.abs().max(1.0);
    if actual.k != expected.k || actual.rows() != expected.rows() {
        return Err(TopKMismatch {
            row: 0,
            rank: 0,
            reason: format!(
                "shape [{}, {}] differs from expected [{}, {}]",
                actual.rows(),
                actual.k,
                expected.rows(),
                expected.k
            ),
        });
    }
    let k = actual.k;
    for row in 0..actual.rows() {
        let range = row * k..(row + 1) * k;
        let (a_scores, a_indices) = (
            &actual.scores[range.clone()],
            &actual.indices[range.clone()],
        );
        let e_scores = &expected.scores[range];
        let mismatch = |rank, reason| Err(TopKMismatch { row, rank, reason });
        for rank in 0..k {
            let (score, index) = (a_scores[rank], a_indices[rank]);
            if !close(score, e_scores[rank]) {
                return mismatch(
                    rank,
                    format!("score {score} differs from expected {}", e_scores[rank]),
                );
            }
            if a_indices[..rank].contains(&index) {
                return mismatch(rank, format!("index {index} returned twice"));
            }
            let true_score = score_of(row, index).unwrap_or(e_scores[k - 1]);
            if !close(score, true_score) {
                return mismatch(
                    rank,
                    format!("index {index} has score {true_score}, but {score} was returned"),
                );
            }
        }
    }
    Ok(())
}

fn host_f64<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> Vec<f64> {
    tensor
        .into_data()
        .convert::<f64>()
        .into_vec::<f64>()
        .expect("converted to f64")
}
