use std::path::PathBuf;

use memory_layer::MemoryError;
use memory_layer::import::ImportError;
use thiserror::Error;

/// Why a fixture could not be checked (a failed comparison is a result, not an error).
#[derive(Debug, Error)]
pub enum ParityError {
    /// The fixture's layer could not be imported.
    #[error(transparent)]
    Import(#[from] ImportError),
    /// The fixture's tensors could not be read.
    #[error("{path}: {message}")]
    Read {
        /// The fixture.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A tensor the check needs is absent.
    #[error("{path}: tensor `{name}` is missing")]
    MissingTensor {
        /// The fixture.
        path: PathBuf,
        /// The tensor.
        name: String,
    },
    /// A tensor has the wrong shape or dtype.
    #[error("{path}: tensor `{name}` is {actual}, expected {expected}")]
    TensorType {
        /// The fixture.
        path: PathBuf,
        /// The tensor.
        name: String,
        /// What the check needs, e.g. `F32 [16, 8]`.
        expected: String,
        /// What the fixture holds.
        actual: String,
    },
    /// An expected gradient of something that is not a parameter of the layer or its input.
    #[error("{path}: tensor `{name}` is not used by this layer configuration")]
    UnexpectedTensor {
        /// The fixture.
        path: PathBuf,
        /// The tensor.
        name: String,
    },
    /// The layer failed on the fixture's input.
    #[error("{path}: {source}")]
    Layer {
        /// The fixture.
        path: PathBuf,
        /// The layer's error.
        source: MemoryError,
    },
    /// The backward pass gave no gradient for a parameter or the input.
    #[error("{path}: no gradient reached `{name}`")]
    MissingGradient {
        /// The fixture.
        path: PathBuf,
        /// The parameter, in its reference name, or `input`.
        name: String,
    },
}
