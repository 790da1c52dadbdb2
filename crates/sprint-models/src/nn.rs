//! Building blocks shared by the architectures: linear layers, normalisations, embeddings
//! and activations, on candle ops.

use candle_core::cpu::erf::erf_f32;
use candle_core::{D, Tensor};
use rayon::prelude::*;

use crate::error::{CandleContext, ModelError, Result};
use crate::weights::WeightMap;

/// `y = x W^T + b` with `W` stored `[out, in]` (PyTorch `nn.Linear` layout).
#[derive(Clone, Debug)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    /// A linear layer from a `[out, in]` weight and an optional `[out]` bias.
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Self { weight, bias }
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
        Ok(Self { weight, bias })
    }

    /// Loads a GPT-2 `Conv1D` (`{name}.weight` stored `[in, out]`, bias `[out]`).
    pub fn load_conv1d(w: &WeightMap, name: &str, in_dim: usize, out_dim: usize) -> Result<Self> {
        let weight = w
            .get(&format!("{name}.weight"), &[in_dim, out_dim])?
            .t()
            .and_then(|t| t.contiguous())
            .op(name)?;
        let bias = Some(w.get(&format!("{name}.bias"), &[out_dim])?);
        Ok(Self { weight, bias })
    }

    /// Output features.
    pub fn out_dim(&self) -> usize {
        self.weight.dims()[0]
    }

    /// Applies the layer to `[..., in]`, giving `[..., out]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let in_dim = *dims
            .last()
            .ok_or_else(|| ModelError::Input("linear on a scalar".into()))?;
        let rows: usize = dims[..dims.len() - 1].iter().product();
        let x2 = x.reshape((rows, in_dim)).op("linear reshape")?;
        let mut y = x2
            .matmul(&self.weight.t().op("linear")?)
            .op("linear matmul")?;
        if let Some(b) = &self.bias {
            y = y.broadcast_add(b).op("linear bias")?;
        }
        let mut out_dims = dims;
        *out_dims.last_mut().expect("non-empty") = self.out_dim();
        y.reshape(out_dims).op("linear reshape")
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
    /// Loads `{name}.weight` and `{name}.bias`, both `[dim]`.
    pub fn load(w: &WeightMap, name: &str, dim: usize, eps: f64) -> Result<Self> {
        Ok(Self {
            weight: w.get(&format!("{name}.weight"), &[dim])?,
            bias: w.get(&format!("{name}.bias"), &[dim])?,
            eps: eps as f32,
        })
    }

    /// Normalises `x` over its last dimension.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = x.contiguous().op("layer norm")?;
        candle_nn::ops::layer_norm(&x, &self.weight, &self.bias, self.eps).op("layer norm")
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

/// Activation functions by their Hugging Face `hidden_act` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// Exact GELU, `x * Phi(x)` (`gelu`).
    Gelu,
    /// Tanh approximation of GELU (`gelu_new`, `gelu_pytorch_tanh`, `gelu_fast`).
    GeluTanh,
    /// `max(x, 0)` (`relu`).
    Relu,
    /// `x * sigmoid(x)` (`silu`, `swish`).
    Silu,
}

impl Activation {
    /// Parses a Hugging Face activation name.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "gelu" => Self::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Self::GeluTanh,
            "relu" => Self::Relu,
            "silu" | "swish" => Self::Silu,
            _ => return None,
        })
    }

    /// Applies the activation elementwise (f32), on the rayon pool: candle's unary ops run
    /// on one thread, and exact GELU costs as much as a matmul there.
    pub fn forward(self, x: &Tensor) -> Result<Tensor> {
        if self == Self::Relu {
            return x.relu().op("activation");
        }
        let f: fn(f32) -> f32 = match self {
            // The formulas of candle's own f32 kernels.
            Self::Gelu => |v| (erf_f32(v * std::f32::consts::FRAC_1_SQRT_2) + 1.0) * 0.5 * v,
            Self::GeluTanh => |v| {
                const SQRT_TWO_OVER_PI: f32 = 0.797_884_6;
                0.5 * v * (1.0 + (SQRT_TWO_OVER_PI * v * (1.0 + 0.044715 * v * v)).tanh())
            },
            Self::Silu => |v| v / (1.0 + (-v).exp()),
            Self::Relu => unreachable!("handled above"),
        };
        par_map(x, f)
    }
}

/// Applies `f` to every element of an f32 tensor, in parallel chunks.
pub fn par_map(x: &Tensor, f: fn(f32) -> f32) -> Result<Tensor> {
    let mut v = x
        .flatten_all()
        .and_then(|t| t.to_vec1::<f32>())
        .op("elementwise")?;
    v.par_chunks_mut(1 << 14)
        .for_each(|c| c.iter_mut().for_each(|y| *y = f(*y)));
    Tensor::from_vec(v, x.dims(), x.device()).op("elementwise")
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
