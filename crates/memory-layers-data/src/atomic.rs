//! Atomic file writes: a run killed at any moment leaves the previous file or the new one,
//! whole.

use std::path::Path;

use crate::DataError;

/// Writes `bytes` to `path` through a temporary file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), DataError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(DataError::io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(DataError::io(path))
}
