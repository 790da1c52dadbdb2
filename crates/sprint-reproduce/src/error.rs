//! Errors of a reproduction run.

use std::path::PathBuf;

/// An error of `sprint reproduce`, naming the stage or file concerned.
#[derive(Debug, thiserror::Error)]
pub enum ReproduceError {
    /// A stage failed.
    #[error("stage `{stage}`: {message}")]
    Stage {
        /// Stage name.
        stage: String,
        /// What failed.
        message: String,
    },
    /// A cached result could not be read or written.
    #[error("cache {path}: {message}")]
    Cache {
        /// The cache file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The report could not be written.
    #[error(transparent)]
    Report(#[from] sprint_report::ReportError),
    /// Bad usage (an output folder that is a file, an unknown mode).
    #[error("{0}")]
    Usage(String),
}

impl ReproduceError {
    /// A stage error.
    pub fn stage(stage: &str, e: impl std::fmt::Display) -> Self {
        ReproduceError::Stage {
            stage: stage.into(),
            message: e.to_string(),
        }
    }
}

/// Result of a reproduction run.
pub type Result<T> = std::result::Result<T, ReproduceError>;
