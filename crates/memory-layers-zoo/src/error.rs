use memory_layers_nn::MemoryError;
use thiserror::Error;

/// Errors of the model zoo.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ZooError {
    /// A model configuration field breaks a rule.
    #[error("invalid model config: {field} = {value}: {rule}")]
    InvalidConfig {
        /// The offending field.
        field: &'static str,
        /// Its value, as written.
        value: String,
        /// The rule it breaks.
        rule: &'static str,
    },
    /// The input is longer than the model's context.
    #[error("sequence of {len} tokens exceeds max_seq_len = {max}")]
    SequenceTooLong {
        /// Tokens given (with the cache).
        len: usize,
        /// The model's context length.
        max: usize,
    },
    /// A memory or PEER layer failed.
    #[error(transparent)]
    Memory(#[from] MemoryError),
}

impl ZooError {
    pub(crate) fn invalid(field: &'static str, value: impl ToString, rule: &'static str) -> Self {
        Self::InvalidConfig {
            field,
            value: value.to_string(),
            rule,
        }
    }
}
