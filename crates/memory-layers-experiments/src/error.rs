use std::path::PathBuf;

use thiserror::Error;

/// Errors of experiment suites.
#[derive(Debug, Error)]
pub enum ExperimentError {
    /// `--budget` could not be read.
    #[error(
        "invalid budget {0:?}: give training tokens per run (2M, 500k, 1500000) or minutes for the whole suite (45min)"
    )]
    Budget(String),
    /// A setting of the suite breaks a rule.
    #[error("invalid experiment setting {field} = {value}: {rule}")]
    Setting {
        /// The setting.
        field: &'static str,
        /// Its value.
        value: String,
        /// The rule it breaks.
        rule: &'static str,
    },
    /// A file could not be read or written.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A run failed.
    #[error("run {run}")]
    Run {
        /// The run's name.
        run: String,
        /// Why.
        #[source]
        error: Box<memory_layers_train::TrainError>,
    },
    /// A run's metrics could not be read for the report.
    #[error(transparent)]
    Train(#[from] memory_layers_train::TrainError),
    /// A figure could not be drawn.
    #[error(transparent)]
    Plot(#[from] memory_layers_plot::PlotError),
}

impl ExperimentError {
    pub(crate) fn file(path: impl Into<PathBuf>, error: impl std::fmt::Display) -> Self {
        Self::File {
            path: path.into(),
            message: error.to_string(),
        }
    }
}
