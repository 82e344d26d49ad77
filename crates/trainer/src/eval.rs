//! Evaluation: validation loss and perplexity, QA (exact match, F1, answer NLL), memory usage;
//! a run's final evaluation, and trained runs opened for evaluation or generation.

use std::path::{Path, PathBuf};

use burn::tensor::ElementConversion;
use memory_layer::{MemoryBackend, UsageStats};
use model_zoo::{Sampler, Transformer, generate};
use serde::{Deserialize, Serialize};

use crate::TrainError;
use crate::checkpoint::{checkpoint_error, find_checkpoint, load_model};
use crate::config::TrainConfig;
use crate::data::{Batches, QaPair, QaScores, Tokenizer, exact_match, prompt, token_f1};
use crate::loss::{lm_loss, nll, token_tensor};
use crate::prepare::RunData;

/// Longest generated answer, in tokens.
const MAX_ANSWER_TOKENS: usize = 24;

/// How one product-key layer was used on the validation set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerUsage {
    /// Block index.
    pub layer: usize,
    /// Percent of values (or PEER experts) selected at least once.
    pub used_pct: f64,
    /// KL of the selection counts to uniform.
    pub kl_uniform: f64,
    /// KL of the softmax-weighted selections to uniform.
    pub kl_uniform_weighted: f64,
    /// Mean best score.
    pub top1_score: f64,
}

/// `eval.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// Mean validation NLL (nats per token).
    pub val_loss: f64,
    /// `exp(val_loss)`.
    pub val_ppl: f64,
    /// QA exact match, percent.
    pub qa_exact_match: f64,
    /// QA token F1, percent.
    pub qa_f1: f64,
    /// Mean NLL of the answer tokens.
    pub qa_answer_nll: f64,
    /// Questions scored.
    pub qa_count: usize,
    /// Per product-key layer.
    pub memory_layers: Vec<LayerUsage>,
}

/// Validation loss over the first `limit` batches (0: all), and the memory usage seen there.
pub fn validate<B: MemoryBackend>(
    model: &Transformer<B>,
    batches: &Batches,
    batch_size: usize,
    limit: usize,
    memory_size: usize,
    device: &B::Device,
) -> Result<(f64, Vec<LayerUsage>), TrainError> {
    let limit = if limit == 0 { usize::MAX } else { limit };
    let (mut total, mut count) = (0.0, 0usize);
    let mut stats: Vec<(usize, UsageStats)> = Vec::new();
    for (tokens, sequences) in batches.val_batches(batch_size).take(limit) {
        let (loss, out) = lm_loss(model, &tokens, sequences, device, None)?;
        total += loss.into_scalar().elem::<f64>() * sequences as f64;
        count += sequences;
        for (i, (layer, memory)) in out.memory.iter().enumerate() {
            if stats.len() <= i {
                stats.push((*layer, UsageStats::new(memory_size)));
            }
            stats[i]
                .1
                .record(memory)
                .map_err(|e| TrainError::Model(model_zoo::ZooError::Memory(e.into())))?;
        }
    }
    let usage = stats
        .into_iter()
        .map(|(layer, s)| {
            let s = s.summary();
            LayerUsage {
                layer,
                used_pct: s.used_pct,
                kl_uniform: s.kl_uniform,
                kl_uniform_weighted: s.kl_uniform_weighted,
                top1_score: s.top1_score,
            }
        })
        .collect();
    Ok((total / count.max(1) as f64, usage))
}

/// Scores the first `limit` QA pairs (0: all): greedy answers up to a newline, SQuAD exact
/// match and F1, and the NLL of ` {answer}\n` after the prompt (prompt and answer are
/// tokenized separately and concatenated).
pub fn qa_scores<B: MemoryBackend>(
    model: &Transformer<B>,
    tokenizer: &Tokenizer,
    qa: &[QaPair],
    limit: usize,
    device: &B::Device,
) -> Result<QaScores, TrainError> {
    let qa = if limit == 0 {
        qa
    } else {
        &qa[..limit.min(qa.len())]
    };
    let (mut em, mut f1, mut answer_nll) = (0.0, 0.0, 0.0);
    for pair in qa {
        let prompt_ids = tokenizer.encode(&prompt(&pair.question));
        let answer = generate(
            model,
            &prompt_ids,
            MAX_ANSWER_TOKENS,
            Sampler::Greedy,
            |ids| tokenizer.decode(ids).contains('\n'),
        )?;
        let text = tokenizer.decode(&answer);
        let predicted = text.split('\n').next().unwrap_or_default().trim();
        em += exact_match(predicted, &pair.answer);
        f1 += token_f1(predicted, &pair.answer);

        let answer_ids = tokenizer.encode(&format!(" {}\n", pair.answer));
        let ids: Vec<u32> = prompt_ids.iter().chain(&answer_ids).copied().collect();
        let all = token_tensor::<B>(&ids, 1, device);
        let n = ids.len();
        let logits = model.forward(all.clone().slice_dim(1, 0..n - 1))?.logits;
        let per_token = nll(logits, all.slice_dim(1, 1..n));
        let start = prompt_ids.len() - 1;
        answer_nll += per_token
            .slice_dim(1, start..n - 1)
            .mean()
            .into_scalar()
            .elem::<f64>();
    }
    let count = qa.len();
    let mean = |x: f64| if count == 0 { 0.0 } else { x / count as f64 };
    Ok(QaScores {
        exact_match: 100.0 * mean(em),
        f1: 100.0 * mean(f1),
        answer_nll: mean(answer_nll),
        count,
    })
}

/// The final evaluation of a run: validation loss and memory usage over every validation
/// sequence, and the first `qa_limit` QA pairs.
pub fn evaluate<B: MemoryBackend>(
    model: &Transformer<B>,
    config: &TrainConfig,
    data: &RunData,
    device: &B::Device,
) -> Result<EvalReport, TrainError> {
    let memory_size = config.model.product_keys.n_keys.pow(2);
    let batch = config.optim.batch_size;
    let (val_loss, memory_layers) = validate(model, &data.batches, batch, 0, memory_size, device)?;
    let qa = qa_scores(
        model,
        &data.tokenizer,
        &data.qa,
        config.run.qa_limit,
        device,
    )?;
    Ok(EvalReport {
        val_loss,
        val_ppl: val_loss.exp(),
        qa_exact_match: qa.exact_match,
        qa_f1: qa.f1,
        qa_answer_nll: qa.answer_nll,
        qa_count: qa.count,
        memory_layers,
    })
}

/// A trained run opened for evaluation or generation.
pub struct OpenRun<B: MemoryBackend> {
    /// The run directory.
    pub dir: PathBuf,
    /// Its configuration.
    pub config: TrainConfig,
    /// Its tokenizer.
    pub tokenizer: Tokenizer,
    /// The model of its last checkpoint.
    pub model: Transformer<B>,
}

/// Opens a run directory, or a checkpoint folder inside one.
pub fn open_run<B: MemoryBackend>(
    path: &Path,
    device: &B::Device,
) -> Result<OpenRun<B>, TrainError> {
    let dir = if path.join("state.json").exists() {
        path.parent().unwrap_or(path).to_path_buf()
    } else {
        path.to_path_buf()
    };
    let config = TrainConfig::load(&dir.join("config.toml"))?;
    let tokenizer = Tokenizer::load(config.data.tokenizer, &dir)?;
    let checkpoint = find_checkpoint(&dir)
        .ok_or_else(|| checkpoint_error(&dir, "no checkpoint in this run directory"))?;
    let model = load_model(config.model.init::<B>(device)?, &checkpoint, device)?;
    Ok(OpenRun {
        dir,
        config,
        tokenizer,
        model,
    })
}
