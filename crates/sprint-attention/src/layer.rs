//! One layer's run ([`run_layer`], [`run_layer_with`]): the phases of [`crate::engine`] in
//! order, with what depends only on the configuration and the head width built once per
//! layer ([`LayerConsts`]: the fixed-point softmax tables, the DAC table and the forms of the
//! codes), so that a model running the sequences of a batch one after the other builds it
//! once per layer, not once per sequence.
//!
//! [`Detail::Counts`] skips the trace assembly (the kept-set matrices, the per-query records
//! and their copies) and keeps only what a forward pass records without a trace: per head,
//! the kept, softmax and fetched counts and the datapath statistics, equal to those summed
//! from the trace ([`HeadCounts::of_trace`]).

use rayon::prelude::*;
use sprint_core::bits::words_for;
use sprint_core::config::AttentionConfig;
use sprint_core::locality::LocalityEngine;

use crate::block::BlockOut;
use crate::engine::{
    CodeForms, HeadCounts, LayerRun, assemble, head_context, key_valid_bits, prepare_kv_head,
    prepare_q_head, run_peer_layer,
};
use crate::error::{AttentionError, Result, shape_error};
use crate::head::{HeadCtx, KvHead, QHead, QUERY_BLOCK};
use crate::simd::run_block;
use crate::softmax::FixedSoftmax;
use crate::tensor::{AttentionInput, LayerShape, Tensor3};

/// What a layer run keeps of each head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detail {
    /// The head traces ([`LayerRun::heads`]) and their counts.
    Trace,
    /// The counts alone ([`LayerRun::counts`]; [`LayerRun::heads`] stays empty).
    Counts,
}

/// What every run of one layer configuration on heads of one width shares: the
/// configuration, the softmax unit's tables and the forms of the codes.
pub struct LayerConsts {
    cfg: AttentionConfig,
    head_dim: usize,
    forms: CodeForms,
    softmax: FixedSoftmax,
}

impl LayerConsts {
    /// The constants of `cfg` (its `causal` flag included) for heads of `head_dim` elements.
    pub fn new(cfg: &AttentionConfig, head_dim: usize) -> Self {
        Self {
            cfg: cfg.clone(),
            head_dim,
            forms: CodeForms::new(cfg, head_dim),
            softmax: FixedSoftmax::new(&cfg.quant),
        }
    }

    /// The configuration the constants were built from.
    pub fn config(&self) -> &AttentionConfig {
        &self.cfg
    }
}

/// Runs one layer. `thresholds[h]` is `Th` (logits) of query head `h`; the caller's rayon
/// pool sets the parallelism. Returns the output with every head's trace.
pub fn run_layer(
    cfg: &AttentionConfig,
    layer: usize,
    thresholds: &[f32],
    input: &AttentionInput,
) -> Result<LayerRun> {
    let consts = LayerConsts::new(cfg, input.q.head_dim());
    run_layer_with(&consts, layer, thresholds, input, Detail::Trace)
}

/// [`run_layer`] under the configuration of `consts` (which must have been built for the
/// input's head width), keeping the traces or only the counts (`detail`); the output and the
/// counts are the same either way.
pub fn run_layer_with(
    consts: &LayerConsts,
    layer: usize,
    thresholds: &[f32],
    input: &AttentionInput,
    detail: Detail,
) -> Result<LayerRun> {
    let cfg = &consts.cfg;
    let shape = validate(cfg, thresholds, input)?;
    if shape.head_dim != consts.head_dim {
        return Err(shape_error(
            "head_dim (vs the layer constants)",
            consts.head_dim,
            shape.head_dim,
        ));
    }
    if cfg.variant.is_peer() {
        return Ok(run_peer_layer(cfg, layer, thresholds, shape, input));
    }
    let margin = cfg.margin(layer).map_err(AttentionError::from)?;
    let (kv_heads, q_heads) = prepare(consts, layer, shape, input)?;
    let key_valid = key_valid_bits(input, shape);
    let all_valid = vec![true; shape.n_queries];
    let query_valid: &[bool] = input.query_valid.as_deref().unwrap_or(&all_valid);
    let contexts: Vec<HeadCtx> = (0..shape.heads)
        .map(|h| {
            head_context(
                cfg,
                (layer, h, thresholds[h], margin),
                shape,
                input,
                &q_heads[h],
                &kv_heads[shape.kv_head_of(h)],
                &key_valid,
                query_valid,
                &consts.softmax,
            )
        })
        .collect();
    let blocks_per_head = shape.n_queries.div_ceil(QUERY_BLOCK);
    let blocks: Vec<(usize, BlockOut)> = (0..shape.heads * blocks_per_head)
        .into_par_iter()
        .map(|t| {
            let h = t / blocks_per_head;
            let start = (t % blocks_per_head) * QUERY_BLOCK;
            let rows = start..(start + QUERY_BLOCK).min(shape.n_queries);
            (h, run_block(&contexts[h], rows))
        })
        .collect();
    drop(contexts);
    Ok(match detail {
        Detail::Trace => assemble(cfg, layer, shape, blocks, key_valid, query_valid),
        Detail::Counts => assemble_counts(cfg, shape, &blocks, query_valid),
    })
}

/// Checks the input and the thresholds (one per query head), and refuses the variants that
/// do not run on one layer's q, k, v; returns the input's shape.
fn validate(
    cfg: &AttentionConfig,
    thresholds: &[f32],
    input: &AttentionInput,
) -> Result<LayerShape> {
    let shape = input.validate()?;
    if thresholds.len() != shape.heads {
        return Err(shape_error(
            "thresholds per query head",
            shape.heads,
            thresholds.len(),
        ));
    }
    if cfg.variant.acts_across_layers() {
        return Err(AttentionError::Config(sprint_core::CoreError::config(
            "variant",
            format!(
                "`{}` prunes tokens and heads across the layers of a forward pass, so it runs inside a model (`sprint eval`; in Rust `sprint_attention::peers::spatten`), not on one layer's q, k, v",
                cfg.variant.name()
            ),
        )));
    }
    Ok(shape)
}

/// Phase 1: quantises every KV head (K, V; `K_MSB` into the crossbar) and query head (Q, the
/// DAC query and its `K_LSB` correction).
fn prepare(
    consts: &LayerConsts,
    layer: usize,
    shape: LayerShape,
    input: &AttentionInput,
) -> Result<(Vec<KvHead>, Vec<QHead>)> {
    let (cfg, forms) = (&consts.cfg, &consts.forms);
    let kv_heads: Vec<KvHead> = (0..shape.kv_heads)
        .into_par_iter()
        .map(|h| prepare_kv_head(cfg, layer, shape, input, forms, h))
        .collect::<Result<_>>()?;
    let q_heads: Vec<QHead> = (0..shape.heads)
        .into_par_iter()
        .map(|h| prepare_q_head(cfg, shape, input, forms, h))
        .collect::<Result<_>>()?;
    Ok((kv_heads, q_heads))
}

/// The run without traces: per head, in parallel, its output rows copied from its blocks
/// and its counts, the locality engine serving its kept sets in query order straight from
/// the blocks' masks. `blocks` holds every head's blocks, contiguous and in query order.
fn assemble_counts(
    cfg: &AttentionConfig,
    shape: LayerShape,
    blocks: &[(usize, BlockOut)],
    query_valid: &[bool],
) -> LayerRun {
    let mut output = Tensor3::zeros([shape.heads, shape.n_queries, shape.head_dim]);
    let per_head = shape.n_queries.div_ceil(QUERY_BLOCK);
    let head_len = shape.n_queries * shape.head_dim;
    let counts: Vec<(HeadCounts, u64)> = output
        .data
        .par_chunks_mut(head_len)
        .zip(blocks.par_chunks(per_head))
        .map(|(dst, own)| head_counts(cfg, shape, own, query_valid, dst))
        .collect();
    LayerRun {
        output,
        heads: Vec::new(),
        visible_pairs: counts.iter().map(|c| c.1).sum(),
        counts: counts.into_iter().map(|c| c.0).collect(),
    }
}

/// One head's counts from its blocks `own` (in query order), its output rows written to
/// `dst`; returns the counts and the head's visible pairs.
fn head_counts(
    cfg: &AttentionConfig,
    shape: LayerShape,
    own: &[(usize, BlockOut)],
    query_valid: &[bool],
    dst: &mut [f32],
) -> (HeadCounts, u64) {
    let d = shape.head_dim;
    let wpr = words_for(shape.n_keys);
    let k_cap = (cfg.buffer.k_bytes / d as u64) as usize;
    // Only the key buffer is counted: a value buffer of the same capacity is not simulated
    // apart (the key buffer's counts do not depend on it).
    let mut engine = LocalityEngine::with_policy(shape.n_keys, k_cap, k_cap, cfg.buffer.locality);
    let mut c = HeadCounts::default();
    let mut visible = 0;
    for (_, blk) in own {
        dst[blk.rows.start * d..blk.rows.end * d].copy_from_slice(&blk.output);
        for (r, i) in blk.rows.clone().enumerate() {
            c.kept += u64::from(blk.kept[r]);
            c.softmax_kept += u64::from(blk.softmax_kept[r]);
            if query_valid[i] {
                let (k, _) = engine.step(&blk.masks[r * wpr..(r + 1) * wpr]);
                c.k_fetched += u64::from(k.fetched);
            }
        }
        c.stats += blk.stats;
        visible += blk.visible;
    }
    (c, visible)
}
