//! Atomic checkpoints: what a run saves to resume exactly, and how.
//!
//! A checkpoint is a folder ([`CheckpointDir`]) of Burn records, full precision — the model,
//! AdamW of the model, dense AdamW of the value tables, the row-wise value optimizers — and
//! `state.json` (step, data position, seed). It is written into a staging folder, then swapped
//! in by renames, so a kill at any moment leaves either the previous checkpoint or the new
//! one, whole.

use burn::module::Module;
use burn::record::{BinFileRecorder, FullPrecisionSettings, RecorderError};
use burn::tensor::backend::Backend;
use memory_layers_zoo::Transformer;
use serde::{Deserialize, Serialize};

use crate::TrainError;
use crate::run_dir::{CheckpointDir, Record, RunDir};

/// The recorder of every checkpoint file.
pub(crate) type Recorder = BinFileRecorder<FullPrecisionSettings>;

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

/// A record of checkpoint `dir` that could not be read or written, named, with a plain
/// reason. Burn's recorder flattens the I/O error into debug text; its kind is read back from
/// there, so that a full disk says so instead of `Unknown("Io { inner: Os { code: 28, … } }")`.
pub(crate) fn record_error(
    dir: &CheckpointDir,
    record: Record,
) -> impl Fn(RecorderError) -> TrainError {
    let path = dir.record_file(record);
    move |e| TrainError::Checkpoint {
        path: path.clone(),
        message: recorder_reason(&e),
    }
}

/// What went wrong in `e`, as a sentence.
fn recorder_reason(e: &RecorderError) -> String {
    let text = e.to_string();
    if matches!(e, RecorderError::FileNotFound(_)) {
        return "missing".into();
    }
    let kind = text.split("kind: ").nth(1).map(|rest| {
        rest.split(|c: char| !c.is_alphanumeric())
            .next()
            .unwrap_or("")
    });
    match kind {
        Some("StorageFull") => "the disk is full (no space left on the device)".into(),
        Some("QuotaExceeded") => "the disk quota is exceeded".into(),
        Some("ReadOnlyFilesystem") => "the file system is read-only".into(),
        Some("PermissionDenied") => "permission denied".into(),
        Some("NotFound") => "missing".into(),
        Some("UnexpectedEof") => "the file ends early: truncated or corrupt".into(),
        Some(kind) if !kind.is_empty() => format!("cannot be read or written ({kind})"),
        _ if text.contains("UnexpectedEof") => "the file ends early: truncated or corrupt".into(),
        _ => format!("cannot be used: {text}"),
    }
}

/// A checkpoint or run directory `path` that cannot be used, and why.
pub(crate) fn checkpoint_error(path: &std::path::Path, e: impl std::fmt::Display) -> TrainError {
    TrainError::Checkpoint {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Writes a checkpoint of `run`: `fill` writes the record files into a fresh folder, then the
/// state is added and the folder swapped in. With `keep > 1` the one it replaces is kept as
/// an earlier checkpoint, and the oldest of those go so that `keep` checkpoints remain.
pub(crate) fn save_checkpoint(
    run: &RunDir,
    state: &TrainState,
    keep: usize,
    fill: impl FnOnce(&CheckpointDir) -> Result<(), TrainError>,
) -> Result<(), TrainError> {
    let (tmp, old, dir) = (run.staging(), run.replaced(), run.checkpoint());
    if tmp.path().exists() {
        std::fs::remove_dir_all(tmp.path()).map_err(TrainError::io(tmp.path()))?;
    }
    std::fs::create_dir_all(tmp.path()).map_err(TrainError::io(tmp.path()))?;
    fill(&tmp)?;
    let json = serde_json::to_string_pretty(state).expect("state serialises");
    std::fs::write(tmp.state(), json).map_err(TrainError::io(tmp.state()))?;
    if dir.path().exists() {
        if old.path().exists() {
            std::fs::remove_dir_all(old.path()).map_err(TrainError::io(old.path()))?;
        }
        std::fs::rename(dir.path(), old.path()).map_err(TrainError::io(dir.path()))?;
    }
    std::fs::rename(tmp.path(), dir.path()).map_err(TrainError::io(tmp.path()))?;
    if old.path().exists() {
        match load_state(&old) {
            Ok(previous) if keep > 1 => {
                let kept = run.kept(previous.step);
                std::fs::rename(old.path(), kept.path()).map_err(TrainError::io(old.path()))?;
            }
            _ => std::fs::remove_dir_all(old.path()).map_err(TrainError::io(old.path()))?,
        }
    }
    // The oldest earlier checkpoints beyond the newest `keep - 1`.
    let kept = run.kept_checkpoints()?;
    let extra = kept.len().saturating_sub(keep.saturating_sub(1));
    for (_, dir) in kept.into_iter().take(extra) {
        std::fs::remove_dir_all(dir.path()).map_err(TrainError::io(dir.path()))?;
    }
    Ok(())
}

/// Reads the state of checkpoint `dir`.
pub fn load_state(dir: &CheckpointDir) -> Result<TrainState, TrainError> {
    let path = dir.state();
    let text = std::fs::read_to_string(&path).map_err(TrainError::io(&path))?;
    serde_json::from_str(&text).map_err(|e| TrainError::Checkpoint {
        path,
        message: format!("invalid state: {e}"),
    })
}

/// Loads the model saved in checkpoint `dir` into `model`.
pub fn load_model<B: Backend>(
    model: Transformer<B>,
    dir: &CheckpointDir,
    device: &B::Device,
) -> Result<Transformer<B>, TrainError> {
    model
        .load_file(dir.record(Record::Model), &Recorder::default(), device)
        .map_err(record_error(dir, Record::Model))
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

    /// The folders in `out`, sorted.
    fn folders(out: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut paths: Vec<_> = std::fs::read_dir(out)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        paths.sort();
        paths
    }

    #[test]
    fn the_latest_checkpoints_are_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("run");
        let run = RunDir::new(&out);
        for keep in [1, 3] {
            let _ = std::fs::remove_dir_all(&out);
            std::fs::create_dir_all(&out).unwrap();
            for step in 1..=5 {
                save_checkpoint(&run, &state(step), keep, |dir| {
                    let file = dir.record_file(Record::Model);
                    std::fs::write(&file, step.to_string()).map_err(TrainError::io(&file))
                })
                .unwrap();
            }
            let expected: Vec<_> = match keep {
                1 => vec![run.checkpoint()],
                _ => vec![run.checkpoint(), run.kept(3), run.kept(4)],
            };
            let expected: Vec<_> = expected.iter().map(|d| d.path().to_path_buf()).collect();
            assert_eq!(folders(&out), expected, "keep {keep}");
            assert_eq!(
                load_state(&run.latest_checkpoint().unwrap()).unwrap().step,
                5
            );
            if keep == 3 {
                assert_eq!(load_state(&run.kept(3)).unwrap().step, 3);
            }
        }
    }

    #[test]
    fn recorder_errors_read_as_sentences() {
        let full = RecorderError::Unknown(
            "Io { inner: Os { code: 28, kind: StorageFull, message: \"No space left on device\" } }"
                .into(),
        );
        assert_eq!(
            recorder_reason(&full),
            "the disk is full (no space left on the device)"
        );
        let eof = RecorderError::DeserializeError("Io { inner: Kind(UnexpectedEof) }".into());
        assert_eq!(
            recorder_reason(&eof),
            "the file ends early: truncated or corrupt"
        );
        assert_eq!(
            recorder_reason(&RecorderError::FileNotFound("x".into())),
            "missing"
        );
    }
}
