//! The options of a training run ([`LearnOptions`], with their defaults and checks) and
//! the limit on the tokens a perplexity task's evaluation windows may reserve.

use serde::{Deserialize, Serialize};
use sprint_core::config::AttentionConfig;

use crate::error::{EvalError, Result};
use crate::finetune::Finetune;
use crate::probe_loss::ProbeLoss;
use crate::tasks::{Task, TaskKind};

/// Options of a thresholds-only training run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LearnOptions {
    /// Task name (`bbc`, `spam`, `austen`, `ppl-austen`, ...).
    pub task: String,
    /// Target fraction of visible (query, key) pairs kept, in (0, 1].
    pub keep: f64,
    /// One threshold per head (true) or per layer (false).
    pub per_head: bool,
    /// Training items: documents of the train split, or windows; 0 = all.
    pub items: usize,
    /// Tokens per training sequence (truncation or window length).
    pub seq_len: usize,
    /// Probe tasks: documents before the split, as `sprint eval --limit` (0 = all).
    pub limit: usize,
    /// Perplexity tasks: evaluation windows reserved at the start of the text.
    pub eval_windows: usize,
    /// Perplexity tasks: length of the reserved evaluation windows (tokens).
    pub eval_seq_len: usize,
    /// Passes over the training items.
    pub epochs: usize,
    /// Sequences per step.
    pub batch_size: usize,
    /// Adam learning rate (logit units per step).
    pub lr: f64,
    /// Initial temperature (logit units).
    pub t_start: f64,
    /// Final temperature (logit units).
    pub t_end: f64,
    /// Weight of the kept-fraction regulariser.
    pub weight: f64,
    /// Seed of the splits and the item order.
    pub seed: u64,
    /// Start per-head thresholds from per-head quantiles (true) or from their layer's
    /// quantile (false).
    #[serde(default)]
    pub init_per_head: bool,
    /// Start from the thresholds that keep this share of each layer's (with
    /// `init_per_head`, each head's) softmax mass on the training items instead of the
    /// quantile at `keep`; the kept-fraction target is then the fraction those thresholds
    /// keep on the training items (the sparsity of the start is held, accuracy is trained).
    #[serde(default)]
    pub init_mass: Option<f64>,
    /// Train against SPRINT's datapath: the soft mask follows the in-memory comparator's
    /// approximate score (quantised Q, `K_MSB` cells) and the recheck of the recomputed
    /// score ([`sprint_models::soft::datapath_scores`]) instead of the exact float score, so
    /// the thresholds are learned in the comparator's terms and the kept-fraction target
    /// applies to the keys that reach the softmax.
    #[serde(default)]
    pub datapath: bool,
    /// Overrides of the training datapath's attention configuration (`KEY=VALUE` as
    /// `sprint eval --set`; e.g. `noise.preset=typical` for noise-aware training). With
    /// noise, each step draws a new chip (crossbar, offsets, read noise) from a seed of
    /// `seed` and the step.
    #[serde(default)]
    pub datapath_sets: Vec<String>,
    /// What trains beside the thresholds ([`Finetune`]; default none: the model frozen).
    #[serde(default)]
    pub finetune: Finetune,
    /// Adam learning rate of the fine-tuned tensors (their own units per step: LayerNorm
    /// gains are dimensionless, biases are in the units of the layer's output).
    #[serde(default = "default_ft_lr")]
    pub ft_lr: f64,
    /// Prune in training (true). False runs the soft forward with no mask (every threshold
    /// at [`NO_PRUNE_THRESHOLD`], not trained, regulariser off): the fine-tuning recipe
    /// without pruning, the dense reference of a fine-tuned run.
    #[serde(default = "default_prune")]
    pub prune: bool,
    /// Probe tasks: the task loss ([`ProbeLoss`]; default the embedding distance).
    #[serde(default)]
    pub task_loss: ProbeLoss,
}

/// Default Adam learning rate of fine-tuned tensors, per step.
pub const DEFAULT_FT_LR: f64 = 1e-3;

/// The threshold (logits) of every head when pruning is off: far below any score, so the
/// soft mask is exactly 1 in f32 at every temperature used.
pub const NO_PRUNE_THRESHOLD: f64 = -1e9;

fn default_ft_lr() -> f64 {
    DEFAULT_FT_LR
}

fn default_prune() -> bool {
    true
}

impl LearnOptions {
    /// Defaults for `task`: keep 0.25, per head, 256 training documents (or 32 windows of
    /// 512 tokens), 2 epochs, batch 8 (1 window), lr 0.05, T from 0.5 to 0.02, weight 200.
    pub fn new(task: Task) -> Self {
        let ppl = task.kind() == TaskKind::Perplexity;
        Self {
            task: task.name().into(),
            keep: 0.25,
            per_head: true,
            items: if ppl { 32 } else { 256 },
            seq_len: if ppl { 512 } else { 256 },
            limit: 0,
            eval_windows: 8,
            eval_seq_len: 1024,
            epochs: 2,
            batch_size: if ppl { 1 } else { 8 },
            lr: 0.05,
            t_start: 0.5,
            t_end: 0.02,
            weight: 200.0,
            seed: 0,
            init_per_head: false,
            init_mass: None,
            datapath: false,
            datapath_sets: Vec::new(),
            finetune: Finetune::None,
            ft_lr: DEFAULT_FT_LR,
            prune: true,
            task_loss: ProbeLoss::Embedding,
        }
    }

    /// The attention configuration of the training datapath (`None` without `datapath`).
    pub fn datapath_config(&self) -> Result<Option<AttentionConfig>> {
        if !self.datapath {
            if !self.datapath_sets.is_empty() {
                return Err(EvalError::Input(
                    "datapath overrides (--datapath-set) need --datapath".into(),
                ));
            }
            return Ok(None);
        }
        let cfg = AttentionConfig::default().with_overrides(&self.datapath_sets)?;
        if !cfg.variant.prunes_in_memory() {
            return Err(EvalError::Input(format!(
                "--datapath trains against an in-memory variant (sprint, sprint-no-recompute), not {:?}",
                cfg.variant
            )));
        }
        Ok(Some(cfg))
    }

    /// Checks the options on their own (ranges and combinations); errors name the flag.
    pub(super) fn check(&self) -> Result<()> {
        self.datapath_config()?;
        let bad = |what: &str, v: String| Err(EvalError::Input(format!("{what} {v}")));
        if !(self.keep > 0.0 && self.keep <= 1.0) {
            return bad("--keep must be in (0, 1], got", self.keep.to_string());
        }
        if let Some(m) = self.init_mass {
            if !(m > 0.0 && m <= 1.0) {
                return bad("--init-mass must be in (0, 1], got", m.to_string());
            }
            if !self.prune {
                return Err(EvalError::Input(
                    "--init-mass starts the thresholds; --no-prune trains none".into(),
                ));
            }
        }
        if self.epochs == 0 || self.batch_size == 0 {
            return bad(
                "--epochs and --batch-size must be at least 1, got",
                format!("{} and {}", self.epochs, self.batch_size),
            );
        }
        if self.seq_len < 2 {
            return bad(
                "--seq-len must be at least 2, got",
                self.seq_len.to_string(),
            );
        }
        if !(self.t_start > 0.0 && self.t_end > 0.0 && self.t_end <= self.t_start) {
            return bad(
                "temperatures must satisfy 0 < --t-end <= --t-start, got",
                format!("{} and {}", self.t_start, self.t_end),
            );
        }
        if !(self.ft_lr > 0.0 && self.ft_lr.is_finite()) {
            return bad("--ft-lr must be positive, got", self.ft_lr.to_string());
        }
        if !self.prune && self.finetune == Finetune::None {
            return Err(EvalError::Input(
                "training without pruning (--no-prune) is the dense reference of a fine-tuning recipe: it needs --finetune".into(),
            ));
        }
        if !self.prune && self.datapath {
            return Err(EvalError::Input(
                "--no-prune and --datapath exclude each other (no mask, no datapath)".into(),
            ));
        }
        if !(self.lr > 0.0 && self.lr.is_finite() && self.weight >= 0.0) {
            return bad(
                "--lr must be positive and --weight non-negative, got",
                format!("{} and {}", self.lr, self.weight),
            );
        }
        Ok(())
    }
}

/// Most tokens the evaluation windows of a perplexity task may reserve (`eval_windows x
/// eval_seq_len`): 2^24, 16x the longest text of the pinned assets. Checked before any model
/// or text is loaded.
pub const MAX_RESERVED_TOKENS: usize = 1 << 24;

/// The tokens the evaluation windows reserve, or an error naming both options when the
/// product is over [`MAX_RESERVED_TOKENS`] (or overflows).
pub fn reserved_tokens(o: &LearnOptions) -> Result<usize> {
    match o.eval_windows.checked_mul(o.eval_seq_len) {
        Some(n) if n <= MAX_RESERVED_TOKENS => Ok(n),
        _ => Err(EvalError::Input(format!(
            "--eval-windows {} x --eval-seq-len {} tokens is over the limit of {MAX_RESERVED_TOKENS} (longer than any text of the pinned assets)",
            o.eval_windows, o.eval_seq_len
        ))),
    }
}
