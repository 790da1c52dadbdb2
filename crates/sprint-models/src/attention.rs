//! The attention backend the models call: a trait, a fast float dense implementation
//! (a fused kernel), and the functional SPRINT model (`sprint_attention::run_layer`) for every
//! variant of the paper's Fig 9.
//!
//! A model's attention layer computes `q`, `k`, `v` (after projections and RoPE, before the
//! `1/sqrt(d)` scale) and hands them to [`Attention::attend`] with the layer index, the
//! padding mask and the causal flag. Thresholds and the noise seed live in the backend
//! ([`AttentionConfig`] and [`Thresholds`]), never in the model.

use candle_core::Tensor;
use sprint_attention::locality::LocalityEngine;
use sprint_attention::{AttentionInput, Detail, LayerConsts, Tensor3, run_layer_with};
use sprint_core::bits::{BitMatrix, BitVec};
use sprint_core::config::{AttentionConfig, Thresholds, Variant};
use sprint_core::trace::HeadTrace;

use crate::error::{CandleContext, ModelError, Result};
use crate::kernels::{self, DenseShape, with_f32};
use crate::record::{CallShape, KeepStats, Recorder};

/// One call of an attention layer on a batch.
#[derive(Clone, Copy, Debug)]
pub struct AttentionCall<'a> {
    /// Attention layer index (0-based, counting every application of a shared layer).
    pub layer: usize,
    /// Queries `[batch, heads, seq, head_dim]`, unscaled.
    pub q: &'a Tensor,
    /// Keys `[batch, kv_heads, seq, head_dim]`; `heads % kv_heads == 0` (GQA).
    pub k: &'a Tensor,
    /// Values, shaped like `k`.
    pub v: &'a Tensor,
    /// `valid[b][t]`: token `t` of sequence `b` is real (false = padding).
    pub valid: &'a [Vec<bool>],
    /// Causal masking: query `i` sees keys `j <= i`.
    pub causal: bool,
}

impl AttentionCall<'_> {
    pub(crate) fn shape(&self) -> Result<(usize, CallShape)> {
        let (b, heads, seq, d) = self.q.dims4().op("attention q shape")?;
        let (kb, kv_heads, kseq, kd) = self.k.dims4().op("attention k shape")?;
        if (kb, kseq, kd) != (b, seq, d)
            || b == 0
            || seq == 0
            || d == 0
            || self.v.dims() != self.k.dims()
            || kv_heads == 0
            || !heads.is_multiple_of(kv_heads)
        {
            return Err(ModelError::Input(format!(
                "attention layer {}: q {:?}, k {:?}, v {:?} do not fit together",
                self.layer,
                self.q.dims(),
                self.k.dims(),
                self.v.dims()
            )));
        }
        if self.valid.len() != b || self.valid.iter().any(|v| v.len() != seq) {
            return Err(ModelError::Input(format!(
                "attention layer {}: padding mask is not {b} rows of {seq} tokens",
                self.layer
            )));
        }
        Ok((
            b,
            CallShape {
                heads,
                kv_heads,
                seq,
                head_dim: d,
            },
        ))
    }
}

/// An attention implementation the models can call.
pub trait Attention: Send + Sync {
    /// The variant this backend computes.
    fn variant(&self) -> Variant;

    /// The configuration (precisions, noise seed, buffers; `causal` is taken from each call).
    fn config(&self) -> &AttentionConfig;

    /// Attends: returns `[batch, heads, seq, head_dim]`. Padding queries get zeros. Counts
    /// (and, if the recorder asks, head traces) of every sequence go to `rec`.
    fn attend(&self, call: &AttentionCall, rec: &mut Recorder) -> Result<Tensor>;
}

/// The counts of one sequence's layer run: visible, kept and softmax pairs, the datapath
/// statistics and the keys fetched, summed over heads.
pub(crate) fn layer_stats(run: &sprint_attention::LayerRun) -> KeepStats {
    let mut stats = KeepStats {
        visible: run.visible_pairs,
        ..KeepStats::default()
    };
    for c in &run.counts {
        stats.datapath += c.stats;
        stats.kept += c.kept;
        stats.softmax_kept += c.softmax_kept;
        stats.k_fetched += c.k_fetched;
    }
    stats
}

/// Keys visible to query `i` of a sequence: real keys, and `j <= i` when causal.
fn visible_row(valid: &[bool], i: usize, causal: bool) -> impl Iterator<Item = usize> + '_ {
    let limit = sprint_core::visibility::visible_limit(i, valid.len(), valid.len(), causal);
    (0..limit).filter(move |&j| valid[j])
}

/// Visible (query, key) pairs of one head of a sequence (real queries x the real keys each
/// sees).
fn visible_pairs(valid: &[bool], causal: bool) -> u64 {
    sprint_core::visibility::visible_pairs(valid, valid, causal)
}

/// Float softmax attention over every visible key ([`kernels::dense_attention`]): the fast
/// path for the dense baseline; its trace (when asked for) keeps every visible key.
#[derive(Clone, Debug)]
pub struct DenseAttention {
    cfg: AttentionConfig,
}

impl DenseAttention {
    /// Dense attention; `cfg` supplies the buffer sizes of the trace (its variant is set to
    /// dense).
    pub fn new(mut cfg: AttentionConfig) -> Self {
        cfg.variant = Variant::Dense;
        Self { cfg }
    }

    /// The dense trace of one sequence: every visible key kept, served by the locality
    /// engine.
    fn dense_trace(
        &self,
        layer: usize,
        shape: CallShape,
        valid: &[bool],
        causal: bool,
    ) -> Vec<HeadTrace> {
        let n = shape.seq;
        let real: Vec<usize> = (0..n).filter(|&i| valid[i]).collect();
        let valid_bits = BitVec::from_indices(n, real.iter().copied());
        let mut masks = BitMatrix::zeros(n, n);
        for &i in &real {
            for j in visible_row(valid, i, causal) {
                masks.set(i, j, true);
            }
        }
        let k_cap = (self.cfg.buffer.k_bytes / shape.head_dim as u64) as usize;
        let v_cap = (self.cfg.buffer.v_bytes / shape.head_dim as u64) as usize;
        let group = shape.heads / shape.kv_heads;
        (0..shape.heads)
            .map(|h| {
                let mut engine = LocalityEngine::new(n, k_cap, v_cap);
                let mut records = vec![Default::default(); n];
                for &i in &real {
                    let row = masks.row_words(i);
                    let kept = row.iter().map(|w| w.count_ones()).sum();
                    records[i] = engine.record(row, kept);
                }
                HeadTrace {
                    layer: layer as u32,
                    head: h as u32,
                    kv_head: (h / group) as u32,
                    query_valid: valid_bits.clone(),
                    key_valid: valid_bits.clone(),
                    masks: masks.clone(),
                    records,
                    stats: Default::default(),
                }
            })
            .collect()
    }
}

impl Attention for DenseAttention {
    fn variant(&self) -> Variant {
        Variant::Dense
    }

    fn config(&self) -> &AttentionConfig {
        &self.cfg
    }

    fn attend(&self, call: &AttentionCall, rec: &mut Recorder) -> Result<Tensor> {
        let (b, shape) = call.shape()?;
        let CallShape {
            heads,
            kv_heads,
            seq,
            head_dim: d,
        } = shape;
        let dims = DenseShape {
            batch: b,
            heads,
            kv_heads,
            seq,
            head_dim: d,
            valid: call.valid,
            causal: call.causal,
        };
        let out = with_f32(call.q, "dense attention q", |q| {
            with_f32(call.k, "dense attention k", |k| {
                with_f32(call.v, "dense attention v", |v| {
                    kernels::dense_attention(q, k, v, dims)
                })
            })
        })???;
        let out = Tensor::from_vec(out, (b, heads, seq, d), call.q.device())
            .op("dense attention output")?;
        for (bi, valid) in call.valid.iter().enumerate() {
            let pairs = visible_pairs(valid, call.causal) * heads as u64;
            let stats = KeepStats {
                visible: pairs,
                kept: pairs,
                softmax_kept: pairs,
                ..KeepStats::default()
            };
            let traces = rec
                .wants_traces()
                .then(|| self.dense_trace(call.layer, shape, valid, call.causal));
            let mut cfg = self.cfg.clone();
            cfg.causal = call.causal;
            rec.add_layer(bi, call.layer, stats, traces, &cfg, shape);
        }
        debug_assert_eq!(out.dims(), &[b, heads, seq, d]);
        Ok(out)
    }
}

/// Any of the four variants through the functional SPRINT model
/// ([`sprint_attention::run_layer`]): 8-bit quantisation, in-memory scoring with the
/// configured noise, recompute, fixed-point or float softmax, and the locality engine.
/// Each sequence of a batch is run on its own, so results do not depend on batching; what
/// depends only on the layer's configuration is built once per call, and head traces are
/// assembled only when the recorder keeps them.
#[derive(Clone, Debug)]
pub struct SprintAttention {
    cfg: AttentionConfig,
    thresholds: Thresholds,
}

impl SprintAttention {
    /// The backend for `cfg.variant` with thresholds `Th` (logit units) per layer and head;
    /// fails if `cfg` is out of range.
    pub fn new(cfg: AttentionConfig, thresholds: Thresholds) -> Result<Self> {
        cfg.validate()?;
        Ok(Self { cfg, thresholds })
    }

    /// The thresholds.
    pub fn thresholds(&self) -> &Thresholds {
        &self.thresholds
    }
}

/// Copies head-major `[heads, seq, d]` data of a candle tensor into a [`Tensor3`].
pub(crate) fn to_tensor3(t: &Tensor) -> Result<Tensor3> {
    let (h, s, d) = t.dims3().op("attention input")?;
    let data = t
        .flatten_all()
        .and_then(|x| x.to_vec1::<f32>())
        .op("attention input")?;
    Tensor3::new([h, s, d], data).map_err(|source| ModelError::Attention { layer: 0, source })
}

impl Attention for SprintAttention {
    fn variant(&self) -> Variant {
        self.cfg.variant
    }

    fn config(&self) -> &AttentionConfig {
        &self.cfg
    }

    fn attend(&self, call: &AttentionCall, rec: &mut Recorder) -> Result<Tensor> {
        let (b, shape) = call.shape()?;
        let th = self.thresholds.values.get(call.layer).ok_or_else(|| {
            ModelError::Thresholds(format!(
                "no thresholds for attention layer {} ({} layers given)",
                call.layer,
                self.thresholds.values.len()
            ))
        })?;
        if th.len() != shape.heads {
            return Err(ModelError::Thresholds(format!(
                "layer {}: {} thresholds for {} query heads",
                call.layer,
                th.len(),
                shape.heads
            )));
        }
        let mut cfg = self.cfg.clone();
        cfg.causal = call.causal;
        // Built once for the layer's sequences; the traces are assembled only when the
        // recorder keeps them.
        let consts = LayerConsts::new(&cfg, shape.head_dim);
        let detail = if rec.wants_traces() {
            Detail::Trace
        } else {
            Detail::Counts
        };
        let mut out = Vec::with_capacity(b * shape.heads * shape.seq * shape.head_dim);
        for (bi, valid) in call.valid.iter().enumerate() {
            let pick = |t: &Tensor| t.get(bi).op("attention input").and_then(|x| to_tensor3(&x));
            let mut input = AttentionInput::new(pick(call.q)?, pick(call.k)?, pick(call.v)?);
            if valid.iter().any(|&x| !x) {
                input.query_valid = Some(valid.clone());
                input.key_valid = Some(valid.clone());
            }
            let run =
                run_layer_with(&consts, call.layer, th, &input, detail).map_err(|source| {
                    ModelError::Attention {
                        layer: call.layer,
                        source,
                    }
                })?;
            let stats = layer_stats(&run);
            out.extend_from_slice(&run.output.data);
            let traces = rec.wants_traces().then_some(run.heads);
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
