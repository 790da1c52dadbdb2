//! The attention configuration: which variant runs, at which precisions, with which
//! thresholds, noise and on-chip buffer. Read from TOML; every unknown key is an error.
//!
//! Units: thresholds are in logit units (the softmax input `q . k / sqrt(d)` in real
//! numbers); noise sigmas are fractions of the crossbar full scale (see [`NoiseConfig`]);
//! buffer sizes are bytes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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
    pub const PEERS: [Variant; 2] = [Variant::Sanger, Variant::Leopard];

    /// The kebab-case name used in configs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Dense => "dense",
            Variant::RuntimePruning => "runtime-pruning",
            Variant::SprintNoRecompute => "sprint-no-recompute",
            Variant::Sprint => "sprint",
            Variant::Sanger => "sanger",
            Variant::Leopard => "leopard",
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
                        "unknown variant `{name}` (expected one of dense, runtime-pruning, sprint-no-recompute, sprint, sanger, leopard)"
                    ),
                )
            })
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

/// Where the per-(layer, head) quantisation scales come from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum ScaleSource {
    /// `scale = max |x| / 127` measured on the data of each (layer, head).
    Dynamic,
    /// Fixed scales (real units per integer step), the same for every layer; one value for
    /// all heads or one per head.
    Fixed {
        /// Scale of Q.
        q: ScaleValues,
        /// Scale of K.
        k: ScaleValues,
        /// Scale of V.
        v: ScaleValues,
    },
}

/// One scale for every head, or one per head.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ScaleValues {
    /// Same scale for every head.
    All(f32),
    /// One scale per head (query heads for Q, KV heads for K and V).
    PerHead(Vec<f32>),
}

impl ScaleValues {
    /// Scale of head `h`, or an error if the list is too short.
    pub fn for_head(&self, h: usize, what: &str) -> Result<f32> {
        match self {
            ScaleValues::All(s) => Ok(*s),
            ScaleValues::PerHead(v) => v.get(h).copied().ok_or_else(|| {
                CoreError::config(
                    format!("quant.scales.{what}"),
                    format!("{} per-head scales given, head {h} needs one", v.len()),
                )
            }),
        }
    }
}

/// How the in-memory score on `K_MSB` stands in for the full 8-bit score.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MsbBiasCorrection {
    /// The comparator's reference is lowered per query by the mean contribution of the
    /// unseen low bits, `(2^lsb_bits - 1) / 2 * sum(q_dac)` in `K_LSB` steps: one small adder
    /// tree over the query's DAC codes and a shift per query (docs/functional-model.md).
    QuerySum,
    /// The literal truncated score `q_dac . K_MSB`: biased low by about half a `K_MSB` step
    /// per element times the query sum.
    None,
}

/// How the fixed-point softmax hands the exponentials to the V-PU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SoftmaxNormalisation {
    /// Each exponential is rounded to a `prob_bits` mantissa and a shift; the V-PU
    /// multiplies V by the mantissa, shifts the product into its accumulator, and the output
    /// is divided once by the sum of the same rounded exponentials. Relative error about
    /// `2^-prob_bits` at every row length.
    Deferred,
    /// The literal datapath: each probability `round(e_j 2^P / sum)` is rounded to `prob_bits`
    /// fractional bits before the V-PU and never renormalised; rows of more than a few
    /// hundred similar keys lose their scale (kept to show what it costs).
    PerKey,
}

/// Which keys the locality engine finds on chip.
///
/// Names are what the configs and trace headers hold; the spellings of earlier releases
/// (`paper` for the strict rule, `residency-lru` for residency) are still read, so traces
/// written before the rename replay with the policy that made them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LocalityPolicy {
    /// The default: a residency table keyed by token index. Keys stay on chip while the
    /// buffer has room; when room is needed, resident keys the current query pruned go
    /// first (those it just stopped keeping before older ones), then the least recently
    /// kept; resident keys are served first. The paper's Fig 10 requires it: SPRINT's
    /// traffic falls with the buffer (BERT-B 97.5 -> 98.4 -> 98.8 % at S/M/L) and equals
    /// Mask only's at L, which a buffer holding only the previous kept set cannot give.
    #[serde(alias = "residency-lru")]
    Residency,
    /// The strict reading of the SLD engine (an option): the buffer holds what fitted of
    /// the previous query's kept set only, so `reuse = P_t AND P_(t-1)`, everything else
    /// of `P_t` is fetched, and keys of `P_(t-1)` outside `P_t` are dropped even when the
    /// buffer has free slots. Fig 10 contradicts it as the paper's design.
    #[serde(alias = "paper")]
    SldStrict,
}

impl LocalityPolicy {
    /// The kebab-case name used in configs and trace headers.
    pub fn name(self) -> &'static str {
        match self {
            LocalityPolicy::Residency => "residency",
            LocalityPolicy::SldStrict => "sld-strict",
        }
    }
}

/// Precisions of the datapath. All widths are in bits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuantConfig {
    /// Source of the Q/K/V scales. Default: dynamic.
    pub scales: ScaleSource,
    /// Bits of the query driven into the crossbar DACs for the in-memory score (1..=8; default 4).
    pub query_dac_bits: u32,
    /// Bits of each key held in the crossbar as `K_MSB` (1..=8; default 4, the paper's split);
    /// the remaining `8 - k_msb_bits` low bits form `K_LSB`, which is only read for the recompute.
    pub k_msb_bits: u32,
    /// How the in-memory score accounts for the `K_LSB` bits it does not see (default
    /// `query-sum`: an unbiased score).
    pub msb_bias_correction: MsbBiasCorrection,
    /// How the softmax unit and the V-PU normalise the exponentials (default `deferred`).
    pub softmax_normalisation: SoftmaxNormalisation,
    /// Width of the exact score from the QK-PU, signed (default 12).
    pub score_bits: u32,
    /// Fractional bits of the exact score in logit units (default 7: range +-16, step 1/128).
    pub score_frac_bits: u32,
    /// Width of each exponential from the softmax unit, unsigned, 1.0 = 2^(exp_bits-1) (default 17).
    pub exp_bits: u32,
    /// Significant bits kept of the sum of exponentials before the divide (default 16).
    pub sum_bits: u32,
    /// Bits of the weight operand fed to the 8b x 8b V-PU (default 8): the mantissa of each
    /// exponential under `deferred` normalisation, the probability code (1.0 = 2^prob_bits)
    /// under `per-key` normalisation.
    pub prob_bits: u32,
    /// Width of the V-PU accumulator and output, signed (default 16); the sum saturates.
    pub output_bits: u32,
}

impl Default for QuantConfig {
    fn default() -> Self {
        Self {
            scales: ScaleSource::Dynamic,
            query_dac_bits: 4,
            k_msb_bits: 4,
            msb_bias_correction: MsbBiasCorrection::QuerySum,
            softmax_normalisation: SoftmaxNormalisation::Deferred,
            score_bits: 12,
            score_frac_bits: 7,
            exp_bits: 17,
            sum_bits: 16,
            prob_bits: 8,
            output_bits: 16,
        }
    }
}

/// Pruning thresholds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ThresholdConfig {
    /// Threshold `Th` in logit units for every layer and head, unless overridden (default -inf:
    /// nothing is pruned).
    pub value: f32,
    /// Per-layer thresholds (logit units); overrides `value`.
    pub per_layer: Option<Vec<f32>>,
    /// A thresholds file (see [`ThresholdFile`]); overrides `value` and `per_layer`.
    /// A relative path is taken relative to the config file.
    pub file: Option<PathBuf>,
    /// Safety margin `delta >= 0` in logit units: the in-memory comparator uses `Th' = Th - delta`.
    pub margin: f32,
    /// Per-layer margins (logit units, each `>= 0`); overrides `margin`.
    pub margin_per_layer: Option<Vec<f32>>,
    /// Whether SPRINT drops kept keys whose exact score is below `Th` (default true).
    pub exact_recheck: bool,
}

impl Default for ThresholdConfig {
    fn default() -> Self {
        Self {
            value: f32::NEG_INFINITY,
            per_layer: None,
            file: None,
            margin: 0.0,
            margin_per_layer: None,
            exact_recheck: true,
        }
    }
}

/// Analog non-idealities of the in-memory scoring, all off by default (the `ideal` preset).
///
/// Full scale (FS) of a bitline is `d * 2^(query_dac_bits-1) * 2^(k_msb_bits-1)`: the largest
/// magnitude a dot product of the DAC query with a signed `K_MSB` column can reach.
///
/// Cell model (docs/functional-model.md, "Non-idealities"): a signed `K_MSB` level `w` is held
/// by a differential pair of cells, `G+ = G_off + max(w, 0) / W * (G_on - G_off)` and
/// `G- = G_off + max(-w, 0) / W * (G_on - G_off)` with `W = 2^(k_msb_bits-1)`; every cell,
/// the `G_off` ones included, varies by `conductance_sigma`; the read weight is
/// `W * (G+ - G-) / (G_on - G_off)`, attenuated by IR drop along the column.
///
/// In TOML, `preset = "typical"` (or `ideal`, `pessimistic`) starts from the cited values of
/// `configs/noise/<preset>.toml`; any key given beside it overrides the preset.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "NoiseConfigToml")]
pub struct NoiseConfig {
    /// Preset the values started from (`ideal`, `typical`, `pessimistic`).
    pub preset: String,
    /// Relative sigma of each cell's conductance (every level, `G_off` included), drawn once
    /// when K is written (0 = ideal).
    pub conductance_sigma: f32,
    /// Sigma of the bitline read noise, as a fraction of full scale, drawn per read (it also
    /// perturbs the scores that SPRINT without recompute feeds to the softmax).
    pub read_sigma_fs: f32,
    /// Sigma of each comparator's fixed input offset, as a fraction of full scale.
    pub comparator_offset_sigma_fs: f32,
    /// Probability that a `K_MSB` cell is stuck at its lowest level: its element reads 0, in
    /// the analog score and in the transposed read-back used by the recompute.
    pub stuck_at_zero_rate: f32,
    /// Probability that a `K_MSB` cell is stuck at its highest level: its element reads
    /// `2^(k_msb_bits-1) - 1`, in the analog score and in the read-back.
    pub stuck_at_one_rate: f32,
    /// Ratio `G_on / G_off` of the cells (`inf` = ideal): with conductance variation the
    /// `G_off` cells of zero and opposite-sign levels no longer cancel.
    pub on_off_ratio: f32,
    /// First-order IR drop: fractional loss of a cell's contribution at the far end of the
    /// column (row `d - 1`); row `r` loses `ir_drop_far_end * r / (d - 1)` (0 = ideal).
    pub ir_drop_far_end: f32,
    /// Keys farther than this many read-noise sigmas from the threshold are decided without
    /// evaluating their draw (default 8: a skipped flip has probability below 1e-15).
    pub tail_sigmas: f32,
}

impl Default for NoiseConfig {
    fn default() -> Self {
        Self {
            preset: "ideal".into(),
            conductance_sigma: 0.0,
            read_sigma_fs: 0.0,
            comparator_offset_sigma_fs: 0.0,
            stuck_at_zero_rate: 0.0,
            stuck_at_one_rate: 0.0,
            on_off_ratio: f32::INFINITY,
            ir_drop_far_end: 0.0,
            tail_sigmas: 8.0,
        }
    }
}

/// The names of the noise presets, in order of severity.
pub const NOISE_PRESETS: [&str; 3] = ["ideal", "typical", "pessimistic"];

/// The `[noise]` table as written: every key optional, layered over a preset.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoiseConfigToml {
    preset: Option<String>,
    conductance_sigma: Option<f32>,
    read_sigma_fs: Option<f32>,
    comparator_offset_sigma_fs: Option<f32>,
    stuck_at_zero_rate: Option<f32>,
    stuck_at_one_rate: Option<f32>,
    on_off_ratio: Option<f32>,
    ir_drop_far_end: Option<f32>,
    tail_sigmas: Option<f32>,
}

impl NoiseConfigToml {
    /// Applies the keys given here over `base`.
    fn over(self, mut base: NoiseConfig) -> NoiseConfig {
        let set = |dst: &mut f32, v: Option<f32>| {
            if let Some(x) = v {
                *dst = x;
            }
        };
        set(&mut base.conductance_sigma, self.conductance_sigma);
        set(&mut base.read_sigma_fs, self.read_sigma_fs);
        set(
            &mut base.comparator_offset_sigma_fs,
            self.comparator_offset_sigma_fs,
        );
        set(&mut base.stuck_at_zero_rate, self.stuck_at_zero_rate);
        set(&mut base.stuck_at_one_rate, self.stuck_at_one_rate);
        set(&mut base.on_off_ratio, self.on_off_ratio);
        set(&mut base.ir_drop_far_end, self.ir_drop_far_end);
        set(&mut base.tail_sigmas, self.tail_sigmas);
        base
    }
}

impl TryFrom<NoiseConfigToml> for NoiseConfig {
    type Error = String;

    fn try_from(raw: NoiseConfigToml) -> std::result::Result<Self, String> {
        let base = match raw.preset.as_deref() {
            None => NoiseConfig::default(),
            Some(name) => NoiseConfig::preset(name).map_err(|e| e.to_string())?,
        };
        Ok(raw.over(base))
    }
}

impl NoiseConfig {
    /// The named preset (`ideal`, `typical`, `pessimistic`) with its cited values from
    /// `configs/noise/<name>.toml` (sources beside each value there).
    pub fn preset(name: &str) -> Result<Self> {
        let text = match name {
            "ideal" => return Ok(Self::default()),
            "typical" => include_str!("../../../configs/noise/typical.toml"),
            "pessimistic" => include_str!("../../../configs/noise/pessimistic.toml"),
            other => {
                return Err(CoreError::config(
                    "noise.preset",
                    format!(
                        "unknown preset `{other}` (expected one of {})",
                        NOISE_PRESETS.join(", ")
                    ),
                ));
            }
        };
        let raw: NoiseConfigToml = toml::from_str(text).map_err(|e| {
            CoreError::config(
                format!("configs/noise/{name}.toml"),
                one_line(&e.to_string()),
            )
        })?;
        let mut cfg = raw.over(Self::default());
        cfg.preset = name.to_string();
        Ok(cfg)
    }

    /// True when every non-ideality is off.
    pub fn is_ideal(&self) -> bool {
        self.conductance_sigma == 0.0
            && self.read_sigma_fs == 0.0
            && self.comparator_offset_sigma_fs == 0.0
            && self.stuck_at_zero_rate == 0.0
            && self.stuck_at_one_rate == 0.0
            && self.ir_drop_far_end == 0.0
    }

    /// True when the programmed cells are ideal (no variation, stuck-at or IR drop): the
    /// crossbar then reads the exact `K_MSB` levels. A finite ON/OFF ratio alone cancels in
    /// the differential pair.
    pub fn cells_ideal(&self) -> bool {
        self.conductance_sigma == 0.0
            && self.stuck_at_zero_rate == 0.0
            && self.stuck_at_one_rate == 0.0
            && self.ir_drop_far_end == 0.0
    }
}

/// On-chip buffers seen by the locality engine.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BufferConfig {
    /// Key buffer capacity in bytes (holds full 8-bit keys: K_MSB and K_LSB; default 8192).
    pub k_bytes: u64,
    /// Value buffer capacity in bytes (8-bit values; default 8192).
    pub v_bytes: u64,
    /// Bytes of the key index sent with each fetched key (default 2).
    pub index_bytes: u32,
    /// Which kept keys count as already on chip (default `residency`; `sld-strict` keeps
    /// only the previous query's kept set).
    pub locality: LocalityPolicy,
}

impl Default for BufferConfig {
    fn default() -> Self {
        Self {
            k_bytes: 8192,
            v_bytes: 8192,
            index_bytes: 2,
            locality: LocalityPolicy::Residency,
        }
    }
}

/// The full attention configuration, as read from TOML.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AttentionConfig {
    /// Which variant to compute (default `sprint`).
    pub variant: Variant,
    /// Causal masking (key `j` visible to query `i` only if `j <= i + n_keys - n_queries`).
    pub causal: bool,
    /// Seed of every random draw (noise); same seed, same inputs: bit-identical results.
    pub seed: u64,
    /// Exact recompute mode (default fixed-point).
    pub recompute: RecomputeMode,
    /// Datapath precisions.
    pub quant: QuantConfig,
    /// Thresholds.
    pub threshold: ThresholdConfig,
    /// Analog non-idealities.
    pub noise: NoiseConfig,
    /// On-chip buffers.
    pub buffer: BufferConfig,
    /// Check every in-memory decision against exact pruning at the same threshold (false-prune
    /// and false-keep counts in the summary and the trace). Costs one extra score GEMM per
    /// block; the datapath's results do not depend on it (default true).
    pub audit_comparator: bool,
    /// Parameters of the peer designs' variants (default: the published ones,
    /// `configs/peers/published.toml`).
    pub peers: crate::peers::PeerConfig,
}

impl Default for AttentionConfig {
    fn default() -> Self {
        Self {
            variant: Variant::Sprint,
            causal: false,
            seed: 0,
            recompute: RecomputeMode::FixedPoint,
            quant: QuantConfig::default(),
            threshold: ThresholdConfig::default(),
            noise: NoiseConfig::default(),
            buffer: BufferConfig::default(),
            audit_comparator: true,
            peers: crate::peers::PeerConfig::default(),
        }
    }
}

fn check(ok: bool, place: &str, message: impl FnOnce() -> String) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(CoreError::config(place, message()))
    }
}

fn check_rate(x: f32, place: &str) -> Result<()> {
    check((0.0..=1.0).contains(&x), place, || {
        format!("must be a finite number in [0, 1], got {x}")
    })
}

fn check_sigma(x: f32, place: &str) -> Result<()> {
    check(x.is_finite() && x >= 0.0, place, || {
        format!("must be a finite number >= 0, got {x}")
    })
}

impl AttentionConfig {
    /// Parses and validates TOML text; `origin` names the source in error messages.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self> {
        let cfg: Self = toml::from_str(text)
            .map_err(|e| CoreError::config(origin, one_line(&e.to_string())))?;
        cfg.validate().map_err(|e| prefix_place(e, origin))?;
        Ok(cfg)
    }

    /// Reads, parses and validates a TOML file. A relative `threshold.file` is resolved
    /// against the config file's folder.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| CoreError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut cfg = Self::from_toml_str(&text, &path.display().to_string())?;
        if let Some(f) = &cfg.threshold.file
            && f.is_relative()
            && let Some(dir) = path.parent()
        {
            cfg.threshold.file = Some(dir.join(f));
        }
        Ok(cfg)
    }

    /// Checks every value's range.
    pub fn validate(&self) -> Result<()> {
        let q = &self.quant;
        check(
            (1..=8).contains(&q.query_dac_bits),
            "quant.query_dac_bits",
            || format!("must be in 1..=8, got {}", q.query_dac_bits),
        )?;
        check((1..=8).contains(&q.k_msb_bits), "quant.k_msb_bits", || {
            format!("must be in 1..=8, got {}", q.k_msb_bits)
        })?;
        check((4..=24).contains(&q.score_bits), "quant.score_bits", || {
            format!("must be in 4..=24, got {}", q.score_bits)
        })?;
        check(
            q.score_frac_bits < q.score_bits,
            "quant.score_frac_bits",
            || {
                format!(
                    "must be below score_bits ({}), got {}",
                    q.score_bits, q.score_frac_bits
                )
            },
        )?;
        check((8..=24).contains(&q.exp_bits), "quant.exp_bits", || {
            format!("must be in 8..=24, got {}", q.exp_bits)
        })?;
        check((4..=32).contains(&q.sum_bits), "quant.sum_bits", || {
            format!("must be in 4..=32, got {}", q.sum_bits)
        })?;
        check((2..=16).contains(&q.prob_bits), "quant.prob_bits", || {
            format!("must be in 2..=16, got {}", q.prob_bits)
        })?;
        check(
            (8..=32).contains(&q.output_bits),
            "quant.output_bits",
            || format!("must be in 8..=32, got {}", q.output_bits),
        )?;
        if let ScaleSource::Fixed { q, k, v } = &q.scales {
            for (name, s) in [("q", q), ("k", k), ("v", v)] {
                let vals: Vec<f32> = match s {
                    ScaleValues::All(x) => vec![*x],
                    ScaleValues::PerHead(xs) => xs.clone(),
                };
                for x in vals {
                    check(
                        x.is_finite() && x > 0.0,
                        &format!("quant.scales.{name}"),
                        || format!("scales must be finite and > 0, got {x}"),
                    )?;
                }
            }
        }
        let t = &self.threshold;
        check(
            !t.value.is_nan() && t.value != f32::INFINITY,
            "threshold.value",
            || format!("must be a number or -inf, got {}", t.value),
        )?;
        check(
            t.margin.is_finite() && t.margin >= 0.0,
            "threshold.margin",
            || format!("must be finite and >= 0, got {}", t.margin),
        )?;
        if let Some(ml) = &t.margin_per_layer {
            for (i, x) in ml.iter().enumerate() {
                check(
                    x.is_finite() && *x >= 0.0,
                    "threshold.margin_per_layer",
                    || format!("entry {i} must be finite and >= 0, got {x}"),
                )?;
            }
        }
        if let Some(pl) = &t.per_layer {
            for (i, x) in pl.iter().enumerate() {
                check(
                    !x.is_nan() && *x != f32::INFINITY,
                    "threshold.per_layer",
                    || format!("entry {i} must be a number or -inf, got {x}"),
                )?;
            }
        }
        let n = &self.noise;
        check_sigma(n.conductance_sigma, "noise.conductance_sigma")?;
        check_sigma(n.read_sigma_fs, "noise.read_sigma_fs")?;
        check_sigma(
            n.comparator_offset_sigma_fs,
            "noise.comparator_offset_sigma_fs",
        )?;
        check_rate(n.stuck_at_zero_rate, "noise.stuck_at_zero_rate")?;
        check_rate(n.stuck_at_one_rate, "noise.stuck_at_one_rate")?;
        check(
            n.stuck_at_zero_rate + n.stuck_at_one_rate <= 1.0,
            "noise.stuck_at_*_rate",
            || "the two stuck-at rates add up to more than 1".into(),
        )?;
        check(
            n.on_off_ratio > 1.0 && !n.on_off_ratio.is_nan(),
            "noise.on_off_ratio",
            || {
                format!(
                    "must be > 1 (or inf for ideal cells), got {}",
                    n.on_off_ratio
                )
            },
        )?;
        check(
            (0.0..1.0).contains(&n.ir_drop_far_end),
            "noise.ir_drop_far_end",
            || {
                format!(
                    "must be a finite number in [0, 1), got {}",
                    n.ir_drop_far_end
                )
            },
        )?;
        check(
            n.tail_sigmas.is_finite() && n.tail_sigmas >= 4.0,
            "noise.tail_sigmas",
            || format!("must be finite and >= 4, got {}", n.tail_sigmas),
        )?;
        self.peers.validate()?;
        Ok(())
    }

    /// This configuration with `key=value` overrides applied (`quant.query_dac_bits=3`,
    /// `noise.preset="typical"`, `variant=dense`; values are TOML, bare words are strings) and
    /// validated. `noise.preset` replaces the whole `[noise]` table with the preset before the
    /// other overrides apply. Errors name the override.
    pub fn with_overrides(&self, sets: &[String]) -> Result<Self> {
        let mut table = toml::Table::try_from(self)
            .map_err(|e| CoreError::config("--set", one_line(&e.to_string())))?;
        let mut parsed = Vec::with_capacity(sets.len());
        for set in sets {
            let (key, raw) = set.split_once('=').ok_or_else(|| {
                CoreError::config(
                    format!("--set {set}"),
                    "expected KEY=VALUE, e.g. quant.query_dac_bits=3",
                )
            })?;
            let key = key.trim();
            let raw = raw.trim();
            let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or_else(|| toml::Value::String(raw.to_string()));
            parsed.push((key.to_string(), value));
        }
        // The preset first: it resets the noise table, the other keys then override it.
        parsed.sort_by_key(|(k, _)| k != "noise.preset");
        for (key, value) in parsed {
            if key == "noise.preset" {
                table.insert("noise".into(), toml::Value::Table(toml::Table::new()));
            }
            let mut parts: Vec<&str> = key.split('.').collect();
            let leaf = parts.pop().unwrap_or_default();
            let mut node = &mut table;
            for p in parts {
                let entry = node
                    .entry(p.to_string())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                node = entry.as_table_mut().ok_or_else(|| {
                    CoreError::config(format!("--set {key}"), format!("`{p}` is not a table"))
                })?;
            }
            node.insert(leaf.to_string(), value);
        }
        let text = toml::to_string(&table)
            .map_err(|e| CoreError::config("--set", one_line(&e.to_string())))?;
        Self::from_toml_str(&text, "--set")
    }

    /// Safety margin `delta` (logit units) of `layer`: `threshold.margin_per_layer[layer]`
    /// when that list is given, else `threshold.margin`.
    pub fn margin(&self, layer: usize) -> Result<f32> {
        match &self.threshold.margin_per_layer {
            None => Ok(self.threshold.margin),
            Some(ml) => ml.get(layer).copied().ok_or_else(|| {
                CoreError::config(
                    "threshold.margin_per_layer",
                    format!("{} margins given, layer {layer} needs one", ml.len()),
                )
            }),
        }
    }

    /// Resolves the thresholds `Th` (logit units) for `layers` x `heads` query heads, from the
    /// thresholds file, the per-layer list, or the single value, in that order of precedence.
    pub fn thresholds(&self, layers: usize, heads: usize) -> Result<Thresholds> {
        let t = &self.threshold;
        if let Some(path) = &t.file {
            let file = ThresholdFile::read(path)?;
            return file.resolve(layers, heads, &path.display().to_string());
        }
        if let Some(pl) = &t.per_layer {
            if pl.len() != layers {
                return Err(CoreError::config(
                    "threshold.per_layer",
                    format!(
                        "{} thresholds given for a model of {layers} layers",
                        pl.len()
                    ),
                ));
            }
            return Ok(Thresholds {
                values: pl.iter().map(|&x| vec![x; heads]).collect(),
            });
        }
        Ok(Thresholds {
            values: vec![vec![t.value; heads]; layers],
        })
    }
}

/// Resolved thresholds `Th`, logit units, indexed `[layer][query_head]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Thresholds {
    /// `values[layer][head]`.
    pub values: Vec<Vec<f32>>,
}

impl Thresholds {
    /// Threshold of (`layer`, `head`).
    pub fn get(&self, layer: usize, head: usize) -> f32 {
        self.values[layer][head]
    }
}

/// A thresholds file (TOML): either `per_layer = [...]` (one per layer) or
/// `per_head = [[...], ...]` (one list of per-head values per layer), logit units.
/// Optional `[meta]` table of strings, e.g. how the thresholds were obtained.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ThresholdFile {
    /// One threshold per layer.
    pub per_layer: Option<Vec<f32>>,
    /// One list of per-head thresholds per layer.
    pub per_head: Option<Vec<Vec<f32>>>,
    /// Free-form provenance (`method`, `target_keep`, ...).
    pub meta: BTreeMap<String, String>,
}

impl ThresholdFile {
    /// Reads and parses a thresholds file.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| CoreError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text)
            .map_err(|e| CoreError::config(path.display().to_string(), one_line(&e.to_string())))
    }

    /// Checks the shape against the model and returns the thresholds.
    pub fn resolve(&self, layers: usize, heads: usize, origin: &str) -> Result<Thresholds> {
        let bad = |x: f32| x.is_nan() || x == f32::INFINITY;
        let values = match (&self.per_layer, &self.per_head) {
            (Some(_), Some(_)) => {
                return Err(CoreError::config(
                    origin,
                    "give per_layer or per_head, not both",
                ));
            }
            (None, None) => {
                return Err(CoreError::config(
                    origin,
                    "no per_layer or per_head thresholds",
                ));
            }
            (Some(pl), None) => {
                if pl.len() != layers {
                    return Err(CoreError::config(
                        origin,
                        format!(
                            "{} per-layer thresholds for a model of {layers} layers",
                            pl.len()
                        ),
                    ));
                }
                pl.iter().map(|&x| vec![x; heads]).collect::<Vec<_>>()
            }
            (None, Some(ph)) => {
                if ph.len() != layers {
                    return Err(CoreError::config(
                        origin,
                        format!(
                            "{} layers of per-head thresholds for a model of {layers} layers",
                            ph.len()
                        ),
                    ));
                }
                for (l, row) in ph.iter().enumerate() {
                    if row.len() != heads {
                        return Err(CoreError::config(
                            origin,
                            format!("layer {l}: {} thresholds for {heads} heads", row.len()),
                        ));
                    }
                }
                ph.clone()
            }
        };
        for (l, row) in values.iter().enumerate() {
            if let Some(x) = row.iter().find(|&&x| bad(x)) {
                return Err(CoreError::config(
                    origin,
                    format!("layer {l}: threshold {x} is not a number or -inf"),
                ));
            }
        }
        Ok(Thresholds { values })
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn prefix_place(e: CoreError, origin: &str) -> CoreError {
    match e {
        CoreError::Config { place, message } => CoreError::Config {
            place: format!("{origin}: {place}"),
            message,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    /// Configs and trace headers of earlier releases named the strict rule `paper` and
    /// residency `residency-lru`: both still read, and the current names round-trip.
    #[test]
    fn locality_policy_old_spellings_still_read() {
        #[derive(Deserialize)]
        struct P {
            p: LocalityPolicy,
        }
        let read = |s: &str| toml::from_str::<P>(&format!("p = \"{s}\"")).unwrap().p;
        assert_eq!(read("paper"), LocalityPolicy::SldStrict);
        assert_eq!(read("residency-lru"), LocalityPolicy::Residency);
        for p in [LocalityPolicy::Residency, LocalityPolicy::SldStrict] {
            assert_eq!(read(p.name()), p);
        }
        assert_eq!(BufferConfig::default().locality, LocalityPolicy::Residency);
    }

    use super::*;

    #[test]
    fn defaults_parse_from_empty() {
        let c = AttentionConfig::from_toml_str("", "t").unwrap();
        assert_eq!(c, AttentionConfig::default());
    }

    #[test]
    fn unknown_key_is_an_error() {
        let e =
            AttentionConfig::from_toml_str("[noise]\nread_sigma = 0.1\n", "cfg.toml").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("read_sigma"), "{msg}");
        assert!(!msg.contains('\n'));
    }

    #[test]
    fn full_config_and_minus_inf() {
        let text = r#"
            variant = "runtime-pruning"
            causal = true
            seed = 7
            recompute = "float"
            [quant]
            query_dac_bits = 3
            scales = { fixed = { q = 0.1, k = [0.1, 0.2], v = 0.3 } }
            [threshold]
            value = -inf
            margin = 0.5
            [noise]
            read_sigma_fs = 0.01
            [buffer]
            k_bytes = 4096
        "#;
        let c = AttentionConfig::from_toml_str(text, "t").unwrap();
        assert_eq!(c.variant, Variant::RuntimePruning);
        assert_eq!(c.threshold.value, f32::NEG_INFINITY);
        assert_eq!(c.buffer.k_bytes, 4096);
        assert_eq!(c.buffer.v_bytes, 8192);
    }

    #[test]
    fn range_errors_name_the_key() {
        let e = AttentionConfig::from_toml_str("[noise]\nstuck_at_one_rate = 2.0\n", "c.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("c.toml: noise.stuck_at_one_rate"), "{e}");
    }

    #[test]
    fn overrides_apply_and_name_bad_keys() {
        let base = AttentionConfig::default();
        let c = base
            .with_overrides(&[
                "quant.query_dac_bits=3".into(),
                "variant=dense".into(),
                "noise.read_sigma_fs=0.002".into(),
                "noise.preset=typical".into(),
                "buffer.locality=sld-strict".into(),
            ])
            .unwrap();
        assert_eq!(c.quant.query_dac_bits, 3);
        assert_eq!(c.variant, Variant::Dense);
        assert_eq!(c.buffer.locality, LocalityPolicy::SldStrict);
        let typical = NoiseConfig::preset("typical").unwrap();
        assert_eq!(c.noise.read_sigma_fs, 0.002);
        assert_eq!(c.noise.conductance_sigma, typical.conductance_sigma);
        assert_eq!(c.noise.preset, "typical");
        let e = base
            .with_overrides(&["quant.k_msb_bitz=3".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("k_msb_bitz"), "{e}");
        let e = base
            .with_overrides(&["quant.k_msb_bits=9".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("quant.k_msb_bits"), "{e}");
        let e = base
            .with_overrides(&["noise.preset=loud".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("loud"), "{e}");
        assert!(base.with_overrides(&["nokey".into()]).is_err());
    }

    #[test]
    fn new_keys_are_range_checked() {
        for (text, key) in [
            ("[quant]\nk_msb_bits = 0\n", "quant.k_msb_bits"),
            ("[noise]\non_off_ratio = 1.0\n", "noise.on_off_ratio"),
            ("[noise]\nir_drop_far_end = 1.5\n", "noise.ir_drop_far_end"),
            (
                "[threshold]\nmargin_per_layer = [0.1, -1.0]\n",
                "threshold.margin_per_layer",
            ),
            (
                "[quant]\nsoftmax_normalisation = \"exact\"\n",
                "softmax_normalisation",
            ),
            (
                "[quant]\nmsb_bias_correction = \"median\"\n",
                "msb_bias_correction",
            ),
            ("[buffer]\nlocality = \"fifo\"\n", "locality"),
        ] {
            let e = AttentionConfig::from_toml_str(text, "c.toml")
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(key) || e.contains("unknown variant"),
                "{text}: {e}"
            );
        }
        let c = AttentionConfig::from_toml_str(
            "[noise]\npreset = \"pessimistic\"\nread_sigma_fs = 0.0\n",
            "c",
        )
        .unwrap();
        assert_eq!(c.noise.read_sigma_fs, 0.0);
        assert_eq!(c.noise.stuck_at_one_rate, 0.0904);
        // A config written out reads back the same, presets and infinities included.
        let text = toml::to_string(&c).unwrap();
        assert_eq!(
            AttentionConfig::from_toml_str(&text, "round trip").unwrap(),
            c
        );
        assert_eq!(c.margin(3).unwrap(), 0.0);
    }

    #[test]
    fn threshold_file_layer_count_checked() {
        let f = ThresholdFile {
            per_layer: Some(vec![0.0; 3]),
            ..Default::default()
        };
        assert!(f.resolve(3, 2, "x").is_ok());
        let e = f.resolve(6, 2, "th.toml").unwrap_err().to_string();
        assert!(
            e.contains("3 per-layer thresholds for a model of 6 layers"),
            "{e}"
        );
    }
}
