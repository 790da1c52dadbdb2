//! The simulator sections: data movement (Fig 10), speedup (Fig 11), energy (Fig 12a) on
//! the paper's model shapes in both configurations, and the simulator on real traces.

use sprint_report::plot::{BarSeries, Bars, Stacked};
use sprint_report::{Cell, Column, Plot, Section, Table};
use sprint_sim::paper::PaperResults;

use super::paper::{paper_results, ratio};
use crate::error::Result;
use crate::results::{Results, SimPaperResult};

/// The buffer sizes of the paper's designs.
const SIZES: [&str; 3] = ["S", "M", "L"];

/// The simulator's sections, in order: data movement, speedup, energy, real traces.
pub(super) fn sim_sections(r: &Results) -> Result<Vec<Section>> {
    let paper = paper_results()?;
    let models: Vec<String> = paper.models.iter().map(|(n, _)| n.clone()).collect();

    let mut dm = Section::new("data-movement", "Data movement (Fig 10)");
    dm.paragraph("Reduction of the K and V bytes moved from ReRAM against S-Baseline, per model and buffer size, for Mask only (skip padding) and SPRINT. The paper's values are read off Fig 10.");
    let mut sp = Section::new("speedup", "Speedup (Fig 11)");
    sp.paragraph("Self-attention time of SPRINT against the same-size baseline (S: 16 KB, M, L), on the paper's model shapes with kept sets drawn from statistics measured on real traces.");
    let mut en = Section::new("energy", "Energy (Fig 12a)");
    en.paragraph("Energy reduction over S-Baseline of Pruning only and S-SPRINT (Fig 12a's categories; on-chip leakage, which Fig 12a does not show, excluded), and our energy by component normalised to each model's S-Baseline.");
    for s in &r.sim_paper {
        dm.table(fig10_table(s, &paper));
        sp.table(fig11_table(s, &paper));
        sp.plot(fig11_plot(s, &paper, &models));
        en.table(fig12a_table(s, &paper));
    }
    dm.plot(fig10_plot(r, &paper, &models));
    // The stacked energy and the baseline's shares of the sourced default.
    if let Some(s) = r.sim_paper.first() {
        en.plot(fig12a_components_plot(s));
        en.table(baseline_shares_table(s, &paper));
    }
    Ok(vec![dm, sp, en, traces_section(r)])
}

/// Fig 10's table of one configuration: the data-movement reduction against S-Baseline per
/// model and size, Mask only and SPRINT, ours and the paper's.
fn fig10_table(s: &SimPaperResult, paper: &PaperResults) -> Table {
    let mut t = Table::new(
        &format!("fig10-data-movement-{}", s.calibration),
        &format!(
            "Data-movement reduction vs S-Baseline, {} (ours / paper)",
            s.calibration
        ),
        std::iter::once(Column::text("model"))
            .chain(SIZES.iter().flat_map(|z| {
                [
                    Column::unit(&format!("{z} mask only ours"), "%"),
                    Column::unit(&format!("{z} mask only paper"), "%"),
                    Column::unit(&format!("{z} SPRINT ours"), "%"),
                    Column::unit(&format!("{z} SPRINT paper"), "%"),
                ]
            }))
            .collect(),
    );
    for ((m, o), (_, p)) in s.ours.iter().zip(&paper.models) {
        let mut row = vec![Cell::text(m)];
        for z in 0..3 {
            for k in 0..2 {
                row.push(Cell::num(o.data_movement_pct[z][k], 1));
                row.push(Cell::num(p.data_movement_pct[z][k], 1));
            }
        }
        // Order: mask ours, mask paper, sprint ours, sprint paper per size.
        t.push(row);
    }
    t
}

/// Fig 11's table of one configuration: the speedup over the same-size baseline per model
/// and size, ours, the paper's and their ratio.
fn fig11_table(s: &SimPaperResult, paper: &PaperResults) -> Table {
    let mut t = Table::new(
        &format!("fig11-speedup-{}", s.calibration),
        &format!("Speedup over the same-size baseline, {}", s.calibration),
        std::iter::once(Column::text("model"))
            .chain(SIZES.iter().flat_map(|z| {
                [
                    Column::unit(&format!("{z} ours"), "x"),
                    Column::unit(&format!("{z} paper"), "x"),
                    Column::unit(&format!("{z} ours / paper"), "ratio"),
                ]
            }))
            .collect(),
    );
    for ((m, o), (_, p)) in s.ours.iter().zip(&paper.models) {
        let mut row = vec![Cell::text(m)];
        for z in 0..3 {
            row.push(Cell::num(o.speedup[z], 2));
            row.push(Cell::num(p.speedup[z], 2));
            row.push(Cell::opt(ratio(o.speedup[z], p.speedup[z]), 2));
        }
        t.push(row);
    }
    t
}

/// Fig 11's bars of one configuration: the speedup per model and size, ours and the paper's.
fn fig11_plot(s: &SimPaperResult, paper: &PaperResults, models: &[String]) -> Plot {
    let mut series: Vec<BarSeries> = (0..3)
        .map(|z| BarSeries {
            name: format!("ours {}", SIZES[z]),
            values: s.ours.iter().map(|(_, o)| Some(o.speedup[z])).collect(),
            paper: false,
        })
        .collect();
    series.extend((0..3).map(|z| {
        BarSeries {
            name: format!("paper {}", SIZES[z]),
            values: paper
                .models
                .iter()
                .map(|(_, p)| Some(p.speedup[z]))
                .collect(),
            paper: true,
        }
    }));
    Plot::Bars(Bars {
        id: format!("fig11-speedup-{}", s.calibration),
        title: format!(
            "Speedup over the same-size baseline (Fig 11), {}",
            s.calibration
        ),
        x_label: "workload".into(),
        y_label: "speedup (x)".into(),
        categories: models.to_vec(),
        series,
    })
}

/// Fig 12a's table of one configuration: the energy reduction over S-Baseline of Pruning
/// only and S-SPRINT, ours and the paper's.
fn fig12a_table(s: &SimPaperResult, paper: &PaperResults) -> Table {
    let mut t = Table::new(
        &format!("fig12a-energy-{}", s.calibration),
        &format!("Energy reduction over S-Baseline, {}", s.calibration),
        vec![
            Column::text("model"),
            Column::unit("Pruning only ours", "x"),
            Column::unit("Pruning only paper", "x"),
            Column::unit("S-SPRINT ours", "x"),
            Column::unit("S-SPRINT paper", "x"),
            Column::unit("S-SPRINT ours / paper", "ratio"),
        ],
    );
    for ((m, o), (_, p)) in s.ours.iter().zip(&paper.models) {
        t.push(vec![
            Cell::text(m),
            Cell::num(o.energy_reduction[0], 2),
            Cell::num(p.energy_reduction[0], 2),
            Cell::num(o.energy_reduction[1], 2),
            Cell::num(p.energy_reduction[1], 2),
            Cell::opt(ratio(o.energy_reduction[1], p.energy_reduction[1]), 2),
        ]);
    }
    t
}

/// Fig 10's bars: SPRINT's data-movement reduction at S, both configurations against the
/// paper.
fn fig10_plot(r: &Results, paper: &PaperResults, models: &[String]) -> Plot {
    let mut series: Vec<BarSeries> = r
        .sim_paper
        .iter()
        .map(|s| BarSeries {
            name: format!("ours, {}", s.calibration),
            values: s
                .ours
                .iter()
                .map(|(_, o)| Some(o.data_movement_pct[0][1]))
                .collect(),
            paper: false,
        })
        .collect();
    series.push(BarSeries {
        name: "paper".into(),
        values: paper
            .models
            .iter()
            .map(|(_, p)| Some(p.data_movement_pct[0][1]))
            .collect(),
        paper: true,
    });
    Plot::Bars(Bars {
        id: "fig10-data-movement".into(),
        title: "SPRINT's data-movement reduction at S (Fig 10)".into(),
        x_label: "workload".into(),
        y_label: "K and V bytes saved vs S-Baseline (%)".into(),
        categories: models.to_vec(),
        series,
    })
}

/// Fig 12a's energy by component of one configuration, normalised to each model's
/// S-Baseline (on-chip leakage left out, as in Fig 12a).
fn fig12a_components_plot(s: &SimPaperResult) -> Plot {
    let mut cats = Vec::new();
    let mut parts: Vec<(String, Vec<f64>)> = Vec::new();
    for (m, designs) in &s.fig12a {
        let base = designs
            .first()
            .map_or(1.0, |d| d.fig12a_energy_pj.max(1e-30));
        // Three bars per workload (S-Baseline, Pruning only, S-SPRINT), named once.
        for (k, d) in designs.iter().enumerate() {
            cats.push(if k == 1 { m.clone() } else { String::new() });
            for (k, v) in &d.energy_pj {
                if k == "onchip_leakage" {
                    continue;
                }
                let i = match parts.iter().position(|(n, _)| n == k) {
                    Some(i) => i,
                    None => {
                        parts.push((k.clone(), Vec::new()));
                        parts.len() - 1
                    }
                };
                let col = &mut parts[i].1;
                col.resize(cats.len() - 1, 0.0);
                col.push(100.0 * v / base);
            }
        }
    }
    for (_, col) in &mut parts {
        col.resize(cats.len(), 0.0);
    }
    parts.retain(|(_, v)| v.iter().any(|&x| x > 0.05));
    Plot::Stacked(Stacked {
        id: "fig12a-energy-components".into(),
        title: format!(
            "Energy by component, normalised to S-Baseline (Fig 12a), {}",
            s.calibration
        ),
        x_label: "workload and design".into(),
        y_label: "energy (% of the model's S-Baseline)".into(),
        categories: cats,
        components: parts,
    })
}

/// S-Baseline's ReRAM read and write shares of energy per model, ours against Fig 12a's.
fn baseline_shares_table(s: &SimPaperResult, paper: &PaperResults) -> Table {
    let mut t = Table::new(
        "fig12a-baseline-shares",
        "S-Baseline's ReRAM read and write shares of energy: ours against Fig 12a",
        vec![
            Column::text("model"),
            Column::unit("ReRAM read ours", "%"),
            Column::unit("ReRAM read paper", "%"),
            Column::unit("ReRAM write ours", "%"),
            Column::unit("ReRAM write paper", "%"),
        ],
    );
    for (m, shares) in &paper.baseline_shares {
        if let Some((_, d)) = s.fig12a.iter().find(|(n, _)| n == m)
            && let Some(b) = d.first()
        {
            let part = |k: &str| {
                b.energy_pj
                    .iter()
                    .find(|(n, _)| n == k)
                    .map_or(0.0, |x| x.1)
                    / b.fig12a_energy_pj.max(1e-30)
            };
            t.push(vec![
                Cell::text(m),
                Cell::num(100.0 * part("reram_read"), 1),
                Cell::num(shares[0], 1),
                Cell::num(100.0 * part("reram_write"), 1),
                Cell::num(shares[1], 1),
            ]);
        }
    }
    t
}

/// The simulator on the real traces of the accuracy runs: SPRINT against the same-size
/// baseline per trace and size.
fn traces_section(r: &Results) -> Section {
    let mut tr = Section::new("traces", "The simulator on real traces");
    tr.paragraph("The SPRINT traces of the first evaluated sequence of each accuracy run (real kept sets and locality counts), and of one SmolLM2 window at GPT-2-L's 1024 tokens where the accuracy run's windows are shorter (at that run's calibrated thresholds), replayed on S, M and L: SPRINT against the same-size baseline (query-tiled: half of each buffer resident, the rest streamed once per block of 5 queries). Where a head's K and V fit the buffer (short sequences, larger buffers), the baseline fetches each key once and SPRINT, whose residency table keeps fetched keys while they fit, fetches at most as much; on longer sequences the baseline re-streams what does not stay resident once per block of queries while SPRINT fetches only the kept keys that are not on chip.");
    let mut t = Table::new(
        "traces",
        "SPRINT against the same-size baseline on real traces",
        vec![
            Column::text("trace"),
            Column::text("size"),
            Column::unit("speedup", "x"),
            Column::unit("energy reduction", "x"),
            Column::unit("K and V bytes saved", "%"),
        ],
    );
    let mut cats = Vec::new();
    let mut speed = Vec::new();
    let mut energy = Vec::new();
    for x in &r.traces {
        for (z, size) in SIZES.iter().enumerate() {
            let (Some(b), Some(s)) = (x.designs.get(2 * z), x.designs.get(2 * z + 1)) else {
                continue;
            };
            let sp_ = b.cycles as f64 / s.cycles.max(1) as f64;
            let en_ = b.energy_total_pj / s.energy_total_pj.max(1e-30);
            let saved = if b.kv_bytes > 0 {
                100.0 * (1.0 - s.kv_bytes as f64 / b.kv_bytes as f64)
            } else {
                0.0
            };
            t.push(vec![
                Cell::text(&x.label),
                Cell::text(*size),
                Cell::num(sp_, 2),
                Cell::num(en_, 2),
                Cell::num(saved, 1),
            ]);
            let short = x.label.split(':').next().unwrap_or_default();
            let short = short.split(" (").next().unwrap_or(short);
            cats.push(format!("{short} {size}"));
            speed.push(Some(sp_));
            energy.push(Some(en_));
        }
    }
    tr.table(t);
    if !cats.is_empty() {
        tr.plot(Plot::Bars(Bars {
            id: "traces-speedup-energy".into(),
            title: "SPRINT on real traces: speedup and energy reduction".into(),
            x_label: "trace and size".into(),
            y_label: "ratio over the same-size baseline (x)".into(),
            categories: cats,
            series: vec![
                BarSeries {
                    name: "speedup".into(),
                    values: speed,
                    paper: false,
                },
                BarSeries {
                    name: "energy reduction".into(),
                    values: energy,
                    paper: false,
                },
            ],
        }));
    }
    tr
}
