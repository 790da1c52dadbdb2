//! The measures of the stage results as the report shows them: losses and their intervals,
//! the continuous measures in words, and the cells of a metric.

use sprint_report::Cell;
use sprint_sim::paper::mean;

use crate::results::AccuracyResult;

/// Loss (points) interval from a delta interval (fractions): `-(hi, lo)`, scaled.
pub(super) fn loss_ci(ci: (f64, f64)) -> (f64, f64) {
    // 0.0 - x, not -x: a zero bound stays +0 (printed 0.00, not -0.00).
    (0.0 - 100.0 * ci.1, 0.0 - 100.0 * ci.0)
}

/// The interval of a mean of independent measures from theirs: the centre is the mean of
/// the measures, the half-width the root sum of squared half-widths over their count (the
/// normal approximation); one measure keeps its own interval. `None` if any is missing.
pub(super) fn mean_ci(values: &[f64], cis: &[Option<(f64, f64)>]) -> Option<(f64, f64)> {
    if cis.is_empty() || cis.iter().any(Option::is_none) || values.len() != cis.len() {
        return None;
    }
    if cis.len() == 1 {
        return cis[0];
    }
    let k = cis.len() as f64;
    let half = cis
        .iter()
        .flatten()
        .map(|(lo, hi)| ((hi - lo) / 2.0).powi(2))
        .sum::<f64>()
        .sqrt()
        / k;
    let m = mean(values);
    Some((m - half, m + half))
}

/// The continuous measures of a row against dense, in words.
pub(super) fn fidelity_words(f: Option<&sprint_eval::fidelity::Fidelity>) -> String {
    let Some(f) = f else {
        return String::new();
    };
    let mut parts = Vec::new();
    if let Some(kl) = f.kl_mean {
        parts.push(format!("posterior KL {kl:.4} nats"));
    }
    if let Some(n) = f.flips {
        parts.push(format!("{n} of {} predictions flipped", f.items));
    }
    if let Some(c) = f.cosine_mean {
        parts.push(format!("embedding cosine {c:.4}"));
    }
    if let Some(b) = f.blocks {
        parts.push(format!(
            "block bootstrap over {b} blocks of {} tokens",
            sprint_eval::fidelity::BLOCK_TOKENS
        ));
    }
    parts.join("; ")
}

/// Whether `a` is a classification task (accuracy), not a perplexity one.
pub(super) fn is_classification(a: &AccuracyResult) -> bool {
    a.metric == "accuracy"
}

/// The loss of `variant` against dense on `a`, in points (`None` when either row is missing).
pub(super) fn loss_points(a: &AccuracyResult, variant: &str) -> Option<f64> {
    let d = a.row("dense")?.metric;
    Some(100.0 * (d - a.row(variant)?.metric))
}

/// A fraction as a percentage cell (two decimals).
pub(super) fn pct(x: f64) -> Cell {
    Cell::num(100.0 * x, 2)
}

/// A cell of metric `a`: accuracy as a percentage, perplexity as is.
pub(super) fn metric_cell(a: &str, x: f64) -> Cell {
    if a == "accuracy" {
        pct(x)
    } else {
        Cell::num(x, 3)
    }
}

/// The unit of metric `a`.
pub(super) fn metric_unit(a: &str) -> &'static str {
    if a == "accuracy" { "%" } else { "perplexity" }
}
