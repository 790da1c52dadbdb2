//! The section "SPRINT and its peers: hardware" on a constructed `--compare-peers` result:
//! both tables with their ratios computed by hand, a 40 nm row carried to 65 nm, and the
//! energy-per-op plot with every design, rendered.

use sprint_report::render_check::render_check;
use sprint_report::{Document, Plot};
use sprint_reproduce::report::peers_hardware_section;
use sprint_sim::own_workload::OwnWorkloadRow;
use sprint_sim::peers::{PeerComparison, PeerRow, PublishedRow, Table3Row};
use sprint_sim::process::ScaleFactors;

fn peer(name: &str, gops_s: f64, gops_j: f64) -> PeerRow {
    PeerRow {
        key: name.to_lowercase(),
        name: name.into(),
        gops_per_s: gops_s,
        executed_gops_per_s: gops_s / 10.0,
        gops_per_j: gops_j,
        gops_per_j_without_memory: 2.0 * gops_j,
        speedup: gops_s / 100.0,
        energy_reduction: gops_j / 400.0,
        data_movement_reduction_pct: 80.0,
        per_workload: vec![(1.0, 1.0)],
    }
}

fn t3(design: &str, nm: f64, gops_s: f64, gops_j: f64, memory: bool) -> Table3Row {
    Table3Row {
        design: design.into(),
        process_nm: nm,
        key_buffer_kb: 20.0,
        value_buffer_kb: 20.0,
        gops_per_s: gops_s,
        gops_per_j: gops_j,
        memory_cost_included: memory,
    }
}

fn comparison() -> PeerComparison {
    let names = [
        "S-Baseline",
        "M-SPRINT",
        "Sanger",
        "LeOPArd",
        "A3",
        "SpAtten",
        "Energon",
    ];
    PeerComparison {
        workloads: vec!["BERT-B".into()],
        iso: names
            .iter()
            .enumerate()
            .map(|(i, n)| peer(n, 100.0 * (i + 1) as f64, 400.0 + 100.0 * i as f64))
            .collect(),
        published: vec![
            PublishedRow {
                ours: peer("M-SPRINT", 2000.0, 1000.0),
                published: t3("M-SPRINT", 65.0, 1816.2, 902.7, true),
                scaled: None,
            },
            PublishedRow {
                ours: peer("A3 (published configuration)", 500.0, 2000.0),
                published: t3("A3", 40.0, 518.0, 4709.1, false),
                scaled: Some(ScaleFactors {
                    from_nm: 40.0,
                    to_nm: 65.0,
                    delay: 1.625,
                    energy: 2.0,
                }),
            },
        ],
        not_modelled: Vec::new(),
        energy_table: "default".into(),
        stats_source: "test".into(),
        traces: Vec::new(),
        own_workload: vec![OwnWorkloadRow {
            workload: "GPT-2-medium generation".into(),
            row: PublishedRow {
                ours: peer("SpAtten (published configuration)", 600.0, 200.0),
                published: t3("SpAtten", 40.0, 360.0, 382.0, true),
                scaled: Some(ScaleFactors {
                    from_nm: 40.0,
                    to_nm: 65.0,
                    delay: 1.625,
                    energy: 2.0,
                }),
            },
        }],
    }
}

/// Ratios by hand: M-SPRINT 2000 / 1816.2 = 1.10 (memory included: GOPs/J 1000 / 902.7 =
/// 1.11, no 65 nm column); A3 500 / 518 = 0.97, against 518 / 1.625 = 318.8 at 65 nm: 1.57;
/// its energy without memory (2 x 2000 = 4000) / 4709.1 = 0.85, at 65 nm 4709.1 / 2 =
/// 2354.6: 1.70.
#[test]
fn section_tables_carry_the_ratios() {
    let s = peers_hardware_section(&comparison()).unwrap();
    let doc = Document {
        title: "t".into(),
        sections: vec![s],
    };
    let tables: Vec<_> = doc.tables().collect();
    assert_eq!(tables.len(), 2);
    let iso = tables[0];
    assert_eq!(iso.id, "peers-iso");
    // pJ per op = 1000 / GOPs/J: S-Baseline 400 GOPs/J -> 2.5 pJ.
    assert_eq!(iso.cell(0, "energy per op").unwrap().display(), "2.500");
    let p = tables[1];
    let cell = |r: usize, n: &str| p.cell(r, n).unwrap().display();
    assert_eq!(cell(0, "ours / published"), "1.10");
    assert_eq!(cell(0, "ours / published at 65 nm"), "-");
    assert_eq!(cell(1, "ours / published at 65 nm"), "1.57");
    assert_eq!(cell(1, "ours (memory as published)"), "4000.0");
    // SpAtten on its own workload: 600 / 360 = 1.67, at 65 nm 600 / 221.5 = 2.71; memory
    // included, 200 / 382 = 0.52, at 65 nm 200 / 191 = 1.05.
    assert_eq!(cell(2, "design"), "SpAtten, its own workload");
    assert_eq!(cell(2, "ours / published"), "1.67");
    assert_eq!(cell(2, "ours / published at 65 nm"), "2.71");
    assert_eq!(cell(2, "ours (memory as published)"), "200.0");
    assert_eq!(p.notes.len(), 2, "the own workload is named in a note");
    let md = doc.markdown();
    assert!(md.contains("SPRINT and its peers: hardware"), "{md}");
}

/// The plot has one point per iso design and one per published row, and renders with its
/// title and axis labels (units in parentheses).
#[test]
fn energy_per_op_plot_has_every_design_and_renders() {
    let c = comparison();
    let s = peers_hardware_section(&c).unwrap();
    let doc = Document {
        title: "t".into(),
        sections: vec![s],
    };
    let plots: Vec<&Plot> = doc.plots().collect();
    assert_eq!(plots.len(), 1);
    let Plot::Lines(l) = plots[0] else {
        panic!("a lines plot")
    };
    assert_eq!(l.lines.len(), c.iso.len() + c.published.len());
    for d in ["A3", "SpAtten", "Energon", "Sanger", "LeOPArd", "M-SPRINT"] {
        assert!(l.lines.iter().any(|x| x.name.starts_with(d)), "{d}");
    }
    let svg = plots[0].svg().unwrap();
    let r = render_check(&svg, &[plots[0].title(), &l.x_label, &l.y_label])
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(r.inked > 2_000, "{} pixels", r.inked);
    assert!(l.y_label.contains("(pJ)"));
}
