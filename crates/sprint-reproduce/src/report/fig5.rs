//! Fig 5's shape (accuracy lost at few key bits in the crossbar) in numbers, and the
//! next-token KL plot of the perplexity precision curve.

use sprint_report::Plot;
use sprint_report::plot::{Line, Lines};

use crate::results::CurveResult;

/// Fig 5's shape on a classification curve, in numbers: per series, the class-posterior KL
/// from the reference point (the most bits) with its 95 % bootstrap interval at every bit
/// width, and whether the 1-2-bit points are resolved from the 4+-bit points.
pub(super) fn fig5_shape_kl(c: &CurveResult) -> String {
    type P = crate::results::SweepPoint;
    let Some(reference) = &c.reference else {
        return String::new();
    };
    let mut names: Vec<&str> = Vec::new();
    for p in &c.points {
        if !names.contains(&p.series.as_str()) {
            names.push(&p.series);
        }
    }
    let kl = |p: &P| {
        p.vs_reference
            .as_ref()
            .and_then(|f| Some((f.kl_mean?, f.kl_ci95?)))
    };
    let mut parts = Vec::new();
    for n in names {
        let pts: Vec<&P> = c.points.iter().filter(|p| p.series == n).collect();
        let each = pts
            .iter()
            .filter(|p| p.x_label != *reference)
            .map(|p| match kl(p) {
                Some((m, (a, b))) => format!("{} {m:.4} [{a:.4}, {b:.4}]", p.x_label),
                None => format!("{} (no interval)", p.x_label),
            })
            .collect::<Vec<_>>()
            .join(", ");
        let verdict = match few_against_many_bits(&pts, |p| kl(p).map(|v| v.1)) {
            None => "not judged (no interval)".to_string(),
            Some((lo_few, hi_many)) => {
                if lo_few > hi_many {
                    format!(
                        "resolved (1-2 bits at least {lo_few:.4}, 4+ bits at most {hi_many:.4} nats)"
                    )
                } else {
                    format!(
                        "not resolved (1-2 bits from {lo_few:.4}, 4+ bits up to {hi_many:.4} nats)"
                    )
                }
            }
        };
        parts.push(format!("{n}: {each}; 1-2 against 4+ bits {verdict}"));
    }
    format!(
        "BBC, class-posterior KL from the same variant with {reference} (nats, 95 % bootstrap intervals over the documents): {}.",
        parts.join("; ")
    )
}

/// The lowest low end of the 1-2-bit intervals and the highest high end of the 4+-bit ones
/// (`interval` of each point, where it has one), or `None` when either side has none: Fig
/// 5's shape is resolved when the first lies above the second.
fn few_against_many_bits(
    points: &[&crate::results::SweepPoint],
    interval: impl Fn(&crate::results::SweepPoint) -> Option<(f64, f64)>,
) -> Option<(f64, f64)> {
    let ends = |keep: &dyn Fn(f64) -> bool| -> Vec<(f64, f64)> {
        points
            .iter()
            .filter(|p| keep(p.x))
            .filter_map(|p| interval(p))
            .collect()
    };
    let (few, many) = (ends(&|x| x <= 2.0), ends(&|x| x >= 4.0));
    if few.is_empty() || many.is_empty() {
        return None;
    }
    let lo_few = few.iter().map(|x| x.0).fold(f64::INFINITY, f64::min);
    let hi_many = many.iter().map(|x| x.1).fold(f64::NEG_INFINITY, f64::max);
    Some((lo_few, hi_many))
}

/// The mean per-token KL of a perplexity curve against x: per series, from the reference
/// point and from dense (`None` when the curve has no token KL).
pub(super) fn token_kl_plot(c: &CurveResult) -> Option<Plot> {
    type P = crate::results::SweepPoint;
    let reference = c.reference.as_ref()?;
    let mut names: Vec<&str> = Vec::new();
    for p in &c.points {
        if !names.contains(&p.series.as_str()) {
            names.push(&p.series);
        }
    }
    let from = |f: Option<&sprint_eval::fidelity::Fidelity>| f.and_then(|f| f.token_kl_mean);
    let mut lines = Vec::new();
    for n in names {
        let pts: Vec<&P> = c.points.iter().filter(|p| p.series == n).collect();
        for (what, get) in [
            (
                format!("{n} vs {reference}"),
                &(|p: &P| from(p.vs_reference.as_ref())) as &dyn Fn(&P) -> Option<f64>,
            ),
            (format!("{n} vs dense"), &|p: &P| from(p.fidelity.as_ref())),
        ] {
            let points: Vec<(f64, f64)> = pts.iter().filter_map(|p| Some((p.x, get(p)?))).collect();
            if !points.is_empty() {
                lines.push(Line {
                    name: what,
                    points,
                    paper: false,
                    errors: Vec::new(),
                });
            }
        }
    }
    (!lines.is_empty()).then(|| {
        Plot::Lines(Lines {
            id: "fig5-precision-smollm2-kl".into(),
            title: "SmolLM2 next-token KL against the in-memory key precision (Fig 5)".into(),
            x_label: "key bits in the crossbar (K_MSB)".into(),
            y_label: "mean per-token KL of the next-token distribution (nats)".into(),
            lines,
            references: vec![("no difference".into(), 0.0)],
        })
    })
}

/// Fig 5's shape on a perplexity curve, in numbers: SPRINT's mean per-token KL from the
/// point with the most bits at every bit width with its block-bootstrap interval, and
/// whether the 1-2-bit points are resolved from the 4+-bit points by it (the lowest low end
/// at 1-2 bits above the highest high end at 4+ bits; the perplexity change judges when the
/// curve has no token KL); then the perplexity change with its interval and the window
/// that carries most of it.
pub(super) fn fig5_shape(c: &CurveResult) -> String {
    type P = crate::results::SweepPoint;
    let Some(reference) = &c.reference else {
        return String::new();
    };
    let sprint: Vec<&P> = c.points.iter().filter(|p| p.series == "sprint").collect();
    let vs = |p: &P| {
        p.vs_reference
            .as_ref()
            .and_then(|f| Some((f.ppl_change_pct?, f.ppl_change_ci95?)))
    };
    let each = sprint
        .iter()
        .map(|p| match vs(p) {
            Some((x, (a, b))) => format!("{} {x:+.2} % [{a:+.2}, {b:+.2}]", p.x_label),
            None => format!("{} (no interval)", p.x_label),
        })
        .collect::<Vec<_>>()
        .join("; ");
    let kl = |p: &P| {
        p.vs_reference
            .as_ref()
            .and_then(|f| Some((f.token_kl_mean?, f.token_kl_ci95?)))
    };
    let has_kl = sprint.iter().any(|p| kl(p).is_some());
    let verdict = if has_kl {
        match few_against_many_bits(&sprint, |p| kl(p).map(|v| v.1)) {
            None => {
                "no 1-2-bit or no 4+-bit point with a token-KL interval: the shape is not judged"
                    .to_string()
            }
            Some((lo_few, hi_many)) if lo_few > hi_many => format!(
                "resolved by the token KL: every 1-2-bit interval lies above every 4+-bit one (lowest 1-2-bit low end {lo_few:.4} nats against highest 4+-bit high end {hi_many:.4} nats), Fig 5's loss at few bits"
            ),
            Some((lo_few, hi_many)) => format!(
                "not resolved by the token KL: the lowest 1-2-bit low end ({lo_few:.4} nats) is not above the highest 4+-bit high end ({hi_many:.4} nats), so on this data our datapath shows no difference between 1-2 and 4+ key bits larger than its interval"
            ),
        }
    } else {
        match few_against_many_bits(&sprint, |p| vs(p).map(|v| v.1)) {
            None => "no 1-2-bit or no 4+-bit point with an interval: the shape is not judged"
                .to_string(),
            Some((lo_few, hi_many)) => {
                if lo_few > hi_many {
                    format!(
                        "resolved: every 1-2-bit interval lies above every 4+-bit one (lowest 1-2-bit low end {lo_few:+.2} % against highest 4+-bit high end {hi_many:+.2} %), Fig 5's loss at few bits"
                    )
                } else {
                    format!(
                        "not resolved: the lowest 1-2-bit low end ({lo_few:+.2} %) is not above the highest 4+-bit high end ({hi_many:+.2} %), so on this data our datapath shows no difference between 1-2 and 4+ key bits larger than its interval"
                    )
                }
            }
        }
    };
    let kl_each = sprint
        .iter()
        .filter(|p| p.x_label != *reference)
        .map(|p| match kl(p) {
            Some((m, (a, b))) => format!("{} {m:.4} [{a:.4}, {b:.4}]", p.x_label),
            None => format!("{} (no interval)", p.x_label),
        })
        .collect::<Vec<_>>()
        .join("; ");
    let kl_dense = sprint
        .iter()
        .filter_map(|p| {
            let f = p.fidelity.as_ref()?;
            Some(format!("{} {:.4}", p.x_label, f.token_kl_mean?))
        })
        .collect::<Vec<_>>()
        .join("; ");
    // Which window carries a perplexity change: a window whose every block moves at once
    // (a key every later query relies on lost in some layer) makes one point an outlier.
    let windows = sprint
        .iter()
        .filter_map(|p| {
            let f = p.vs_reference.as_ref()?;
            Some(format!(
                "{} window {} ({:.0} %)",
                p.x_label,
                f.ppl_top_window? + 1,
                100.0 * f.ppl_top_window_share?
            ))
        })
        .collect::<Vec<_>>()
        .join("; ");
    // Where the precision shows when the recompute hides it from the perplexity: the keys
    // the comparator keeps (moved on chip) against those in the softmax.
    let kept = sprint
        .iter()
        .map(|p| {
            format!(
                "{} {:.1} % kept, {:.1} % in the softmax",
                p.x_label,
                100.0 * p.kept_fraction,
                100.0 * p.softmax_fraction
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    let mut out = String::new();
    if has_kl {
        out.push_str(&format!(
            "SmolLM2, SPRINT's mean per-token KL of the next-token distribution from SPRINT with {reference} (the same thresholds and windows; nats, 95 % block-bootstrap intervals): {kl_each}; from dense: {kl_dense}. "
        ));
    }
    out.push_str(&format!(
        "SmolLM2, SPRINT's perplexity change against SPRINT with {reference} (95 % paired block-bootstrap intervals): {each}. Fig 5's shape: {verdict}."
    ));
    if !windows.is_empty() {
        out.push_str(&format!(
            " The window that carries most of each point's NLL increase over {reference}, and its share of it (above 100 %: the other windows improved): {windows}. The blocks of one window are not independent: a whole window can move at once (as when a key that the window's later queries rely on is pruned in some layer), so one window can make one bit width an outlier, and the block intervals are narrower than a resampling of whole windows would give."
        ));
    }
    out.push_str(&format!(
        " Keys moved on chip and keys in the softmax (SPRINT recomputes the exact score of every kept key, so fewer bits cost data movement before they cost accuracy): {kept}."
    ));
    out
}
