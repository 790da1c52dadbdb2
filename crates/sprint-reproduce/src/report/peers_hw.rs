//! The section "SPRINT and its peers: hardware": the iso table (every design at one
//! technology, one memory and SPRINT's 16 + 16 KB, memory cost included), each design at its
//! published configuration beside its Table III row (a 40 nm row also carried to 65 nm), and
//! energy per op against throughput for every design.

use sprint_report::plot::{Line, Lines};
use sprint_report::{Cell, Column, Plot, Section, Table};
use sprint_sim::peers::{MODEL_PROCESS_NM, PeerComparison, PublishedRow};

use crate::error::Result;

/// Energy per dense-equivalent op from GOPs/J, pJ.
fn pj_per_op(gops_per_j: f64) -> f64 {
    if gops_per_j > 0.0 {
        1000.0 / gops_per_j
    } else {
        f64::NAN
    }
}

/// The iso table: one row per design.
fn iso_table(c: &PeerComparison) -> Table {
    let mut t = Table::new(
        "peers-iso",
        "Every design at 65 nm, on the same ReRAM main memory and energy tables, at SPRINT's 16 KB K + 16 KB V (S-Baseline 8 + 8 KB), memory cost included; geomean over the paper's 8 workloads",
        vec![
            Column::text("design"),
            Column::unit("throughput", "GOPs/s"),
            Column::unit("energy efficiency", "GOPs/J"),
            Column::unit("energy per op", "pJ"),
            Column::unit("speedup vs S-Baseline", "x"),
            Column::unit("energy reduction vs S-Baseline", "x"),
            Column::unit("data-movement reduction", "%"),
        ],
    );
    for r in &c.iso {
        t.push(vec![
            Cell::text(&r.name),
            Cell::num(r.gops_per_s, 1),
            Cell::num(r.gops_per_j, 1),
            Cell::num(pj_per_op(r.gops_per_j), 3),
            Cell::num(r.speedup, 2),
            Cell::num(r.energy_reduction, 2),
            Cell::num(r.data_movement_reduction_pct, 1),
        ]);
    }
    t.note(format!(
        "Energy table `{}`; kept sets: {}. Every design is given the same kept sets (SPRINT's keep rates), so the table isolates the dataflows: the accuracy each peer reaches at that sparsity is its own (docs/peers.md). Ops are dense-equivalent: 4 d per padded (query, key) pair.",
        c.energy_table, c.stats_source
    ));
    t
}

/// The published table: ours beside each Table III row, and beside the row carried to our
/// node when it is at another.
fn published_table(c: &PeerComparison) -> Table {
    let mut t = Table::new(
        "peers-published",
        "Each design at its published configuration beside its Table III row",
        vec![
            Column::text("design"),
            Column::unit("node", "nm"),
            Column::text("K + V buffer"),
            Column::text("memory in the published energy"),
            Column::unit("ours", "GOPs/s"),
            Column::unit("published", "GOPs/s"),
            Column::unit("ours / published", "x"),
            Column::unit("ours / published at 65 nm", "x"),
            Column::unit("ours, executed ops", "GOPs/s"),
            Column::unit("ours (memory as published)", "GOPs/J"),
            Column::unit("published", "GOPs/J"),
            Column::unit("ours / published", "x"),
            Column::unit("ours / published at 65 nm", "x"),
        ],
    );
    for p in &c.published {
        t.push(published_cells(&p.published.design, p));
    }
    for w in &c.own_workload {
        let label = format!("{}, its own workload", w.row.published.design);
        t.push(published_cells(&label, &w.row));
    }
    t.note(format!("A row at another node than our model's {MODEL_PROCESS_NM} nm is also compared with its published numbers carried to {MODEL_PROCESS_NM} nm by configs/process/scaling.toml (Dennard's rule with the nodes' supplies: throughput / 1.625, GOPs/J / 2.006 from 40 nm). Executed ops: 2 per multiply-accumulate the design performs (low-bit ones as fractions). Every difference is explained in docs/simulator.md \"The peers as designs\"."));
    for w in &c.own_workload {
        t.note(format!(
            "{}, its own workload: {}. Table III's number was measured on the design's own workloads; on the paper's encoder workloads (the row above) the same design is compute-bound on pruned, padded heads, so its dense-equivalent throughput there is not comparable with the published one. Its throughput is at the published clock, so the like-for-like ratio is the one to the published row; its energy is on our {MODEL_PROCESS_NM} nm tables, so the like-for-like ratio is the one at {MODEL_PROCESS_NM} nm.",
            w.row.published.design, w.workload
        ));
    }
    t
}

/// One row of [`published_table`], named `label`.
fn published_cells(label: &str, p: &PublishedRow) -> Vec<Cell> {
    let (o, q) = (&p.ours, &p.published);
    let ours_j = if q.memory_cost_included {
        o.gops_per_j
    } else {
        o.gops_per_j_without_memory
    };
    let at_node = |ours: f64, theirs: Option<f64>| Cell::opt(theirs.map(|x| ours / x), 2);
    vec![
        Cell::text(label),
        Cell::num(q.process_nm, 0),
        Cell::text(format!("{} + {} KB", q.key_buffer_kb, q.value_buffer_kb)),
        Cell::text(if q.memory_cost_included {
            "included"
        } else {
            "left out"
        }),
        Cell::num(o.gops_per_s, 1),
        Cell::num(q.gops_per_s, 1),
        Cell::num(o.gops_per_s / q.gops_per_s, 2),
        at_node(o.gops_per_s, p.scaled.map(|f| f.gops_per_s(q.gops_per_s))),
        Cell::num(o.executed_gops_per_s, 1),
        Cell::num(ours_j, 1),
        Cell::num(q.gops_per_j, 1),
        Cell::num(ours_j / q.gops_per_j, 2),
        at_node(ours_j, p.scaled.map(|f| f.gops_per_j(q.gops_per_j))),
    ]
}

/// Energy per op against throughput: one point per design of the iso table, and the
/// published rows (lighter) at their own configurations.
fn plot(c: &PeerComparison) -> Plot {
    let mut lines: Vec<Line> = c
        .iso
        .iter()
        .map(|r| Line {
            name: format!("{} (iso, ours)", r.name),
            points: vec![(r.gops_per_s, pj_per_op(r.gops_per_j))],
            paper: false,
            errors: Vec::new(),
        })
        .collect();
    lines.extend(c.published.iter().map(|p| Line {
        name: format!(
            "{} (Table III, {} nm, memory {})",
            p.published.design,
            p.published.process_nm,
            if p.published.memory_cost_included {
                "included"
            } else {
                "left out"
            }
        ),
        points: vec![(p.published.gops_per_s, pj_per_op(p.published.gops_per_j))],
        paper: true,
        errors: Vec::new(),
    }));
    Plot::Lines(Lines {
        id: "peers-energy-vs-throughput".into(),
        title: "SPRINT and its peers: energy per op against throughput (iso: 65 nm, 16 + 16 KB, memory included; Table III rows as published)".into(),
        x_label: "throughput (dense-equivalent GOPs/s)".into(),
        y_label: "energy per dense-equivalent op (pJ)".into(),
        lines,
        references: Vec::new(),
    })
}

/// The section, when the run has the `sim-peers` stage's result.
pub fn peers_hardware_section(c: &PeerComparison) -> Result<Section> {
    let mut s = Section::new("peers-hardware", "SPRINT and its peers: hardware");
    s.paragraph(format!(
        "SPRINT, its baselines and five peers (Sanger, LeOPArd, A3, SpAtten, Energon) as designs on one simulator engine, on the paper's {} workloads (`sprint simulate --compare-peers`). Iso variables: the ReRAM main memory, the 65 nm energy tables, the 1 GHz clock and M-SPRINT's buffers; free variables: each design's dataflow and units (configs/presets/<design>.toml, each value with its source).",
        c.workloads.len()
    ));
    s.table(iso_table(c));
    s.table(published_table(c));
    s.plot(plot(c));
    Ok(s)
}
