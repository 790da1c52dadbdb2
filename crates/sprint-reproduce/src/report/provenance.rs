//! The provenance section, last in the report.

use sprint_report::{Cell, Column, Section, Table};

use crate::provenance::Provenance;

/// The provenance section: the tool and run, the stages' content keys and wall times, the
/// configuration files and the pinned assets.
pub(super) fn provenance_section(p: &Provenance) -> Section {
    let mut s = Section::new("provenance", "Provenance");
    let mut t = Table::new(
        "provenance",
        "Tool and run",
        vec![Column::text("item"), Column::text("value")],
    );
    let plan = serde_json::to_string(&p.plan).unwrap_or_default();
    for (k, v) in [
        ("sprint version", p.version.clone()),
        ("commit", p.commit.clone()),
        ("executable sha256", p.tool_sha256.clone()),
        ("mode", format!("{:?}", p.plan.mode).to_lowercase()),
        ("seed", p.plan.seed.to_string()),
        ("plan", plan),
        (
            "worker threads (results do not depend on them)",
            p.threads.to_string(),
        ),
    ] {
        t.push(vec![Cell::text(k), Cell::text(v)]);
    }
    s.table(t);
    let mut t = Table::new(
        "provenance-stages",
        "Stages: content key of their inputs and wall time of their computation",
        vec![
            Column::text("stage"),
            Column::text("key (sha256 prefix)"),
            Column::unit("wall time", "s"),
        ],
    );
    for r in &p.stages {
        t.push(vec![
            Cell::text(&r.stage),
            Cell::text(&r.key[..16.min(r.key.len())]),
            Cell::num(r.seconds, 1),
        ]);
    }
    t.note(format!(
        "Total {:.1} s of computation.",
        p.stages.iter().map(|r| r.seconds).sum::<f64>()
    ));
    s.table(t);
    let mut t = Table::new(
        "provenance-configs",
        "Configuration files (embedded in the executable)",
        vec![Column::text("file"), Column::text("sha256")],
    );
    for (f, h) in &p.configs {
        t.push(vec![Cell::text(f), Cell::text(h)]);
    }
    s.table(t);
    let mut t = Table::new(
        "provenance-assets",
        "Pinned assets (package sha256 checked at fetch)",
        vec![
            Column::text("asset"),
            Column::text("package"),
            Column::text("sha256"),
            Column::text("present"),
        ],
    );
    for (a, pk, h, present) in &p.assets {
        t.push(vec![
            Cell::text(a),
            Cell::text(pk),
            Cell::text(h),
            Cell::text(if *present { "yes" } else { "no" }),
        ]);
    }
    s.table(t);
    s
}
