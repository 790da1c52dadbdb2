//! The report of a run, built from the stage results: the verdict first (ours / paper /
//! ratio for the headline measures, then the largest deviations with their documented
//! causes), one section per figure with its tables and plots, provenance last. Every paper
//! number is read from configs/paper-results.toml; every cause from configs/report/causes.toml.

use serde::Deserialize;
use sprint_report::plot::{BarSeries, Bars, Line, Lines, Stacked};
use sprint_report::{Cell, Column, Document, Plot, Section, Table};
use sprint_sim::paper::{Comparison, PaperResults, Summary, geomean, mean};

use crate::error::{ReproduceError, Result};
use crate::mode::{Mode, Plan};
use crate::provenance::Provenance;
use crate::results::{
    AccuracyResult, CurveResult, DecodeResult, FinetunedResult, SimPaperResult, TraceSimResult,
};

mod finetuned;

/// Documented causes of deviations, by measure family.
pub const CAUSES: &str = include_str!("../../../configs/report/causes.toml");

/// Every stage's result.
#[derive(Clone, Debug)]
pub struct Results {
    /// The plan that produced them.
    pub plan: Plan,
    /// The four variants per model and task.
    pub accuracy: Vec<AccuracyResult>,
    /// SPRINT fine-tuned with its thresholds against its no-pruning twin, per model.
    pub finetuned: Vec<FinetunedResult>,
    /// Accuracy against the key bits in the crossbar.
    pub precision: CurveResult,
    /// SmolLM2 perplexity against the key bits in the crossbar (none: not run).
    pub precision_ppl: Option<CurveResult>,
    /// Accuracy against the analog non-ideality presets.
    pub noise: CurveResult,
    /// Accuracy against the kept fraction.
    pub sparsity: CurveResult,
    /// The simulator against the paper, per configuration.
    pub sim_paper: Vec<SimPaperResult>,
    /// The simulator on real traces.
    pub traces: Vec<TraceSimResult>,
    /// Decode with a growing KV cache.
    pub decode: DecodeResult,
}

#[derive(Deserialize)]
struct Cause {
    cause: String,
    doc: String,
}

fn cause(family: &str) -> Result<String> {
    let all: std::collections::BTreeMap<String, Cause> = toml::from_str(CAUSES)
        .map_err(|e| ReproduceError::Usage(format!("configs/report/causes.toml: {e}")))?;
    Ok(all
        .get(family)
        .map_or_else(String::new, |c| format!("{} (see {})", c.cause, c.doc)))
}

/// The paper's Fig 9 numbers: model -> [baseline, runtime pruning, no recompute, SPRINT].
fn paper_accuracy() -> Result<Vec<(String, [f64; 4])>> {
    let doc: toml::Table = toml::from_str(sprint_sim::paper::PAPER_RESULTS)
        .map_err(|e| ReproduceError::Usage(format!("configs/paper-results.toml: {e}")))?;
    let acc = doc
        .get("accuracy")
        .and_then(|v| v.as_table())
        .ok_or_else(|| ReproduceError::Usage("configs/paper-results.toml: no [accuracy]".into()))?;
    let mut out = Vec::new();
    for (k, v) in acc {
        if let Some(a) = v.as_array() {
            let xs: Vec<f64> = a
                .iter()
                .filter_map(|x| x.as_float().or_else(|| x.as_integer().map(|i| i as f64)))
                .collect();
            if xs.len() == 4 {
                out.push((k.clone(), [xs[0], xs[1], xs[2], xs[3]]));
            }
        }
    }
    Ok(out)
}

fn headline(key: &str) -> Result<f64> {
    let doc: toml::Table = toml::from_str(sprint_sim::paper::PAPER_RESULTS)
        .map_err(|e| ReproduceError::Usage(format!("configs/paper-results.toml: {e}")))?;
    doc.get("headline")
        .and_then(|h| h.get(key))
        .and_then(|v| v.as_float())
        .ok_or_else(|| ReproduceError::Usage(format!("configs/paper-results.toml: headline.{key}")))
}

fn comparison(s: &SimPaperResult, paper: &PaperResults) -> Comparison {
    Comparison {
        paper: paper.clone(),
        ours: s.ours.clone(),
        energy_table: s.energy_table.clone(),
        stats_source: s.stats_source.clone(),
        calibration: s.calibration.clone(),
    }
}

fn ratio(ours: f64, paper: f64) -> Option<f64> {
    (paper != 0.0 && ours.is_finite()).then(|| ours / paper)
}

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
struct Verdict {
    measure: String,
    config: String,
    ours: f64,
    /// 95 % interval of `ours` (sampled measures), in its unit.
    ci95: Option<(f64, f64)>,
    /// Whether `ours` carries sampling error (accuracy, perplexity) or is deterministic.
    sampled: bool,
    /// The continuous measure behind the row, in words.
    continuous: String,
    paper: f64,
    unit: &'static str,
    family: &'static str,
}

impl Verdict {
    fn position(&self) -> Position {
        if self.sampled {
            paper_position(self.paper, self.ci95)
        } else {
            Position::Deterministic
        }
    }
}

/// Loss (points) interval from a delta interval (fractions): `-(hi, lo)`, scaled.
fn loss_ci(ci: (f64, f64)) -> (f64, f64) {
    // 0.0 - x, not -x: a zero bound stays +0 (printed 0.00, not -0.00).
    (0.0 - 100.0 * ci.1, 0.0 - 100.0 * ci.0)
}

/// The interval of a mean of independent measures from theirs: the centre is the mean of
/// the measures, the half-width the root sum of squared half-widths over their count (the
/// normal approximation); one measure keeps its own interval. `None` if any is missing.
fn mean_ci(values: &[f64], cis: &[Option<(f64, f64)>]) -> Option<(f64, f64)> {
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
fn fidelity_words(f: Option<&sprint_eval::fidelity::Fidelity>) -> String {
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

fn is_classification(a: &AccuracyResult) -> bool {
    a.metric == "accuracy"
}

fn loss_points(a: &AccuracyResult, variant: &str) -> Option<f64> {
    let d = a.row("dense")?.metric;
    Some(100.0 * (d - a.row(variant)?.metric))
}

fn verdicts(r: &Results) -> Result<Vec<Verdict>> {
    let paper = PaperResults::load().map_err(|e| ReproduceError::stage("report", e))?;
    let mut v = Vec::new();
    for s in &r.sim_paper {
        let sum: Summary = comparison(s, &paper).summary();
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
    }
    let pa = paper_accuracy()?;
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
    if let (Some(a), Some((_, p))) = (
        r.accuracy.iter().find(|a| a.metric == "perplexity"),
        pa.iter().find(|(k, _)| k.contains("perplexity")),
    ) && let (Some(d), Some(s)) = (a.row("dense"), a.row("sprint"))
    {
        let f = s.fidelity.as_ref();
        v.push(Verdict {
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
    Ok(v)
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

fn deviations(r: &Results) -> Result<Vec<String>> {
    let paper = PaperResults::load().map_err(|e| ReproduceError::stage("report", e))?;
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

fn pct(x: f64) -> Cell {
    Cell::num(100.0 * x, 2)
}

fn metric_cell(a: &str, x: f64) -> Cell {
    if a == "accuracy" {
        pct(x)
    } else {
        Cell::num(x, 3)
    }
}

fn metric_unit(a: &str) -> &'static str {
    if a == "accuracy" { "%" } else { "perplexity" }
}

fn accuracy_section(r: &Results) -> Result<Section> {
    let mut s = Section::new(
        "accuracy",
        "Accuracy of the four attention variants (Fig 9)",
    );
    s.paragraph("Each task runs dense attention, runtime pruning (exact scores, threshold), SPRINT without recompute (in-memory approximate scores, 1-bit comparator, no digital recompute) and SPRINT, with the same thresholds. Kept = keys moved on chip; softmax = keys in the softmax; both as a share of the visible (query, key) pairs.");
    for a in &r.accuracy {
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
        s.table(t);
    }
    let pa = paper_accuracy()?;
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
    for (m, x) in &pa {
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
    s.table(t);
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
    s.plot(Plot::Bars(Bars {
        id: "fig9-accuracy-loss".into(),
        title: "Accuracy loss against dense attention (Fig 9)".into(),
        x_label: "attention variant".into(),
        y_label: "accuracy loss (points)".into(),
        categories: variants.iter().map(|v| v.to_string()).collect(),
        series,
    }));
    Ok(s)
}

fn curve_table(id: &str, title: &str, x_name: &str, c: &CurveResult) -> Table {
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
    // Perplexity curves with next-token distributions compared: the mean per-token KL.
    let token_kl = !cls
        && c.points.iter().any(|p| {
            p.fidelity
                .as_ref()
                .is_some_and(|f| f.token_kl_mean.is_some())
        });
    if token_kl {
        columns.push(Column::unit("token KL vs dense", "nats"));
    }
    let reference = c.reference.clone();
    if let Some(r) = &reference {
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
    let mut t = Table::new(id, title, columns);
    for p in &c.points {
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
        if reference.is_some() {
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
        t.push(cells);
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

/// The continuous measure of a curve against x, one line per series: the mean posterior KL
/// from dense (classification), or the mean NLL increase per token over dense,
/// `ln(perplexity / dense)` (perplexity; finite however large the change).
fn continuous_plot(
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

fn curve_lines(
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
        })
        .collect();
    (lines, vec![("dense".into(), scale * c.dense)])
}

fn sweeps_sections(r: &Results) -> Vec<Section> {
    let y = |c: &CurveResult| {
        if c.metric == "accuracy" {
            "accuracy (%)".to_string()
        } else {
            "perplexity".to_string()
        }
    };
    let mut p = Section::new("precision", "Precision of the in-memory score (Fig 5)");
    p.paragraph("SPRINT and SPRINT without recompute with K_MSB = 1..6 key bits in the crossbar (the rest recomputed from K_LSB on chip), at fixed thresholds. The paper: accuracy collapses at 1-2 bits, is close at 3 and flat from 4 upward (Fig 5; its numbers are not printed, so no paper line is drawn).");
    p.table(curve_table(
        "precision",
        "Accuracy against key bits in the crossbar",
        "K_MSB bits",
        &r.precision,
    ));
    let (lines, refs) = curve_lines(&r.precision, |x| x.x);
    p.plot(Plot::Lines(Lines {
        id: "fig5-precision".into(),
        title: "Accuracy against the in-memory key precision (Fig 5)".into(),
        x_label: "key bits in the crossbar (K_MSB)".into(),
        y_label: y(&r.precision),
        lines,
        references: refs,
    }));
    let kl_shape = fig5_shape_kl(&r.precision);
    if !kl_shape.is_empty() {
        p.paragraph(kl_shape);
    }
    p.plot(continuous_plot(
        "fig5-precision-kl",
        "Class-posterior KL from dense against the in-memory key precision (Fig 5, BBC)",
        "key bits in the crossbar (K_MSB)",
        &r.precision,
        |x| x.x,
    ));
    if let Some(c) = &r.precision_ppl {
        p.table(curve_table(
            "precision-smollm2",
            "Perplexity against key bits in the crossbar (SmolLM2)",
            "K_MSB bits",
            c,
        ));
        p.plot(continuous_plot(
            "fig5-precision-smollm2",
            "SmolLM2 perplexity against the in-memory key precision (Fig 5)",
            "key bits in the crossbar (K_MSB)",
            c,
            |x| x.x,
        ));
        if let Some(kl) = token_kl_plot(c) {
            p.plot(kl);
        }
        let shape = fig5_shape(c);
        if !shape.is_empty() {
            p.paragraph(shape);
        }
    }

    let mut k = Section::new("sparsity", "Accuracy against kept keys");
    k.paragraph("Per-layer quantile calibration at several kept fractions, and the learned per-head thresholds, for runtime pruning, SPRINT without recompute and SPRINT; x is the share of visible keys that enter the softmax. Beyond the paper, which shows one operating point per model.");
    k.table(curve_table(
        "sparsity",
        "Accuracy against keys in the softmax",
        "thresholds",
        &r.sparsity,
    ));
    let (lines, refs) = curve_lines(&r.sparsity, |x| x.x);
    k.plot(Plot::Lines(Lines {
        id: "accuracy-vs-kept".into(),
        title: "Accuracy against keys in the softmax".into(),
        x_label: "keys in the softmax (% of visible)".into(),
        y_label: y(&r.sparsity),
        lines,
        references: refs,
    }));
    k.plot(continuous_plot(
        "kl-vs-kept",
        "Class-posterior KL from dense against keys in the softmax",
        "keys in the softmax (% of visible)",
        &r.sparsity,
        |x| x.x,
    ));

    let mut n = Section::new("noise", "Accuracy against analog non-idealities");
    n.paragraph("The non-ideality presets of docs/non-idealities.md (ideal, typical, pessimistic: conductance variation, read noise, comparator offset, stuck cells, finite on/off ratio, IR drop), at fixed thresholds. Beyond the paper, which assumes ideal crossbars.");
    n.table(curve_table(
        "noise",
        "Accuracy against the non-ideality preset",
        "preset",
        &r.noise,
    ));
    let presets: Vec<String> = {
        let mut v: Vec<String> = Vec::new();
        for q in &r.noise.points {
            if !v.contains(&q.x_label) {
                v.push(q.x_label.clone());
            }
        }
        v
    };
    let scale = if r.noise.metric == "accuracy" {
        100.0
    } else {
        1.0
    };
    let mut series: Vec<BarSeries> = Vec::new();
    for q in &r.noise.points {
        if !series.iter().any(|s| s.name == q.series) {
            series.push(BarSeries {
                name: q.series.clone(),
                values: presets
                    .iter()
                    .map(|pz| {
                        r.noise
                            .points
                            .iter()
                            .find(|z| z.series == q.series && &z.x_label == pz)
                            .map(|z| scale * z.metric)
                    })
                    .collect(),
                paper: false,
            });
        }
    }
    series.push(BarSeries {
        name: "dense".into(),
        values: presets
            .iter()
            .map(|_| Some(scale * r.noise.dense))
            .collect(),
        paper: false,
    });
    n.plot(continuous_plot(
        "kl-vs-noise",
        "Class-posterior KL from dense against the non-ideality preset (0 ideal, 1 typical, 2 pessimistic)",
        "non-ideality preset (index)",
        &r.noise,
        |x| x.x,
    ));
    n.plot(Plot::Bars(Bars {
        id: "accuracy-vs-noise".into(),
        title: "Accuracy under analog non-idealities".into(),
        x_label: "non-ideality preset".into(),
        y_label: y(&r.noise),
        categories: presets,
        series,
    }));
    vec![p, k, n]
}

/// Fig 5's shape on a classification curve, in numbers: per series, the class-posterior KL
/// from the reference point (the most bits) with its 95 % bootstrap interval at every bit
/// width, and whether the 1-2-bit points are resolved from the 4+-bit points.
fn fig5_shape_kl(c: &CurveResult) -> String {
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
fn token_kl_plot(c: &CurveResult) -> Option<Plot> {
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
fn fig5_shape(c: &CurveResult) -> String {
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

fn sim_sections(r: &Results) -> Result<Vec<Section>> {
    let paper = PaperResults::load().map_err(|e| ReproduceError::stage("report", e))?;
    let models: Vec<String> = paper.models.iter().map(|(n, _)| n.clone()).collect();
    let sizes = ["S", "M", "L"];

    let mut dm = Section::new("data-movement", "Data movement (Fig 10)");
    dm.paragraph("Reduction of the K and V bytes moved from ReRAM against S-Baseline, per model and buffer size, for Mask only (skip padding) and SPRINT. The paper's values are read off Fig 10.");
    let mut sp = Section::new("speedup", "Speedup (Fig 11)");
    sp.paragraph("Self-attention time of SPRINT against the same-size baseline (S: 16 KB, M, L), on the paper's model shapes with kept sets drawn from statistics measured on real traces.");
    let mut en = Section::new("energy", "Energy (Fig 12a)");
    en.paragraph("Energy reduction over S-Baseline of Pruning only and S-SPRINT (Fig 12a's categories; on-chip leakage, which Fig 12a does not show, excluded), and our energy by component normalised to each model's S-Baseline.");
    for s in &r.sim_paper {
        let mut t = Table::new(
            &format!("fig10-data-movement-{}", s.calibration),
            &format!(
                "Data-movement reduction vs S-Baseline, {} (ours / paper)",
                s.calibration
            ),
            std::iter::once(Column::text("model"))
                .chain(sizes.iter().flat_map(|z| {
                    [
                        Column::unit(&format!("{z} mask only ours"), "%"),
                        Column::unit(&format!("{z} mask only paper"), "%"),
                        Column::unit(&format!("{z} SPRINT ours"), "%"),
                        Column::unit(&format!("{z} SPRINT paper"), "%"),
                    ]
                }))
                .collect(),
        );
        for ((m, o), (_, p)) in s.ours.iter().zip(&paper.models) {
            let mut row = vec![Cell::text(m)];
            for z in 0..3 {
                for k in 0..2 {
                    row.push(Cell::num(o.data_movement_pct[z][k], 1));
                    row.push(Cell::num(p.data_movement_pct[z][k], 1));
                }
            }
            // Order: mask ours, mask paper, sprint ours, sprint paper per size.
            t.push(row);
        }
        dm.table(t);
        let mut t = Table::new(
            &format!("fig11-speedup-{}", s.calibration),
            &format!("Speedup over the same-size baseline, {}", s.calibration),
            std::iter::once(Column::text("model"))
                .chain(sizes.iter().flat_map(|z| {
                    [
                        Column::unit(&format!("{z} ours"), "x"),
                        Column::unit(&format!("{z} paper"), "x"),
                        Column::unit(&format!("{z} ours / paper"), "ratio"),
                    ]
                }))
                .collect(),
        );
        for ((m, o), (_, p)) in s.ours.iter().zip(&paper.models) {
            let mut row = vec![Cell::text(m)];
            for z in 0..3 {
                row.push(Cell::num(o.speedup[z], 2));
                row.push(Cell::num(p.speedup[z], 2));
                row.push(Cell::opt(ratio(o.speedup[z], p.speedup[z]), 2));
            }
            t.push(row);
        }
        sp.table(t);
        let mut series: Vec<BarSeries> = (0..3)
            .map(|z| BarSeries {
                name: format!("ours {}", sizes[z]),
                values: s.ours.iter().map(|(_, o)| Some(o.speedup[z])).collect(),
                paper: false,
            })
            .collect();
        series.extend((0..3).map(|z| {
            BarSeries {
                name: format!("paper {}", sizes[z]),
                values: paper
                    .models
                    .iter()
                    .map(|(_, p)| Some(p.speedup[z]))
                    .collect(),
                paper: true,
            }
        }));
        sp.plot(Plot::Bars(Bars {
            id: format!("fig11-speedup-{}", s.calibration),
            title: format!(
                "Speedup over the same-size baseline (Fig 11), {}",
                s.calibration
            ),
            x_label: "workload".into(),
            y_label: "speedup (x)".into(),
            categories: models.clone(),
            series,
        }));
        let mut t = Table::new(
            &format!("fig12a-energy-{}", s.calibration),
            &format!("Energy reduction over S-Baseline, {}", s.calibration),
            vec![
                Column::text("model"),
                Column::unit("Pruning only ours", "x"),
                Column::unit("Pruning only paper", "x"),
                Column::unit("S-SPRINT ours", "x"),
                Column::unit("S-SPRINT paper", "x"),
                Column::unit("S-SPRINT ours / paper", "ratio"),
            ],
        );
        for ((m, o), (_, p)) in s.ours.iter().zip(&paper.models) {
            t.push(vec![
                Cell::text(m),
                Cell::num(o.energy_reduction[0], 2),
                Cell::num(p.energy_reduction[0], 2),
                Cell::num(o.energy_reduction[1], 2),
                Cell::num(p.energy_reduction[1], 2),
                Cell::opt(ratio(o.energy_reduction[1], p.energy_reduction[1]), 2),
            ]);
        }
        en.table(t);
    }
    // Fig 10 plot (SPRINT at S, both configurations against the paper) and the stacked
    // energy of the sourced default.
    let mut series: Vec<BarSeries> = r
        .sim_paper
        .iter()
        .map(|s| BarSeries {
            name: format!("ours, {}", s.calibration),
            values: s
                .ours
                .iter()
                .map(|(_, o)| Some(o.data_movement_pct[0][1]))
                .collect(),
            paper: false,
        })
        .collect();
    series.push(BarSeries {
        name: "paper".into(),
        values: paper
            .models
            .iter()
            .map(|(_, p)| Some(p.data_movement_pct[0][1]))
            .collect(),
        paper: true,
    });
    dm.plot(Plot::Bars(Bars {
        id: "fig10-data-movement".into(),
        title: "SPRINT's data-movement reduction at S (Fig 10)".into(),
        x_label: "workload".into(),
        y_label: "K and V bytes saved vs S-Baseline (%)".into(),
        categories: models.clone(),
        series,
    }));
    if let Some(s) = r.sim_paper.first() {
        let mut cats = Vec::new();
        let mut parts: Vec<(String, Vec<f64>)> = Vec::new();
        for (m, designs) in &s.fig12a {
            let base = designs
                .first()
                .map_or(1.0, |d| d.fig12a_energy_pj.max(1e-30));
            // Three bars per workload (S-Baseline, Pruning only, S-SPRINT), named once.
            for (k, d) in designs.iter().enumerate() {
                cats.push(if k == 1 { m.clone() } else { String::new() });
                for (k, v) in &d.energy_pj {
                    if k == "onchip_leakage" {
                        continue;
                    }
                    let i = match parts.iter().position(|(n, _)| n == k) {
                        Some(i) => i,
                        None => {
                            parts.push((k.clone(), Vec::new()));
                            parts.len() - 1
                        }
                    };
                    let col = &mut parts[i].1;
                    col.resize(cats.len() - 1, 0.0);
                    col.push(100.0 * v / base);
                }
            }
        }
        for (_, col) in &mut parts {
            col.resize(cats.len(), 0.0);
        }
        parts.retain(|(_, v)| v.iter().any(|&x| x > 0.05));
        en.plot(Plot::Stacked(Stacked {
            id: "fig12a-energy-components".into(),
            title: format!(
                "Energy by component, normalised to S-Baseline (Fig 12a), {}",
                s.calibration
            ),
            x_label: "workload and design".into(),
            y_label: "energy (% of the model's S-Baseline)".into(),
            categories: cats,
            components: parts,
        }));
        let mut t = Table::new(
            "fig12a-baseline-shares",
            "S-Baseline's ReRAM read and write shares of energy: ours against Fig 12a",
            vec![
                Column::text("model"),
                Column::unit("ReRAM read ours", "%"),
                Column::unit("ReRAM read paper", "%"),
                Column::unit("ReRAM write ours", "%"),
                Column::unit("ReRAM write paper", "%"),
            ],
        );
        for (m, shares) in &paper.baseline_shares {
            if let Some((_, d)) = s.fig12a.iter().find(|(n, _)| n == m)
                && let Some(b) = d.first()
            {
                let part = |k: &str| {
                    b.energy_pj
                        .iter()
                        .find(|(n, _)| n == k)
                        .map_or(0.0, |x| x.1)
                        / b.fig12a_energy_pj.max(1e-30)
                };
                t.push(vec![
                    Cell::text(m),
                    Cell::num(100.0 * part("reram_read"), 1),
                    Cell::num(shares[0], 1),
                    Cell::num(100.0 * part("reram_write"), 1),
                    Cell::num(shares[1], 1),
                ]);
            }
        }
        en.table(t);
    }
    let mut tr = Section::new("traces", "The simulator on real traces");
    tr.paragraph("The SPRINT traces of the first evaluated sequence of each accuracy run (real kept sets and locality counts), and of one SmolLM2 window at GPT-2-L's 1024 tokens where the accuracy run's windows are shorter (at that run's calibrated thresholds), replayed on S, M and L: SPRINT against the same-size baseline (query-tiled, 8 queries per CORELET). Where a head's K and V fit the buffer (short sequences, larger buffers), the baseline fetches each key once and SPRINT, whose residency table keeps fetched keys while they fit, fetches at most as much; on longer sequences the baseline re-streams each head's K and V once per block of queries while SPRINT fetches only the kept keys that are not on chip.");
    let mut t = Table::new(
        "traces",
        "SPRINT against the same-size baseline on real traces",
        vec![
            Column::text("trace"),
            Column::text("size"),
            Column::unit("speedup", "x"),
            Column::unit("energy reduction", "x"),
            Column::unit("K and V bytes saved", "%"),
        ],
    );
    let mut cats = Vec::new();
    let mut speed = Vec::new();
    let mut energy = Vec::new();
    for x in &r.traces {
        for (z, size) in sizes.iter().enumerate() {
            let (Some(b), Some(s)) = (x.designs.get(2 * z), x.designs.get(2 * z + 1)) else {
                continue;
            };
            let sp_ = b.cycles as f64 / s.cycles.max(1) as f64;
            let en_ = b.energy_total_pj / s.energy_total_pj.max(1e-30);
            let saved = if b.kv_bytes > 0 {
                100.0 * (1.0 - s.kv_bytes as f64 / b.kv_bytes as f64)
            } else {
                0.0
            };
            t.push(vec![
                Cell::text(&x.label),
                Cell::text(*size),
                Cell::num(sp_, 2),
                Cell::num(en_, 2),
                Cell::num(saved, 1),
            ]);
            let short = x.label.split(':').next().unwrap_or_default();
            let short = short.split(" (").next().unwrap_or(short);
            cats.push(format!("{short} {size}"));
            speed.push(Some(sp_));
            energy.push(Some(en_));
        }
    }
    tr.table(t);
    if !cats.is_empty() {
        tr.plot(Plot::Bars(Bars {
            id: "traces-speedup-energy".into(),
            title: "SPRINT on real traces: speedup and energy reduction".into(),
            x_label: "trace and size".into(),
            y_label: "ratio over the same-size baseline (x)".into(),
            categories: cats,
            series: vec![
                BarSeries {
                    name: "speedup".into(),
                    values: speed,
                    paper: false,
                },
                BarSeries {
                    name: "energy reduction".into(),
                    values: energy,
                    paper: false,
                },
            ],
        }));
    }
    Ok(vec![dm, sp, en, tr])
}

fn decode_section(d: &DecodeResult) -> Section {
    let mut s = Section::new(
        "decode",
        "Decode with a growing KV cache (beyond the paper)",
    );
    s.paragraph(format!("{}. Each new token's K is written into the crossbars and its V into ReRAM; the table gives time, energy with the ReRAM write share, and the lifetime of a cell.", d.label));
    let mut t = Table::new(
        "decode",
        "Decode: S-Baseline against S-SPRINT",
        vec![
            Column::text("design"),
            Column::unit("tokens per second per sequence", "tokens/s"),
            Column::unit("speedup", "x"),
            Column::unit("energy", "uJ"),
            Column::unit("energy reduction", "x"),
            Column::unit("ReRAM write share", "%"),
            Column::unit("ReRAM read share", "%"),
            Column::unit("write stall", "% of cycles"),
            Column::unit("cell lifetime at the simulated rate", "days"),
        ],
    );
    for r in &d.rows {
        t.push(vec![
            Cell::text(&r.design),
            Cell::num(r.tokens_per_s, 1),
            Cell::num(r.speedup, 2),
            Cell::num(r.energy_pj * 1e-6, 1),
            Cell::num(r.energy_reduction, 2),
            pct(r.write_energy_share),
            pct(r.read_energy_share),
            Cell::num(
                100.0 * r.write_stall_cycles as f64 / r.cycles.max(1) as f64,
                2,
            ),
            Cell::num(r.lifetime_s_at_simulated_rate / 86400.0, 2),
        ]);
    }
    t.note(format!(
        "Endurance {:e} writes per cell; at the stated {} tokens/s per sequence a cell lasts {:.1} days.",
        d.endurance_writes,
        d.token_rate_per_s,
        d.lifetime_s_at_stated_rate / 86400.0
    ));
    s.table(t);
    s.plot(Plot::Stacked(Stacked {
        id: "decode-energy".into(),
        title: "Decode energy by kind".into(),
        x_label: "design".into(),
        y_label: "energy (uJ)".into(),
        categories: d.rows.iter().map(|r| r.design.clone()).collect(),
        components: vec![
            (
                "ReRAM write".into(),
                d.rows
                    .iter()
                    .map(|r| r.energy_pj * r.write_energy_share * 1e-6)
                    .collect(),
            ),
            (
                "ReRAM read".into(),
                d.rows
                    .iter()
                    .map(|r| r.energy_pj * r.read_energy_share * 1e-6)
                    .collect(),
            ),
            (
                "on chip and other".into(),
                d.rows
                    .iter()
                    .map(|r| {
                        r.energy_pj * (1.0 - r.write_energy_share - r.read_energy_share) * 1e-6
                    })
                    .collect(),
            ),
        ],
    }));
    s
}

fn provenance_section(p: &Provenance) -> Section {
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

/// The resolution the run's sizes gave, in numbers: per task, what one item is worth and
/// the width of SPRINT's interval against the size of its effect.
fn resolution(r: &Results) -> String {
    let mut parts = Vec::new();
    for a in &r.accuracy {
        let Some(s) = a.row("sprint") else { continue };
        if is_classification(a) {
            let n = s.fidelity.as_ref().map_or(0, |f| f.items);
            let w = s.delta_ci95.map(|(lo, hi)| 100.0 * (hi - lo));
            parts.push(format!(
                "{} {}: {} (one document {:.2} points); SPRINT's loss {:.2} points, its 95 % interval {} points wide",
                a.model,
                a.task,
                a.items,
                if n > 0 { 100.0 / n as f64 } else { f64::NAN },
                -100.0 * s.delta.unwrap_or(f64::NAN),
                w.map_or_else(|| "(none)".to_string(), |w| format!("{w:.2}"))
            ));
        } else if let Some(f) = &s.fidelity
            && let (Some(c), Some((lo, hi))) = (f.ppl_change_pct, f.ppl_change_ci95)
        {
            parts.push(format!(
                "{} {}: {} of {} tokens ({} blocks); SPRINT's perplexity change {c:+.2} %, its 95 % interval {:.2} % wide",
                a.model,
                a.task,
                a.items,
                a.seq_len,
                f.blocks.unwrap_or(0),
                hi - lo
            ));
        }
    }
    for f in &r.finetuned {
        if let (Some(v), Some((lo, hi))) = (finetuned::verdict_value(f), finetuned::verdict_ci(f)) {
            parts.push(format!(
                "{} {} fine-tuned: {}; SPRINT against its twin {v:.2} {}, its 95 % interval {:.2} wide",
                f.model,
                f.task,
                f.items,
                if f.metric == "accuracy" { "points" } else { "%" },
                hi - lo
            ));
        }
    }
    format!("Resolution of this run: {}.", parts.join("; "))
}

/// The whole report.
pub fn document(r: &Results, p: &Provenance) -> Result<Document> {
    let mut v = Section::new("verdict", "Verdict");
    v.paragraph(format!(
        "sprint {} reproduction of SPRINT (MICRO 2022): {} run ({}). Ratios are ours / paper; the simulator is shown in two configurations, the sourced default and the labelled paper-inferred one.",
        p.version,
        match r.plan.mode {
            Mode::Quick => "quick",
            Mode::Full => "full",
        },
        match r.plan.mode {
            Mode::Quick => "real subsets sized for resolution: every sampled number carries its 95 % interval",
            Mode::Full => "the full data sets",
        }
    ));
    v.paragraph(resolution(r));
    v.table(verdict_table(r)?);
    v.paragraph("Largest deviations, with their documented causes: only the rows whose 95 % interval excludes the paper's value (a row whose interval holds it is consistent with the paper, whatever its ratio), and the simulator's rows, which are deterministic (no sampling interval) and listed when ours / paper is outside 0.8-1.25; the largest of each measure family and configuration:");
    v.list(deviations(r)?);
    let mut sections = vec![v, accuracy_section(r)?];
    sections.push(finetuned::section(&r.plan, &r.finetuned));
    sections.extend(sweeps_sections(r));
    sections.extend(sim_sections(r)?);
    sections.push(decode_section(&r.decode));
    sections.push(provenance_section(p));
    Ok(Document {
        title: "SPRINT reproduction report".into(),
        sections,
    })
}
