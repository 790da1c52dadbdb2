//! The start of a training run: one dense pass over the training items (score statistics,
//! and a probe task's dense sentence embeddings, kept per process), the frozen probe of the
//! classification loss, and the thresholds calibrated on the statistics that the run
//! starts from.

use sprint_assets::Cache;
use sprint_core::config::{AttentionConfig, Thresholds};
use sprint_models::{LoadedModel, Model, TokenBatch};

use super::data::training_labels;
use super::options::{LearnOptions, NO_PRUNE_THRESHOLD};
use super::progress::LearnProgress;
use crate::calibrate::{CalibratingAttention, ScoreStats};
use crate::error::{CandleOp, EvalError, Result};
use crate::finetune::FineTuner;
use crate::memo::Memo;
use crate::probe_loss::{ClassificationHead, ProbeLoss};
use crate::tasks::{Task, TaskKind};

/// Where a run starts.
pub(super) struct Start {
    /// Dense score and softmax-mass statistics of the training items (with fine-tuning:
    /// of the base model).
    pub stats: ScoreStats,
    /// Probe tasks: the dense sentence embedding of each training item, the target of the
    /// embedding loss (empty for perplexity tasks).
    pub targets: Vec<Vec<f32>>,
    /// With the classification loss: the probe fitted on `targets` and frozen.
    pub head: Option<ClassificationHead>,
    /// The calibrated thresholds the run starts from (logit units).
    pub initial: Thresholds,
    /// Hard kept fraction of `initial` on the training items.
    pub train_kept_initial: f64,
    /// Target of the kept-fraction regulariser: `keep`, or with `init_mass` the start's
    /// own kept fraction (the run holds that sparsity and trains for accuracy).
    pub target_keep: f64,
    /// The parameters before the first step: the thresholds (logit units; every one at
    /// [`NO_PRUNE_THRESHOLD`] without pruning), then the fine-tuned tensors' values.
    pub params: Vec<f64>,
}

/// The dimensions of the thresholds: `layers` x `heads` of the model, `np` trained.
#[derive(Clone, Copy, Debug)]
pub(super) struct Shape {
    /// Attention layers.
    pub layers: usize,
    /// Heads per layer.
    pub heads: usize,
    /// Trained thresholds: `layers x heads` per head, `layers` per layer.
    pub np: usize,
}

/// Where the run on `seqs` (padded with `pad`) starts: the dense pass, the probe, the
/// calibrated thresholds and the first parameters.
#[allow(clippy::too_many_arguments)]
pub(super) fn start(
    model: &LoadedModel,
    cache: &Cache,
    task: Task,
    o: &LearnOptions,
    seqs: &[Vec<u32>],
    pad: u32,
    shape: Shape,
    tuner: Option<&FineTuner>,
    progress: &dyn LearnProgress,
) -> Result<Start> {
    let is_probe = task.kind() == TaskKind::Probe;
    let (stats, targets) = dense_pass(model, seqs, pad, is_probe, shape, progress)?;
    let head = match (is_probe, o.task_loss) {
        (true, ProbeLoss::Classification) => {
            let (labels, classes) = training_labels(cache, task, o)?;
            Some(ClassificationHead::fit(&targets, &labels, classes)?)
        }
        _ => None,
    };
    let per_head_start = o.per_head && o.init_per_head;
    let initial = match o.init_mass {
        Some(mass) => stats.mass_thresholds(mass, per_head_start)?,
        None => stats.thresholds(o.keep, per_head_start)?,
    };
    // The regulariser's target: `keep`, or the start's own kept fraction when it was
    // calibrated by mass (the run holds that sparsity and trains for accuracy).
    let train_kept_initial = stats.kept_fraction(&initial);
    let target_keep = match o.init_mass {
        Some(_) => train_kept_initial,
        None => o.keep,
    };
    let mut params: Vec<f64> = if !o.prune {
        vec![NO_PRUNE_THRESHOLD; shape.np]
    } else if o.per_head {
        initial
            .values
            .iter()
            .flatten()
            .map(|&x| finite(x))
            .collect()
    } else {
        initial.values.iter().map(|r| finite(r[0])).collect()
    };
    if let Some(t) = tuner {
        params.extend(t.values()?);
    }
    Ok(Start {
        stats,
        targets,
        head,
        initial,
        train_kept_initial,
        target_keep,
        params,
    })
}

/// The dense pass over `seqs`, one sequence per forward: the score statistics the
/// thresholds start from and, for probe tasks, the dense embeddings. The same for every
/// recipe on the same model and items (the pruned recipe and its no-pruning twin):
/// computed once per process.
fn dense_pass(
    model: &LoadedModel,
    seqs: &[Vec<u32>],
    pad: u32,
    is_probe: bool,
    shape: Shape,
    progress: &dyn LearnProgress,
) -> Result<(ScoreStats, Vec<Vec<f32>>)> {
    let single: Vec<TokenBatch> = seqs
        .iter()
        .map(|s| TokenBatch::from_sequences(vec![s.clone()], pad))
        .collect::<std::result::Result<_, _>>()?;
    DENSE_PASSES.get_or_try((model.name.clone(), seqs.to_vec()), || {
        progress.stage("dense pass (calibration, targets)", seqs.len() as u64);
        let cal = CalibratingAttention::new(AttentionConfig::default(), shape.layers, shape.heads);
        let mut targets: Vec<Vec<f32>> = Vec::new();
        for b in &single {
            if is_probe {
                // The calibrating backend's output is the dense output: one forward gives
                // the statistics and the dense target.
                let (e, _) = model.model.embed(b, &cal, false, true)?;
                targets.push(
                    e.flatten_all()
                        .and_then(|e| e.to_vec1::<f32>())
                        .op("dense target")?,
                );
            } else {
                forward_any(&model.model, b, &cal)?;
            }
            progress.inc(None);
        }
        Ok::<_, EvalError>((cal.into_stats(), targets))
    })
}

/// Dense passes of [`super::learn`] (score statistics, and the dense embeddings of a
/// probe task) by model name and token sequences.
#[allow(clippy::type_complexity)]
static DENSE_PASSES: Memo<(String, Vec<Vec<u32>>), (ScoreStats, Vec<Vec<f32>>)> = Memo::new();

/// Dense score and softmax-mass statistics of `model` over `seqs` (one sequence per
/// forward), for calibration; progress advances by one per sequence.
pub fn score_stats(
    model: &LoadedModel,
    seqs: &[Vec<u32>],
    progress: &dyn LearnProgress,
) -> Result<ScoreStats> {
    let g = model.model.geometry();
    let pad = model.tokenizer()?.pad_id();
    let cal = CalibratingAttention::new(AttentionConfig::default(), g.layers, g.heads);
    for s in seqs {
        let b = TokenBatch::from_sequences(vec![s.clone()], pad)?;
        forward_any(&model.model, &b, &cal)?;
        progress.inc(None);
    }
    Ok(cal.into_stats())
}

/// A threshold as a parameter (logits): its value, or -64 (below any score) when it is not
/// finite (`-inf`: a head that keeps every key).
fn finite(x: f32) -> f64 {
    if x.is_finite() { f64::from(x) } else { -64.0 }
}

/// One forward of `batch` through `model` with the attention `attn` (for its statistics;
/// the output is dropped).
fn forward_any(
    model: &Model,
    batch: &TokenBatch,
    attn: &dyn sprint_models::Attention,
) -> Result<()> {
    match model {
        Model::Llama(m) => {
            m.forward_hidden(batch, attn, false)?;
        }
        Model::Bert(_) | Model::Albert(_) => {
            model.embed(batch, attn, false, true)?;
        }
        other => {
            other.logits(batch, attn, false)?;
        }
    }
    Ok(())
}
