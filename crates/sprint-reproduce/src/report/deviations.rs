//! The verdict's list of the largest deviations from the paper, each with its documented
//! cause.

use super::causes::cause;
use super::paper::{comparison, paper_results, ratio};
use super::verdict::{Position, Verdict, verdicts};
use crate::error::Result;
use crate::results::Results;

/// How far a verdict row is from the paper, as a factor (1 = agrees): ours / paper, except
/// for a perplexity change, whose paper value is 0 % (GPT-2-L's SPRINT bar equals its dense
/// bar): there the factor is ours over the paper's perplexity ratio to dense, (1 + ours) /
/// (1 + paper), so the row is ranked and given its cause like the others.
fn deviation_factor(v: &Verdict) -> Option<f64> {
    if v.family == "perplexity" && v.unit == "%" {
        let f = (100.0 + v.ours) / (100.0 + v.paper);
        (f.is_finite() && f > 0.0).then_some(f)
    } else {
        ratio(v.ours, v.paper)
    }
}

/// Ranking key of a deviation factor: its distance from 1 on a log scale; a factor of the
/// wrong sign (SPRINT better than dense where the paper loses) ranks as far as it goes.
fn deviation_key(f: f64) -> f64 {
    if f > 0.0 { f.ln().abs() } else { f64::INFINITY }
}

/// Most deviation lines in the verdict, besides the worst Fig 11 cell per configuration.
const MAX_DEVIATIONS: usize = 8;

/// The verdict rows the deviation list takes: sampled rows whose 95 % interval excludes the
/// paper's value, and deterministic rows (the simulator) whose factor is outside 0.8-1.25;
/// a sampled row without an interval, or whose interval holds the paper's value, is not a
/// deviation.
fn is_deviation(v: &Verdict, factor: f64) -> bool {
    match v.position() {
        Position::Below | Position::Above => true,
        Position::Deterministic => !(0.8..=1.25).contains(&factor),
        Position::Consistent | Position::NoInterval => false,
    }
}

/// The verdict's list of the largest deviations with their documented causes (see
/// [`is_deviation`]), the measures not judged, and the worst Fig 11 cell per configuration.
pub(super) fn deviations(r: &Results) -> Result<Vec<String>> {
    let paper = paper_results()?;
    let all = verdicts(r)?;
    let unjudged: Vec<String> = all
        .iter()
        .filter(|v| v.position() == Position::NoInterval)
        .map(|v| format!("{} ({})", v.measure, v.config))
        .collect();
    let mut vs: Vec<(Verdict, f64)> = all
        .into_iter()
        .filter_map(|v| deviation_factor(&v).map(|f| (v, f)))
        .filter(|(v, f)| is_deviation(v, *f))
        .collect();
    vs.sort_by(|(_, a), (_, b)| deviation_key(*b).total_cmp(&deviation_key(*a)));
    // The largest deviation of each family and configuration, so that every cause that
    // applies is shown once (the rows of one family share their cause).
    let mut seen = std::collections::BTreeSet::new();
    vs.retain(|(v, _)| seen.insert((v.family, v.config.clone())));
    let mut out = Vec::new();
    for (v, f) in vs.iter().take(MAX_DEVIATIONS) {
        let factor = if v.family == "perplexity" && v.unit == "%" {
            format!("perplexity ratio to dense, ours / paper {f:.2}")
        } else {
            format!("ratio {f:.2}")
        };
        let interval = match (v.position(), v.ci95) {
            (Position::Below | Position::Above, Some((lo, hi))) => format!(
                "; the paper's value is {} our 95 % interval [{lo:.2}, {hi:.2}]",
                v.position().word()
            ),
            _ => "; deterministic".to_string(),
        };
        out.push(format!(
            "{} ({}): ours {:.2} {}, paper {:.2} {} ({factor}{interval}). Cause: {}",
            v.measure,
            v.config,
            v.ours,
            v.unit,
            v.paper,
            v.unit,
            cause(v.family)?
        ));
    }
    if !unjudged.is_empty() {
        out.push(format!(
            "Not judged (no interval): {}.",
            unjudged.join("; ")
        ));
    }
    for s in &r.sim_paper {
        let (m, size, x) = comparison(s, &paper).summary().worst_speedup_cell;
        out.push(format!(
            "Worst Fig 11 cell ({}): {m} at {size}, ours / paper = {x:.2}. Cause: {}",
            s.calibration,
            cause("speedup")?
        ));
    }
    Ok(out)
}
