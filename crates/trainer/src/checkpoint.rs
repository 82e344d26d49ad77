//! Run directories and atomic checkpoints.
//!
//! A checkpoint is a folder `checkpoint/` holding `model.bin`, `optim.bin`, `value_optim.bin`
//! (Burn records, full precision) and `state.json` (step, data position, seed). It is written
//! as `.checkpoint.tmp/`, then swapped in by renames, so a kill at any moment leaves either
//! the previous checkpoint or the new one, whole.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::TrainError;

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

/// Writes `bytes` to `path` through a temporary file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(TrainError::io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(TrainError::io(path))
}

/// The checkpoint folder of run directory `out`.
pub fn checkpoint_dir(out: &Path) -> PathBuf {
    out.join("checkpoint")
}

/// The newest complete checkpoint of `out`, if any (the previous one when a swap was cut).
pub fn find_checkpoint(out: &Path) -> Option<PathBuf> {
    [checkpoint_dir(out), out.join(".checkpoint.old")]
        .into_iter()
        .find(|dir| dir.join("state.json").exists())
}

/// Writes a checkpoint: `fill` writes the record files into a fresh folder, then the state
/// is added and the folder swapped in.
pub fn save_checkpoint(
    out: &Path,
    state: &TrainState,
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
        std::fs::remove_dir_all(&old).map_err(TrainError::io(&old))?;
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
