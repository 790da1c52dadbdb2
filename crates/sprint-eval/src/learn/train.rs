//! The training loop: the steps from where the run stands to its end or its early stop
//! ([`CheckpointPlan::stop_after`]), with a checkpoint every `every` steps.

use super::checkpoint::{CheckpointPlan, RunIdentity, TrainState};
use super::progress::LearnProgress;
use super::step::Steps;
use crate::error::Result;

/// Runs the steps of `steps` from `state.step` until `stop` (the run's last step or its
/// early stop), reporting each to `progress`; writes the checkpoint of `plan` every
/// `plan.every` steps (the caller writes the last one).
pub(super) fn train(
    steps: &Steps,
    state: &mut TrainState,
    stop: usize,
    plan: &CheckpointPlan,
    run: &RunIdentity,
    progress: &dyn LearnProgress,
) -> Result<()> {
    progress.stage("training steps", (stop.saturating_sub(state.step)) as u64);
    while state.step < stop {
        let s = steps.gradients(state.step)?;
        steps.update(state, &s)?;
        progress.inc(Some(&format!(
            "loss {:.5} task {:.5} kept {:.4} T {:.3}",
            s.loss, s.task, s.kept, s.temperature
        )));
        if let Some(p) = &plan.path
            && plan.every > 0
            && state.step.is_multiple_of(plan.every)
        {
            run.checkpoint(state).write(p)?;
        }
    }
    Ok(())
}

/// The last step of a run of `total` steps under `plan`: `total`, or the early stop
/// `plan.stop_after` when it comes first.
pub(super) fn last_step(plan: &CheckpointPlan, total: usize) -> usize {
    plan.stop_after.unwrap_or(total).min(total)
}
