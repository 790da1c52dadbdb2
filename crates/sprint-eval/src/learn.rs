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

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{D, Device, Tensor, Var};
use serde::{Deserialize, Serialize};
use sprint_assets::{Cache, data};
use sprint_core::config::{AttentionConfig, ThresholdFile, Thresholds};
use sprint_models::soft::{SoftMask, SoftModel};
use sprint_models::{LoadedModel, Model, TokenBatch};

use crate::calibrate::CalibratingAttention;
use crate::error::{CandleOp, EvalError, Result};
use crate::finetune::{FineTuner, Finetune, TensorSlot};
pub use crate::grad_checkpoint::{AUTO_TAPE_BUDGET_BYTES, GradCheckpoint};
use crate::probe_loss::{ClassificationHead, ProbeLoss, embedding_loss};
use crate::run::TEST_FRACTION;
use crate::tasks::{Task, TaskKind, labeled_corpus, perplexity_text, subset, windows};
use sprint_models::finetuned::FineTunedWeights;

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

    fn check(&self) -> Result<()> {
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

/// Receives training progress.
pub trait LearnProgress {
    /// A stage of `len` units (`what`) begins (data preparation, calibration, training).
    fn stage(&self, what: &str, len: u64);
    /// One unit done; during training `status` says the loss, kept fraction and `T`.
    fn inc(&self, status: Option<&str>);
}

/// Progress that goes nowhere.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoLearnProgress;

impl LearnProgress for NoLearnProgress {
    fn stage(&self, _what: &str, _len: u64) {}
    fn inc(&self, _status: Option<&str>) {}
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

/// Largest magnitude of a checkpoint parameter: thresholds are logits (tens at most) and
/// fine-tuned norm gains and biases are of order one; a larger value is a damaged or edited
/// file, refused before it can turn into a thresholds file of `inf` or NaN.
pub const MAX_CHECKPOINT_PARAM: f64 = 1e6;

/// A training checkpoint (JSON): options, next step, thresholds (and fine-tuned tensors)
/// and Adam's moments.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// The run's options (a resume must use the same).
    pub options: LearnOptions,
    /// Model name.
    pub model: String,
    /// Steps done.
    pub step: usize,
    /// Parameters: the thresholds (logit units), layer-major, then the values of the
    /// fine-tuned tensors of `tensors`, in order.
    pub params: Vec<f64>,
    /// Adam first moments.
    pub m: Vec<f64>,
    /// Adam second moments.
    pub v: Vec<f64>,
    /// Loss of each step done.
    pub losses: Vec<f64>,
    /// Soft kept fraction of each step done.
    pub kept: Vec<f64>,
    /// The fine-tuned tensors whose values end `params` (empty without fine-tuning).
    #[serde(default)]
    pub tensors: Vec<TensorSlot>,
}

impl Checkpoint {
    /// Reads a checkpoint; errors name the file and the field.
    pub fn read(path: &Path) -> Result<Self> {
        let text = crate::error::read_text(path)?;
        let bad = |what: String| {
            EvalError::Input(format!(
                "{}: not a thresholds checkpoint: {what}",
                path.display()
            ))
        };
        let serde_json::Value::Object(mut map) =
            serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?
        else {
            return Err(bad("not a JSON object".into()));
        };
        fn field<T: serde::de::DeserializeOwned>(
            map: &mut serde_json::Map<String, serde_json::Value>,
            name: &str,
            bad: &dyn Fn(String) -> EvalError,
        ) -> Result<T> {
            let v = map
                .remove(name)
                .ok_or_else(|| bad(format!("field `{name}` is missing")))?;
            serde_json::from_value(v).map_err(|e| bad(format!("field `{name}`: {e}")))
        }
        let c = Checkpoint {
            options: field(&mut map, "options", &bad)?,
            model: field(&mut map, "model", &bad)?,
            step: field(&mut map, "step", &bad)?,
            params: field(&mut map, "params", &bad)?,
            m: field(&mut map, "m", &bad)?,
            v: field(&mut map, "v", &bad)?,
            losses: field(&mut map, "losses", &bad)?,
            kept: field(&mut map, "kept", &bad)?,
            tensors: if map.contains_key("tensors") {
                field(&mut map, "tensors", &bad)?
            } else {
                Vec::new()
            },
        };
        if let Some(k) = map.keys().next() {
            return Err(bad(format!("unknown field `{k}`")));
        }
        let n = c.params.len();
        let in_tensors: usize = c.tensors.iter().map(TensorSlot::len).sum();
        if in_tensors > n || (c.options.finetune == Finetune::None) != c.tensors.is_empty() {
            return Err(EvalError::Input(format!(
                "{}: field `tensors` lists {} tensors of {in_tensors} values for {n} parameters and fine-tuning `{}`",
                path.display(),
                c.tensors.len(),
                c.options.finetune
            )));
        }
        if c.m.len() != n || c.v.len() != n {
            return Err(EvalError::Input(format!(
                "{}: field `m`/`v` has {}/{} values for {n} parameters",
                path.display(),
                c.m.len(),
                c.v.len()
            )));
        }
        if c.losses.len() != c.step || c.kept.len() != c.step {
            return Err(EvalError::Input(format!(
                "{}: field `losses`/`kept` has {}/{} values for {} steps",
                path.display(),
                c.losses.len(),
                c.kept.len(),
                c.step
            )));
        }
        if let Some(x) = c
            .params
            .iter()
            .chain(&c.m)
            .chain(&c.v)
            .find(|x| !x.is_finite())
        {
            return Err(EvalError::Input(format!(
                "{}: field `params`/`m`/`v` holds {x}",
                path.display()
            )));
        }
        if let Some(x) = c.v.iter().find(|&&x| x < 0.0) {
            return Err(EvalError::Input(format!(
                "{}: field `v` holds {x}; Adam's second moments are never negative",
                path.display()
            )));
        }
        if let Some(x) = c.params.iter().find(|x| x.abs() > MAX_CHECKPOINT_PARAM) {
            return Err(EvalError::Input(format!(
                "{}: field `params` holds {x}, beyond the {MAX_CHECKPOINT_PARAM:e} a threshold (logits) or a fine-tuned norm value can take",
                path.display()
            )));
        }
        Ok(c)
    }

    fn write(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string(self)
            .map_err(|e| EvalError::Input(format!("cannot serialise the checkpoint: {e}")))?;
        sprint_core::outfile::write_atomic::<EvalError>(path, |w| {
            use std::io::Write;
            w.write_all(text.as_bytes())
                .map_err(|source| EvalError::Io {
                    path: path.to_path_buf(),
                    source,
                })
        })
    }
}

/// Where checkpoints go and whether to resume from one.
#[derive(Clone, Debug, Default)]
pub struct CheckpointPlan {
    /// Checkpoint file (written atomically every `every` steps and at the end).
    pub path: Option<PathBuf>,
    /// Steps between checkpoints (0 = only at the end).
    pub every: usize,
    /// Resume from `path` if it exists.
    pub resume: bool,
    /// Stop after this many steps in all (for tests of resuming); `None` = run to the end.
    pub stop_after: Option<usize>,
    /// Gradient checkpointing of the steps (memory against time; the results are the
    /// same bits either way).
    pub grad_checkpoint: GradCheckpoint,
}

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
    /// ([`SoftModel::layer_tape_bytes`]), bytes.
    pub layer_tape_bytes: f64,
    /// Whether the steps were gradient-checkpointed (the layers recomputed in the
    /// backward, holding one layer's tape).
    pub grad_checkpoint: bool,
}

/// The training (and calibration) items of `task` for options `o`: token sequences of at
/// most `o.seq_len` tokens, and a description of the data.
pub fn training_items(
    model: &LoadedModel,
    cache: &Cache,
    task: Task,
    o: &LearnOptions,
) -> Result<(Vec<Vec<u32>>, String)> {
    let tok = model.tokenizer()?;
    match task.kind() {
        TaskKind::Probe => {
            let docs = probe_training_docs(cache, task, o)?;
            let seqs = docs
                .docs
                .iter()
                .map(|&d| Ok(tok.encode(&docs.corpus.docs[d].text, Some(o.seq_len))?))
                .collect::<Result<Vec<_>>>()?;
            let split = format!(
                "{} of the {} documents of the stratified {:.0}% train split of {} documents (seed {}), first {} tokens; disjoint from the test split `sprint eval` scores with the same --limit and --seed",
                seqs.len(),
                docs.train_split,
                (1.0 - TEST_FRACTION) * 100.0,
                docs.chosen,
                o.seed,
                o.seq_len
            );
            Ok((seqs, split))
        }
        TaskKind::Perplexity => {
            let text = perplexity_text(task, cache)?;
            let ids = tok.encode_plain(&text)?;
            let reserved = reserved_tokens(o)?;
            if reserved >= ids.len() {
                return Err(EvalError::Input(format!(
                    "the text has {} tokens; the {} evaluation windows of {} reserve all of them",
                    ids.len(),
                    o.eval_windows,
                    o.eval_seq_len
                )));
            }
            let all = windows(&ids[reserved..], o.seq_len);
            if all.is_empty() {
                return Err(EvalError::Input(format!(
                    "no training window of {} tokens is left after the {reserved} reserved tokens",
                    o.seq_len
                )));
            }
            let mut order = data::permutation(all.len(), o.seed ^ 0x1ea7_0002);
            if o.items > 0 {
                order.truncate(o.items.min(order.len()));
            }
            order.sort_unstable();
            let seqs: Vec<Vec<u32>> = order.iter().map(|&j| all[j].to_vec()).collect();
            let split = format!(
                "{} of the {} non-overlapping {}-token windows after the first {reserved} tokens (the {} evaluation windows of {} tokens), chosen with seed {}",
                seqs.len(),
                all.len(),
                o.seq_len,
                o.eval_windows,
                o.eval_seq_len,
                o.seed
            );
            Ok((seqs, split))
        }
        TaskKind::ZeroShot => Err(EvalError::Input(format!(
            "learned thresholds support the probe and perplexity tasks, not `{}`",
            task.name()
        ))),
    }
}

/// The labels of a probe task's training items (in the order of [`training_items`]) and
/// the number of classes.
pub fn training_labels(cache: &Cache, task: Task, o: &LearnOptions) -> Result<(Vec<usize>, usize)> {
    if task.kind() != TaskKind::Probe {
        return Err(EvalError::Input(format!(
            "`{}` has no labels (not a probe task)",
            task.name()
        )));
    }
    let docs = probe_training_docs(cache, task, o)?;
    let labels = docs
        .docs
        .iter()
        .map(|&d| docs.corpus.docs[d].label)
        .collect();
    Ok((labels, docs.corpus.labels.len()))
}

/// The training documents of a probe task: indices into the corpus, in the order of
/// [`training_items`], and the sizes they were drawn from.
struct ProbeTrainingDocs {
    corpus: data::LabeledCorpus,
    docs: Vec<usize>,
    train_split: usize,
    chosen: usize,
}

fn probe_training_docs(cache: &Cache, task: Task, o: &LearnOptions) -> Result<ProbeTrainingDocs> {
    let corpus = labeled_corpus(task, cache)?;
    let limit = (o.limit > 0).then_some(o.limit);
    let chosen = subset(corpus.docs.len(), limit, o.seed);
    let labels: Vec<usize> = chosen.iter().map(|&i| corpus.docs[i].label).collect();
    let sp = data::stratified_split(&labels, TEST_FRACTION, o.seed)?;
    let mut order = data::permutation(sp.train.len(), o.seed ^ 0x1ea7_0001);
    if o.items > 0 {
        order.truncate(o.items.min(order.len()));
    }
    order.sort_unstable();
    Ok(ProbeTrainingDocs {
        docs: order.iter().map(|&j| chosen[sp.train[j]]).collect(),
        train_split: sp.train.len(),
        chosen: chosen.len(),
        corpus,
    })
}

/// Temperature of step `step` of `total`: geometric from `t_start` to `t_end`.
pub fn temperature(o: &LearnOptions, step: usize, total: usize) -> f64 {
    if total <= 1 {
        return o.t_end;
    }
    let f = step as f64 / (total - 1) as f64;
    o.t_start * (o.t_end / o.t_start).powf(f)
}

/// The items of step `step` (`per_epoch` steps per epoch over `n` items): a seeded
/// permutation of the items per epoch, cut into batches.
fn step_items(o: &LearnOptions, n: usize, step: usize) -> Vec<usize> {
    let per_epoch = n.div_ceil(o.batch_size);
    let epoch = step / per_epoch;
    let perm = data::permutation(
        n,
        o.seed ^ 0xe90c_0000 ^ (epoch as u64).wrapping_mul(0x9e37_79b9),
    );
    let b = step % per_epoch;
    perm[b * o.batch_size..((b + 1) * o.batch_size).min(n)].to_vec()
}

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

/// What a training run gives: the learned thresholds, the thresholds file (with its
/// provenance in `[meta]`), the report, and with fine-tuning the weights file of the
/// changed tensors (its `thresholds_file` metadata is for the caller to fill in).
pub type Learned = (
    Thresholds,
    ThresholdFile,
    LearnReport,
    Option<FineTunedWeights>,
);

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
    let t0 = Instant::now();
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
    let mut soft = SoftModel::new(&model.model)?;
    let datapath = o.datapath_config()?;
    let (layers, heads) = (soft.layers(), soft.heads());
    let np = if o.per_head { layers * heads } else { layers };
    let tuner = FineTuner::new(&mut soft, o.finetune, np)?;
    let base_sha256 = match (&tuner, &model.base) {
        (None, _) => None,
        (Some(_), Some(b)) => Some(b.sha256()?),
        (Some(_), None) => {
            return Err(EvalError::Input(format!(
                "fine-tuning needs a model loaded from a weights file (a checkpoint folder with model.safetensors or a GGUF file: the base of the fine-tuned weights file), not `{}`",
                model.name
            )));
        }
    };

    progress.stage("preparing data", 1);
    let (seqs, split) = training_items(model, cache, task, o)?;
    let pad = model.tokenizer()?.pad_id();
    let n = seqs.len();
    progress.inc(None);

    // Dense targets (probe tasks) and the calibration the thresholds start from.
    let single: Vec<TokenBatch> = seqs
        .iter()
        .map(|s| TokenBatch::from_sequences(vec![s.clone()], pad))
        .collect::<std::result::Result<_, _>>()?;
    // The same for every recipe on the same model and items (the pruned recipe and its
    // no-pruning twin): computed once per process.
    let (stats, targets) = DENSE_PASSES.get_or_try((model.name.clone(), seqs.clone()), || {
        progress.stage("dense pass (calibration, targets)", n as u64);
        let cal = CalibratingAttention::new(AttentionConfig::default(), layers, heads);
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
    })?;
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
    let mut init_params: Vec<f64> = if !o.prune {
        vec![NO_PRUNE_THRESHOLD; np]
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
    if let Some(t) = &tuner {
        init_params.extend(t.values()?);
    }
    let nt = init_params.len();
    let slots = tuner.as_ref().map_or(Vec::new(), |t| t.slots().to_vec());

    let per_epoch = n.div_ceil(o.batch_size);
    let total = per_epoch * o.epochs;
    let mut ck = Checkpoint {
        options: o.clone(),
        model: model.name.clone(),
        step: 0,
        params: init_params.clone(),
        m: vec![0.0; nt],
        v: vec![0.0; nt],
        losses: Vec::new(),
        kept: Vec::new(),
        tensors: slots.clone(),
    };
    if plan.resume
        && let Some(p) = &plan.path
        && p.exists()
    {
        let c = Checkpoint::read(p)?;
        if c.options != *o || c.model != model.name || c.params.len() != nt || c.tensors != slots {
            return Err(EvalError::Input(format!(
                "{}: checkpoint of another run (model `{}`, task `{}`, {} parameters); this run: model `{}`, task `{}`, {nt} parameters, and the options and field `tensors` must match",
                p.display(),
                c.model,
                c.options.task,
                c.params.len(),
                model.name,
                o.task
            )));
        }
        ck = c;
    }
    if let Some(t) = &tuner {
        t.load(&ck.params)?;
    }

    let var = Var::from_vec(
        ck.params[..np]
            .iter()
            .map(|&x| x as f32)
            .collect::<Vec<_>>(),
        if o.per_head {
            (layers, heads)
        } else {
            (layers, 1)
        },
        &Device::Cpu,
    )
    .op("thresholds")?;
    // Gradient checkpointing: decided on the tape of the largest step.
    let longest = seqs.iter().map(Vec::len).max().unwrap_or(0);
    let layer_tape_bytes = soft.layer_tape_bytes(o.batch_size.min(n), longest, datapath.as_ref());
    let checkpointed = plan.grad_checkpoint.decide(layer_tape_bytes);
    let stop = plan.stop_after.unwrap_or(total).min(total);
    progress.stage("training steps", (stop.saturating_sub(ck.step)) as u64);
    let t_train = Instant::now();
    let (b1, b2, eps) = (0.9, 0.999, 1e-8);
    while ck.step < stop {
        let step = ck.step;
        let t = temperature(o, step, total);
        let idx = step_items(o, n, step);
        let batch =
            TokenBatch::from_sequences(idx.iter().map(|&i| seqs[i].clone()).collect(), pad)?;
        let th = var
            .as_tensor()
            .broadcast_as((layers, heads))
            .op("thresholds")?;
        // A chip per step (noise-aware training draws the crossbar, offsets and read
        // noise anew each step; without noise the seed changes nothing).
        let step_cfg = datapath.as_ref().map(|c| {
            let mut c = c.clone();
            c.seed = sprint_attention::noise::stream_key(
                o.seed,
                sprint_attention::noise::Purpose::Cells,
                usize::MAX,
                usize::MAX,
                step,
            );
            c
        });
        let out = soft.forward_train(
            &batch,
            SoftMask {
                thresholds: &th,
                temperature: t,
                datapath: step_cfg.as_ref(),
            },
            checkpointed,
        )?;
        let task_loss = if let Some(h) = &head {
            h.loss(&out.output, &idx)?
        } else if is_probe {
            let tgt: Vec<f32> = idx
                .iter()
                .flat_map(|&i| targets[i].iter().copied())
                .collect();
            let tgt = Tensor::from_vec(tgt, out.output.dims(), &Device::Cpu).op("targets")?;
            embedding_loss(&out.output, &tgt)?
        } else {
            next_token_nll(&soft, &out.output, &batch)?
        };
        let kept = (&out.kept / out.visible).op("kept fraction")?;
        let excess = kept
            .affine(1.0, -target_keep)
            .and_then(|x| x.sqr())
            .and_then(|x| x * o.weight)
            .op("regulariser")?;
        let loss = if o.prune {
            (&task_loss + excess).op("loss")?
        } else {
            task_loss.clone()
        };
        let lv = f64::from(loss.to_scalar::<f32>().op("loss")?);
        let kv = f64::from(kept.to_scalar::<f32>().op("kept")?);
        let tv = task_loss.to_scalar::<f32>().op("loss")?;
        // Only the loss keeps the output segment's tape from here on (checkpointing frees
        // it before recomputing the layers).
        drop((task_loss, kept));
        let grads = out.backward(loss)?;
        // Thresholds first, then the fine-tuned tensors (zero gradient for thresholds
        // that do not train: pruning off).
        let mut g = match grads.get(var.as_tensor()) {
            Some(g) if o.prune => g
                .flatten_all()
                .and_then(|g| g.to_vec1::<f32>())
                .op("gradient")?,
            None if o.prune => {
                return Err(EvalError::Input(
                    "no gradient reached the thresholds".into(),
                ));
            }
            _ => vec![0.0; np],
        };
        if let Some(t) = &tuner {
            g.extend(t.gradients(&grads)?);
        }
        if !lv.is_finite() || g.iter().any(|x| !x.is_finite()) {
            return Err(EvalError::Input(format!(
                "training diverged at step {step} (loss {lv}); try a smaller --lr"
            )));
        }
        // Adam, bias-corrected, in f64 on the host.
        let k = (step + 1) as i32;
        let first = if o.prune { 0 } else { np };
        for (i, &gi) in g.iter().enumerate().take(nt).skip(first) {
            let gi = f64::from(gi);
            let lr = if i < np { o.lr } else { o.ft_lr };
            ck.m[i] = b1 * ck.m[i] + (1.0 - b1) * gi;
            ck.v[i] = b2 * ck.v[i] + (1.0 - b2) * gi * gi;
            let mh = ck.m[i] / (1.0 - b1.powi(k));
            let vh = ck.v[i] / (1.0 - b2.powi(k));
            ck.params[i] -= lr * mh / (vh.sqrt() + eps);
        }
        if let Some(t) = &tuner {
            t.load(&ck.params)?;
        }
        var.set(
            &Tensor::from_vec(
                ck.params[..np]
                    .iter()
                    .map(|&x| x as f32)
                    .collect::<Vec<_>>(),
                var.as_tensor().dims(),
                &Device::Cpu,
            )
            .op("thresholds")?,
        )
        .op("thresholds")?;
        ck.losses.push(lv);
        ck.kept.push(kv);
        ck.step += 1;
        progress.inc(Some(&format!(
            "loss {:.5} task {:.5} kept {:.4} T {:.3}",
            lv, tv, kv, t
        )));
        if let Some(p) = &plan.path
            && plan.every > 0
            && ck.step.is_multiple_of(plan.every)
        {
            ck.write(p)?;
        }
    }
    let train_seconds = t_train.elapsed().as_secs_f64();
    if let Some(p) = &plan.path {
        ck.write(p)?;
    }
    let learned = Thresholds {
        values: (0..layers)
            .map(|l| {
                (0..heads)
                    .map(|h| {
                        let i = if o.per_head { l * heads + h } else { l };
                        ck.params[i] as f32
                    })
                    .collect()
            })
            .collect(),
    };
    // The dense scores of the frozen model do not depend on the thresholds: the hard kept
    // fractions come from the statistics of the first pass (with fine-tuning: of the base
    // model).
    let train_kept = stats.kept_fraction(&learned);
    let finished = ck.step >= total;
    let mean = |th: &Thresholds| -> Vec<f32> {
        th.values
            .iter()
            .map(|r| r.iter().sum::<f32>() / r.len() as f32)
            .collect()
    };
    let mut report = LearnReport {
        model: model.name.clone(),
        task: task.name().into(),
        split: split.clone(),
        steps: ck.step,
        finished,
        loss_first: ck.losses.first().copied().unwrap_or(f64::NAN),
        loss_last: ck.losses.last().copied().unwrap_or(f64::NAN),
        kept_last: ck.kept.last().copied().unwrap_or(f64::NAN),
        train_kept,
        train_kept_initial,
        target_keep,
        initial_per_layer: mean(&initial),
        learned_per_layer: mean(&learned),
        seconds: t0.elapsed().as_secs_f64(),
        train_seconds,
        tuned_tensors: 0,
        tuned_max_change: 0.0,
        probe_train_accuracy: head.as_ref().map(|h| h.train_accuracy),
        layer_tape_bytes,
        grad_checkpoint: checkpointed,
    };
    let weights = match (&tuner, base_sha256) {
        (Some(t), Some(sha)) => {
            let (w, change) = t.weights_file(
                &ck.params,
                &init_params,
                &sha,
                weights_meta(model, o, &report),
            )?;
            report.tuned_tensors = w.tensors.len();
            report.tuned_max_change = change;
            Some(w)
        }
        _ => None,
    };
    report.seconds = t0.elapsed().as_secs_f64();
    let file = learned_file(&learned, o, &report);
    Ok((learned, file, report, weights))
}

/// Dense passes of [`learn`] (score statistics, and the dense embeddings of a probe task)
/// by model name and token sequences.
#[allow(clippy::type_complexity)]
static DENSE_PASSES: crate::memo::Memo<
    (String, Vec<Vec<u32>>),
    (crate::calibrate::ScoreStats, Vec<Vec<f32>>),
> = crate::memo::Memo::new();

/// Forgets the dense passes of [`learn`] kept in this process.
pub(crate) fn clear_memos() {
    DENSE_PASSES.clear();
}

/// Dense score and softmax-mass statistics of `model` over `seqs` (one sequence per
/// forward), for calibration; progress advances by one per sequence.
pub fn score_stats(
    model: &LoadedModel,
    seqs: &[Vec<u32>],
    progress: &dyn LearnProgress,
) -> Result<crate::calibrate::ScoreStats> {
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

fn finite(x: f32) -> f64 {
    if x.is_finite() { f64::from(x) } else { -64.0 }
}

/// Mean next-token NLL (nats) of the real tokens of `batch` from hidden states `h`
/// `[b, s, hidden]`.
fn next_token_nll(soft: &SoftModel, h: &Tensor, batch: &TokenBatch) -> Result<Tensor> {
    let (b, s, _) = h.dims3().op("hidden states")?;
    let mut rows = Vec::new();
    let mut targets = Vec::new();
    for bi in 0..b {
        for p in 0..s - 1 {
            if batch.valid[bi][p + 1] {
                rows.push((bi * s + p) as u32);
                targets.push(batch.ids[bi][p + 1]);
            }
        }
    }
    let flat = h.reshape((b * s, h.dim(2).op("hidden")?)).op("hidden")?;
    let idx = Tensor::from_vec(rows.clone(), rows.len(), &Device::Cpu).op("positions")?;
    let sel = flat.index_select(&idx, 0).op("positions")?;
    let logits = soft.logits(&sel)?;
    let logp = log_softmax(&logits)?;
    let tgt = Tensor::from_vec(targets, (rows.len(), 1), &Device::Cpu).op("targets")?;
    logp.gather(&tgt, 1)
        .and_then(|x| x.mean_all())
        .and_then(|x| x.neg())
        .op("nll")
}

/// Log-softmax over the last dimension (max-subtracted, the max detached from the tape).
pub(crate) fn log_softmax(x: &Tensor) -> Result<Tensor> {
    let m = x.max_keepdim(D::Minus1).op("log softmax")?.detach();
    let z = x.broadcast_sub(&m).op("log softmax")?;
    let lse = z
        .exp()
        .and_then(|e| e.sum_keepdim(D::Minus1))
        .and_then(|s| s.log())
        .op("log softmax")?;
    z.broadcast_sub(&lse).op("log softmax")
}

/// The metadata of the weights file of a fine-tuned run: the base model, the recipe.
fn weights_meta(
    model: &LoadedModel,
    o: &LearnOptions,
    r: &LearnReport,
) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    m.insert("base_model".into(), model.name.clone());
    if let Some(b) = &model.base {
        m.insert(
            "base_asset".into(),
            b.asset
                .clone()
                .unwrap_or_else(|| "(none: loaded by path)".into()),
        );
        m.insert("base_file".into(), b.file.display().to_string());
    }
    m.insert("finetune".into(), o.finetune.name().into());
    m.insert("task".into(), o.task.clone());
    m.insert(
        "keep".into(),
        if o.prune {
            r.target_keep.to_string()
        } else {
            "1 (pruning off)".into()
        },
    );
    m.insert("per_head".into(), o.per_head.to_string());
    m.insert("steps".into(), r.steps.to_string());
    m.insert("epochs".into(), o.epochs.to_string());
    m.insert("batch_size".into(), o.batch_size.to_string());
    m.insert("items".into(), o.items.to_string());
    m.insert("seq_len".into(), o.seq_len.to_string());
    m.insert("seed".into(), o.seed.to_string());
    m.insert("lr".into(), o.lr.to_string());
    m.insert("ft_lr".into(), o.ft_lr.to_string());
    m.insert("datapath".into(), o.datapath.to_string());
    m.insert(
        "loss".into(),
        if r.task.starts_with("ppl") {
            "mean next-token NLL".into()
        } else {
            o.task_loss.describe().into()
        },
    );
    m
}

/// The thresholds file of learned thresholds, with how they were obtained in `[meta]`.
pub fn learned_file(th: &Thresholds, o: &LearnOptions, r: &LearnReport) -> ThresholdFile {
    let mut m = BTreeMap::new();
    m.insert(
        "method".into(),
        format!(
            "learned ({}): per-{} thresholds trained on candle autograd with the soft mask sigmoid((s - Th)/T), T annealed {} -> {}, loss {} + {} * (kept - {})^2, Adam lr {}, {} epoch{} of batch {}, from {}",
            if o.finetune == Finetune::None {
                "thresholds only, model frozen".to_string()
            } else {
                format!("thresholds with fine-tuning of {}", o.finetune)
            },
            if o.per_head { "head" } else { "layer" },
            o.t_start,
            o.t_end,
            if r.task.starts_with("ppl") {
                "mean next-token NLL"
            } else {
                o.task_loss.describe()
            },
            o.weight,
            r.target_keep,
            o.lr,
            o.epochs,
            if o.epochs == 1 { "" } else { "s" },
            o.batch_size,
            match o.init_mass {
                Some(mass) => format!(
                    "the mass calibration at {mass} of the softmax mass (its kept fraction on the training items, {:.4}, is the target)",
                    r.target_keep
                ),
                None => format!("the quantile calibration at keep {}", o.keep),
            }
        ) + if o.init_per_head { " (per head)" } else { " (per layer)" },
    );
    m.insert(
        "trained_against".into(),
        if o.datapath {
            format!(
                "SPRINT's datapath: the soft mask follows the in-memory comparator (quantised Q DAC codes on K_MSB cells, bias correction, margin) and the recheck of the recomputed score, straight-through gradients; keep target on the keys reaching the softmax; attention-config overrides {:?}{}",
                o.datapath_sets,
                if o.datapath_sets.iter().any(|x| x.starts_with("noise")) {
                    " (noise-aware: a new chip drawn every step)"
                } else {
                    ""
                }
            )
        } else {
            "exact float scores (the runtime-pruning decision)".into()
        },
    );
    m.insert("target_keep".into(), r.target_keep.to_string());
    if let Some(a) = r.probe_train_accuracy {
        m.insert(
            "probe".into(),
            format!(
                "the classification loss's probe: sprint eval's logistic regression with isotropic scaling, fitted on the training documents' dense embeddings, {:.2} % right on them",
                100.0 * a
            ),
        );
    }
    if o.finetune != Finetune::None {
        m.insert(
            "finetune".into(),
            format!(
                "{} (Adam lr {}; {} tensors changed, largest change {:.3e}); {}; needs its weights file (sprint eval --weights); train_kept is on the base model's scores",
                o.finetune,
                o.ft_lr,
                r.tuned_tensors,
                r.tuned_max_change,
                if o.prune {
                    "pruning on"
                } else {
                    "pruning off (dense reference of the recipe: thresholds not trained)"
                }
            ),
        );
    }
    m.insert("model".into(), r.model.clone());
    m.insert("task".into(), r.task.clone());
    m.insert("split".into(), r.split.clone());
    m.insert("seed".into(), o.seed.to_string());
    m.insert("steps".into(), r.steps.to_string());
    m.insert(
        "train_kept".into(),
        format!("{:.6} (exact scores >= Th)", r.train_kept),
    );
    m.insert("units".into(), "logits (softmax input q.k/sqrt(d))".into());
    let (per_layer, per_head) = if o.per_head {
        (None, Some(th.values.clone()))
    } else {
        (Some(th.values.iter().map(|r| r[0]).collect()), None)
    };
    ThresholdFile {
        per_layer,
        per_head,
        meta: m,
    }
}
