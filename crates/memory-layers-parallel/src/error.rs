use thiserror::Error;

/// Errors of collectives and sharded tables.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParallelError {
    /// A mesh or group description breaks a rule.
    #[error("invalid parallel layout: {0}")]
    Layout(String),
    /// The collective engine failed (a peer missing, mismatched shapes across peers, …).
    #[error("collective operation {op} failed: {message}")]
    Collective {
        /// Which operation.
        op: &'static str,
        /// The engine's message.
        message: String,
    },
    /// The value table failed.
    #[error(transparent)]
    Values(#[from] memory_layers_values::ValueError),
}
