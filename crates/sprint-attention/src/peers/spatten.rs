//! SpAtten's pruning decisions (Wang, Zhang and Han, HPCA 2021, arXiv 2012.09852; public
//! code mit-han-lab/spatten, read to learn the design, nothing copied).
//!
//! SpAtten acts across the layers of a forward pass, so it is two pieces here:
//! - [`Cascade`], the state one forward pass carries from layer to layer: every token's
//!   importance (the attention probability it received, summed over heads and queries and
//!   accumulated over the layers run so far) and every query head's importance (the
//!   magnitude of its attention output, accumulated the same way). Before each layer it
//!   plans which tokens and heads survive ([`LayerPlan`]): the most important ones, as many
//!   as the published per-layer schedule keeps, among those the previous layer kept (pruned
//!   tokens and heads stay pruned: the cascade). Before the first layer has run there is no
//!   importance, and nothing is pruned.
//! - [`run_layer`], one layer under a plan: a pruned head outputs zeros and fetches nothing;
//!   a kept head's queries attend over the visible keys of the kept tokens only. With
//!   progressive quantisation on, the scores come first from the keys' MSBs; a query row
//!   whose largest probability is below the threshold is recomputed with the full keys
//!   (RequantDecision.scala's `need_requant`), and counted.
//!
//! What the paper does and what this model does with a pruned token: in SpAtten a pruned
//! token is gone from the later layers, its query, key and value alike. Here its key and
//! value leave the later layers' attention, but its query is still computed (over the kept
//! keys), so that every position of the model keeps an output (mean pooling, the
//! next-token logits of every position). Only the queries of the tokens kept in a layer add
//! to the importance, as in the paper where the others no longer exist.

use sprint_core::config::AttentionConfig;
use sprint_core::peers::SpattenConfig;
use sprint_core::visibility::visible_limit;

use crate::block::BlockOut;
use crate::engine::{LayerRun, assemble, key_valid_bits};
use crate::error::{AttentionError, Result, shape_error};
use crate::gemm::matmul_nt;
use crate::softmax::exp_nonpositive;
use crate::tensor::{AttentionInput, LayerShape};

/// Which tokens and query heads survive SpAtten's cascade pruning in one layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerPlan {
    /// `tokens[j]`: token `j`'s key and value are kept (false for padding).
    pub tokens: Vec<bool>,
    /// Query heads kept: `heads[h]`.
    pub heads: Vec<bool>,
}

impl LayerPlan {
    /// Every real token and every head kept.
    pub fn keep_all(key_valid: Option<&[bool]>, n_keys: usize, heads: usize) -> Self {
        Self {
            tokens: key_valid.map_or_else(|| vec![true; n_keys], <[bool]>::to_vec),
            heads: vec![true; heads],
        }
    }

    /// Tokens kept.
    pub fn tokens_kept(&self) -> usize {
        self.tokens.iter().filter(|&&t| t).count()
    }

    /// Heads kept.
    pub fn heads_kept(&self) -> usize {
        self.heads.iter().filter(|&&h| h).count()
    }
}

/// One layer's result under a [`LayerPlan`], with the importance it adds to the cascade.
#[derive(Clone, Debug)]
pub struct SpattenLayerRun {
    /// Output and traces, as every variant's.
    pub run: LayerRun,
    /// Per key: the probability it received, summed over the kept heads and the real queries
    /// of the kept tokens (a probability sum, unitless).
    pub token_importance: Vec<f64>,
    /// Per query head: the sum of the absolute values of its output over the real queries
    /// of the kept tokens and the head's elements (units of V; 0 for a pruned head).
    pub head_importance: Vec<f64>,
    /// Query rows recomputed by progressive quantisation, summed over heads.
    pub requant_rows: u64,
}

/// The state SpAtten carries across the layers of one forward pass of one sequence.
#[derive(Clone, Debug)]
pub struct Cascade {
    layers: usize,
    layers_run: usize,
    token_importance: Vec<f64>,
    head_importance: Vec<f64>,
    tokens: Vec<bool>,
    heads: Vec<bool>,
}

/// The indices of `alive` that are true, the `k` with the largest `score` (ties: the lower
/// index first), as a mask.
pub fn top_k(score: &[f64], alive: &[bool], k: usize) -> Vec<bool> {
    let mut idx: Vec<usize> = (0..alive.len()).filter(|&j| alive[j]).collect();
    idx.sort_by(|&a, &b| score[b].total_cmp(&score[a]).then(a.cmp(&b)));
    let mut out = vec![false; alive.len()];
    for &j in idx.iter().take(k) {
        out[j] = true;
    }
    out
}

impl Cascade {
    /// The state before the first layer of a model of `layers` attention layers (the
    /// schedules are read for that depth).
    pub fn new(layers: usize) -> Self {
        Self {
            layers,
            layers_run: 0,
            token_importance: Vec::new(),
            head_importance: Vec::new(),
            tokens: Vec::new(),
            heads: Vec::new(),
        }
    }

    /// Layers recorded so far.
    pub fn layers_run(&self) -> usize {
        self.layers_run
    }

    /// The accumulated importance of every token (see [`SpattenLayerRun::token_importance`]);
    /// empty before the first layer.
    pub fn token_importance(&self) -> &[f64] {
        &self.token_importance
    }

    /// The accumulated importance of every query head; empty before the first layer.
    pub fn head_importance(&self) -> &[f64] {
        &self.head_importance
    }

    /// Plans layer `layer` of a sequence of `n_keys` tokens (`key_valid`: the real ones) and
    /// `heads` query heads: the `max(1, floor(f * real tokens))` most important tokens and
    /// `max(1, floor(f * heads))` most important heads among those the previous layer kept,
    /// `f` from the schedules of `cfg`. Fails if the sequence or the head count changed.
    pub fn plan(
        &mut self,
        cfg: &SpattenConfig,
        layer: usize,
        key_valid: Option<&[bool]>,
        n_keys: usize,
        heads: usize,
    ) -> Result<LayerPlan> {
        if key_valid.is_some_and(|m| m.len() != n_keys) {
            return Err(shape_error(
                "spatten key_valid length",
                n_keys,
                key_valid.map_or(0, <[bool]>::len),
            ));
        }
        let planned = !self.tokens.is_empty() || !self.heads.is_empty();
        if planned && (self.tokens.len() != n_keys || self.heads.len() != heads) {
            return Err(shape_error(
                "spatten cascade (tokens, heads) across the layers of a forward pass",
                format!("({}, {})", self.tokens.len(), self.heads.len()),
                format!("({n_keys}, {heads})"),
            ));
        }
        if self.layers_run == 0 {
            let plan = LayerPlan::keep_all(key_valid, n_keys, heads);
            self.tokens = plan.tokens.clone();
            self.heads = plan.heads.clone();
            self.token_importance = vec![0.0; n_keys];
            self.head_importance = vec![0.0; heads];
            return Ok(plan);
        }
        let real = key_valid.map_or(n_keys, |m| m.iter().filter(|&&v| v).count());
        let tf = SpattenConfig::schedule_entry(&cfg.token_keep, layer, self.layers);
        let hf = SpattenConfig::schedule_entry(&cfg.head_keep, layer, self.layers);
        let k_tokens = SpattenConfig::kept_count(tf, real);
        let k_heads = SpattenConfig::kept_count(hf, heads);
        self.tokens = top_k(&self.token_importance, &self.tokens, k_tokens);
        self.heads = top_k(&self.head_importance, &self.heads, k_heads);
        Ok(LayerPlan {
            tokens: self.tokens.clone(),
            heads: self.heads.clone(),
        })
    }

    /// Adds a layer's importance to the accumulated one.
    pub fn record(&mut self, run: &SpattenLayerRun) -> Result<()> {
        if run.token_importance.len() != self.token_importance.len()
            || run.head_importance.len() != self.head_importance.len()
        {
            return Err(shape_error(
                "spatten layer importance (tokens, heads)",
                format!(
                    "({}, {})",
                    self.token_importance.len(),
                    self.head_importance.len()
                ),
                format!(
                    "({}, {})",
                    run.token_importance.len(),
                    run.head_importance.len()
                ),
            ));
        }
        for (a, b) in self.token_importance.iter_mut().zip(&run.token_importance) {
            *a += b;
        }
        for (a, b) in self.head_importance.iter_mut().zip(&run.head_importance) {
            *a += b;
        }
        self.layers_run += 1;
        Ok(())
    }
}

/// Symmetric quantisation to `bits` signed bits with one scale (the absolute maximum over
/// the rows `rows_valid` marks, all rows when `None`): the integer codes, row-major, and the
/// value of one step (0 for an all-zero tensor, whose codes are 0). Rounding is half to even.
pub fn quantise_codes(
    x: &[f32],
    d: usize,
    rows_valid: Option<&[bool]>,
    bits: u32,
) -> (Vec<i32>, f32) {
    let m = ((1u32 << (bits - 1)) - 1) as f32;
    let abs_max = x
        .chunks_exact(d)
        .enumerate()
        .filter(|(t, _)| rows_valid.is_none_or(|v| v[*t]))
        .flat_map(|(_, r)| r.iter().map(|v| v.abs()))
        .fold(0.0f32, f32::max);
    if abs_max == 0.0 {
        return (vec![0; x.len()], 0.0);
    }
    let step = abs_max / m;
    let codes = x
        .iter()
        .map(|&v| (v / step).round_ties_even().clamp(-m, m) as i32)
        .collect();
    (codes, step)
}

/// The tensors progressive quantisation scores with: per query head the dequantised query
/// codes, per KV head the dequantised MSB-only keys (LSBs zero) and the full keys.
struct Progressive {
    q: Vec<Vec<f32>>,
    k_msb: Vec<Vec<f32>>,
    k_full: Vec<Vec<f32>>,
}

fn prepare_progressive(cfg: &SpattenConfig, input: &AttentionInput, s: LayerShape) -> Progressive {
    let d = s.head_dim;
    let q: Vec<Vec<f32>> = (0..s.heads)
        .map(|h| {
            let (c, step) = quantise_codes(
                input.q.head(h),
                d,
                input.query_valid.as_deref(),
                cfg.query_bits,
            );
            c.iter().map(|&x| x as f32 * step).collect::<Vec<f32>>()
        })
        .collect();
    let bits = cfg.key_msb_bits + cfg.key_lsb_bits;
    let lsb = cfg.key_lsb_bits;
    let (k_msb, k_full): (Vec<Vec<f32>>, Vec<Vec<f32>>) = (0..s.kv_heads)
        .map(|h| {
            let (c, step) = quantise_codes(input.k.head(h), d, input.key_valid.as_deref(), bits);
            let msb: Vec<f32> = c
                .iter()
                .map(|&x| ((x >> lsb) << lsb) as f32 * step)
                .collect();
            let full: Vec<f32> = c.iter().map(|&x| x as f32 * step).collect();
            (msb, full)
        })
        .unzip();
    Progressive { q, k_msb, k_full }
}

/// Per-thread buffers of a block, reused across blocks (every element read is written
/// first, so which buffers a block gets does not change its result).
#[derive(Default)]
struct Scratch {
    scores: Vec<f32>,
    row: Vec<f32>,
    cand: Vec<usize>,
    probs: Vec<f32>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::default();
}

/// One block's result with the importance it adds.
struct SpattenBlock {
    out: BlockOut,
    token_importance: Vec<f64>,
    head_importance: f64,
}

/// Runs one layer of SpAtten under `plan` (from [`Cascade::plan`]): one query per token
/// (self-attention: as many queries as keys). Blocks of [`crate::head::QUERY_BLOCK`] queries
/// run in parallel on the caller's rayon pool; the importance is summed in (head, block,
/// query) order, so results do not depend on the thread count.
pub fn run_layer(
    cfg: &AttentionConfig,
    layer: usize,
    plan: &LayerPlan,
    input: &AttentionInput,
) -> Result<SpattenLayerRun> {
    let shape = input.validate()?;
    if shape.n_queries != shape.n_keys {
        return Err(shape_error(
            "spatten: queries per head (self-attention, one per token)",
            shape.n_keys,
            shape.n_queries,
        ));
    }
    if plan.tokens.len() != shape.n_keys || plan.heads.len() != shape.heads {
        return Err(shape_error(
            "spatten layer plan (tokens, heads)",
            format!("({}, {})", shape.n_keys, shape.heads),
            format!("({}, {})", plan.tokens.len(), plan.heads.len()),
        ));
    }
    let sp = &cfg.peers.spatten;
    cfg.peers.validate().map_err(AttentionError::from)?;
    let prog = sp
        .progressive_quantization
        .then(|| prepare_progressive(sp, input, shape));
    let kernel = Kernel {
        cfg,
        plan,
        input,
        shape,
        prog: prog.as_ref(),
        tokens_kept: plan.tokens_kept() as u64,
    };
    let blocks = super::run_blocks(&kernel, shape.heads, shape.n_queries);
    let mut token_importance = vec![0.0f64; shape.n_keys];
    let mut head_importance = vec![0.0f64; shape.heads];
    let mut requant_rows = 0;
    let mut outs = Vec::with_capacity(blocks.len());
    for (h, blk) in blocks {
        for (a, b) in token_importance.iter_mut().zip(&blk.token_importance) {
            *a += b;
        }
        head_importance[h] += blk.head_importance;
        requant_rows += blk.out.stats.requant_rows;
        outs.push((h, blk.out));
    }
    let key_valid = key_valid_bits(input, shape);
    let all_valid = vec![true; shape.n_queries];
    let query_valid: &[bool] = input.query_valid.as_deref().unwrap_or(&all_valid);
    let run = assemble(cfg, layer, shape, outs, key_valid, query_valid);
    Ok(SpattenLayerRun {
        run,
        token_importance,
        head_importance,
        requant_rows,
    })
}

/// A layer's blocks for [`super::run_blocks`].
struct Kernel<'a> {
    cfg: &'a AttentionConfig,
    plan: &'a LayerPlan,
    input: &'a AttentionInput,
    shape: LayerShape,
    prog: Option<&'a Progressive>,
    /// The layer's kept tokens, recorded on each head's first block.
    tokens_kept: u64,
}

impl super::BlockKernel for Kernel<'_> {
    type Scratch = Scratch;
    type Out = SpattenBlock;

    fn scratch() -> &'static std::thread::LocalKey<std::cell::RefCell<Scratch>> {
        &SCRATCH
    }

    #[inline(always)]
    fn block(&self, h: usize, rows: std::ops::Range<usize>, s: &mut Scratch) -> SpattenBlock {
        let first = rows.start == 0;
        let mut blk = block_with(
            self.cfg, self.plan, self.input, self.shape, self.prog, h, rows, s,
        );
        if first {
            blk.out.stats.cascade_tokens_kept = self.tokens_kept;
            blk.out.stats.cascade_head_pruned = u64::from(!self.plan.heads[h]);
        }
        blk
    }
}

/// The softmax of `logits[j]` over the candidates `cand` into `probs` (aligned with
/// `cand`); returns the largest probability (`1 / sum`, the maximum's exponential being 1).
#[inline(always)]
fn softmax_over(logits: &[f32], cand: &[usize], inv_sqrt_d: f32, probs: &mut Vec<f32>) -> f32 {
    let mx = cand
        .iter()
        .map(|&j| logits[j] * inv_sqrt_d)
        .fold(f32::NEG_INFINITY, f32::max);
    probs.clear();
    probs.extend(
        cand.iter()
            .map(|&j| exp_nonpositive(logits[j] * inv_sqrt_d - mx)),
    );
    let z: f32 = probs.iter().sum();
    let inv_z = 1.0 / z;
    probs.iter_mut().for_each(|p| *p *= inv_z);
    inv_z
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn block_with(
    cfg: &AttentionConfig,
    plan: &LayerPlan,
    input: &AttentionInput,
    shape: LayerShape,
    prog: Option<&Progressive>,
    h: usize,
    rows: std::ops::Range<usize>,
    s: &mut Scratch,
) -> SpattenBlock {
    let (nq, nk, d) = (shape.n_queries, shape.n_keys, shape.head_dim);
    let kvh = shape.kv_head_of(h);
    let inv = 1.0 / (d as f32).sqrt();
    let wpr = sprint_core::bits::words_for(nk);
    let mut out = BlockOut::empty(rows.clone(), d, wpr);
    let mut token_importance = vec![0.0f64; nk];
    let mut head_importance = 0.0f64;
    let key_valid = input.key_valid.as_deref();
    let query_valid = input.query_valid.as_deref();
    let real_key = |j: usize| key_valid.is_none_or(|m| m[j]);
    for i in rows.clone() {
        if query_valid.is_none_or(|m| m[i]) {
            let limit = visible_limit(i, nq, nk, cfg.causal);
            out.visible += (0..limit).filter(|&j| real_key(j)).count() as u64;
        }
    }
    if !plan.heads[h] {
        return SpattenBlock {
            out,
            token_importance,
            head_importance,
        };
    }
    let (q, k, v) = (input.q.head(h), input.k.head(kvh), input.v.head(kvh));
    let m = rows.len();
    s.scores.resize(m * nk, 0.0);
    match prog {
        Some(p) => matmul_nt(
            &p.q[h][rows.start * d..rows.end * d],
            &p.k_msb[kvh],
            &mut s.scores,
            m,
            nk,
            d,
        ),
        None => matmul_nt(&q[rows.start * d..rows.end * d], k, &mut s.scores, m, nk, d),
    }
    let threshold = cfg.peers.spatten.requant_threshold;
    let Scratch {
        scores,
        row,
        cand,
        probs,
    } = s;
    for (r, i) in rows.enumerate() {
        if query_valid.is_some_and(|mk| !mk[i]) {
            continue;
        }
        let limit = visible_limit(i, nq, nk, cfg.causal);
        cand.clear();
        cand.extend((0..limit).filter(|&j| plan.tokens[j]));
        if cand.is_empty() {
            continue;
        }
        let mut logits = &scores[r * nk..(r + 1) * nk];
        let mut max_prob = softmax_over(logits, cand, inv, probs);
        if let Some(p) = prog
            && max_prob < threshold
        {
            // RequantDecision: the row's largest MSB-only probability is below the
            // threshold; fetch the LSBs and recompute the row.
            row.resize(nk, 0.0);
            matmul_nt(&p.q[h][i * d..(i + 1) * d], &p.k_full[kvh], row, 1, nk, d);
            logits = &row[..];
            max_prob = softmax_over(logits, cand, inv, probs);
            out.stats.requant_rows += 1;
        }
        debug_assert!(max_prob > 0.0);
        let mask = &mut out.masks[r * wpr..(r + 1) * wpr];
        for &j in cand.iter() {
            mask[j / 64] |= 1 << (j % 64);
        }
        out.kept[r] = cand.len() as u32;
        out.softmax_kept[r] = cand.len() as u32;
        let o = &mut out.output[r * d..(r + 1) * d];
        // `pr * 1.0` is `pr`: the same products and sums, in registers.
        super::weighted_sum(v, cand, probs, 1.0, o);
        if plan.tokens[i] {
            for (&j, &pr) in cand.iter().zip(probs.iter()) {
                token_importance[j] += f64::from(pr);
            }
            head_importance += o.iter().map(|x| f64::from(x.abs())).sum::<f64>();
        }
    }
    SpattenBlock {
        out,
        token_importance,
        head_importance,
    }
}
