use std::path::PathBuf;

use memory_layers_data::DataError;
use memory_layers_nn::FileError;
use memory_layers_parallel::ParallelError;
use memory_layers_plot::PlotError;
use memory_layers_values::ValueError;
use memory_layers_zoo::ZooError;
use memory_layers_zoo::hf::HfError;
use thiserror::Error;

use crate::estimate::{FitAdvice, MemoryEstimate, gib};

/// Errors of training and evaluation.
#[derive(Debug, Error)]
pub enum TrainError {
    /// Bad data, or data that could not be read.
    #[error(transparent)]
    Data(#[from] DataError),
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
    /// A file or folder could not be read or written.
    #[error(transparent)]
    Io(#[from] FileError),
    /// A checkpoint or run directory is unusable.
    #[error("{path}: {message}")]
    Checkpoint {
        /// The checkpoint folder or file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The model failed.
    #[error(transparent)]
    Model(#[from] ZooError),
    /// A value table or its optimizer failed.
    #[error(transparent)]
    Values(#[from] ValueError),
    /// A parallel run's collectives failed.
    #[error(transparent)]
    Collective(#[from] ParallelError),
    /// A parallel run cannot go on (a layout it does not support, a peer that stopped).
    #[error("parallel training: {0}")]
    Parallel(String),
    /// The run's memory estimate exceeds what the device has.
    #[error(
        "this run needs about {} on one device, which has {}:\n{estimate}\n{advice}",
        gib(estimate.total()),
        gib(*available)
    )]
    DoesNotFit {
        /// The estimate, by part.
        estimate: Box<MemoryEstimate>,
        /// The device's memory, in bytes.
        available: u64,
        /// Flags that would fit, or why none do.
        advice: FitAdvice,
    },
    /// A chart could not be drawn.
    #[error(transparent)]
    Plot(#[from] PlotError),
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
    /// `run.init_from` could not be loaded into the fresh model.
    #[error("run.init_from")]
    InitFrom(#[source] HfError),
    /// A run's weights could not be exported under Hugging Face names.
    #[error(transparent)]
    Export(#[from] HfError),
}

impl TrainError {
    pub(crate) fn config(field: &'static str, value: impl ToString, rule: &'static str) -> Self {
        Self::Config {
            field,
            value: value.to_string(),
            rule,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |error| Self::Io(FileError { path, error })
    }
}
