//! Gradient checkpointing of the soft forward: [`SoftModel::forward_train`] runs the layers
//! without keeping their autograd tape (only each layer's input), and
//! [`TrainingForward::backward`] recomputes each layer, last to first, to backpropagate
//! through it: one layer's tape held at a time instead of all of them, for one more forward
//! of the layers per step.

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};

use super::linear::SoftLinear;
use super::model::{SoftLayer, SoftMask, SoftModel, visibility};
use crate::error::{CandleContext, ModelError, Result};
use crate::tokenizer::TokenBatch;

impl SoftModel {
    /// The soft forward of `batch` under `mask` for training: with `checkpoint` false the
    /// plain [`SoftModel::forward`] (candle keeps the autograd tape of every layer until the
    /// backward); with `checkpoint` true gradient checkpointing: the layers run without a
    /// tape, keeping only each layer's input hidden states, and
    /// [`TrainingForward::backward`] recomputes each layer, last to first, from its input
    /// to backpropagate through it. Outputs, loss and gradients are the same bits either
    /// way (the same operations, summed in the same order); checkpointing holds one layer's
    /// tape instead of all of them ([`SoftModel::layer_tape_bytes`]) for one more forward
    /// of the layers per step.
    pub fn forward_train<'a>(
        &'a self,
        batch: &TokenBatch,
        mask: SoftMask<'a>,
        checkpoint: bool,
    ) -> Result<TrainingForward<'a>> {
        if !checkpoint {
            let o = self.forward(batch, mask)?;
            return Ok(TrainingForward {
                output: o.output,
                kept: o.kept,
                visible: o.visible,
                saved: None,
            });
        }
        self.check_thresholds(&mask)?;
        let (vis, pairs) = visibility(&batch.valid, self.causal)?;
        let mut kept = Tensor::zeros((), DType::F32, &Device::Cpu).op("soft kept")?;
        let embedded = self.embed(batch)?;
        let constant = mask.thresholds.detach();
        let mut inputs = Vec::with_capacity(self.layers.len());
        let mut x = embedded.detach();
        for l in 0..self.layers.len() {
            let th = constant.get(l).op("soft thresholds")?;
            let (y, k) = self.layer(l, &x, &vis, &th, &mask)?;
            kept = (kept + k.detach()).op("soft kept")?;
            inputs.push(x);
            // Detached: this layer's tape (norm gains are variables) is dropped here.
            x = y.detach();
        }
        let last = Var::from_tensor(&x).op("checkpoint")?;
        drop(x);
        let kept_var = Var::from_tensor(&kept).op("checkpoint")?;
        Ok(TrainingForward {
            output: self.finish(last.as_tensor(), batch)?,
            kept: kept_var.as_tensor().clone(),
            visible: pairs * (self.heads * self.layers.len()) as f64,
            saved: Some(Saved {
                model: self,
                mask,
                vis,
                embedded,
                inputs,
                last,
                kept: kept_var,
            }),
        })
    }
}

impl SoftLayer {
    /// The layer's variables: its norms' gains and biases and its linear layers' biases
    /// once made trainable ([`SoftModel::make_trainable`]); none before.
    fn variables(&self) -> Vec<Tensor> {
        let mut out: Vec<Tensor> = Vec::new();
        let mut linear = |l: &SoftLinear| out.extend(l.bias.iter().cloned());
        let mut norms = Vec::new();
        match self {
            Self::PostLn {
                attn,
                attn_norm,
                ffn_in,
                ffn_out,
                out_norm,
                ..
            } => {
                linear(&attn.qkv);
                linear(&attn.o);
                linear(ffn_in);
                linear(ffn_out);
                for n in [attn_norm, out_norm] {
                    let (w, b, _) = n.parts();
                    norms.extend([w.clone(), b.clone()]);
                }
            }
            Self::Llama {
                attn_norm,
                attn,
                ffn_norm,
                gate,
                up,
                down,
            } => {
                for l in [&attn.qkv, &attn.o, gate, up, down] {
                    linear(l);
                }
                norms.extend([attn_norm.parts().0.clone(), ffn_norm.parts().0.clone()]);
            }
        }
        out.extend(norms);
        out.retain(Tensor::is_variable);
        out
    }
}

/// What a training forward ([`SoftModel::forward_train`]) returns: the output and kept sum
/// to build the loss from, and what its backward needs.
pub struct TrainingForward<'a> {
    /// As [`SoftOutput::output`]. With checkpointing it is computed from a variable holding
    /// the last layer's output, so the output segment's tape is the only one held.
    pub output: Tensor,
    /// As [`SoftOutput::kept`] (pairs); with checkpointing a variable holding the sum.
    pub kept: Tensor,
    /// Visible (query, key) pairs over every layer and head.
    pub visible: f64,
    saved: Option<Saved<'a>>,
}

/// What the checkpointed backward recomputes the layers from.
struct Saved<'a> {
    model: &'a SoftModel,
    mask: SoftMask<'a>,
    vis: Tensor,
    /// The first layer's input, with the tape of the embedding segment (its norm is
    /// trainable in encoders).
    embedded: Tensor,
    /// Each layer's input hidden states, detached.
    inputs: Vec<Tensor>,
    /// The last layer's output, input of the output segment.
    last: Var,
    /// The kept sum over every layer.
    kept: Var,
}

impl TrainingForward<'_> {
    /// Whether the forward is checkpointed (the layers recomputed in the backward).
    pub fn checkpointed(&self) -> bool {
        self.saved.is_some()
    }

    /// The gradients of `loss` (a scalar built from [`Self::output`] and [`Self::kept`])
    /// with respect to every variable the forward read (thresholds, trainable tensors),
    /// as `loss.backward()` would give them. With checkpointing: the backward of the
    /// output segment, then for each layer from the last to the first its recomputation
    /// from its stored input (a variable) and the backward of
    /// `sum(output * upstream) + kept * d loss / d kept`, whose gradient of the input is the
    /// next layer's upstream gradient; each layer's thresholds row is a variable whose
    /// gradients, gathered, backpropagate to the thresholds tensor of the mask once at the
    /// end (so through a shared variable they are summed as the plain tape sums them).
    /// The gradients are detached (they hold no tape). Drop every other clone of `output`,
    /// `kept` and the loss before calling, so that the output segment's tape is freed
    /// before the layers are recomputed.
    pub fn backward(self, loss: Tensor) -> Result<GradStore> {
        let Some(s) = self.saved else {
            return Ok(detached(loss.backward().op("backward")?));
        };
        drop((self.output, self.kept));
        let mut grads = detached(loss.backward().op("backward")?);
        drop(loss);
        let mut upstream = match grads.remove(s.last.as_tensor()) {
            Some(g) => g,
            None => s.last.zeros_like().op("backward")?,
        };
        let d_kept = grads.remove(s.kept.as_tensor());
        drop((s.last, s.kept));
        let layers = s.inputs.len();
        let th_tracked = s.mask.thresholds.track_op();
        let mut th_rows: Vec<Option<Tensor>> = vec![None; layers];
        let mut inputs = s.inputs;
        for l in (0..layers).rev() {
            let stored = inputs.pop().ok_or_else(|| {
                ModelError::Input("checkpointed backward: a layer input is missing".into())
            })?;
            // The first layer's input needs a gradient only when the embedding segment
            // has trainable tensors.
            let x = if l > 0 || s.embedded.track_op() {
                Some(Var::from_tensor(&stored).op("checkpoint")?)
            } else {
                None
            };
            drop(stored);
            let x_in = match &x {
                Some(v) => v.as_tensor().clone(),
                None => s.embedded.detach(),
            };
            let row = s
                .mask
                .thresholds
                .get(l)
                .map(|t| t.detach())
                .op("soft thresholds")?;
            let th = if th_tracked {
                Var::from_tensor(&row).op("checkpoint")?.as_tensor().clone()
            } else {
                row
            };
            let (y, k) = s.model.layer(l, &x_in, &s.vis, &th, &s.mask)?;
            let mut root = (y * &upstream).and_then(|p| p.sum_all()).op("checkpoint")?;
            if let Some(dk) = &d_kept {
                root = (k * dk).and_then(|b| root + b).op("checkpoint")?;
            }
            if !root.track_op() {
                // Nothing of this layer trains (the first layer of a frozen model with
                // constant thresholds).
                continue;
            }
            let mut g = detached(root.backward().op("backward")?);
            drop(root);
            if th_tracked {
                th_rows[l] = g.remove(&th);
            }
            if let Some(v) = &x {
                upstream = match g.remove(v.as_tensor()) {
                    Some(u) => u,
                    None => v.zeros_like().op("backward")?,
                };
            }
            // Only the layer's own variables: candle's store also holds the gradients of
            // the constants the layer read (masks, datapath scores, rotary tables), 50 MB
            // per SmolLM2 layer at 512 tokens.
            let mut own = GradStore::default();
            for v in s.model.layers[l].variables() {
                if let Some(t) = g.remove(&v) {
                    own.insert(&v, t);
                }
            }
            drop(g);
            grads.extend(own).op("backward")?;
        }
        if s.embedded.track_op() {
            let g = (s.embedded * upstream)
                .and_then(|p| p.sum_all())
                .and_then(|r| r.backward())
                .op("backward")?;
            grads.extend(detached(g)).op("backward")?;
        }
        if th_tracked {
            let heads = s.model.heads;
            let rows = th_rows
                .into_iter()
                .map(|r| match r {
                    Some(r) => Ok(r),
                    None => Tensor::zeros(heads, DType::F32, &Device::Cpu).op("backward"),
                })
                .collect::<Result<Vec<_>>>()?;
            let g = Tensor::stack(&rows, 0)
                .and_then(|g| s.mask.thresholds * g)
                .and_then(|p| p.sum_all())
                .and_then(|r| r.backward())
                .op("backward")?;
            grads.extend(detached(g)).op("backward")?;
        }
        Ok(grads)
    }
}

/// `g` with every gradient detached. candle's backward leaves the gradient of a variable
/// on the tape when a forward tensor it was computed from is on it (a norm gain's gradient
/// reads the normalised input, which reads the layer's attention): kept as is, each
/// layer's gradients would hold that layer's whole tape until the step ends, and an
/// upstream gradient would carry its layer's graph into the next layer's backward.
fn detached(g: GradStore) -> GradStore {
    let mut out = GradStore::default();
    for id in g.get_ids() {
        if let Some(t) = g.get_id(*id) {
            out.insert_id(*id, t.detach());
        }
    }
    out
}
