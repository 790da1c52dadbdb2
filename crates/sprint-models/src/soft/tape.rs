//! The estimated autograd tape of the layers of one training step
//! ([`SoftModel::layer_tape_bytes`]): what gradient checkpointing saves, and what
//! `sprint thresholds learn --grad-checkpoint auto` decides on.

use sprint_core::config::AttentionConfig;

use super::model::{SoftLayer, SoftModel};

impl SoftModel {
    /// Estimated bytes of the autograd tape the layers of a plain training forward
    /// ([`SoftModel::forward_train`] without checkpointing) hold until the backward, for
    /// `batch` sequences of `seq_len` tokens, with the datapath `datapath` (its comparator,
    /// and its recheck unless the variant has none) or exact scores (`None`): about 4
    /// bytes per element of every intermediate tensor an operation of the backward reads,
    /// per layer `pair_tensors x heads x seq_len^2` (the soft mask and softmax, 11 tensors
    /// on exact scores, 13 with the comparator, 19 with its recheck) plus
    /// `token_floats x seq_len` (norms, projections, rotary, feed-forward). Checkpointing
    /// holds one layer's share of it. The output head's tape (language-model logits) is
    /// not included: it is held either way.
    pub fn layer_tape_bytes(
        &self,
        batch: usize,
        seq_len: usize,
        datapath: Option<&AttentionConfig>,
    ) -> f64 {
        let pair_tensors = match datapath {
            None => 11.0,
            Some(c) if !c.variant.prunes_in_memory() => 11.0,
            Some(c) if c.variant == sprint_core::config::Variant::SprintNoRecompute => 13.0,
            Some(_) => 19.0,
        };
        let per_layer: f64 = self
            .layers
            .iter()
            .map(|l| {
                let token_floats = match l {
                    SoftLayer::PostLn {
                        attn,
                        ffn_in,
                        ffn_out,
                        ..
                    } => {
                        let (h, d) = (attn.heads as f64, attn.head_dim as f64);
                        let hidden = ffn_out.op.out_dim as f64;
                        let inter = ffn_in.op.out_dim as f64;
                        // Two layer norms (5 hidden-sized each), projections and head
                        // splits (3 x 3hd), merge (2hd), residuals; feed-forward (3 inter).
                        12.0 * hidden + 11.0 * h * d + 3.0 * inter
                    }
                    SoftLayer::Llama { attn, up, .. } => {
                        let (h, kv, d) = (
                            attn.heads as f64,
                            attn.kv_heads as f64,
                            attn.head_dim as f64,
                        );
                        let hidden = up.op.in_dim as f64;
                        let inter = up.op.out_dim as f64;
                        // Two RMS norms (3 hidden-sized each), residuals and output
                        // projection; the fused QKV and its head splits, rotary on Q and K,
                        // grouped K/V expanded, heads merged; SwiGLU (4 inter).
                        10.0 * hidden
                            + 3.0 * (h + 2.0 * kv) * d
                            + 5.0 * (h + kv) * d
                            + 4.0 * h * d
                            + 4.0 * inter
                    }
                };
                let s = seq_len as f64;
                pair_tensors * self.heads as f64 * s * s + token_floats * s
            })
            .sum();
        4.0 * batch as f64 * per_layer
    }
}
