//! The soft-masked attention ([`soft_attention`]), the frozen attention block of a layer
//! that runs it, and the datapath's decision scores it follows ([`datapath_scores`]).

use candle_core::{D, Device, Tensor};
use rayon::prelude::*;
use sprint_attention::decision::decision_scores;
use sprint_core::config::AttentionConfig;

use super::linear::SoftLinear;
use crate::error::{CandleContext, ModelError, Result};
use crate::mha::SelfAttention;

/// Added to the soft softmax denominator (the row maximum contributes `e = 1`).
pub const EPS: f64 = 1e-6;

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

/// The frozen attention block of one layer.
#[derive(Clone, Debug)]
pub(super) struct SoftSelfAttention {
    /// The stacked query, key and value projection.
    pub(super) qkv: SoftLinear,
    /// The output projection.
    pub(super) o: SoftLinear,
    /// Query heads.
    pub(super) heads: usize,
    /// Key and value heads (fewer with grouped-query attention).
    pub(super) kv_heads: usize,
    /// Dimensions per head.
    pub(super) head_dim: usize,
    rope: Option<crate::mha::Rope>,
}

impl SoftSelfAttention {
    pub(super) fn new(a: &SelfAttention) -> Result<Self> {
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
    pub(super) fn forward(
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
