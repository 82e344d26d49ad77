//! Evaluation: validation loss and perplexity, memory usage, the QA and recall probes
//! (probe.rs); a run's final evaluation, and trained runs opened for evaluation or generation.

use std::path::{Path, PathBuf};

use burn::tensor::ElementConversion;
use memory_layers_nn::{UsageStats, UsageSummary};
use memory_layers_zoo::Transformer;
use memory_layers_zoo::ZooBackend;
use serde::{Deserialize, Serialize};

use crate::phase::Phase;

use crate::TrainError;
use crate::checkpoint::{checkpoint_error, find_checkpoint, load_model};
use crate::config::TrainConfig;
use crate::data::{Batches, Tokenizer};
use crate::loss::lm_loss;
use crate::prepare::RunData;
use crate::probe::{first, qa_scores, recall_score};

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
    /// Standard deviation of the layer's output.
    #[serde(default)]
    pub output_std: f64,
}

impl LayerUsage {
    /// The usage of the product-key layer in block `layer`.
    pub fn new(layer: usize, s: &UsageSummary) -> Self {
        Self {
            layer,
            used_pct: s.used_pct,
            kl_uniform: s.kl_uniform,
            kl_uniform_weighted: s.kl_uniform_weighted,
            top1_score: s.top1_score,
            output_std: s.output_std,
        }
    }
}

/// A usage record that could not be taken (an index outside the memory) as a model error.
pub(crate) fn memory_error(e: memory_layers_values::ValueError) -> TrainError {
    TrainError::Model(memory_layers_zoo::ZooError::Memory(e.into()))
}

/// `eval.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// Mean validation NLL (nats per token).
    pub val_loss: f64,
    /// `exp(val_loss)`.
    pub val_ppl: f64,
    /// Mean NLL on natural text never trained on (the embedded plays after the part trained
    /// on, when `data.embedded_bytes` is set), the language modelling alone.
    #[serde(default)]
    pub text_val_loss: Option<f64>,
    /// QA exact match, percent.
    pub qa_exact_match: f64,
    /// QA token F1, percent.
    pub qa_f1: f64,
    /// Mean NLL of the answer tokens.
    pub qa_answer_nll: f64,
    /// Questions scored.
    pub qa_count: usize,
    /// Questions in the QA set (`qa_limit` scores the first `qa_count` of them).
    #[serde(default)]
    pub qa_total: usize,
    /// Percent of recall probes whose greedy continuation starts with the fact; `None`
    /// without probes.
    #[serde(default)]
    pub fact_recall: Option<f64>,
    /// Recall probes scored.
    #[serde(default)]
    pub recall_count: usize,
    /// Recall probes in the set (`recall_limit` scores the first `recall_count`).
    #[serde(default)]
    pub recall_total: usize,
    /// Per product-key layer.
    pub memory_layers: Vec<LayerUsage>,
}

/// Validation loss over the first `limit` batches (0: all), and the memory usage seen there.
pub fn validate<B: ZooBackend>(
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
    for batch in batches.val_batches(batch_size).take(limit) {
        let (tokens, sequences) = batch?;
        let (loss, out) = lm_loss(model, &tokens, sequences, device, None)?;
        model.check_value_ranges()?;
        total += loss.into_scalar().elem::<f64>() * sequences as f64;
        count += sequences;
        for (i, (layer, memory)) in out.memory.iter().enumerate() {
            if stats.len() <= i {
                stats.push((*layer, UsageStats::new(memory_size)));
            }
            stats[i].1.record(memory).map_err(memory_error)?;
        }
    }
    let usage = stats
        .into_iter()
        .map(|(layer, s)| LayerUsage::new(layer, &s.summary()))
        .collect();
    Ok((total / count.max(1) as f64, usage))
}

/// The final evaluation of a run: validation loss and memory usage over every validation
/// sequence, the first `qa_limit` QA pairs and the first `recall_limit` recall probes.
pub fn evaluate<B: ZooBackend>(
    model: &Transformer<B>,
    config: &TrainConfig,
    data: &RunData,
    device: &B::Device,
    progress: bool,
) -> Result<EvalReport, TrainError> {
    let memory_size = config.model.product_keys.n_keys.pow(2);
    let batch = config.optim.batch_size;
    let phase = Phase::start(progress, "evaluating: validation loss");
    let (val_loss, memory_layers) = validate(model, &data.batches, batch, 0, memory_size, device)?;
    let text_val_loss = match &data.text_val {
        Some(text) => Some(validate(model, text, batch, 0, memory_size, device)?.0),
        None => None,
    };
    phase.done(format!("{val_loss:.4}"));
    let questions = first(&data.qa, config.run.qa_limit);
    let qa = if questions.is_empty() {
        qa_scores(model, &data.tokenizer, questions, device)?
    } else {
        let phase = Phase::start(
            progress,
            format!("evaluating: {} QA questions", questions.len()),
        );
        let qa = qa_scores(model, &data.tokenizer, questions, device)?;
        phase.done(format!("exact match {:.2}%", qa.exact_match));
        qa
    };
    let recall = first(&data.recall, config.run.recall_limit);
    let fact_recall = if recall.is_empty() {
        recall_score(model, &data.tokenizer, recall)?
    } else {
        let phase = Phase::start(
            progress,
            format!("evaluating: {} fact-recall probes", recall.len()),
        );
        let score = recall_score(model, &data.tokenizer, recall)?;
        phase.done(score.map_or("no probes".to_string(), |r| format!("{r:.2}%")));
        score
    };
    Ok(EvalReport {
        val_loss,
        val_ppl: val_loss.exp(),
        text_val_loss,
        qa_exact_match: qa.exact_match,
        qa_f1: qa.f1,
        qa_answer_nll: qa.answer_nll,
        qa_count: qa.count,
        qa_total: data.qa.len(),
        fact_recall,
        recall_count: recall.len(),
        recall_total: data.recall.len(),
        memory_layers,
    })
}

/// A trained run opened for evaluation or generation.
pub struct OpenRun<B: ZooBackend> {
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
pub fn open_run<B: ZooBackend>(path: &Path, device: &B::Device) -> Result<OpenRun<B>, TrainError> {
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
