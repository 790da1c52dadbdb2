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

/// A3 (HPCA 2020): approximate candidate selection by a greedy search over the pre-sorted
/// key columns, exact scores for the candidates, then the post-scoring cut.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct A3Config {
    /// Iterations `M` of the greedy candidate search per query, as a fraction of the query's
    /// visible keys `n`: `M = ceil(iterations_per_key * n)`, at most `n * d / 2` (each
    /// iteration takes the largest and the smallest remaining component product `q_j k_ij`).
    pub iterations_per_key: f32,
    /// Post-scoring cut: a candidate stays in the softmax when its weight relative to the
    /// largest candidate's, `exp(l - l_max)` (logits `l`), is at least this fraction; a
    /// margin of `-ln(post_score_ratio)` logits below the largest. 0 keeps every candidate.
    pub post_score_ratio: f32,
}

/// Energon (TCAD 2022, arXiv 2110.09310): mixed-precision multi-round filtering (MP-MRF).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnergonConfig {
    /// Bits of the symmetric quantisation of Q in every filtering round (levels
    /// `-(2^(b-1)-1) ..= 2^(b-1)-1`, one scale per head: its absolute maximum).
    pub query_bits: u32,
    /// Bits of the symmetric quantisation of K (one scale per head); a round with fewer bits
    /// uses the code's most significant bits (an arithmetic shift right).
    pub key_bits: u32,
    /// Key bits of each filtering round, in order (at most [`MAX_FILTER_ROUNDS`] rounds,
    /// each in `1..=key_bits`, never decreasing).
    pub round_key_bits: Vec<u32>,
    /// Each round's `alpha` in `[-1, 1]`: the round keeps the keys whose low-bit score reaches
    /// `mean + alpha (max - mean)` (`alpha >= 0`) or `mean + alpha (mean - min)`
    /// (`alpha < 0`), statistics over the keys the round scores. One per round.
    pub round_alpha: Vec<f32>,
}

/// Most filtering rounds an Energon configuration may have (the trace counts the survivors of
/// each, [`crate::trace::HeadStats::filter_kept`]).
pub const MAX_FILTER_ROUNDS: usize = 4;

/// Parameters of every peer design, `[peers]` in an attention configuration. A design left
/// out of a configuration file gets its published parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PeerConfig {
    /// Sanger.
    pub sanger: SangerConfig,
    /// SpAtten.
    pub spatten: SpattenConfig,
    /// A3.
    pub a3: A3Config,
    /// Energon.
    pub energon: EnergonConfig,
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
struct PublishedA3 {
    iterations_per_key: Cited<f32>,
    post_score_ratio: Cited<f32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishedEnergon {
    query_bits: Cited<u32>,
    key_bits: Cited<u32>,
    round_key_bits: Cited<Vec<u32>>,
    round_alpha: Cited<Vec<f32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Published {
    sanger: PublishedSanger,
    spatten: PublishedSpatten,
    a3: PublishedA3,
    energon: PublishedEnergon,
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
            a3: A3Config {
                iterations_per_key: p.a3.iterations_per_key.value,
                post_score_ratio: p.a3.post_score_ratio.value,
            },
            energon: EnergonConfig {
                query_bits: p.energon.query_bits.value,
                key_bits: p.energon.key_bits.value,
                round_key_bits: p.energon.round_key_bits.value,
                round_alpha: p.energon.round_alpha.value,
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
        let a = &self.a3;
        if !(a.iterations_per_key.is_finite() && a.iterations_per_key > 0.0) {
            return Err(CoreError::config(
                "peers.a3.iterations_per_key",
                format!("must be a finite number > 0, got {}", a.iterations_per_key),
            ));
        }
        if !(0.0..=1.0).contains(&a.post_score_ratio) {
            return Err(CoreError::config(
                "peers.a3.post_score_ratio",
                format!("must be a number in [0, 1], got {}", a.post_score_ratio),
            ));
        }
        self.energon.validate()?;
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

impl EnergonConfig {
    /// Checks the bit widths and the rounds; errors name the key.
    pub fn validate(&self) -> Result<()> {
        for (key, bits) in [("query_bits", self.query_bits), ("key_bits", self.key_bits)] {
            if !(2..=8).contains(&bits) {
                return Err(CoreError::config(
                    format!("peers.energon.{key}"),
                    format!("must be in 2..=8, got {bits}"),
                ));
            }
        }
        let rounds = &self.round_key_bits;
        if rounds.is_empty() || rounds.len() > MAX_FILTER_ROUNDS {
            return Err(CoreError::config(
                "peers.energon.round_key_bits",
                format!(
                    "must list 1 to {MAX_FILTER_ROUNDS} rounds, got {}",
                    rounds.len()
                ),
            ));
        }
        if let Some(b) = rounds.iter().find(|b| !(1..=self.key_bits).contains(*b)) {
            return Err(CoreError::config(
                "peers.energon.round_key_bits",
                format!(
                    "each round's bits must be in 1..=key_bits ({}), got {b}",
                    self.key_bits
                ),
            ));
        }
        if rounds.windows(2).any(|w| w[1] < w[0]) {
            return Err(CoreError::config(
                "peers.energon.round_key_bits",
                format!("the rounds' bits must never decrease, got {rounds:?}"),
            ));
        }
        if self.round_alpha.len() != rounds.len() {
            return Err(CoreError::config(
                "peers.energon.round_alpha",
                format!(
                    "needs one alpha per round ({}), got {}",
                    rounds.len(),
                    self.round_alpha.len()
                ),
            ));
        }
        if let Some(a) = self.round_alpha.iter().find(|a| !(-1.0..=1.0).contains(*a)) {
            return Err(CoreError::config(
                "peers.energon.round_alpha",
                format!("each alpha must be a number in [-1, 1], got {a}"),
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
        assert_eq!(c.a3.iterations_per_key, 1.0);
        assert_eq!(c.a3.post_score_ratio, 1e-3);
        assert_eq!(c.energon.query_bits, 4);
        assert_eq!(c.energon.key_bits, 4);
        assert_eq!(c.energon.round_key_bits, vec![2, 4]);
        assert_eq!(c.energon.round_alpha, vec![0.0, 0.0]);
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

    #[test]
    fn energon_rounds_are_checked_by_key() {
        let ok = PeerConfig::default();
        type Edit = fn(&mut EnergonConfig);
        let cases: [(&str, Edit); 5] = [
            ("round_key_bits", |e| e.round_key_bits = vec![]),
            ("round_key_bits", |e| e.round_key_bits = vec![4, 2]),
            ("round_key_bits", |e| e.round_key_bits = vec![2, 6]),
            ("round_alpha", |e| e.round_alpha = vec![0.0]),
            ("round_alpha", |e| e.round_alpha = vec![0.0, 1.5]),
        ];
        for (key, edit) in cases {
            let mut c = ok.clone();
            edit(&mut c.energon);
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(&format!("peers.energon.{key}")), "{e}");
        }
        let mut c = ok.clone();
        c.a3.post_score_ratio = 2.0;
        assert!(c.validate().unwrap_err().to_string().contains("peers.a3"));
        c = ok;
        c.a3.iterations_per_key = 0.0;
        assert!(c.validate().unwrap_err().to_string().contains("peers.a3"));
    }

    #[test]
    fn a_configuration_with_one_design_keeps_the_others_published() {
        let c: PeerConfig =
            toml::from_str("[sanger]\nqk_bits = 4\nnormalize_qk = true\nprob_threshold = 0.0\n")
                .unwrap();
        assert_eq!(c.sanger.prob_threshold, 0.0);
        assert_eq!(c.energon, PeerConfig::default().energon);
    }
}
