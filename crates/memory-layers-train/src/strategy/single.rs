//! Training on one device.

use crate::pool::on_pool;
use crate::run::{Run, TrainOptions};
use crate::train_loop::TrainSummary;
use crate::{TrainBackend, TrainConfig, TrainError};

/// Trains `config.model` on `config.data`, writing the run directory `config.run.out`
/// (config.toml, tokenizer, metrics.jsonl, checkpoint/, eval.json, loss.svg).
pub fn train<B: TrainBackend>(
    config: TrainConfig,
    device: &B::Device,
    options: TrainOptions,
) -> Result<TrainSummary, TrainError> {
    let run = Run::start::<B>(config, device, options)?;
    let stepper = run.stepper::<B>(device)?;
    // The loop on the pool (its bookkeeping between steps runs Flex operations too); the
    // data preparation above stays on the calling thread and its larger stack.
    let summary = on_pool::<B, _>(|| run.train_loop(stepper, None, device))?;
    Ok(summary.expect("a single-device run always writes, so it reports"))
}
