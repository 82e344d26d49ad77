use std::path::PathBuf;

use memory_layers_nn::FileError;
use thiserror::Error;

/// Errors of reading, tokenising and preparing data.
#[derive(Debug, Error)]
pub enum DataError {
    /// Bad input; names the file and, where it applies, the line.
    #[error("{path}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Input {
        /// The file (or `embedded:NAME`).
        path: PathBuf,
        /// 1-based line, where it applies.
        line: Option<usize>,
        /// What is wrong.
        message: String,
    },
    /// A file or folder could not be read or written.
    #[error(transparent)]
    Io(#[from] FileError),
    /// A setting breaks a rule.
    #[error("{field} = {value}: {rule}")]
    Setting {
        /// The setting.
        field: &'static str,
        /// Its value, as written.
        value: String,
        /// The rule it breaks.
        rule: &'static str,
    },
    /// The tokenizer could not be trained or used.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
}

impl DataError {
    /// Bad input in `path` (at `line`).
    pub fn input(
        path: impl Into<PathBuf>,
        line: Option<usize>,
        message: impl Into<String>,
    ) -> Self {
        Self::Input {
            path: path.into(),
            line,
            message: message.into(),
        }
    }

    pub(crate) fn setting(field: &'static str, value: impl ToString, rule: &'static str) -> Self {
        Self::Setting {
            field,
            value: value.to_string(),
            rule,
        }
    }

    /// An I/O error of `path`, for `map_err`.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |error| Self::Io(FileError { path, error })
    }
}
