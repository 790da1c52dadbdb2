//! The tensors fine-tuning makes trainable ([`Trainable`]) and the differentiable norms and
//! activations that read them.

use candle_core::{D, Tensor, Var};

use crate::activation::Activation;
use crate::error::{CandleContext, Result};
use crate::nn::{LayerNorm, RmsNorm};

/// A tensor of the model made trainable by [`SoftModel::make_trainable`].
#[derive(Clone, Debug)]
pub struct Trainable {
    /// Its name in the model's weights file (e.g. `encoder.layer.0.output.dense.bias`).
    pub name: String,
    /// The variable the soft forward reads (f32, the stored shape).
    pub var: Var,
}

/// Makes the gain and bias of `n` trainable, named `{name}.weight` and `{name}.bias`.
pub(super) fn train_norm(n: &mut LayerNorm, name: &str, out: &mut Vec<Trainable>) -> Result<()> {
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

/// Makes the gain of `n` trainable, named `{name}.weight`.
pub(super) fn train_rms_norm(n: &mut RmsNorm, name: &str, out: &mut Vec<Trainable>) -> Result<()> {
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
pub(super) fn layer_norm(x: &Tensor, n: &LayerNorm) -> Result<Tensor> {
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
pub(super) fn rms_norm(x: &Tensor, n: &RmsNorm) -> Result<Tensor> {
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

/// The activation `act` of `x`.
pub(super) fn activation(x: &Tensor, act: Activation) -> Result<Tensor> {
    match act {
        Activation::Gelu => x.gelu_erf(),
        Activation::GeluTanh => x.gelu(),
        Activation::Relu => x.relu(),
        Activation::Silu => x.silu(),
    }
    .op("activation")
}
