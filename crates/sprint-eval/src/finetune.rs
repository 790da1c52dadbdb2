//! Fine-tuning beside the learned thresholds ([`crate::learn`]): which tensors train
//! ([`Finetune`]), their place in the checkpoint ([`TensorSlot`]), and the host-side state
//! that moves them ([`FineTuner`]): f64 master copies in the checkpoint's parameter vector
//! after the thresholds, copied into the candle `Var`s of the soft forward
//! ([`sprint_models::soft::SoftModel::make_trainable`]) each step, and written out as a
//! fine-tuned weights file ([`sprint_models::finetuned`]).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use candle_core::Tensor;
use candle_core::backprop::GradStore;
use serde::{Deserialize, Serialize};
use sprint_models::finetuned::{BASE_SHA256, FineTunedWeights};
use sprint_models::soft::{SoftModel, Trainable};

use crate::error::{CandleOp, EvalError, Result};

/// What trains beside the thresholds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Finetune {
    /// Nothing: the model is frozen (thresholds only).
    #[default]
    None,
    /// The norms' gains and biases and the linear layers' biases: LayerNorm gains and
    /// biases plus linear biases in BERT encoders, the RMS-norm gains in Llama decoders
    /// (which have no biases); the weight matrices stay frozen.
    NormsBiases,
}

impl Finetune {
    /// The name on the command line (`none`, `norms-biases`).
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::NormsBiases => "norms-biases",
        }
    }
}

impl fmt::Display for Finetune {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Finetune {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "none" => Ok(Self::None),
            "norms-biases" => Ok(Self::NormsBiases),
            other => Err(format!(
                "unknown fine-tuning mode `{other}` (none, norms-biases)"
            )),
        }
    }
}

/// A fine-tuned tensor in a checkpoint: its name in the model's weights file and its shape;
/// its values follow the thresholds (and the tensors before it) in the parameter vector.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TensorSlot {
    /// Name in the model's weights file.
    pub name: String,
    /// Shape (elements per dimension).
    pub shape: Vec<usize>,
}

impl TensorSlot {
    /// Elements of the tensor.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether it has no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The trainable tensors of a soft forward and their place in the parameter vector.
pub struct FineTuner {
    vars: Vec<Trainable>,
    slots: Vec<TensorSlot>,
    /// Index of the first tensor value in the parameter vector (= number of thresholds).
    offset: usize,
}

impl FineTuner {
    /// Makes the tensors of `mode` trainable in `soft`; `None` for [`Finetune::None`].
    /// Their values start at index `offset` of the parameter vector.
    pub fn new(soft: &mut SoftModel, mode: Finetune, offset: usize) -> Result<Option<Self>> {
        if mode == Finetune::None {
            return Ok(None);
        }
        let vars = soft.make_trainable()?;
        let slots = vars
            .iter()
            .map(|t| TensorSlot {
                name: t.name.clone(),
                shape: t.var.dims().to_vec(),
            })
            .collect();
        Ok(Some(Self {
            vars,
            slots,
            offset,
        }))
    }

    /// The tensors' names and shapes, in parameter order.
    pub fn slots(&self) -> &[TensorSlot] {
        &self.slots
    }

    /// The tensors' elements in all.
    pub fn len(&self) -> usize {
        self.slots.iter().map(TensorSlot::len).sum()
    }

    /// Whether there is no element to train.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The tensors' current values, flattened in parameter order (f64).
    pub fn values(&self) -> Result<Vec<f64>> {
        let mut out = Vec::with_capacity(self.len());
        for t in &self.vars {
            let v = t
                .var
                .flatten_all()
                .and_then(|x| x.to_vec1::<f32>())
                .op("fine-tuned tensor")?;
            out.extend(v.into_iter().map(f64::from));
        }
        Ok(out)
    }

    /// Sets the variables from the parameter vector `params` (rounded to f32).
    pub fn load(&self, params: &[f64]) -> Result<()> {
        let mut at = self.offset;
        for (t, s) in self.vars.iter().zip(&self.slots) {
            let n = s.len();
            let x: Vec<f32> = params[at..at + n].iter().map(|&x| x as f32).collect();
            let x = Tensor::from_vec(x, s.shape.as_slice(), &candle_core::Device::Cpu)
                .op("fine-tuned tensor")?;
            t.var.set(&x).op("fine-tuned tensor")?;
            at += n;
        }
        Ok(())
    }

    /// The gradients of the tensors in `grads`, flattened in parameter order; an error
    /// names a tensor no gradient reached.
    pub fn gradients(&self, grads: &GradStore) -> Result<Vec<f32>> {
        let mut out = Vec::with_capacity(self.len());
        for t in &self.vars {
            let g = grads.get(t.var.as_tensor()).ok_or_else(|| {
                EvalError::Input(format!("no gradient reached the tensor `{}`", t.name))
            })?;
            out.extend(
                g.flatten_all()
                    .and_then(|x| x.to_vec1::<f32>())
                    .op("fine-tuned gradient")?,
            );
        }
        Ok(out)
    }

    /// The weights file of the tensors of `params` that differ from `initial` (bitwise in
    /// f32), with `meta` plus the base sha256 `base_sha256`; also returns the largest
    /// absolute change of any element.
    pub fn weights_file(
        &self,
        params: &[f64],
        initial: &[f64],
        base_sha256: &str,
        mut meta: BTreeMap<String, String>,
    ) -> Result<(FineTunedWeights, f64)> {
        let mut tensors = BTreeMap::new();
        let mut at = self.offset;
        let mut max_change = 0f64;
        for s in &self.slots {
            let n = s.len();
            let now: Vec<f32> = params[at..at + n].iter().map(|&x| x as f32).collect();
            let was: Vec<f32> = initial[at..at + n].iter().map(|&x| x as f32).collect();
            let changed = now
                .iter()
                .zip(&was)
                .any(|(a, b)| a.to_bits() != b.to_bits());
            for (a, b) in now.iter().zip(&was) {
                max_change = max_change.max(f64::from((a - b).abs()));
            }
            if changed {
                let t = Tensor::from_vec(now, s.shape.as_slice(), &candle_core::Device::Cpu)
                    .op("fine-tuned tensor")?;
                tensors.insert(s.name.clone(), t);
            }
            at += n;
        }
        meta.insert(BASE_SHA256.into(), base_sha256.into());
        Ok((FineTunedWeights { tensors, meta }, max_change))
    }
}
