//! Training on one device.

use crate::run::{Run, TrainOptions};
use crate::train_loop::{Strategy, TrainSummary};
use crate::{StepReport, Stepper, TrainBackend, TrainConfig, TrainError};

/// Trains `config.model` on `config.data`, writing the run directory `config.run.out`
/// (config.toml, tokenizer, metrics.jsonl, checkpoint/, eval.json, loss.svg).
pub fn train<B: TrainBackend>(
    config: TrainConfig,
    device: &B::Device,
    options: TrainOptions,
) -> Result<TrainSummary, TrainError> {
    let run = Run::start::<B>(config, device, options)?;
    let stepper = run.stepper::<B>(device)?;
    let summary = run.train_loop(stepper, &Single, device)?;
    Ok(summary.expect("a single-device run always writes, so it reports"))
}

/// A single-device run: it steps on the whole batch and writes.
struct Single;

impl<B: TrainBackend> Strategy<B> for Single {
    fn writes(&self) -> bool {
        true
    }

    fn share(&self, batch: usize) -> std::ops::Range<usize> {
        0..batch
    }

    fn step(
        &self,
        stepper: &mut Stepper<B>,
        micro_batches: &[Vec<u32>],
        multiplier: f64,
        usage_of: Option<usize>,
        device: &B::Device,
    ) -> Result<StepReport, TrainError> {
        stepper.step(micro_batches, multiplier, usage_of, device)
    }

    fn any(&self, local: bool) -> Result<bool, TrainError> {
        Ok(local)
    }

    fn with_whole(
        &self,
        stepper: &Stepper<B>,
        f: &mut dyn FnMut(&Stepper<B>) -> Result<(), TrainError>,
    ) -> Result<(), TrainError> {
        f(stepper)
    }
}
