//! Differentiable forwards with a soft pruning mask, for learning thresholds on candle's
//! autograd (LeOPArd-style, arXiv 2204.03227).
//!
//! Runtime pruning keeps key `j` for query `i` of head `h` when the score
//! `s_ij = q_i . k_j / sqrt(d)` (logit units) reaches the threshold `Th_h`; a query whose
//! every key is pruned gets a zero output. In training the hard test is replaced by the
//! mask `m_ij = sigmoid((s_ij - Th_h) / T)` (temperature `T`, logit units) over the visible
//! keys, and attention becomes
//!
//! `out_i = sum_j m_ij e_ij v_j / (sum_j m_ij e_ij + EPS)`, `e_ij = exp(s_ij - max_j s_ij)`,
//!
//! so that `T -> 0` gives exactly the pruned softmax (the row maximum is kept whenever any
//! key is, so the denominator is at least 1 and `EPS` moves the output by at most `1e-6`
//! relative). The expected kept fraction is `sum m_ij / visible pairs`.
//!
//! The model stays frozen: every linear layer is a custom op whose backward returns only
//! the gradient of its input (the weights get none), through the same fused kernel as the
//! inference forward. Norms, activations, RoPE and the attention are plain candle ops.
//! [`SoftModel::make_trainable`] turns the norms' gains and biases and the linear layers'
//! biases into variables (the bias then a separate differentiable add after the op), for
//! fine-tuning them beside the thresholds; the weight matrices stay frozen.

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, D, DType, Device, Layout, Shape, Tensor, Var};

use rayon::prelude::*;
use sprint_attention::decision::decision_scores;
use sprint_core::config::AttentionConfig;

use crate::error::{CandleContext, ModelError, Result};
use crate::kernels::{self, with_f32};
use crate::mha::SelfAttention;
use crate::model::Model;
use crate::nn::{Activation, LayerNorm, Linear, RmsNorm, l2_normalize, mean_pool};
use crate::tokenizer::TokenBatch;

/// Added to the soft softmax denominator (the row maximum contributes `e = 1`).
pub const EPS: f64 = 1e-6;

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

/// The decision scores (logits) of every head of a batch under the datapath `cfg`, as
/// constants `[b, heads, s, s]`: the comparator's, and the recheck's (`None` without
/// recompute). `q` `[b, heads, s, d]`, `k` `[b, kv_heads, s, d]` (unscaled).
pub fn datapath_scores(
    cfg: &AttentionConfig,
    layer: usize,
    q: &Tensor,
    k: &Tensor,
) -> Result<(Tensor, Option<Tensor>)> {
    let (b, heads, s, d) = q.dims4().op("decision scores q")?;
    let kv_heads = k.dim(1).op("decision scores k")?;
    let group = heads / kv_heads.max(1);
    let qv = q
        .flatten_all()
        .and_then(|x| x.to_vec1::<f32>())
        .op("decision scores q")?;
    let kv = k
        .flatten_all()
        .and_then(|x| x.to_vec1::<f32>())
        .op("decision scores k")?;
    let per: Vec<sprint_attention::decision::DecisionScores> = (0..b * heads)
        .into_par_iter()
        .map(|t| {
            let (bi, h) = (t / heads, t % heads);
            let kvh = h / group.max(1);
            let qs = &qv[t * s * d..(t + 1) * s * d];
            let ks = &kv[(bi * kv_heads + kvh) * s * d..(bi * kv_heads + kvh + 1) * s * d];
            decision_scores(cfg, layer, h, kvh, qs, ks, s, s, d)
                .map_err(|source| ModelError::Attention { layer, source })
        })
        .collect::<Result<_>>()?;
    let recheck = !per.first().is_none_or(|p| p.recheck.is_empty());
    let mut comp = Vec::with_capacity(b * heads * s * s);
    let mut rech = Vec::with_capacity(if recheck { b * heads * s * s } else { 0 });
    for p in per {
        comp.extend_from_slice(&p.comparator);
        rech.extend_from_slice(&p.recheck);
    }
    let comp = Tensor::from_vec(comp, (b, heads, s, s), &Device::Cpu).op("comparator scores")?;
    let rech = if recheck {
        Some(Tensor::from_vec(rech, (b, heads, s, s), &Device::Cpu).op("recheck scores")?)
    } else {
        None
    };
    Ok((comp, rech))
}

/// Soft-masked attention of `q` `[b, heads, s, d]` over `k`, `v` `[b, kv_heads, s, d]`
/// (unscaled, grouped-query when `kv_heads < heads`) with visibility `vis`
/// `[b, 1, s, s]` and thresholds `th` `[heads]` at temperature `t`. Returns the output
/// `[b, heads, s, d]` and the sum of the soft masks (scalar).
///
/// With `decide = Some((comparator, recheck))` (logits `[b, heads, s, s]`, constants from
/// [`datapath_scores`]) the mask follows SPRINT's decisions: `sigmoid((c_ij - Th) / T)`
/// times, with a recheck, `sigmoid((r_ij - Th) / T)`, where `c = s + (comparator - s)` with
/// the bracket a constant, so the mask has the datapath's value and the exact score's
/// gradient (straight-through). The softmax itself uses the exact scores.
pub fn soft_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    vis: &Tensor,
    th: &Tensor,
    t: f64,
    decide: Option<(&Tensor, Option<&Tensor>)>,
) -> Result<(Tensor, Tensor)> {
    if !(t.is_finite() && t > 0.0) {
        return Err(ModelError::Input(format!(
            "soft mask temperature must be positive, got {t}"
        )));
    }
    let (b, heads, s, d) = q.dims4().op("soft attention q")?;
    let kv_heads = k.dim(1).op("soft attention k")?;
    let group = heads / kv_heads.max(1);
    let expand = |x: &Tensor| -> Result<Tensor> {
        if group == 1 {
            return Ok(x.clone());
        }
        x.unsqueeze(2)
            .and_then(|x| x.broadcast_as((b, kv_heads, group, s, d)))
            .and_then(|x| x.reshape((b, heads, s, d)))
            .op("soft attention groups")
    };
    let (k, v) = (expand(k)?, expand(v)?);
    let scale = 1.0 / (d as f64).sqrt();
    let scores = q
        .contiguous()
        .and_then(|q| q.matmul(&k.t()?))
        .and_then(|x| x * scale)
        .op("soft attention scores")?;
    let th = th
        .reshape((1, heads, 1, 1))
        .op("soft attention thresholds")?;
    let sig = |x: &Tensor| -> Result<Tensor> {
        x.broadcast_sub(&th)
            .and_then(|x| x / t)
            .and_then(|x| candle_nn::ops::sigmoid(&x))
            .op("soft mask")
    };
    // The datapath's value with the exact score's gradient.
    let through = |c: &Tensor| -> Result<Tensor> {
        (c - scores.detach())
            .and_then(|delta| &scores + delta.detach())
            .op("datapath scores")
    };
    let m = match decide {
        None => sig(&scores)?,
        Some((c, r)) => {
            let mc = sig(&through(c)?)?;
            match r {
                Some(r) => (mc * sig(&through(r)?)?).op("soft mask")?,
                None => mc,
            }
        }
    };
    let m = m.broadcast_mul(vis).op("soft mask")?;
    // Row maximum over the visible keys, a constant for the gradient (softmax is
    // shift-invariant; it only keeps exp in range).
    let hidden = ((vis - 1.0).op("soft attention")? * 1e30).op("soft attention")?;
    let rowmax = scores
        .detach()
        .broadcast_add(&hidden)
        .and_then(|x| x.max_keepdim(D::Minus1))
        .and_then(|x| x.maximum(-1e30))
        .op("soft attention row max")?;
    // Invisible keys get -1e30 (exp = 0; their mask is 0 anyway).
    let e = scores
        .broadcast_sub(&rowmax)
        .and_then(|x| x.broadcast_add(&hidden))
        .and_then(|x| x.exp())
        .op("soft attention exp")?;
    let w = (e * &m).op("soft attention weights")?;
    let z = w
        .sum_keepdim(D::Minus1)
        .and_then(|z| z + EPS)
        .op("soft attention denominator")?;
    let out = w
        .broadcast_div(&z)
        .and_then(|p| p.matmul(&v.contiguous()?))
        .op("soft attention output")?;
    let kept = m.sum_all().op("soft kept")?;
    Ok((out, kept))
}

/// A frozen linear layer as a custom op: forward `x W^T + b` with the fused kernel,
/// backward `grad W` (no gradient for `W` or `b`).
#[derive(Clone, Debug)]
struct FrozenLinear {
    in_dim: usize,
    out_dim: usize,
    /// `[out, in]` (the backward's transposed weight).
    w: Arc<Vec<f32>>,
    /// `[in, out]` (the forward's transposed weight).
    wt: Arc<Vec<f32>>,
    b: Option<Arc<Vec<f32>>>,
}

impl FrozenLinear {
    fn new(l: &Linear) -> Result<Self> {
        let (in_dim, out_dim) = (l.in_dim(), l.out_dim());
        let wt = with_f32(l.weight_t(), "frozen weight", <[f32]>::to_vec)?;
        let w = kernels::transpose(&wt, in_dim, out_dim);
        let b = match l.bias() {
            Some(b) => Some(Arc::new(with_f32(b, "frozen bias", <[f32]>::to_vec)?)),
            None => None,
        };
        Ok(Self {
            in_dim,
            out_dim,
            w: Arc::new(w),
            wt: Arc::new(wt),
            b,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.contiguous()
            .and_then(|x| x.apply_op1_arc(Arc::new(Box::new(self.clone()))))
            .op("frozen linear")
    }
}

impl CustomOp1 for FrozenLinear {
    fn name(&self) -> &'static str {
        "frozen-linear"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let data = storage.as_slice::<f32>()?;
        let (lo, hi) = layout
            .contiguous_offsets()
            .ok_or_else(|| candle_core::Error::Msg("frozen linear: input not contiguous".into()))?;
        let mut dims = layout.shape().dims().to_vec();
        if dims.last() != Some(&self.in_dim) {
            return Err(candle_core::Error::Msg(format!(
                "frozen linear of {} inputs applied to {dims:?}",
                self.in_dim
            )));
        }
        let y = kernels::linear(
            &data[lo..hi],
            self.in_dim,
            &self.wt,
            self.b.as_deref().map(|b| &b[..]),
            None,
        );
        *dims.last_mut().expect("non-empty") = self.out_dim;
        Ok((CpuStorage::F32(y), Shape::from(dims)))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let grad = grad.contiguous()?;
        let mut dims = grad.dims().to_vec();
        let g = grad.flatten_all()?.to_vec1::<f32>()?;
        let gx = kernels::linear(&g, self.out_dim, &self.w, None, None);
        *dims.last_mut().expect("non-empty") = self.in_dim;
        Ok(Some(Tensor::from_vec(gx, dims, grad.device())?))
    }
}

/// A linear layer of the soft forward: the frozen fused op, plus, once its bias is made
/// trainable, the bias as a separate differentiable add (the op then has no bias).
#[derive(Clone, Debug)]
struct SoftLinear {
    op: FrozenLinear,
    /// The bias in parts (e.g. query, key and value of a stacked projection), concatenated
    /// in the forward; empty = the bias stays inside the op.
    bias: Vec<Tensor>,
}

impl SoftLinear {
    fn new(l: &Linear) -> Result<Self> {
        Ok(Self {
            op: FrozenLinear::new(l)?,
            bias: Vec::new(),
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.op.forward(x)?;
        match self.bias.len() {
            0 => Ok(y),
            1 => y.broadcast_add(&self.bias[0]).op("linear bias"),
            _ => Tensor::cat(&self.bias, 0)
                .and_then(|b| y.broadcast_add(&b))
                .op("linear bias"),
        }
    }

    /// Makes the bias trainable as variables named `names`, splitting it into parts of
    /// `sizes` elements (one part per name); appends them to `out`.
    fn train_bias(
        &mut self,
        names: &[String],
        sizes: &[usize],
        out: &mut Vec<Trainable>,
    ) -> Result<()> {
        let Some(b) = self.op.b.take() else {
            return Err(ModelError::Input(format!(
                "`{}`: the layer has no bias to fine-tune",
                names.join("`, `")
            )));
        };
        let mut start = 0;
        for (name, &n) in names.iter().zip(sizes) {
            let var = Var::from_vec(b[start..start + n].to_vec(), n, &Device::Cpu).op(name)?;
            self.bias.push(var.as_tensor().clone());
            out.push(Trainable {
                name: name.clone(),
                var,
            });
            start += n;
        }
        Ok(())
    }
}

/// A tensor of the model made trainable by [`SoftModel::make_trainable`].
#[derive(Clone, Debug)]
pub struct Trainable {
    /// Its name in the model's weights file (e.g. `encoder.layer.0.output.dense.bias`).
    pub name: String,
    /// The variable the soft forward reads (f32, the stored shape).
    pub var: Var,
}

/// Makes the gain and bias of `n` trainable, named `{name}.weight` and `{name}.bias`.
fn train_norm(n: &mut LayerNorm, name: &str, out: &mut Vec<Trainable>) -> Result<()> {
    let (w, b, eps) = n.parts();
    let wv = Var::from_tensor(w).op(name)?;
    let bv = Var::from_tensor(b).op(name)?;
    *n = LayerNorm::new(
        wv.as_tensor().clone(),
        bv.as_tensor().clone(),
        f64::from(eps),
    );
    out.push(Trainable {
        name: format!("{name}.weight"),
        var: wv,
    });
    out.push(Trainable {
        name: format!("{name}.bias"),
        var: bv,
    });
    Ok(())
}

fn train_rms_norm(n: &mut RmsNorm, name: &str, out: &mut Vec<Trainable>) -> Result<()> {
    let (w, eps) = n.parts();
    let wv = Var::from_tensor(w).op(name)?;
    *n = RmsNorm::new(wv.as_tensor().clone(), f64::from(eps));
    out.push(Trainable {
        name: format!("{name}.weight"),
        var: wv,
    });
    Ok(())
}

/// Differentiable layer norm over the last dimension.
fn layer_norm(x: &Tensor, n: &LayerNorm) -> Result<Tensor> {
    let (w, b, eps) = n.parts();
    let mu = x.mean_keepdim(D::Minus1).op("layer norm")?;
    let xc = x.broadcast_sub(&mu).op("layer norm")?;
    let var = xc
        .sqr()
        .and_then(|v| v.mean_keepdim(D::Minus1))
        .op("layer norm")?;
    let inv = (var + f64::from(eps))
        .and_then(|v| v.sqrt())
        .and_then(|v| v.recip())
        .op("layer norm")?;
    xc.broadcast_mul(&inv)
        .and_then(|y| y.broadcast_mul(w))
        .and_then(|y| y.broadcast_add(b))
        .op("layer norm")
}

/// Differentiable RMS norm over the last dimension.
fn rms_norm(x: &Tensor, n: &RmsNorm) -> Result<Tensor> {
    let (w, eps) = n.parts();
    let inv = x
        .sqr()
        .and_then(|v| v.mean_keepdim(D::Minus1))
        .and_then(|v| v + f64::from(eps))
        .and_then(|v| v.sqrt())
        .and_then(|v| v.recip())
        .op("rms norm")?;
    x.broadcast_mul(&inv)
        .and_then(|y| y.broadcast_mul(w))
        .op("rms norm")
}

fn activation(x: &Tensor, act: Activation) -> Result<Tensor> {
    match act {
        Activation::Gelu => x.gelu_erf(),
        Activation::GeluTanh => x.gelu(),
        Activation::Relu => x.relu(),
        Activation::Silu => x.silu(),
    }
    .op("activation")
}

/// The frozen attention block of one layer.
#[derive(Clone, Debug)]
struct SoftSelfAttention {
    qkv: SoftLinear,
    o: SoftLinear,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    rope: Option<crate::mha::Rope>,
}

impl SoftSelfAttention {
    fn new(a: &SelfAttention) -> Result<Self> {
        Ok(Self {
            qkv: SoftLinear::new(&a.qkv)?,
            o: SoftLinear::new(&a.o)?,
            heads: a.heads,
            kv_heads: a.kv_heads,
            head_dim: a.head_dim,
            rope: a.rope.clone(),
        })
    }

    /// Attends `x` `[b, s, hidden]`; returns the projected output and the soft kept sum.
    fn forward(
        &self,
        x: &Tensor,
        vis: &Tensor,
        th: &Tensor,
        t: f64,
        datapath: Option<(&AttentionConfig, usize)>,
    ) -> Result<(Tensor, Tensor)> {
        let (b, s, _) = x.dims3().op("soft self attention")?;
        let (h, kvh, d) = (self.heads, self.kv_heads, self.head_dim);
        let qkv = self.qkv.forward(x)?;
        let split = |start: usize, n: usize| -> Result<Tensor> {
            qkv.narrow(D::Minus1, start * d, n * d)
                .and_then(|x| x.reshape((b, s, n, d)))
                .and_then(|x| x.transpose(1, 2))
                .and_then(|x| x.contiguous())
                .op("soft split heads")
        };
        let (mut q, mut k, v) = (split(0, h)?, split(h, kvh)?, split(h + kvh, kvh)?);
        if let Some(rope) = &self.rope {
            q = rope.apply(&q)?;
            k = rope.apply(&k)?;
        }
        let decide = match datapath {
            Some((cfg, layer)) => Some(datapath_scores(cfg, layer, &q.detach(), &k.detach())?),
            None => None,
        };
        let decide = decide.as_ref().map(|(c, r)| (c, r.as_ref()));
        let (ctx, kept) = soft_attention(&q, &k, &v, vis, th, t, decide)?;
        let ctx = ctx
            .transpose(1, 2)
            .and_then(|x| x.contiguous())
            .and_then(|x| x.reshape((b, s, h * d)))
            .op("soft merge heads")?;
        Ok((self.o.forward(&ctx)?, kept))
    }
}

#[derive(Clone, Debug)]
enum SoftLayer {
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
    model: Model,
    /// Encoders: the norm after the input embeddings.
    emb_norm: Option<LayerNorm>,
    layers: Vec<SoftLayer>,
    final_norm: Option<RmsNorm>,
    lm_head: Option<SoftLinear>,
    heads: usize,
    causal: bool,
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
        let (layers, heads) = mask.thresholds.dims2().op("soft thresholds")?;
        if layers != self.layers.len() || heads != self.heads {
            return Err(ModelError::Thresholds(format!(
                "{layers} x {heads} soft thresholds for a model of {} layers x {} heads",
                self.layers.len(),
                self.heads
            )));
        }
        let (vis, pairs) = visibility(&batch.valid, self.causal)?;
        let mut kept = Tensor::zeros((), DType::F32, &Device::Cpu).op("soft kept")?;
        let mut x = match &self.model {
            Model::Bert(m) => match &self.emb_norm {
                Some(n) => layer_norm(&m.embeddings().sum(batch)?, n)?,
                None => m.embeddings().forward(batch)?,
            },
            Model::Llama(m) => {
                batch.check_len(m.config().context_length)?;
                m.parts().0.forward(&batch.ids_tensor(&Device::Cpu)?)?
            }
            _ => unreachable!("checked in SoftModel::new"),
        };
        for (l, layer) in self.layers.iter().enumerate() {
            let th = mask.thresholds.get(l).op("soft thresholds")?;
            match layer {
                SoftLayer::PostLn {
                    attn,
                    attn_norm,
                    ffn_in,
                    ffn_out,
                    out_norm,
                    act,
                } => {
                    let dp = mask.datapath.map(|c| (c, l));
                    let (a, k) = attn.forward(&x, &vis, &th, mask.temperature, dp)?;
                    kept = (kept + k).op("soft kept")?;
                    let x1 = layer_norm(&(x + a).op("residual")?, attn_norm)?;
                    let h = activation(&ffn_in.forward(&x1)?, *act)?;
                    let h = ffn_out.forward(&h)?;
                    x = layer_norm(&(x1 + h).op("residual")?, out_norm)?;
                }
                SoftLayer::Llama {
                    attn_norm,
                    attn,
                    ffn_norm,
                    gate,
                    up,
                    down,
                } => {
                    let dp = mask.datapath.map(|c| (c, l));
                    let (a, k) =
                        attn.forward(&rms_norm(&x, attn_norm)?, &vis, &th, mask.temperature, dp)?;
                    kept = (kept + k).op("soft kept")?;
                    x = (x + a).op("residual")?;
                    let hn = rms_norm(&x, ffn_norm)?;
                    let g = gate.forward(&hn)?.silu().op("swiglu")?;
                    let m = down.forward(&(g * up.forward(&hn)?).op("swiglu")?)?;
                    x = (x + m).op("residual")?;
                }
            }
        }
        let output = match &self.final_norm {
            Some(n) => rms_norm(&x, n)?,
            None => l2_normalize(&mean_pool(&x, &batch.valid)?)?,
        };
        Ok(SoftOutput {
            output,
            kept,
            visible: pairs * (self.heads * self.layers.len()) as f64,
        })
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
