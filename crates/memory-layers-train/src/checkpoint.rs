//! Atomic checkpoints: what a run saves to resume exactly, and how.
//!
//! A checkpoint is a folder `checkpoint/` holding `model.bin`, `optim.bin` (AdamW of the
//! model), `value_optim.bin` (dense AdamW of the value tables), `value_rows.bin` (the row-wise
//! value optimizers) — Burn records, full precision — and `state.json` (step, data position,
//! seed). It is written as `.checkpoint.tmp/`, then swapped in by renames, so a kill at any
//! moment leaves either the previous checkpoint or the new one, whole.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::Optimizer;
use burn::record::{BinFileRecorder, FullPrecisionSettings, Recorder, RecorderError};
use burn::tensor::backend::Backend;
use memory_layers_values::{RowOptimizer, RowOptimizerRecord};
use memory_layers_zoo::Transformer;
use serde::{Deserialize, Serialize};

use crate::optim::value_param_ids;
use crate::{Stepper, TrainBackend, TrainError};

type Rec = BinFileRecorder<FullPrecisionSettings>;

/// Where a run stands; saved with every checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Optimizer steps done.
    pub step: usize,
    /// Micro-batches consumed: the data position (batches are a function of it and the seed).
    pub batches_seen: usize,
    /// Training tokens consumed.
    pub tokens_seen: u64,
    /// Seed of the data order (the only random state of a run after initialisation).
    pub seed: u64,
    /// Training seconds so far.
    pub elapsed_s: f64,
}

/// A checkpoint or run directory `path` that cannot be used, and why.
pub(crate) fn checkpoint_error(path: &Path, e: impl std::fmt::Display) -> TrainError {
    TrainError::Checkpoint {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// A record file `name` of checkpoint folder `dir` that could not be read or written, named,
/// with a plain reason (a truncated file says so instead of Burn's `UnexpectedEof`).
fn record_error(dir: &Path, name: &str) -> impl Fn(RecorderError) -> TrainError {
    let path = dir.join(format!("{name}.bin"));
    move |e| {
        let text = e.to_string();
        let message = if text.contains("UnexpectedEof") {
            "the file ends early: truncated or corrupt".to_string()
        } else if text.contains("NotFound") || matches!(e, RecorderError::FileNotFound(_)) {
            "missing".to_string()
        } else {
            format!("cannot be used: {text}")
        };
        TrainError::Checkpoint {
            path: path.clone(),
            message,
        }
    }
}

/// The checkpoint folder of run directory `out`.
fn checkpoint_dir(out: &Path) -> PathBuf {
    out.join("checkpoint")
}

/// The newest complete checkpoint of `out`, if any (the previous one when a swap was cut).
pub fn find_checkpoint(out: &Path) -> Option<PathBuf> {
    [checkpoint_dir(out), out.join(".checkpoint.old")]
        .into_iter()
        .find(|dir| dir.join("state.json").exists())
}

/// Writes a checkpoint: `fill` writes the record files into a fresh folder, then the state
/// is added and the folder swapped in. With `keep > 1` the one it replaces moves to
/// `checkpoint-STEP/`, and the oldest of those go so that `keep` checkpoints remain.
pub(crate) fn save_checkpoint(
    out: &Path,
    state: &TrainState,
    keep: usize,
    fill: impl FnOnce(&Path) -> Result<(), TrainError>,
) -> Result<(), TrainError> {
    let tmp = out.join(".checkpoint.tmp");
    let old = out.join(".checkpoint.old");
    let dir = checkpoint_dir(out);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(TrainError::io(&tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(TrainError::io(&tmp))?;
    fill(&tmp)?;
    let json = serde_json::to_string_pretty(state).expect("state serialises");
    std::fs::write(tmp.join("state.json"), json).map_err(TrainError::io(&tmp))?;
    if dir.exists() {
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(TrainError::io(&old))?;
        }
        std::fs::rename(&dir, &old).map_err(TrainError::io(&dir))?;
    }
    std::fs::rename(&tmp, &dir).map_err(TrainError::io(&tmp))?;
    if old.exists() {
        match load_state(&old) {
            Ok(previous) if keep > 1 => {
                let kept = out.join(format!("checkpoint-{}", previous.step));
                std::fs::rename(&old, &kept).map_err(TrainError::io(&old))?;
            }
            _ => std::fs::remove_dir_all(&old).map_err(TrainError::io(&old))?,
        }
    }
    prune_checkpoints(out, keep.saturating_sub(1))
}

/// Removes the oldest `checkpoint-STEP/` folders of `out` beyond the newest `keep`.
fn prune_checkpoints(out: &Path, keep: usize) -> Result<(), TrainError> {
    let mut kept: Vec<(usize, PathBuf)> = std::fs::read_dir(out)
        .map_err(TrainError::io(out))?
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            let step = path
                .file_name()?
                .to_str()?
                .strip_prefix("checkpoint-")?
                .parse()
                .ok()?;
            Some((step, path))
        })
        .collect();
    kept.sort_unstable();
    let extra = kept.len().saturating_sub(keep);
    for (_, path) in kept.into_iter().take(extra) {
        std::fs::remove_dir_all(&path).map_err(TrainError::io(&path))?;
    }
    Ok(())
}

/// Reads the state of checkpoint folder `dir`.
pub fn load_state(dir: &Path) -> Result<TrainState, TrainError> {
    let path = dir.join("state.json");
    let text = std::fs::read_to_string(&path).map_err(TrainError::io(&path))?;
    serde_json::from_str(&text).map_err(|e| TrainError::Checkpoint {
        path,
        message: format!("invalid state: {e}"),
    })
}

impl<B: TrainBackend> Stepper<B> {
    /// Writes the model and optimizer records into checkpoint folder `dir`.
    pub fn save(&self, dir: &Path) -> Result<(), TrainError> {
        let recorder = Rec::default();
        self.model
            .clone()
            .save_file(dir.join("model"), &recorder)
            .map_err(record_error(dir, "model"))?;
        recorder
            .record(self.optim.to_record(), dir.join("optim"))
            .map_err(record_error(dir, "optim"))?;
        recorder
            .record(self.value_optim.to_record(), dir.join("value_optim"))
            .map_err(record_error(dir, "value_optim"))?;
        let rows: Vec<RowOptimizerRecord<B>> = self
            .row_optims
            .iter()
            .map(RowOptimizer::to_record)
            .collect();
        recorder
            .record(rows, dir.join("value_rows"))
            .map_err(record_error(dir, "value_rows"))
    }

    /// Loads the model and optimizer records from checkpoint folder `dir`.
    pub fn load(mut self, dir: &Path, device: &B::Device) -> Result<Self, TrainError> {
        let recorder = Rec::default();
        self.model = load_model(self.model, dir, device)?;
        // Parameter ids come with the record: the value group must be found again.
        self.value_ids = value_param_ids(&self.model);
        self.optim = self.optim.load_record(
            recorder
                .load(dir.join("optim"), device)
                .map_err(record_error(dir, "optim"))?,
        );
        self.value_optim = self.value_optim.load_record(
            recorder
                .load(dir.join("value_optim"), device)
                .map_err(record_error(dir, "value_optim"))?,
        );
        let rows: Vec<RowOptimizerRecord<B>> = recorder
            .load(dir.join("value_rows"), device)
            .map_err(record_error(dir, "value_rows"))?;
        if rows.len() != self.row_optims.len() {
            return Err(checkpoint_error(
                dir,
                format!(
                    "the checkpoint has {} row-wise value optimizers, this run {} \
                     (was it saved with another value_optimizer?)",
                    rows.len(),
                    self.row_optims.len()
                ),
            ));
        }
        self.row_optims = self
            .row_optims
            .into_iter()
            .zip(rows)
            .map(|(optim, record)| optim.load_record(record))
            .collect::<Result<_, _>>()?;
        Ok(self)
    }
}

/// Loads the model saved in checkpoint folder `dir` into `model`.
pub fn load_model<B: Backend>(
    model: Transformer<B>,
    dir: &Path,
    device: &B::Device,
) -> Result<Transformer<B>, TrainError> {
    model
        .load_file(dir.join("model"), &Rec::default(), device)
        .map_err(record_error(dir, "model"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(step: usize) -> TrainState {
        TrainState {
            step,
            batches_seen: step,
            tokens_seen: step as u64,
            seed: 0,
            elapsed_s: 0.0,
        }
    }

    /// The checkpoint folders of `out`, sorted.
    fn folders(out: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn the_latest_checkpoints_are_kept() {
        let out = std::env::temp_dir().join(format!("trainer-keep-{}", std::process::id()));
        for keep in [1, 3] {
            let _ = std::fs::remove_dir_all(&out);
            std::fs::create_dir_all(&out).unwrap();
            for step in 1..=5 {
                save_checkpoint(&out, &state(step), keep, |dir| {
                    std::fs::write(dir.join("model.bin"), step.to_string())
                        .map_err(TrainError::io(dir))
                })
                .unwrap();
            }
            let expected: &[&str] = match keep {
                1 => &["checkpoint"],
                _ => &["checkpoint", "checkpoint-3", "checkpoint-4"],
            };
            assert_eq!(folders(&out), expected, "keep {keep}");
            assert_eq!(load_state(&find_checkpoint(&out).unwrap()).unwrap().step, 5);
            if keep == 3 {
                assert_eq!(load_state(&out.join("checkpoint-3")).unwrap().step, 3);
            }
        }
    }
}
