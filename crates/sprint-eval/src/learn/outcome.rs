//! What a training run gives ([`Learned`]: the thresholds, their file, the report and the
//! fine-tuned weights), assembled from where the run ended: the evaluation of the learned
//! thresholds on the training items and the outputs with their provenance.

use std::time::Instant;

use sprint_core::config::{ThresholdFile, Thresholds};
use sprint_models::LoadedModel;
use sprint_models::finetuned::FineTunedWeights;

use super::checkpoint::TrainState;
use super::options::LearnOptions;
use super::provenance::{learned_file, weights_meta};
use super::report::LearnReport;
use super::start::{Shape, Start};
use crate::error::Result;
use crate::finetune::FineTuner;
use crate::tasks::Task;

/// What a training run gives.
#[derive(Clone, Debug)]
pub struct Learned {
    /// The learned thresholds `Th` (logit units), per layer and head (a per-layer run
    /// repeats its layer's value over the heads).
    pub thresholds: Thresholds,
    /// The thresholds file: `thresholds` with their provenance in `[meta]`.
    pub file: ThresholdFile,
    /// The run's report.
    pub report: LearnReport,
    /// With fine-tuning, the weights file of the changed tensors (its `thresholds_file`
    /// metadata is for the caller to fill in); `None` without.
    pub weights: Option<FineTunedWeights>,
}

/// Facts of the run that [`finish`] reports beside its state.
pub(super) struct RunFacts {
    /// The training data's description.
    pub split: String,
    /// Steps of the whole run.
    pub total: usize,
    /// When this invocation began.
    pub began: Instant,
    /// Wall time of the training steps of this invocation, seconds.
    pub train_seconds: f64,
    /// Estimated autograd tape of the layers of one step, bytes.
    pub layer_tape_bytes: f64,
    /// Whether the steps were gradient-checkpointed.
    pub checkpointed: bool,
}

/// The fine-tuned tensors of a run and the sha256 of the base weights file they change.
pub(super) struct Tuned<'a> {
    /// The fine-tuned tensors.
    pub tuner: &'a FineTuner,
    /// The base weights file's sha256 (hex).
    pub base_sha256: String,
}

/// The outcome of a run that ended in `state` (after its last step or an early stop):
/// the learned thresholds, the report, the weights file of the fine-tuned tensors, and the
/// thresholds file with their provenance.
#[allow(clippy::too_many_arguments)]
pub(super) fn finish(
    model: &LoadedModel,
    task: Task,
    o: &LearnOptions,
    shape: Shape,
    start: &Start,
    state: &TrainState,
    tuned: Option<Tuned>,
    facts: RunFacts,
) -> Result<Learned> {
    let learned = learned_thresholds(o, shape, &state.params);
    // The dense scores of the frozen model do not depend on the thresholds: the hard kept
    // fractions come from the statistics of the first pass (with fine-tuning: of the base
    // model).
    let train_kept = start.stats.kept_fraction(&learned);
    let finished = state.step >= facts.total;
    let mut report = LearnReport {
        model: model.name.clone(),
        task: task.name().into(),
        split: facts.split.clone(),
        steps: state.step,
        finished,
        loss_first: state.losses.first().copied().unwrap_or(f64::NAN),
        loss_last: state.losses.last().copied().unwrap_or(f64::NAN),
        kept_last: state.kept.last().copied().unwrap_or(f64::NAN),
        train_kept,
        train_kept_initial: start.train_kept_initial,
        target_keep: start.target_keep,
        initial_per_layer: mean_per_layer(&start.initial),
        learned_per_layer: mean_per_layer(&learned),
        seconds: facts.began.elapsed().as_secs_f64(),
        train_seconds: facts.train_seconds,
        tuned_tensors: 0,
        tuned_max_change: 0.0,
        probe_train_accuracy: start.head.as_ref().map(|h| h.train_accuracy),
        layer_tape_bytes: facts.layer_tape_bytes,
        grad_checkpoint: facts.checkpointed,
    };
    let weights = match tuned {
        Some(Tuned { tuner, base_sha256 }) => {
            let (w, change) = tuner.weights_file(
                &state.params,
                &start.params,
                &base_sha256,
                weights_meta(model, o, &report),
            )?;
            report.tuned_tensors = w.tensors.len();
            report.tuned_max_change = change;
            Some(w)
        }
        None => None,
    };
    report.seconds = facts.began.elapsed().as_secs_f64();
    let file = learned_file(&learned, o, &report);
    Ok(Learned {
        thresholds: learned,
        file,
        report,
        weights,
    })
}

/// The thresholds (logit units) of the parameters `params`, per layer and head: a
/// per-layer run's value repeated over its layer's heads.
fn learned_thresholds(o: &LearnOptions, shape: Shape, params: &[f64]) -> Thresholds {
    let Shape { layers, heads, .. } = shape;
    Thresholds {
        values: (0..layers)
            .map(|l| {
                (0..heads)
                    .map(|h| {
                        let i = if o.per_head { l * heads + h } else { l };
                        params[i] as f32
                    })
                    .collect()
            })
            .collect(),
    }
}

/// The mean over heads of each layer's thresholds (logit units).
fn mean_per_layer(th: &Thresholds) -> Vec<f32> {
    th.values
        .iter()
        .map(|r| r.iter().sum::<f32>() / r.len() as f32)
        .collect()
}
