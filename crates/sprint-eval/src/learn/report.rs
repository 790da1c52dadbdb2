//! The report of a training run ([`LearnReport`]): its data, losses, kept fractions,
//! thresholds before and after, and wall times.

use serde::Serialize;

/// The outcome of a training run.
#[derive(Clone, Debug, Serialize)]
pub struct LearnReport {
    /// Model name.
    pub model: String,
    /// Task name.
    pub task: String,
    /// The training data.
    pub split: String,
    /// Steps run in all (including those before a resume).
    pub steps: usize,
    /// Whether the run finished all its steps.
    pub finished: bool,
    /// Loss of the first and the last step.
    pub loss_first: f64,
    /// Loss of the last step.
    pub loss_last: f64,
    /// Soft kept fraction of the last step.
    pub kept_last: f64,
    /// Hard kept fraction (`s >= Th` on the exact float scores) of the learned thresholds
    /// on the training items.
    pub train_kept: f64,
    /// Hard kept fraction of the initial (calibrated) thresholds on the training items.
    pub train_kept_initial: f64,
    /// Target of the kept-fraction regulariser: `keep`, or with `init_mass` the start's
    /// hard kept fraction on the training items.
    pub target_keep: f64,
    /// Thresholds of the quantile calibration the run started from, per layer (mean over
    /// heads), logit units.
    pub initial_per_layer: Vec<f32>,
    /// Learned thresholds per layer (mean over heads), logit units.
    pub learned_per_layer: Vec<f32>,
    /// Wall time of this invocation, seconds.
    pub seconds: f64,
    /// Wall time of the training steps of this invocation, seconds.
    pub train_seconds: f64,
    /// Fine-tuned tensors written to the weights file (0 without fine-tuning).
    pub tuned_tensors: usize,
    /// Largest absolute change of a fine-tuned element from the base model (their units;
    /// 0 without fine-tuning).
    pub tuned_max_change: f64,
    /// With the classification loss: the share of the training documents its probe
    /// classifies right on their dense embeddings.
    pub probe_train_accuracy: Option<f64>,
    /// Estimated autograd tape of the layers of one step without gradient checkpointing
    /// ([`sprint_models::soft::SoftModel::layer_tape_bytes`]), bytes.
    pub layer_tape_bytes: f64,
    /// Whether the steps were gradient-checkpointed (the layers recomputed in the
    /// backward, holding one layer's tape).
    pub grad_checkpoint: bool,
}
