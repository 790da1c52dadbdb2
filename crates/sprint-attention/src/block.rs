//! One block of queries of one head through the datapath, phase by phase: score in memory,
//! compare, audit against exact pruning, recompute, recheck, softmax and V-PU.

use sprint_core::bits::{iter_ones, words_for};
use sprint_core::config::{RecomputeMode, SoftmaxNormalisation, Variant};
use sprint_core::trace::HeadStats;
use sprint_core::visibility::{clear_from, visible_limit};

use crate::block_scores::{BlockScores, comparator, exact_min_int};
use crate::compact::{Compact, SLACK};
use crate::comparator::{Comparator, ge_bits};
use crate::head::{HeadCtx, audited, quantize_score};
use crate::kernels::{axpy_f32, dot_f32};
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

impl BlockOut {
    /// A block of `rows` with nothing kept yet: zero outputs (`d` per query), empty masks
    /// (`words_per_row` words per query), zero counts.
    pub(crate) fn empty(rows: std::ops::Range<usize>, d: usize, words_per_row: usize) -> Self {
        let m = rows.len();
        Self {
            rows,
            output: vec![0f32; m * d],
            masks: vec![0u64; m * words_per_row],
            kept: vec![0; m],
            softmax_kept: vec![0; m],
            visible: 0,
            stats: HeadStats::default(),
        }
    }
}

/// Scratch buffers reused across the rows of a block.
#[derive(Default)]
pub(crate) struct Scratch {
    keys: Vec<u32>,
    raw: Vec<i32>,
    codes: Vec<i32>,
    logits: Vec<f32>,
    exps: Vec<u64>,
    probs: Vec<u32>,
    weights: Vec<u32>,
    probs_f: Vec<f32>,
    acc_f32: Vec<f32>,
    acc_i32: Vec<i32>,
    acc_i64: Vec<i64>,
}

/// One row of in-memory scores.
#[derive(Clone, Copy)]
pub(crate) enum ApproxRow<'a> {
    None,
    Int(&'a [i32]),
    F32(&'a [f32]),
}

impl ApproxRow<'_> {
    /// Key `j`'s score in steps.
    #[inline(always)]
    fn get(&self, j: usize) -> f64 {
        match self {
            ApproxRow::None => 0.0,
            ApproxRow::Int(x) => f64::from(x[j]),
            ApproxRow::F32(x) => f64::from(x[j]),
        }
    }
}

thread_local! {
    /// Per-thread score buffers of a block, reused across blocks (a fresh megabyte per block
    /// cost more in page faults than the GEMM that fills it).
    pub(crate) static SCORE_BUFFERS: std::cell::RefCell<BlockScores> =
        std::cell::RefCell::new(BlockScores::default());
    /// Per-thread row scratch, reused across blocks.
    pub(crate) static ROW_SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// Phase: the keys query `i` may see (real keys; causal limit).
#[inline(always)]
fn visible_keys(ctx: &HeadCtx, i: usize, out: &mut [u64]) {
    out.copy_from_slice(ctx.key_valid.words());
    let s = ctx.shape;
    clear_from(out, visible_limit(i, s.n_queries, s.n_keys, ctx.cfg.causal));
}

/// Phase: counts the in-memory decisions of one row against exact pruning at the same `Th`
/// (`exact_row[j] >= exact_min`).
#[inline(always)]
fn audit<T: Copy + PartialOrd>(
    exact_row: &[T],
    exact_min: T,
    visible: &[u64],
    kept: &[u64],
    stats: &mut HeadStats,
) {
    for (wi, (&vis, &kept)) in visible.iter().zip(kept).enumerate() {
        if vis == 0 {
            continue;
        }
        let lo = wi * 64;
        let pass = ge_bits(&exact_row[lo..(lo + 64).min(exact_row.len())], exact_min) & vis;
        stats.exact_kept += u64::from(pass.count_ones());
        stats.false_pruned += u64::from((pass & !kept).count_ones());
        stats.false_kept += u64::from((!pass & kept).count_ones());
    }
}

/// [`audit`] of integer scores with the instruction-set copy's compares, which also writes
/// the words of keys at or above `exact_min` to `pass` (zero where no key is visible), so
/// that the recheck of the same scores against the same bound can reuse them.
#[inline(always)]
fn audit_int<C: Compact>(
    exact_row: &[i32],
    exact_min: i32,
    visible: &[u64],
    kept: &[u64],
    pass: &mut [u64],
    stats: &mut HeadStats,
) {
    let (mut exact_kept, mut false_pruned, mut false_kept) = (0u32, 0u32, 0u32);
    for (wi, ((&vis, &kept), p)) in visible.iter().zip(kept).zip(pass.iter_mut()).enumerate() {
        if vis == 0 {
            *p = 0;
            continue;
        }
        let lo = wi * 64;
        let bits = C::ge_bits(&exact_row[lo..(lo + 64).min(exact_row.len())], exact_min) & vis;
        *p = bits;
        exact_kept += bits.count_ones();
        false_pruned += (bits & !kept).count_ones();
        false_kept += (!bits & kept).count_ones();
    }
    stats.exact_kept += u64::from(exact_kept);
    stats.false_pruned += u64::from(false_pruned);
    stats.false_kept += u64::from(false_kept);
}

/// Keeps the pairs `(keys[t], vals[t])` whose value passes `keep`, in order.
#[inline(always)]
fn retain_pairs<T: Copy>(keys: &mut Vec<u32>, vals: &mut Vec<T>, keep: impl Fn(T) -> bool) {
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
#[inline(always)]
fn rechecks(ctx: &HeadCtx) -> bool {
    match ctx.cfg.variant {
        Variant::Dense | Variant::SprintNoRecompute => false,
        Variant::RuntimePruning => true,
        Variant::Sprint => ctx.cfg.threshold.exact_recheck,
        Variant::Sanger | Variant::Leopard | Variant::Spatten | Variant::A3 | Variant::Energon => {
            false
        }
    }
}

/// The `r`-th row of a `rows x n` score matrix, or an empty slice when the matrix is empty.
#[inline(always)]
fn row_of<T>(m: &[T], r: usize, n: usize) -> &[T] {
    if m.is_empty() {
        &[]
    } else {
        &m[r * n..(r + 1) * n]
    }
}

/// Runs the per-query phases of a block whose scores are computed (inlined into each
/// instruction-set copy of [`crate::simd`]).
#[inline(always)]
pub(crate) fn run_rows<C: Compact>(
    ctx: &HeadCtx,
    rows: std::ops::Range<usize>,
    sc: &BlockScores,
    s: &mut Scratch,
) -> BlockOut {
    let n = ctx.shape.n_keys;
    let cols = sc.cols;
    let d = ctx.shape.head_dim;
    let m = rows.len();
    let wpr = words_for(n);
    let offsets: &[f32] = ctx.kv.crossbar.as_ref().map_or(&[], |x| &x.offsets);
    let audit_on = audited(ctx.cfg);
    let fixed = ctx.cfg.recompute == RecomputeMode::FixedPoint;
    let exact_min_int = exact_min_int(ctx.exact_min);

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
    s.acc_f32.resize(d, 0.0);
    s.acc_i32.resize(d, 0);
    s.acc_i64.resize(d, 0);
    let mut visible = vec![0u64; wpr];
    let mut pass = vec![0u64; wpr];
    for (r, i) in rows.clone().enumerate() {
        if !ctx.query_valid[i] {
            continue;
        }
        let mut pass_known = false;
        let approx_row = if !sc.approx_int.is_empty() {
            ApproxRow::Int(row_of(sc.approx_int.as_slice(), r, cols))
        } else if !sc.approx_f32.is_empty() {
            ApproxRow::F32(row_of(sc.approx_f32.as_slice(), r, cols))
        } else {
            ApproxRow::None
        };
        let row_mask = &mut out.masks[r * wpr..(r + 1) * wpr];
        visible_keys(ctx, i, &mut visible);
        row_mask.copy_from_slice(&visible);
        out.visible += visible
            .iter()
            .map(|w| u64::from(w.count_ones()))
            .sum::<u64>();
        let cmp = ctx.kv.crossbar.as_ref().map(|_| comparator(ctx, i));
        if let Some(c) = &cmp {
            match approx_row {
                ApproxRow::Int(a) => match c.integer_threshold(offsets) {
                    Some(t) => C::and_ge(a, t, row_mask),
                    None => c.decide_int(a, offsets, row_mask),
                },
                ApproxRow::F32(a) => c.decide(a, offsets, row_mask),
                ApproxRow::None => {}
            }
            if audit_on {
                if fixed {
                    let (e, stats) = (row_of(sc.exact_int.as_slice(), r, cols), &mut out.stats);
                    audit_int::<C>(e, exact_min_int, &visible, row_mask, &mut pass, stats);
                    pass_known = true;
                } else {
                    let e = row_of(sc.exact_f32.as_slice(), r, cols);
                    audit(e, ctx.exact_min, &visible, row_mask, &mut out.stats);
                }
            }
        }
        out.kept[r] = row_mask.iter().map(|w| w.count_ones()).sum();
        let dst = &mut out.output[r * d..(r + 1) * d];
        let (kept, sat_scores, sat_out) = if !fixed {
            s.keys.clear();
            s.keys.extend(iter_ones(row_mask).map(|j| j as u32));
            float_row(
                ctx,
                i,
                cmp.as_ref(),
                approx_row,
                row_of(sc.exact_f32.as_slice(), r, cols),
                offsets,
                s,
                dst,
            )
        } else if ctx.cfg.variant == Variant::SprintNoRecompute {
            s.keys.clear();
            s.keys.extend(iter_ones(row_mask).map(|j| j as u32));
            no_recompute_row(ctx, i, cmp.as_ref(), approx_row, offsets, s, dst)
        } else {
            let (scores, known) = if sc.recompute_int.is_empty() {
                // The audit's pass words are the recheck of these very scores.
                let known = pass_known.then_some(&pass[..]);
                (row_of(sc.exact_int.as_slice(), r, cols), known)
            } else {
                (row_of(sc.recompute_int.as_slice(), r, cols), None)
            };
            let recheck = Recheck {
                min: exact_min_int,
                pass: known,
            };
            // |q8 . k| <= 128 sum|q8|: most rows cannot reach a saturating score.
            let bound = 128 * i64::from(ctx.qh.q_abs_sum[i]);
            let may_saturate =
                bound >= i64::from(ctx.sat_above) || -bound <= i64::from(ctx.sat_below);
            recompute_row::<C>(ctx, scores, recheck, row_mask, may_saturate, s, dst)
        };
        out.softmax_kept[r] = kept;
        out.stats.score_saturated += sat_scores;
        out.stats.output_saturated += sat_out;
    }
    out
}

/// The recheck's bound on a row's integer scores: keys scoring at least `min` stay; `pass`,
/// when known, holds those keys' words already (the audit's compares of the same scores;
/// every visible key's bit is set or cleared by it).
#[derive(Clone, Copy)]
struct Recheck<'a> {
    min: i32,
    pass: Option<&'a [u64]>,
}

/// The fixed-point score code of an exact integer score (see [`quantize_score`]); the
/// saturation flag is counted separately from the head's bounds.
#[inline(always)]
fn score_code(score: i32, unit: f64, hi: f64, scale: f64) -> i32 {
    // `quantize_score` without the flag, written with max/min so that it vectorises.
    let x = f64::from(score) * unit * scale;
    let r = (x + 0.5f64.copysign(x)).trunc();
    r.max(-hi - 1.0).min(hi) as i32
}

/// [`score_code`] of every score in `raw`, written to `codes` (same length). When `unit` and
/// `scale` are finite no code can be NaN (an overflowing product is an infinity, which the
/// clamp bounds), so the clamped value (an integer of magnitude below 2^31) converts by
/// adding `1.5 * 2^52` and reading the low 32 bits of the sum's mantissa, exactly. Rust's
/// saturating cast checks every element for NaN and range instead, which kept the loop
/// scalar; the codes are the same.
#[inline(always)]
fn score_codes(raw: &[i32], unit: f64, hi: f64, scale: f64, codes: &mut [i32]) {
    /// `1.5 * 2^52`: integers `v` with `|v| < 2^51` added to it are exact and leave `v` in the
    /// low bits of the mantissa (two's complement modulo 2^32).
    const MAGIC: f64 = 6_755_399_441_055_744.0;
    if !(unit.is_finite() && scale.is_finite() && hi.is_finite() && hi < 2e9) {
        for (c, &x) in codes.iter_mut().zip(raw) {
            *c = score_code(x, unit, hi, scale);
        }
        return;
    }
    for (c, &s) in codes.iter_mut().zip(raw) {
        let x = f64::from(s) * unit * scale;
        let r = (x + 0.5f64.copysign(x)).trunc();
        let clamped = r.max(-hi - 1.0).min(hi);
        *c = (clamped + MAGIC).to_bits() as u32 as i32;
    }
}

/// Phases recompute, recheck, softmax and V-PU of one row whose score codes come from exact
/// integer scores (SPRINT's recompute, runtime pruning, dense). `scores` are the integer
/// scores of every key, `kept` the keys that reached the recompute. Word by word, the keys
/// whose score code saturates are counted and those below `Th` dropped (`bound`, the
/// same rule as comparing codes), then only the softmax's keys are quantised. Returns (keys
/// in the softmax, saturated score codes, saturated output elements).
#[inline(always)]
fn recompute_row<C: Compact>(
    ctx: &HeadCtx,
    scores: &[i32],
    bound: Recheck,
    kept: &[u64],
    may_saturate: bool,
    s: &mut Scratch,
    dst: &mut [f32],
) -> (u32, u64, u64) {
    let recheck = rechecks(ctx);
    let mut saturated = 0u64;
    // Sized for every kept key and written by index (pushes would store the length back to
    // memory on every key).
    let most: usize = kept.iter().map(|w| w.count_ones() as usize).sum();
    s.keys.resize(most + SLACK, 0);
    s.raw.resize(most + SLACK, 0);
    let (keys, raw) = (&mut s.keys[..], &mut s.raw[..]);
    let mut len = 0;
    for (wi, &word) in kept.iter().enumerate() {
        if word == 0 {
            continue;
        }
        let lo = wi * 64;
        let chunk = &scores[lo..(lo + 64).min(scores.len())];
        if may_saturate {
            let outside = !C::ge_bits(chunk, ctx.sat_below.saturating_add(1))
                | C::ge_bits(chunk, ctx.sat_above);
            saturated += u64::from((outside & word).count_ones());
        }
        let soft = if recheck {
            match bound.pass {
                Some(pass) => word & pass[wi],
                None => word & C::ge_bits(chunk, bound.min),
            }
        } else {
            word
        };
        len = C::append(soft, lo, chunk, keys, raw, len);
    }
    s.keys.truncate(len);
    s.raw.truncate(len);
    let q = &ctx.cfg.quant;
    let hi = f64::from((1u32 << (q.score_bits - 1)) - 1);
    let scale = f64::from(1u32 << q.score_frac_bits);
    let unit = ctx.exact_unit;
    // A plain loop (not `extend` over an iterator, whose fold is not inlined into the
    // instruction-set copies of `crate::simd`) so that it vectorises.
    s.codes.resize(s.raw.len(), 0);
    score_codes(&s.raw, unit, hi, scale, &mut s.codes);
    let sat_out = softmax_and_vpu::<C>(ctx, s, dst);
    (s.keys.len() as u32, saturated, sat_out)
}

/// Phases softmax and V-PU of the keys in `s.keys` with score codes `s.codes`; returns the
/// saturated output elements.
#[inline(always)]
fn softmax_and_vpu<C: Compact>(ctx: &HeadCtx, s: &mut Scratch, dst: &mut [f32]) -> u64 {
    if s.keys.is_empty() {
        return 0;
    }
    let q = &ctx.cfg.quant;
    match q.softmax_normalisation {
        SoftmaxNormalisation::Deferred => {
            s.weights.resize(s.codes.len(), 0);
            let table = ctx.softmax.weight_table();
            let sum = ctx
                .softmax
                .kept_sum(C::weights(table, &s.codes, &mut s.weights));
            vpu::deferred(
                &s.keys,
                &s.weights,
                sum,
                &ctx.kv.v8,
                ctx.kv.v_scale,
                q.output_bits,
                &mut s.acc_i32,
                &mut s.acc_i64,
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
    }
}

/// Phases softmax and V-PU of one row of SPRINT without recompute: the score codes are the
/// analog scores read out of the crossbar. Returns (keys in the softmax, saturated score
/// codes, saturated output elements).
#[inline(always)]
fn no_recompute_row(
    ctx: &HeadCtx,
    i: usize,
    cmp: Option<&Comparator>,
    approx_row: ApproxRow,
    offsets: &[f32],
    s: &mut Scratch,
    dst: &mut [f32],
) -> (u32, u64, u64) {
    let q = &ctx.cfg.quant;
    let hi = f64::from((1u32 << (q.score_bits - 1)) - 1);
    let scale = f64::from(1u32 << q.score_frac_bits);
    let mut saturated = 0u64;
    s.codes.clear();
    if let Some(c) = cmp {
        let corr = ctx.qh.lsb_correction[i];
        for &j in &s.keys {
            let steps = c.analog_score(approx_row.get(j as usize), offsets, j as usize) + corr;
            let (code, sat) = quantize_score(steps * ctx.approx_unit, hi, scale);
            saturated += u64::from(sat);
            s.codes.push(code);
        }
    }
    let sat_out = softmax_and_vpu::<crate::compact::Scalar>(ctx, s, dst);
    (s.keys.len() as u32, saturated, sat_out)
}

/// Phases recompute, recheck, softmax and x V of one row in float (isolates pruning from
/// quantisation). Returns (keys in the softmax, 0, 0).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn float_row(
    ctx: &HeadCtx,
    i: usize,
    cmp: Option<&Comparator>,
    approx_row: ApproxRow,
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
                let j = j as usize;
                ((c.analog_score(approx_row.get(j), offsets, j) + corr) * ctx.approx_unit) as f32
            }));
        }
        (Variant::Sprint, _) if exact_row.is_empty() => {
            let q_f = &ctx.q_f[i * d..(i + 1) * d];
            let inv = 1.0 / (d as f32).sqrt();
            s.logits.extend(s.keys.iter().map(|&j| {
                let j = j as usize;
                dot_f32(q_f, &ctx.k_f[j * d..(j + 1) * d]) * inv
            }));
        }
        _ => s
            .logits
            .extend(s.keys.iter().map(|&j| exact_row[j as usize])),
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
        let j = j as usize;
        axpy_f32(dst, p, &ctx.v_f[j * d..(j + 1) * d]);
    }
    (kept, 0, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_codes_match_the_scalar_code() {
        let mut raw: Vec<i32> = vec![0, 1, -1, i32::MAX, i32::MIN, 1 << 20, -(1 << 20)];
        let mut state = 5u64;
        for _ in 0..2000 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            raw.push((state >> 32) as i32 >> (state % 20));
        }
        for (unit, hi, scale) in [
            (1.0 / 4096.0, 2047.0, 16.0),
            (3.7e-4, 2047.0, 32.0),
            (0.013, 32767.0, 256.0),
            (1e300, 2047.0, 16.0),
            (f64::INFINITY, 2047.0, 16.0),
            (f64::NAN, 2047.0, 16.0),
        ] {
            let mut got = vec![0; raw.len()];
            score_codes(&raw, unit, hi, scale, &mut got);
            for (&x, &c) in raw.iter().zip(&got) {
                assert_eq!(c, score_code(x, unit, hi, scale), "{x} at unit {unit}");
            }
        }
    }
}
