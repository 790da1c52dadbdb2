//! Process scaling between technology nodes (`configs/process/scaling.toml`): Dennard's rule
//! with the nodes' own supply voltages, applied only where a published row at another node
//! is set beside our 65 nm model (`--compare-peers`'s published table).

use serde::{Deserialize, Serialize};

use crate::error::{Result, SimError};
use crate::sourced::Sourced;

/// The embedded scaling file.
pub const PROCESS_SCALING: &str = include_str!("../configs/process/scaling.toml");

/// One technology node of the scaling file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeFile {
    /// Feature size, nm.
    pub process_nm: Sourced<f64>,
    /// Nominal core supply, V.
    pub supply_v: Sourced<f64>,
}

/// The scaling file as written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScalingFile {
    /// The rule's name (`dennard-generalised`) and its citation.
    pub rule: Sourced<String>,
    /// The nodes it knows.
    pub node: Vec<NodeFile>,
}

/// Factors that carry a design from one node to another.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ScaleFactors {
    /// Node the published number is at, nm.
    pub from_nm: f64,
    /// Node it is carried to, nm.
    pub to_nm: f64,
    /// Gate delay at `to` over gate delay at `from` (throughput divides by it).
    pub delay: f64,
    /// Dynamic energy per op at `to` over that at `from` (energy efficiency divides by it).
    pub energy: f64,
}

impl ScaleFactors {
    /// Throughput carried to the target node, GOPs/s.
    pub fn gops_per_s(&self, at_from: f64) -> f64 {
        at_from / self.delay
    }

    /// Energy efficiency carried to the target node, GOPs/J.
    pub fn gops_per_j(&self, at_from: f64) -> f64 {
        at_from / self.energy
    }
}

/// The embedded scaling file, parsed and checked.
pub fn scaling() -> Result<ScalingFile> {
    let f: ScalingFile = toml::from_str(PROCESS_SCALING)
        .map_err(|e| SimError::config("process/scaling.toml", e.to_string()))?;
    if f.rule.value != "dennard-generalised" {
        return Err(SimError::config(
            "process/scaling.toml: rule",
            format!(
                "unknown rule {:?} (known: dennard-generalised)",
                f.rule.value
            ),
        ));
    }
    for n in &f.node {
        for (x, key) in [
            (n.process_nm.value, "process_nm"),
            (n.supply_v.value, "supply_v"),
        ] {
            if !(x.is_finite() && x > 0.0) {
                return Err(SimError::config(
                    format!("process/scaling.toml: node.{key}"),
                    format!("must be a finite number > 0, got {x}"),
                ));
            }
        }
    }
    Ok(f)
}

/// The factors from `from_nm` to `to_nm` under the scaling file's rule: delay `to / from`,
/// energy per op `(to / from) (V_to / V_from)^2`. An error names a node the file lacks.
pub fn factors(f: &ScalingFile, from_nm: f64, to_nm: f64) -> Result<ScaleFactors> {
    let supply = |nm: f64| {
        f.node
            .iter()
            .find(|n| (n.process_nm.value - nm).abs() < 1e-9)
            .map(|n| n.supply_v.value)
            .ok_or_else(|| {
                SimError::config(
                    "process/scaling.toml",
                    format!("no node at {nm} nm (the file lists the nodes it can scale)"),
                )
            })
    };
    let (v_from, v_to) = (supply(from_nm)?, supply(to_nm)?);
    let length = to_nm / from_nm;
    Ok(ScaleFactors {
        from_nm,
        to_nm,
        delay: length,
        energy: length * (v_to / v_from).powi(2),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 40 -> 65 nm by hand: delay 65 / 40 = 1.625, energy 1.625 x (1.0 / 0.9)^2 = 2.00617;
    /// the way back inverts both; an unknown node is an error naming it.
    #[test]
    fn dennard_factors_by_hand() {
        let f = scaling().unwrap();
        let up = factors(&f, 40.0, 65.0).unwrap();
        assert!((up.delay - 1.625).abs() < 1e-12);
        assert!((up.energy - 1.625 / 0.81).abs() < 1e-12);
        assert!((up.gops_per_s(518.0) - 518.0 / 1.625).abs() < 1e-9);
        let down = factors(&f, 65.0, 40.0).unwrap();
        assert!((down.delay * up.delay - 1.0).abs() < 1e-12);
        assert!((down.energy * up.energy - 1.0).abs() < 1e-12);
        let e = factors(&f, 28.0, 65.0).unwrap_err().to_string();
        assert!(e.contains("28"), "{e}");
    }
}
