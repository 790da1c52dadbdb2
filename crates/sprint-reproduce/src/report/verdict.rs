//! The verdict: every headline measure, ours against the paper, with where the paper's
//! value lies against our 95 % interval.

use sprint_report::{Cell, Column, Table};
use sprint_sim::paper::{PaperResults, Summary, geomean, mean};

use super::finetuned;
use super::measures::{fidelity_words, is_classification, loss_ci, loss_points, mean_ci};
use super::paper::{comparison, headline, paper_accuracy, paper_results, ratio};
use crate::error::Result;
use crate::results::{AccuracyResult, Results, SimPaperResult};

/// Where the paper's value lies against our 95 % interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Position {
    /// Inside the interval (bounds included): our data cannot tell ours from the paper's.
    Consistent,
    /// Below the interval's low end.
    Below,
    /// Above the interval's high end.
    Above,
    /// A sampled measure without an interval: not judged.
    NoInterval,
    /// A deterministic measure (the simulator): no sampling interval exists.
    Deterministic,
}

impl Position {
    /// The verdict column's word.
    pub fn word(self) -> &'static str {
        match self {
            Position::Consistent => "consistent",
            Position::Below => "below",
            Position::Above => "above",
            Position::NoInterval => "no interval",
            Position::Deterministic => "deterministic (no interval)",
        }
    }
}

/// Where `paper` lies against the 95 % interval `ci` (low, high) of a sampled measure;
/// `None` gives [`Position::NoInterval`] (never consistency), as does an interval with a
/// non-finite end.
pub fn paper_position(paper: f64, ci: Option<(f64, f64)>) -> Position {
    match ci {
        Some((lo, hi)) if lo.is_finite() && hi.is_finite() => {
            let (lo, hi) = (lo.min(hi), lo.max(hi));
            if paper < lo {
                Position::Below
            } else if paper > hi {
                Position::Above
            } else {
                Position::Consistent
            }
        }
        _ => Position::NoInterval,
    }
}

/// One verdict row: measure, configuration, ours with its interval, paper, unit, family.
pub(super) struct Verdict {
    pub(super) measure: String,
    pub(super) config: String,
    pub(super) ours: f64,
    /// 95 % interval of `ours` (sampled measures), in its unit.
    pub(super) ci95: Option<(f64, f64)>,
    /// Whether `ours` carries sampling error (accuracy, perplexity) or is deterministic.
    pub(super) sampled: bool,
    /// The continuous measure behind the row, in words.
    pub(super) continuous: String,
    pub(super) paper: f64,
    pub(super) unit: &'static str,
    pub(super) family: &'static str,
}

impl Verdict {
    /// Where the paper's value lies against ours (deterministic rows are not judged).
    pub(super) fn position(&self) -> Position {
        if self.sampled {
            paper_position(self.paper, self.ci95)
        } else {
            Position::Deterministic
        }
    }
}

/// Every verdict row: the simulator's against the paper per configuration, then the
/// accuracy losses, the fine-tuned rows and the perplexity change.
pub(super) fn verdicts(r: &Results) -> Result<Vec<Verdict>> {
    let paper = paper_results()?;
    let mut v = Vec::new();
    for s in &r.sim_paper {
        v.extend(simulator_verdicts(s, &paper));
    }
    let pa = paper_accuracy()?;
    v.extend(accuracy_verdicts(r, &pa)?);
    v.extend(finetuned_verdicts(r, &pa)?);
    v.extend(perplexity_verdict(r, &pa));
    Ok(v)
}

/// The simulator's rows of one configuration: Fig 11's speedup geomean per size, Fig 12a's
/// S-SPRINT energy reduction and Fig 10's data-movement reduction at S.
fn simulator_verdicts(s: &SimPaperResult, paper: &PaperResults) -> Vec<Verdict> {
    let mut v = Vec::new();
    let sum: Summary = comparison(s, paper).summary();
    for (i, size) in ["S", "M", "L"].iter().enumerate() {
        v.push(Verdict {
            measure: format!("Fig 11 speedup, geomean, {size}"),
            config: s.calibration.clone(),
            ours: sum.speedup_geomean[i],
            ci95: None,
            sampled: false,
            continuous: String::new(),
            paper: paper.speedup_geomean[i],
            unit: "x",
            family: "speedup",
        });
    }
    let pe: Vec<f64> = paper
        .models
        .iter()
        .map(|(_, m)| m.energy_reduction[1])
        .collect();
    v.push(Verdict {
        measure: "Fig 12a S-SPRINT energy reduction, geomean".into(),
        config: s.calibration.clone(),
        ours: sum.energy_geomean,
        ci95: None,
        sampled: false,
        continuous: String::new(),
        paper: geomean(&pe),
        unit: "x",
        family: "energy",
    });
    let dm: Vec<f64> = s
        .ours
        .iter()
        .map(|(_, o)| o.data_movement_pct[0][1])
        .collect();
    v.push(Verdict {
        measure: "Fig 10 SPRINT data-movement reduction at S, mean".into(),
        config: s.calibration.clone(),
        ours: mean(&dm),
        ci95: None,
        sampled: false,
        continuous: String::new(),
        paper: paper.data_movement_average_pct[0][1],
        unit: "%",
        family: "data-movement",
    });
    v
}

/// The functional model's accuracy loss against dense, mean over the classification tasks,
/// for SPRINT and SPRINT without recompute (against the paper's headline and Fig 9).
fn accuracy_verdicts(r: &Results, pa: &[(String, [f64; 4])]) -> Result<Vec<Verdict>> {
    let mut v = Vec::new();
    let paper_models: Vec<&[f64; 4]> = pa
        .iter()
        .filter(|(k, _)| !k.contains("perplexity"))
        .map(|(_, x)| x)
        .collect();
    let cls: Vec<&AccuracyResult> = r.accuracy.iter().filter(|a| is_classification(a)).collect();
    let tasks = cls
        .iter()
        .map(|a| format!("{} {}", a.model, a.task))
        .collect::<Vec<_>>()
        .join(", ");
    for (variant, idx, name) in [
        ("sprint", 3, "SPRINT"),
        ("sprint-no-recompute", 2, "SPRINT without recompute"),
    ] {
        let ours: Vec<f64> = cls.iter().filter_map(|a| loss_points(a, variant)).collect();
        let cis: Vec<Option<(f64, f64)>> = cls
            .iter()
            .filter(|a| loss_points(a, variant).is_some())
            .map(|a| a.row(variant).and_then(|r| r.delta_ci95).map(loss_ci))
            .collect();
        let continuous = cls
            .iter()
            .filter_map(|a| {
                let w = fidelity_words(a.row(variant)?.fidelity.as_ref());
                (!w.is_empty()).then(|| format!("{} {}: {w}", a.model, a.task))
            })
            .collect::<Vec<_>>()
            .join("; ");
        let paper_loss = if variant == "sprint" {
            headline("accuracy_loss_mean_pct")?
        } else {
            mean(
                &paper_models
                    .iter()
                    .map(|x| x[0] - x[idx])
                    .collect::<Vec<_>>(),
            )
        };
        if !ours.is_empty() {
            v.push(Verdict {
                measure: format!(
                    "{name} accuracy loss vs dense, mean ({tasks}); thresholds only, not the paper's method"
                ),
                config: "functional model".into(),
                ours: mean(&ours),
                ci95: mean_ci(&ours, &cis),
                sampled: true,
                continuous,
                paper: paper_loss,
                unit: "points",
                family: "accuracy",
            });
        }
    }
    Ok(v)
}

/// The fine-tuned rows: SPRINT against its no-pruning twin, per model.
fn finetuned_verdicts(r: &Results, pa: &[(String, [f64; 4])]) -> Result<Vec<Verdict>> {
    let mut v = Vec::new();
    for f in &r.finetuned {
        let Some(ours) = finetuned::verdict_value(f) else {
            continue;
        };
        let (paper, unit, family) = if f.metric == "accuracy" {
            (headline("accuracy_loss_mean_pct")?, "points", "accuracy")
        } else {
            let Some((_, p)) = pa.iter().find(|(k, _)| k.contains("perplexity")) else {
                continue;
            };
            (100.0 * (p[3] / p[0] - 1.0), "%", "perplexity")
        };
        v.push(Verdict {
            measure: finetuned::measure(f),
            config: "functional model, fine-tuned".into(),
            ours,
            ci95: finetuned::verdict_ci(f),
            sampled: true,
            continuous: finetuned::continuous(f),
            paper,
            unit,
            family,
        });
    }
    Ok(v)
}

/// SPRINT's perplexity change against dense on the perplexity task, against GPT-2-L's in
/// the paper (`None` without a perplexity task or its rows).
fn perplexity_verdict(r: &Results, pa: &[(String, [f64; 4])]) -> Option<Verdict> {
    if let (Some(a), Some((_, p))) = (
        r.accuracy.iter().find(|a| a.metric == "perplexity"),
        pa.iter().find(|(k, _)| k.contains("perplexity")),
    ) && let (Some(d), Some(s)) = (a.row("dense"), a.row("sprint"))
    {
        let f = s.fidelity.as_ref();
        return Some(Verdict {
            measure: format!(
                "SPRINT perplexity change vs dense ({} {}; paper: GPT-2-L); thresholds only, not the paper's method",
                a.model, a.task
            ),
            config: "functional model".into(),
            ours: 100.0 * (s.metric / d.metric - 1.0),
            ci95: f.and_then(|f| f.ppl_change_ci95),
            sampled: true,
            continuous: fidelity_words(f),
            paper: 100.0 * (p[3] / p[0] - 1.0),
            unit: "%",
            family: "perplexity",
        });
    }
    None
}

/// The verdict table: ours / paper / ratio for the headline measures.
pub fn verdict_table(r: &Results) -> Result<Table> {
    let mut t = Table::new(
        "verdict",
        "Verdict: ours against the paper",
        vec![
            Column::text("measure"),
            Column::text("configuration"),
            Column::text("unit"),
            Column::text("ours"),
            Column::text("ours 95 % low"),
            Column::text("ours 95 % high"),
            Column::text("paper"),
            Column::text("ours / paper"),
            Column::text("paper vs our interval"),
            Column::text("continuous measure"),
        ],
    );
    for v in verdicts(r)? {
        let pos = v.position();
        t.push(vec![
            Cell::text(v.measure),
            Cell::text(v.config),
            Cell::text(v.unit),
            Cell::num(v.ours, 2),
            Cell::opt(v.ci95.map(|c| c.0), 2),
            Cell::opt(v.ci95.map(|c| c.1), 2),
            Cell::num(v.paper, 2),
            Cell::opt(ratio(v.ours, v.paper), 2),
            Cell::text(pos.word()),
            Cell::text(v.continuous),
        ]);
    }
    t.note("Interval: ours' 95 % interval (accuracy: paired bootstrap over the documents; perplexity: paired block bootstrap over blocks of scored tokens; a mean over tasks: normal approximation from the tasks' intervals). \"paper vs our interval\": consistent = the paper's value lies inside it, below / above = outside it on that side; \"no interval\" = a sampled measure without one (not judged); the simulator's rows are deterministic (no sampling interval).");
    t.note("Paper values: configs/paper-results.toml (Fig 11 geomeans printed; Fig 12a geomean of its eight bars; Fig 10 printed averages; accuracy loss: the abstract's 0.36 %, and Fig 9's bars for SPRINT without recompute).");
    t.note("sourced-default: every constant from a cited source; paper-inferred: the unpublished ones fitted in two stages, the baseline's query block and the input paddings to Fig 10's Mask-only bars and Fig 12a's Baseline shares, then SPRINT's reuse policy to Fig 10's SPRINT bars (docs/simulator.md), so Fig 11 is out of sample.");
    Ok(t)
}
