//! One simulation as `sprint simulate` runs it: designs on a trace or a paper workload,
//! priced with an energy table, and the `--json` document of every statistic. Shared by the
//! CLI and the Python package so both report the same names and values.

use std::collections::BTreeMap;
use std::io::Read;

use serde_json::{Map, Value, json};
use sprint_core::trace::TraceReader;

use crate::config::Design;
use crate::energy::EnergyTable;
use crate::error::{Result, SimError};
use crate::report::{DesignReport, build};
use crate::run::{run_model, run_trace};
use crate::workload::{ModelWorkload, workload_names};
use crate::wstats::StatsFile;

/// The one-line description of a paper workload printed above its results.
pub fn workload_label(w: &ModelWorkload) -> String {
    format!(
        "{} ({} layers x {} heads, {} tokens, {:.0}% padding, d = {}{})",
        w.name,
        w.layers,
        w.heads,
        w.seq_len,
        100.0 * w.padding_fraction,
        w.head_dim,
        if w.causal { ", causal" } else { "" }
    )
}

/// Splits `KEY=VALUE` overrides into hardware ones and energy-table ones (the `energy.`
/// prefix, stripped), in order.
pub fn split_sets(sets: &[String]) -> (Vec<String>, Vec<String>) {
    let (mut hw, mut en) = (Vec::new(), Vec::new());
    for s in sets {
        match s.strip_prefix("energy.") {
            Some(rest) => en.push(rest.to_string()),
            None => hw.push(s.clone()),
        }
    }
    (hw, en)
}

/// What was simulated and the report of every design (same order as the designs).
#[derive(Clone, Debug)]
pub struct Outcome {
    /// One-line description of the workload (trace or paper model and its shape).
    pub label: String,
    /// Where the kept sets came from (the trace, or the synthetic statistics used).
    pub stats_source: String,
    /// One report per design; ratios are against the first.
    pub reports: Vec<DesignReport>,
}

/// Simulates `designs` on a trace (`trace`: a display name and its reader; with `workload`
/// too, the trace's shape must agree with it) or, without a trace, on `workload` with
/// synthetic kept sets drawn from `stats`. Runs on the current rayon pool.
pub fn simulate<R: Read>(
    designs: &[Design],
    table: &EnergyTable,
    stats: &StatsFile,
    trace: Option<(&str, TraceReader<R>)>,
    workload: Option<&ModelWorkload>,
) -> Result<Outcome> {
    let (label, totals, stats_source) = match (trace, workload) {
        (Some((name, reader)), w) => {
            let (h, t) = run_trace(designs, reader, w)?;
            (
                format!(
                    "trace {name} ({}, {} layers x {} heads, {} tokens, d = {})",
                    h.workload, h.layers, h.heads, h.n_queries, h.head_dim
                ),
                t,
                format!("kept sets from the trace (variant {})", h.variant),
            )
        }
        (None, Some(w)) => {
            let st = stats.resolve(&w.name);
            let t = run_model(designs, w, &st)?;
            (workload_label(w), t, st.source)
        }
        (None, None) => {
            return Err(SimError::workload(
                "workload",
                format!(
                    "give a workload ({}) or a trace",
                    workload_names().join(", ")
                ),
            ));
        }
    };
    let reports = build(designs, table, &totals)?;
    Ok(Outcome {
        label,
        stats_source,
        reports,
    })
}

/// The `--json` document of `outcome`: `workload`, `workload_statistics`, `energy_table`,
/// `energy_table_values` and `designs` (each design's statistics registry plus its merged
/// `config`). The caller adds run-dependent entries (wall time, memory).
pub fn json_document(
    outcome: &Outcome,
    designs: &[Design],
    table: &EnergyTable,
) -> Map<String, Value> {
    let designs_json: Vec<Value> = outcome
        .reports
        .iter()
        .zip(designs)
        .map(|(r, d)| {
            let mut reg: BTreeMap<String, Value> = r.registry();
            reg.insert(
                "config".into(),
                serde_json::to_value(&d.file).unwrap_or(Value::Null),
            );
            json!(reg)
        })
        .collect();
    let mut doc = Map::new();
    doc.insert("workload".into(), json!(outcome.label));
    doc.insert("workload_statistics".into(), json!(outcome.stats_source));
    doc.insert("energy_table".into(), json!(table.name()));
    doc.insert(
        "energy_table_values".into(),
        serde_json::to_value(&table.file).unwrap_or(Value::Null),
    );
    doc.insert("designs".into(), Value::Array(designs_json));
    doc
}
