//! One block of queries of one head through the datapath, phase by phase: score in memory,
//! compare, audit against exact pruning, recompute, recheck, softmax and V-PU.

use sprint_core::bits::{iter_ones, words_for};
use sprint_core::config::{RecomputeMode, SoftmaxNormalisation, Variant};
use sprint_core::trace::HeadStats;
use sprint_core::visibility::{clear_from, visible_limit};

use crate::comparator::Comparator;
use crate::engine::{HeadCtx, MAX_EXACT_GEMM_DIM, audited, quantize_score};
use crate::gemm::matmul_nt;
use crate::kernels::{axpy_f32, dot_i16};
use crate::noise::{Purpose, stream_key};
use crate::softmax::softmax_f32;
use crate::vpu;

/// What a block returns.
pub(crate) struct BlockOut {
    pub rows: std::ops::Range<usize>,
    pub output: Vec<f32>,
    pub masks: Vec<u64>,
    pub kept: Vec<u32>,
    pub softmax_kept: Vec<u32>,
    pub visible: u64,
    pub stats: HeadStats,
}

/// Scratch buffers reused across the rows of a block.
#[derive(Default)]
struct Scratch {
    keys: Vec<usize>,
    codes: Vec<i32>,
    logits: Vec<f32>,
    exps: Vec<u64>,
    probs: Vec<u32>,
    weights: Vec<u64>,
    probs_f: Vec<f32>,
    acc_f32: Vec<f32>,
    acc_f64: Vec<f64>,
}

/// Phase: the in-memory scores (steps of `q_dac . K_MSB`) of the whole block, one crossbar
/// read per query; empty for the variants that score on chip.
fn score_in_memory(ctx: &HeadCtx, rows: &std::ops::Range<usize>) -> Vec<f32> {
    let Some(xb) = &ctx.kv.crossbar else {
        return Vec::new();
    };
    let (n, d, m) = (ctx.shape.n_keys, ctx.shape.head_dim, rows.len());
    let mut approx = vec![0f32; m * n];
    let q = &ctx.qh.q_dac[rows.start * d..rows.end * d];
    matmul_nt(q, &xb.weights, &mut approx, m, n, d);
    approx
}

/// Phase: the exact scores of every key for the block: integer `q8 . k8` (fixed point) or
/// float logits `q . k / sqrt(d)` (float mode). They drive runtime pruning, the recompute
/// and the audit of the in-memory decisions.
fn exact_scores(ctx: &HeadCtx, rows: &std::ops::Range<usize>) -> Vec<f32> {
    let (n, d, m) = (ctx.shape.n_keys, ctx.shape.head_dim, rows.len());
    let mut full = vec![0f32; m * n];
    if ctx.cfg.recompute == RecomputeMode::Float {
        let q = &ctx.q_f[rows.start * d..rows.end * d];
        matmul_nt(q, ctx.k_f, &mut full, m, n, d);
        let inv = 1.0 / (d as f32).sqrt();
        full.iter_mut().for_each(|x| *x *= inv);
    } else if d <= MAX_EXACT_GEMM_DIM {
        let q = &ctx.qh.q8_f32[rows.start * d..rows.end * d];
        matmul_nt(q, &ctx.kv.k8_f32, &mut full, m, n, d);
    } else {
        // Too wide for exact f32 sums: integer dots (scores of such heads overflow the
        // 12-bit code anyway, but stay exact here).
        for (r, i) in rows.clone().enumerate() {
            let q8 = &ctx.qh.q8[i * d..(i + 1) * d];
            for j in 0..n {
                full[r * n + j] = dot_i16(q8, &ctx.kv.k8[j * d..(j + 1) * d]) as f32;
            }
        }
    }
    full
}

/// Phase: the keys query `i` may see (real keys; causal limit).
fn visible_keys(ctx: &HeadCtx, i: usize, out: &mut [u64]) {
    out.copy_from_slice(ctx.key_valid.words());
    let s = ctx.shape;
    clear_from(out, visible_limit(i, s.n_queries, s.n_keys, ctx.cfg.causal));
}

/// The comparators of query `i`'s read.
fn comparator(ctx: &HeadCtx, i: usize) -> Comparator {
    let (seed, layer, head) = ctx.noise_seed;
    Comparator {
        threshold: ctx.comparator_threshold - ctx.qh.lsb_correction[i],
        read_sigma: ctx.read_sigma,
        tail_sigmas: f64::from(ctx.cfg.noise.tail_sigmas),
        noise_key: stream_key(seed, Purpose::Read, layer, head, i),
    }
}

/// Phase: counts the in-memory decisions of one row against exact pruning at the same `Th`.
fn audit(exact_row: &[f32], exact_min: f32, visible: &[u64], kept: &[u64], stats: &mut HeadStats) {
    for (wi, (&vis, &kept)) in visible.iter().zip(kept).enumerate() {
        if vis == 0 {
            continue;
        }
        let lo = wi * 64;
        let chunk = &exact_row[lo..(lo + 64).min(exact_row.len())];
        let mut pass = 0u64;
        for (b, &s) in chunk.iter().enumerate() {
            pass |= u64::from(s >= exact_min) << b;
        }
        pass &= vis;
        stats.exact_kept += u64::from(pass.count_ones());
        stats.false_pruned += u64::from((pass & !kept).count_ones());
        stats.false_kept += u64::from((!pass & kept).count_ones());
    }
}

/// Keeps the pairs `(keys[t], vals[t])` whose value passes `keep`, in order.
fn retain_pairs<T: Copy>(keys: &mut Vec<usize>, vals: &mut Vec<T>, keep: impl Fn(T) -> bool) {
    let mut w = 0;
    for t in 0..keys.len() {
        if keep(vals[t]) {
            keys[w] = keys[t];
            vals[w] = vals[t];
            w += 1;
        }
    }
    keys.truncate(w);
    vals.truncate(w);
}

/// Whether the variant drops candidates whose exact score is below `Th`.
fn rechecks(ctx: &HeadCtx) -> bool {
    match ctx.cfg.variant {
        Variant::Dense | Variant::SprintNoRecompute => false,
        Variant::RuntimePruning => true,
        Variant::Sprint => ctx.cfg.threshold.exact_recheck,
    }
}

/// Runs query rows `rows` of one head.
pub(crate) fn run_block(ctx: &HeadCtx, rows: std::ops::Range<usize>) -> BlockOut {
    let n = ctx.shape.n_keys;
    let d = ctx.shape.head_dim;
    let m = rows.len();
    let wpr = words_for(n);
    let approx = score_in_memory(ctx, &rows);
    let exact = exact_scores(ctx, &rows);
    let offsets: &[f32] = ctx.kv.crossbar.as_ref().map_or(&[], |x| &x.offsets);
    let audit_on = audited(ctx.cfg.variant);

    let mut out = BlockOut {
        rows: rows.clone(),
        output: vec![0f32; m * d],
        masks: vec![0u64; m * wpr],
        kept: vec![0; m],
        softmax_kept: vec![0; m],
        visible: 0,
        stats: HeadStats {
            audited: u64::from(audit_on),
            ..HeadStats::default()
        },
    };
    let mut s = Scratch {
        acc_f32: vec![0f32; d],
        acc_f64: vec![0f64; d],
        ..Scratch::default()
    };
    let mut visible = vec![0u64; wpr];
    for (r, i) in rows.clone().enumerate() {
        if !ctx.query_valid[i] {
            continue;
        }
        let exact_row = &exact[r * n..(r + 1) * n];
        let row_mask = &mut out.masks[r * wpr..(r + 1) * wpr];
        visible_keys(ctx, i, &mut visible);
        row_mask.copy_from_slice(&visible);
        out.visible += visible
            .iter()
            .map(|w| u64::from(w.count_ones()))
            .sum::<u64>();
        let cmp = ctx.kv.crossbar.as_ref().map(|_| comparator(ctx, i));
        if let Some(c) = &cmp {
            c.decide(&approx[r * n..(r + 1) * n], offsets, row_mask);
            audit(exact_row, ctx.exact_min, &visible, row_mask, &mut out.stats);
        }
        out.kept[r] = row_mask.iter().map(|w| w.count_ones()).sum();
        s.keys.clear();
        s.keys.extend(iter_ones(row_mask));
        let approx_row = if approx.is_empty() {
            &[][..]
        } else {
            &approx[r * n..(r + 1) * n]
        };
        let dst = &mut out.output[r * d..(r + 1) * d];
        let (kept, sat_scores, sat_out) = if ctx.cfg.recompute == RecomputeMode::FixedPoint {
            fixed_point_row(
                ctx,
                i,
                cmp.as_ref(),
                approx_row,
                exact_row,
                offsets,
                &mut s,
                dst,
            )
        } else {
            float_row(
                ctx,
                i,
                cmp.as_ref(),
                approx_row,
                exact_row,
                offsets,
                &mut s,
                dst,
            )
        };
        out.softmax_kept[r] = kept;
        out.stats.score_saturated += sat_scores;
        out.stats.output_saturated += sat_out;
    }
    out
}

/// Phases recompute, recheck, softmax and V-PU of one row on the integer datapath. Returns
/// (keys in the softmax, saturated score codes, saturated output elements).
#[allow(clippy::too_many_arguments)]
fn fixed_point_row(
    ctx: &HeadCtx,
    i: usize,
    cmp: Option<&Comparator>,
    approx_row: &[f32],
    exact_row: &[f32],
    offsets: &[f32],
    s: &mut Scratch,
    dst: &mut [f32],
) -> (u32, u64, u64) {
    let q = &ctx.cfg.quant;
    let d = ctx.shape.head_dim;
    let hi = f64::from((1u32 << (q.score_bits - 1)) - 1);
    let scale = f64::from(1u32 << q.score_frac_bits);
    let mut saturated = 0u64;
    let mut code = |logit: f64| {
        let (c, sat) = quantize_score(logit, hi, scale);
        saturated += u64::from(sat);
        c
    };
    s.codes.clear();
    match (ctx.cfg.variant, cmp) {
        (Variant::SprintNoRecompute, Some(c)) => {
            let corr = ctx.qh.lsb_correction[i];
            for &j in &s.keys {
                let steps = c.analog_score(approx_row[j], offsets, j) + corr;
                s.codes.push(code(steps * ctx.approx_unit));
            }
        }
        (Variant::Sprint, _) if !ctx.kv.k_read_back.is_empty() => {
            // Stuck cells corrupt the transposed K_MSB read the recompute uses.
            let q8 = &ctx.qh.q8[i * d..(i + 1) * d];
            for &j in &s.keys {
                let dot = dot_i16(q8, &ctx.kv.k_read_back[j * d..(j + 1) * d]);
                s.codes.push(code(f64::from(dot) * ctx.exact_unit));
            }
        }
        _ => {
            for &j in &s.keys {
                s.codes.push(code(f64::from(exact_row[j]) * ctx.exact_unit));
            }
        }
    }
    if rechecks(ctx) {
        let th_code = f64::from(ctx.threshold) * scale;
        retain_pairs(&mut s.keys, &mut s.codes, |c| f64::from(c) >= th_code);
    }
    let kept = s.keys.len() as u32;
    if kept == 0 {
        return (0, saturated, 0);
    }
    let sat_out = match q.softmax_normalisation {
        SoftmaxNormalisation::Deferred => {
            let sum = ctx.softmax.deferred_weights(&s.codes, &mut s.weights);
            vpu::deferred(
                &s.keys,
                &s.weights,
                sum,
                &ctx.kv.v8_f64,
                ctx.kv.v_scale,
                q.output_bits,
                &mut s.acc_f64,
                dst,
            )
        }
        SoftmaxNormalisation::PerKey => {
            ctx.softmax
                .probabilities(&s.codes, &mut s.exps, &mut s.probs);
            vpu::per_key(
                &s.keys,
                &s.probs,
                ctx.softmax.prob_bits(),
                &ctx.kv.v8_f32,
                ctx.kv.v_scale,
                q.output_bits,
                &mut s.acc_f32,
                dst,
            )
        }
    };
    (kept, saturated, sat_out)
}

/// Phases recompute, recheck, softmax and x V of one row in float (isolates pruning from
/// quantisation). Returns (keys in the softmax, 0, 0).
#[allow(clippy::too_many_arguments)]
fn float_row(
    ctx: &HeadCtx,
    i: usize,
    cmp: Option<&Comparator>,
    approx_row: &[f32],
    exact_row: &[f32],
    offsets: &[f32],
    s: &mut Scratch,
    dst: &mut [f32],
) -> (u32, u64, u64) {
    let d = ctx.shape.head_dim;
    s.logits.clear();
    match (ctx.cfg.variant, cmp) {
        (Variant::SprintNoRecompute, Some(c)) => {
            let corr = ctx.qh.lsb_correction[i];
            s.logits.extend(s.keys.iter().map(|&j| {
                ((c.analog_score(approx_row[j], offsets, j) + corr) * ctx.approx_unit) as f32
            }));
        }
        _ => s.logits.extend(s.keys.iter().map(|&j| exact_row[j])),
    }
    if rechecks(ctx) {
        let th = ctx.threshold;
        retain_pairs(&mut s.keys, &mut s.logits, |x| x >= th);
    }
    let kept = s.keys.len() as u32;
    if kept == 0 {
        return (0, 0, 0);
    }
    softmax_f32(&s.logits, &mut s.probs_f);
    for (&j, &p) in s.keys.iter().zip(&s.probs_f) {
        axpy_f32(dst, p, &ctx.v_f[j * d..(j + 1) * d]);
    }
    (kept, 0, 0)
}
