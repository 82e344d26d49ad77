//! Evaluation: validation loss and perplexity, memory usage, the QA and recall probes
//! (probe.rs); a run's final evaluation.

use std::path::PathBuf;

use memory_layers_data::progress::{Phase, Progress};
use memory_layers_data::{Batches, PrepareConfig, Split, TokenizerKind, prepare_corpus};
use memory_layers_nn::UsageStats;
use memory_layers_zoo::{Transformer, ZooBackend};
use serde::{Deserialize, Serialize};

use crate::config::TrainConfig;
use crate::knowledge::{Knowledge, knowledge};
use crate::loss::sequence_losses;
use crate::pool::on_pool;
use crate::prepare::{RunData, prepare_data};
use crate::probe::{first, qa_scores, recall_score};
use crate::{LayerUsage, OpenRun, TrainError};

/// `eval.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// Mean validation NLL (nats per token).
    pub val_loss: f64,
    /// `exp(val_loss)`.
    pub val_ppl: f64,
    /// Standard error of `val_loss` over the validation sequences scored.
    #[serde(default)]
    pub val_loss_se: f64,
    /// Validation tokens scored (`run.eval_tokens` of them, or every one).
    #[serde(default)]
    pub val_tokens: usize,
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
    /// What the model holds of the facts of every recall probe that says how many values
    /// its fact could take, in bits; `None` without such probes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub knowledge: Option<Knowledge>,
    /// Per product-key layer.
    pub memory_layers: Vec<LayerUsage>,
}

/// A validation loss: the mean over the sequences scored, the standard error of that mean,
/// and the tokens scored.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ValLoss {
    /// Mean NLL per token (nats).
    pub mean: f64,
    /// Standard error of the mean over the sequences scored.
    pub se: f64,
    /// Tokens scored.
    pub tokens: usize,
}

impl ValLoss {
    /// The loss of sequences of `len` tokens whose mean losses are `losses`.
    fn of(losses: &[f64], len: usize) -> Self {
        let n = losses.len().max(1) as f64;
        let mean = losses.iter().sum::<f64>() / n;
        let var = losses.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
        Self {
            mean,
            se: (var / n).sqrt(),
            tokens: losses.len() * len,
        }
    }
}

/// Validation loss over `sequences` spread over the split (`None`: all), and the memory usage
/// seen there; as `progress` (a phase with a rate and an ETA) where given.
pub fn validate<B: ZooBackend>(
    model: &Transformer<B>,
    batches: &Batches,
    batch_size: usize,
    sequences: Option<usize>,
    memory_size: usize,
    device: &B::Device,
    progress: Option<&str>,
) -> Result<(ValLoss, Vec<LayerUsage>), TrainError> {
    let total = sequences.map_or(batches.len(Split::Val), |m| m.min(batches.len(Split::Val)));
    let mut bar = progress.map(|what| Progress::start(true, what, total, "sequences"));
    let mut losses = Vec::with_capacity(total);
    let mut stats: Vec<(usize, UsageStats)> = Vec::new();
    for batch in batches.val_sample(batch_size, sequences) {
        let (tokens, count) = batch?;
        let (seq_losses, out) = sequence_losses(model, &tokens, count, device)?;
        model.check_value_ranges()?;
        losses.extend(seq_losses);
        for (i, (layer, memory)) in out.memory.iter().enumerate() {
            if stats.len() <= i {
                stats.push((*layer, UsageStats::new(memory_size)));
            }
            stats[i].1.record(memory)?;
        }
        if let Some(bar) = &mut bar {
            bar.add(count);
        }
    }
    let loss = ValLoss::of(&losses, batches.window() - 1);
    if let Some(bar) = bar {
        bar.done(format!(
            "{:.4} ± {:.4} over {} tokens",
            loss.mean, loss.se, loss.tokens
        ));
    }
    let usage = stats
        .into_iter()
        .map(|(layer, s)| LayerUsage::new(layer, s.summary()))
        .collect();
    Ok((loss, usage))
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
    on_pool::<B, _>(|| {
        let memory_size = config.model.product_keys.n_keys.pow(2);
        let batch = config.optim.batch_size;
        let budget = config.run.eval_sequences(config.optim.seq_len);
        let say = |what| progress.then_some(what);
        let (val, memory_layers) = validate(
            model,
            &data.batches,
            batch,
            budget,
            memory_size,
            device,
            say("evaluating: validation loss"),
        )?;
        let text_val_loss = match &data.text_val {
            Some(text) => Some(
                validate(
                    model,
                    text,
                    batch,
                    budget,
                    memory_size,
                    device,
                    say("evaluating: text loss"),
                )?
                .0
                .mean,
            ),
            None => None,
        };
        let questions = first(&data.qa, config.run.qa_limit);
        let qa = qa_scores(model, &data.tokenizer, questions, device, progress)?;
        let recall = first(&data.recall, config.run.recall_limit);
        let fact_recall = recall_score(model, &data.tokenizer, recall, progress)?;
        let knowledge = known_bits(model, data, device, progress)?;
        Ok(EvalReport {
            val_loss: val.mean,
            val_ppl: val.mean.exp(),
            val_loss_se: val.se,
            val_tokens: val.tokens,
            text_val_loss,
            qa_exact_match: qa.exact_match,
            qa_f1: qa.f1,
            qa_answer_nll: qa.answer_nll,
            qa_count: qa.count,
            qa_total: data.qa.len(),
            fact_recall,
            recall_count: recall.len(),
            recall_total: data.recall.len(),
            knowledge,
            memory_layers,
        })
    })
}

/// The knowledge of every recall probe with a number of choices, announced as a phase.
pub(crate) fn known_bits<B: ZooBackend>(
    model: &Transformer<B>,
    data: &RunData,
    device: &B::Device,
    progress: bool,
) -> Result<Option<Knowledge>, TrainError> {
    let facts = data.recall.iter().filter(|p| p.choices.is_some()).count();
    if facts == 0 {
        return Ok(None);
    }
    let phase = Phase::start(progress, format!("evaluating: knowledge of {facts} facts"));
    let known = knowledge(model, &data.tokenizer, &data.recall, device)?;
    if let Some(k) = &known {
        phase.done(format!(
            "{:.0} of {:.0} bits ({:.1}%)",
            k.bits,
            k.total_bits,
            100.0 * k.bits / k.total_bits.max(1e-12)
        ));
    }
    Ok(known)
}

/// What [`evaluate_run`] scores instead of the run's own data; `None` (or empty) keeps the
/// run's.
#[derive(Debug, Clone, Default)]
pub struct EvalOptions {
    /// Text whose loss is scored instead of the validation split: files and folders as
    /// `data.paths` reads them, tokenised with the run's tokenizer, all of it held out.
    pub data: Vec<PathBuf>,
    /// QA set.
    pub qa: Option<PathBuf>,
    /// Questions scored (0: all).
    pub qa_limit: Option<usize>,
    /// Fact-recall probes.
    pub recall: Option<PathBuf>,
    /// Recall probes scored (0: all).
    pub recall_limit: Option<usize>,
    /// Validation tokens scored (0: all).
    pub eval_tokens: Option<usize>,
    /// A line per slow phase on stderr.
    pub progress: bool,
}

/// Evaluates a trained run (as [`evaluate`] does at the end of training) on its own data or
/// on what `options` give.
pub fn evaluate_run<B: ZooBackend>(
    run: &OpenRun<B>,
    options: &EvalOptions,
    device: &B::Device,
) -> Result<EvalReport, TrainError> {
    let mut config = run.config.clone();
    // Where `data` is prepared: unique per call (two evaluations in one process do not share
    // it), removed when dropped at the end of the evaluation.
    let scratch = (!options.data.is_empty())
        .then(|| {
            tempfile::Builder::new()
                .prefix("memory-layers-eval-")
                .tempdir()
        })
        .transpose()
        .map_err(TrainError::io(std::env::temp_dir()))?;
    if let Some(scratch) = &scratch {
        let prepared = scratch.path().join("prepared");
        let tokenizer_file =
            (config.data.tokenizer == TokenizerKind::Bpe).then(|| run.dir.tokenizer());
        let prepare = PrepareConfig {
            text_field: config.data.text_field.clone(),
            tokenizer: config.data.tokenizer,
            tokenizer_file,
            val_fraction: 1.0,
            ..PrepareConfig::new(options.data.clone(), prepared.clone())
        };
        prepare_corpus(&prepare, &[], options.progress)?;
        config.data.paths.clear();
        config.data.tokenizer_file = None;
        config.data.prepared = Some(prepared);
        config.data.facts = None;
    }
    if let Some(qa) = &options.qa {
        config.data.qa = Some(qa.clone());
    }
    if let Some(recall) = &options.recall {
        config.data.recall = Some(recall.clone());
    }
    let run_config = &mut config.run;
    run_config.qa_limit = options.qa_limit.unwrap_or(run_config.qa_limit);
    run_config.recall_limit = options.recall_limit.unwrap_or(run_config.recall_limit);
    run_config.eval_tokens = options.eval_tokens.unwrap_or(run_config.eval_tokens);
    let data = prepare_data(&mut config, &run.dir, true, options.progress)?;
    evaluate(&run.model, &config, &data, device, options.progress)
}
