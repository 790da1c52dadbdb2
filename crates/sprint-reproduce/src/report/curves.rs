//! The sweep curves (metric against a swept setting) as tables and plots.

use sprint_report::plot::{Line, Lines};
use sprint_report::{Cell, Column, Plot, Table};

use super::measures::{metric_cell, metric_unit, pct};
use crate::results::{CurveResult, SweepPoint};

/// The table of a sweep curve: per series and x, the metric against dense with its
/// interval and continuous measures (against the sweep's reference point too, when it has
/// one), and the kept and softmax shares.
pub(super) fn curve_table(id: &str, title: &str, x_name: &str, c: &CurveResult) -> Table {
    let cls = c.metric == "accuracy";
    // Perplexity curves with next-token distributions compared: the mean per-token KL.
    let token_kl = !cls
        && c.points.iter().any(|p| {
            p.fidelity
                .as_ref()
                .is_some_and(|f| f.token_kl_mean.is_some())
        });
    let reference = c.reference.clone();
    let mut t = Table::new(id, title, curve_columns(x_name, c, token_kl));
    for p in &c.points {
        t.push(curve_cells(c, p, token_kl));
    }
    if let Some(r) = &reference {
        t.note(format!("\"vs {r}\": against the sweep's point {r} of the same series on the same items, which isolates the swept effect from the pruning every point shares."));
    }
    t.note(format!("{} on {}; data: {}", c.model, c.task, c.split));
    if cls {
        t.note("Against one dense run on the same documents: the paired bootstrap interval of the accuracy delta, the mean KL divergence of the class posterior from dense's and the flipped predictions.");
    } else {
        t.note(format!("Against one dense run on the same windows: the perplexity change with its paired block-bootstrap interval (blocks of {} scored tokens).", sprint_eval::fidelity::BLOCK_TOKENS));
        if token_kl {
            t.note(format!("Token KL: the mean over scored tokens of KL(p_reference || p_point) of the next-token distributions (nats), with its block-bootstrap 95 % interval over the same blocks of {} scored tokens.", sprint_eval::fidelity::BLOCK_TOKENS));
        }
    }
    t
}

/// The columns of [`curve_table`]; `token_kl`: the curve compares next-token distributions.
fn curve_columns(x_name: &str, c: &CurveResult, token_kl: bool) -> Vec<Column> {
    let cls = c.metric == "accuracy";
    let mut columns = vec![
        Column::text("series"),
        Column::text(x_name),
        Column::unit(&c.metric, metric_unit(&c.metric)),
        Column::unit(&format!("dense {}", c.metric), metric_unit(&c.metric)),
    ];
    if cls {
        columns.extend([
            Column::unit("delta 95 % low", "points"),
            Column::unit("delta 95 % high", "points"),
            Column::unit("posterior KL vs dense", "nats"),
            Column::unit("flips vs dense", "documents"),
        ]);
    } else {
        columns.extend([
            Column::unit("change vs dense", "%"),
            Column::unit("change 95 % low", "%"),
            Column::unit("change 95 % high", "%"),
        ]);
    }
    if token_kl {
        columns.push(Column::unit("token KL vs dense", "nats"));
    }
    if let Some(r) = &c.reference {
        if cls {
            columns.extend([
                Column::unit(&format!("posterior KL vs {r}"), "nats"),
                Column::unit(&format!("flips vs {r}"), "documents"),
            ]);
        } else {
            columns.extend([
                Column::unit(&format!("change vs {r}"), "%"),
                Column::unit(&format!("change vs {r} 95 % low"), "%"),
                Column::unit(&format!("change vs {r} 95 % high"), "%"),
            ]);
            if token_kl {
                columns.extend([
                    Column::unit(&format!("token KL vs {r}"), "nats"),
                    Column::unit(&format!("token KL vs {r} 95 % low"), "nats"),
                    Column::unit(&format!("token KL vs {r} 95 % high"), "nats"),
                ]);
            }
        }
    }
    columns.extend([Column::unit("kept", "%"), Column::unit("softmax", "%")]);
    columns
}

/// The cells of point `p` of curve `c` in [`curve_table`].
fn curve_cells(c: &CurveResult, p: &SweepPoint, token_kl: bool) -> Vec<Cell> {
    let cls = c.metric == "accuracy";
    let f = p.fidelity.as_ref();
    let mut cells = vec![
        Cell::text(&p.series),
        Cell::text(&p.x_label),
        metric_cell(&c.metric, p.metric),
        metric_cell(&c.metric, c.dense),
    ];
    if cls {
        cells.extend([
            Cell::opt(p.delta_ci95.map(|x| 100.0 * x.0), 2),
            Cell::opt(p.delta_ci95.map(|x| 100.0 * x.1), 2),
            Cell::opt(f.and_then(|f| f.kl_mean), 4),
            Cell::opt(f.and_then(|f| f.flips).map(|n| n as f64), 0),
        ]);
    } else {
        let ci = f.and_then(|f| f.ppl_change_ci95);
        cells.extend([
            Cell::opt(f.and_then(|f| f.ppl_change_pct), 2),
            Cell::opt(ci.map(|x| x.0), 2),
            Cell::opt(ci.map(|x| x.1), 2),
        ]);
        if token_kl {
            cells.push(Cell::opt(f.and_then(|f| f.token_kl_mean), 4));
        }
    }
    if c.reference.is_some() {
        let g = p.vs_reference.as_ref();
        if cls {
            cells.extend([
                Cell::opt(g.and_then(|f| f.kl_mean), 4),
                Cell::opt(g.and_then(|f| f.flips).map(|n| n as f64), 0),
            ]);
        } else {
            let ci = g.and_then(|f| f.ppl_change_ci95);
            cells.extend([
                Cell::opt(g.and_then(|f| f.ppl_change_pct), 2),
                Cell::opt(ci.map(|x| x.0), 2),
                Cell::opt(ci.map(|x| x.1), 2),
            ]);
            if token_kl {
                let ci = g.and_then(|f| f.token_kl_ci95);
                cells.extend([
                    Cell::opt(g.and_then(|f| f.token_kl_mean), 4),
                    Cell::opt(ci.map(|x| x.0), 4),
                    Cell::opt(ci.map(|x| x.1), 4),
                ]);
            }
        }
    }
    cells.extend([pct(p.kept_fraction), pct(p.softmax_fraction)]);
    cells
}

/// The continuous measure of a curve against x, one line per series: the mean posterior KL
/// from dense (classification), or the mean NLL increase per token over dense,
/// `ln(perplexity / dense)` (perplexity; finite however large the change).
pub(super) fn continuous_plot(
    id: &str,
    title: &str,
    x_label: &str,
    c: &CurveResult,
    x_of: impl Fn(&crate::results::SweepPoint) -> f64,
) -> Plot {
    let cls = c.metric == "accuracy";
    let mut names: Vec<String> = Vec::new();
    for p in &c.points {
        if !names.contains(&p.series) {
            names.push(p.series.clone());
        }
    }
    let y = |p: &crate::results::SweepPoint| -> Option<f64> {
        if cls {
            p.fidelity.as_ref().and_then(|f| f.kl_mean)
        } else {
            (p.metric > 0.0 && c.dense > 0.0).then(|| (p.metric / c.dense).ln())
        }
    };
    let lines = names
        .iter()
        .map(|n| Line {
            name: n.clone(),
            points: c
                .points
                .iter()
                .filter(|p| &p.series == n)
                .filter_map(|p| Some((x_of(p), y(p)?)))
                .collect(),
            paper: false,
            errors: Vec::new(),
        })
        .collect();
    Plot::Lines(Lines {
        id: id.into(),
        title: title.into(),
        x_label: x_label.into(),
        y_label: if cls {
            "class-posterior KL from dense (nats)".into()
        } else {
            "NLL increase per token over dense, ln(ppl / dense ppl) (nats)".into()
        },
        lines,
        references: vec![("dense".into(), 0.0)],
    })
}

/// The metric of a curve against x, one line per series, and the dense reference line
/// (accuracy in %).
pub(super) fn curve_lines(
    c: &CurveResult,
    x_of: impl Fn(&crate::results::SweepPoint) -> f64,
) -> (Vec<Line>, Vec<(String, f64)>) {
    let scale = if c.metric == "accuracy" { 100.0 } else { 1.0 };
    let mut names: Vec<String> = Vec::new();
    for p in &c.points {
        if !names.contains(&p.series) {
            names.push(p.series.clone());
        }
    }
    let lines = names
        .iter()
        .map(|n| Line {
            name: n.clone(),
            points: c
                .points
                .iter()
                .filter(|p| &p.series == n)
                .map(|p| (x_of(p), scale * p.metric))
                .collect(),
            paper: false,
            errors: Vec::new(),
        })
        .collect();
    (lines, vec![("dense".into(), scale * c.dense)])
}
