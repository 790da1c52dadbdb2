//! The section "SPRINT and its peers: accuracy": per model, the table of every design at the
//! plan's kept fraction, the table of the whole sweep, and a plot of the metric against the
//! keys in the softmax (measured) with every design a series and its 95 % interval as error
//! bars; then what the run resolves and what it does not.

use sprint_report::plot::{Line, Lines};
use sprint_report::{Plot, Section};

use super::curves::curve_table;
use crate::results::{CurveResult, Results, SweepPoint};

/// A point's value on the plot with its 95 % interval, if any.
type Value = (f64, Option<(f64, f64)>);

/// A point's value on the plot and its 95 % interval: accuracy (%) on a classification
/// task, the perplexity change against dense (%) otherwise.
fn plotted(c: &CurveResult, p: &SweepPoint) -> Option<Value> {
    if c.metric == "accuracy" {
        let ci = p
            .delta_ci95
            .map(|(lo, hi)| (100.0 * (c.dense + lo), 100.0 * (c.dense + hi)));
        Some((100.0 * p.metric, ci))
    } else {
        let f = p.fidelity.as_ref()?;
        Some((f.ppl_change_pct?, f.ppl_change_ci95))
    }
}

/// The plot of curve `c`: the metric against the measured keys in the softmax (%), one
/// series per design, intervals as error bars.
pub(crate) fn peers_plot(id: &str, c: &CurveResult) -> Plot {
    let mut names: Vec<String> = Vec::new();
    for p in &c.points {
        if !names.contains(&p.series) {
            names.push(p.series.clone());
        }
    }
    let lines = names
        .iter()
        .map(|n| {
            let pts: Vec<(f64, Value)> = c
                .points
                .iter()
                .filter(|p| &p.series == n)
                .filter_map(|p| Some((100.0 * p.softmax_fraction, plotted(c, p)?)))
                .collect();
            Line {
                name: n.clone(),
                points: pts.iter().map(|(x, (y, _))| (*x, *y)).collect(),
                paper: false,
                errors: pts
                    .iter()
                    .filter_map(|(x, (_, ci))| ci.map(|(lo, hi)| (*x, lo, hi)))
                    .collect(),
            }
        })
        .collect();
    let cls = c.metric == "accuracy";
    Plot::Lines(Lines {
        id: id.into(),
        title: format!("SPRINT and its peers on {} {}", c.model, c.task),
        x_label: "keys in the softmax, measured (% of the visible pairs)".into(),
        y_label: if cls {
            "accuracy (%), 95 % paired interval".into()
        } else {
            "perplexity change vs dense (%), 95 % block-bootstrap interval".into()
        },
        lines,
        references: vec![("dense".into(), if cls { 100.0 * c.dense } else { 0.0 })],
    })
}

/// The curve's points at kept fraction `keep` (a fraction) only.
fn at_keep(c: &CurveResult, keep: f64) -> CurveResult {
    CurveResult {
        points: c
            .points
            .iter()
            .filter(|p| (p.x - 100.0 * keep).abs() < 1e-9)
            .cloned()
            .collect(),
        ..c.clone()
    }
}

/// What curve `c` resolves at `keep`, in words: per design, its effect against dense with
/// whether the 95 % interval excludes zero, and the designs whose measured keys in the
/// softmax miss the target by more than 2 points.
fn resolved(c: &CurveResult, keep: f64) -> String {
    let mut yes = Vec::new();
    let mut no = Vec::new();
    let mut off = Vec::new();
    for p in &at_keep(c, keep).points {
        let Some((_, Some((lo, hi)))) = plotted(c, p) else {
            no.push(format!("{} (no interval)", p.series));
            continue;
        };
        let (lo, hi) = if c.metric == "accuracy" {
            (lo - 100.0 * c.dense, hi - 100.0 * c.dense)
        } else {
            (lo, hi)
        };
        let unit = if c.metric == "accuracy" {
            "points"
        } else {
            "%"
        };
        let w = format!("{} [{lo:+.2}, {hi:+.2}] {unit}", p.series);
        if lo > 0.0 || hi < 0.0 {
            yes.push(w);
        } else {
            no.push(w);
        }
        if (p.softmax_fraction - keep).abs() > 0.02 {
            off.push(format!("{} {:.1} %", p.series, 100.0 * p.softmax_fraction));
        }
    }
    let list = |v: &[String]| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(", ")
        }
    };
    format!(
        "{} {} at {:.0} % of the keys in the softmax: different from dense (95 % interval excludes 0): {}; not resolved: {}. Measured keys in the softmax more than 2 points from the target: {}.",
        c.model,
        c.task,
        100.0 * keep,
        list(&yes),
        list(&no),
        list(&off)
    )
}

/// The section, or `None` when the run had no peers' stage.
pub(super) fn peers_section(r: &Results) -> Option<Section> {
    if r.peers.is_empty() {
        return None;
    }
    let keep = r.plan.keep;
    let mut s = Section::new("peers-accuracy", "SPRINT and its peers: accuracy");
    s.paragraph(format!(
        "Every design at matched keys in the softmax: SPRINT's four variants at thresholds calibrated to each kept fraction, the five peer designs (docs/peers.md) with their own knob calibrated to it on the same calibration items (`sprint eval --peer-keep`: Sanger's probability threshold, A3's post-scoring cut, Energon's alpha shared by its rounds, a scale on SpAtten's token schedule; LeOPArd at SPRINT's thresholds). Thresholds and knobs only, no fine-tuning. The x of the plots is the measured share of the visible pairs in the softmax, not the target. Kept fractions: {:?}.",
        r.plan.peers.keeps
    ));
    for c in &r.peers {
        let id = format!("peers-{}-{}", c.model, c.task);
        s.table(curve_table(
            &format!("{id}-{:.0}", 100.0 * keep),
            &format!(
                "SPRINT and its peers at {:.0} % keys in the softmax: {} {}",
                100.0 * keep,
                c.model,
                c.task
            ),
            "target kept",
            &at_keep(c, keep),
        ));
        s.plot(peers_plot(&id, c));
        if r.plan.peers.keeps.len() > 1 {
            s.table(curve_table(
                &format!("{id}-sweep"),
                &format!(
                    "SPRINT and its peers over kept fractions: {} {}",
                    c.model, c.task
                ),
                "target kept",
                c,
            ));
        }
        s.paragraph(resolved(c, keep));
    }
    Some(s)
}
