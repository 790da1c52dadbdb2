//! The stages of a run and how each is computed. Every function here does the work of one
//! stage; [`crate::run`] decides whether it runs (cache) and in what order.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use sprint_assets::Cache;
use sprint_core::config::{AttentionConfig, Variant};
use sprint_core::trace::TraceReader;
use sprint_eval::Task;
use sprint_eval::calibrate::KeepMethod;
use sprint_eval::fidelity::{Fidelity, ItemOutputs};
use sprint_eval::learn::LearnOptions;
use sprint_eval::run::{
    EvalOptions, EvalReport, Progress, ThresholdChoice, VariantResult, evaluate, trace_path,
};
use sprint_eval::sweep::{SweepMethod, SweepOptions, sweep};
use sprint_models::LoadedModel;
use sprint_sim::calibration::Calibration;
use sprint_sim::decode::{DecodeFile, lifetime_s_at_stated_rate, run_decode, summarise};
use sprint_sim::paper::compare_with_reports;
use sprint_sim::presets::{load_design, load_energy};
use sprint_sim::report::build;
use sprint_sim::run::run_trace;
use sprint_sim::wstats::StatsFile;

use crate::error::{ReproduceError, Result};
use crate::mode::Plan;
use crate::results::{
    AccuracyResult, CurveResult, DecodeResult, DesignSummary, SimPaperResult, SweepPoint,
    TraceSimResult, VariantRow,
};

/// Learned per-head thresholds of MiniLM on BBC at keep 0.25 (docs/thresholds.md), the
/// best available thresholds for that task; embedded so the run does not depend on the
/// working folder.
pub const MINILM_BBC_THRESHOLDS: &str =
    include_str!("../configs/thresholds/minilm-bbc-learned-keep0.25.toml");

/// What the stages share: the plan, the asset cache, the folder for artefacts (traces,
/// thresholds files) and the models, loaded once.
pub struct StageCtx<'a> {
    /// Sizes and seed.
    pub plan: &'a Plan,
    /// Real models and data.
    pub assets: &'a Cache,
    /// Progress of the evaluations inside a stage.
    pub progress: &'a dyn Progress,
    models: RefCell<BTreeMap<String, Rc<LoadedModel>>>,
}

impl<'a> StageCtx<'a> {
    /// A context over `plan` and `assets`.
    pub fn new(plan: &'a Plan, assets: &'a Cache, progress: &'a dyn Progress) -> Self {
        Self {
            plan,
            assets,
            progress,
            models: RefCell::new(BTreeMap::new()),
        }
    }

    /// The model `name`, loaded on first use.
    pub fn model(&self, stage: &str, name: &str) -> Result<Rc<LoadedModel>> {
        if let Some(m) = self.models.borrow().get(name) {
            return Ok(m.clone());
        }
        self.progress.stage(&format!("loading {name}"), 0);
        let m = Rc::new(
            sprint_models::load(name, self.assets).map_err(|e| ReproduceError::stage(stage, e))?,
        );
        self.models.borrow_mut().insert(name.into(), m.clone());
        Ok(m)
    }

    pub(crate) fn attention(&self, sets: &[String], stage: &str) -> Result<AttentionConfig> {
        let cfg = AttentionConfig {
            seed: self.plan.seed,
            ..AttentionConfig::default()
        };
        if sets.is_empty() {
            Ok(cfg)
        } else {
            cfg.with_overrides(sets)
                .map_err(|e| ReproduceError::stage(stage, e))
        }
    }
}

/// Where a stage's thresholds come from, as part of its cache key.
#[derive(Clone, Debug, PartialEq)]
pub enum Thresholds {
    /// The embedded learned MiniLM/BBC file, written to this path.
    Learned(PathBuf),
    /// Calibrated per layer at the plan's keep fraction, by this method.
    Calibrated(KeepMethod),
}

impl Thresholds {
    /// The thresholds of `task` on `model`: the learned file for MiniLM on BBC; otherwise a
    /// calibration at the plan's keep fraction, by softmax mass for the decoder's perplexity
    /// tasks (docs/thresholds.md measured it ahead of the quantile at equal kept fraction on
    /// SmolLM2) and by score quantile for the other probe tasks. The learned file is written
    /// under `artefacts` (content-named).
    pub fn best_for(model: &str, task: &str, artefacts: &Path) -> Result<Self> {
        if model == "minilm" && task == "bbc" {
            let path = artefacts.join(format!(
                "thresholds-minilm-bbc-{}.toml",
                &crate::cache::sha256_hex(MINILM_BBC_THRESHOLDS.as_bytes())[..16]
            ));
            if !path.is_file() {
                std::fs::create_dir_all(artefacts).map_err(|e| ReproduceError::Cache {
                    path: artefacts.to_path_buf(),
                    message: e.to_string(),
                })?;
                sprint_report::document::write_text(&path, MINILM_BBC_THRESHOLDS)?;
            }
            Ok(Thresholds::Learned(path))
        } else if task.starts_with("ppl-") {
            Ok(Thresholds::Calibrated(KeepMethod::Mass))
        } else {
            Ok(Thresholds::Calibrated(KeepMethod::Quantile))
        }
    }

    /// A short description for the cache key and the report.
    pub fn describe(&self, keep: f64) -> String {
        match self {
            Thresholds::Learned(_) => format!(
                "learned per head (configs/thresholds/minilm-bbc-learned-keep0.25.toml, sha256 {})",
                &crate::cache::sha256_hex(MINILM_BBC_THRESHOLDS.as_bytes())[..16]
            ),
            Thresholds::Calibrated(KeepMethod::Quantile) => {
                format!("calibrated per layer, quantile keep {keep}")
            }
            Thresholds::Calibrated(KeepMethod::Mass) => {
                format!("calibrated per layer, softmax mass held at keep {keep}")
            }
        }
    }

    fn choice(&self, keep: f64) -> ThresholdChoice {
        match self {
            Thresholds::Learned(p) => ThresholdChoice::File(p.clone()),
            Thresholds::Calibrated(method) => ThresholdChoice::Calibrate {
                keep,
                per_head: false,
                items: None,
                method: *method,
            },
        }
    }
}

fn rows(r: &EvalReport) -> Vec<VariantRow> {
    r.rows
        .iter()
        .map(|v| VariantRow {
            variant: v.variant.clone(),
            metric: v.metric,
            delta: v.delta,
            delta_ci95: v.vs_dense.as_ref().map(|d| d.ci95),
            kept_fraction: v.kept_fraction,
            softmax_fraction: v.softmax_fraction,
            new_fetch_share: v.new_fetch_share,
            false_prune_rate: v.false_prune_rate,
            fidelity: v.fidelity_vs_dense.clone(),
        })
        .collect()
}

fn task_of(stage: &str, name: &str) -> Result<Task> {
    Task::parse(name).map_err(|e| ReproduceError::stage(stage, e))
}

/// The four variants on `model` / `task` (Fig 9), with the SPRINT trace of the first
/// sequence written to `trace_base` (its variant files sit beside it) and, if asked, the
/// calibrated thresholds to `save_thresholds` (a file in the artefacts folder).
pub fn accuracy(
    ctx: &StageCtx,
    stage: &str,
    model: &str,
    task: &str,
    thresholds: &Thresholds,
    trace_base: &Path,
    save_thresholds: Option<&Path>,
) -> Result<AccuracyResult> {
    let t = task_of(stage, task)?;
    let m = ctx.model(stage, model)?;
    let p = ctx.plan;
    let ppl = model == "smollm2";
    let mut o = EvalOptions::new(t);
    o.variants = Variant::ALL.to_vec();
    o.limit = Some(if ppl {
        p.smollm2_windows
    } else {
        p.minilm_limit
    });
    o.seq_len = Some(if ppl {
        p.smollm2_seq_len
    } else {
        p.minilm_seq_len
    });
    o.seed = p.seed;
    o.probe_train = p.probe_train;
    o.attention = ctx.attention(&[], stage)?;
    o.thresholds = thresholds.choice(p.keep);
    o.trace = Some(trace_base.to_path_buf());
    o.save_thresholds = save_thresholds
        .filter(|_| matches!(thresholds, Thresholds::Calibrated(_)))
        .map(Path::to_path_buf);
    let r =
        evaluate(&m, ctx.assets, &o, ctx.progress).map_err(|e| ReproduceError::stage(stage, e))?;
    let sprint_trace = trace_path(trace_base, Variant::Sprint, true);
    Ok(AccuracyResult {
        thresholds_file: o
            .save_thresholds
            .as_deref()
            .filter(|f| f.is_file())
            .and_then(|f| f.file_name())
            .map(|n| n.to_string_lossy().to_string()),
        model: r.model.clone(),
        task: r.task.clone(),
        metric: r.metric.clone(),
        items: format!("{} {}", r.items, r.item_name),
        seq_len: r.seq_len,
        split: r.split.clone(),
        thresholds: thresholds.describe(p.keep),
        rows: rows(&r),
        sprint_trace: sprint_trace
            .is_file()
            .then(|| {
                sprint_trace
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
            })
            .flatten(),
    })
}

/// One sequence of `seq_len` tokens of `model` / `task` through SPRINT at the thresholds
/// in `thresholds_file` (the accuracy stage's), for its trace (written to `trace_base`):
/// the real trace replayed on the simulator at a length the accuracy stage does not run.
pub fn long_trace(
    ctx: &StageCtx,
    stage: &str,
    model: &str,
    task: &str,
    seq_len: usize,
    thresholds_file: &Path,
    trace_base: &Path,
) -> Result<AccuracyResult> {
    let t = task_of(stage, task)?;
    let m = ctx.model(stage, model)?;
    let p = ctx.plan;
    let mut o = EvalOptions::new(t);
    o.variants = vec![Variant::Sprint];
    o.limit = Some(1);
    o.seq_len = Some(seq_len);
    o.seed = p.seed;
    o.attention = ctx.attention(&[], stage)?;
    o.thresholds = ThresholdChoice::File(thresholds_file.to_path_buf());
    o.trace = Some(trace_base.to_path_buf());
    let r =
        evaluate(&m, ctx.assets, &o, ctx.progress).map_err(|e| ReproduceError::stage(stage, e))?;
    let sprint_trace = trace_path(trace_base, Variant::Sprint, false);
    Ok(AccuracyResult {
        model: r.model.clone(),
        task: r.task.clone(),
        metric: r.metric.clone(),
        items: format!("{} {}", r.items, r.item_name),
        seq_len: r.seq_len,
        split: r.split.clone(),
        thresholds: format!(
            "the accuracy stage's ({})",
            thresholds_file
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default()
        ),
        rows: rows(&r),
        sprint_trace: sprint_trace
            .is_file()
            .then(|| {
                sprint_trace
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
            })
            .flatten(),
        thresholds_file: None,
    })
}

/// What a sweep evaluates: the model and task, the items and their length, the variants
/// run at every point (dense runs once, as the reference).
pub struct SweepOn<'a> {
    /// Model name.
    pub model: &'a str,
    /// Task name.
    pub task: &'a str,
    /// Documents drawn before the split (0 = all), or perplexity windows.
    pub limit: usize,
    /// Tokens per sequence.
    pub seq_len: usize,
    /// Variants run at every point.
    pub variants: Vec<Variant>,
}

/// The mean per-token KL of block sums `blocks`, with its block-bootstrap interval.
fn token_kl_of(stage: &str, blocks: &[(f64, u64)]) -> Result<(f64, (f64, f64))> {
    sprint_eval::fidelity::block_mean(blocks).map_err(|e| ReproduceError::stage(stage, e))
}

/// SPRINT (and the other `on.variants`) on `on.model` / `on.task` with each attention
/// override of `points` (label, x, `--set`s): the precision (Fig 5) and noise sweeps, at the
/// thresholds of the accuracy stage; every point is compared with one dense run on the same
/// items (paired interval, continuous fidelity) and with the `reference` point of its
/// series. On a perplexity task each point also gets the mean per-token KL divergence of
/// its next-token distribution from dense's and from the reference point's (the reference
/// runs first and keeps its logits; each series is evaluated on its own so it is compared
/// with its own reference).
pub fn sprint_sweep(
    ctx: &StageCtx,
    stage: &str,
    on: &SweepOn,
    thresholds: &Thresholds,
    points: &[(String, f64, Vec<String>)],
    reference: Option<usize>,
) -> Result<CurveResult> {
    use std::sync::Arc;
    let t = task_of(stage, on.task)?;
    let ppl = t.kind() == sprint_eval::tasks::TaskKind::Perplexity;
    let m = ctx.model(stage, on.model)?;
    let p = ctx.plan;
    let mut base = EvalOptions::new(t);
    base.limit = Some(on.limit);
    base.seq_len = Some(on.seq_len);
    base.seed = p.seed;
    base.probe_train = p.probe_train;
    base.thresholds = thresholds.choice(p.keep);
    let mut dense_opts = base.clone();
    dense_opts.variants = vec![Variant::Dense];
    dense_opts.attention = ctx.attention(&[], stage)?;
    dense_opts.keep_next_token = ppl;
    let mut dense = evaluate(&m, ctx.assets, &dense_opts, ctx.progress)
        .map_err(|e| ReproduceError::stage(stage, e))?;
    let dense_logits: Option<Arc<sprint_eval::fidelity::NextTokenLogits>> =
        dense.rows[0].outputs.next_token.take();
    let d = &dense.rows[0];
    // The reference point first on a perplexity task: the others compare with its logits.
    let order: Vec<usize> = match (ppl, reference) {
        (true, Some(r)) if r < points.len() => std::iter::once(r)
            .chain((0..points.len()).filter(|&i| i != r))
            .collect(),
        _ => (0..points.len()).collect(),
    };
    let groups: Vec<Vec<Variant>> = if ppl {
        on.variants.iter().map(|&v| vec![v]).collect()
    } else {
        vec![on.variants.clone()]
    };
    let mut reference_logits: BTreeMap<String, Arc<sprint_eval::fidelity::NextTokenLogits>> =
        BTreeMap::new();
    // Per point (in `points` order), its rows and outputs per series.
    type Row = (SweepPoint, String, sprint_eval::fidelity::ItemOutputs);
    let mut per_point: Vec<Vec<Row>> = vec![Vec::new(); points.len()];
    for &i in &order {
        let (label, x, sets) = &points[i];
        let is_reference = reference == Some(i);
        for group in &groups {
            let mut o = base.clone();
            o.variants = group.clone();
            o.attention = ctx.attention(sets, stage)?;
            if ppl {
                o.kl_references = dense_logits.iter().cloned().collect();
                if is_reference {
                    o.keep_next_token = true;
                } else if let Some(r) = reference_logits.get(group[0].name()) {
                    o.kl_references.push(r.clone());
                }
            }
            let mut r = evaluate(&m, ctx.assets, &o, ctx.progress)
                .map_err(|e| ReproduceError::stage(stage, e))?;
            for v in &mut r.rows {
                if let Some(lp) = v.outputs.next_token.take() {
                    reference_logits.insert(v.variant.clone(), lp);
                }
                let point = sweep_point(stage, d, v, label, *x)?;
                per_point[i].push((point, v.variant.clone(), v.outputs.clone()));
            }
        }
    }
    drop(reference_logits);
    let mut out: Vec<SweepPoint> = Vec::new();
    for i in 0..points.len() {
        for (point, series, outputs) in &per_point[i] {
            let mut point = point.clone();
            let ref_out = reference.and_then(|r| {
                per_point
                    .get(r)?
                    .iter()
                    .find(|(_, s, _)| s == series)
                    .map(|x| &x.2)
            });
            if let Some(ref_out) = ref_out {
                let f =
                    against_reference(stage, on, ref_out, outputs, reference == Some(i) && ppl)?;
                point.vs_reference = Some(f);
            }
            out.push(point);
        }
    }
    Ok(CurveResult {
        model: dense.model,
        task: dense.task,
        metric: dense.metric,
        reference: reference.and_then(|r| points.get(r)).map(|p| p.0.clone()),
        dense: dense.rows[0].metric,
        split: dense.split,
        points: out,
    })
}

/// Sweep point `v` (at `label`, `x`) against the dense row `d` on the same items: its
/// paired accuracy interval and fidelity, with the mean per-token KL from dense when the
/// point compared next-token distributions.
pub(crate) fn sweep_point(
    stage: &str,
    d: &VariantResult,
    v: &VariantResult,
    label: &str,
    x: f64,
) -> Result<SweepPoint> {
    let delta_ci95 = match (&d.item_correct, &v.item_correct) {
        (Some(a), Some(b)) => Some(
            sprint_eval::paired::paired_accuracy_delta(a, b)
                .map_err(|e| ReproduceError::stage(stage, e))?
                .ci95,
        ),
        _ => None,
    };
    let mut fidelity = sprint_eval::fidelity::compare(&d.outputs, &v.outputs)
        .map_err(|e| ReproduceError::stage(stage, e))?;
    if let Some(kl) = v.outputs.kl_blocks.as_ref().and_then(|k| k.first()) {
        let (mean, ci) = token_kl_of(stage, kl)?;
        fidelity.token_kl_mean = Some(mean);
        fidelity.token_kl_ci95 = Some(ci);
    }
    Ok(SweepPoint {
        series: v.variant.clone(),
        x,
        x_label: label.to_string(),
        metric: v.metric,
        kept_fraction: v.kept_fraction,
        softmax_fraction: v.softmax_fraction,
        delta_ci95,
        fidelity: Some(fidelity),
        vs_reference: None,
    })
}

/// A sweep point's `outputs` against its series' reference point's (`ref_out`): fidelity,
/// the window carrying most of the perplexity change, and the mean per-token KL from the
/// reference (0 for the reference itself on a perplexity task, `is_reference`).
fn against_reference(
    stage: &str,
    on: &SweepOn,
    ref_out: &ItemOutputs,
    outputs: &ItemOutputs,
    is_reference: bool,
) -> Result<Fidelity> {
    let mut f = sprint_eval::fidelity::compare(ref_out, outputs)
        .map_err(|e| ReproduceError::stage(stage, e))?;
    if let (Some(a), Some(b)) = (&ref_out.nll_blocks, &outputs.nll_blocks) {
        let per_window = (on.seq_len - 1).div_ceil(sprint_eval::fidelity::BLOCK_TOKENS);
        if let Some((w, share)) = sprint_eval::fidelity::top_window_share(a, b, per_window) {
            f.ppl_top_window = Some(w);
            f.ppl_top_window_share = Some(share);
        }
    }
    if is_reference {
        // The reference against itself.
        f.token_kl_mean = Some(0.0);
        f.token_kl_ci95 = Some((0.0, 0.0));
    } else if let Some(kl) = outputs.kl_blocks.as_ref().and_then(|k| k.get(1)) {
        let (mean, ci) = token_kl_of(stage, kl)?;
        f.token_kl_mean = Some(mean);
        f.token_kl_ci95 = Some(ci);
    }
    Ok(f)
}

/// Accuracy against kept fraction on MiniLM / BBC: quantile calibration at each target and
/// the learned file, for runtime pruning, SPRINT without recompute and SPRINT.
pub fn sparsity(ctx: &StageCtx, stage: &str, learned: &Path) -> Result<CurveResult> {
    let t = task_of(stage, "bbc")?;
    let m = ctx.model(stage, "minilm")?;
    let p = ctx.plan;
    let mut eval = EvalOptions::new(t);
    eval.variants = vec![
        Variant::RuntimePruning,
        Variant::SprintNoRecompute,
        Variant::Sprint,
    ];
    eval.limit = Some(p.sweep_limit);
    eval.seq_len = Some(p.minilm_seq_len);
    eval.seed = p.seed;
    eval.probe_train = p.probe_train;
    eval.attention = ctx.attention(&[], stage)?;
    let mut calib = LearnOptions::new(t);
    calib.seed = p.seed;
    calib.limit = p.sweep_limit;
    calib.seq_len = p.minilm_seq_len;
    if p.sweep_limit > 0 {
        calib.items = calib.items.min(p.sweep_limit / 2).max(1);
    }
    let o = SweepOptions {
        eval,
        calib,
        methods: vec![
            SweepMethod::Quantile,
            SweepMethod::File {
                label: "learned".into(),
                path: learned.to_path_buf(),
            },
        ],
        targets: p.sparsity_targets.clone(),
        per_head: false,
    };
    let r = sweep(&m, ctx.assets, &o, ctx.progress).map_err(|e| ReproduceError::stage(stage, e))?;
    Ok(CurveResult {
        model: r.model,
        task: r.task,
        metric: r.metric,
        reference: None,
        dense: r.dense,
        split: r.split,
        points: r
            .rows
            .iter()
            .map(|x| SweepPoint {
                series: format!("{} / {}", x.variant, x.method),
                x: 100.0 * x.softmax_fraction,
                x_label: x
                    .target
                    .map_or_else(|| x.method.clone(), |t| format!("{} {t}", x.method)),
                metric: x.metric,
                kept_fraction: x.kept_fraction,
                softmax_fraction: x.softmax_fraction,
                delta_ci95: x.delta_ci95,
                fidelity: x.fidelity.clone(),
                vs_reference: None,
            })
            .collect(),
    })
}

/// The simulator on the paper's workloads in one configuration (`sourced-default` or
/// `paper-inferred`): Figs 10, 11, 12a and Table III.
pub fn sim_paper(stage: &str, calibration: &str) -> Result<SimPaperResult> {
    let err = |e: sprint_sim::SimError| ReproduceError::stage(stage, e);
    let table = load_energy("default", &[]).map_err(err)?;
    let stats = StatsFile::default_stats();
    let cal = match calibration {
        "paper-inferred" => Calibration::paper_inferred().map_err(err)?,
        _ => Calibration::sourced_default(),
    };
    let (c, reports) = compare_with_reports(&[], &table, &stats, &cal).map_err(err)?;
    // Fig 12a's bars: S-Baseline (0), Pruning (6), S-SPRINT (3) of comparison_designs.
    let fig12a = c
        .ours
        .iter()
        .zip(&reports)
        .map(|((name, _), r)| {
            (
                name.clone(),
                [0, 6, 3]
                    .iter()
                    .map(|&i| DesignSummary::of(&r[i]))
                    .collect(),
            )
        })
        .collect();
    Ok(SimPaperResult {
        calibration: c.calibration,
        energy_table: c.energy_table,
        stats_source: c.stats_source,
        ours: c.ours,
        fig12a,
    })
}

/// The designs every real trace is replayed on: baseline and SPRINT at S, M and L.
pub const TRACE_DESIGNS: [&str; 6] = [
    "s-baseline",
    "s-sprint",
    "m-baseline",
    "m-sprint",
    "l-baseline",
    "l-sprint",
];

/// S/M/L SPRINT against the same-size baselines on a real trace.
pub fn sim_trace(stage: &str, label: &str, trace: &Path) -> Result<TraceSimResult> {
    let err = |e: sprint_sim::SimError| ReproduceError::stage(stage, e);
    let designs = TRACE_DESIGNS
        .iter()
        .map(|k| load_design(k, &[]))
        .collect::<sprint_sim::Result<Vec<_>>>()
        .map_err(err)?;
    let table = load_energy("default", &[]).map_err(err)?;
    let f = File::open(trace)
        .map_err(|e| ReproduceError::stage(stage, format!("{}: {e}", trace.display())))?;
    let reader =
        TraceReader::new(BufReader::new(f)).map_err(|e| ReproduceError::stage(stage, e))?;
    let (h, totals) = run_trace(&designs, reader, None).map_err(err)?;
    let reports = build(&designs, &table, &totals).map_err(err)?;
    Ok(TraceSimResult {
        label: format!(
            "{label}: {} layers x {} heads, {} tokens, d = {}, variant {}",
            h.layers, h.heads, h.n_queries, h.head_dim, h.variant
        ),
        tokens: h.n_queries as usize,
        designs: reports.iter().map(DesignSummary::of).collect(),
    })
}

/// Decode with a growing KV cache on SmolLM2 shapes: S-Baseline against S-SPRINT.
pub fn decode(stage: &str) -> Result<DecodeResult> {
    let err = |e: sprint_sim::SimError| ReproduceError::stage(stage, e);
    let file = DecodeFile::smollm2().map_err(err)?;
    let designs = ["s-baseline", "s-sprint"]
        .iter()
        .map(|k| load_design(k, &[]))
        .collect::<sprint_sim::Result<Vec<_>>>()
        .map_err(err)?;
    let table = load_energy("default", &[]).map_err(err)?;
    let st = StatsFile::default_stats().resolve("GPT-2-L");
    let out = run_decode(&designs, &file, &st).map_err(err)?;
    let totals: Vec<_> = out.iter().map(|o| o.with_stalls()).collect();
    let reports = build(&designs, &table, &totals).map_err(err)?;
    Ok(DecodeResult {
        label: format!(
            "{}: {}; kept sets from {}",
            file.name,
            file.shape_text(),
            st.source
        ),
        rows: summarise(&reports, &out, &file),
        endurance_writes: file.write.endurance_writes_per_cell.value,
        token_rate_per_s: file.write.token_rate_per_s.value,
        lifetime_s_at_stated_rate: lifetime_s_at_stated_rate(&file),
    })
}
