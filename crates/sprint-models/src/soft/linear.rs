//! The frozen linear layers of the soft forward: a custom op whose backward gives only the
//! input's gradient, and its bias as a separate variable once made trainable.

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, Device, Layout, Shape, Tensor, Var};

use super::norm::Trainable;
use crate::error::{CandleContext, ModelError, Result};
use crate::kernels::{self, with_f32};
use crate::nn::Linear;

/// A frozen linear layer as a custom op: forward `x W^T + b` with the fused kernel,
/// backward `grad W` (no gradient for `W` or `b`).
#[derive(Clone, Debug)]
pub(super) struct FrozenLinear {
    /// Inputs per token.
    pub(super) in_dim: usize,
    /// Outputs per token.
    pub(super) out_dim: usize,
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
pub(super) struct SoftLinear {
    /// The frozen op.
    pub(super) op: FrozenLinear,
    /// The bias in parts (e.g. query, key and value of a stacked projection), concatenated
    /// in the forward; empty = the bias stays inside the op.
    pub(super) bias: Vec<Tensor>,
}

impl SoftLinear {
    pub(super) fn new(l: &Linear) -> Result<Self> {
        Ok(Self {
            op: FrozenLinear::new(l)?,
            bias: Vec::new(),
        })
    }

    pub(super) fn forward(&self, x: &Tensor) -> Result<Tensor> {
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
    pub(super) fn train_bias(
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
