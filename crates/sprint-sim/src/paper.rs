//! The paper's published numbers (embedded `configs/paper-results.toml`, CC BY 4.0, credit
//! to Yazdanbakhsh et al.) and the side-by-side comparison with our simulation.
//!
//! Means: speedups and energy reductions are compared as geometric means over the eight
//! workloads (Fig 11 prints geomeans). The abstract's 19.6x energy reduction is neither the
//! geomean (16.9x) nor the arithmetic mean (20.7x) of Fig 12a's eight bars; we compare
//! geomean to geomean and print both paper means. Data-movement reductions are percentages
//! compared with Fig 10's arithmetic "Average".

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use toml::{Table, Value};

use crate::calibration::Calibration;
use crate::config::Design;
use crate::energy::EnergyTable;
use crate::error::{Result, SimError};
use crate::presets::load_design;
use crate::report::{DesignReport, build};
use crate::run::{ModelJob, run_models_with_progress};
use crate::stats::HeadStats;
use crate::workload::{model_workload, workload_names};
use crate::wstats::StatsFile;

/// The embedded paper results.
pub const PAPER_RESULTS: &str = include_str!("../configs/paper-results.toml");

/// Sizes S, M, L.
pub const SIZES: [&str; 3] = ["S", "M", "L"];

/// One model's published numbers.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PaperModel {
    /// Fig 11 speedup for S, M, L.
    pub speedup: [f64; 3],
    /// Fig 12a energy reduction: [pruning only, SPRINT].
    pub energy_reduction: [f64; 2],
    /// Fig 10 data-movement reduction %, per size: [mask only, SPRINT].
    pub data_movement_pct: [[f64; 2]; 3],
}

/// The published numbers used in the comparison.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PaperResults {
    /// Per model, in the paper's order.
    pub models: Vec<(String, PaperModel)>,
    /// Fig 11 printed geomeans, S/M/L.
    pub speedup_geomean: [f64; 3],
    /// Fig 10 "Average" per size: [mask only, SPRINT].
    pub data_movement_average_pct: [[f64; 2]; 3],
    /// The abstract's energy reduction.
    pub energy_headline: f64,
    /// Fig 12a Baseline bars: [ReRAM read, ReRAM write] share of the energy, percent, for
    /// the models whose bar is read as reliable.
    pub baseline_shares: Vec<(String, [f64; 2])>,
    /// Table III, M-SPRINT: [GOPs/s, GOPs/J].
    pub table3_m_sprint: [f64; 2],
}

fn bad(what: &str) -> SimError {
    SimError::config("paper-results.toml", format!("missing or malformed {what}"))
}

fn nums(v: Option<&Value>, n: usize, what: &str) -> Result<Vec<f64>> {
    let a = v.and_then(Value::as_array).ok_or_else(|| bad(what))?;
    let out: Vec<f64> = a
        .iter()
        .filter_map(|x| x.as_float().or_else(|| x.as_integer().map(|i| i as f64)))
        .collect();
    if out.len() != n {
        return Err(bad(what));
    }
    Ok(out)
}

impl PaperResults {
    /// Parses the embedded file.
    pub fn load() -> Result<Self> {
        let t: Table = PAPER_RESULTS
            .parse()
            .map_err(|e: toml::de::Error| SimError::config("paper-results.toml", e.to_string()))?;
        let sec = |k: &str| t.get(k).and_then(Value::as_table).ok_or_else(|| bad(k));
        let sp = sec("speedup")?;
        let er = sec("energy_reduction")?;
        let dm = sec("data_movement_reduction_pct")?;
        let mut models = Vec::new();
        for name in workload_names() {
            let s = nums(sp.get(name), 3, &format!("speedup.{name}"))?;
            let e = nums(er.get(name), 2, &format!("energy_reduction.{name}"))?;
            let mut d = [[0.0; 2]; 3];
            for (i, size) in SIZES.iter().enumerate() {
                let row = dm
                    .get(*size)
                    .and_then(Value::as_table)
                    .ok_or_else(|| bad(size))?;
                let v = nums(row.get(name), 2, &format!("data_movement.{size}.{name}"))?;
                d[i] = [v[0], v[1]];
            }
            models.push((
                name.to_string(),
                PaperModel {
                    speedup: [s[0], s[1], s[2]],
                    energy_reduction: [e[0], e[1]],
                    data_movement_pct: d,
                },
            ));
        }
        let g = sp
            .get("geomean")
            .and_then(Value::as_table)
            .ok_or_else(|| bad("speedup.geomean"))?;
        let mut speedup_geomean = [0.0; 3];
        for (i, size) in SIZES.iter().enumerate() {
            speedup_geomean[i] = g
                .get(*size)
                .and_then(Value::as_float)
                .ok_or_else(|| bad("geomean"))?;
        }
        let mut avg = [[0.0; 2]; 3];
        for (i, size) in SIZES.iter().enumerate() {
            let row = dm
                .get(*size)
                .and_then(Value::as_table)
                .ok_or_else(|| bad(size))?;
            let v = nums(row.get("Average"), 2, "data_movement Average")?;
            avg[i] = [v[0], v[1]];
        }
        let energy_headline = t
            .get("headline")
            .and_then(|h| h.get("energy_reduction_mean"))
            .and_then(Value::as_float)
            .ok_or_else(|| bad("headline.energy_reduction_mean"))?;
        let sh = sec("energy_share_baseline")?;
        let mut baseline_shares = Vec::new();
        for name in workload_names() {
            if let Some(v) = sh.get(name) {
                let v = nums(Some(v), 2, &format!("energy_share_baseline.{name}"))?;
                baseline_shares.push((name.to_string(), [v[0], v[1]]));
            }
        }
        let m = sec("table3")?
            .get("M-SPRINT")
            .and_then(Value::as_table)
            .ok_or_else(|| bad("table3.M-SPRINT"))?;
        let num = |k: &str| {
            m.get(k)
                .and_then(|x| x.as_float().or_else(|| x.as_integer().map(|i| i as f64)))
                .ok_or_else(|| bad(&format!("table3.M-SPRINT.{k}")))
        };
        let table3_m_sprint = [num("gops_per_s")?, num("gops_per_j")?];
        Ok(Self {
            models,
            speedup_geomean,
            data_movement_average_pct: avg,
            energy_headline,
            baseline_shares,
            table3_m_sprint,
        })
    }
}

/// Our numbers for one model.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OurModel {
    /// Speedup of SPRINT over the same-size baseline, S/M/L.
    pub speedup: [f64; 3],
    /// Energy reduction over S-Baseline: [Pruning, S-SPRINT].
    pub energy_reduction: [f64; 2],
    /// Data-movement reduction % over S-Baseline, per size: [Mask only, SPRINT].
    pub data_movement_pct: [[f64; 2]; 3],
    /// Dense-equivalent GOPs/J of M-SPRINT.
    pub m_sprint_gops_per_j: f64,
    /// Dense-equivalent GOPs/s of M-SPRINT.
    pub m_sprint_gops_per_s: f64,
}

/// The full comparison.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Comparison {
    /// Paper numbers.
    pub paper: PaperResults,
    /// Ours, same order as `paper.models`.
    pub ours: Vec<(String, OurModel)>,
    /// Energy table used.
    pub energy_table: String,
    /// Statistics source used for the synthetic kept sets.
    pub stats_source: String,
    /// Calibration applied (`sourced-default` or `paper-inferred`).
    pub calibration: String,
}

/// Geometric mean (0 for an empty list or a non-positive entry).
pub fn geomean(xs: &[f64]) -> f64 {
    if xs.is_empty() || xs.iter().any(|&x| x <= 0.0 || !x.is_finite()) {
        return 0.0;
    }
    (xs.iter().map(|x| x.ln()).sum::<f64>() / xs.len() as f64).exp()
}

/// Arithmetic mean.
pub fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        0.0
    } else {
        xs.iter().sum::<f64>() / xs.len() as f64
    }
}

/// The designs of the comparison: S/M/L baselines, S/M/L SPRINT, Pruning, Mask only S/M/L.
pub fn comparison_designs(sets: &[String]) -> Result<Vec<Design>> {
    comparison_designs_with(sets, &Calibration::sourced_default())
}

/// [`comparison_designs`] with a calibration's overrides on top of `sets`.
pub fn comparison_designs_with(sets: &[String], cal: &Calibration) -> Result<Vec<Design>> {
    let with = |key: &str, extra: &[&str]| -> Result<Design> {
        let mut s = sets.to_vec();
        s.extend(cal.design_sets(key));
        s.extend(extra.iter().map(|x| x.to_string()));
        load_design(key, &s)
    };
    let mut ds = Vec::new();
    for k in [
        "s-baseline",
        "m-baseline",
        "l-baseline",
        "s-sprint",
        "m-sprint",
        "l-sprint",
        "pruning",
        "mask-only",
    ] {
        ds.push(with(k, &[])?);
    }
    for k in ["m-baseline", "l-baseline"] {
        let mut d = with(k, &["design.skip_padding=true", "design.causal_aware=true"])?;
        d.key = format!("mask-only ({k} hardware)");
        d.file.name = format!("Mask only {}", &k[..1].to_uppercase());
        ds.push(d);
    }
    Ok(ds)
}

/// Marks the designs of [`comparison_designs`] whose time the comparison never reads as
/// traffic-only (Pruning and the three Mask-only designs: [`our_model`] takes only their
/// Fig 12a energy, which has no time-dependent part, and their bytes moved), so they skip
/// the memory and core timing; every number of the comparison stays the same.
pub fn skip_unused_timing(designs: &mut [Design]) {
    for d in designs.iter_mut().skip(6) {
        d.traffic_only = true;
    }
}

/// Our numbers of one model from the reports of [`comparison_designs`] (first = S-Baseline).
pub fn our_model(r: &[DesignReport]) -> OurModel {
    let cyc = |i: usize| r[i].totals.cycles as f64;
    // Fig 12a has no leakage category: its ratio is of the categories it shows.
    let en = |i: usize| r[i].energy.fig12a_total();
    let dm = |i: usize| r[i].data_movement_reduction_pct;
    OurModel {
        speedup: [cyc(0) / cyc(3), cyc(1) / cyc(4), cyc(2) / cyc(5)],
        energy_reduction: [en(0) / en(6), en(0) / en(3)],
        data_movement_pct: [[dm(7), dm(3)], [dm(8), dm(4)], [dm(9), dm(5)]],
        m_sprint_gops_per_j: r[4].gops_per_j,
        m_sprint_gops_per_s: r[4].gops_per_s,
    }
}

/// Every paper workload under the comparison designs with calibration `cal` (on the
/// caller's rayon pool, all workloads as one parallel run): the comparison and every
/// design's report per model (same order as `paper.models`; designs in the order of
/// [`comparison_designs`]), for energy by component.
pub fn compare_with_reports(
    sets: &[String],
    table: &EnergyTable,
    stats: &StatsFile,
    cal: &Calibration,
) -> Result<(Comparison, Vec<Vec<DesignReport>>)> {
    let mut all =
        compare_many_with_reports(sets, table, stats, std::slice::from_ref(cal), |_, _| {})?;
    Ok(all.remove(0))
}

/// Whether two designs simulate identically: equal in everything but their key and the
/// provenance file (names and sources do not enter the simulation).
pub fn same_simulation(a: &Design, b: &Design) -> bool {
    let mut b2 = b.clone();
    b2.key.clone_from(&a.key);
    b2.file.clone_from(&a.file);
    *a == b2
}

/// The comparison for several calibrations at once: every paper workload under every
/// calibration's designs, simulated as one parallel run
/// ([`run_models_with_progress`]) in which a (workload, design) pair that two
/// calibrations share (same workload after the calibration, [`same_simulation`] designs)
/// is simulated once. `progress(heads done, heads total)` is called from the worker
/// threads as heads finish. One comparison per calibration, in order.
pub fn compare_many(
    sets: &[String],
    table: &EnergyTable,
    stats: &StatsFile,
    cals: &[Calibration],
    progress: impl Fn(usize, usize) + Sync,
) -> Result<Vec<Comparison>> {
    Ok(
        compare_many_with_reports(sets, table, stats, cals, progress)?
            .into_iter()
            .map(|(c, _)| c)
            .collect(),
    )
}

/// [`compare_many`], also returning every design's report per model for each calibration
/// (as [`compare_with_reports`]).
pub fn compare_many_with_reports(
    sets: &[String],
    table: &EnergyTable,
    stats: &StatsFile,
    cals: &[Calibration],
    progress: impl Fn(usize, usize) + Sync,
) -> Result<Vec<(Comparison, Vec<Vec<DesignReport>>)>> {
    let paper = PaperResults::load()?;
    let designs: Vec<Vec<Design>> = cals
        .iter()
        .map(|c| {
            let mut ds = comparison_designs_with(sets, c)?;
            skip_unused_timing(&mut ds);
            Ok(ds)
        })
        .collect::<Result<_>>()?;
    // Distinct (workload, statistics) units and their distinct designs; `slot[c][m][i]` is
    // (unit, design in the unit) of design `i` of calibration `c` on model `m`.
    struct Unit {
        workload: crate::workload::ModelWorkload,
        stats: crate::wstats::WorkloadStats,
        designs: Vec<Design>,
    }
    let mut units: Vec<Unit> = Vec::new();
    let mut slot = vec![Vec::new(); cals.len()];
    for (name, _) in &paper.models {
        let st = stats.resolve(name);
        for (c, cal) in cals.iter().enumerate() {
            let mut w = model_workload(name)?;
            cal.apply_workload(&mut w);
            let u = match units.iter().position(|u| u.workload == w && u.stats == st) {
                Some(u) => u,
                None => {
                    units.push(Unit {
                        workload: w,
                        stats: st.clone(),
                        designs: Vec::new(),
                    });
                    units.len() - 1
                }
            };
            let mut at = Vec::new();
            for d in &designs[c] {
                let ds = &mut units[u].designs;
                let k = match ds.iter().position(|x| same_simulation(x, d)) {
                    Some(k) => k,
                    None => {
                        ds.push(d.clone());
                        ds.len() - 1
                    }
                };
                at.push((u, k));
            }
            slot[c].push(at);
        }
    }
    let jobs: Vec<ModelJob<'_>> = units
        .iter()
        .map(|u| ModelJob {
            designs: &u.designs,
            workload: &u.workload,
            stats: &u.stats,
        })
        .collect();
    let totals = run_models_with_progress(&jobs, progress)?;
    let mut out = Vec::new();
    for (c, cal) in cals.iter().enumerate() {
        let mut ours = Vec::new();
        let mut all = Vec::new();
        let mut sources = BTreeMap::new();
        for ((name, _), at) in paper.models.iter().zip(&slot[c]) {
            let t: Vec<HeadStats> = at.iter().map(|&(u, k)| totals[u][k]).collect();
            sources.insert(units[at[0].0].stats.source.clone(), ());
            let reports = build(&designs[c], table, &t)?;
            ours.push((name.clone(), our_model(&reports)));
            all.push(reports);
        }
        let comparison = Comparison {
            paper: paper.clone(),
            ours,
            energy_table: table.name().to_string(),
            stats_source: sources.into_keys().collect::<Vec<_>>().join("; "),
            calibration: cal.name.clone(),
        };
        out.push((comparison, all));
    }
    Ok(out)
}

/// Headline numbers of one comparison: what `--compare-paper` prints side by side.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Summary {
    /// Geomean Fig 11 speedup, S/M/L.
    pub speedup_geomean: [f64; 3],
    /// Geomean Fig 12a S-SPRINT energy reduction.
    pub energy_geomean: f64,
    /// Mean absolute Fig 10 error over the 48 cells, percentage points.
    pub fig10_mae_pp: f64,
    /// Mean `|ln(ours / paper)|` over the 24 Fig 11 cells (models x sizes).
    pub fig11_mean_abs_ln: f64,
    /// Worst per-model speedup cell: (model, size, ours / paper), worst = farthest from 1
    /// in ratio.
    pub worst_speedup_cell: (String, String, f64),
    /// Table III M-SPRINT geomean GOPs/s and GOPs/J over the workloads.
    pub m_sprint_gops: [f64; 2],
}

impl Comparison {
    /// The headline numbers of this comparison.
    pub fn summary(&self) -> Summary {
        let mut sg = [0.0; 3];
        for (s, g) in sg.iter_mut().enumerate() {
            let v: Vec<f64> = self.ours.iter().map(|(_, o)| o.speedup[s]).collect();
            *g = geomean(&v);
        }
        let e: Vec<f64> = self
            .ours
            .iter()
            .map(|(_, o)| o.energy_reduction[1])
            .collect();
        let mut err = Vec::new();
        let mut ln_err = Vec::new();
        let mut worst = (String::new(), String::new(), 1.0f64);
        for ((name, o), (_, p)) in self.ours.iter().zip(&self.paper.models) {
            for (s, size) in SIZES.iter().enumerate() {
                for (ok, pk) in o.data_movement_pct[s].iter().zip(&p.data_movement_pct[s]) {
                    err.push((ok - pk).abs());
                }
                let r = o.speedup[s] / p.speedup[s];
                ln_err.push(r.ln().abs());
                if r.ln().abs() > worst.2.ln().abs() {
                    worst = (name.clone(), size.to_string(), r);
                }
            }
        }
        let gs: Vec<f64> = self
            .ours
            .iter()
            .map(|(_, o)| o.m_sprint_gops_per_s)
            .collect();
        let gj: Vec<f64> = self
            .ours
            .iter()
            .map(|(_, o)| o.m_sprint_gops_per_j)
            .collect();
        Summary {
            speedup_geomean: sg,
            energy_geomean: geomean(&e),
            fig10_mae_pp: mean(&err),
            fig11_mean_abs_ln: mean(&ln_err),
            worst_speedup_cell: worst,
            m_sprint_gops: [geomean(&gs), geomean(&gj)],
        }
    }
}
