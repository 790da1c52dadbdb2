//! The comparison with the paper as text tables, for `sprint simulate --compare-paper`:
//! ours against the paper's numbers, all of which are read from
//! `configs/paper-results.toml` (nothing typed here).

use std::fmt::Write;

use comfy_table::Table;

use crate::paper::{Comparison, geomean, mean};

fn cell(ours: f64, paper: f64, pct: bool) -> String {
    let ratio = if paper > 0.0 {
        format!("{:.2}", ours / paper)
    } else {
        "n/a".into()
    };
    if pct {
        format!("{ours:.1} / {paper:.1} ({ratio})")
    } else {
        format!("{ours:.2} / {paper:.2} ({ratio})")
    }
}

/// The comparison of one configuration with the paper as text tables (Figs 11, 12a, 10 and
/// Table III), every paper number read from configs/paper-results.toml.
pub fn comparison_text(c: &Comparison) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Ours vs paper (cells: ours / paper (ratio ours/paper)); energy table `{}`; kept sets: {}",
        c.energy_table, c.stats_source
    );
    let models: Vec<&str> = c.paper.models.iter().map(|(n, _)| n.as_str()).collect();

    let mut t = Table::new();
    t.set_header(vec!["Fig 11 speedup vs same-size baseline", "S", "M", "L"]);
    for (i, m) in models.iter().enumerate() {
        let (o, p) = (&c.ours[i].1, &c.paper.models[i].1);
        let mut r = vec![m.to_string()];
        r.extend((0..3).map(|s| cell(o.speedup[s], p.speedup[s], false)));
        t.add_row(r);
    }
    let mut g = vec!["geomean (paper: printed)".to_string()];
    for s in 0..3 {
        let ours: Vec<f64> = c.ours.iter().map(|(_, o)| o.speedup[s]).collect();
        g.push(cell(geomean(&ours), c.paper.speedup_geomean[s], false));
    }
    t.add_row(g);
    let _ = writeln!(out, "{t}");

    let mut t = Table::new();
    t.set_header(vec![
        "Fig 12a energy reduction vs S-Baseline",
        "Pruning only",
        "S-SPRINT",
    ]);
    for (i, m) in models.iter().enumerate() {
        let (o, p) = (&c.ours[i].1, &c.paper.models[i].1);
        t.add_row(vec![
            m.to_string(),
            cell(o.energy_reduction[0], p.energy_reduction[0], false),
            cell(o.energy_reduction[1], p.energy_reduction[1], false),
        ]);
    }
    let mut g = vec!["geomean (paper: of the 8 bars)".to_string()];
    let mut am = vec!["arithmetic mean".to_string()];
    for k in 0..2 {
        let ours: Vec<f64> = c.ours.iter().map(|(_, o)| o.energy_reduction[k]).collect();
        let paper: Vec<f64> = c
            .paper
            .models
            .iter()
            .map(|(_, p)| p.energy_reduction[k])
            .collect();
        g.push(cell(geomean(&ours), geomean(&paper), false));
        am.push(cell(mean(&ours), mean(&paper), false));
    }
    t.add_row(g);
    t.add_row(am);
    let _ = writeln!(out, "{t}");
    let _ = writeln!(
        out,
        "The abstract's {:.1}x energy reduction matches neither mean of Fig 12a's bars; we compare geomean with geomean.",
        c.paper.energy_headline
    );

    let mut t = Table::new();
    t.set_header(vec![
        "Fig 10 data-movement reduction % vs S-Baseline",
        "S mask only",
        "S SPRINT",
        "M mask only",
        "M SPRINT",
        "L mask only",
        "L SPRINT",
    ]);
    for (i, m) in models.iter().enumerate() {
        let (o, p) = (&c.ours[i].1, &c.paper.models[i].1);
        let mut r = vec![m.to_string()];
        for s in 0..3 {
            for k in 0..2 {
                r.push(cell(
                    o.data_movement_pct[s][k],
                    p.data_movement_pct[s][k],
                    true,
                ));
            }
        }
        t.add_row(r);
    }
    let mut avg = vec!["average (arithmetic)".to_string()];
    for s in 0..3 {
        for k in 0..2 {
            let ours: Vec<f64> = c
                .ours
                .iter()
                .map(|(_, o)| o.data_movement_pct[s][k])
                .collect();
            avg.push(cell(
                mean(&ours),
                c.paper.data_movement_average_pct[s][k],
                true,
            ));
        }
    }
    t.add_row(avg);
    let _ = writeln!(out, "{t}");

    let sum = c.summary();
    let _ = writeln!(
        out,
        "Table III, M-SPRINT (dense-equivalent ops, geomean over workloads): {:.1} GOPs/s (paper {:.1}), {:.1} GOPs/J (paper {:.1})",
        sum.m_sprint_gops[0],
        c.paper.table3_m_sprint[0],
        sum.m_sprint_gops[1],
        c.paper.table3_m_sprint[1]
    );
    out
}

/// The configurations side by side: geomeans, Fig 10 error, worst cell, Table III.
pub fn summaries_text(cmps: &[Comparison]) -> String {
    let mut out = String::new();
    let Some(first) = cmps.first() else {
        return out;
    };
    let p = &first.paper;
    let paper_e: Vec<f64> = p
        .models
        .iter()
        .map(|(_, m)| m.energy_reduction[1])
        .collect();
    let mut t = Table::new();
    let mut head = vec!["Side by side".to_string(), "paper".to_string()];
    head.extend(cmps.iter().map(|c| c.calibration.clone()));
    t.set_header(head);
    let sums: Vec<_> = cmps.iter().map(Comparison::summary).collect();
    for (s, size) in ["S", "M", "L"].iter().enumerate() {
        let mut r = vec![
            format!("Fig 11 speedup geomean {size}"),
            format!("{:.2}", p.speedup_geomean[s]),
        ];
        r.extend(sums.iter().map(|x| {
            format!(
                "{:.2} ({:.2})",
                x.speedup_geomean[s],
                x.speedup_geomean[s] / p.speedup_geomean[s]
            )
        }));
        t.add_row(r);
    }
    let pe = geomean(&paper_e);
    let mut r = vec![
        "Fig 12a S-SPRINT energy geomean".to_string(),
        format!("{pe:.2}"),
    ];
    r.extend(
        sums.iter()
            .map(|x| format!("{:.2} ({:.2})", x.energy_geomean, x.energy_geomean / pe)),
    );
    t.add_row(r);
    let mut r = vec![
        "Fig 10 mean |ours - paper|, pp".to_string(),
        "0".to_string(),
    ];
    r.extend(sums.iter().map(|x| format!("{:.1}", x.fig10_mae_pp)));
    t.add_row(r);
    let mut r = vec![
        "Fig 11 mean |ln(ours / paper)| over 24 cells".to_string(),
        "0".to_string(),
    ];
    r.extend(sums.iter().map(|x| format!("{:.3}", x.fig11_mean_abs_ln)));
    t.add_row(r);
    let mut r = vec![
        "worst speedup cell (ours/paper)".to_string(),
        "".to_string(),
    ];
    r.extend(sums.iter().map(|x| {
        let (m, s, v) = &x.worst_speedup_cell;
        format!("{m} {s}: {v:.2}x")
    }));
    t.add_row(r);
    let mut r = vec![
        "Table III M-SPRINT GOPs/s, GOPs/J".to_string(),
        format!("{:.1}, {:.1}", p.table3_m_sprint[0], p.table3_m_sprint[1]),
    ];
    r.extend(
        sums.iter()
            .map(|x| format!("{:.1}, {:.1}", x.m_sprint_gops[0], x.m_sprint_gops[1])),
    );
    t.add_row(r);
    let _ = writeln!(out, "{t}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paper::{OurModel, PaperResults};

    /// The tables carry the paper's numbers from paper-results.toml (Table III included).
    #[test]
    fn tables_read_the_paper_numbers_from_the_results_file() {
        let paper = PaperResults::load().unwrap();
        let ours = paper
            .models
            .iter()
            .map(|(n, _)| {
                (
                    n.clone(),
                    OurModel {
                        speedup: [2.0; 3],
                        energy_reduction: [1.0, 4.0],
                        data_movement_pct: [[50.0; 2]; 3],
                        m_sprint_gops_per_j: 100.0,
                        m_sprint_gops_per_s: 200.0,
                    },
                )
            })
            .collect();
        let c = Comparison {
            paper: paper.clone(),
            ours,
            energy_table: "default".into(),
            stats_source: "test".into(),
            calibration: "sourced-default".into(),
        };
        let t = comparison_text(&c);
        let want = format!("(paper {:.1})", paper.table3_m_sprint[0]);
        assert!(t.contains(&want), "{t}");
        assert!(t.contains("200.0 GOPs/s"));
        let s = summaries_text(&[c]);
        assert!(s.contains("sourced-default") && s.contains("7.49"), "{s}");
    }
}
