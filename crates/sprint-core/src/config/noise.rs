//! Analog non-idealities of the crossbar and the comparator (`[noise]`, with presets).

use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};

use super::messages::one_line;

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
            "typical" => include_str!("../../configs/noise/typical.toml"),
            "pessimistic" => include_str!("../../configs/noise/pessimistic.toml"),
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
