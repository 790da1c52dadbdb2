//! The evaluation driver: loads the task's data, calibrates thresholds (or reads them),
//! runs every requested attention variant and collects one [`EvalReport`] in the layout of
//! the paper's Fig 9 (metric per variant, kept fraction, delta vs dense).
//!
//! This module checks the options and the model, then hands a context to the task's
//! driver. Its parts, one concern each:
//!
//! - `ctx`: the context the parts share while a task runs, and the report's assembly;
//! - `options`: [`EvalOptions`], [`ThresholdChoice`] and the split fractions;
//!   `probe_fit`: [`ProbeFit`], an option the report repeats;
//! - `progress`: the [`Progress`] trait and [`NoProgress`];
//! - `report`: [`EvalReport`] and its rows, thresholds and probe reports;
//! - `thresholds`: the given thresholds, or a calibration on the task's data;
//! - `pass`: the batched forwards of a pass and what they record;
//! - `variants`: one pass per variant, its row, and the traces ([`trace_path`]);
//! - `probe`, `perplexity`, `zero_shot`: the three kinds of task;
//! - `reference`: an earlier run's dense row the rows are compared with ([`ReferenceRun`]).

mod ctx;
mod options;
mod pass;
mod perplexity;
mod probe;
mod probe_fit;
mod progress;
mod reference;
mod report;
mod thresholds;
mod variants;
mod zero_shot;

use sprint_assets::Cache;
use sprint_core::config::Variant;
use sprint_models::LoadedModel;
use sprint_models::model::Model;

pub use options::{EvalOptions, SENTIMENT_CALIB_FRACTION, TEST_FRACTION, ThresholdChoice};
pub use perplexity::WINDOWING;
pub use probe_fit::ProbeFit;
pub use progress::{NoProgress, Progress};
pub use reference::ReferenceRun;
pub use report::{EvalReport, ProbeReport, ReferenceSummary, ThresholdReport, VariantResult};
pub use variants::trace_path;

use crate::error::{EvalError, Result};
use crate::tasks::{Task, TaskKind};
use ctx::Ctx;
use thresholds::resolve_given;

fn ensure_encoder(model: &LoadedModel, task: Task) -> Result<()> {
    match model.model {
        Model::Bert(_) | Model::Albert(_) => Ok(()),
        _ => Err(EvalError::TaskModel {
            task: task.name().into(),
            needs: "a text encoder (BERT, ALBERT)",
            model: model.name.clone(),
            is: format!("a {} model", model.model.architecture().name()),
        }),
    }
}

fn ensure_decoder(model: &LoadedModel, task: Task) -> Result<()> {
    match model.model {
        Model::Llama(_) | Model::Gpt2(_) => Ok(()),
        _ => Err(EvalError::TaskModel {
            task: task.name().into(),
            needs: "a decoder (Llama, GPT-2)",
            model: model.name.clone(),
            is: format!("a {} model", model.model.architecture().name()),
        }),
    }
}

fn check_variants(opts: &EvalOptions) -> Result<()> {
    if let Some(k) = opts.peer_keep
        && !(k > 0.0 && k <= 1.0)
    {
        return Err(EvalError::Input(format!(
            "--peer-keep must be in (0, 1], got {k}"
        )));
    }
    if opts.variants.is_empty() {
        return Err(EvalError::Input("no variant to evaluate".into()));
    }
    for (i, v) in opts.variants.iter().enumerate() {
        if opts.variants[..i].contains(v) {
            return Err(EvalError::Input(format!(
                "variant `{}` listed twice",
                v.name()
            )));
        }
    }
    Ok(())
}

/// Runs the evaluation of `opts` on `model`.
pub fn evaluate(
    model: &LoadedModel,
    cache: &Cache,
    opts: &EvalOptions,
    progress: &dyn Progress,
) -> Result<EvalReport> {
    check_variants(opts)?;
    let overlaid;
    let model = match &opts.weights {
        Some(w) => {
            overlaid = model.with_weights(w)?;
            &overlaid
        }
        None => model,
    };
    if opts.batch_size == 0 {
        return Err(EvalError::Input("batch size must be at least 1".into()));
    }
    match opts.task.kind() {
        TaskKind::Probe => ensure_encoder(model, opts.task)?,
        _ => ensure_decoder(model, opts.task)?,
    }
    let g = model.model.geometry();
    sprint_core::shape_check::check_config_fits(&opts.attention, g.heads, g.kv_heads, g.head_dim)?;
    let seq_len = opts.seq_len.unwrap_or(opts.task.default_seq_len());
    if seq_len < 2 {
        return Err(EvalError::Input(format!(
            "--seq-len must be at least 2, got {seq_len}"
        )));
    }
    for r in &opts.references {
        r.check_before(&model.name, opts.task.name(), opts.seed, seq_len)?;
    }
    let limit = match opts.limit {
        Some(0) => None,
        Some(n) => Some(n),
        None => opts.task.default_limit(),
    };
    let geo = model.model.geometry();
    // Dense and SpAtten read no thresholds `Th`.
    let needs_th = opts
        .variants
        .iter()
        .any(|&v| !matches!(v, Variant::Dense | Variant::Spatten));
    let given = if needs_th {
        resolve_given(&opts.thresholds, opts, geo.layers, geo.heads)?
    } else {
        None
    };
    let ctx = Ctx {
        model,
        opts,
        seq_len,
        limit,
        needs_th,
        given,
        progress,
        staged: Default::default(),
        peer_knobs: Default::default(),
    };
    let mut report = match opts.task.kind() {
        TaskKind::Probe => ctx.probe(cache),
        TaskKind::Perplexity => ctx.perplexity(cache),
        TaskKind::ZeroShot => ctx.zero_shot(cache),
    }?;
    for r in &opts.references {
        r.attach(&mut report)?;
    }
    report.peer_knobs = ctx.peer_knobs.borrow().clone();
    report.peer_calibration = report.peer_knobs.as_ref().map(|k| k.describe());
    // All outputs or none: traces and thresholds wait in registered temporary files
    // (removed on an error above or a signal) until every check has passed.
    for (tmp, p) in ctx.staged.into_inner() {
        tmp.persist(&p)?;
    }
    Ok(report)
}
