//! The run directory: every file a run writes is named here, and only here.
//!
//! ```text
//! RUN/
//!   config.toml       the resolved configuration (accepted back by --config)
//!   tokenizer.json    the tokenizer, when it is not bytes
//!   data/             token shards of `data.paths`, prepared once
//!   metrics.jsonl     one line per logged step
//!   eval.json         the final evaluation
//!   loss.svg          training and validation loss
//!   traffic.json      bytes rank 0 of an MPI run sent, by collective
//!   background.json   background access counts of the memory pool (sparse memory
//!                     finetuning ranks value rows against them)
//!   checkpoint/       the latest checkpoint: model.bin, optim.bin, value_optim.bin,
//!                     value_rows.bin (Burn records) and state.json; a LoRA finetuning
//!                     run's also lora.bin (model.bin holds the adapters merged)
//!   checkpoint-STEP/  earlier checkpoints kept (run.keep_checkpoints)
//!   .checkpoint.tmp/  a checkpoint being written; .checkpoint.old/ the one it replaces
//! ```

use std::path::{Path, PathBuf};

use memory_layers_data::TOKENIZER_FILE;

use crate::{TrainConfig, TrainError};

const CONFIG: &str = "config.toml";
const DATA: &str = "data";
const METRICS: &str = "metrics.jsonl";
const EVAL: &str = "eval.json";
const LOSS_CHART: &str = "loss.svg";
const CHECKPOINT: &str = "checkpoint";
const STAGING: &str = ".checkpoint.tmp";
const REPLACED: &str = ".checkpoint.old";
const STATE: &str = "state.json";
const TRAFFIC: &str = "traffic.json";
const BACKGROUND: &str = "background.json";

/// A run directory (which need not exist yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    root: PathBuf,
}

/// The Burn records of a checkpoint, each a `NAME.bin` file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record {
    /// The model's parameters.
    Model,
    /// AdamW of every parameter but the values.
    Optim,
    /// Dense AdamW of the value tables.
    ValueOptim,
    /// The row-wise value optimizers.
    ValueRows,
    /// The low-rank adapters of a LoRA finetuning run (`optim` is their AdamW).
    Lora,
}

impl Record {
    /// The file's name without the `.bin` Burn's recorder adds.
    fn stem(self) -> &'static str {
        match self {
            Self::Model => "model",
            Self::Optim => "optim",
            Self::ValueOptim => "value_optim",
            Self::ValueRows => "value_rows",
            Self::Lora => "lora",
        }
    }
}

/// A checkpoint folder of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointDir(PathBuf);

impl CheckpointDir {
    /// The checkpoint folder at `path` (`RUN/checkpoint`, `RUN/checkpoint-STEP`).
    pub fn at(path: impl Into<PathBuf>) -> Self {
        Self(path.into())
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// `state.json`: the step, data position and seed.
    pub fn state(&self) -> PathBuf {
        self.0.join(STATE)
    }

    /// Whether the checkpoint was written whole (its state is written last).
    pub fn is_complete(&self) -> bool {
        self.state().exists()
    }

    /// The path Burn's recorder takes for `record` (it adds `.bin`).
    pub fn record(&self, record: Record) -> PathBuf {
        self.0.join(record.stem())
    }

    /// The file `record` is in, for messages.
    pub fn record_file(&self, record: Record) -> PathBuf {
        self.0.join(format!("{}.bin", record.stem()))
    }
}

impl RunDir {
    /// The run directory at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The run directory of `path`: the path itself, or the run a checkpoint folder belongs to.
    pub fn containing(path: &Path) -> Self {
        if CheckpointDir(path.to_path_buf()).is_complete() {
            Self::new(path.parent().unwrap_or(path))
        } else {
            Self::new(path)
        }
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// `config.toml`.
    pub fn config(&self) -> PathBuf {
        self.root.join(CONFIG)
    }

    /// The tokenizer file (runs with a byte tokenizer have none).
    pub fn tokenizer(&self) -> PathBuf {
        self.root.join(TOKENIZER_FILE)
    }

    /// The token shards of a run given `data.paths`.
    pub fn data(&self) -> PathBuf {
        self.root.join(DATA)
    }

    /// `metrics.jsonl`.
    pub fn metrics(&self) -> PathBuf {
        self.root.join(METRICS)
    }

    /// `eval.json`.
    pub fn eval(&self) -> PathBuf {
        self.root.join(EVAL)
    }

    /// `loss.svg`.
    pub fn loss_chart(&self) -> PathBuf {
        self.root.join(LOSS_CHART)
    }

    /// `traffic.json`: what rank 0 of an MPI run handed to the transport, by operation.
    pub fn traffic(&self) -> PathBuf {
        self.root.join(TRAFFIC)
    }

    /// `background.json`: the memory pool's background access counts
    /// ([`Background`](crate::Background)).
    pub fn background(&self) -> PathBuf {
        self.root.join(BACKGROUND)
    }

    /// The latest checkpoint's folder (which may not exist yet).
    pub fn checkpoint(&self) -> CheckpointDir {
        CheckpointDir(self.root.join(CHECKPOINT))
    }

    /// The folder a checkpoint is written into before it is swapped in.
    pub(crate) fn staging(&self) -> CheckpointDir {
        CheckpointDir(self.root.join(STAGING))
    }

    /// Where the checkpoint being replaced waits until the new one is in place.
    pub(crate) fn replaced(&self) -> CheckpointDir {
        CheckpointDir(self.root.join(REPLACED))
    }

    /// The folder an earlier checkpoint of `step` is kept in.
    pub(crate) fn kept(&self, step: usize) -> CheckpointDir {
        CheckpointDir(self.root.join(format!("{CHECKPOINT}-{step}")))
    }

    /// The earlier checkpoints kept, by step, oldest first.
    pub fn kept_checkpoints(&self) -> Result<Vec<(usize, CheckpointDir)>, TrainError> {
        let prefix = format!("{CHECKPOINT}-");
        let mut kept: Vec<(usize, CheckpointDir)> = std::fs::read_dir(&self.root)
            .map_err(TrainError::io(&self.root))?
            .filter_map(|entry| {
                let path = entry.ok()?.path();
                let step = path
                    .file_name()?
                    .to_str()?
                    .strip_prefix(&prefix)?
                    .parse()
                    .ok()?;
                Some((step, CheckpointDir(path)))
            })
            .collect();
        kept.sort_unstable_by_key(|(step, _)| *step);
        Ok(kept)
    }

    /// The newest complete checkpoint, if any (the previous one when a swap was cut).
    pub fn latest_checkpoint(&self) -> Option<CheckpointDir> {
        [self.checkpoint(), self.replaced()]
            .into_iter()
            .find(CheckpointDir::is_complete)
    }

    /// Whether a run was started here (its configuration or a checkpoint is there).
    pub fn holds_run(&self) -> bool {
        self.config().exists() || self.latest_checkpoint().is_some()
    }

    /// The run's configuration.
    pub fn load_config(&self) -> Result<TrainConfig, TrainError> {
        TrainConfig::load(&self.config())
    }

    /// Creates the folder.
    pub fn create(&self) -> Result<(), TrainError> {
        std::fs::create_dir_all(&self.root).map_err(TrainError::io(&self.root))
    }

    /// Removes the prepared shards (`data/`) and the background counts, which a new finetuning
    /// run derives again from its own data and base.
    pub fn remove_derived_data(&self) -> Result<(), TrainError> {
        let data = self.data();
        if data.exists() {
            std::fs::remove_dir_all(&data).map_err(TrainError::io(&data))?;
        }
        let background = self.background();
        if background.exists() {
            std::fs::remove_file(&background).map_err(TrainError::io(&background))?;
        }
        Ok(())
    }

    /// Removes what a run wrote (not the folder, nor files it did not write: a tokenizer file
    /// given with `--tokenizer` may live there; prepared shards are kept for reuse).
    pub fn remove_run(&self) -> Result<(), TrainError> {
        let files = [
            self.config(),
            self.metrics(),
            self.eval(),
            self.loss_chart(),
            self.traffic(),
            // Counted on the model this run will replace.
            self.background(),
        ];
        let checkpoints = [self.checkpoint(), self.staging(), self.replaced()]
            .into_iter()
            .chain(self.kept_checkpoints()?.into_iter().map(|(_, dir)| dir));
        for file in files.iter().filter(|f| f.exists()) {
            std::fs::remove_file(file).map_err(TrainError::io(file))?;
        }
        for dir in checkpoints.filter(|d| d.path().exists()) {
            std::fs::remove_dir_all(dir.path()).map_err(TrainError::io(dir.path()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removing_a_run_removes_what_it_wrote_and_keeps_the_rest() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("run");
        let dir = RunDir::new(&root);
        dir.create().unwrap();
        let written = [
            dir.config(),
            dir.metrics(),
            dir.eval(),
            dir.loss_chart(),
            dir.traffic(),
            dir.background(),
        ];
        let kept = [dir.tokenizer(), dir.data().join("manifest.json")];
        std::fs::create_dir_all(dir.data()).unwrap();
        std::fs::create_dir_all(dir.checkpoint().path()).unwrap();
        for file in written.iter().chain(&kept) {
            std::fs::write(file, "x").unwrap();
        }
        dir.remove_run().unwrap();
        for file in &written {
            assert!(!file.exists(), "{} left behind", file.display());
        }
        assert!(!dir.checkpoint().path().exists());
        for file in &kept {
            assert!(file.exists(), "{} removed", file.display());
        }
    }
}
