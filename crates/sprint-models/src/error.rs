//! Errors of model loading, tokenisation and forward passes.

use std::path::PathBuf;

/// Everything that can go wrong in this crate. Variants name the file and, where there is
/// one, the tensor concerned.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A configuration file is malformed or holds unsupported values.
    #[error("{path}: {message}")]
    Config {
        /// The file (or a description of the source when there is no file).
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A weights file could not be parsed (truncated, corrupt, wrong format).
    #[error("{path}: cannot read weights: {message}")]
    Weights {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A tensor the architecture needs is absent from the weights file.
    #[error("{path}: tensor `{tensor}` is missing")]
    MissingTensor {
        /// The file.
        path: PathBuf,
        /// Tensor name.
        tensor: String,
    },
    /// A tensor has the wrong shape for the configuration.
    #[error("{path}: tensor `{tensor}` has shape {actual}, expected {expected}")]
    TensorShape {
        /// The file.
        path: PathBuf,
        /// Tensor name.
        tensor: String,
        /// Shape the configuration implies.
        expected: String,
        /// Shape found in the file.
        actual: String,
    },
    /// The tokenizer could not be built or failed on an input.
    #[error("tokenizer ({source_name}): {message}")]
    Tokenizer {
        /// Where the tokenizer came from (a file, or `GGUF metadata of <file>`).
        source_name: String,
        /// What went wrong.
        message: String,
    },
    /// The caller passed inputs that do not fit the model.
    #[error("invalid input: {0}")]
    Input(String),
    /// The thresholds do not cover the model's layers and heads.
    #[error("thresholds: {0}")]
    Thresholds(String),
    /// A model name or path could not be resolved.
    #[error("unknown model `{name}`: {message}")]
    UnknownModel {
        /// The name or path given.
        name: String,
        /// Why it was not recognised.
        message: String,
    },
    /// A tensor operation failed (`op` names the step).
    #[error("{op}: {source}")]
    Candle {
        /// The step of the forward pass or loader.
        op: String,
        /// The candle error.
        source: candle_core::Error,
    },
    /// The functional SPRINT attention model rejected its input.
    #[error("attention layer {layer}: {source}")]
    Attention {
        /// Attention layer index.
        layer: usize,
        /// The underlying error.
        source: sprint_attention::AttentionError,
    },
    /// A shared-vocabulary error (configuration, trace writing).
    #[error(transparent)]
    Core(#[from] sprint_core::CoreError),
    /// A required asset is not in the cache.
    #[error(transparent)]
    Asset(#[from] sprint_assets::AssetError),
}

/// Result alias of this crate.
pub type Result<T, E = ModelError> = std::result::Result<T, E>;

/// Adds the name of the failing step to a candle error.
pub trait CandleContext<T> {
    /// Wraps the error as [`ModelError::Candle`] with `op` as context.
    fn op(self, op: &str) -> Result<T>;
}

impl<T> CandleContext<T> for candle_core::Result<T> {
    fn op(self, op: &str) -> Result<T> {
        self.map_err(|source| ModelError::Candle {
            op: op.to_string(),
            source,
        })
    }
}

impl ModelError {
    /// A [`ModelError::Config`] for `path`.
    pub fn config(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self::Config {
            path: path.into(),
            message: message.into(),
        }
    }
}
