use thiserror::Error;

/// Errors of the value crate: invalid configurations and invalid lookups.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ValueError {
    /// A configuration field breaks a rule.
    #[error("invalid value table config: {field} = {value}: {rule}")]
    InvalidConfig {
        /// The offending field.
        field: &'static str,
        /// Its value, as written.
        value: String,
        /// The rule it breaks.
        rule: &'static str,
    },
    /// A lookup index does not address a row of the table.
    #[error("value index {index} is outside the table of {rows} rows")]
    IndexOutOfRange {
        /// The first offending index found.
        index: i64,
        /// Rows in the table.
        rows: usize,
    },
    /// Tensors given to a lookup do not have compatible shapes.
    #[error("{what}: expected shape {expected:?}, got {actual:?}")]
    ShapeMismatch {
        /// Which tensor.
        what: &'static str,
        /// The shape the lookup needs.
        expected: Vec<usize>,
        /// The shape it got.
        actual: Vec<usize>,
    },
    /// A row-gradient sink held gradients of another backend than the one asked for.
    #[error("row gradients were recorded on another backend than {expected}")]
    SinkBackend {
        /// The backend asked for.
        expected: &'static str,
    },
    /// A store built on tables (a sharded table) failed.
    #[error("value store: {0}")]
    Store(String),
    /// A row-wise optimizer step got gradients or state of the wrong shape.
    #[error("row optimizer: {0}")]
    RowOptimizer(String),
}
