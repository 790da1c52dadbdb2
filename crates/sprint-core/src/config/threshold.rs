//! Pruning thresholds: the configuration's `[threshold]` table, the per-(layer, head)
//! values, and the thresholds file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};

use super::messages::one_line;

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
