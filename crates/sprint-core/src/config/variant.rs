//! Which attention variant runs, and how its kept keys are recomputed.

use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};

/// The attention variants: the four of the paper's Fig 9, then the peer designs'
/// pruning decisions ([`Variant::PEERS`], parameters in [`crate::peers`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Variant {
    /// Dense softmax attention over every non-masked key.
    Dense,
    /// Runtime pruning (LeOPArd): every key is scored exactly, keys below `Th` are dropped.
    RuntimePruning,
    /// SPRINT without recompute: softmax over the approximate in-memory scores of kept keys.
    SprintNoRecompute,
    /// SPRINT: in-memory pruning, then exact digital recompute of the kept keys.
    Sprint,
    /// Sanger (MICRO 2021): a 4-bit prediction of the attention map, thresholded on the
    /// predicted probability, then exact attention on the mask.
    Sanger,
    /// LeOPArd (ISCA 2022): runtime pruning at `Th` by a bit-serial dot product that stops
    /// once the score can no longer reach `Th` (the bit-planes processed are counted).
    Leopard,
    /// SpAtten (HPCA 2021): cascade token and head pruning by importance accumulated over the
    /// layers of a forward pass, and optional progressive quantisation. It acts across
    /// layers ([`Variant::acts_across_layers`]): it runs in a model forward, not on one layer.
    Spatten,
    /// A3 (HPCA 2020): a greedy search over the pre-sorted key columns picks candidate keys
    /// from a few of the largest and smallest component products, exact scores for the
    /// candidates only, then the post-scoring cut below the largest candidate score.
    A3,
    /// Energon (TCAD 2022): mixed-precision multi-round filtering, each round keeping the keys
    /// whose low-bit score reaches a threshold from the row's mean, maximum and minimum, then
    /// exact attention on the last round's survivors.
    Energon,
}

impl Variant {
    /// All variants, in the order of Fig 9.
    pub const ALL: [Variant; 4] = [
        Variant::Dense,
        Variant::RuntimePruning,
        Variant::SprintNoRecompute,
        Variant::Sprint,
    ];

    /// The peer designs' pruning decisions, beside the paper's four.
    pub const PEERS: [Variant; 5] = [
        Variant::Sanger,
        Variant::Leopard,
        Variant::Spatten,
        Variant::A3,
        Variant::Energon,
    ];

    /// The kebab-case name used in configs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Dense => "dense",
            Variant::RuntimePruning => "runtime-pruning",
            Variant::SprintNoRecompute => "sprint-no-recompute",
            Variant::Sprint => "sprint",
            Variant::Sanger => "sanger",
            Variant::Leopard => "leopard",
            Variant::Spatten => "spatten",
            Variant::A3 => "a3",
            Variant::Energon => "energon",
        }
    }

    /// True for the peer designs ([`Variant::PEERS`]).
    pub fn is_peer(self) -> bool {
        Self::PEERS.contains(&self)
    }

    /// Parses a kebab-case name.
    pub fn parse(name: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .chain(Self::PEERS)
            .find(|v| v.name() == name)
            .ok_or_else(|| {
                CoreError::config(
                    "variant",
                    format!(
                        "unknown variant `{name}` (expected one of dense, runtime-pruning, sprint-no-recompute, sprint, sanger, leopard, spatten, a3, energon)"
                    ),
                )
            })
    }

    /// True for the variants whose decisions carry state from one attention layer to the next
    /// within a forward pass (SpAtten's cascade pruning): they run only inside a model.
    pub fn acts_across_layers(self) -> bool {
        matches!(self, Variant::Spatten)
    }

    /// True for the variants whose candidate keys are chosen in memory.
    pub fn prunes_in_memory(self) -> bool {
        matches!(self, Variant::Sprint | Variant::SprintNoRecompute)
    }
}

/// How the kept keys are scored, normalised and combined on chip.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RecomputeMode {
    /// The integer datapath of the CORELET: 8b x 8b scores, fixed-point softmax, 8b x 8b x V.
    FixedPoint,
    /// Float scores, float softmax and float x V on the unquantised tensors: isolates the
    /// error due to pruning from the error due to quantisation.
    Float,
}
