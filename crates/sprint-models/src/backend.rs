//! The attention backend for a configuration's variant: the one place that knows which
//! implementation runs which variant.

use sprint_core::config::{AttentionConfig, Thresholds, Variant};

use crate::attention::{Attention, DenseAttention, SprintAttention};
use crate::error::Result;
use crate::spatten::SpattenAttention;

/// The backend for `cfg.variant`: [`DenseAttention`] (float, fused kernel) for dense,
/// [`SpattenAttention`] for SpAtten (its decisions span layers), [`SprintAttention`] for the
/// others. `thresholds` are in logit units (unused by dense and SpAtten).
pub fn backend(cfg: AttentionConfig, thresholds: Thresholds) -> Result<Box<dyn Attention>> {
    cfg.validate()?;
    Ok(match cfg.variant {
        Variant::Dense => Box::new(DenseAttention::new(cfg)),
        Variant::Spatten => Box::new(SpattenAttention::new(cfg)?),
        _ => Box::new(SprintAttention::new(cfg, thresholds)?),
    })
}
