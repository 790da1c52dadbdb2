//! Errors of the functional model.

/// Everything that can go wrong when running attention on user tensors.
#[derive(Debug, thiserror::Error)]
pub enum AttentionError {
    /// Tensor shapes disagree; `what` names the tensor or relation.
    #[error("shape mismatch: {what}: expected {expected}, got {actual}")]
    Shape {
        /// The tensor or relation concerned, e.g. `k vs q head_dim`.
        what: String,
        /// Expected shape or value.
        expected: String,
        /// Actual shape or value.
        actual: String,
    },
    /// A tensor holds a NaN or an infinity.
    #[error("{tensor} holds a non-finite value ({value}) at index [{head}, {row}, {col}]")]
    NonFinite {
        /// Tensor name (`q`, `k`, `v`).
        tensor: String,
        /// Head index.
        head: usize,
        /// Token index.
        row: usize,
        /// Element index.
        col: usize,
        /// The offending value.
        value: f32,
    },
    /// Configuration problem (range, thresholds shape, ...).
    #[error(transparent)]
    Config(#[from] sprint_core::CoreError),
}

/// Result alias of this crate.
pub type Result<T, E = AttentionError> = std::result::Result<T, E>;

/// Shorthand for an [`AttentionError::Shape`].
pub fn shape_error(
    what: impl Into<String>,
    expected: impl std::fmt::Display,
    actual: impl std::fmt::Display,
) -> AttentionError {
    AttentionError::Shape {
        what: what.into(),
        expected: expected.to_string(),
        actual: actual.to_string(),
    }
}
