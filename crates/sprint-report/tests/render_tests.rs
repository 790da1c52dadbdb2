//! Every kind of plot and a whole document render: each SVG rasterises (resvg) to a canvas
//! with shapes on it and carries its title and axis descriptions as text; the Markdown and
//! HTML reference every table and plot; the files land atomically in the folder.

use sprint_report::plot::{BarSeries, Bars, Line, Lines, Scatter, Stacked, pareto_front};
use sprint_report::render_check::render_check;
use sprint_report::{Cell, Column, Document, Plot, Section, Table};

fn plots() -> Vec<Plot> {
    let cats: Vec<String> = ["BERT-B", "GPT-2-L", "ViT-B"].map(String::from).to_vec();
    let pts = vec![(1.0, 2.0), (2.0, 3.0), (3.0, 2.5), (0.5, 0.5)];
    vec![
        Plot::Bars(Bars {
            id: "bars".into(),
            title: "Speedup over the same-size baseline".into(),
            x_label: "workload".into(),
            y_label: "speedup (x)".into(),
            categories: cats.clone(),
            series: vec![
                BarSeries {
                    name: "ours S".into(),
                    values: vec![Some(8.0), Some(2.0), None],
                    paper: false,
                },
                BarSeries {
                    name: "paper S".into(),
                    values: vec![Some(9.0), Some(8.5), Some(2.8)],
                    paper: true,
                },
            ],
        }),
        Plot::Stacked(Stacked {
            id: "stacked".into(),
            title: "Energy by component".into(),
            x_label: "design".into(),
            y_label: "share of energy (%)".into(),
            categories: cats.clone(),
            components: vec![
                ("ReRAM read".into(), vec![40.0, 50.0, 10.0]),
                ("SRAM".into(), vec![60.0, 50.0, 90.0]),
            ],
        }),
        Plot::Lines(Lines {
            id: "lines".into(),
            title: "Accuracy against kept keys".into(),
            x_label: "keys in the softmax (% of visible)".into(),
            y_label: "accuracy (%)".into(),
            lines: vec![
                Line {
                    name: "SPRINT".into(),
                    points: vec![(10.0, 90.0), (20.0, 94.0), (30.0, 95.0)],
                    paper: false,
                    errors: vec![(20.0, 92.0, 96.0)],
                },
                Line {
                    name: "paper".into(),
                    points: vec![(10.0, 92.0), (30.0, 95.5)],
                    paper: true,
                    errors: Vec::new(),
                },
            ],
            references: vec![("dense".into(), 95.5)],
        }),
        Plot::Scatter(Scatter {
            id: "scatter".into(),
            title: "Energy reduction against speedup".into(),
            x_label: "speedup (x)".into(),
            y_label: "energy reduction (x)".into(),
            front: pareto_front(&pts, (true, true)),
            points: pts,
        }),
    ]
}

#[test]
fn every_plot_kind_rasterises_with_shapes_and_labelled_axes() {
    for p in plots() {
        let svg = p.svg().unwrap();
        let (x, y) = match &p {
            Plot::Bars(b) => (b.x_label.clone(), b.y_label.clone()),
            Plot::Stacked(b) => (b.x_label.clone(), b.y_label.clone()),
            Plot::Lines(b) => (b.x_label.clone(), b.y_label.clone()),
            Plot::Scatter(b) => (b.x_label.clone(), b.y_label.clone()),
        };
        let r =
            render_check(&svg, &[p.title(), &x, &y]).unwrap_or_else(|e| panic!("{}: {e}", p.id()));
        assert_eq!((r.width, r.height), sprint_report::plot::SIZE_PX);
        // Axes, ticks and data: well over a thousand inked pixels of 537,600.
        assert!(r.inked > 2_000, "{}: only {} pixels drawn", p.id(), r.inked);
    }
}

#[test]
fn bar_categories_are_the_tick_labels() {
    let svg = plots()[0].svg().unwrap();
    render_check(&svg, &["BERT-B", "GPT-2-L", "ViT-B", "ours S", "paper S"]).unwrap();
}

#[test]
fn a_document_writes_every_file_and_links_them() {
    let mut t = Table::new(
        "verdict",
        "Verdict",
        vec![
            Column::text("measure"),
            Column::unit("ours", "x"),
            Column::unit("paper", "x"),
        ],
    );
    t.push(vec![
        Cell::text("speedup S"),
        Cell::num(6.1, 2),
        Cell::num(7.49, 2),
    ]);
    let mut s = Section::new("verdict", "Verdict");
    s.paragraph("Ours against the paper <b>.");
    s.table(t);
    let mut f = Section::new("figures", "Figures");
    for p in plots() {
        f.plot(p);
    }
    let doc = Document {
        title: "SPRINT reproduction".into(),
        sections: vec![s, f],
    };
    let dir = tempfile::tempdir().unwrap();
    let w = doc.write(dir.path()).unwrap();
    assert_eq!(w.tables.len(), 2);
    assert_eq!(w.plots.len(), 4);
    let md = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
    assert!(
        md.starts_with("# SPRINT reproduction\n\n## Verdict"),
        "{md}"
    );
    assert!(
        md.contains("(tables/verdict.csv)")
            && md.contains("![Energy by component](plots/stacked.svg)")
    );
    let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert!(html.contains("&lt;b&gt;") && !html.contains("<script"));
    assert_eq!(html.matches("<svg").count(), 4, "plots are inlined");
    assert!(!html.contains("<?xml"));
    let csv = std::fs::read_to_string(dir.path().join("tables/verdict.csv")).unwrap();
    assert_eq!(csv, "measure,ours (x),paper (x)\nspeedup S,6.1,7.49\n");
    for p in &w.plots {
        let svg = std::fs::read_to_string(dir.path().join(p)).unwrap();
        render_check(&svg, &[]).unwrap();
    }
    // Nothing but the report's files (no temporaries left behind).
    let mut names: Vec<String> = walk(dir.path());
    names.sort();
    assert_eq!(names.len(), 2 + 2 + 4, "{names:?}");
}

#[test]
fn duplicate_ids_are_refused_before_anything_is_written() {
    let mut s = Section::new("a", "A");
    s.plot(plots()[0].clone()).plot(plots()[0].clone());
    let doc = Document {
        title: "t".into(),
        sections: vec![s],
    };
    let dir = tempfile::tempdir().unwrap();
    let e = doc.write(dir.path()).unwrap_err().to_string();
    assert!(e.contains("plots/bars"), "{e}");
    assert!(walk(dir.path()).is_empty());
}

fn walk(d: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(d).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p.display().to_string());
        }
    }
    out
}
