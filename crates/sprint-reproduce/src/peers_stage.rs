//! The stage `accuracy-peers`: SPRINT and its peers at matched keys in the softmax, on MiniLM
//! BBC and SmolLM2 perplexity (Austen). At each kept fraction of the plan, SPRINT's four
//! variants run at thresholds calibrated to it (the score quantile on MiniLM, the
//! softmax-mass calibration held at that fraction on SmolLM2, as the accuracy stages
//! calibrate) and the five peer designs with their own knobs calibrated to it
//! (`--peer-keep`: Sanger's probability threshold, A3's post-scoring cut, Energon's alpha,
//! SpAtten's token schedule; LeOPArd at SPRINT's thresholds). Every row is compared with one
//! dense run on the same items: the paired accuracy interval, posterior KL and flips on
//! BBC; the perplexity change with its block-bootstrap interval and the mean next-token KL
//! on SmolLM2. The keys in the softmax are measured, not the target.

use std::sync::Arc;

use sprint_core::config::Variant;
use sprint_eval::calibrate::KeepMethod;
use sprint_eval::run::{EvalOptions, ThresholdChoice, evaluate};

use crate::error::{ReproduceError, Result};
use crate::results::{CurveResult, SweepPoint};
use crate::stages::{StageCtx, sweep_point};

/// Every design of the stage, in the report's order: SPRINT's four, then the peers.
pub const DESIGNS: [Variant; 9] = [
    Variant::RuntimePruning,
    Variant::SprintNoRecompute,
    Variant::Sprint,
    Variant::Leopard,
    Variant::Sanger,
    Variant::A3,
    Variant::Energon,
    Variant::Spatten,
    Variant::Dense,
];

/// The designs evaluated at each kept fraction (dense runs once, as the reference).
fn pruned() -> Vec<Variant> {
    DESIGNS
        .iter()
        .copied()
        .filter(|&v| v != Variant::Dense)
        .collect()
}

/// The peers' stage on `model` / `task` (`minilm` / `bbc` or `smollm2` / `ppl-austen`): one
/// curve, series = design, x = the kept fraction its knob was calibrated to (percent), every
/// point against the one dense run; the calibrated peer knobs of each fraction, in words,
/// follow the data in the curve's `split`.
pub fn peers_curve(ctx: &StageCtx, stage: &str, model: &str, task: &str) -> Result<CurveResult> {
    let t = sprint_eval::Task::parse(task).map_err(|e| ReproduceError::stage(stage, e))?;
    let ppl = model == "smollm2";
    let m = ctx.model(stage, model)?;
    let p = ctx.plan;
    let mut base = EvalOptions::new(t);
    base.limit = Some(if ppl {
        p.peers.smollm2_windows
    } else {
        p.peers.minilm_limit
    });
    base.seq_len = Some(if ppl {
        p.peers.smollm2_seq_len
    } else {
        p.minilm_seq_len
    });
    base.seed = p.seed;
    base.probe_train = p.probe_train;
    base.attention = ctx.attention(&[], stage)?;
    let mut dense_opts = base.clone();
    dense_opts.variants = vec![Variant::Dense];
    dense_opts.keep_next_token = ppl;
    let mut dense = evaluate(&m, ctx.assets, &dense_opts, ctx.progress)
        .map_err(|e| ReproduceError::stage(stage, e))?;
    let dense_logits: Option<Arc<sprint_eval::fidelity::NextTokenLogits>> =
        dense.rows[0].outputs.next_token.take();
    let d = &dense.rows[0];
    let mut points = Vec::new();
    let mut notes = Vec::new();
    for &keep in &p.peers.keeps {
        let mut o = base.clone();
        o.variants = pruned();
        o.thresholds = ThresholdChoice::Calibrate {
            keep,
            per_head: false,
            items: None,
            method: if ppl {
                KeepMethod::Mass
            } else {
                KeepMethod::Quantile
            },
        };
        o.peer_keep = Some(keep);
        o.kl_references = dense_logits.iter().cloned().collect();
        let r = evaluate(&m, ctx.assets, &o, ctx.progress)
            .map_err(|e| ReproduceError::stage(stage, e))?;
        let label = format!("{:.0} %", 100.0 * keep);
        for v in &r.rows {
            points.push(sweep_point(stage, d, v, &label, 100.0 * keep)?);
        }
        if let Some(c) = &r.peer_calibration {
            notes.push(c.clone());
        }
    }
    points.sort_by_key(|q: &SweepPoint| {
        DESIGNS
            .iter()
            .position(|v| v.name() == q.series)
            .unwrap_or(DESIGNS.len())
    });
    Ok(CurveResult {
        model: dense.model.clone(),
        task: dense.task.clone(),
        metric: dense.metric.clone(),
        dense: d.metric,
        reference: None,
        split: format!(
            "{} {} of {} tokens ({}); {}",
            dense.items,
            dense.item_name,
            dense.seq_len,
            dense.split,
            notes.join(" | ")
        ),
        points,
    })
}
