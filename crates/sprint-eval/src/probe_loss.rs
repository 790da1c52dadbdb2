//! The task loss of learned thresholds on probe tasks (MiniLM sentence embeddings with a
//! linear probe): what a training step minimises besides the kept-fraction regulariser.
//!
//! - [`ProbeLoss::Embedding`] (the default): `1 - cos` between the sentence embedding and
//!   the base model's dense embedding of the same document, averaged over the batch. The
//!   probe `sprint eval` scores with is fitted on dense embeddings, so matching them keeps
//!   its accuracy; the labels are not used.
//! - [`ProbeLoss::Classification`]: the cross-entropy (nats, mean over the batch) of the
//!   documents' labels under a linear probe fitted on the dense embeddings of the training
//!   documents before the first step and frozen ([`ClassificationHead`]): training on the
//!   task as the paper's fine-tuning does (LeOPArd trains its thresholds with the task
//!   loss). Its no-pruning twin (`--no-prune`) then really fine-tunes on the task, so it
//!   is the reference that credits in-domain gains to fine-tuning, not to pruning.

use std::fmt;
use std::str::FromStr;

use candle_core::{D, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{CandleOp, EvalError, Result};
use crate::logreg::{LogRegOptions, LogisticRegression};

/// The task loss of a probe task.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProbeLoss {
    /// `1 - cos(embedding, dense embedding)`, mean over the batch (dimensionless).
    #[default]
    Embedding,
    /// Cross-entropy of the labels under a frozen probe fitted on the training documents'
    /// dense embeddings (nats, mean over the batch).
    Classification,
}

impl ProbeLoss {
    /// The name on the command line (`embedding`, `classification`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Embedding => "embedding",
            Self::Classification => "classification",
        }
    }

    /// What the loss is, for provenance (`[meta]` of the thresholds and weights files).
    pub fn describe(self) -> &'static str {
        match self {
            Self::Embedding => "1 - cos(embedding, base model's dense embedding)",
            Self::Classification => {
                "cross-entropy of the labels under a linear probe fitted on the training documents' dense embeddings (frozen)"
            }
        }
    }
}

impl fmt::Display for ProbeLoss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ProbeLoss {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "embedding" => Ok(Self::Embedding),
            "classification" => Ok(Self::Classification),
            other => Err(format!(
                "unknown task loss `{other}` (embedding, classification)"
            )),
        }
    }
}

/// `1 - cos` of unit vectors `output` and `targets` (`[batch, dim]` each), mean over the
/// batch.
pub fn embedding_loss(output: &Tensor, targets: &Tensor) -> Result<Tensor> {
    (output * targets)
        .and_then(|p| p.sum(D::Minus1))
        .and_then(|c| c.mean_all())
        .and_then(|c| c.affine(-1.0, 1.0))
        .op("embedding loss")
}

/// A linear probe frozen for training: logits `x W^T + b` on raw (unstandardised)
/// sentence embeddings, with the labels of the training documents.
pub struct ClassificationHead {
    /// `[dim, classes]`: the probe's weights over the standardised features, divided by
    /// each feature's standard deviation.
    weights_t: Tensor,
    /// `[classes]`: the probe's biases less the weighted feature means.
    bias: Tensor,
    labels: Vec<u32>,
    /// Share of the training documents the probe classifies right on their dense
    /// embeddings.
    pub train_accuracy: f64,
}

impl ClassificationHead {
    /// The probe's settings: `sprint eval`'s logistic regression with isotropic scaling.
    /// With per-feature scaling (`sprint eval`'s probe) the raw weights of near-constant
    /// embedding coordinates are huge, and one Adam step of the fine-tuned norms and
    /// biases moved them enough to lift the loss from 4e-4 to 3.5e4 nats (MiniLM BBC).
    pub fn options() -> LogRegOptions {
        LogRegOptions {
            isotropic: true,
            ..LogRegOptions::default()
        }
    }

    /// Fits the probe ([`Self::options`]) on `embeddings` (one dense embedding per
    /// training document) and `labels` in `0..classes`.
    pub fn fit(embeddings: &[Vec<f32>], labels: &[usize], classes: usize) -> Result<Self> {
        if embeddings.len() != labels.len() {
            return Err(EvalError::Input(format!(
                "classification loss: {} embeddings for {} labels",
                embeddings.len(),
                labels.len()
            )));
        }
        let clf = LogisticRegression::fit(embeddings, labels, classes, &Self::options())?;
        let predicted = clf.predict(embeddings)?;
        let right = predicted.iter().zip(labels).filter(|(p, l)| p == l).count();
        let (w, b) = clf.raw_affine();
        let dim = w.len() / classes;
        let w32: Vec<f32> = (0..dim)
            .flat_map(|j| (0..classes).map(move |c| (j, c)))
            .map(|(j, c)| w[c * dim + j] as f32)
            .collect();
        let b32: Vec<f32> = b.iter().map(|&x| x as f32).collect();
        Ok(Self {
            weights_t: Tensor::from_vec(w32, (dim, classes), &Device::Cpu).op("probe weights")?,
            bias: Tensor::from_vec(b32, classes, &Device::Cpu).op("probe bias")?,
            labels: labels.iter().map(|&l| l as u32).collect(),
            train_accuracy: right as f64 / labels.len().max(1) as f64,
        })
    }

    /// Mean cross-entropy (nats) of the labels of training documents `items` given their
    /// embeddings `output` (`[items.len(), dim]`, in the order of `items`).
    pub fn loss(&self, output: &Tensor, items: &[usize]) -> Result<Tensor> {
        let labels: Vec<u32> = items.iter().map(|&i| self.labels[i]).collect();
        let labels = Tensor::from_vec(labels, (items.len(), 1), &Device::Cpu).op("probe labels")?;
        let logits = output
            .matmul(&self.weights_t)
            .and_then(|z| z.broadcast_add(&self.bias))
            .op("probe logits")?;
        log_softmax(&logits)?
            .gather(&labels, 1)
            .and_then(|x| x.mean_all())
            .and_then(|x| x.neg())
            .op("cross-entropy")
    }
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
