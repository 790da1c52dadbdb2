//! The post-LayerNorm transformer encoder layer shared by BERT and ALBERT.

use candle_core::Tensor;

use crate::attention::Attention;
use crate::error::Result;
use crate::mha::SelfAttention;
use crate::nn::{Activation, LayerNorm, Linear};
use crate::record::Recorder;

/// `x1 = LN(x + Attn(x))`, `out = LN(x1 + W2 act(W1 x1))`.
#[derive(Clone, Debug)]
pub struct PostLnLayer {
    /// Self-attention (no RoPE).
    pub attention: SelfAttention,
    /// Norm after the attention residual.
    pub attention_norm: LayerNorm,
    /// Feed-forward expansion.
    pub ffn_in: Linear,
    /// Feed-forward projection back to the hidden size.
    pub ffn_out: Linear,
    /// Norm after the feed-forward residual.
    pub output_norm: LayerNorm,
    /// Feed-forward activation.
    pub act: Activation,
}

impl PostLnLayer {
    /// Applies the layer to `x` `[batch, seq, hidden]` as attention layer `layer`.
    pub fn forward(
        &self,
        x: &Tensor,
        layer: usize,
        valid: &[Vec<bool>],
        attn: &dyn Attention,
        rec: &mut Recorder,
    ) -> Result<Tensor> {
        let a = self.attention.forward(x, layer, valid, false, attn, rec)?;
        let x1 = self.attention_norm.forward_residual(x, &a)?;
        let h = self.ffn_in.forward_act(&x1, Some(self.act))?;
        let h = self.ffn_out.forward(&h)?;
        self.output_norm.forward_residual(&x1, &h)
    }
}
