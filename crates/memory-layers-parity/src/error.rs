use std::path::PathBuf;

use memory_layers_nn::import::ImportError;
use thiserror::Error;

/// Why a fixture could not be checked (a failed comparison is a result, not an error).
#[derive(Debug, Error)]
pub enum ParityError {
    /// The fixture's layer, or one of its own tensors, could not be read: the same failures
    /// as importing reference weights (missing or mistyped tensor, unreadable file, a stray
    /// `grad.*`, the layer failing on the input).
    #[error(transparent)]
    Import(#[from] ImportError),
    /// The backward pass gave no gradient for a parameter or the input.
    #[error("{path}: no gradient reached `{name}`")]
    MissingGradient {
        /// The fixture.
        path: PathBuf,
        /// The parameter, in its reference name, or `input`.
        name: String,
    },
}
