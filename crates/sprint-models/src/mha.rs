//! Multi-head self-attention block: Q/K/V projections, head split, optional rotary position
//! embedding, the pluggable [`Attention`] backend, head merge and output projection.

use candle_core::{D, Tensor};

use crate::attention::{Attention, AttentionCall};
use crate::error::{CandleContext, ModelError, Result};
use crate::kernels::{self, with_f32};
use crate::nn::Linear;
use crate::record::Recorder;

/// Rotary position embedding in GGML's interleaved layout ("normal" RoPE): element pairs
/// `(2i, 2i+1)` of each head are rotated by `pos * base^(-2i/d)`.
#[derive(Clone, Debug)]
pub struct Rope {
    base: f32,
    head_dim: usize,
}

impl Rope {
    /// RoPE with frequency base `base` over heads of `head_dim` (even) elements.
    pub fn new(base: f32, head_dim: usize) -> Self {
        Self { base, head_dim }
    }

    /// `cos`, `sin` of shape `[seq, d/2]` for positions `0..seq`. The inverse frequencies
    /// and the angles are rounded to f32 as PyTorch's Llama does; cos/sin are evaluated on
    /// those f32 angles in f64.
    fn tables(&self, seq: usize, device: &candle_core::Device) -> Result<(Tensor, Tensor)> {
        let half = self.head_dim / 2;
        let inv: Vec<f32> = (0..half)
            .map(|i| 1.0 / self.base.powf((2 * i) as f32 / self.head_dim as f32))
            .collect();
        let mut cos = Vec::with_capacity(seq * half);
        let mut sin = Vec::with_capacity(seq * half);
        for p in 0..seq {
            for &f in &inv {
                let a = f64::from(p as f32 * f);
                cos.push(a.cos() as f32);
                sin.push(a.sin() as f32);
            }
        }
        let cos = Tensor::from_vec(cos, (seq, half, 1), device).op("rope table")?;
        let sin = Tensor::from_vec(sin, (seq, half, 1), device).op("rope table")?;
        Ok((cos, sin))
    }

    /// Rotates `x` `[batch, heads, seq, d]` (positions `0..seq`).
    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        let (b, h, s, d) = x.dims4().op("rope")?;
        let (cos, sin) = self.tables(s, x.device())?;
        let x = x.reshape((b, h, s, d / 2, 2)).op("rope")?;
        let x0 = x.narrow(D::Minus1, 0, 1).op("rope")?;
        let x1 = x.narrow(D::Minus1, 1, 1).op("rope")?;
        let r0 =
            (x0.broadcast_mul(&cos).op("rope")? - x1.broadcast_mul(&sin).op("rope")?).op("rope")?;
        let r1 =
            (x0.broadcast_mul(&sin).op("rope")? + x1.broadcast_mul(&cos).op("rope")?).op("rope")?;
        Tensor::cat(&[r0, r1], D::Minus1)
            .and_then(|t| t.reshape((b, h, s, d)))
            .op("rope")
    }
}

/// Self-attention: one fused Q/K/V projection, heads, the pluggable attention backend and
/// the output projection.
#[derive(Clone, Debug)]
pub struct SelfAttention {
    /// Q, K and V projections stacked into one layer: output features are the
    /// `heads * head_dim` query features, then `kv_heads * head_dim` key and as many value
    /// features (build it with [`SelfAttention::new`]).
    pub qkv: Linear,
    /// Output projection.
    pub o: Linear,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (`heads` unless grouped-query attention).
    pub kv_heads: usize,
    /// Elements per head.
    pub head_dim: usize,
    /// Rotary embedding of q and k, if the architecture uses it.
    pub rope: Option<Rope>,
}

/// The four projections of a [`SelfAttention`] block.
#[derive(Clone, Debug)]
pub struct Projections {
    /// Query projection, `heads * head_dim` outputs.
    pub q: Linear,
    /// Key projection, `kv_heads * head_dim` outputs.
    pub k: Linear,
    /// Value projection, `kv_heads * head_dim` outputs.
    pub v: Linear,
    /// Output projection.
    pub o: Linear,
}

impl SelfAttention {
    /// A block from its projections; fails if their widths disagree with the head counts.
    pub fn new(
        p: Projections,
        heads: usize,
        kv_heads: usize,
        head_dim: usize,
        rope: Option<Rope>,
    ) -> Result<Self> {
        let (qd, kvd) = (heads * head_dim, kv_heads * head_dim);
        if p.q.out_dim() != qd || p.k.out_dim() != kvd || p.v.out_dim() != kvd {
            return Err(ModelError::Input(format!(
                "attention projections of {}/{}/{} outputs for {heads} heads, {kv_heads} kv heads of {head_dim}",
                p.q.out_dim(),
                p.k.out_dim(),
                p.v.out_dim()
            )));
        }
        let qkv = Linear::concat(&[&p.q, &p.k, &p.v])?;
        Self::from_fused(qkv, p.o, [heads, kv_heads], head_dim, rope)
    }

    /// A block whose Q, K and V projections are already stacked in `qkv` (query features,
    /// then key, then value features); `heads = [heads, kv_heads]`. Fails if the widths
    /// disagree with the head counts.
    pub fn from_fused(
        qkv: Linear,
        o: Linear,
        heads: [usize; 2],
        head_dim: usize,
        rope: Option<Rope>,
    ) -> Result<Self> {
        let [heads, kv_heads] = heads;
        if heads == 0 || kv_heads == 0 || !heads.is_multiple_of(kv_heads) {
            return Err(ModelError::Input(format!(
                "{heads} attention heads cannot share {kv_heads} key/value heads"
            )));
        }
        if qkv.out_dim() != (heads + 2 * kv_heads) * head_dim {
            return Err(ModelError::Input(format!(
                "fused Q/K/V projection of {} outputs for {heads} heads, {kv_heads} kv heads of {head_dim}",
                qkv.out_dim()
            )));
        }
        Ok(Self {
            qkv,
            o,
            heads,
            kv_heads,
            head_dim,
            rope,
        })
    }

    /// Attends `x` `[batch, seq, hidden]` to itself; returns `[batch, seq, hidden]`.
    pub fn forward(
        &self,
        x: &Tensor,
        layer: usize,
        valid: &[Vec<bool>],
        causal: bool,
        attn: &dyn Attention,
        rec: &mut Recorder,
    ) -> Result<Tensor> {
        let (b, s, _) = x.dims3().op("self attention")?;
        let qkv = self.qkv.forward(x)?;
        let (q, k, v) = with_f32(&qkv, "split heads", |data| {
            kernels::split_heads(data, b, s, [self.heads, self.kv_heads], self.head_dim)
        })?;
        let d = self.head_dim;
        let dev = x.device();
        let mut q = Tensor::from_vec(q, (b, self.heads, s, d), dev).op("split heads")?;
        let mut k = Tensor::from_vec(k, (b, self.kv_heads, s, d), dev).op("split heads")?;
        let v = Tensor::from_vec(v, (b, self.kv_heads, s, d), dev).op("split heads")?;
        if let Some(rope) = &self.rope {
            q = rope.apply(&q)?;
            k = rope.apply(&k)?;
        }
        let call = AttentionCall {
            layer,
            q: &q,
            k: &k,
            v: &v,
            valid,
            causal,
        };
        let ctx = attn.attend(&call, rec)?;
        let merged = with_f32(&ctx, "merge heads", |data| {
            kernels::merge_heads(data, b, self.heads, s, d)
        })?;
        let ctx = Tensor::from_vec(merged, (b, s, self.heads * d), dev).op("merge heads")?;
        self.o.forward(&ctx)
    }
}
