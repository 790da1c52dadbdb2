//! Errors of the shared vocabulary: configuration and trace format.

use std::path::PathBuf;

/// Everything that can go wrong while reading configuration or traces.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// A configuration file or value is invalid; `place` names the file or key.
    #[error("config {place}: {message}")]
    Config {
        /// File path and/or key path, e.g. `cfg.toml: noise.read_sigma_fs`.
        place: String,
        /// What is wrong, in one line.
        message: String,
    },
    /// A command-line value or path is unusable (an output that would overwrite an input,
    /// a thread count over the limit); `place` names the flag and the user's value.
    #[error("{place}: {message}")]
    Usage {
        /// The flag and value, e.g. `--out result.safetensors`.
        place: String,
        /// What is wrong, in one line.
        message: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A trace stream is malformed; `offset` is the byte offset where the problem was found.
    #[error("trace: {message} (at byte {offset})")]
    Trace {
        /// What is wrong.
        message: String,
        /// Byte offset into the stream.
        offset: u64,
    },
}

impl CoreError {
    /// Shorthand for a [`CoreError::Config`].
    pub fn config(place: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Config {
            place: place.into(),
            message: message.into(),
        }
    }
}

impl CoreError {
    /// Shorthand for a [`CoreError::Usage`].
    pub fn usage(place: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Usage {
            place: place.into(),
            message: message.into(),
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = CoreError> = std::result::Result<T, E>;
