//! The attention geometry of a model (layers, heads, head width, causality): what
//! thresholds and traces are shaped by, shared by every architecture and [`crate::model`].

use sprint_core::config::{AttentionConfig, Thresholds};

use crate::error::Result;

/// The attention layers of a model, as thresholds and traces see them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttentionGeometry {
    /// Attention layers (applications, for models that share layers).
    pub layers: usize,
    /// Query heads per layer.
    pub heads: usize,
    /// Key/value heads per layer.
    pub kv_heads: usize,
    /// Elements per head.
    pub head_dim: usize,
    /// Whether attention is causal.
    pub causal: bool,
}

impl AttentionGeometry {
    /// `layers` layers of plain multi-head attention: `heads` query heads, as many key/value
    /// heads, each `hidden / heads` elements wide.
    pub fn multi_head(layers: usize, hidden: usize, heads: usize, causal: bool) -> Self {
        Self {
            layers,
            heads,
            kv_heads: heads,
            head_dim: hidden / heads,
            causal,
        }
    }

    /// Resolves `cfg`'s thresholds for this model's layers and query heads.
    pub fn thresholds(&self, cfg: &AttentionConfig) -> Result<Thresholds> {
        Ok(cfg.thresholds(self.layers, self.heads)?)
    }
}
