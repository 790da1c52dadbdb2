//! Sanger's pruning decision (Lu et al., MICRO 2021; public PyTorch model hatsu3/Sanger).
//!
//! Per layer: each query row and each key vector is normalised to unit L2 norm, the
//! normalised Q and K are quantised to `qk_bits` symmetric levels with one scale per tensor
//! (its absolute maximum over the real tokens of every head), the quantised product is
//! multiplied back by the two norms and by `1/sqrt(d)`: the predicted score. A softmax over a
//! query's visible keys gives the predicted probability, and the keys above
//! `prob_threshold` form the mask. Exact float attention is computed on the mask only.
//!
//! One deliberate difference from the PyTorch code: there the mask is applied as an additive
//! -10000, so a query whose mask is empty (possible only when the threshold is at least one
//! over the visible keys) falls back to dense attention; here, as for every variant, it gets
//! zeros and an empty kept set.

use sprint_core::peers::SangerConfig;
use sprint_core::visibility::visible_limit;

use crate::block::BlockOut;
use crate::gemm::matmul_nt;
use crate::head::QUERY_BLOCK;
use crate::int8_gemm::{self, PackedKeys};
use crate::softmax::exp_sum_f32;
use crate::tensor::{AttentionInput, LayerShape};

/// Largest quantised level of `bits` symmetric bits: `2^(bits-1) - 1`.
pub fn max_level(bits: u32) -> f32 {
    ((1u32 << (bits - 1)) - 1) as f32
}

/// Rows of `x` (`rows x d`) scaled to unit L2 norm, with the norms; a zero row stays zero
/// (norm 0).
pub fn normalise_rows(x: &[f32], d: usize) -> (Vec<f32>, Vec<f32>) {
    let mut out = Vec::with_capacity(x.len());
    let mut norms = Vec::with_capacity(x.len() / d.max(1));
    for row in x.chunks_exact(d) {
        let n = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        norms.push(n);
        if n > 0.0 {
            out.extend(row.iter().map(|v| v / n));
        } else {
            out.extend(std::iter::repeat_n(0.0, d));
        }
    }
    (out, norms)
}

/// The quantiser's scale `s = m / abs_max` (`m = 2^(bits-1) - 1`); 0 for an all-zero tensor.
pub fn quant_scale(abs_max: f32, bits: u32) -> f32 {
    if abs_max > 0.0 {
        max_level(bits) / abs_max
    } else {
        0.0
    }
}

/// The quantiser's integer level of `x`: `clamp(round_half_even(x * s), -m, m)` (PyTorch's
/// `round` rounds half to even).
#[inline(always)]
pub fn quant_level(x: f32, scale: f32, bits: u32) -> i8 {
    let m = max_level(bits);
    (x * scale).round_ties_even().clamp(-m, m) as i8
}

/// One tensor of the predictor: integer levels per head, their norms and the scale.
struct Quantised {
    /// Levels per head, `rows x d`.
    levels: Vec<Vec<i8>>,
    /// L2 norm of each row before normalising (1 when not normalising), per head.
    norms: Vec<Vec<f32>>,
    /// `s`: a level is `value * s`; 0 for an all-zero tensor.
    scale: f32,
}

/// Normalises (if asked) and quantises the heads of one tensor with one scale: the absolute
/// maximum over the real tokens of every head.
fn quantise_tensor(
    cfg: &SangerConfig,
    heads: &[&[f32]],
    d: usize,
    valid: Option<&Vec<bool>>,
) -> Quantised {
    let (xs, norms): (Vec<Vec<f32>>, Vec<Vec<f32>>) = heads
        .iter()
        .map(|x| {
            if cfg.normalize_qk {
                normalise_rows(x, d)
            } else {
                (x.to_vec(), vec![1.0; x.len() / d])
            }
        })
        .unzip();
    let abs_max = xs
        .iter()
        .flat_map(|x| {
            x.chunks_exact(d)
                .enumerate()
                .filter(|(t, _)| valid.is_none_or(|m| m[*t]))
                .flat_map(|(_, r)| r.iter().map(|v| v.abs()))
        })
        .fold(0.0f32, f32::max);
    let scale = quant_scale(abs_max, cfg.qk_bits);
    let levels = xs
        .iter()
        .map(|x| {
            x.iter()
                .map(|&v| quant_level(v, scale, cfg.qk_bits))
                .collect()
        })
        .collect();
    Quantised {
        levels,
        norms,
        scale,
    }
}

/// How the predicted integer dot products are computed.
enum Products {
    /// The int8 GEMM (exact for these levels on this CPU): query levels shifted by 128, keys
    /// packed per KV head.
    Int8 {
        q_u8: Vec<Vec<u8>>,
        keys: Vec<PackedKeys>,
    },
    /// An f32 GEMM of the levels (exact small integers: `d * 127^2 < 2^24` for `d <= 1040`).
    Float { q: Vec<Vec<f32>>, k: Vec<Vec<f32>> },
}

/// The predictor of a layer: quantised Q and K and how their products are computed.
struct Predictor {
    q: Quantised,
    k: Quantised,
    products: Products,
}

fn prepare(cfg: &SangerConfig, input: &AttentionInput, shape: LayerShape) -> Predictor {
    let d = shape.head_dim;
    let qs: Vec<&[f32]> = (0..shape.heads).map(|h| input.q.head(h)).collect();
    let ks: Vec<&[f32]> = (0..shape.kv_heads).map(|h| input.k.head(h)).collect();
    let q = quantise_tensor(cfg, &qs, d, input.query_valid.as_ref());
    let k = quantise_tensor(cfg, &ks, d, input.key_valid.as_ref());
    let m = max_level(cfg.qk_bits) as u32;
    let products = if int8_gemm::exact_for(128 + m, m) {
        Products::Int8 {
            q_u8: q
                .levels
                .iter()
                .map(|l| l.iter().map(|&x| (i16::from(x) + 128) as u8).collect())
                .collect(),
            keys: k
                .levels
                .iter()
                .map(|l| PackedKeys::new(l, shape.n_keys, d))
                .collect(),
        }
    } else {
        let f = |t: &Quantised| -> Vec<Vec<f32>> {
            t.levels
                .iter()
                .map(|l| l.iter().map(|&x| f32::from(x)).collect())
                .collect()
        };
        Products::Float { q: f(&q), k: f(&k) }
    };
    Predictor { q, k, products }
}

/// Runs Sanger on every head of a layer: one [`BlockOut`] per block of
/// [`crate::head::QUERY_BLOCK`] queries of a head, in (head, block) order. Blocks run in
/// parallel on the caller's rayon pool; each is computed by the same code whatever the
/// thread count. The predicted scores come from one integer GEMM per block; the exact
/// scores and the weighted sum of V only for the kept keys.
pub(crate) fn run(
    cfg: &SangerConfig,
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
type Kernel<'a> = super::LayerKernel<'a, SangerConfig, Predictor>;

impl super::BlockKernel for Kernel<'_> {
    type Scratch = Scratch;
    type Out = BlockOut;

    fn scratch() -> &'static std::thread::LocalKey<std::cell::RefCell<Scratch>> {
        &SCRATCH
    }

    #[inline(always)]
    fn block(&self, h: usize, rows: std::ops::Range<usize>, s: &mut Scratch) -> BlockOut {
        block_with(
            self.cfg,
            self.causal,
            self.input,
            self.shape,
            self.p,
            h,
            rows,
            s,
        )
    }
}

/// Per-thread buffers of a block, reused across blocks (every element read is written
/// first, so which buffers a block gets does not change its result).
#[derive(Default)]
pub(crate) struct Scratch {
    ints: Vec<i32>,
    floats: Vec<f32>,
    exact: Vec<f32>,
    zero_points: Vec<u8>,
    logits: Vec<f32>,
    probs: Vec<f32>,
    kept: Vec<usize>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::default();
}

/// Computes the predicted integer dot products of query rows `rows` of head `h` with every
/// key of its KV head into `s.ints` (int8 GEMM) or `s.floats` (f32 GEMM of the levels),
/// `rows.len() x n_keys`; returns which.
fn predicted_products(
    p: &Predictor,
    shape: LayerShape,
    h: usize,
    rows: &std::ops::Range<usize>,
    s: &mut Scratch,
) -> bool {
    let (nk, d) = (shape.n_keys, shape.head_dim);
    let kvh = shape.kv_head_of(h);
    let m = rows.len();
    let block = rows.start * d..rows.end * d;
    match &p.products {
        Products::Int8 { q_u8, keys } => {
            s.ints.resize(m * nk, 0);
            s.zero_points.clear();
            s.zero_points.resize(m, 128);
            int8_gemm::scores(&q_u8[h][block], &s.zero_points, &keys[kvh], &mut s.ints);
            true
        }
        Products::Float { q, k } => {
            s.floats.resize(m * nk, 0.0);
            matmul_nt(&q[h][block], &k[kvh], &mut s.floats, m, nk, d);
            false
        }
    }
}

/// Sanger's predicted probability of every visible (query, key) pair of a layer, in (head,
/// query, key) order, passed to `visit`: the quantity its threshold cuts, for calibrating
/// `prob_threshold` to a target kept fraction. Sequential; the same values as the variant's
/// decision uses.
pub fn predicted_probabilities(
    cfg: &SangerConfig,
    causal: bool,
    input: &AttentionInput,
    visit: &mut dyn FnMut(f32),
) -> crate::Result<()> {
    let shape = input.validate()?;
    let (nq, nk, d) = (shape.n_queries, shape.n_keys, shape.head_dim);
    let p = prepare(cfg, input, shape);
    let inv = 1.0 / (d as f32).sqrt();
    let unscale = if p.q.scale > 0.0 && p.k.scale > 0.0 {
        inv / (p.q.scale * p.k.scale)
    } else {
        0.0
    };
    let mut s = Scratch::default();
    let mut probs = Vec::new();
    for h in 0..shape.heads {
        let kvh = shape.kv_head_of(h);
        for start in (0..nq).step_by(QUERY_BLOCK) {
            let rows = start..(start + QUERY_BLOCK).min(nq);
            let ints = predicted_products(&p, shape, h, &rows, &mut s);
            for (r, i) in rows.enumerate() {
                if input.query_valid.as_ref().is_some_and(|mk| !mk[i]) {
                    continue;
                }
                let limit = visible_limit(i, nq, nk, causal);
                let scale = p.q.norms[h][i] * unscale;
                s.logits.clear();
                for j in 0..limit {
                    if input.key_valid.as_ref().is_some_and(|mk| !mk[j]) {
                        continue;
                    }
                    let x = if ints {
                        s.ints[r * nk + j] as f32
                    } else {
                        s.floats[r * nk + j]
                    };
                    s.logits.push(x * p.k.norms[kvh][j] * scale);
                }
                crate::softmax::softmax_f32(&s.logits, &mut probs);
                for &pr in &probs {
                    visit(pr);
                }
            }
        }
    }
    Ok(())
}

/// The indices `j` with `logits[j] > cut`, in order, into `kept` (branch-free).
#[inline(always)]
fn above(logits: &[f32], cut: f32, kept: &mut Vec<usize>) {
    kept.clear();
    kept.resize(logits.len(), 0);
    let mut n = 0;
    for (j, &l) in logits.iter().enumerate() {
        kept[n] = j;
        n += usize::from(l > cut);
    }
    kept.truncate(n);
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn block_with(
    cfg: &SangerConfig,
    causal: bool,
    input: &AttentionInput,
    shape: LayerShape,
    p: &Predictor,
    h: usize,
    rows: std::ops::Range<usize>,
    s: &mut Scratch,
) -> BlockOut {
    let (nq, nk, d) = (shape.n_queries, shape.n_keys, shape.head_dim);
    let kvh = shape.kv_head_of(h);
    let inv = 1.0 / (d as f32).sqrt();
    let wpr = sprint_core::bits::words_for(nk);
    let ints = predicted_products(p, shape, h, &rows, s);
    // A product of levels is a product of values times s_q * s_k.
    let unscale = if p.q.scale > 0.0 && p.k.scale > 0.0 {
        inv / (p.q.scale * p.k.scale)
    } else {
        0.0
    };
    let (q, k, v) = (input.q.head(h), input.k.head(kvh), input.v.head(kvh));
    let k_norm = &p.k.norms[kvh];
    let mut out = BlockOut::empty(rows.clone(), d, wpr);
    super::exact_scores(q, k, &rows, d, &mut s.exact);
    let Scratch {
        ints: int_products,
        floats: float_products,
        exact,
        logits,
        probs,
        kept,
        ..
    } = s;
    let key_valid = input.key_valid.as_deref();
    for (r, i) in rows.enumerate() {
        if input.query_valid.as_ref().is_some_and(|mk| !mk[i]) {
            continue;
        }
        let limit = visible_limit(i, nq, nk, causal);
        let scale = p.q.norms[h][i] * unscale;
        // Predicted logits of the visible keys (`-inf` for padding).
        logits.clear();
        logits.resize(limit, 0.0);
        if ints {
            let pred = &int_products[r * nk..r * nk + limit];
            for ((l, &x), kn) in logits.iter_mut().zip(pred).zip(k_norm) {
                *l = x as f32 * kn * scale;
            }
        } else {
            let pred = &float_products[r * nk..r * nk + limit];
            for ((l, &x), kn) in logits.iter_mut().zip(pred).zip(k_norm) {
                *l = x * kn * scale;
            }
        }
        let n_visible = match key_valid {
            None => limit,
            Some(mk) => {
                for (l, v) in logits.iter_mut().zip(mk) {
                    if !*v {
                        *l = f32::NEG_INFINITY;
                    }
                }
                mk[..limit].iter().filter(|v| **v).count()
            }
        };
        out.visible += n_visible as u64;
        if n_visible == 0 {
            continue;
        }
        // p_j > t  <=>  l_j > max + ln(t * sum_k exp(l_k - max)).
        let mx = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let cut = mx + (cfg.prob_threshold * exp_sum_f32(logits, mx)).ln();
        above(logits, cut, kept);
        if kept.is_empty() {
            continue;
        }
        super::record_kept(&mut out, r, wpr, kept);
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
    fn quantiser_rounds_half_to_even_and_clamps() {
        // 4 bits: levels -7..=7, abs max 7 -> scale 1.
        let s = quant_scale(7.0, 4);
        let x = [0.5f32, 1.5, 2.5, -2.5, 7.0, -7.0, 3.49, 9.0];
        let levels: Vec<i8> = x.iter().map(|&v| quant_level(v, s, 4)).collect();
        assert_eq!(levels, vec![0, 2, 2, -2, 7, -7, 3, 7]);
        assert_eq!(quant_scale(0.0, 4), 0.0);
    }

    #[test]
    fn rows_normalise_to_unit_norm_and_zero_rows_stay_zero() {
        let (x, n) = normalise_rows(&[3.0, 4.0, 0.0, 0.0], 2);
        assert_eq!(n, vec![5.0, 0.0]);
        assert_eq!(x, vec![0.6, 0.8, 0.0, 0.0]);
    }
}
