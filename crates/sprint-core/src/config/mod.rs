//! The attention configuration: which variant runs, at which precisions, with which
//! thresholds, noise and on-chip buffer. Read from TOML; every unknown key is an error.
//!
//! Units: thresholds are in logit units (the softmax input `q . k / sqrt(d)` in real
//! numbers); noise sigmas are fractions of the crossbar full scale (see [`NoiseConfig`]);
//! buffer sizes are bytes.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};

mod buffer;
mod messages;
mod noise;
mod quant;
mod threshold;
mod variant;

pub use buffer::*;
pub use noise::*;
pub use quant::*;
pub use threshold::*;
pub use variant::*;

use messages::one_line;

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
        validate_quant(&self.quant)?;
        validate_threshold(&self.threshold)?;
        validate_noise(&self.noise)?;
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

fn prefix_place(e: CoreError, origin: &str) -> CoreError {
    match e {
        CoreError::Config { place, message } => CoreError::Config {
            place: format!("{origin}: {place}"),
            message,
        },
        other => other,
    }
}

/// Checks the range of every `[quant]` value.
fn validate_quant(q: &QuantConfig) -> Result<()> {
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
    Ok(())
}

/// Checks the range of every `[threshold]` value.
fn validate_threshold(t: &ThresholdConfig) -> Result<()> {
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
    Ok(())
}

/// Checks the range of every `[noise]` value.
fn validate_noise(n: &NoiseConfig) -> Result<()> {
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
    Ok(())
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
