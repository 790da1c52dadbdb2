//! The soft model: a frozen copy of a BERT or Llama model whose attention runs with a soft
//! pruning mask, its layers and its forward (the training forward with checkpointing in
//! `checkpoint`, the tape estimate in `tape`).

use candle_core::{DType, Device, Tensor};
use sprint_core::config::AttentionConfig;

use super::attention::SoftSelfAttention;
use super::linear::SoftLinear;
use super::norm::{Trainable, activation, layer_norm, rms_norm, train_norm, train_rms_norm};
use crate::activation::Activation;
use crate::error::{CandleContext, ModelError, Result};
use crate::model::Model;
use crate::nn::{LayerNorm, RmsNorm, l2_normalize, mean_pool};
use crate::tokenizer::TokenBatch;

/// The soft mask of a forward: thresholds and temperature.
#[derive(Clone, Copy, Debug)]
pub struct SoftMask<'a> {
    /// Thresholds `Th` `[layers, heads]` (logit units), f32; usually a candle `Var`.
    pub thresholds: &'a Tensor,
    /// Temperature `T` of the sigmoid (logit units, > 0).
    pub temperature: f64,
    /// The datapath whose decisions the mask follows: `None` = the exact float scores
    /// (runtime pruning); `Some(cfg)` = SPRINT's in-memory comparator and, with recompute,
    /// its recheck ([`sprint_attention::decision`]), with `cfg`'s precisions, margins and
    /// noise (`cfg.seed` keys the crossbar and the read noise).
    pub datapath: Option<&'a AttentionConfig>,
}

/// What a soft forward returns.
#[derive(Clone, Debug)]
pub struct SoftOutput {
    /// Encoders: sentence embeddings `[batch, hidden]` (mean pooled, L2-normalised).
    /// Decoders: final normalised hidden states `[batch, seq, hidden]`.
    pub output: Tensor,
    /// Sum of the soft masks over every visible (query, key) pair of every layer and head
    /// (a scalar tensor, pairs).
    pub kept: Tensor,
    /// Visible (query, key) pairs over every layer and head.
    pub visible: f64,
}

/// `[batch, 1, seq, seq]` f32 with 1 where query `i` sees key `j` (both real, and `j <= i`
/// when causal), and the number of visible pairs of one head.
pub fn visibility(valid: &[Vec<bool>], causal: bool) -> Result<(Tensor, f64)> {
    let b = valid.len();
    let s = valid.first().map_or(0, Vec::len);
    let mut m = vec![0f32; b * s * s];
    let mut count = 0.0;
    for (bi, row) in valid.iter().enumerate() {
        if row.len() != s {
            return Err(ModelError::Input(
                "visibility: rows of different lengths".into(),
            ));
        }
        for i in 0..s {
            if !row[i] {
                continue;
            }
            let limit = if causal { i + 1 } else { s };
            for j in 0..limit {
                if row[j] {
                    m[(bi * s + i) * s + j] = 1.0;
                    count += 1.0;
                }
            }
        }
    }
    let t = Tensor::from_vec(m, (b, 1, s, s), &Device::Cpu).op("visibility mask")?;
    Ok((t, count))
}

#[derive(Clone, Debug)]
pub(super) enum SoftLayer {
    PostLn {
        attn: SoftSelfAttention,
        attn_norm: LayerNorm,
        ffn_in: SoftLinear,
        ffn_out: SoftLinear,
        out_norm: LayerNorm,
        act: Activation,
    },
    Llama {
        attn_norm: RmsNorm,
        attn: SoftSelfAttention,
        ffn_norm: RmsNorm,
        gate: SoftLinear,
        up: SoftLinear,
        down: SoftLinear,
    },
}

/// A frozen copy of a BERT or Llama model whose attention runs with a soft mask.
#[derive(Clone, Debug)]
pub struct SoftModel {
    pub(super) model: Model,
    /// Encoders: the norm after the input embeddings.
    emb_norm: Option<LayerNorm>,
    pub(super) layers: Vec<SoftLayer>,
    final_norm: Option<RmsNorm>,
    lm_head: Option<SoftLinear>,
    pub(super) heads: usize,
    pub(super) causal: bool,
}

impl SoftModel {
    /// Builds the soft forward of `model` (BERT encoders and Llama decoders).
    pub fn new(model: &Model) -> Result<Self> {
        match model {
            Model::Bert(m) => {
                let layers = m
                    .layers()
                    .iter()
                    .map(|l| {
                        Ok(SoftLayer::PostLn {
                            attn: SoftSelfAttention::new(&l.attention)?,
                            attn_norm: l.attention_norm.clone(),
                            ffn_in: SoftLinear::new(&l.ffn_in)?,
                            ffn_out: SoftLinear::new(&l.ffn_out)?,
                            out_norm: l.output_norm.clone(),
                            act: l.act,
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(Self {
                    model: model.clone(),
                    emb_norm: Some(m.embeddings().norm().clone()),
                    layers,
                    final_norm: None,
                    lm_head: None,
                    heads: m.geometry().heads,
                    causal: false,
                })
            }
            Model::Llama(m) => {
                let (_, blocks, norm, out) = m.parts();
                let layers = blocks
                    .iter()
                    .map(|b| {
                        Ok(SoftLayer::Llama {
                            attn_norm: b.attn_norm.clone(),
                            attn: SoftSelfAttention::new(&b.attn)?,
                            ffn_norm: b.ffn_norm.clone(),
                            gate: SoftLinear::new(&b.gate)?,
                            up: SoftLinear::new(&b.up)?,
                            down: SoftLinear::new(&b.down)?,
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(Self {
                    model: model.clone(),
                    emb_norm: None,
                    layers,
                    final_norm: Some(norm.clone()),
                    lm_head: Some(SoftLinear::new(out)?),
                    heads: m.geometry().heads,
                    causal: true,
                })
            }
            other => Err(ModelError::Input(format!(
                "learned thresholds support BERT encoders and Llama decoders, not {}",
                other.architecture().name()
            ))),
        }
    }

    /// Makes the norms' gains and biases and the linear layers' biases trainable (candle
    /// `Var`s the soft forward reads; the weight matrices stay frozen) and returns them,
    /// named as in the model's weights file, in a fixed order. BERT encoders: the embedding
    /// norm, then per layer the query, key, value and attention-output biases, the
    /// attention norm, the feed-forward biases and the output norm. Llama decoders (no
    /// biases): per layer the attention and feed-forward RMS-norm gains, then the final
    /// norm's gain (GGUF names).
    pub fn make_trainable(&mut self) -> Result<Vec<Trainable>> {
        if matches!(self.model, Model::Llama(_)) {
            let mut out = Vec::new();
            for (i, layer) in self.layers.iter_mut().enumerate() {
                let SoftLayer::Llama {
                    attn_norm,
                    ffn_norm,
                    ..
                } = layer
                else {
                    unreachable!("Llama layers are pre-RMS-norm");
                };
                train_rms_norm(attn_norm, &format!("blk.{i}.attn_norm"), &mut out)?;
                train_rms_norm(ffn_norm, &format!("blk.{i}.ffn_norm"), &mut out)?;
            }
            if let Some(n) = &mut self.final_norm {
                train_rms_norm(n, "output_norm", &mut out)?;
            }
            return Ok(out);
        }
        let Model::Bert(m) = &self.model else {
            return Err(ModelError::Input(format!(
                "fine-tuning norms and biases supports BERT encoders and Llama decoders, not {}",
                self.model.architecture().name()
            )));
        };
        let p = m.weight_prefix().to_string();
        let names = crate::bert::LAYER_NAMES;
        let hidden = m.config().hidden_size;
        let mut out = Vec::new();
        if let Some(n) = &mut self.emb_norm {
            train_norm(n, &format!("{p}embeddings.LayerNorm"), &mut out)?;
        }
        for (i, layer) in self.layers.iter_mut().enumerate() {
            let SoftLayer::PostLn {
                attn,
                attn_norm,
                ffn_in,
                ffn_out,
                out_norm,
                ..
            } = layer
            else {
                unreachable!("BERT layers are post-LN");
            };
            let at = |n: &str| format!("{p}encoder.layer.{i}.{n}");
            attn.qkv.train_bias(
                &[
                    at(&format!("{}.bias", names.query)),
                    at(&format!("{}.bias", names.key)),
                    at(&format!("{}.bias", names.value)),
                ],
                &[hidden; 3],
                &mut out,
            )?;
            attn.o.train_bias(
                &[at(&format!("{}.bias", names.attention_out))],
                &[hidden],
                &mut out,
            )?;
            train_norm(attn_norm, &at(names.attention_norm), &mut out)?;
            let inter = ffn_in.op.out_dim;
            ffn_in.train_bias(&[at(&format!("{}.bias", names.ffn_in))], &[inter], &mut out)?;
            ffn_out.train_bias(
                &[at(&format!("{}.bias", names.ffn_out))],
                &[hidden],
                &mut out,
            )?;
            train_norm(out_norm, &at(names.output_norm), &mut out)?;
        }
        Ok(out)
    }

    /// Attention layers.
    pub fn layers(&self) -> usize {
        self.layers.len()
    }

    /// Query heads per layer.
    pub fn heads(&self) -> usize {
        self.heads
    }

    /// Whether attention is causal (decoders).
    pub fn causal(&self) -> bool {
        self.causal
    }

    /// The soft forward of `batch` under `mask` (see [`SoftOutput`]).
    pub fn forward(&self, batch: &TokenBatch, mask: SoftMask) -> Result<SoftOutput> {
        self.check_thresholds(&mask)?;
        let (vis, pairs) = visibility(&batch.valid, self.causal)?;
        let mut kept = Tensor::zeros((), DType::F32, &Device::Cpu).op("soft kept")?;
        let mut x = self.embed(batch)?;
        for l in 0..self.layers.len() {
            let th = mask.thresholds.get(l).op("soft thresholds")?;
            let (y, k) = self.layer(l, &x, &vis, &th, &mask)?;
            kept = (kept + k).op("soft kept")?;
            x = y;
        }
        Ok(SoftOutput {
            output: self.finish(&x, batch)?,
            kept,
            visible: pairs * (self.heads * self.layers.len()) as f64,
        })
    }

    pub(super) fn check_thresholds(&self, mask: &SoftMask) -> Result<()> {
        let (layers, heads) = mask.thresholds.dims2().op("soft thresholds")?;
        if layers != self.layers.len() || heads != self.heads {
            return Err(ModelError::Thresholds(format!(
                "{layers} x {heads} soft thresholds for a model of {} layers x {} heads",
                self.layers.len(),
                self.heads
            )));
        }
        Ok(())
    }

    /// The input hidden states of the first layer `[b, s, hidden]`.
    pub(super) fn embed(&self, batch: &TokenBatch) -> Result<Tensor> {
        match &self.model {
            Model::Bert(m) => match &self.emb_norm {
                Some(n) => layer_norm(&m.embeddings().sum(batch)?, n),
                None => m.embeddings().forward(batch),
            },
            Model::Llama(m) => {
                batch.check_len(m.config().context_length)?;
                m.parts().0.forward(&batch.ids_tensor(&Device::Cpu)?)
            }
            other => Err(ModelError::Input(format!(
                "the soft forward supports BERT encoders and Llama decoders, not {}",
                other.architecture().name()
            ))),
        }
    }

    /// Layer `l` on hidden states `x` with visibility `vis` and the layer's thresholds `th`
    /// `[heads]`: its output hidden states and its soft kept sum.
    pub(super) fn layer(
        &self,
        l: usize,
        x: &Tensor,
        vis: &Tensor,
        th: &Tensor,
        mask: &SoftMask,
    ) -> Result<(Tensor, Tensor)> {
        let dp = mask.datapath.map(|c| (c, l));
        match &self.layers[l] {
            SoftLayer::PostLn {
                attn,
                attn_norm,
                ffn_in,
                ffn_out,
                out_norm,
                act,
            } => {
                let (a, k) = attn.forward(x, vis, th, mask.temperature, dp)?;
                let x1 = layer_norm(&(x + a).op("residual")?, attn_norm)?;
                let h = activation(&ffn_in.forward(&x1)?, *act)?;
                let h = ffn_out.forward(&h)?;
                Ok((layer_norm(&(x1 + h).op("residual")?, out_norm)?, k))
            }
            SoftLayer::Llama {
                attn_norm,
                attn,
                ffn_norm,
                gate,
                up,
                down,
            } => {
                let (a, k) =
                    attn.forward(&rms_norm(x, attn_norm)?, vis, th, mask.temperature, dp)?;
                let x = (x + a).op("residual")?;
                let hn = rms_norm(&x, ffn_norm)?;
                let g = gate.forward(&hn)?.silu().op("swiglu")?;
                let m = down.forward(&(g * up.forward(&hn)?).op("swiglu")?)?;
                Ok(((x + m).op("residual")?, k))
            }
        }
    }

    /// The forward's output from the last layer's hidden states `x`: the final norm
    /// (decoders) or the mean-pooled, L2-normalised sentence embedding (encoders).
    pub(super) fn finish(&self, x: &Tensor, batch: &TokenBatch) -> Result<Tensor> {
        match &self.final_norm {
            Some(n) => rms_norm(x, n),
            None => l2_normalize(&mean_pool(x, &batch.valid)?),
        }
    }

    /// Decoders: next-token logits `[..., vocab]` of hidden states `[..., hidden]`
    /// (differentiable in the hidden states).
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        match &self.lm_head {
            Some(h) => h.forward(hidden),
            None => Err(ModelError::Input(
                "an encoder has no language-model head".into(),
            )),
        }
    }
}
