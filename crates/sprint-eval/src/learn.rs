//! Learned thresholds (LeOPArd-style, arXiv 2204.03227), thresholds-only mode: the model is
//! frozen and the thresholds `Th` (one per layer, or per layer and head; logit units) are
//! the only trainable parameters, on candle's autograd.
//!
//! Training replaces the hard test `s >= Th` by the soft mask `sigmoid((s - Th) / T)`
//! ([`sprint_models::soft`]); `T` is annealed geometrically from `t_start` to `t_end`
//! (logit units) over the run, approaching the hard mask. The loss is
//!
//! `task + weight * (kept - keep)^2`
//!
//! where `kept` is the expected fraction of visible (query, key) pairs the soft mask keeps
//! (all layers and heads pooled) and `keep` the target: the penalty pins the kept fraction
//! to the target and the task loss decides how it is shared between layers and heads. The task loss is, for MiniLM probe
//! tasks, the distance of the sentence embedding to the dense one, `1 - cos` (the probe is
//! trained on dense embeddings, so matching them is what keeps its accuracy), or with
//! `task_loss = classification` the labels' cross-entropy under a frozen probe
//! ([`crate::probe_loss`]); for decoder perplexity tasks, the mean next-token negative
//! log-likelihood (nats) of the window.
//! Thresholds start from the quantile calibration ([`crate::calibrate`]) at the target on
//! the training items. Adam (host-side, f64) updates them.
//!
//! Training items are disjoint from evaluation items: probe tasks train on the train split
//! `sprint eval` uses with the same `--limit` and `--seed`; perplexity tasks train on
//! windows of the text after the tokens the evaluation reads (`eval_windows x
//! eval_seq_len`).
//!
//! Deterministic: the order of the items is a seeded permutation per epoch and every
//! kernel sums in a fixed order, so the same seed gives bit-identical thresholds whatever
//! the thread count; a checkpoint holds the step, the thresholds and Adam's moments, so a
//! run resumed from it ends with the same thresholds as an uninterrupted one.
//!
//! The parts, one concern each:
//!
//! - `options`: [`LearnOptions`] and their checks; `progress`: [`LearnProgress`];
//! - `data`: the training items ([`training_items`]) and their labels;
//! - `start`: the dense pass, the frozen probe and the calibrated start ([`score_stats`]);
//! - `schedule`: the temperature of each step ([`temperature`]) and its items;
//! - `step`: one step (forward, loss, backward, update); `adam`: the optimiser ([`Adam`]);
//! - `train`: the loop over the steps up to the end or an early stop;
//! - `checkpoint`: the run's state and its file ([`Checkpoint`], [`CheckpointPlan`]);
//! - `outcome`, `report`, `provenance`: what a run gives ([`Learned`], [`LearnReport`]) and
//!   the provenance of its files ([`learned_file`]).

mod adam;
mod checkpoint;
mod data;
mod options;
mod outcome;
mod progress;
mod provenance;
mod report;
mod schedule;
mod start;
mod step;
mod train;

use std::time::Instant;

use sprint_assets::Cache;
use sprint_models::soft::SoftModel;
use sprint_models::{LoadedModel, Model};

pub use adam::{ADAM_BETA1, ADAM_BETA2, ADAM_EPSILON, Adam};
pub use checkpoint::{Checkpoint, CheckpointPlan, MAX_CHECKPOINT_PARAM};
pub use data::{training_items, training_labels};
pub use options::{
    DEFAULT_FT_LR, LearnOptions, MAX_RESERVED_TOKENS, NO_PRUNE_THRESHOLD, reserved_tokens,
};
pub use outcome::Learned;
pub use progress::{LearnProgress, NoLearnProgress};
pub use provenance::learned_file;
pub use report::LearnReport;
pub use schedule::temperature;
pub use start::score_stats;

use checkpoint::{RunIdentity, TrainState};
use outcome::{RunFacts, Tuned, finish};
use start::{Shape, start};
use step::{Steps, thresholds_var};
use train::{last_step, train};

use crate::error::{EvalError, Result};
use crate::finetune::FineTuner;
pub use crate::grad_checkpoint::{AUTO_TAPE_BUDGET_BYTES, GradCheckpoint};
use crate::probe_loss::ProbeLoss;
use crate::tasks::{Task, TaskKind};

/// Runs (or resumes) training of `model` on `task`: the thresholds, and with
/// `o.finetune` the norms and biases too (see [`Learned`]).
pub fn learn(
    model: &LoadedModel,
    cache: &Cache,
    task: Task,
    o: &LearnOptions,
    plan: &CheckpointPlan,
    progress: &dyn LearnProgress,
) -> Result<Learned> {
    let began = Instant::now();
    check_run(model, task, o)?;
    let mut soft = SoftModel::new(&model.model)?;
    let datapath = o.datapath_config()?;
    let (layers, heads) = (soft.layers(), soft.heads());
    let np = if o.per_head { layers * heads } else { layers };
    let shape = Shape { layers, heads, np };
    let tuner = FineTuner::new(&mut soft, o.finetune, np)?;
    let base_sha256 = base_sha256(model, tuner.is_some())?;

    progress.stage("preparing data", 1);
    let (seqs, split) = training_items(model, cache, task, o)?;
    let pad = model.tokenizer()?.pad_id();
    let n = seqs.len();
    progress.inc(None);
    let start = start(
        model,
        cache,
        task,
        o,
        &seqs,
        pad,
        shape,
        tuner.as_ref(),
        progress,
    )?;

    let slots = tuner.as_ref().map_or(Vec::new(), |t| t.slots().to_vec());
    let run = RunIdentity {
        options: o,
        model: &model.name,
        tensors: &slots,
    };
    let mut state = run.resume(plan, TrainState::start(start.params.clone()))?;
    if let Some(t) = &tuner {
        t.load(&state.params)?;
    }
    let thresholds = thresholds_var(&state.params, shape, o.per_head)?;
    let total = n.div_ceil(o.batch_size) * o.epochs;
    // Gradient checkpointing: decided on the tape of the largest step.
    let longest = seqs.iter().map(Vec::len).max().unwrap_or(0);
    let layer_tape_bytes = soft.layer_tape_bytes(o.batch_size.min(n), longest, datapath.as_ref());
    let checkpointed = plan.grad_checkpoint.decide(layer_tape_bytes);
    let steps = Steps {
        o,
        soft: &soft,
        tuner: tuner.as_ref(),
        thresholds: &thresholds,
        seqs: &seqs,
        pad,
        start: &start,
        datapath: datapath.as_ref(),
        is_probe: task.kind() == TaskKind::Probe,
        shape,
        total,
        checkpointed,
    };
    let t_train = Instant::now();
    train(
        &steps,
        &mut state,
        last_step(plan, total),
        plan,
        &run,
        progress,
    )?;
    let train_seconds = t_train.elapsed().as_secs_f64();
    if let Some(p) = &plan.path {
        run.checkpoint(&state).write(p)?;
    }
    let tuned = tuner
        .as_ref()
        .zip(base_sha256)
        .map(|(tuner, base_sha256)| Tuned { tuner, base_sha256 });
    let facts = RunFacts {
        split,
        total,
        began,
        train_seconds,
        layer_tape_bytes,
        checkpointed,
    };
    finish(model, task, o, shape, &start, &state, tuned, facts)
}

/// Checks `o` and that they, `task` and `model` go together: the options are for `task`,
/// a probe task trains a BERT encoder, a perplexity task a Llama decoder on its NLL.
fn check_run(model: &LoadedModel, task: Task, o: &LearnOptions) -> Result<()> {
    o.check()?;
    if o.task != task.name() {
        return Err(EvalError::Input(format!(
            "options are for task `{}`, not `{}`",
            o.task,
            task.name()
        )));
    }
    let is_probe = task.kind() == TaskKind::Probe;
    if !is_probe && o.task_loss != ProbeLoss::Embedding {
        return Err(EvalError::Input(format!(
            "--task-loss {} is for probe tasks (bbc, spam, austen); `{}` is scored by perplexity and trains on its next-token NLL",
            o.task_loss,
            task.name()
        )));
    }
    match (&model.model, is_probe) {
        (Model::Bert(_), true) | (Model::Llama(_), false) => {}
        _ => {
            return Err(EvalError::TaskModel {
                task: task.name().into(),
                needs: if is_probe {
                    "a BERT encoder for learned thresholds"
                } else {
                    "a Llama decoder for learned thresholds"
                },
                model: model.name.clone(),
                is: format!("a {} model", model.model.architecture().name()),
            });
        }
    }
    Ok(())
}

/// The sha256 (hex) of `model`'s weights file when the run fine-tunes (`tuned`), the base
/// the fine-tuned weights file names; an error when the model was not loaded from a file.
fn base_sha256(model: &LoadedModel, tuned: bool) -> Result<Option<String>> {
    match (tuned, &model.base) {
        (false, _) => Ok(None),
        (true, Some(b)) => Ok(Some(b.sha256()?)),
        (true, None) => Err(EvalError::Input(format!(
            "fine-tuning needs a model loaded from a weights file (a checkpoint folder with model.safetensors or a GGUF file: the base of the fine-tuned weights file), not `{}`",
            model.name
        ))),
    }
}
