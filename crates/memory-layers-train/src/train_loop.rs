//! The training loop: steps, metrics, validation, checkpoints and the final evaluation, the
//! same alone and on every rank of a parallel run.

use std::io::IsTerminal;
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use memory_layers_data::progress::clock;
use memory_layers_data::write_atomic;

use crate::checkpoint::{TrainState, load_state, save_checkpoint};
use crate::config::TrainConfig;
use crate::eval::{EvalReport, evaluate, known_bits, validate};
use crate::metrics::{MetricsLine, MetricsLog, loss_svg, read_metrics};
use crate::run::Run;
use crate::{Rank, Stepper, TrainBackend, TrainError};

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

/// How the loop sees its stepper: alone (`None`), or as one rank of a parallel run, whose
/// every rank calls the loop's collective steps at the same time; rank 0 writes.
type Peer<'a, B> = Option<&'a Rank<<B as AutodiffBackend>::InnerBackend>>;

/// Whether this stepper writes the run directory (metrics, checkpoints, evaluation).
fn writes<B: TrainBackend>(rank: Peer<'_, B>) -> bool {
    rank.is_none_or(|r| r.index() == 0)
}

/// This stepper's share of a global micro-batch of `batch` sequences: the positions it reads
/// and trains on.
fn share<B: TrainBackend>(rank: Peer<'_, B>, batch: usize) -> std::ops::Range<usize> {
    match rank {
        None => 0..batch,
        Some(r) => {
            let per = batch / r.world();
            r.index() * per..(r.index() + 1) * per
        }
    }
}

/// Whether any rank saw `local` true.
fn any<B: TrainBackend>(rank: Peer<'_, B>, local: bool) -> Result<bool, TrainError> {
    match rank {
        None => Ok(local),
        Some(r) => Ok(r.sum(f64::from(u8::from(local)))? > 0.0),
    }
}

/// Runs `f` on the whole stepper where it writes: every rank takes part in assembling it, and
/// all fail together if `f` fails.
fn with_whole<B: TrainBackend>(
    rank: Peer<'_, B>,
    stepper: &Stepper<B>,
    mut f: impl FnMut(&Stepper<B>) -> Result<(), TrainError>,
) -> Result<(), TrainError> {
    match rank {
        None => f(stepper),
        Some(r) => {
            let whole = stepper.gather(r)?;
            let result = if r.index() == 0 { f(&whole) } else { Ok(()) };
            r.agree(result)
        }
    }
}

impl Run {
    /// Steps until `optim.steps`, logging, validating and checkpointing as configured; the
    /// writing strategy returns the summary after the final evaluation.
    pub(crate) fn train_loop<B: TrainBackend>(
        &self,
        mut stepper: Stepper<B>,
        rank: Peer<'_, B>,
        device: &B::Device,
    ) -> Result<Option<TrainSummary>, TrainError> {
        let (config, data, out) = (&self.config, &self.data, &self.dir);
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
        let mut log = writes::<B>(rank)
            .then(|| MetricsLog::open(out, state.step))
            .transpose()?;
        let o = config.optim.clone();
        let show = self.options.progress && writes::<B>(rank);
        // On a terminal a bar; elsewhere (nohup, SLURM, CI) one line per logged step.
        let log_lines = show && !std::io::stderr().is_terminal();
        let bar = progress_bar(show && !log_lines, o.steps, state.step);
        let (first_step, session) = (state.step, Instant::now());

        let mut last_loss = f64::NAN;
        let mut window = (Instant::now(), state.tokens_seen);
        let started = Instant::now() - std::time::Duration::from_secs_f64(state.elapsed_s);
        while state.step < o.steps {
            let step = state.step;
            // Evaluation steps are logged too: their validation loss goes into the line.
            let eval_now = step + 1 == o.steps
                || (config.run.eval_every > 0 && (step + 1).is_multiple_of(config.run.eval_every));
            let log_now = eval_now || (step + 1).is_multiple_of(config.run.log_every);
            let micro_batches = (0..o.grad_accum)
                .map(|i| {
                    // Each rank reads only its own sequences of the global batch.
                    let share = share::<B>(rank, o.batch_size);
                    Ok(data.batches.train_batch_part(
                        state.batches_seen + i,
                        o.batch_size,
                        share,
                    )?)
                })
                .collect::<Result<Vec<Vec<u32>>, TrainError>>()?;
            let multiplier = config.lr_multiplier(step);
            let report = stepper.step_with(
                &micro_batches,
                multiplier,
                log_now.then_some(memory_size),
                device,
                rank,
            )?;
            state.batches_seen += o.grad_accum;
            last_loss = report.loss;
            state.step += 1;
            state.tokens_seen += (o.batch_size * o.seq_len * o.grad_accum) as u64;
            state.elapsed_s = started.elapsed().as_secs_f64();

            if log_now {
                let seconds = window.0.elapsed().as_secs_f64().max(1e-9);
                let (mut val_loss, mut knowledge_bits) = (None, None);
                if eval_now {
                    with_whole(rank, &stepper, |whole| {
                        let model = whole.trained().valid();
                        let batches = config.run.eval_batches;
                        let (loss, _) = validate(
                            &model,
                            &data.batches,
                            o.batch_size,
                            (batches > 0).then_some(batches * o.batch_size),
                            memory_size,
                            device,
                            None,
                        )?;
                        val_loss = Some(loss.mean);
                        knowledge_bits = known_bits(&model, data, device, false)?.map(|k| k.bits);
                        Ok(())
                    })?;
                }
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
                    knowledge_bits,
                    used_pct: report.usage.first().map(|u| u.usage.used_pct),
                    kl_uniform: report.usage.first().map(|u| u.usage.kl_uniform),
                    memory_layers: report.usage,
                };
                if let Some(log) = &mut log {
                    log.append(&line)?;
                }
                bar.set_message(format!(
                    "loss {last_loss:.3} | {:.0} tok/s",
                    line.tokens_per_s
                ));
                if log_lines {
                    let done = (state.step - first_step) as f64;
                    let left = (o.steps - state.step) as f64;
                    let eta = session.elapsed().as_secs_f64() / done.max(1.0) * left;
                    eprintln!(
                        "step {}/{} | loss {last_loss:.4} | lr {:.3e} | {:.0} tok/s | ETA {}",
                        state.step,
                        o.steps,
                        line.lr,
                        line.tokens_per_s,
                        clock(eta)
                    );
                }
                window = (Instant::now(), state.tokens_seen);
            }
            bar.set_position(state.step as u64);
            let interrupted = any::<B>(rank, self.options.interrupt.requested())?;
            if interrupted
                || state.step.is_multiple_of(config.run.checkpoint_every)
                || state.step == o.steps
            {
                with_whole(rank, &stepper, |whole| {
                    save_checkpoint(out, &state, config.run.keep_checkpoints, |dir| {
                        whole.save(dir)
                    })
                })?;
            }
            if interrupted && state.step < o.steps {
                bar.finish_and_clear();
                return Err(TrainError::Interrupted {
                    step: state.step,
                    out: out.path().to_path_buf(),
                });
            }
        }
        bar.finish_and_clear();

        let mut summary = None;
        with_whole(rank, &stepper, |whole| {
            let eval = evaluate(
                &whole.trained().valid(),
                config,
                data,
                device,
                self.options.progress,
            )?;
            write_atomic(
                &out.eval(),
                serde_json::to_string_pretty(&eval)
                    .expect("serialises")
                    .as_bytes(),
            )?;
            let lines = read_metrics(&out.metrics())?;
            write_atomic(&out.loss_chart(), loss_svg(&lines)?.as_bytes())?;
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
