//! SPRINT and its peers on real traces (`sprint simulate --compare-peers --peer-trace
//! FILE ...`): each design replays the trace of its own functional variant (the header's
//! `variant`: `sprint` for SPRINT, `sanger`, `leopard`, `a3`, `spatten`, `energon` for the
//! peers), beside S-Baseline on the same trace, at the iso configuration of the iso table.

use std::fmt::Write;
use std::io::Read;

use comfy_table::Table;
use serde::{Deserialize, Serialize};
use sprint_core::trace::TraceReader;

use crate::energy::EnergyTable;
use crate::error::{Result, SimError};
use crate::presets::load_design;
use crate::report::build;
use crate::run::run_trace;

/// The iso designs that replay a trace of each functional variant.
pub const TRACE_DESIGNS: &[(&str, &str)] = &[
    ("sprint", "m-sprint"),
    ("sanger", "sanger"),
    ("leopard", "leopard"),
    ("a3", "a3"),
    ("spatten", "spatten"),
    ("energon", "energon"),
];

/// One design on its own variant's trace.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TraceRow {
    /// Display name of the design.
    pub name: String,
    /// The trace's variant and workload (`sanger on minilm/bbc`).
    pub trace: String,
    /// Dense-equivalent GOPs/s.
    pub gops_per_s: f64,
    /// Dense-equivalent GOPs/J, memory included.
    pub gops_per_j: f64,
    /// Speedup over S-Baseline on the same trace.
    pub speedup: f64,
    /// Energy reduction over S-Baseline on the same trace.
    pub energy_reduction: f64,
    /// S-Baseline on the same trace, GOPs/s and GOPs/J.
    pub baseline: (f64, f64),
}

/// Replays each trace on S-Baseline and the design of its variant (with `sets`; `peer.*`
/// keys only on the peers). An unknown variant is an error naming it and the trace.
pub fn peer_trace_rows<R: Read>(
    traces: Vec<(String, TraceReader<R>)>,
    sets: &[String],
    table: &EnergyTable,
) -> Result<Vec<TraceRow>> {
    let mut rows = Vec::new();
    for (label, reader) in traces {
        let h = reader.header().clone();
        let Some((_, key)) = TRACE_DESIGNS.iter().find(|(v, _)| *v == h.variant) else {
            let known: Vec<&str> = TRACE_DESIGNS.iter().map(|(v, _)| *v).collect();
            return Err(SimError::workload(
                &label,
                format!(
                    "variant {:?} has no design to replay it (known: {})",
                    h.variant,
                    known.join(", ")
                ),
            ));
        };
        let design_sets: Vec<String> = sets
            .iter()
            .filter(|s| *key != "m-sprint" || !s.starts_with("peer."))
            .cloned()
            .collect();
        let base_sets: Vec<String> = sets
            .iter()
            .filter(|s| !s.starts_with("peer."))
            .cloned()
            .collect();
        let designs = vec![
            load_design("s-baseline", &base_sets)?,
            load_design(key, &design_sets)?,
        ];
        let (_, totals) = run_trace(&designs, reader, None)?;
        let r = build(&designs, table, &totals)?;
        rows.push(TraceRow {
            name: r[1].name.clone(),
            trace: format!("{} on {} ({label})", h.variant, h.workload),
            gops_per_s: r[1].gops_per_s,
            gops_per_j: r[1].gops_per_j,
            speedup: r[1].speedup,
            energy_reduction: r[1].energy_reduction,
            baseline: (r[0].gops_per_s, r[0].gops_per_j),
        });
    }
    Ok(rows)
}

/// The real-trace table as text (empty when there is none).
pub fn trace_rows_text(rows: &[TraceRow]) -> String {
    let mut out = String::new();
    if rows.is_empty() {
        return out;
    }
    let _ = writeln!(
        out,
        "Each design on its own variant's trace (iso configuration, memory included), against S-Baseline on the same trace"
    );
    let mut t = Table::new();
    t.set_header(vec![
        "design",
        "trace",
        "GOPs/s",
        "GOPs/J",
        "speedup vs S-Baseline",
        "energy reduction vs S-Baseline",
        "S-Baseline GOPs/s, GOPs/J",
    ]);
    for r in rows {
        t.add_row(vec![
            r.name.clone(),
            r.trace.clone(),
            format!("{:.1}", r.gops_per_s),
            format!("{:.1}", r.gops_per_j),
            format!("{:.2}x", r.speedup),
            format!("{:.2}x", r.energy_reduction),
            format!("{:.1}, {:.1}", r.baseline.0, r.baseline.1),
        ]);
    }
    let _ = writeln!(out, "{t}");
    out
}
