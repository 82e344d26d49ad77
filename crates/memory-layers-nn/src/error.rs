use std::path::PathBuf;

use memory_layers_keys::KeysError;
use memory_layers_values::ValueError;
use thiserror::Error;

/// Errors of memory layers: configuration, shapes, and the value lookup.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MemoryError {
    /// The product-key part of the configuration is invalid.
    #[error(transparent)]
    Keys(#[from] KeysError),
    /// The value table or a lookup is invalid.
    #[error(transparent)]
    Values(#[from] ValueError),
    /// A layer configuration field breaks a rule.
    #[error("invalid memory layer config: {field} = {value}: {rule}")]
    InvalidConfig {
        /// The offending field.
        field: &'static str,
        /// Its value, as written.
        value: String,
        /// The rule it breaks.
        rule: &'static str,
    },
    /// The input's last dimension is not the layer's `dim`.
    #[error("input has last dimension {actual}, the layer expects dim = {expected}")]
    InputDim {
        /// The layer's dim.
        expected: usize,
        /// The input's last dimension.
        actual: usize,
    },
    /// The value store does not match the layer.
    #[error("value store is {rows} × {width}, the layer needs {expected_rows} × {expected_width}")]
    StoreShape {
        /// Rows of the store.
        rows: usize,
        /// Width of the store.
        width: usize,
        /// Rows the layer addresses (`n_keys²`).
        expected_rows: usize,
        /// Width the layer reads (`v_dim`).
        expected_width: usize,
    },
}

impl MemoryError {
    pub(crate) fn invalid(field: &'static str, value: impl ToString, rule: &'static str) -> Self {
        Self::InvalidConfig {
            field,
            value: value.to_string(),
            rule,
        }
    }
}

/// A file or folder that could not be read or written: its path, with the system's reason as
/// the source. The one I/O error of every crate that reads or writes files.
#[derive(Debug, Error)]
#[error("{path}")]
pub struct FileError {
    /// The file or folder.
    pub path: PathBuf,
    /// What the system said.
    #[source]
    pub error: std::io::Error,
}

impl FileError {
    /// The error of `path`, for `map_err`.
    pub fn at(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |error| Self { path, error }
    }
}

/// Why a reference file could not be imported.
#[derive(Debug, Error)]
pub enum ImportError {
    /// The file could not be read.
    #[error(transparent)]
    Io(#[from] FileError),
    /// The file is not valid safetensors, or its metadata is unusable.
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A tensor the layer needs is absent.
    #[error("{path}: tensor `{name}` is missing")]
    MissingTensor {
        /// The file.
        path: PathBuf,
        /// The tensor.
        name: String,
    },
    /// A tensor has the wrong shape or dtype.
    #[error("{path}: tensor `{name}` is {actual}, expected {expected}")]
    TensorType {
        /// The file.
        path: PathBuf,
        /// The tensor.
        name: String,
        /// What the layer needs, e.g. `F32 [16, 8]`.
        expected: String,
        /// What the file holds.
        actual: String,
    },
    /// A tensor is not used by the configured layer.
    #[error("{path}: tensor `{name}` is not used by this layer configuration")]
    UnexpectedTensor {
        /// The file.
        path: PathBuf,
        /// The tensor.
        name: String,
    },
    /// The layer rejected the configuration, or the input it was given.
    #[error("{path}: {source}")]
    Layer {
        /// The file.
        path: PathBuf,
        /// The layer's error.
        source: MemoryError,
    },
}
