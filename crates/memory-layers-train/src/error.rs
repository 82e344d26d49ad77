use std::path::PathBuf;

use memory_layers_zoo::ZooError;
use thiserror::Error;

/// Errors of training and evaluation.
#[derive(Debug, Error)]
pub enum TrainError {
    /// Bad input data; names the file and, where it applies, the line.
    #[error("{path}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Data {
        /// The file (or `embedded:NAME`).
        path: PathBuf,
        /// 1-based line, where it applies.
        line: Option<usize>,
        /// What is wrong.
        message: String,
    },
    /// A configuration value breaks a rule.
    #[error("invalid training config: {field} = {value}: {rule}")]
    Config {
        /// The offending field.
        field: &'static str,
        /// Its value, as written.
        value: String,
        /// The rule it breaks.
        rule: &'static str,
    },
    /// The tokenizer could not be trained or used.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A file could not be read or written.
    #[error("{path}: {error}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The I/O error (in the message, not a source: printed once).
        error: std::io::Error,
    },
    /// A checkpoint or run directory is unusable.
    #[error("{path}: {message}")]
    Checkpoint {
        /// The checkpoint folder.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The model failed.
    #[error(transparent)]
    Model(#[from] ZooError),
    /// A parallel run cannot go on (a layout it does not support, a collective that failed).
    #[error("parallel training: {0}")]
    Parallel(String),
    /// A chart could not be drawn.
    #[error("plot: {0}")]
    Plot(String),
    /// `--set KEY=VALUE` does not fit the configuration.
    #[error("--set {key}={value}: {rule}")]
    Setting {
        /// The dotted key.
        key: String,
        /// The value given.
        value: String,
        /// What is wrong.
        rule: String,
    },
    /// A resumed run asks for a configuration its checkpoint was not trained with.
    #[error(
        "cannot resume with a different configuration: {0}; only the number of steps and the \
         logging, checkpoint and evaluation settings may change (or train into a new --out)"
    )]
    Resume(String),
    /// The run stopped early on request (SIGINT, SIGTERM) after writing a checkpoint.
    #[error("interrupted at step {step}: checkpoint saved in {out}; continue with --resume")]
    Interrupted {
        /// The last step done (and saved).
        step: usize,
        /// The run directory.
        out: PathBuf,
    },
    /// The run directory already holds a run.
    #[error(
        "{0}: this run directory already holds a run; pass --resume to continue it or \
         --overwrite to replace it"
    )]
    RunExists(PathBuf),
    /// A value table or its optimizer failed.
    #[error(transparent)]
    Values(#[from] memory_layers_values::ValueError),
    /// `run.init_from` could not be loaded into the fresh model.
    #[error("run.init_from: {0}")]
    InitFrom(Box<crate::export::ExportError>),
}

impl TrainError {
    pub(crate) fn data(
        path: impl Into<PathBuf>,
        line: Option<usize>,
        message: impl Into<String>,
    ) -> Self {
        Self::Data {
            path: path.into(),
            line,
            message: message.into(),
        }
    }

    pub(crate) fn config(field: &'static str, value: impl ToString, rule: &'static str) -> Self {
        Self::Config {
            field,
            value: value.to_string(),
            rule,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |error| Self::Io { path, error }
    }
}

impl From<memory_layers_parallel::ParallelError> for TrainError {
    fn from(e: memory_layers_parallel::ParallelError) -> Self {
        Self::Parallel(e.to_string())
    }
}
