//! Accuracy against kept fraction (the paper's Fig 9 as curves): for each threshold method
//! (score quantile, softmax mass, learned thresholds files) and target, the task's metric
//! under each attention variant with the kept fractions it reached (in memory and in the
//! softmax). Calibrations use the training items of [`crate::learn::training_items`],
//! disjoint from the evaluated ones.

use std::path::PathBuf;

use serde::Serialize;
use sprint_assets::Cache;
use sprint_core::config::Variant;
use sprint_models::LoadedModel;

use crate::error::Result;
use crate::learn::{LearnOptions, LearnProgress, score_stats, training_items};
use crate::run::{EvalOptions, Progress, ThresholdChoice, evaluate};

/// A threshold method of a sweep.
#[derive(Clone, Debug, PartialEq)]
pub enum SweepMethod {
    /// Per-layer (or per-head) score quantile keeping a target fraction of the pairs.
    Quantile,
    /// Per-layer (or per-head) threshold keeping a target share of the softmax mass.
    Mass,
    /// A thresholds file (e.g. learned), labelled `label`.
    File {
        /// Label in the outputs.
        label: String,
        /// The file.
        path: PathBuf,
    },
}

/// What to sweep.
#[derive(Clone, Debug)]
pub struct SweepOptions {
    /// The evaluation (task, limit, seq_len, seed, attention configuration, batch size);
    /// its variants are run for every point, dense once.
    pub eval: EvalOptions,
    /// The calibration items (their task, items, seq_len, limit, reserved windows, seed).
    pub calib: LearnOptions,
    /// Methods.
    pub methods: Vec<SweepMethod>,
    /// Targets of the quantile (kept fraction) and mass (softmax share) methods, in (0, 1].
    pub targets: Vec<f64>,
    /// One threshold per head for the calibrated methods.
    pub per_head: bool,
}

/// One point of a sweep.
#[derive(Clone, Debug, Serialize)]
pub struct SweepRow {
    /// `quantile`, `mass`, or a file's label.
    pub method: String,
    /// The target (kept fraction or softmax share); none for files.
    pub target: Option<f64>,
    /// Variant name.
    pub variant: String,
    /// The metric (accuracy as a fraction, or perplexity).
    pub metric: f64,
    /// `metric - dense`.
    pub delta: f64,
    /// Accuracy tasks: 95 % paired-bootstrap interval of `delta` over the evaluated items
    /// ([`crate::paired`]).
    pub delta_ci95: Option<(f64, f64)>,
    /// Fraction of visible pairs kept in memory (moved on chip).
    pub kept_fraction: f64,
    /// Fraction of visible pairs in the softmax.
    pub softmax_fraction: f64,
    /// Continuous fidelity to the dense run on the same items ([`crate::fidelity`]).
    pub fidelity: Option<crate::fidelity::Fidelity>,
}

/// The result of a sweep.
#[derive(Clone, Debug, Serialize)]
pub struct SweepReport {
    /// Model name.
    pub model: String,
    /// Task name.
    pub task: String,
    /// `accuracy` or `perplexity`.
    pub metric: String,
    /// The evaluated data.
    pub split: String,
    /// The calibration data.
    pub calibration: String,
    /// The dense metric.
    pub dense: f64,
    /// One row per (method, target, variant).
    pub rows: Vec<SweepRow>,
}

struct Quiet;
impl LearnProgress for Quiet {
    fn stage(&self, _w: &str, _l: u64) {}
    fn inc(&self, _s: Option<&str>) {}
}

/// Runs the sweep; `progress` sees each evaluation's stages.
pub fn sweep(
    model: &LoadedModel,
    cache: &Cache,
    o: &SweepOptions,
    progress: &dyn Progress,
) -> Result<SweepReport> {
    let mut dense_opts = o.eval.clone();
    dense_opts.variants = vec![Variant::Dense];
    let dense = evaluate(model, cache, &dense_opts, progress)?;
    let dense_metric = dense.rows[0].metric;
    let task = o.eval.task;
    let needs_stats = o
        .methods
        .iter()
        .any(|m| matches!(m, SweepMethod::Quantile | SweepMethod::Mass));
    let (stats, calibration) = if needs_stats {
        progress.stage("calibration items", 0);
        let (seqs, split) = training_items(model, cache, task, &o.calib)?;
        (Some(score_stats(model, &seqs, &Quiet)?), split)
    } else {
        (None, String::new())
    };
    let variants: Vec<Variant> = o
        .eval
        .variants
        .iter()
        .copied()
        .filter(|&v| v != Variant::Dense)
        .collect();
    let mut rows = Vec::new();
    for m in &o.methods {
        let points: Vec<(String, Option<f64>, ThresholdChoice)> = match (m, &stats) {
            (SweepMethod::File { label, path }, _) => {
                vec![(label.clone(), None, ThresholdChoice::File(path.clone()))]
            }
            (SweepMethod::Quantile, Some(st)) => o
                .targets
                .iter()
                .map(|&t| {
                    Ok((
                        "quantile".to_string(),
                        Some(t),
                        ThresholdChoice::Given {
                            thresholds: st.thresholds(t, o.per_head)?,
                            method: format!("quantile keep {t}"),
                        },
                    ))
                })
                .collect::<Result<_>>()?,
            (SweepMethod::Mass, Some(st)) => o
                .targets
                .iter()
                .map(|&t| {
                    Ok((
                        "mass".to_string(),
                        Some(t),
                        ThresholdChoice::Given {
                            thresholds: st.mass_thresholds(t, o.per_head)?,
                            method: format!("softmax mass {t}"),
                        },
                    ))
                })
                .collect::<Result<_>>()?,
            _ => unreachable!("statistics are collected for the calibrated methods"),
        };
        for (label, target, choice) in points {
            let mut e = o.eval.clone();
            e.variants = variants.clone();
            e.thresholds = choice;
            e.save_thresholds = None;
            e.trace = None;
            e.dump_windows = None;
            let r = evaluate(model, cache, &e, progress)?;
            for row in r.rows {
                let delta_ci95 = match (&dense.rows[0].item_correct, &row.item_correct) {
                    (Some(d), Some(c)) => Some(crate::paired::paired_accuracy_delta(d, c)?.ci95),
                    _ => None,
                };
                let fidelity = Some(crate::fidelity::compare(
                    &dense.rows[0].outputs,
                    &row.outputs,
                )?);
                rows.push(SweepRow {
                    fidelity,
                    method: label.clone(),
                    target,
                    variant: row.variant,
                    metric: row.metric,
                    delta: row.metric - dense_metric,
                    delta_ci95,
                    kept_fraction: row.kept_fraction,
                    softmax_fraction: row.softmax_fraction,
                });
            }
        }
    }
    Ok(SweepReport {
        model: model.name.clone(),
        task: task.name().into(),
        metric: task.metric_name().into(),
        split: dense.split,
        calibration,
        dense: dense_metric,
        rows,
    })
}

impl SweepReport {
    /// The sweep as a table: one row per (method, target, variant), with the dense metric.
    pub fn table(&self) -> sprint_report::Table {
        use sprint_report::{Cell, Column, Table};
        let mut t = Table::new(
            "sweep-sparsity",
            &format!(
                "{} on {}: {} against kept keys",
                self.model, self.task, self.metric
            ),
            vec![
                Column::text("model"),
                Column::text("task"),
                Column::text("method"),
                Column::text("target"),
                Column::text("variant"),
                Column::text("metric"),
                Column::text("value"),
                Column::text("dense"),
                Column::text("delta"),
                Column::text("delta_ci95_low"),
                Column::text("delta_ci95_high"),
                Column::unit("kept_fraction", "fraction"),
                Column::unit("softmax_fraction", "fraction"),
            ],
        );
        for r in &self.rows {
            t.push(vec![
                Cell::text(&self.model),
                Cell::text(&self.task),
                Cell::text(&r.method),
                Cell::opt(r.target, 2),
                Cell::text(&r.variant),
                Cell::text(&self.metric),
                Cell::num(r.metric, 4),
                Cell::num(self.dense, 4),
                Cell::num(r.delta, 4),
                Cell::opt(r.delta_ci95.map(|c| c.0), 4),
                Cell::opt(r.delta_ci95.map(|c| c.1), 4),
                Cell::num(r.kept_fraction, 4),
                Cell::num(r.softmax_fraction, 4),
            ]);
        }
        t.note(format!("Data: {}", self.split));
        if !self.calibration.is_empty() {
            t.note(format!("Calibration: {}", self.calibration));
        }
        t
    }

    /// The sweep as a plot: the metric against the keys in the softmax, one line per
    /// (method, variant), dense as a reference line (perplexity clipped at 3x dense).
    pub fn plot(&self) -> sprint_report::Plot {
        use sprint_report::plot::{Line, Lines};
        let acc = self.metric == "accuracy";
        let scale = if acc { 100.0 } else { 1.0 };
        let cap = if acc { f64::INFINITY } else { 3.0 * self.dense };
        let mut keys: Vec<(String, String)> = Vec::new();
        for r in &self.rows {
            let k = (r.method.clone(), r.variant.clone());
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
        let lines = keys
            .iter()
            .map(|(m, v)| Line {
                name: format!("{v} / {m}"),
                points: self
                    .rows
                    .iter()
                    .filter(|r| &r.method == m && &r.variant == v)
                    .map(|r| (100.0 * r.softmax_fraction, (scale * r.metric).min(cap)))
                    .collect(),
                paper: false,
                errors: Vec::new(),
            })
            .collect();
        sprint_report::Plot::Lines(Lines {
            id: "sweep-sparsity".into(),
            title: format!(
                "{} on {}: {} vs softmax-kept keys",
                self.model, self.task, self.metric
            ),
            x_label: "keys in the softmax (% of visible)".into(),
            y_label: if acc {
                "accuracy (%)".into()
            } else {
                "perplexity".into()
            },
            lines,
            references: vec![("dense".into(), scale * self.dense)],
        })
    }
}
