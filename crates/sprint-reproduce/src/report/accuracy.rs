//! The accuracy section: the four attention variants per model and task, and the paper's
//! Fig 9.

use sprint_report::plot::{BarSeries, Bars};
use sprint_report::{Cell, Column, Plot, Section, Table};
use sprint_sim::paper::mean;

use super::measures::{is_classification, loss_points, metric_cell, metric_unit, pct};
use super::paper::paper_accuracy;
use crate::error::Result;
use crate::results::{AccuracyResult, Results};

/// The accuracy section (Fig 9): a table per model and task, the paper's Fig 9, and the
/// loss against dense per variant, ours against the paper's.
pub(super) fn accuracy_section(r: &Results) -> Result<Section> {
    let mut s = Section::new(
        "accuracy",
        "Accuracy of the four attention variants (Fig 9)",
    );
    s.paragraph("Each task runs dense attention, runtime pruning (exact scores, threshold), SPRINT without recompute (in-memory approximate scores, 1-bit comparator, no digital recompute) and SPRINT, with the same thresholds. Kept = keys moved on chip; softmax = keys in the softmax; both as a share of the visible (query, key) pairs.");
    for a in &r.accuracy {
        s.table(variants_table(a));
    }
    let pa = paper_accuracy()?;
    s.table(paper_fig9_table(&pa));
    s.plot(fig9_loss_plot(r, &pa));
    Ok(s)
}

/// The four variants on one model and task: the metric, its delta against dense with its
/// interval, the continuous measures, and the kept and softmax shares.
fn variants_table(a: &AccuracyResult) -> Table {
    // Accuracy deltas are fractions shown in points; perplexity deltas are shown as is.
    let (delta_unit, delta_scale, delta_digits) = if is_classification(a) {
        ("points", 100.0, 2)
    } else {
        ("perplexity", 1.0, 3)
    };
    let delta_value = |d: f64| delta_scale * d;
    let cls = is_classification(a);
    let mut columns = vec![
        Column::text("variant"),
        Column::unit(&a.metric, metric_unit(&a.metric)),
        Column::unit("delta vs dense", delta_unit),
    ];
    if cls {
        columns.extend([
            Column::unit("delta 95 % low", delta_unit),
            Column::unit("delta 95 % high", delta_unit),
            Column::unit("posterior KL vs dense", "nats"),
            Column::unit("flips vs dense", "documents"),
            Column::text("embedding cosine to dense"),
        ]);
    } else {
        columns.extend([
            Column::unit("change vs dense", "%"),
            Column::unit("change 95 % low", "%"),
            Column::unit("change 95 % high", "%"),
        ]);
    }
    columns.extend([
        Column::unit("kept", "%"),
        Column::unit("softmax", "%"),
        Column::unit("newly fetched per query", "% of visible"),
        Column::unit("comparator false-prune", "%"),
    ]);
    let mut t = Table::new(
        &format!("accuracy-{}-{}", a.model, a.task),
        &format!(
            "{} on {}: {} of {} tokens; thresholds {}",
            a.model, a.task, a.items, a.seq_len, a.thresholds
        ),
        columns,
    );
    for v in &a.rows {
        let f = v.fidelity.as_ref().filter(|_| v.variant != "dense");
        let mut cells = vec![
            Cell::text(&v.variant),
            metric_cell(&a.metric, v.metric),
            Cell::opt(v.delta.map(delta_value), delta_digits),
        ];
        if cls {
            let ci = v.delta_ci95.filter(|_| v.variant != "dense");
            cells.extend([
                Cell::opt(ci.map(|(lo, _)| delta_value(lo)), delta_digits),
                Cell::opt(ci.map(|(_, hi)| delta_value(hi)), delta_digits),
                Cell::opt(f.and_then(|f| f.kl_mean), 4),
                Cell::opt(f.and_then(|f| f.flips).map(|n| n as f64), 0),
                Cell::opt(f.and_then(|f| f.cosine_mean), 4),
            ]);
        } else {
            let ci = f.and_then(|f| f.ppl_change_ci95);
            cells.extend([
                Cell::opt(f.and_then(|f| f.ppl_change_pct), 2),
                Cell::opt(ci.map(|c| c.0), 2),
                Cell::opt(ci.map(|c| c.1), 2),
            ]);
        }
        cells.extend([
            pct(v.kept_fraction),
            pct(v.softmax_fraction),
            pct(v.new_fetch_share),
            Cell::opt(v.false_prune_rate.map(|x| 100.0 * x), 2),
        ]);
        t.push(cells);
    }
    t.note(format!("Data: {}", a.split));
    if cls {
        t.note("Interval: 2.5 % and 97.5 % percentiles of the delta over 10 000 paired bootstrap resamples of the evaluated items (docs/evaluation.md). Continuous measures against dense on the same documents: the mean KL divergence of the probe's class posterior from dense's (nats), the documents whose predicted class changed (flips), and the mean cosine of the embeddings to dense's.".to_string());
    } else {
        t.note(format!("Interval: 2.5 % and 97.5 % percentiles of the perplexity change against dense over {} paired block-bootstrap resamples of blocks of {} consecutive scored tokens (sprint_eval::fidelity).", sprint_eval::fidelity::RESAMPLES, sprint_eval::fidelity::BLOCK_TOKENS));
    }
    t
}

/// The paper's Fig 9 as read off the chart, per model.
fn paper_fig9_table(pa: &[(String, [f64; 4])]) -> Table {
    let mut t = Table::new(
        "accuracy-paper-fig9",
        "The paper's Fig 9 (read off the chart)",
        vec![
            Column::text("model"),
            Column::text("metric"),
            Column::text("dense"),
            Column::text("runtime pruning"),
            Column::text("SPRINT without recompute"),
            Column::text("SPRINT"),
        ],
    );
    for (m, x) in pa {
        t.push(vec![
            Cell::text(m.trim_end_matches("-perplexity")),
            Cell::text(if m.contains("perplexity") {
                "perplexity"
            } else {
                "accuracy (%)"
            }),
            Cell::num(x[0], 1),
            Cell::num(x[1], 1),
            Cell::num(x[2], 1),
            Cell::num(x[3], 1),
        ]);
    }
    t
}

/// The accuracy loss against dense per variant: ours per classification task, the paper's
/// mean over its models.
fn fig9_loss_plot(r: &Results, pa: &[(String, [f64; 4])]) -> Plot {
    // Loss against dense per variant: ours per task, the paper's mean over its models.
    let variants = ["runtime-pruning", "sprint-no-recompute", "sprint"];
    let mut series: Vec<BarSeries> = r
        .accuracy
        .iter()
        .filter(|a| is_classification(a))
        .map(|a| BarSeries {
            name: format!("ours: {} {}", a.model, a.task),
            values: variants.iter().map(|v| loss_points(a, v)).collect(),
            paper: false,
        })
        .collect();
    let models: Vec<&[f64; 4]> = pa
        .iter()
        .filter(|(k, _)| !k.contains("perplexity"))
        .map(|(_, x)| x)
        .collect();
    series.push(BarSeries {
        name: "paper: mean of its five models".into(),
        values: (1..4)
            .map(|i| {
                Some(mean(
                    &models.iter().map(|x| x[0] - x[i]).collect::<Vec<_>>(),
                ))
            })
            .collect(),
        paper: true,
    });
    Plot::Bars(Bars {
        id: "fig9-accuracy-loss".into(),
        title: "Accuracy loss against dense attention (Fig 9)".into(),
        x_label: "attention variant".into(),
        y_label: "accuracy loss (points)".into(),
        categories: variants.iter().map(|v| v.to_string()).collect(),
        series,
    })
}
