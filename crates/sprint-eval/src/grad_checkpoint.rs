//! Gradient checkpointing of `sprint thresholds learn`'s steps ([`GradCheckpoint`]): memory
//! against recompute time, decided per run on the estimated autograd tape of its layers
//! ([`sprint_models::soft::SoftModel::layer_tape_bytes`]).

use serde::{Deserialize, Serialize};
#[cfg(doc)]
use sprint_models::soft::SoftModel;

/// Gradient checkpointing of the training steps ([`SoftModel::forward_train`]): whether the
/// layers' autograd tape is kept through the backward (off) or each layer is recomputed
/// from its stored input in the backward (on). The learned thresholds and weights are the
/// same bits either way; on holds one layer's tape instead of all of them, for one more
/// forward of the layers per step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GradCheckpoint {
    /// On when the estimated tape of the layers ([`SoftModel::layer_tape_bytes`] at the
    /// run's batch size and longest training sequence) exceeds [`AUTO_TAPE_BUDGET_BYTES`].
    #[default]
    Auto,
    /// Always recompute the layers in the backward.
    On,
    /// Always keep the whole tape.
    Off,
}

/// The layers' estimated tape (bytes) above which [`GradCheckpoint::Auto`] checkpoints:
/// 3 GiB. SmolLM2 with the datapath estimates 2.0 GB at 256-token windows (the short
/// recipe of `sprint reproduce --quick`: not checkpointed) and 6.7 GB at 512 (the
/// documented recipe: checkpointed); MiniLM at batch 8 x 256 tokens, 2.9 GB.
pub const AUTO_TAPE_BUDGET_BYTES: f64 = 3.0 * (1u64 << 30) as f64;

impl GradCheckpoint {
    /// The name on the command line (`auto`, `on`, `off`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::On => "on",
            Self::Off => "off",
        }
    }

    /// Whether to checkpoint a run whose layers' tape is estimated at `tape_bytes`.
    pub fn decide(self, tape_bytes: f64) -> bool {
        match self {
            Self::Auto => tape_bytes > AUTO_TAPE_BUDGET_BYTES,
            Self::On => true,
            Self::Off => false,
        }
    }
}

impl std::fmt::Display for GradCheckpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for GradCheckpoint {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "on" => Ok(Self::On),
            "off" => Ok(Self::Off),
            other => Err(format!(
                "unknown gradient checkpointing mode `{other}` (auto, on, off)"
            )),
        }
    }
}
