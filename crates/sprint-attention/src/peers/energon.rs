//! Energon's pruning decision (Zhou et al., arXiv 2110.09310, IEEE TCAD 2022): mix-precision
//! multi-round filtering (MP-MRF), then exact attention on the survivors.
//!
//! Q and K are quantised symmetrically (`query_bits` and `key_bits`, one scale per head: its
//! absolute maximum; round half to even). Round `r` scores its keys with the query's code and
//! the `round_key_bits[r]` most significant bits of each key's code (an arithmetic shift
//! right by `key_bits - round_key_bits[r]`), so a later round only adds the bits the earlier
//! ones did not read. Round 1 scores every visible key; each later round the survivors of the
//! one before. Over the keys a round scores, with `mean`, `max` and `min` of their integer
//! scores and the round's `alpha`, the threshold is
//!
//! `theta = mean + alpha (max - mean)` when `alpha >= 0`, `theta = mean + alpha (mean - min)`
//! when `alpha < 0`
//!
//! (in f64, `mean = sum / count`, computed as `(1 - alpha) mean + alpha max` and
//! `(1 + alpha) mean - alpha min`, exact at `alpha = 0, 1, -1`), and the keys whose score is
//! at least `theta` survive. The
//! largest score always does, so a query with a visible key keeps at least one. Exact float
//! attention runs on the last round's survivors, which are the trace's kept set; the
//! survivors of every round are summed in [`sprint_core::trace::HeadStats::filter_kept`].

use sprint_core::peers::EnergonConfig;
use sprint_core::visibility::visible_limit;

use super::SetProducts;
use super::sanger::{max_level, quant_level, quant_scale};
use crate::block::BlockOut;
use crate::int8_gemm;
use crate::tensor::{AttentionInput, LayerShape};

/// The threshold of a round over scores with `sum`, `count`, `max` and `min` (see the module
/// documentation).
pub fn round_threshold(alpha: f32, sum: i64, count: usize, max: i32, min: i32) -> f64 {
    let mean = sum as f64 / count as f64;
    let a = f64::from(alpha);
    // Weights of the mean and the extreme: exact at alpha = 0 and +-1.
    if a >= 0.0 {
        (1.0 - a) * mean + a * f64::from(max)
    } else {
        (1.0 + a) * mean - a * f64::from(min)
    }
}

/// The filtering rounds of one query row: `keep` holds the row's visible keys on entry and
/// the last round's survivors on exit (`next` is scratch). Round `r` reads key `j`'s score at
/// `rounds[r][offset + j]` with threshold `alphas[r]`; each round's survivors are added to
/// `survivors[r]` (rounds past its length are not counted). Rounds run while both `alphas`
/// and `rounds` have one.
#[inline(always)]
pub fn filter_rounds<S: AsRef<[i32]>>(
    alphas: &[f32],
    rounds: &[S],
    offset: usize,
    keep: &mut Vec<usize>,
    next: &mut Vec<usize>,
    survivors: &mut [u64],
) {
    for (round, (scores, &alpha)) in rounds.iter().zip(alphas).enumerate() {
        let s = &scores.as_ref()[offset..];
        let (mut sum, mut max, mut min) = (0i64, i32::MIN, i32::MAX);
        for &j in keep.iter() {
            let x = s[j];
            sum += i64::from(x);
            max = max.max(x);
            min = min.min(x);
        }
        let theta = round_threshold(alpha, sum, keep.len(), max, min);
        // An integer score x has x >= theta exactly when x >= ceil(theta); clamping that
        // bound to just outside the i32 range keeps every comparison's result. A NaN
        // threshold (no keys) keeps none.
        let t = if theta.is_nan() {
            i64::MAX
        } else {
            theta
                .ceil()
                .clamp(f64::from(i32::MIN) - 1.0, f64::from(i32::MAX) + 1.0) as i64
        };
        // Branch-free compaction of the survivors, in order.
        next.clear();
        next.resize(keep.len(), 0);
        let mut n = 0;
        for &j in keep.iter() {
            next[n] = j;
            n += usize::from(i64::from(s[j]) >= t);
        }
        next.truncate(n);
        std::mem::swap(keep, next);
        if let Some(c) = survivors.get_mut(round) {
            *c += keep.len() as u64;
        }
    }
}

/// Energon's integer round scores of a layer, the quantities its alphas threshold: for every
/// visible query row `i` with `i % row_stride == 0` (a deterministic sample of the rows), in
/// (head, query) order, `visit` gets one vector per round with the row's scores of its visible
/// keys in key order (every visible key scored in every round, so that any alphas can be
/// applied to them with [`filter_rounds`]). The scores are the variant's own.
pub fn round_scores(
    cfg: &EnergonConfig,
    causal: bool,
    input: &AttentionInput,
    row_stride: usize,
    visit: &mut dyn FnMut(&[Vec<i32>]),
) -> crate::Result<()> {
    let shape = input.validate()?;
    let (nq, nk) = (shape.n_queries, shape.n_keys);
    let p = prepare(cfg, input, shape);
    let key_valid = input.key_valid.as_deref();
    let stride = row_stride.max(1);
    let mut row: Vec<Vec<i32>> = vec![Vec::new(); cfg.round_key_bits.len()];
    for h in 0..shape.heads {
        for start in (0..nq).step_by(crate::head::QUERY_BLOCK) {
            let rows = start..(start + crate::head::QUERY_BLOCK).min(nq);
            if !rows.clone().any(|i| i % stride == 0) {
                continue;
            }
            let products = p.block(shape, h, &rows);
            for (r, i) in rows.enumerate() {
                if i % stride != 0 || input.query_valid.as_ref().is_some_and(|mk| !mk[i]) {
                    continue;
                }
                let limit = visible_limit(i, nq, nk, causal);
                for (out, scores) in row.iter_mut().zip(&products) {
                    out.clear();
                    out.extend(
                        (0..limit)
                            .filter(|&j| key_valid.is_none_or(|mk| mk[j]))
                            .map(|j| scores[r * nk + j]),
                    );
                }
                if !row[0].is_empty() {
                    visit(&row);
                }
            }
        }
    }
    Ok(())
}

/// Levels of one head quantised to `bits` with its own scale (absolute maximum).
fn levels(x: &[f32], bits: u32) -> Vec<i8> {
    let abs_max = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let s = quant_scale(abs_max, bits);
    x.iter().map(|&v| quant_level(v, s, bits)).collect()
}

fn prepare(cfg: &EnergonConfig, input: &AttentionInput, shape: LayerShape) -> SetProducts {
    let d = shape.head_dim;
    let q: Vec<Vec<i8>> = (0..shape.heads)
        .map(|h| levels(input.q.head(h), cfg.query_bits))
        .collect();
    // Per KV head, per round: the key codes' top `bits` bits.
    let rounds: Vec<Vec<Vec<i8>>> = (0..shape.kv_heads)
        .map(|h| {
            let k = levels(input.k.head(h), cfg.key_bits);
            cfg.round_key_bits
                .iter()
                .map(|&b| k.iter().map(|&x| x >> (cfg.key_bits - b)).collect())
                .collect()
        })
        .collect();
    let (mq, mk) = (
        max_level(cfg.query_bits) as u32,
        max_level(cfg.key_bits) as u32,
    );
    let int8 = int8_gemm::exact_for(128 + mq, mk);
    SetProducts::new(int8, &q, &rounds, shape.n_keys, d)
}

/// Runs Energon on every head of a layer: one [`BlockOut`] per block of
/// [`crate::head::QUERY_BLOCK`] queries of a head, in (head, block) order, in parallel on the
/// caller's rayon pool (the same bits for any thread count).
pub(crate) fn run(
    cfg: &EnergonConfig,
    causal: bool,
    input: &AttentionInput,
    shape: LayerShape,
) -> Vec<(usize, BlockOut)> {
    let p = prepare(cfg, input, shape);
    let kernel = Kernel {
        cfg,
        causal,
        input,
        shape,
        p: &p,
    };
    super::run_blocks(&kernel, shape.heads, shape.n_queries)
}

/// A layer's blocks for [`super::run_blocks`].
type Kernel<'a> = super::LayerKernel<'a, EnergonConfig, SetProducts>;

super::block_kernel!(Kernel, Scratch, SCRATCH, block_with);

/// Per-thread buffers of a block, reused across blocks (every element read is written
/// first, so which buffers a block gets does not change its result).
#[derive(Default)]
pub(crate) struct Scratch {
    rounds: Vec<Vec<i32>>,
    zero_points: Vec<u8>,
    exact: Vec<f32>,
    keep: Vec<usize>,
    next: Vec<usize>,
    logits: Vec<f32>,
    probs: Vec<f32>,
}

#[inline(always)]
fn block_with(
    kn: &Kernel<'_>,
    h: usize,
    rows: std::ops::Range<usize>,
    s: &mut Scratch,
) -> BlockOut {
    let (cfg, input, shape) = (kn.cfg, kn.input, kn.shape);
    let (nq, nk, d) = (shape.n_queries, shape.n_keys, shape.head_dim);
    let kvh = shape.kv_head_of(h);
    let wpr = sprint_core::bits::words_for(nk);
    kn.p.block_into(shape, h, &rows, &mut s.rounds, &mut s.zero_points);
    let (q, k, v) = (input.q.head(h), input.k.head(kvh), input.v.head(kvh));
    let inv = 1.0 / (d as f32).sqrt();
    let mut out = BlockOut::empty(rows.clone(), d, wpr);
    super::exact_scores(q, k, &rows, d, &mut s.exact);
    let key_valid = input.key_valid.as_deref();
    let Scratch {
        rounds,
        exact,
        keep,
        next,
        logits,
        probs,
        ..
    } = s;
    for (r, i) in rows.enumerate() {
        if input.query_valid.as_ref().is_some_and(|mk| !mk[i]) {
            continue;
        }
        let limit = visible_limit(i, nq, nk, kn.causal);
        keep.clear();
        keep.resize(limit, 0);
        let mut n = 0;
        for j in 0..limit {
            keep[n] = j;
            n += usize::from(key_valid.is_none_or(|mk| mk[j]));
        }
        keep.truncate(n);
        out.visible += keep.len() as u64;
        if keep.is_empty() {
            continue;
        }
        filter_rounds(
            &cfg.round_alpha,
            rounds,
            r * nk,
            keep,
            next,
            &mut out.stats.filter_kept,
        );
        super::record_kept(&mut out, r, wpr, keep);
        super::attend_kept(
            &exact[r * nk..(r + 1) * nk],
            v,
            keep,
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
    fn the_threshold_moves_from_the_mean_toward_the_max_or_the_min() {
        // Scores 0, 2, 4, 10: mean 4, max 10, min 0.
        assert_eq!(round_threshold(0.0, 16, 4, 10, 0), 4.0);
        assert_eq!(round_threshold(0.5, 16, 4, 10, 0), 7.0);
        assert_eq!(round_threshold(1.0, 16, 4, 10, 0), 10.0);
        assert_eq!(round_threshold(-0.5, 16, 4, 10, 0), 2.0);
        assert_eq!(round_threshold(-1.0, 16, 4, 10, 0), 0.0);
    }

    #[test]
    fn fewer_key_bits_are_the_codes_top_bits() {
        // 4-bit levels -7..=7; the top 2 bits by an arithmetic shift of 2.
        let l = levels(&[7.0, -7.0, 3.0, -1.0, 0.5], 4);
        assert_eq!(l, vec![7, -7, 3, -1, 0]);
        let top: Vec<i8> = l.iter().map(|&x| x >> 2).collect();
        assert_eq!(top, vec![1, -2, 0, -1, 0]);
    }
}
