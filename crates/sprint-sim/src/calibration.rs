//! A calibration: values of parameters the paper does not publish, applied on top of the
//! sourced presets and workloads. The sourced default is the empty calibration; the
//! `paper-inferred` one (`configs/presets/paper-inferred.toml`, written by
//! `sprint simulate --fit-paper`) holds values fitted to the paper's figures, each labelled
//! with its source.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Result, SimError};
use crate::sourced::Sourced;
use crate::workload::ModelWorkload;

/// The embedded `paper-inferred` calibration.
pub const PAPER_INFERRED: &str = include_str!("../configs/presets/paper-inferred.toml");

/// A parameter a calibration may set: name, valid range (inclusive), what it sets.
#[derive(Debug, PartialEq)]
pub struct Param {
    /// Key in the `[params]` table.
    pub name: &'static str,
    /// Smallest valid value.
    pub min: f64,
    /// Largest valid value.
    pub max: f64,
    /// Whole numbers only.
    pub integer: bool,
    /// What it sets, in which unit.
    pub doc: &'static str,
}

/// Every parameter a calibration may set (the ones the paper does not publish).
pub const PARAMS: &[Param] = &[
    Param {
        name: "baseline_query_block_per_corelet",
        min: 1.0,
        max: 4096.0,
        integer: true,
        doc: "dense baselines (S/M/L-Baseline, Pruning, Mask only) use query-block reuse with this many queries per CORELET",
    },
    Param {
        name: "baseline_query_block_shared",
        min: 0.0,
        max: 1.0,
        integer: true,
        doc: "dense baselines: 1 = every CORELET works on the same query block, 0 = one block per CORELET (the block grows with the CORELETs)",
    },
    Param {
        name: "baseline_resident_buffer_fraction",
        min: 0.0,
        max: 0.9,
        integer: false,
        doc: "dense baselines: fraction of each buffer that keeps a non-fitting head's first keys (the rest streams per block)",
    },
    Param {
        name: "baseline_tile_double_buffered",
        min: 0.0,
        max: 1.0,
        integer: true,
        doc: "dense baselines: 1 = the next tile is fetched while the current one is worked on, 0 = every block waits for its stream",
    },
    Param {
        name: "sprint_locality",
        min: 0.0,
        max: 1.0,
        integer: true,
        doc: "locality policy of the SPRINT designs (S/M/L-SPRINT): 0 = residency, 1 = sld-strict",
    },
    Param {
        name: "padding_gpt2_l",
        min: 0.0,
        max: 0.9,
        integer: false,
        doc: "padding fraction of GPT-2-L's 1024 tokens",
    },
    Param {
        name: "padding_synth",
        min: 0.0,
        max: 0.9,
        integer: false,
        doc: "padding fraction of Synth-1 and Synth-2",
    },
    Param {
        name: "memory_channels",
        min: 1.0,
        max: 64.0,
        integer: true,
        doc: "ReRAM channels of every design",
    },
    Param {
        name: "memory_channels_per_corelet",
        min: 0.0,
        max: 1.0,
        integer: true,
        doc: "memory channels per CORELET of every design (0 = shared by all sizes, 1 = `memory_channels` per CORELET)",
    },
    Param {
        name: "prefetch_queries",
        min: 0.0,
        max: 64.0,
        integer: true,
        doc: "controller run-ahead of every design, queries",
    },
    Param {
        name: "scoring_pipelined",
        min: 0.0,
        max: 1.0,
        integer: true,
        doc: "pipelined in-memory scoring of every design (0 = off, 1 = on)",
    },
];

/// The parameter called `name`, or an error naming it and listing the valid ones.
pub fn param(name: &str) -> Result<&'static Param> {
    PARAMS.iter().find(|p| p.name == name).ok_or_else(|| {
        let names: Vec<&str> = PARAMS.iter().map(|p| p.name).collect();
        SimError::config(
            name,
            format!(
                "unknown calibration parameter (known: {})",
                names.join(", ")
            ),
        )
    })
}

/// Checks `value` against the parameter's range and integrality.
pub fn check_value(p: &Param, value: f64) -> Result<()> {
    if !value.is_finite() || value < p.min || value > p.max {
        return Err(SimError::config(
            p.name,
            format!("{value} is outside {}..={}", p.min, p.max),
        ));
    }
    if p.integer && value.fract() != 0.0 {
        return Err(SimError::config(
            p.name,
            format!("{value} must be a whole number"),
        ));
    }
    Ok(())
}

/// A calibration file as written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    /// Name (`sourced-default`, `paper-inferred`).
    pub name: String,
    /// One line about it.
    pub description: String,
    /// How the values were obtained (the fit's search and objective), if fitted.
    #[serde(default)]
    pub fit: String,
    /// Parameter values with their sources.
    #[serde(default)]
    pub params: BTreeMap<String, Sourced<f64>>,
}

/// Preset keys of the SPRINT designs (the designs a locality-policy parameter applies to).
const SPRINT_PRESETS: &[&str] = &["s-sprint", "m-sprint", "l-sprint"];

/// Preset keys of the dense-baseline family (the designs a baseline-dataflow parameter
/// applies to).
const BASELINE_PRESETS: &[&str] = &[
    "s-baseline",
    "m-baseline",
    "l-baseline",
    "pruning",
    "mask-only",
];

impl Calibration {
    /// The sourced default: no parameter changed.
    pub fn sourced_default() -> Self {
        Self {
            name: "sourced-default".into(),
            description: "the presets as shipped: every value sourced, nothing fitted".into(),
            fit: String::new(),
            params: BTreeMap::new(),
        }
    }

    /// The embedded `paper-inferred` calibration.
    pub fn paper_inferred() -> Result<Self> {
        Self::from_toml_str(PAPER_INFERRED, "paper-inferred.toml")
    }

    /// Parses and validates a calibration; errors name the key.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self> {
        let c: Calibration = toml::from_str(text)
            .map_err(|e: toml::de::Error| SimError::config(origin, e.message().trim()))?;
        for (k, v) in &c.params {
            let p = param(k).map_err(|e| prefix(e, origin))?;
            check_value(p, v.value).map_err(|e| prefix(e, origin))?;
        }
        Ok(c)
    }

    /// The value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.params.get(name).map(|s| s.value)
    }

    /// `--set` overrides this calibration makes to the preset loaded as `preset`.
    pub fn design_sets(&self, preset: &str) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(b) = self.get("baseline_query_block_per_corelet")
            && BASELINE_PRESETS.contains(&preset)
        {
            out.push("design.reuse=\"query-block\"".into());
            out.push(format!("design.query_block_per_corelet={}", b as u64));
        }
        if BASELINE_PRESETS.contains(&preset) {
            if let Some(v) = self.get("baseline_query_block_shared") {
                out.push(format!("design.query_block_shared={}", v != 0.0));
            }
            if let Some(v) = self.get("baseline_resident_buffer_fraction") {
                out.push(format!("design.resident_buffer_fraction={v}"));
            }
            if let Some(v) = self.get("baseline_tile_double_buffered") {
                out.push(format!("design.tile_double_buffered={}", v != 0.0));
            }
        }
        if let Some(p) = self.get("sprint_locality")
            && SPRINT_PRESETS.contains(&preset)
        {
            let reuse = if p == 0.0 {
                "locality-residency"
            } else {
                "locality-sld-strict"
            };
            out.push(format!("design.reuse=\"{reuse}\""));
        }
        if let Some(c) = self.get("memory_channels") {
            out.push(format!("memory.channels={}", c as u64));
        }
        if let Some(p) = self.get("memory_channels_per_corelet") {
            out.push(format!("memory.channels_per_corelet={}", p != 0.0));
        }
        if let Some(p) = self.get("prefetch_queries") {
            out.push("design.run_ahead=\"fixed\"".into());
            out.push(format!("design.prefetch_queries={}", p as u64));
        }
        if let Some(p) = self.get("scoring_pipelined") {
            out.push(format!("design.scoring_pipelined={}", p != 0.0));
        }
        out
    }

    /// Applies the workload parameters (padding) to `w`.
    pub fn apply_workload(&self, w: &mut ModelWorkload) {
        let key = match w.name.as_str() {
            "GPT-2-L" => "padding_gpt2_l",
            "Synth-1" | "Synth-2" => "padding_synth",
            _ => return,
        };
        if let Some(p) = self.get(key) {
            w.padding_fraction = p;
            w.source = format!("{} ; padding {p} from calibration {}", w.source, self.name);
        }
    }

    /// The calibration as TOML text.
    pub fn to_toml(&self) -> String {
        let mut s = format!(
            "# {} calibration: parameters the paper does not publish, inferred from its figures.\n# Written by `sprint simulate --fit-paper`; see docs/simulator.md. Not a hardware preset:\n# `--compare-paper` applies it on top of the sourced presets.\n",
            self.name
        );
        s += &toml::to_string(self).expect("a calibration serialises");
        s
    }
}

fn prefix(e: SimError, origin: &str) -> SimError {
    match e {
        SimError::Config { key, message } => SimError::Config {
            key: format!("{origin}: {key}"),
            message,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_and_out_of_range_params_are_named() {
        let bad = "name = \"x\"\ndescription = \"y\"\n[params]\nbaseline_reuse = { value = 8.0, source = \"s\" }\n";
        let e = Calibration::from_toml_str(bad, "f.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("baseline_reuse") && e.contains("unknown"), "{e}");
        let bad = "name = \"x\"\ndescription = \"y\"\n[params]\npadding_synth = { value = 1.5, source = \"s\" }\n";
        let e = Calibration::from_toml_str(bad, "f.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("padding_synth") && e.contains("outside"), "{e}");
    }

    #[test]
    fn round_trips_and_applies() {
        let mut c = Calibration::sourced_default();
        c.params.insert(
            "baseline_query_block_per_corelet".into(),
            Sourced::new(8.0, "fitted"),
        );
        c.params
            .insert("padding_gpt2_l".into(), Sourced::new(0.25, "fitted"));
        let back = Calibration::from_toml_str(&c.to_toml(), "t").unwrap();
        assert_eq!(back, c);
        assert_eq!(back.design_sets("s-sprint"), Vec::<String>::new());
        assert_eq!(back.design_sets("m-baseline").len(), 2);
        let mut w = crate::workload::model_workload("GPT-2-L").unwrap();
        back.apply_workload(&mut w);
        assert_eq!(w.padding_fraction, 0.25);
    }
}
