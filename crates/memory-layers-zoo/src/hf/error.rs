//! The errors of the Hugging Face mapping.

use std::path::{Path, PathBuf};

use memory_layers_nn::FileError;
use thiserror::Error;

use crate::{ModelKind, ZooError};

/// Errors of writing and loading Hugging Face-named weights; each names the file and, where it
/// applies, the tensor.
#[derive(Debug, Error)]
pub enum HfError {
    /// The model failed.
    #[error(transparent)]
    Model(#[from] ZooError),
    /// A model with parts that have no Hugging Face name.
    #[error("{kind} models cannot be exported: {reason}")]
    Unsupported {
        /// The model kind.
        kind: ModelKind,
        /// Why.
        reason: String,
    },
    /// A file or folder could not be read or written.
    #[error(transparent)]
    Io(#[from] FileError),
    /// Not a safetensors file, or one burn-store could not read or write.
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Tensors the model needs are not in the file.
    #[error("{path}: missing tensor{} {}", if names.len() == 1 { "" } else { "s" }, names.join(", "))]
    Missing {
        /// The file.
        path: PathBuf,
        /// The missing tensors' names.
        names: Vec<String>,
    },
    /// A tensor of the file has another shape than the model's parameter, or is not a float.
    #[error("{path}: tensor {name} is {actual}, this model's is {expected}")]
    Tensor {
        /// The file.
        path: PathBuf,
        /// The tensor's name.
        name: String,
        /// Its dtype and shape in the model (PyTorch layout).
        expected: String,
        /// Its dtype and shape in the file.
        actual: String,
    },
    /// The file holds blocks the model does not have.
    #[error("{path}: tensor {name} is for block {block}; this model has {layers} blocks")]
    ExtraBlock {
        /// The file.
        path: PathBuf,
        /// The tensor's name.
        name: String,
        /// Its block.
        block: usize,
        /// The model's blocks.
        layers: usize,
    },
    /// The `config.json` beside the file describes another model.
    #[error("{path}: {field} is {file}, this model's is {model}")]
    Config {
        /// The config.json.
        path: PathBuf,
        /// The field.
        field: &'static str,
        /// Its value in the file.
        file: String,
        /// The model's.
        model: String,
    },
}

/// An [`HfError::Io`] for `path`, for `map_err`.
pub(super) fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> HfError + '_ {
    move |error| {
        HfError::Io(FileError {
            path: path.to_path_buf(),
            error,
        })
    }
}
