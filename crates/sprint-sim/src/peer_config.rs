//! The `[peer]` section of a preset: a peer accelerator's dataflow on the engine, with its
//! free variables ([`PeerFile`], as written) and its validated runtime form ([`Peer`]).
//!
//! Each key is used by one dataflow only (named in its doc) and required by it; a key of
//! another dataflow is an error naming the key. What each dataflow models:
//! docs/simulator.md "The peers as designs".

use serde::{Deserialize, Serialize};

use crate::error::{Result, SimError};
use crate::sourced::Sourced;

/// Which peer accelerator's dataflow a design follows (`[peer] dataflow`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PeerDataflow {
    /// Sanger (MICRO 2021): a low-bit predictor scores every visible (query, key) pair on
    /// chip, then the sparse array computes exact scores and the weighted sum on the
    /// predicted mask; only the masked keys' exact K and V are fetched.
    Sanger,
    /// LeOPArd (ISCA 2022): every visible key is fetched and scored bit-serially, most
    /// significant plane first, with early termination; the survivors of the exact
    /// threshold enter softmax and x V.
    Leopard,
    /// A3 (HPCA 2020): every visible key is fetched into the key buffer, a greedy candidate
    /// search over the sorted key columns picks the candidates, which are scored exactly;
    /// post-scoring keeps the survivors for softmax and x V.
    A3,
    /// SpAtten (HPCA 2021): cascade token and head pruning decide the kept tokens on chip
    /// (top-k engine) before their K and V are fetched; local value pruning (top-k over each
    /// query's probabilities) fetches only the top values; progressive quantisation fetches
    /// the keys' MSBs and, for the rows it flags, their LSBs.
    Spatten,
    /// Energon (TCAD 2022): mix-precision multi-round filtering on a filter unit (round 1
    /// 4-bit queries x 2-bit keys over every visible pair, round 2 4-bit keys over round 1's
    /// survivors), then exact attention on round 2's survivors, whose K and V are fetched.
    Energon,
}

impl PeerDataflow {
    /// The kebab-case name used in presets.
    pub fn name(self) -> &'static str {
        match self {
            PeerDataflow::Sanger => "sanger",
            PeerDataflow::Leopard => "leopard",
            PeerDataflow::A3 => "a3",
            PeerDataflow::Spatten => "spatten",
            PeerDataflow::Energon => "energon",
        }
    }

    /// The `[peer]` keys this dataflow uses (and requires), besides `dataflow`.
    fn keys(self) -> &'static [&'static str] {
        match self {
            PeerDataflow::Sanger => &["predictor_bits", "predictor_macs_per_cycle_per_corelet"],
            PeerDataflow::Leopard => &[
                "key_bits",
                "bit_serial_lanes_per_corelet",
                "key_planes_per_pair_bidirectional",
                "key_planes_per_pair_causal",
            ],
            PeerDataflow::A3 => &[
                "candidate_iterations_per_cycle_per_corelet",
                "candidate_iterations_per_visible_key",
            ],
            PeerDataflow::Spatten => &[
                "topk_elements_per_cycle",
                "value_keep_fraction",
                "progressive_quantization",
                "requant_row_fraction",
            ],
            PeerDataflow::Energon => &[
                "filter_key_bits",
                "filter_macs_per_cycle_per_corelet",
                "filter_round1_keep_fraction",
            ],
        }
    }
}

/// `[peer]`: a peer accelerator's dataflow on the engine, with its free variables. Each
/// key is used by one dataflow only (named in its doc) and required by it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerFile {
    /// The dataflow.
    pub dataflow: Sourced<PeerDataflow>,
    /// Sanger: bits of the predictor's quantised Q and K elements, bits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predictor_bits: Option<Sourced<u32>>,
    /// Sanger: low-bit multiply-accumulates the predictor performs per cycle, per
    /// CORELET, MACs per cycle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predictor_macs_per_cycle_per_corelet: Option<Sourced<u32>>,
    /// LeOPArd: bits of a key element, processed one plane per step, bits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_bits: Option<Sourced<u32>>,
    /// LeOPArd: 1-bit x 8-bit product lanes of the bit-serial QK unit, per CORELET
    /// (one key bit-plane of `d` elements takes `d / lanes` cycles), lanes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bit_serial_lanes_per_corelet: Option<Sourced<u32>>,
    /// LeOPArd: key bit-planes processed per visible (query, key) pair before early
    /// termination, on bidirectional (encoder) workloads without a trace that counts them,
    /// planes per pair.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_planes_per_pair_bidirectional: Option<Sourced<f64>>,
    /// LeOPArd: the same on causal (decoder) workloads, planes per pair.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_planes_per_pair_causal: Option<Sourced<f64>>,
    /// A3: greedy-search iterations the candidate-selection module retires per cycle, per
    /// CORELET (one iteration takes the largest and the smallest remaining component
    /// product), iterations per cycle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate_iterations_per_cycle_per_corelet: Option<Sourced<u32>>,
    /// A3: search iterations per visible key of a query (`M / n`), when the workload does
    /// not count them (a trace's `candidate_iterations` does), iterations per key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate_iterations_per_visible_key: Option<Sourced<f64>>,
    /// SpAtten: elements the top-k engine's quick-select consumes per cycle (its zero
    /// eliminator width), elements per cycle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topk_elements_per_cycle: Option<Sourced<u32>>,
    /// SpAtten: fraction of a query's kept keys whose values local value pruning fetches
    /// (the top-k of its probabilities), fraction in (0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_keep_fraction: Option<Sourced<f64>>,
    /// SpAtten: progressive quantisation (keys fetched as MSB halves; a flagged row fetches
    /// the LSB halves too and is recomputed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progressive_quantization: Option<Sourced<bool>>,
    /// SpAtten: fraction of the query rows progressive quantisation recomputes, when the
    /// workload does not count them (a trace's `requant_rows` does), fraction in [0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requant_row_fraction: Option<Sourced<f64>>,
    /// Energon: bits of the filter unit's low-bit key copy (its rounds read the top half,
    /// then all of it), bits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter_key_bits: Option<Sourced<u32>>,
    /// Energon: low-bit multiply-accumulates the filter unit performs per cycle, per
    /// CORELET, MACs per cycle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter_macs_per_cycle_per_corelet: Option<Sourced<u32>>,
    /// Energon: fraction of the visible pairs that survive filtering round 1, when the
    /// workload does not count them (a trace's `filter_kept` does), fraction in (0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter_round1_keep_fraction: Option<Sourced<f64>>,
}

/// A peer dataflow, validated (the runtime form of a [`PeerFile`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Peer {
    /// Sanger's predictor and sparse array.
    Sanger {
        /// Predictor element bits, bits.
        predictor_bits: u32,
        /// Predictor MACs per cycle per CORELET.
        predictor_macs: u32,
    },
    /// LeOPArd's bit-serial QK with early termination.
    Leopard {
        /// Key element bits (planes of a full dot product), bits.
        key_bits: u32,
        /// Bit-serial lanes per CORELET.
        lanes: u32,
        /// Key planes per visible pair, bidirectional workloads.
        planes_bidirectional: f64,
        /// Key planes per visible pair, causal workloads.
        planes_causal: f64,
    },
    /// A3's candidate search, exact scoring of the candidates and post-scoring.
    A3 {
        /// Search iterations per cycle per CORELET.
        iterations_per_cycle: u32,
        /// Search iterations per visible key (default statistic).
        iterations_per_visible: f64,
    },
    /// SpAtten's cascade pruning, top-k engine and progressive quantisation.
    Spatten {
        /// Top-k engine elements per cycle.
        topk_per_cycle: u32,
        /// Fraction of the kept keys whose values are fetched.
        value_keep: f64,
        /// Progressive quantisation on.
        progressive: bool,
        /// Fraction of rows recomputed with the LSBs (default statistic).
        requant_fraction: f64,
    },
    /// Energon's two filtering rounds and exact attention on the survivors.
    Energon {
        /// Filter key copy bits, bits.
        filter_bits: u32,
        /// Filter MACs per cycle per CORELET.
        filter_macs: u32,
        /// Round-1 survivors per visible pair (default statistic).
        round1_keep: f64,
    },
}

impl Peer {
    /// The dataflow's name.
    pub fn dataflow(&self) -> PeerDataflow {
        match self {
            Peer::Sanger { .. } => PeerDataflow::Sanger,
            Peer::Leopard { .. } => PeerDataflow::Leopard,
            Peer::A3 { .. } => PeerDataflow::A3,
            Peer::Spatten { .. } => PeerDataflow::Spatten,
            Peer::Energon { .. } => PeerDataflow::Energon,
        }
    }

    /// The kept set is known on chip before the exact keys are fetched (a predictor, a
    /// filter, a candidate search or SpAtten's top-k decides it), so only kept keys are
    /// scored exactly.
    pub fn kept_before_fetch(&self) -> bool {
        !matches!(self, Peer::Leopard { .. })
    }
}

impl PeerFile {
    /// Which keys are present, by name (every optional key of the section).
    fn present(&self) -> [(&'static str, bool); 15] {
        [
            ("predictor_bits", self.predictor_bits.is_some()),
            (
                "predictor_macs_per_cycle_per_corelet",
                self.predictor_macs_per_cycle_per_corelet.is_some(),
            ),
            ("key_bits", self.key_bits.is_some()),
            (
                "bit_serial_lanes_per_corelet",
                self.bit_serial_lanes_per_corelet.is_some(),
            ),
            (
                "key_planes_per_pair_bidirectional",
                self.key_planes_per_pair_bidirectional.is_some(),
            ),
            (
                "key_planes_per_pair_causal",
                self.key_planes_per_pair_causal.is_some(),
            ),
            (
                "candidate_iterations_per_cycle_per_corelet",
                self.candidate_iterations_per_cycle_per_corelet.is_some(),
            ),
            (
                "candidate_iterations_per_visible_key",
                self.candidate_iterations_per_visible_key.is_some(),
            ),
            (
                "topk_elements_per_cycle",
                self.topk_elements_per_cycle.is_some(),
            ),
            ("value_keep_fraction", self.value_keep_fraction.is_some()),
            (
                "progressive_quantization",
                self.progressive_quantization.is_some(),
            ),
            ("requant_row_fraction", self.requant_row_fraction.is_some()),
            ("filter_key_bits", self.filter_key_bits.is_some()),
            (
                "filter_macs_per_cycle_per_corelet",
                self.filter_macs_per_cycle_per_corelet.is_some(),
            ),
            (
                "filter_round1_keep_fraction",
                self.filter_round1_keep_fraction.is_some(),
            ),
        ]
    }

    /// Validates the section against the design's flags: a peer has no ReRAM compute, a
    /// dataflow without an exact recheck refuses `design.on_chip_pruning`, and each
    /// dataflow's keys are present, in range, and the only ones given.
    pub fn validate(&self, in_memory_pruning: bool, on_chip_pruning: bool) -> Result<Peer> {
        let flow = self.dataflow.value;
        if in_memory_pruning {
            return Err(SimError::config(
                "design.in_memory_pruning",
                format!(
                    "must be false for the {} dataflow (a peer has no ReRAM compute)",
                    flow.name()
                ),
            ));
        }
        for (key, present) in self.present() {
            let used = flow.keys().contains(&key);
            if present && !used {
                return Err(SimError::config(
                    format!("peer.{key}"),
                    format!("is not used by the {} dataflow", flow.name()),
                ));
            }
            if !present && used {
                return Err(SimError::config(
                    format!("peer.{key}"),
                    format!("is required by the {} dataflow", flow.name()),
                ));
            }
        }
        let no_recheck = matches!(
            flow,
            PeerDataflow::Sanger | PeerDataflow::Energon | PeerDataflow::Spatten
        );
        if no_recheck && on_chip_pruning {
            return Err(SimError::config(
                "design.on_chip_pruning",
                format!(
                    "must be false for the {} dataflow (every kept key enters softmax)",
                    flow.name()
                ),
            ));
        }
        match flow {
            PeerDataflow::Sanger => self.sanger(),
            PeerDataflow::Leopard => self.leopard(),
            PeerDataflow::A3 => self.a3(),
            PeerDataflow::Spatten => self.spatten(),
            PeerDataflow::Energon => self.energon(),
        }
    }

    fn sanger(&self) -> Result<Peer> {
        Ok(Peer::Sanger {
            predictor_bits: int(&self.predictor_bits, "predictor_bits", 1, 8)?,
            predictor_macs: int(
                &self.predictor_macs_per_cycle_per_corelet,
                "predictor_macs_per_cycle_per_corelet",
                1,
                1 << 20,
            )?,
        })
    }

    fn leopard(&self) -> Result<Peer> {
        let key_bits = int(&self.key_bits, "key_bits", 1, 16)?;
        let planes = |v: &Option<Sourced<f64>>, key: &str| -> Result<f64> {
            let v = value(v, key)?;
            if v.is_finite() && v >= 1.0 && v <= f64::from(key_bits) {
                Ok(v)
            } else {
                Err(SimError::config(
                    format!("peer.{key}"),
                    format!("must be in 1..={key_bits} planes (peer.key_bits), got {v}"),
                ))
            }
        };
        Ok(Peer::Leopard {
            key_bits,
            lanes: int(
                &self.bit_serial_lanes_per_corelet,
                "bit_serial_lanes_per_corelet",
                1,
                1 << 20,
            )?,
            planes_bidirectional: planes(
                &self.key_planes_per_pair_bidirectional,
                "key_planes_per_pair_bidirectional",
            )?,
            planes_causal: planes(
                &self.key_planes_per_pair_causal,
                "key_planes_per_pair_causal",
            )?,
        })
    }

    fn a3(&self) -> Result<Peer> {
        Ok(Peer::A3 {
            iterations_per_cycle: int(
                &self.candidate_iterations_per_cycle_per_corelet,
                "candidate_iterations_per_cycle_per_corelet",
                1,
                1 << 16,
            )?,
            iterations_per_visible: fraction(
                &self.candidate_iterations_per_visible_key,
                "candidate_iterations_per_visible_key",
                0.0,
                64.0,
            )?,
        })
    }

    fn spatten(&self) -> Result<Peer> {
        let keep = fraction(&self.value_keep_fraction, "value_keep_fraction", 0.0, 1.0)?;
        if keep == 0.0 {
            return Err(SimError::config(
                "peer.value_keep_fraction",
                "must be > 0 (at least one value per query)",
            ));
        }
        Ok(Peer::Spatten {
            topk_per_cycle: int(
                &self.topk_elements_per_cycle,
                "topk_elements_per_cycle",
                1,
                1 << 16,
            )?,
            value_keep: keep,
            progressive: value(&self.progressive_quantization, "progressive_quantization")?,
            requant_fraction: fraction(
                &self.requant_row_fraction,
                "requant_row_fraction",
                0.0,
                1.0,
            )?,
        })
    }

    fn energon(&self) -> Result<Peer> {
        let bits = int(&self.filter_key_bits, "filter_key_bits", 2, 8)?;
        if bits % 2 != 0 {
            return Err(SimError::config(
                "peer.filter_key_bits",
                format!("must be even (round 1 reads its top half), got {bits}"),
            ));
        }
        Ok(Peer::Energon {
            filter_bits: bits,
            filter_macs: int(
                &self.filter_macs_per_cycle_per_corelet,
                "filter_macs_per_cycle_per_corelet",
                1,
                1 << 20,
            )?,
            round1_keep: fraction(
                &self.filter_round1_keep_fraction,
                "filter_round1_keep_fraction",
                0.0,
                1.0,
            )?,
        })
    }
}

/// The value of the `[peer]` key `key` (checked present by [`PeerFile::validate`]).
fn value<T: Clone>(v: &Option<Sourced<T>>, key: &str) -> Result<T> {
    v.as_ref()
        .map(|s| s.value.clone())
        .ok_or_else(|| SimError::config(format!("peer.{key}"), "is required"))
}

/// An integer `[peer]` key within `lo..=hi`.
fn int(v: &Option<Sourced<u32>>, key: &str, lo: u32, hi: u32) -> Result<u32> {
    let x = value(v, key)?;
    if (lo..=hi).contains(&x) {
        Ok(x)
    } else {
        Err(SimError::config(
            format!("peer.{key}"),
            format!("must be in {lo}..={hi}, got {x}"),
        ))
    }
}

/// A real `[peer]` key within `lo..=hi`, finite.
fn fraction(v: &Option<Sourced<f64>>, key: &str, lo: f64, hi: f64) -> Result<f64> {
    let x = value(v, key)?;
    if x.is_finite() && x >= lo && x <= hi {
        Ok(x)
    } else {
        Err(SimError::config(
            format!("peer.{key}"),
            format!("must be a finite number in {lo}..={hi}, got {x}"),
        ))
    }
}
