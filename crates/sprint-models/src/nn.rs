//! Building blocks shared by the architectures: linear layers, normalisations, embeddings
//! and activations, on candle tensors (the heavy passes run the fused kernels of [`crate::kernels`]).

use candle_core::{D, Tensor};

use crate::activation::Activation;
use crate::error::{CandleContext, ModelError, Result};
use crate::kernels::{self, with_f32};
use crate::weights::WeightMap;

/// `y = x W^T + b` with `W` given `[out, in]` (PyTorch `nn.Linear` layout). The layer
/// keeps `W^T` (`[in, out]`, row-major): the GEMM then reads the weight as column-major
/// panels, which it copies whole, instead of gathering a transposed copy of `W` element by
/// element for every block of rows (the same products in the same order, so the same bits;
/// [`kernels::linear`]).
#[derive(Clone, Debug)]
pub struct Linear {
    /// `W^T`, `[in, out]`, contiguous.
    weight_t: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    /// A linear layer from a `[out, in]` weight and an optional `[out]` bias (the weight is
    /// stored transposed).
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Result<Self> {
        let weight_t = weight
            .t()
            .and_then(|t| t.contiguous())
            .op("transpose linear weight")?;
        Ok(Self { weight_t, bias })
    }

    /// Loads `{name}.weight` `[out, in]` and, if `bias`, `{name}.bias` `[out]`.
    pub fn load(
        w: &WeightMap,
        name: &str,
        in_dim: usize,
        out_dim: usize,
        bias: bool,
    ) -> Result<Self> {
        let weight = w.get(&format!("{name}.weight"), &[out_dim, in_dim])?;
        let bias = if bias {
            Some(w.get(&format!("{name}.bias"), &[out_dim])?)
        } else {
            None
        };
        Self::new(weight, bias)
    }

    /// Loads a GPT-2 `Conv1D` (`{name}.weight` stored `[in, out]`, bias `[out]`).
    pub fn load_conv1d(w: &WeightMap, name: &str, in_dim: usize, out_dim: usize) -> Result<Self> {
        let weight_t = w
            .get(&format!("{name}.weight"), &[in_dim, out_dim])?
            .contiguous()
            .op(name)?;
        let bias = Some(w.get(&format!("{name}.bias"), &[out_dim])?);
        Ok(Self { weight_t, bias })
    }

    /// A decoder's bias-free output projection `[vocab, hidden]`: the `stored` matrix if the
    /// checkpoint has one, else the token embedding table (tied weights).
    pub fn output_head(stored: Option<Tensor>, embedding: &Embedding) -> Result<Self> {
        Self::new(stored.unwrap_or_else(|| embedding.table().clone()), None)
    }

    /// The weight transposed, `[in, out]` (contiguous).
    pub fn weight_t(&self) -> &Tensor {
        &self.weight_t
    }

    /// The bias `[out]`, if any.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    /// Output features.
    pub fn out_dim(&self) -> usize {
        self.weight_t.dims()[1]
    }

    /// Input features.
    pub fn in_dim(&self) -> usize {
        self.weight_t.dims()[0]
    }

    /// Stacks layers that read the same input into one whose output is their outputs side
    /// by side (for example Q, K and V into one projection). A missing bias counts as zeros.
    pub fn concat(parts: &[&Linear]) -> Result<Self> {
        let weights: Vec<&Tensor> = parts.iter().map(|l| &l.weight_t).collect();
        let weight_t = Tensor::cat(&weights, 1)
            .and_then(|t| t.contiguous())
            .op("stack linear weights")?;
        let bias = if parts.iter().any(|l| l.bias.is_some()) {
            let biases = parts
                .iter()
                .map(|l| match &l.bias {
                    Some(b) => Ok(b.clone()),
                    None => Tensor::zeros(l.out_dim(), l.weight_t.dtype(), l.weight_t.device())
                        .op("stack linear biases"),
                })
                .collect::<Result<Vec<_>>>()?;
            Some(Tensor::cat(&biases, 0).op("stack linear biases")?)
        } else {
            None
        };
        Ok(Self { weight_t, bias })
    }

    /// Applies the layer to `[..., in]`, giving `[..., out]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_act(x, None)
    }

    /// Applies the layer and then `act` elementwise (one fused pass), giving `[..., out]`.
    pub fn forward_act(&self, x: &Tensor, act: Option<Activation>) -> Result<Tensor> {
        let mut dims = x.dims().to_vec();
        let in_dim = *dims
            .last()
            .ok_or_else(|| ModelError::Input("linear on a scalar".into()))?;
        if in_dim != self.in_dim() {
            return Err(ModelError::Input(format!(
                "linear layer of {} inputs applied to {dims:?}",
                self.in_dim()
            )));
        }
        let y = with_f32(x, "linear input", |xs| {
            with_f32(&self.weight_t, "linear weight", |ws| match &self.bias {
                Some(b) => with_f32(b, "linear bias", |bs| {
                    kernels::linear(xs, in_dim, ws, Some(bs), act)
                }),
                None => Ok(kernels::linear(xs, in_dim, ws, None, act)),
            })
        })???;
        *dims.last_mut().expect("non-empty") = self.out_dim();
        Tensor::from_vec(y, dims, x.device()).op("linear output")
    }
}

/// Layer normalisation over the last dimension.
#[derive(Clone, Debug)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f32,
}

impl LayerNorm {
    /// A norm with gain `weight` `[dim]`, bias `bias` `[dim]` and epsilon `eps`.
    pub fn new(weight: Tensor, bias: Tensor, eps: f64) -> Self {
        Self {
            weight,
            bias,
            eps: eps as f32,
        }
    }

    /// Loads `{name}.weight` and `{name}.bias`, both `[dim]`.
    pub fn load(w: &WeightMap, name: &str, dim: usize, eps: f64) -> Result<Self> {
        Ok(Self {
            weight: w.get(&format!("{name}.weight"), &[dim])?,
            bias: w.get(&format!("{name}.bias"), &[dim])?,
            eps: eps as f32,
        })
    }

    /// Gain `[dim]`, bias `[dim]` and epsilon.
    pub fn parts(&self) -> (&Tensor, &Tensor, f32) {
        (&self.weight, &self.bias, self.eps)
    }

    /// Normalises `x` over its last dimension.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = x.contiguous().op("layer norm")?;
        candle_nn::ops::layer_norm(&x, &self.weight, &self.bias, self.eps).op("layer norm")
    }

    /// `LN(x + residual)` in one pass (shapes must agree).
    pub fn forward_residual(&self, x: &Tensor, residual: &Tensor) -> Result<Tensor> {
        if x.dims() != residual.dims() || x.dims().last() != Some(&self.weight.dims()[0]) {
            return Err(ModelError::Input(format!(
                "residual layer norm over {}: shapes {:?} and {:?}",
                self.weight.dims()[0],
                x.dims(),
                residual.dims()
            )));
        }
        let y = with_f32(x, "layer norm input", |xs| {
            with_f32(residual, "layer norm residual", |rs| {
                with_f32(&self.weight, "layer norm gain", |gs| {
                    with_f32(&self.bias, "layer norm bias", |bs| {
                        kernels::add_layer_norm(xs, rs, gs, bs, self.eps)
                    })
                })
            })
        })????;
        Tensor::from_vec(y, x.dims(), x.device()).op("layer norm output")
    }
}

/// Root-mean-square normalisation over the last dimension (Llama).
#[derive(Clone, Debug)]
pub struct RmsNorm {
    weight: Tensor,
    eps: f32,
}

impl RmsNorm {
    /// A norm with gain `weight` `[dim]`.
    pub fn new(weight: Tensor, eps: f64) -> Self {
        Self {
            weight,
            eps: eps as f32,
        }
    }

    /// Gain `[dim]` and epsilon.
    pub fn parts(&self) -> (&Tensor, f32) {
        (&self.weight, self.eps)
    }

    /// Normalises `x` over its last dimension.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = x.contiguous().op("rms norm")?;
        candle_nn::ops::rms_norm(&x, &self.weight, self.eps).op("rms norm")
    }
}

/// A lookup table `[vocab, dim]`.
#[derive(Clone, Debug)]
pub struct Embedding {
    table: Tensor,
}

impl Embedding {
    /// Wraps a `[rows, dim]` table.
    pub fn new(table: Tensor) -> Self {
        Self { table }
    }

    /// Loads `{name}.weight` `[rows, dim]`.
    pub fn load(w: &WeightMap, name: &str, rows: usize, dim: usize) -> Result<Self> {
        Ok(Self {
            table: w.get(&format!("{name}.weight"), &[rows, dim])?,
        })
    }

    /// The table.
    pub fn table(&self) -> &Tensor {
        &self.table
    }

    /// Rows of the table.
    pub fn rows(&self) -> usize {
        self.table.dims()[0]
    }

    /// Looks up `ids` (`u32`, any shape), giving `[..ids shape, dim]`; ids out of range are
    /// an error.
    pub fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        let flat = ids.flatten_all().op("embedding ids")?;
        let max = flat
            .max(0)
            .and_then(|m| m.to_scalar::<u32>())
            .op("embedding ids")?;
        if max as usize >= self.rows() {
            return Err(ModelError::Input(format!(
                "token id {max} out of range for an embedding table of {} rows",
                self.rows()
            )));
        }
        let rows = self.table.index_select(&flat, 0).op("embedding lookup")?;
        let mut dims = ids.dims().to_vec();
        dims.push(self.table.dims()[1]);
        rows.reshape(dims).op("embedding reshape")
    }
}

/// Mean of `hidden` `[batch, seq, dim]` over the real tokens of each row (`valid`), giving
/// `[batch, dim]` (sentence-transformers mean pooling).
pub fn mean_pool(hidden: &Tensor, valid: &[Vec<bool>]) -> Result<Tensor> {
    let (b, s, _) = hidden.dims3().op("mean pool")?;
    if valid.len() != b || valid.iter().any(|v| v.len() != s) {
        return Err(ModelError::Input(format!(
            "mean pooling: mask is not {b} rows of {s} tokens"
        )));
    }
    let m: Vec<f32> = valid
        .iter()
        .flat_map(|row| row.iter().map(|&v| if v { 1.0 } else { 0.0 }))
        .collect();
    let mask = Tensor::from_vec(m, (b, s, 1), hidden.device()).op("mean pool mask")?;
    let sum = hidden
        .broadcast_mul(&mask)
        .and_then(|x| x.sum(1))
        .op("mean pool")?;
    let count = mask
        .sum(1)
        .and_then(|c| c.clamp(1e-9f32, f32::MAX))
        .op("mean pool")?;
    sum.broadcast_div(&count).op("mean pool")
}

/// Divides each row of `[batch, dim]` by its L2 norm.
pub fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    let norm = x
        .sqr()
        .and_then(|s| s.sum_keepdim(D::Minus1))
        .and_then(|s| s.sqrt())
        .and_then(|n| n.clamp(1e-12f32, f32::MAX))
        .op("l2 normalise")?;
    x.broadcast_div(&norm).op("l2 normalise")
}
