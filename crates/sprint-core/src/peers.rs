//! Parameters of the peer designs' pruning decisions (the attention-pruning accelerators
//! SPRINT is compared with), as the functional models use them. The published values live in
//! `configs/peers/published.toml`, each with its source; [`PeerConfig::default`] is that file.

use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};

/// The embedded `configs/peers/published.toml`.
pub const PUBLISHED: &str = include_str!("../configs/peers/published.toml");

/// Sanger (MICRO 2021): a low-bit prediction of the attention map, thresholded on the
/// predicted probability.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SangerConfig {
    /// Bits of the symmetric quantisation of Q and K in the predictor (levels
    /// `-(2^(b-1)-1) ..= 2^(b-1)-1`, one scale per tensor: its absolute maximum).
    pub qk_bits: u32,
    /// Normalise each query row and each key vector to unit L2 norm before quantising, and
    /// multiply the two norms back into the predicted score.
    pub normalize_qk: bool,
    /// Keys whose predicted probability (softmax of the predicted scores over the visible
    /// keys) exceeds this fraction are kept.
    pub prob_threshold: f32,
}

/// SpAtten (HPCA 2021): cascade token and head pruning across the layers of a forward pass,
/// and progressive quantisation of the keys. A key left out of a `[peers.spatten]` table takes
/// its published value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpattenConfig {
    /// Fraction of a sequence's real tokens whose keys and values layer `l` keeps, on the
    /// published schedule's layer grid: a model of `L` layers reads entry
    /// `floor(l * len / L)`. The count kept is `max(1, floor(fraction * tokens))`, never more
    /// than the previous layer kept (cascade). Fractions in `(0, 1]`.
    pub token_keep: Vec<f32>,
    /// Fraction of the query heads layer `l` keeps, on the same grid: `max(1, floor(fraction
    /// * heads))`, never more than the previous layer kept. Fractions in `(0, 1]`.
    pub head_keep: Vec<f32>,
    /// Progressive quantisation: score with the keys' MSBs first and recompute a query row
    /// with the LSBs when its largest probability is below `requant_threshold`. When off,
    /// scores, softmax and `P x V` are float.
    pub progressive_quantization: bool,
    /// Bits of a key fetched first (the MSBs of its `key_msb_bits + key_lsb_bits`-bit code).
    pub key_msb_bits: u32,
    /// Bits of a key fetched for a recomputed row (the LSBs).
    pub key_lsb_bits: u32,
    /// Bits of the symmetric query code under progressive quantisation.
    pub query_bits: u32,
    /// A row whose largest MSB-only probability (a fraction) is below this is recomputed.
    pub requant_threshold: f32,
}

impl SpattenConfig {
    /// The schedule entry of layer `layer` of a model of `layers` layers (see
    /// [`SpattenConfig::token_keep`]).
    pub fn schedule_entry(schedule: &[f32], layer: usize, layers: usize) -> f32 {
        if schedule.is_empty() || layers == 0 {
            return 1.0;
        }
        let i = (layer * schedule.len() / layers).min(schedule.len() - 1);
        schedule[i]
    }

    /// Kept count `max(1, floor(fraction * n))` of a schedule fraction over `n` items (0 when
    /// `n` is 0). The fraction is read as the decimal written in the configuration: a
    /// product within two f32 ulps below an integer counts as that integer (0.7 is stored
    /// as 0.69999999; `0.7 * 20` keeps 14).
    pub fn kept_count(fraction: f32, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        let x = f64::from(fraction) * n as f64 * (1.0 + 2.0 * f64::from(f32::EPSILON));
        (x.floor() as usize).clamp(1, n)
    }
}

/// Parameters of every peer design, `[peers]` in an attention configuration; a design left
/// out takes its published parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PeerConfig {
    /// Sanger.
    pub sanger: SangerConfig,
    /// SpAtten.
    pub spatten: SpattenConfig,
}

/// One published value with its source, as written in `configs/peers/published.toml`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Cited<T> {
    value: T,
    #[allow(dead_code)]
    source: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishedSanger {
    qk_bits: Cited<u32>,
    normalize_qk: Cited<bool>,
    prob_threshold: Cited<f32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishedSpatten {
    token_keep: Cited<Vec<f32>>,
    head_keep: Cited<Vec<f32>>,
    progressive_quantization: Cited<bool>,
    key_msb_bits: Cited<u32>,
    key_lsb_bits: Cited<u32>,
    query_bits: Cited<u32>,
    requant_threshold: Cited<f32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Published {
    sanger: PublishedSanger,
    spatten: PublishedSpatten,
}

impl PeerConfig {
    /// Parses a published-parameters file (every value as `{ value, source }`);
    /// `origin` names it in errors.
    pub fn from_published(text: &str, origin: &str) -> Result<Self> {
        let p: Published = toml::from_str(text).map_err(|e| {
            CoreError::config(origin, e.to_string().lines().next().unwrap_or("").trim())
        })?;
        let c = Self {
            sanger: SangerConfig {
                qk_bits: p.sanger.qk_bits.value,
                normalize_qk: p.sanger.normalize_qk.value,
                prob_threshold: p.sanger.prob_threshold.value,
            },
            spatten: SpattenConfig {
                token_keep: p.spatten.token_keep.value,
                head_keep: p.spatten.head_keep.value,
                progressive_quantization: p.spatten.progressive_quantization.value,
                key_msb_bits: p.spatten.key_msb_bits.value,
                key_lsb_bits: p.spatten.key_lsb_bits.value,
                query_bits: p.spatten.query_bits.value,
                requant_threshold: p.spatten.requant_threshold.value,
            },
        };
        c.validate()?;
        Ok(c)
    }

    /// Checks every value's range; errors name the key.
    pub fn validate(&self) -> Result<()> {
        let s = &self.sanger;
        if !(2..=8).contains(&s.qk_bits) {
            return Err(CoreError::config(
                "peers.sanger.qk_bits",
                format!("must be in 2..=8, got {}", s.qk_bits),
            ));
        }
        if !(s.prob_threshold.is_finite() && (0.0..1.0).contains(&s.prob_threshold)) {
            return Err(CoreError::config(
                "peers.sanger.prob_threshold",
                format!("must be a number in [0, 1), got {}", s.prob_threshold),
            ));
        }
        self.validate_spatten()
    }

    fn validate_spatten(&self) -> Result<()> {
        let s = &self.spatten;
        for (key, schedule) in [("token_keep", &s.token_keep), ("head_keep", &s.head_keep)] {
            if schedule.is_empty() {
                return Err(CoreError::config(
                    format!("peers.spatten.{key}"),
                    "must list at least one fraction",
                ));
            }
            if let Some(bad) = schedule
                .iter()
                .find(|f| !(f.is_finite() && **f > 0.0 && **f <= 1.0))
            {
                return Err(CoreError::config(
                    format!("peers.spatten.{key}"),
                    format!("every fraction must be in (0, 1], got {bad}"),
                ));
            }
        }
        let bits = s.key_msb_bits + s.key_lsb_bits;
        if s.key_msb_bits < 2 || s.key_lsb_bits == 0 || bits > 16 {
            return Err(CoreError::config(
                "peers.spatten.key_msb_bits",
                format!(
                    "need key_msb_bits >= 2, key_lsb_bits >= 1 and at most 16 bits in all, got {} + {}",
                    s.key_msb_bits, s.key_lsb_bits
                ),
            ));
        }
        if !(2..=24).contains(&s.query_bits) {
            return Err(CoreError::config(
                "peers.spatten.query_bits",
                format!("must be in 2..=24, got {}", s.query_bits),
            ));
        }
        if !(s.requant_threshold.is_finite() && (0.0..=1.0).contains(&s.requant_threshold)) {
            return Err(CoreError::config(
                "peers.spatten.requant_threshold",
                format!("must be a number in [0, 1], got {}", s.requant_threshold),
            ));
        }
        Ok(())
    }
}

static DEFAULT: LazyLock<PeerConfig> = LazyLock::new(|| {
    PeerConfig::from_published(PUBLISHED, "configs/peers/published.toml")
        .expect("the embedded published parameters parse (tested)")
});

impl Default for SpattenConfig {
    /// The published parameters (`configs/peers/published.toml`).
    fn default() -> Self {
        DEFAULT.spatten.clone()
    }
}

impl Default for PeerConfig {
    /// The published parameters (`configs/peers/published.toml`).
    fn default() -> Self {
        DEFAULT.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_file_parses_to_the_cited_values() {
        let c = PeerConfig::from_published(PUBLISHED, "embedded").unwrap();
        assert_eq!(c.sanger.qk_bits, 4);
        assert!(c.sanger.normalize_qk);
        assert_eq!(c.sanger.prob_threshold, 2e-3);
        assert_eq!(PeerConfig::default(), c);
        let sp = &c.spatten;
        assert_eq!(sp.token_keep.len(), 24);
        assert_eq!(sp.head_keep.len(), 24);
        // The GPT-2-medium workload's last iteration: 1024 tokens, 16 heads per layer.
        let keys: Vec<usize> = (0..24)
            .map(|l| SpattenConfig::kept_count(sp.token_keep[l], 1024))
            .collect();
        assert_eq!(&keys[..6], &[1024, 1024, 921, 819, 819, 614]);
        assert_eq!(keys[10], 614);
        assert!(keys[11..].iter().all(|&k| k == 307));
        let heads: Vec<usize> = (0..24)
            .map(|l| SpattenConfig::kept_count(sp.head_keep[l], 16))
            .collect();
        assert!(heads[..16].iter().all(|&h| h == 16));
        assert!(heads[16..22].iter().all(|&h| h == 13));
        assert_eq!(&heads[22..], &[10, 10]);
        assert!(!sp.progressive_quantization);
        assert_eq!((sp.key_msb_bits, sp.key_lsb_bits), (6, 4));
        assert_eq!(sp.query_bits, 16);
        assert_eq!(sp.requant_threshold, 0.05);
    }

    #[test]
    fn left_out_designs_and_keys_take_the_published_values() {
        let c: PeerConfig =
            toml::from_str("[sanger]\nqk_bits = 4\nnormalize_qk = true\nprob_threshold = 0.01\n\n[spatten]\nrequant_threshold = 0.1\n").unwrap();
        assert_eq!(c.spatten.requant_threshold, 0.1);
        assert_eq!(
            c.spatten.token_keep,
            PeerConfig::default().spatten.token_keep
        );
        let c: PeerConfig = toml::from_str("").unwrap();
        assert_eq!(c, PeerConfig::default());
        assert!(toml::from_str::<PeerConfig>("[spatten]\ntoken_kep = [1.0]\n").is_err());
    }

    #[test]
    fn spatten_schedule_maps_onto_any_depth() {
        let s = [1.0f32, 0.5, 0.25];
        assert_eq!(SpattenConfig::schedule_entry(&s, 0, 6), 1.0);
        assert_eq!(SpattenConfig::schedule_entry(&s, 1, 6), 1.0);
        assert_eq!(SpattenConfig::schedule_entry(&s, 2, 6), 0.5);
        assert_eq!(SpattenConfig::schedule_entry(&s, 5, 6), 0.25);
        assert_eq!(SpattenConfig::schedule_entry(&s, 0, 1), 1.0);
        assert_eq!(SpattenConfig::kept_count(0.3, 10), 3);
        assert_eq!(SpattenConfig::kept_count(0.7, 20), 14);
        assert_eq!(SpattenConfig::kept_count(0.01, 10), 1);
        assert_eq!(SpattenConfig::kept_count(1.0, 0), 0);
        let mut c = PeerConfig::default();
        c.spatten.token_keep = vec![1.0, 0.0];
        let e = c.validate().unwrap_err();
        assert!(e.to_string().contains("peers.spatten.token_keep"), "{e}");
    }

    #[test]
    fn bad_values_and_missing_sources_are_named() {
        let bad = PUBLISHED.replace("value = 4,", "value = 12,");
        let e = PeerConfig::from_published(&bad, "x.toml").unwrap_err();
        assert!(e.to_string().contains("peers.sanger.qk_bits"), "{e}");
        let no_source = "[sanger]\nqk_bits = { value = 4 }\nnormalize_qk = { value = true, source = \"s\" }\nprob_threshold = { value = 0.002, source = \"s\" }\n";
        let e = PeerConfig::from_published(no_source, "y.toml").unwrap_err();
        assert!(e.to_string().contains("y.toml"), "{e}");
    }
}
