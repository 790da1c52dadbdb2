//! Activation functions by their Hugging Face names, applied in place on f32 slices: a leaf
//! shared by the layers ([`crate::nn`]) and the fused kernels ([`crate::kernels`]).

use crate::fastmath;

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

    /// Applies the activation in place (each variant a separate loop the compiler can
    /// vectorise).
    pub fn apply_slice(self, xs: &mut [f32]) {
        match self {
            Self::Gelu => xs.iter_mut().for_each(|v| *v = gelu(*v)),
            Self::GeluTanh => xs.iter_mut().for_each(|v| *v = gelu_tanh(*v)),
            Self::Relu => xs.iter_mut().for_each(|v| *v = v.max(0.0)),
            Self::Silu => xs.iter_mut().for_each(|v| *v = silu(*v)),
        }
    }
}

/// Exact GELU `x Phi(x) = x (1 + erf(x / sqrt 2)) / 2` (erf to 4e-7).
#[inline(always)]
fn gelu(v: f32) -> f32 {
    (fastmath::erf(v * std::f32::consts::FRAC_1_SQRT_2) + 1.0) * 0.5 * v
}

/// Tanh GELU `x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) / 2`, with
/// `tanh(y) = 1 - 2 / (e^(2y) + 1)`.
#[inline(always)]
fn gelu_tanh(v: f32) -> f32 {
    const SQRT_TWO_OVER_PI: f32 = 0.797_884_6;
    let y = SQRT_TWO_OVER_PI * v * (1.0 + 0.044715 * v * v);
    let tanh = 1.0 - 2.0 / (fastmath::exp(2.0 * y) + 1.0);
    0.5 * v * (1.0 + tanh)
}

/// SiLU `x / (1 + e^-x)`.
#[inline(always)]
fn silu(v: f32) -> f32 {
    v / (1.0 + fastmath::exp(-v))
}
