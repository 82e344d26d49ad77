use memory_keys::KeysError;
use memory_values::ValueError;
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
