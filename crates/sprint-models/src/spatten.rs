//! The SpAtten backend (HPCA 2021): cascade token and head pruning across the layers of a
//! forward pass, with optional progressive quantisation
//! ([`sprint_attention::peers::spatten`]). Its cross-layer state, one
//! [`Cascade`] per sequence, lives in the forward pass's [`Recorder`]
//! ([`Recorder::session`]): created at the first attention layer, handed to every later
//! layer of the same forward pass, dropped with it. The models' forward code is the same
//! as for every other backend.

use candle_core::Tensor;
use sprint_attention::AttentionInput;
use sprint_attention::peers::spatten::{self, Cascade};
use sprint_core::config::{AttentionConfig, Variant};

use crate::attention::{Attention, AttentionCall, layer_stats, to_tensor3};
use crate::error::{CandleContext, ModelError, Result};
use crate::record::Recorder;

/// SpAtten's decisions through the functional model: each sequence of a batch runs on its
/// own with its own cascade, so results do not depend on batching. The thresholds `Th` do
/// not apply; the parameters are `cfg.peers.spatten`.
#[derive(Clone, Debug)]
pub struct SpattenAttention {
    cfg: AttentionConfig,
}

impl SpattenAttention {
    /// The backend; fails if `cfg` is out of range. The variant is set to `spatten`.
    pub fn new(mut cfg: AttentionConfig) -> Result<Self> {
        cfg.variant = Variant::Spatten;
        cfg.validate()?;
        Ok(Self { cfg })
    }
}

impl Attention for SpattenAttention {
    fn variant(&self) -> Variant {
        Variant::Spatten
    }

    fn config(&self) -> &AttentionConfig {
        &self.cfg
    }

    fn attend(&self, call: &AttentionCall, rec: &mut Recorder) -> Result<Tensor> {
        let (b, shape) = call.shape()?;
        let mut cfg = self.cfg.clone();
        cfg.causal = call.causal;
        let layers = rec.layers().max(call.layer + 1);
        let err = |source| ModelError::Attention {
            layer: call.layer,
            source,
        };
        let mut out = Vec::with_capacity(b * shape.heads * shape.seq * shape.head_dim);
        for (bi, valid) in call.valid.iter().enumerate() {
            let pick = |t: &Tensor| t.get(bi).op("attention input").and_then(|x| to_tensor3(&x));
            let mut input = AttentionInput::new(pick(call.q)?, pick(call.k)?, pick(call.v)?);
            if valid.iter().any(|&x| !x) {
                input.query_valid = Some(valid.clone());
                input.key_valid = Some(valid.clone());
            }
            let cascade = rec.session(bi, || Cascade::new(layers)).ok_or_else(|| {
                ModelError::Input(format!(
                    "attention layer {}: sequence {bi} is not in the recorder's batch",
                    call.layer
                ))
            })?;
            let plan = cascade
                .plan(
                    &cfg.peers.spatten,
                    call.layer,
                    input.key_valid.as_deref(),
                    shape.seq,
                    shape.heads,
                )
                .map_err(err)?;
            let run = spatten::run_layer(&cfg, call.layer, &plan, &input).map_err(err)?;
            cascade.record(&run).map_err(err)?;
            let stats = layer_stats(&run.run);
            out.extend_from_slice(&run.run.output.data);
            let traces = rec.wants_traces().then_some(run.run.heads);
            rec.add_layer(bi, call.layer, stats, traces, &cfg, shape);
        }
        Tensor::from_vec(
            out,
            (b, shape.heads, shape.seq, shape.head_dim),
            call.q.device(),
        )
        .op("attention output")
    }
}
