//! The checkpoint of a training run: where the run stands ([`TrainState`]: the steps done,
//! the parameters, Adam's moments, the losses), its file ([`Checkpoint`], JSON, read with
//! a check of every field) and the plan of when to write it and whether to resume
//! ([`CheckpointPlan`]).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::adam::Adam;
use super::options::LearnOptions;
use crate::error::{EvalError, Result};
use crate::finetune::{Finetune, TensorSlot};
use crate::grad_checkpoint::GradCheckpoint;

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

    /// Writes the checkpoint atomically (a reader never sees half a file).
    pub(super) fn write(&self, path: &Path) -> Result<()> {
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

/// Where a training run stands: the steps done, the parameters after them, Adam's state
/// and the loss and soft kept fraction of every step done.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct TrainState {
    /// Steps done.
    pub step: usize,
    /// The thresholds (logit units), then the values of the fine-tuned tensors.
    pub params: Vec<f64>,
    /// Adam's moments of `params`.
    pub adam: Adam,
    /// Loss of each step done.
    pub losses: Vec<f64>,
    /// Soft kept fraction of each step done.
    pub kept: Vec<f64>,
}

impl TrainState {
    /// The state before the first step: the parameters `params`, zero moments.
    pub fn start(params: Vec<f64>) -> Self {
        Self {
            step: 0,
            adam: Adam::new(params.len()),
            params,
            losses: Vec::new(),
            kept: Vec::new(),
        }
    }

    /// The state of a checkpoint.
    fn of(c: Checkpoint) -> Self {
        Self {
            step: c.step,
            params: c.params,
            adam: Adam { m: c.m, v: c.v },
            losses: c.losses,
            kept: c.kept,
        }
    }
}

/// What a checkpoint names beside the state: the run's options, model and fine-tuned
/// tensors (a resume must match all three).
pub(super) struct RunIdentity<'a> {
    /// The run's options.
    pub options: &'a LearnOptions,
    /// Model name.
    pub model: &'a str,
    /// The fine-tuned tensors whose values end the parameters.
    pub tensors: &'a [TensorSlot],
}

impl RunIdentity<'_> {
    /// The checkpoint of `state` in this run.
    pub fn checkpoint(&self, state: &TrainState) -> Checkpoint {
        Checkpoint {
            options: self.options.clone(),
            model: self.model.into(),
            step: state.step,
            params: state.params.clone(),
            m: state.adam.m.clone(),
            v: state.adam.v.clone(),
            losses: state.losses.clone(),
            kept: state.kept.clone(),
            tensors: self.tensors.to_vec(),
        }
    }

    /// The state to continue from: with `plan.resume`, the checkpoint at `plan.path` when
    /// it exists (refused when it is of another run: other options, model, number of
    /// parameters or tensors); otherwise `fresh`.
    pub fn resume(&self, plan: &CheckpointPlan, fresh: TrainState) -> Result<TrainState> {
        let nt = fresh.params.len();
        if plan.resume
            && let Some(p) = &plan.path
            && p.exists()
        {
            let c = Checkpoint::read(p)?;
            if c.options != *self.options
                || c.model != self.model
                || c.params.len() != nt
                || c.tensors != self.tensors
            {
                return Err(EvalError::Input(format!(
                    "{}: checkpoint of another run (model `{}`, task `{}`, {} parameters); this run: model `{}`, task `{}`, {nt} parameters, and the options and field `tensors` must match",
                    p.display(),
                    c.model,
                    c.options.task,
                    c.params.len(),
                    self.model,
                    self.options.task
                )));
            }
            return Ok(TrainState::of(c));
        }
        Ok(fresh)
    }
}
