//! SPRINT and its peers as designs on one technology: `sprint simulate --compare-peers`.
//!
//! Two tables. The **iso** table runs every design on the paper's workloads at 65 nm, on the
//! same ReRAM main memory and energy tables, at M-SPRINT's buffer budget (16 KB K + 16 KB V
//! over 2 CORELETs), memory cost included: throughput, energy efficiency, speedup and
//! energy reduction over S-Baseline. The **published** table runs each design at its
//! published configuration beside its Table III row (`configs/paper-results.toml`), with
//! the energy per op also given without the memory's, for the rows whose published number
//! leaves memory out. What each peer model assumes: docs/simulator.md "The peers as
//! designs".

use std::fmt::Write;

use comfy_table::Table;
use serde::{Deserialize, Serialize};

use crate::config::Design;
use crate::energy::EnergyTable;
use crate::error::{Result, SimError};
use crate::own_workload::{OwnWorkloadRow, spatten_own_workload};
use crate::paper::{geomean, mean};
pub use crate::peer_rows::{MODEL_PROCESS_NM, PeerRow, PublishedRow, Table3Row, table3_rows};
use crate::peer_rows::{executed_gops_per_s, gops_per_j_without_memory};
use crate::peer_traces::{TraceRow, trace_rows_text};
use crate::presets::load_design;
use crate::process::{factors, scaling};
use crate::report::{DesignReport, build};
use crate::run::{ModelJob, run_models_with_progress};
use crate::workload::{model_workload, workload_names};
use crate::wstats::StatsFile;

/// The designs of the iso table, in order (the first is the reference of every ratio).
pub const ISO_DESIGNS: &[&str] = &[
    "s-baseline",
    "m-baseline",
    "m-sprint",
    "sanger",
    "leopard",
    "a3",
    "spatten",
    "energon",
];

/// The designs of the published table: (preset, Table III row).
pub const PUBLISHED_DESIGNS: &[(&str, &str)] = &[
    ("m-sprint", "M-SPRINT"),
    ("leopard-published", "LeOPArd"),
    ("a3-published", "A3"),
    ("spatten-published", "SpAtten"),
];

/// Both tables of `--compare-peers`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PeerComparison {
    /// The paper's workloads, in order.
    pub workloads: Vec<String>,
    /// The iso table, in the order of [`ISO_DESIGNS`].
    pub iso: Vec<PeerRow>,
    /// The published table, in the order of [`PUBLISHED_DESIGNS`].
    pub published: Vec<PublishedRow>,
    /// Table III rows without a model here (named, published numbers only).
    pub not_modelled: Vec<Table3Row>,
    /// Energy table used.
    pub energy_table: String,
    /// Where the kept sets came from.
    pub stats_source: String,
    /// Each design on its own variant's real trace (`--peer-trace`; empty when none).
    #[serde(default)]
    pub traces: Vec<TraceRow>,
    /// Designs at their published configuration on their own published workload, beside
    /// their Table III row (SpAtten's GPT-2-medium generation).
    #[serde(default)]
    pub own_workload: Vec<OwnWorkloadRow>,
}

/// `--set` overrides for one preset: `peer.*` keys go only to designs with a `[peer]`
/// section (every other key to every design).
fn sets_for(key: &str, sets: &[String]) -> Result<Vec<String>> {
    let base = load_design(key, &[])?;
    Ok(sets
        .iter()
        .filter(|s| base.peer.is_some() || !s.starts_with("peer."))
        .cloned()
        .collect())
}

fn row(reports: &[Vec<DesignReport>], i: usize) -> PeerRow {
    let pick = |f: &dyn Fn(&DesignReport) -> f64| -> Vec<f64> {
        reports.iter().map(|r| f(&r[i])).collect()
    };
    let first = &reports[0][i];
    PeerRow {
        key: first.key.clone(),
        name: first.name.clone(),
        gops_per_s: geomean(&pick(&|r| r.gops_per_s)),
        executed_gops_per_s: geomean(&pick(&executed_gops_per_s)),
        gops_per_j: geomean(&pick(&|r| r.gops_per_j)),
        gops_per_j_without_memory: geomean(&pick(&gops_per_j_without_memory)),
        speedup: geomean(&pick(&|r| r.speedup)),
        energy_reduction: geomean(&pick(&|r| r.energy_reduction)),
        data_movement_reduction_pct: mean(&pick(&|r| r.data_movement_reduction_pct)),
        per_workload: reports
            .iter()
            .map(|r| (r[i].speedup, r[i].energy_reduction))
            .collect(),
    }
}

/// Runs every design of both tables on every paper workload (one parallel run on the
/// caller's rayon pool; `progress(heads done, heads total)` from the workers) and builds
/// the two tables. `sets` apply to every design (`peer.*` keys to the peers only).
pub fn compare_peers(
    sets: &[String],
    table: &EnergyTable,
    stats: &StatsFile,
    progress: impl Fn(usize, usize) + Sync,
) -> Result<PeerComparison> {
    let mut keys: Vec<&str> = ISO_DESIGNS.to_vec();
    for (k, _) in PUBLISHED_DESIGNS {
        if !keys.contains(k) {
            keys.push(k);
        }
    }
    let designs: Vec<Design> = keys
        .iter()
        .map(|k| load_design(k, &sets_for(k, sets)?))
        .collect::<Result<_>>()?;
    let names = workload_names();
    let workloads = names
        .iter()
        .map(|n| model_workload(n))
        .collect::<Result<Vec<_>>>()?;
    let st: Vec<_> = names.iter().map(|n| stats.resolve(n)).collect();
    let jobs: Vec<ModelJob<'_>> = workloads
        .iter()
        .zip(&st)
        .map(|(w, s)| ModelJob {
            designs: &designs,
            workload: w,
            stats: s,
        })
        .collect();
    let totals = run_models_with_progress(&jobs, progress)?;
    let reports: Vec<Vec<DesignReport>> = totals
        .iter()
        .map(|t| build(&designs, table, t))
        .collect::<Result<_>>()?;
    let table3 = table3_rows()?;
    let scaling = scaling()?;
    let iso = (0..ISO_DESIGNS.len()).map(|i| row(&reports, i)).collect();
    let mut published = Vec::new();
    for (k, t3) in PUBLISHED_DESIGNS {
        let i = keys.iter().position(|x| x == k).expect("design listed");
        let p = table3
            .iter()
            .find(|r| r.design == *t3)
            .ok_or_else(|| SimError::config("paper-results.toml", format!("no table3.{t3} row")))?;
        let scaled = if (p.process_nm - MODEL_PROCESS_NM).abs() > 1e-9 {
            Some(factors(&scaling, p.process_nm, MODEL_PROCESS_NM)?)
        } else {
            None
        };
        published.push(PublishedRow {
            ours: row(&reports, i),
            published: p.clone(),
            scaled,
        });
    }
    let not_modelled = table3
        .iter()
        .filter(|r| !PUBLISHED_DESIGNS.iter().any(|(_, t)| *t == r.design))
        .cloned()
        .collect();
    let own_workload = vec![spatten_own_workload(sets, table, &table3, &scaling)?];
    let mut sources: Vec<String> = st.iter().map(|s| s.source.clone()).collect();
    sources.dedup();
    Ok(PeerComparison {
        workloads: names.iter().map(|s| s.to_string()).collect(),
        iso,
        published,
        not_modelled,
        energy_table: table.name().to_string(),
        stats_source: sources.join("; "),
        traces: Vec::new(),
        own_workload,
    })
}

/// Both tables as text.
pub fn peers_text(c: &PeerComparison) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "SPRINT and its peers at one technology (65 nm), one memory (ReRAM main memory, memory cost included) and one buffer budget (16 KB K + 16 KB V; S-Baseline 8 + 8 KB); energy table `{}`; kept sets: {}",
        c.energy_table, c.stats_source
    );
    let mut t = Table::new();
    t.set_header(vec![
        "design (geomean over the 8 paper workloads)",
        "GOPs/s",
        "GOPs/J",
        "speedup vs S-Baseline",
        "energy reduction vs S-Baseline",
        "data-movement reduction (mean)",
    ]);
    for r in &c.iso {
        t.add_row(vec![
            r.name.clone(),
            format!("{:.1}", r.gops_per_s),
            format!("{:.1}", r.gops_per_j),
            format!("{:.2}x", r.speedup),
            format!("{:.2}x", r.energy_reduction),
            format!("{:.1}%", r.data_movement_reduction_pct),
        ]);
    }
    let _ = writeln!(out, "{t}");
    let mut t = Table::new();
    let mut head = vec!["speedup / energy reduction vs S-Baseline".to_string()];
    head.extend(c.iso.iter().skip(1).map(|r| r.name.clone()));
    t.set_header(head);
    for (w, name) in c.workloads.iter().enumerate() {
        let mut r = vec![name.clone()];
        r.extend(c.iso.iter().skip(1).map(|d| {
            let (s, e) = d.per_workload[w];
            format!("{s:.2} / {e:.2}")
        }));
        t.add_row(r);
    }
    let _ = writeln!(out, "{t}");
    published_text(c, &mut out);
    out.push_str(&trace_rows_text(&c.traces));
    out
}

/// `ours / theirs (ratio)`.
fn versus(ours: f64, theirs: f64) -> String {
    format!("{ours:.1} / {theirs:.1} ({:.2})", ours / theirs)
}

/// The published-configuration table: throughput (dense-equivalent and executed ops) and
/// energy efficiency, each against the Table III row and, for a row at another node, against
/// that row carried to our node.
fn published_text(c: &PeerComparison, out: &mut String) {
    let _ = writeln!(
        out,
        "Each design at its published configuration beside its Table III row: ours / published (ratio); geomean over the 8 paper workloads. GOPs: dense-equivalent (4 d per padded pair), as Table III counts M-SPRINT; executed: 2 per multiply-accumulate performed. A row at another node is also set against the published number carried to {MODEL_PROCESS_NM} nm (configs/process/scaling.toml, Dennard with the nodes' supplies)"
    );
    let mut t = Table::new();
    t.set_header(vec![
        "design",
        "node, K + V buffer, memory in published energy",
        "GOPs/s",
        "GOPs/s vs published at 65 nm",
        "executed GOPs/s",
        "GOPs/J (memory as published)",
        "GOPs/J vs published at 65 nm",
        "GOPs/J memory included / left out",
    ]);
    let own = c.own_workload.iter().map(|w| {
        (
            format!("{}, its own workload", w.row.published.design),
            &w.row,
        )
    });
    let rows = c
        .published
        .iter()
        .map(|p| (format!("{} ({})", p.published.design, p.ours.name), p))
        .chain(own);
    for (label, p) in rows {
        let (o, q) = (&p.ours, &p.published);
        let ours_j = if q.memory_cost_included {
            o.gops_per_j
        } else {
            o.gops_per_j_without_memory
        };
        let (s_s, s_j) = match &p.scaled {
            Some(f) => (
                versus(o.gops_per_s, f.gops_per_s(q.gops_per_s)),
                versus(ours_j, f.gops_per_j(q.gops_per_j)),
            ),
            None => ("(same node)".into(), "(same node)".into()),
        };
        t.add_row(vec![
            label,
            format!(
                "{} nm, {} + {} KB, {}",
                q.process_nm,
                q.key_buffer_kb,
                q.value_buffer_kb,
                if q.memory_cost_included {
                    "included"
                } else {
                    "left out"
                }
            ),
            versus(o.gops_per_s, q.gops_per_s),
            s_s,
            format!("{:.1}", o.executed_gops_per_s),
            versus(ours_j, q.gops_per_j),
            s_j,
            format!("{:.1} / {:.1}", o.gops_per_j, o.gops_per_j_without_memory),
        ]);
    }
    for q in &c.not_modelled {
        t.add_row(vec![
            format!("{} (not modelled)", q.design),
            format!(
                "{} nm, {} + {} KB",
                q.process_nm, q.key_buffer_kb, q.value_buffer_kb
            ),
            format!("- / {:.1}", q.gops_per_s),
            "-".into(),
            "-".into(),
            format!("- / {:.1}", q.gops_per_j),
            "-".into(),
            "-".into(),
        ]);
    }
    let _ = writeln!(out, "{t}");
    for w in &c.own_workload {
        let _ = writeln!(
            out,
            "{}, its own workload: {}",
            w.row.published.design, w.workload
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Table III's rows are read from the results file, LeOPArd's as published.
    #[test]
    fn table3_rows_are_read_from_the_results_file() {
        let rows = table3_rows().unwrap();
        let l = rows.iter().find(|r| r.design == "LeOPArd").unwrap();
        assert_eq!((l.gops_per_s, l.gops_per_j), (574.1, 519.3));
        assert_eq!(
            (l.process_nm, l.key_buffer_kb, l.value_buffer_kb),
            (65.0, 48.0, 64.0)
        );
        assert!(!l.memory_cost_included);
        assert_eq!(rows.len(), 4);
        // Every Table III row has a model at its published configuration.
        for r in &rows {
            assert!(
                PUBLISHED_DESIGNS.iter().any(|(_, t)| *t == r.design),
                "{}",
                r.design
            );
        }
    }
}
