//! The rows the peers' comparison is made of: Table III's rows as the paper results hold
//! them, one design's numbers over a set of runs, and our design beside a published row;
//! re-exported by [`crate::peers`].

use serde::{Deserialize, Serialize};
use toml::Value;

use crate::error::{Result, SimError};
use crate::paper::PAPER_RESULTS;
use crate::process::ScaleFactors;
use crate::report::DesignReport;

/// The node our model is at (its energy tables), nm: a published row at another node is
/// carried here by `configs/process/scaling.toml` before the comparison.
pub const MODEL_PROCESS_NM: f64 = 65.0;

/// One Table III row as `configs/paper-results.toml` holds it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Table3Row {
    /// Design name in Table III.
    pub design: String,
    /// Process node, nm.
    pub process_nm: f64,
    /// Key buffer, KB.
    pub key_buffer_kb: f64,
    /// Value buffer, KB.
    pub value_buffer_kb: f64,
    /// Published throughput, GOPs/s.
    pub gops_per_s: f64,
    /// Published energy efficiency, GOPs/J.
    pub gops_per_j: f64,
    /// Whether the published energy includes the off-chip memory's.
    pub memory_cost_included: bool,
}

/// Every Table III row of the embedded paper results, in file order.
pub fn table3_rows() -> Result<Vec<Table3Row>> {
    let bad =
        |what: &str| SimError::config("paper-results.toml", format!("missing or malformed {what}"));
    let t: toml::Table = PAPER_RESULTS
        .parse()
        .map_err(|e: toml::de::Error| SimError::config("paper-results.toml", e.to_string()))?;
    let sec = t
        .get("table3")
        .and_then(Value::as_table)
        .ok_or_else(|| bad("table3"))?;
    let mut rows = Vec::new();
    for (name, v) in sec {
        let Some(row) = v.as_table() else { continue };
        let num = |k: &str| {
            row.get(k)
                .and_then(|x| x.as_float().or_else(|| x.as_integer().map(|i| i as f64)))
                .ok_or_else(|| bad(&format!("table3.{name}.{k}")))
        };
        rows.push(Table3Row {
            design: name.clone(),
            process_nm: num("process_nm")?,
            key_buffer_kb: num("key_buffer_kb")?,
            value_buffer_kb: num("value_buffer_kb")?,
            gops_per_s: num("gops_per_s")?,
            gops_per_j: num("gops_per_j")?,
            memory_cost_included: row
                .get("memory_cost_included")
                .and_then(Value::as_bool)
                .ok_or_else(|| bad(&format!("table3.{name}.memory_cost_included")))?,
        });
    }
    Ok(rows)
}

/// One design's numbers over the paper's workloads.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PeerRow {
    /// Preset key.
    pub key: String,
    /// Display name.
    pub name: String,
    /// Geomean over the workloads of the dense-equivalent GOPs/s.
    pub gops_per_s: f64,
    /// Geomean over the workloads of the executed operations per second (2 per
    /// multiply-accumulate the design performs, low-bit ones priced as fractions), GOPs/s.
    pub executed_gops_per_s: f64,
    /// Geomean of the dense-equivalent GOPs/J, every energy counted (memory included).
    pub gops_per_j: f64,
    /// Geomean of the dense-equivalent GOPs/J without the ReRAM main memory's reads and
    /// writes (the on-chip part only).
    pub gops_per_j_without_memory: f64,
    /// Geomean speedup over S-Baseline (its cycles / ours).
    pub speedup: f64,
    /// Geomean energy reduction over S-Baseline (its energy / ours).
    pub energy_reduction: f64,
    /// Mean data-movement reduction over S-Baseline (K and V bytes), percent.
    pub data_movement_reduction_pct: f64,
    /// Per workload (same order as [`PeerComparison::workloads`]): (speedup, energy
    /// reduction) over S-Baseline.
    pub per_workload: Vec<(f64, f64)>,
}

/// The published-configuration table: our model beside the Table III row.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PublishedRow {
    /// Our design at the published configuration.
    pub ours: PeerRow,
    /// Its Table III row.
    pub published: Table3Row,
    /// When the row is at another node than our model: the factors that carry it to
    /// [`MODEL_PROCESS_NM`] (`configs/process/scaling.toml`).
    pub scaled: Option<ScaleFactors>,
}

/// Energy without the ReRAM main memory's reads and writes, pJ.
pub(crate) fn energy_without_memory(r: &DesignReport) -> f64 {
    r.energy.total() - r.energy.reram_read - r.energy.reram_write - r.energy.reram_write_q
}

/// Executed operations per second of one run (2 per multiply-accumulate performed), GOPs/s.
pub(crate) fn executed_gops_per_s(r: &DesignReport) -> f64 {
    if r.seconds > 0.0 {
        2.0 * r.totals.executed_macs as f64 / r.seconds / 1e9
    } else {
        0.0
    }
}

/// Dense-equivalent GOPs/J of one run without the main memory's reads and writes.
pub(crate) fn gops_per_j_without_memory(r: &DesignReport) -> f64 {
    let j = energy_without_memory(r) * 1e-12;
    if j > 0.0 {
        r.totals.dense_ops as f64 / j / 1e9
    } else {
        0.0
    }
}
