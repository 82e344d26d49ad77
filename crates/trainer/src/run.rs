//! The training loop.

use std::path::{Path, PathBuf};
use std::time::Instant;

use std::sync::Arc;

use burn::module::{AutodiffModule, Module};
use burn::tensor::backend::{AutodiffBackend, DTypeUsage, set_default_float_dtype};
use burn::tensor::{DType, FloatDType};
use indicatif::{ProgressBar, ProgressStyle};
use memory_layer::MemoryBackend;
use memory_parallel::{BurnCollective, CollectiveConfig, ShardedBackend};
use model_zoo::Transformer;
use serde::{Deserialize, Serialize};

use crate::TrainError;
use crate::checkpoint::{TrainState, find_checkpoint, load_state, save_checkpoint, write_atomic};
use crate::config::{Precision, TrainConfig};
use crate::data::{
    Batches, Facts, QaPair, Tokenizer, TokenizerKind, embedded_shakespeare, load_documents, load_qa,
};
use crate::eval::{EvalReport, qa_scores, validate};
use crate::learner::{Learner, StepReport, checkpoint_error, load_model};
use crate::metrics::{MetricsLine, MetricsLog, loss_svg, read_metrics};
use crate::parallel::{Layout, Peer};

/// How to run.
#[derive(Debug, Clone, Copy, Default)]
pub struct TrainOptions {
    /// Continue the run in `config.run.out` from its checkpoint, with its `config.toml`.
    pub resume: bool,
    /// Show a progress bar.
    pub progress: bool,
}

/// What a finished run reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainSummary {
    /// The run's configuration (vocabulary resolved).
    pub config: TrainConfig,
    /// Steps done.
    pub steps: usize,
    /// Loss of the last step.
    pub final_loss: f64,
    /// Training tokens consumed.
    pub tokens: u64,
    /// Training seconds (excluding evaluation).
    pub train_seconds: f64,
    /// Final evaluation.
    pub eval: EvalReport,
}

/// The data of a run: tokenizer, batches and held-out QA.
pub struct RunData {
    /// The tokenizer (trained on the training text, or loaded from the run).
    pub tokenizer: Tokenizer,
    /// Training and validation sequences.
    pub batches: Batches,
    /// QA pairs for evaluation.
    pub qa: Vec<QaPair>,
}

/// Builds the run's data; trains and saves the tokenizer unless the run directory has one
/// (`reuse_tokenizer`). Sets `config.model.vocab_size` from the tokenizer.
pub fn prepare_data(
    config: &mut TrainConfig,
    out: &Path,
    reuse_tokenizer: bool,
) -> Result<RunData, TrainError> {
    let data = &config.data;
    let mut documents = if data.paths.is_empty() {
        vec![embedded_shakespeare()]
    } else {
        load_documents(&data.paths)?
    };
    let facts = data.facts.as_ref().map(Facts::generate);
    if let Some(facts) = &facts {
        documents.extend(facts.training.iter().cloned());
    }
    let tokenizer = if reuse_tokenizer {
        Tokenizer::load(data.tokenizer, out)?
    } else {
        let tokenizer = match data.tokenizer {
            TokenizerKind::Byte => Tokenizer::Byte,
            TokenizerKind::Bpe => Tokenizer::train_bpe(
                documents.iter().map(|d| d.text.as_str()),
                config.model.vocab_size,
            )?,
        };
        tokenizer.save(out)?;
        tokenizer
    };
    config.model.vocab_size = tokenizer.vocab_size();
    let separator = tokenizer.encode("\n\n");
    let mut tokens = Vec::new();
    for document in &documents {
        tokens.extend(tokenizer.encode(&document.text));
        tokens.extend_from_slice(&separator);
    }
    let batches = Batches::new(
        &tokens,
        config.optim.seq_len,
        data.val_fraction,
        config.run.seed,
    )?;
    let qa = match (&data.qa, &facts) {
        (Some(path), _) => load_qa(path)?,
        (None, Some(facts)) => facts.heldout_qa.clone(),
        (None, None) => Vec::new(),
    };
    Ok(RunData {
        tokenizer,
        batches,
        qa,
    })
}

/// Trains `config.model` on `config.data`, writing the run directory `config.run.out`
/// (config.toml, tokenizer, metrics.jsonl, checkpoint/, eval.json, loss.svg).
pub fn train<B>(
    config: TrainConfig,
    device: &B::Device,
    options: TrainOptions,
) -> Result<TrainSummary, TrainError>
where
    B: AutodiffBackend + MemoryBackend,
    B::InnerBackend: MemoryBackend,
{
    let run = start::<B>(config, device, options)?;
    let learner = run.learner::<B>(device)?;
    run.train_loop(learner, &Alone, device)?
        .ok_or_else(|| TrainError::Parallel("a single-device run always reports".into()))
}

/// [`train`] on the `N` peers of `layout`, one thread each on its device (`devices[rank]`;
/// the CPU's one device may repeat): data parallel over all of them, the value pool sharded
/// over memory groups of `P`. Checkpoints hold the whole model, so a run resumes on any
/// layout. Rank 0 writes the run directory.
pub fn train_parallel<B>(
    config: TrainConfig,
    devices: &[B::Device],
    options: TrainOptions,
    layout: &Layout,
) -> Result<TrainSummary, TrainError>
where
    B: AutodiffBackend
        + MemoryBackend
        + ShardedBackend<Comm = <B as AutodiffBackend>::InnerBackend>,
    B::InnerBackend: MemoryBackend,
{
    layout.validate(config.optim.batch_size)?;
    let n = layout.devices;
    let [device, ..] = devices else {
        return Err(TrainError::Parallel("no device to train on".into()));
    };
    if devices.len() != n {
        return Err(TrainError::Parallel(format!(
            "{n} peers need {n} devices, but {} were given",
            devices.len()
        )));
    }
    let run = start::<B>(config, device, options)?;
    let whole = run.learner::<B>(device)?;
    let results: Vec<Result<Option<TrainSummary>, TrainError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..n)
            .map(|rank| {
                let (run, whole, device) = (&run, &whole, &devices[rank]);
                scope.spawn(move || -> Result<Option<TrainSummary>, TrainError> {
                    let collective = BurnCollective::<B::InnerBackend>::register(
                        rank,
                        device,
                        CollectiveConfig::default().with_num_devices(n),
                        n,
                    )
                    .map_err(|e| TrainError::Parallel(e.to_string()))?;
                    let collective = Arc::new(collective);
                    let summary =
                        Peer::new(collective.clone(), device.clone(), layout.memory_parallel)
                            .and_then(|peer| {
                                let learner = whole.for_peer(&peer, device)?;
                                run.train_loop(learner, &AsPeer(&peer), device)
                            });
                    // Unregistered whatever happened, so that this process can start another run.
                    let finished = Arc::into_inner(collective)
                        .map(|c| c.finish().map_err(|e| TrainError::Parallel(e.to_string())));
                    let summary = summary?;
                    finished.transpose()?;
                    Ok(summary)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(TrainError::Parallel("a peer thread panicked".into())))
            })
            .collect()
    });
    let mut summary = None;
    for result in results {
        if let Some(s) = result? {
            summary = Some(s);
        }
    }
    summary.ok_or_else(|| TrainError::Parallel("no peer reported".into()))
}

/// A run set up: configuration resolved and saved, data ready, the checkpoint to resume.
struct Run {
    config: TrainConfig,
    data: RunData,
    checkpoint: Option<PathBuf>,
    options: TrainOptions,
}

/// Resolves the configuration (from the run directory when resuming), prepares the data and
/// seeds the device.
fn start<B: AutodiffBackend + MemoryBackend>(
    mut config: TrainConfig,
    device: &B::Device,
    options: TrainOptions,
) -> Result<Run, TrainError> {
    let out = config.run.out.clone();
    let config_path = out.join("config.toml");
    let checkpoint = if options.resume {
        config = TrainConfig::load(&config_path)?;
        let dir = find_checkpoint(&out)
            .ok_or_else(|| checkpoint_error(&out, "no checkpoint to resume from"))?;
        Some(dir)
    } else {
        None
    };
    config.validate()?;
    std::fs::create_dir_all(&out).map_err(TrainError::io(&out))?;
    let data = prepare_data(&mut config, &out, options.resume)?;
    config.validate()?;
    if !options.resume {
        config.save(&config_path)?;
    }
    set_precision::<B>(config.run.precision, device)?;
    B::seed(device, config.run.seed);
    Ok(Run {
        config,
        data,
        checkpoint,
        options,
    })
}

impl Run {
    /// The whole learner: fresh, or from the checkpoint being resumed.
    fn learner<B: AutodiffBackend + MemoryBackend>(
        &self,
        device: &B::Device,
    ) -> Result<Learner<B>, TrainError> {
        // Burn initialises parameters lazily, in the order of first use (which the optimizer
        // setup changes) and separately in each clone: materialise them now, in module order,
        // so that one device and every peer of a parallel run start from the same values.
        let model = self.config.model.init::<B>(device)?;
        let model = model.clone().load_record(model.into_record());
        let learner = Learner::new(model, &self.config.optim);
        match &self.checkpoint {
            Some(dir) => learner.load(dir, device),
            None => Ok(learner),
        }
    }

    /// Steps until `optim.steps`, logging, validating and checkpointing as configured; the
    /// writing role returns the summary after the final evaluation.
    fn train_loop<B>(
        &self,
        mut learner: Learner<B>,
        role: &dyn Role<B>,
        device: &B::Device,
    ) -> Result<Option<TrainSummary>, TrainError>
    where
        B: AutodiffBackend + MemoryBackend,
        B::InnerBackend: MemoryBackend,
    {
        let (config, data, out) = (&self.config, &self.data, &self.config.run.out);
        let mut state = match &self.checkpoint {
            Some(dir) => load_state(dir)?,
            None => TrainState {
                step: 0,
                batches_seen: 0,
                tokens_seen: 0,
                seed: config.run.seed,
                elapsed_s: 0.0,
            },
        };
        let memory_size = config.model.product_keys.n_keys.pow(2);
        let mut log = role
            .writes()
            .then(|| MetricsLog::open(out, state.step))
            .transpose()?;
        let o = config.optim.clone();
        let bar = progress_bar(self.options.progress && role.writes(), o.steps, state.step);

        let mut last_loss = f64::NAN;
        let mut window = (Instant::now(), state.tokens_seen);
        let started = Instant::now() - std::time::Duration::from_secs_f64(state.elapsed_s);
        while state.step < o.steps {
            let step = state.step;
            let log_now = (step + 1).is_multiple_of(config.run.log_every) || step + 1 == o.steps;
            let micro_batches: Vec<Vec<u32>> = (0..o.grad_accum)
                .map(|i| {
                    role.share(
                        data.batches
                            .train_batch(state.batches_seen + i, o.batch_size),
                        o.batch_size,
                    )
                })
                .collect();
            let multiplier = config.lr_multiplier(step);
            let report = role.step(
                &mut learner,
                &micro_batches,
                multiplier,
                log_now.then_some(memory_size),
                device,
            )?;
            state.batches_seen += o.grad_accum;
            last_loss = report.loss;
            state.step += 1;
            state.tokens_seen += (o.batch_size * o.seq_len * o.grad_accum) as u64;
            state.elapsed_s = started.elapsed().as_secs_f64();

            if log_now {
                let eval_now = state.step == o.steps
                    || (config.run.eval_every > 0
                        && state.step.is_multiple_of(config.run.eval_every));
                let mut val_loss = None;
                if eval_now {
                    role.with_whole(&learner, &mut |whole| {
                        let (loss, _) = validate(
                            &whole.model.valid(),
                            &data.batches,
                            o.batch_size,
                            config.run.eval_batches,
                            memory_size,
                            device,
                        )?;
                        val_loss = Some(loss);
                        Ok(())
                    })?;
                }
                let seconds = window.0.elapsed().as_secs_f64().max(1e-9);
                let line = MetricsLine {
                    step: state.step,
                    tokens: state.tokens_seen,
                    loss: last_loss,
                    lr: o.lr * multiplier,
                    value_lr: o.value_lr * multiplier,
                    grad_norm: report.grad_norm,
                    value_grad_norm: report.value_grad_norm,
                    tokens_per_s: (state.tokens_seen - window.1) as f64 / seconds,
                    val_loss,
                    used_pct: report.usage.map(|u| u.used_pct),
                    kl_uniform: report.usage.map(|u| u.kl_uniform),
                };
                if let Some(log) = &mut log {
                    log.append(&line)?;
                }
                bar.set_message(format!(
                    "loss {last_loss:.3} | {:.0} tok/s",
                    line.tokens_per_s
                ));
                window = (Instant::now(), state.tokens_seen);
            }
            bar.set_position(state.step as u64);
            if state.step.is_multiple_of(config.run.checkpoint_every) || state.step == o.steps {
                role.with_whole(&learner, &mut |whole| {
                    save_checkpoint(out, &state, |dir| whole.save(dir))
                })?;
            }
        }
        bar.finish_and_clear();

        let mut summary = None;
        role.with_whole(&learner, &mut |whole| {
            let eval = evaluate(&whole.model.valid(), config, data, device)?;
            write_atomic(
                &out.join("eval.json"),
                serde_json::to_string_pretty(&eval)
                    .expect("serialises")
                    .as_bytes(),
            )?;
            let lines = read_metrics(&out.join("metrics.jsonl"))?;
            write_atomic(&out.join("loss.svg"), loss_svg(&lines).as_bytes())?;
            summary = Some(TrainSummary {
                steps: state.step,
                final_loss: lines.last().map_or(last_loss, |l| l.loss),
                tokens: state.tokens_seen,
                train_seconds: state.elapsed_s,
                eval,
                config: config.clone(),
            });
            Ok(())
        })?;
        Ok(summary)
    }
}

/// How the run loop steps and sees the whole learner: alone, or as one peer of a parallel run.
trait Role<B: AutodiffBackend + MemoryBackend> {
    /// Whether this role writes the run directory (metrics, checkpoints, evaluation).
    fn writes(&self) -> bool;
    /// This role's share of a global micro-batch of `batch` windows.
    fn share(&self, tokens: Vec<u32>, batch: usize) -> Vec<u32>;
    /// One optimizer step.
    fn step(
        &self,
        learner: &mut Learner<B>,
        micro_batches: &[Vec<u32>],
        multiplier: f64,
        usage_of: Option<usize>,
        device: &B::Device,
    ) -> Result<StepReport, TrainError>;
    /// Runs `f` on the whole learner where this role writes; every peer takes part in
    /// assembling it, and all fail together if `f` fails.
    fn with_whole(
        &self,
        learner: &Learner<B>,
        f: &mut dyn FnMut(&Learner<B>) -> Result<(), TrainError>,
    ) -> Result<(), TrainError>;
}

/// A single-device run.
struct Alone;

impl<B: AutodiffBackend + MemoryBackend> Role<B> for Alone {
    fn writes(&self) -> bool {
        true
    }

    fn share(&self, tokens: Vec<u32>, _batch: usize) -> Vec<u32> {
        tokens
    }

    fn step(
        &self,
        learner: &mut Learner<B>,
        micro_batches: &[Vec<u32>],
        multiplier: f64,
        usage_of: Option<usize>,
        device: &B::Device,
    ) -> Result<StepReport, TrainError> {
        learner.step(micro_batches, multiplier, usage_of, device)
    }

    fn with_whole(
        &self,
        learner: &Learner<B>,
        f: &mut dyn FnMut(&Learner<B>) -> Result<(), TrainError>,
    ) -> Result<(), TrainError> {
        f(learner)
    }
}

/// One peer of a parallel run; rank 0 writes.
struct AsPeer<'a, I: burn::tensor::backend::Backend>(&'a Peer<I>);

impl<B> Role<B> for AsPeer<'_, B::InnerBackend>
where
    B: AutodiffBackend
        + MemoryBackend
        + ShardedBackend<Comm = <B as AutodiffBackend>::InnerBackend>,
    B::InnerBackend: MemoryBackend,
{
    fn writes(&self) -> bool {
        self.0.rank() == 0
    }

    fn share(&self, tokens: Vec<u32>, batch: usize) -> Vec<u32> {
        let window = tokens.len() / batch;
        let per = batch / self.0.world() * window;
        tokens[self.0.rank() * per..(self.0.rank() + 1) * per].to_vec()
    }

    fn step(
        &self,
        learner: &mut Learner<B>,
        micro_batches: &[Vec<u32>],
        multiplier: f64,
        usage_of: Option<usize>,
        device: &B::Device,
    ) -> Result<StepReport, TrainError> {
        learner.step_parallel(self.0, micro_batches, multiplier, usage_of, device)
    }

    fn with_whole(
        &self,
        learner: &Learner<B>,
        f: &mut dyn FnMut(&Learner<B>) -> Result<(), TrainError>,
    ) -> Result<(), TrainError> {
        let whole = learner.gather(self.0)?;
        let writes = self.0.rank() == 0;
        let result = if writes { f(&whole) } else { Ok(()) };
        self.0.agree(result)
    }
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

/// Makes `precision` the device's default float type; must run before any tensor exists.
fn set_precision<B: burn::tensor::backend::Backend>(
    precision: Precision,
    device: &B::Device,
) -> Result<(), TrainError> {
    if precision == Precision::F32 {
        return Ok(());
    }
    let unsupported = |rule| TrainError::config("run.precision", "bf16", rule);
    if !B::dtype_usage(device, DType::BF16).contains(DTypeUsage::Arithmetic) {
        return Err(unsupported("this backend does not compute in bf16"));
    }
    set_default_float_dtype::<B>(device, FloatDType::BF16).map_err(|_| {
        unsupported("must be chosen before any tensor is made on the device (a new process)")
    })
}

fn progress_bar(show: bool, steps: usize, done: usize) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(steps as u64).with_position(done as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} steps | {msg} | ETA {eta}")
            .expect("valid template"),
    );
    bar
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
