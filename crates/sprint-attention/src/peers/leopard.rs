//! LeOPArd's pruning decision (Li et al., ISCA 2022, arXiv 2204.03227): runtime pruning of
//! every key whose exact score is below the (learned, per-layer) threshold `Th`, computed as
//! a bit-serial dot product over the key's bits, most significant first, that stops as soon
//! as the score can no longer reach `Th`.
//!
//! The codes are this project's 8-bit ones (the same symmetric per-head Q and K codes as
//! SPRINT's exact recompute; LeOPArd's own bit widths are stated in its paper, which is not
//! reachable here). With `k = -2^7 k_7 + sum_{b<7} 2^b k_b` in two's complement, after the
//! planes `7..=b` the partial score is `2^b q . (k >> b)` (arithmetic shift), and the planes
//! still to come add between 0 and `(2^b - 1) S+` with `S+ = sum_i max(q_i, 0)`. So
//!
//! `U_b = 2^b q . (k >> b) + (2^b - 1) S+`
//!
//! bounds the final score from above; the unit stops after the first plane `b` with
//! `U_b < Th`. `U_b` never grows as `b` falls (`U_b - U_(b-1)` is
//! `2^(b-1) (S+ - q . k_(b-1))`, never negative) and `U_0` is the exact score, so the kept set
//! is exactly the runtime-pruning one and
//! the planes processed by a pair are `8 - b_stop`, with `b_stop` the highest such `b` (8 for
//! a kept key). Their sum over the visible pairs is recorded as
//! [`sprint_core::trace::HeadStats::k_bits_processed`]. Every visible key is fetched for the
//! bit-serial unit (the trace's kept set, as for runtime pruning); the survivors enter the
//! softmax and get exact float attention, as for every peer.

use sprint_core::visibility::visible_limit;

use super::SetProducts;
use crate::block::BlockOut;
use crate::int8_gemm;
use crate::quant::{exact_score_unit, quantize, symmetric_scale};
use crate::tensor::{AttentionInput, LayerShape};

/// Bit-planes of a key code.
pub const KEY_BITS: u32 = 8;

/// The planes a bit-serial unit processes for one pair, from the bounds `u[b]` (`b = 0..8`,
/// real logit units) and the threshold: `8 - b_stop` with `b_stop` the highest `b` whose
/// bound is below `th`, or 8 when none is (the key is kept).
#[inline(always)]
pub fn planes_processed(u: &[f64; KEY_BITS as usize], th: f64) -> u32 {
    planes_from_below(u.iter().filter(|&&x| x < th).count() as u32)
}

/// The planes processed by a pair with `below` of its 8 bounds under the threshold (the
/// bounds never grow as the plane falls, so they are the lowest `below` planes): 8 when
/// none is (kept), else `9 - below`.
#[inline(always)]
pub fn planes_from_below(below: u32) -> u32 {
    if below == 0 {
        KEY_BITS
    } else {
        KEY_BITS + 1 - below
    }
}

/// The smallest integer score that reaches `th` (logits) at `unit` logits per step:
/// `ceil(th / unit)`, saturated to the i64 range (`-inf` keeps every key).
pub fn int_threshold(th: f64, unit: f64) -> i64 {
    let t = (th / unit).ceil();
    if t.is_nan() || t <= -(2f64.powi(62)) {
        i64::MIN / 2
    } else if t >= 2f64.powi(62) {
        i64::MAX / 2
    } else {
        t as i64
    }
}

struct Prepared {
    q8: Vec<Vec<i8>>,
    q_scale: Vec<f32>,
    k_scale: Vec<f32>,
    /// `q . (k >> b)` per plane `b`.
    products: SetProducts,
}

fn prepare(input: &AttentionInput, shape: LayerShape) -> Prepared {
    let d = shape.head_dim;
    let mut q8 = Vec::with_capacity(shape.heads);
    let mut q_scale = Vec::with_capacity(shape.heads);
    for h in 0..shape.heads {
        let s = symmetric_scale(input.q.head(h));
        q8.push(quantize(input.q.head(h), s));
        q_scale.push(s);
    }
    let mut shifted: Vec<Vec<Vec<i8>>> = Vec::with_capacity(shape.kv_heads);
    let mut k_scale = Vec::with_capacity(shape.kv_heads);
    for h in 0..shape.kv_heads {
        let s = symmetric_scale(input.k.head(h));
        let k8 = quantize(input.k.head(h), s);
        shifted.push(
            (0..KEY_BITS)
                .map(|b| k8.iter().map(|&x| x >> b).collect())
                .collect(),
        );
        k_scale.push(s);
    }
    let products = SetProducts::new(
        int8_gemm::exact_for(255, 127),
        &q8,
        &shifted,
        shape.n_keys,
        d,
    );
    Prepared {
        q8,
        q_scale,
        k_scale,
        products,
    }
}

/// Runs LeOPArd on every head of a layer with thresholds `th` (logit units, one per query
/// head): one [`BlockOut`] per block of [`crate::head::QUERY_BLOCK`] queries of a head, in
/// (head, block) order, in parallel on the caller's rayon pool (the same bits for any thread
/// count).
pub(crate) fn run(
    causal: bool,
    thresholds: &[f32],
    input: &AttentionInput,
    shape: LayerShape,
) -> Vec<(usize, BlockOut)> {
    let p = prepare(input, shape);
    let kernel = Kernel {
        cfg: thresholds,
        causal,
        input,
        shape,
        p: &p,
    };
    super::run_blocks(&kernel, shape.heads, shape.n_queries)
}

/// A layer's blocks for [`super::run_blocks`].
type Kernel<'a> = super::LayerKernel<'a, [f32], Prepared>;

super::block_kernel!(Kernel, Scratch, SCRATCH, block_with);

/// Per-thread buffers of a block, reused across blocks (every element read is written
/// first, so which buffers a block gets does not change its result).
#[derive(Default)]
pub(crate) struct Scratch {
    planes: Vec<Vec<i32>>,
    zero_points: Vec<u8>,
    exact: Vec<f32>,
    below: Vec<u8>,
    kept: Vec<usize>,
    logits: Vec<f32>,
    probs: Vec<f32>,
}

/// Adds to `below[j]` whether plane `b`'s bound `(x_j << b) + tail` is under `t_int`, for
/// the products `x_j = q . (k_j >> b)` of `plane`. `narrow`: every bound lies within
/// `+-2^30` (see [`narrow_bounds`]), so the sums are done in i32 with the threshold clamped
/// to that range, which keeps every comparison's result.
#[inline(always)]
fn count_below(below: &mut [u8], plane: &[i32], b: u32, tail: i64, t_int: i64, narrow: bool) {
    if narrow {
        let lim = 1i64 << 30;
        let (tail, t) = (tail as i32, t_int.clamp(-lim, lim) as i32);
        for (c, &x) in below.iter_mut().zip(plane) {
            *c += u8::from((x << b) + tail < t);
        }
    } else {
        for (c, &x) in below.iter_mut().zip(plane) {
            *c += u8::from((i64::from(x) << b) + tail < t_int);
        }
    }
}

/// Whether every bound `U_b` of a head of `d` elements lies within `+-2^30`:
/// `|2^b q . (k >> b)| <= 127 * 128 d` and `(2^b - 1) S+ <= 127 * 127 d`.
fn narrow_bounds(d: usize) -> bool {
    (d as u64) * (127 * 128 + 127 * 127) < 1 << 30
}

#[inline(always)]
fn block_with(
    kn: &Kernel<'_>,
    h: usize,
    rows: std::ops::Range<usize>,
    s: &mut Scratch,
) -> BlockOut {
    let (input, shape, p) = (kn.input, kn.shape, kn.p);
    let (nq, nk, d) = (shape.n_queries, shape.n_keys, shape.head_dim);
    let kvh = shape.kv_head_of(h);
    let wpr = sprint_core::bits::words_for(nk);
    let unit = exact_score_unit(p.q_scale[h], p.k_scale[kvh], d);
    let th = f64::from(kn.cfg[h]);
    p.products
        .block_into(shape, h, &rows, &mut s.planes, &mut s.zero_points);
    let (q, k, v) = (input.q.head(h), input.k.head(kvh), input.v.head(kvh));
    let inv = 1.0 / (d as f32).sqrt();
    let mut out = BlockOut::empty(rows.clone(), d, wpr);
    super::exact_scores(q, k, &rows, d, &mut s.exact);
    // `U_b < th` in real units is `U_b < ceil(th / unit)` for the integer bound `U_b`.
    let t_int = int_threshold(th, unit);
    let narrow = narrow_bounds(d);
    let Scratch {
        planes,
        exact,
        below,
        kept,
        logits,
        probs,
        ..
    } = s;
    let key_valid = input.key_valid.as_deref();
    for (r, i) in rows.enumerate() {
        if input.query_valid.as_ref().is_some_and(|mk| !mk[i]) {
            continue;
        }
        let s_plus: i64 = p.q8[h][i * d..(i + 1) * d]
            .iter()
            .map(|&x| i64::from(x.max(0)))
            .sum();
        let limit = visible_limit(i, nq, nk, kn.causal);
        // below[j]: the planes b whose bound U_b is under the threshold.
        below.clear();
        below.resize(limit, 0u8);
        for (b, plane) in planes.iter().enumerate() {
            let tail = ((1i64 << b) - 1) * s_plus;
            let row = &plane[r * nk..r * nk + limit];
            count_below(below, row, b as u32, tail, t_int, narrow);
        }
        // Every visible key is fetched for the bit-serial unit (as in runtime pruning); the
        // survivors (no bound under the threshold) enter the softmax. Branch-free over the
        // row: padding keys count as neither visible nor processed.
        kept.clear();
        kept.resize(limit, 0);
        let (mut n_kept, mut bits, mut visible) = (0usize, 0u64, 0u64);
        let row = &mut out.masks[r * wpr..(r + 1) * wpr];
        for (j, &c) in below.iter().enumerate() {
            let real = key_valid.is_none_or(|mk| mk[j]);
            row[j / 64] |= u64::from(real) << (j % 64);
            let planes = planes_from_below(u32::from(c));
            bits += u64::from(real) * u64::from(planes);
            visible += u64::from(real);
            kept[n_kept] = j;
            n_kept += usize::from(real && c == 0);
        }
        kept.truncate(n_kept);
        out.visible += visible;
        out.stats.k_bits_processed += bits;
        out.kept[r] = visible as u32;
        out.softmax_kept[r] = kept.len() as u32;
        if kept.is_empty() {
            continue;
        }
        super::attend_kept(
            &exact[r * nk..(r + 1) * nk],
            v,
            kept,
            inv,
            logits,
            probs,
            &mut out.output[r * d..(r + 1) * d],
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planes_count_from_the_first_bound_below_the_threshold() {
        // Bounds by plane b = 0..8 (U_0 exact); non-increasing as b falls.
        let u = [-3.0, -1.0, 0.5, 1.0, 2.0, 2.0, 3.0, 4.0];
        // Th = 0: U_1 < 0 is the highest plane below, so planes 7..=1 ran: 7.
        assert_eq!(planes_processed(&u, 0.0), 7);
        // Th = 1.5: U_3 < 1.5: planes 7..=3: 5.
        assert_eq!(planes_processed(&u, 1.5), 5);
        // Th = 10: U_7 < 10 already: 1 plane.
        assert_eq!(planes_processed(&u, 10.0), 1);
        // Th = -5: nothing below, the key is kept: 8 planes.
        assert_eq!(planes_processed(&u, -5.0), 8);
    }
}
