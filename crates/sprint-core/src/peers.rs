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

/// Parameters of every peer design, `[peers]` in an attention configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// Sanger.
    pub sanger: SangerConfig,
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
struct Published {
    sanger: PublishedSanger,
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
        Ok(())
    }
}

static DEFAULT: LazyLock<PeerConfig> = LazyLock::new(|| {
    PeerConfig::from_published(PUBLISHED, "configs/peers/published.toml")
        .expect("the embedded published parameters parse (tested)")
});

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
