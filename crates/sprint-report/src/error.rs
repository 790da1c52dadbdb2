//! Errors of the report layer.

use std::path::PathBuf;

/// An error while building or writing a report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A table's rows do not match its columns.
    #[error("table `{table}`: row {row} has {got} cells, the table has {want} columns")]
    RowWidth {
        /// Table id.
        table: String,
        /// Row index.
        row: usize,
        /// Cells in the row.
        got: usize,
        /// Columns of the table.
        want: usize,
    },
    /// A plot has nothing to draw or inconsistent series.
    #[error("plot `{plot}`: {reason}")]
    Plot {
        /// Plot id.
        plot: String,
        /// What is wrong.
        reason: String,
    },
    /// Two items of one document share a file name.
    #[error("report: two items are both named `{0}`")]
    DuplicateId(String),
    /// Writing a file failed.
    #[error("cannot write {path}: {reason}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

impl From<sprint_core::error::CoreError> for ReportError {
    fn from(e: sprint_core::error::CoreError) -> Self {
        match e {
            sprint_core::error::CoreError::Io { path, source } => ReportError::Write {
                path,
                reason: source.to_string(),
            },
            other => ReportError::Write {
                path: PathBuf::new(),
                reason: other.to_string(),
            },
        }
    }
}

/// Result of the report layer.
pub type Result<T> = std::result::Result<T, ReportError>;
