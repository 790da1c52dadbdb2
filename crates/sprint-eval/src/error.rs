//! Errors of the evaluation crate.

use std::path::PathBuf;

/// Everything that can go wrong while evaluating.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A model could not be loaded or a forward pass failed.
    #[error(transparent)]
    Model(#[from] sprint_models::ModelError),
    /// A data set is missing (the message names the fetch command) or malformed.
    #[error(transparent)]
    Asset(#[from] sprint_assets::AssetError),
    /// An attention configuration or thresholds file is invalid.
    #[error(transparent)]
    Core(#[from] sprint_core::CoreError),
    /// A tensor operation failed.
    #[error("{op}: {source}")]
    Candle {
        /// What was being computed.
        op: &'static str,
        /// The underlying error.
        source: candle_core::Error,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The task does not fit the model (e.g. perplexity of an encoder).
    #[error("task `{task}` needs {needs}, but model `{model}` is {is}")]
    TaskModel {
        /// Task name.
        task: String,
        /// What the task needs (`a text encoder`, `a decoder`).
        needs: &'static str,
        /// Model name.
        model: String,
        /// What the model is.
        is: String,
    },
    /// An argument is out of range or inconsistent.
    #[error("{0}")]
    Input(String),
}

/// Result with [`EvalError`].
pub type Result<T> = std::result::Result<T, EvalError>;

/// Reads the text file `path`; the error names it.
pub(crate) fn read_text(path: &std::path::Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| EvalError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Adds the operation name to candle errors.
pub(crate) trait CandleOp<T> {
    fn op(self, op: &'static str) -> Result<T>;
}

impl<T> CandleOp<T> for std::result::Result<T, candle_core::Error> {
    fn op(self, op: &'static str) -> Result<T> {
        self.map_err(|source| EvalError::Candle { op, source })
    }
}
