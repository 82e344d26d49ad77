//! A trained run opened for evaluation, generation or export.

use std::path::Path;

use memory_layers_data::Tokenizer;
use memory_layers_zoo::{Transformer, ZooBackend};

use crate::checkpoint::{checkpoint_error, load_model};
use crate::run_dir::{CheckpointDir, RunDir};
use crate::{TrainConfig, TrainError};

/// A trained run opened for evaluation or generation.
pub struct OpenRun<B: ZooBackend> {
    /// The run directory.
    pub dir: RunDir,
    /// Its configuration.
    pub config: TrainConfig,
    /// Its tokenizer.
    pub tokenizer: Tokenizer,
    /// The model of its last checkpoint.
    pub model: Transformer<B>,
}

/// Opens a run directory, or a checkpoint folder inside one (that checkpoint, then).
pub fn open_run<B: ZooBackend>(path: &Path, device: &B::Device) -> Result<OpenRun<B>, TrainError> {
    let dir = RunDir::containing(path);
    let config = dir.load_config()?;
    let tokenizer = Tokenizer::load(config.data.tokenizer, &dir.tokenizer())?;
    let checkpoint = if dir.path() == path {
        dir.latest_checkpoint()
            .ok_or_else(|| checkpoint_error(path, "no checkpoint in this run directory"))?
    } else {
        CheckpointDir::at(path)
    };
    let model = load_model(config.model.init::<B>(device)?, &checkpoint, device)?;
    Ok(OpenRun {
        dir,
        config,
        tokenizer,
        model,
    })
}
