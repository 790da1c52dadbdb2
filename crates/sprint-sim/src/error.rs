//! Errors of the simulator.

use std::path::PathBuf;

/// Everything that can go wrong while configuring or running a simulation.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A preset, energy table, statistics file or override is invalid; `key` names the
    /// offending key (dotted path) or file.
    #[error("config {key}: {message}")]
    Config {
        /// Dotted key path (e.g. `memory.bus_bytes_per_ns`) and/or file name.
        key: String,
        /// What is wrong, in one line.
        message: String,
    },
    /// A workload name or shape is invalid, or a trace disagrees with the workload.
    #[error("workload {what}: {message}")]
    Workload {
        /// The workload or trace concerned.
        what: String,
        /// What is wrong, in one line.
        message: String,
    },
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Error from the shared vocabulary (trace format, bit masks).
    #[error(transparent)]
    Core(#[from] sprint_core::CoreError),
}

impl SimError {
    /// Shorthand for [`SimError::Config`].
    pub fn config(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Config {
            key: key.into(),
            message: message.into(),
        }
    }

    /// Shorthand for [`SimError::Workload`].
    pub fn workload(what: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Workload {
            what: what.into(),
            message: message.into(),
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = SimError> = std::result::Result<T, E>;

/// Collapses a multi-line message (TOML parser output) into one line.
pub(crate) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
