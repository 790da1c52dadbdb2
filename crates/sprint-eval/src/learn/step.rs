//! One training step: the soft forward of the step's batch at its temperature, the loss
//! (task loss plus the kept-fraction regulariser), the backward, and the update of the
//! parameters by Adam.

use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor, Var};
use sprint_core::config::AttentionConfig;
use sprint_models::TokenBatch;
use sprint_models::soft::{SoftMask, SoftModel};

use super::checkpoint::TrainState;
use super::options::LearnOptions;
use super::schedule::{step_items, temperature};
use super::start::{Shape, Start};
use crate::error::{CandleOp, EvalError, Result};
use crate::finetune::FineTuner;
use crate::probe_loss::{embedding_loss, log_softmax};

/// What every step of a run shares: the options, the model and its trainable parts, the
/// data and where the run started.
pub(super) struct Steps<'a> {
    /// The run's options.
    pub o: &'a LearnOptions,
    /// The differentiable model.
    pub soft: &'a SoftModel,
    /// The fine-tuned tensors, if any.
    pub tuner: Option<&'a FineTuner>,
    /// The trained thresholds (logit units), `[layers, heads]` or `[layers, 1]`.
    pub thresholds: &'a Var,
    /// The training items' token sequences.
    pub seqs: &'a [Vec<u32>],
    /// The tokenizer's padding id.
    pub pad: u32,
    /// Where the run started (dense targets, probe, regulariser target).
    pub start: &'a Start,
    /// The training datapath's attention configuration (`None`: exact float scores).
    pub datapath: Option<&'a AttentionConfig>,
    /// Whether the task is a probe task (else a perplexity task).
    pub is_probe: bool,
    /// The dimensions of the thresholds.
    pub shape: Shape,
    /// Steps of the whole run (the temperature schedule's length).
    pub total: usize,
    /// Whether the steps are gradient-checkpointed.
    pub checkpointed: bool,
}

/// What the forward and backward of one step gave.
pub(super) struct StepLoss {
    /// The loss (task loss plus regulariser when pruning; nats or `1 - cos`).
    pub loss: f64,
    /// The task loss alone.
    pub task: f32,
    /// The soft kept fraction of the visible (query, key) pairs.
    pub kept: f64,
    /// The temperature of the soft mask (logit units).
    pub temperature: f64,
    /// The gradient of every parameter: thresholds first, then the fine-tuned tensors.
    pub grads: Vec<f32>,
}

impl Steps<'_> {
    /// The forward and backward of step `step`; an error when the loss or a gradient is
    /// not finite (the run diverged).
    pub fn gradients(&self, step: usize) -> Result<StepLoss> {
        let o = self.o;
        let Shape { layers, heads, .. } = self.shape;
        let t = temperature(o, step, self.total);
        let idx = step_items(o, self.seqs.len(), step);
        let batch = TokenBatch::from_sequences(
            idx.iter().map(|&i| self.seqs[i].clone()).collect(),
            self.pad,
        )?;
        let th = self
            .thresholds
            .as_tensor()
            .broadcast_as((layers, heads))
            .op("thresholds")?;
        let step_cfg = self.chip(step);
        let out = self.soft.forward_train(
            &batch,
            SoftMask {
                thresholds: &th,
                temperature: t,
                datapath: step_cfg.as_ref(),
            },
            self.checkpointed,
        )?;
        let task_loss = self.task_loss(&out.output, &idx, &batch)?;
        let kept = (&out.kept / out.visible).op("kept fraction")?;
        let excess = kept
            .affine(1.0, -self.start.target_keep)
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
        let g = self.parameter_gradients(&grads)?;
        if !lv.is_finite() || g.iter().any(|x| !x.is_finite()) {
            return Err(EvalError::Input(format!(
                "training diverged at step {step} (loss {lv}); try a smaller --lr"
            )));
        }
        Ok(StepLoss {
            loss: lv,
            task: tv,
            kept: kv,
            temperature: t,
            grads: g,
        })
    }

    /// The datapath of step `step`: a chip per step (noise-aware training draws the
    /// crossbar, offsets and read noise anew each step; without noise the seed changes
    /// nothing).
    fn chip(&self, step: usize) -> Option<AttentionConfig> {
        self.datapath.map(|c| {
            let mut c = c.clone();
            c.seed = sprint_attention::noise::stream_key(
                self.o.seed,
                sprint_attention::noise::Purpose::Cells,
                usize::MAX,
                usize::MAX,
                step,
            );
            c
        })
    }

    /// The task loss of the step's `output` for the items `idx` (`batch`): the
    /// classification loss under the frozen probe, the embedding distance to the dense
    /// targets, or the next-token NLL (nats) of a perplexity task.
    fn task_loss(&self, output: &Tensor, idx: &[usize], batch: &TokenBatch) -> Result<Tensor> {
        if let Some(h) = &self.start.head {
            h.loss(output, idx)
        } else if self.is_probe {
            let tgt: Vec<f32> = idx
                .iter()
                .flat_map(|&i| self.start.targets[i].iter().copied())
                .collect();
            let tgt = Tensor::from_vec(tgt, output.dims(), &Device::Cpu).op("targets")?;
            embedding_loss(output, &tgt)
        } else {
            next_token_nll(self.soft, output, batch)
        }
    }

    /// The gradient of every parameter: thresholds first, then the fine-tuned tensors
    /// (zero gradient for thresholds that do not train: pruning off).
    fn parameter_gradients(&self, grads: &GradStore) -> Result<Vec<f32>> {
        let o = self.o;
        let mut g = match grads.get(self.thresholds.as_tensor()) {
            Some(g) if o.prune => g
                .flatten_all()
                .and_then(|g| g.to_vec1::<f32>())
                .op("gradient")?,
            None if o.prune => {
                return Err(EvalError::Input(
                    "no gradient reached the thresholds".into(),
                ));
            }
            _ => vec![0.0; self.shape.np],
        };
        if let Some(t) = self.tuner {
            g.extend(t.gradients(grads)?);
        }
        Ok(g)
    }

    /// Moves `state`'s parameters by Adam along the gradients `grads` of its step (the
    /// thresholds only when pruning), loads them into the model and records the step.
    pub fn update(&self, state: &mut TrainState, s: &StepLoss) -> Result<()> {
        let (o, np) = (self.o, self.shape.np);
        let first = if o.prune { 0 } else { np };
        state
            .adam
            .step(state.step, &mut state.params, &s.grads, first, |i| {
                if i < np { o.lr } else { o.ft_lr }
            });
        if let Some(t) = self.tuner {
            t.load(&state.params)?;
        }
        self.thresholds
            .set(
                &Tensor::from_vec(
                    state.params[..np]
                        .iter()
                        .map(|&x| x as f32)
                        .collect::<Vec<_>>(),
                    self.thresholds.as_tensor().dims(),
                    &Device::Cpu,
                )
                .op("thresholds")?,
            )
            .op("thresholds")?;
        state.losses.push(s.loss);
        state.kept.push(s.kept);
        state.step += 1;
        Ok(())
    }
}

/// The trained thresholds (logit units) as a variable of the autograd: the first
/// `shape.np` of `params`, `[layers, heads]` per head or `[layers, 1]` per layer.
pub(super) fn thresholds_var(params: &[f64], shape: Shape, per_head: bool) -> Result<Var> {
    let Shape { layers, heads, np } = shape;
    Var::from_vec(
        params[..np].iter().map(|&x| x as f32).collect::<Vec<_>>(),
        if per_head {
            (layers, heads)
        } else {
            (layers, 1)
        },
        &Device::Cpu,
    )
    .op("thresholds")
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
