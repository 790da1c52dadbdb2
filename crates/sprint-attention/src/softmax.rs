//! The fixed-point softmax unit of a CORELET.
//!
//! Scores arrive as signed `score_bits`-bit codes with `score_frac_bits` fractional bits
//! (logit = code / 2^F). The unit subtracts the row maximum, so `u = max - s >= 0`, and
//! computes `e^(-u / 2^F)` as the product of two table look-ups, one indexed by the high
//! bits of `u`, one by the low bits (`e^(a+b) = e^a e^b`). Table entries and exponentials
//! are unsigned `exp_bits`-bit numbers with 1.0 = 2^(exp_bits-1). The sum of exponentials
//! keeps its `sum_bits` most significant bits; each probability is
//! `round(e_j 2^P / sum)` with `P = prob_bits` fractional bits (values 0..=2^P).
//!
//! Two organisations hand the exponentials to the V-PU
//! ([`SoftmaxNormalisation`](sprint_core::config::SoftmaxNormalisation)):
//!
//! - **deferred** (default, [`FixedSoftmax::deferred_weights`]): each exponential is rounded
//!   to a `P`-bit mantissa and a shift (`w_j = m_j 2^s_j`), the V-PU multiplies V by `m_j`
//!   and shifts the product into its accumulator, and the accumulated outputs are divided
//!   once by `S = sum_j w_j` (kept to `sum_bits` significant bits). Every weight is off by at
//!   most `2^-P` relative, whatever the row length, and the weights are normalised by their
//!   own sum, so the output keeps its scale: `|out - out_float| <= (2^-(P-1) +
//!   2^-(sum_bits-1)) max_j |v_j - out_float| + (3 * 2^-(exp_bits-1)) n / sum_j e_j max |v|`
//!   plus half an output step (docs/functional-model.md).
//! - **per-key** (the literal datapath, [`FixedSoftmax::probabilities`]): each probability is
//!   `round(e_j 2^P / sum)` with `P = prob_bits` fractional bits (values 0..=2^P) and is
//!   never renormalised: `|p_fixed - p_float| <= 2^-(P+1) + p * (2^-(sum_bits-1) + 3 *
//!   2^-(exp_bits-1))` for every key, so a row of `n` similar keys drifts by up to
//!   `n 2^-(P+1)` of its mass and rows past `2^(P+1)` keys round to zero.

use sprint_core::config::QuantConfig;

/// Look-up tables and widths of one softmax unit.
#[derive(Clone, Debug)]
pub struct FixedSoftmax {
    lo_bits: u32,
    hi_table: Vec<u64>,
    lo_table: Vec<u64>,
    exp_one_shift: u32,
    sum_bits: u32,
    prob_bits: u32,
    max_u: u32,
    /// Deferred-normalisation weight of every `u = max - s` up to the last non-zero one
    /// (`round_to_bits(exp_code(u), prob_bits)`; larger `u` weigh 0).
    weight_table: Vec<u32>,
}

impl FixedSoftmax {
    /// Builds the tables for the precisions in `q`.
    pub fn new(q: &QuantConfig) -> Self {
        let w = q.score_bits;
        let f = q.score_frac_bits;
        // The difference of two W-bit signed codes spans W+1 bits; split it in two halves.
        let u_bits = w + 1;
        let lo_bits = u_bits / 2;
        let hi_bits = u_bits - lo_bits;
        let one = f64::from(1u32 << (q.exp_bits - 1));
        let entry = |x: f64| (x.exp() * one).round() as u64;
        let scale = f64::from(1u32 << f);
        let lo_table = (0..1u64 << lo_bits)
            .map(|l| entry(-(l as f64) / scale))
            .collect();
        let hi_table = (0..1u64 << hi_bits)
            .map(|h| entry(-((h << lo_bits) as f64) / scale))
            .collect();
        let mut unit = Self {
            lo_bits,
            hi_table,
            lo_table,
            exp_one_shift: q.exp_bits - 1,
            sum_bits: q.sum_bits,
            prob_bits: q.prob_bits,
            max_u: (1u32 << u_bits) - 1,
            weight_table: Vec::new(),
        };
        let mut table: Vec<u32> = (0..=unit.max_u)
            .map(|u| {
                let w = round_to_bits(unit.exp_code(u), unit.prob_bits);
                u32::try_from(w).expect("exponentials of at most 32 bits")
            })
            .collect();
        let len = table.iter().rposition(|&w| w != 0).map_or(0, |i| i + 1);
        table.truncate(len);
        table.push(0);
        unit.weight_table = table;
        unit
    }

    /// `e^(-u / 2^F)` as an exponential code (1.0 = 2^(exp_bits-1)), for `u >= 0`.
    #[inline(always)]
    pub fn exp_code(&self, u: u32) -> u64 {
        let u = u.min(self.max_u);
        let hi = self.hi_table[(u >> self.lo_bits) as usize];
        let lo = self.lo_table[(u & ((1 << self.lo_bits) - 1)) as usize];
        let half = 1u64 << (self.exp_one_shift - 1);
        (hi * lo + half) >> self.exp_one_shift
    }

    /// Probabilities (codes with `prob_bits` fractional bits) of the score codes `scores`,
    /// written to `probs`. An empty input writes nothing.
    #[inline(always)]
    pub fn probabilities(&self, scores: &[i32], exps: &mut Vec<u64>, probs: &mut Vec<u32>) {
        probs.clear();
        exps.clear();
        let Some(&max) = scores.iter().max() else {
            return;
        };
        exps.extend(scores.iter().map(|&s| self.exp_code((max - s) as u32)));
        let sum: u64 = exps.iter().sum();
        // Keep the `sum_bits` most significant bits of the sum (truncation, as a register would).
        let len = 64 - sum.leading_zeros();
        let shift = len.saturating_sub(self.sum_bits);
        let sum_kept = (sum >> shift) << shift;
        // round(e 2^P / sum) = floor((e 2^P + floor(sum / 2)) / sum). Both operands are
        // integers below 2^50 and the quotient below 2^34, so the f64 quotient truncates to
        // the exact integer result.
        let s = sum_kept as f64;
        let half = (sum_kept / 2) as f64;
        let one = (1u64 << self.prob_bits) as f64;
        probs.extend(exps.iter().map(|&e| ((e as f64 * one + half) / s) as u32));
    }

    /// Deferred normalisation: the V-PU weights `w_j` (each exponential rounded to
    /// `prob_bits` significant bits, half up) of the score codes `scores`, written to
    /// `weights`, and their sum kept to `sum_bits` significant bits (truncated). An empty
    /// input writes nothing and returns 0. The weights are looked up by `max - s` in a table
    /// built from [`Self::exp_code`], so they are those of the two-table unit.
    #[inline(always)]
    pub fn deferred_weights(&self, scores: &[i32], weights: &mut Vec<u32>) -> u64 {
        // Plain loops, inlined into the caller's instruction-set copy (`crate::simd`).
        weights.clear();
        if scores.is_empty() {
            return 0;
        }
        let mut max = i32::MIN;
        for &s in scores {
            max = max.max(s);
        }
        let last = self.weight_table.len() - 1;
        weights.resize(scores.len(), 0);
        let mut sum = 0u64;
        for (w, &s) in weights.iter_mut().zip(scores) {
            *w = self.weight_table[((max - s) as u32 as usize).min(last)];
            sum += u64::from(*w);
        }
        self.kept_sum(sum)
    }

    /// The deferred-normalisation weight of every `u = max - s` from 0 up to the last
    /// non-zero one, then one 0 (larger `u` weigh 0): what [`Self::deferred_weights`] looks
    /// up, for copies of it at other instruction sets.
    pub(crate) fn weight_table(&self) -> &[u32] {
        &self.weight_table
    }

    /// A sum of weights kept to `sum_bits` significant bits (truncated), as
    /// [`Self::deferred_weights`] returns it.
    #[inline(always)]
    pub(crate) fn kept_sum(&self, sum: u64) -> u64 {
        let len = 64 - sum.leading_zeros();
        let shift = len.saturating_sub(self.sum_bits);
        (sum >> shift) << shift
    }

    /// Fractional bits of the probabilities (per-key) or mantissa bits (deferred).
    pub fn prob_bits(&self) -> u32 {
        self.prob_bits
    }
}

/// Rounds `x` to its `bits` most significant bits, half up (the value stays exact in a
/// `bits`-bit mantissa and a shift).
#[inline(always)]
pub fn round_to_bits(x: u64, bits: u32) -> u64 {
    let len = 64 - x.leading_zeros();
    if len <= bits {
        return x;
    }
    let s = len - bits;
    ((x + (1u64 << (s - 1))) >> s) << s
}

/// Float softmax (max-subtracted), written to `out`; used by the float recompute mode and
/// as the reference of the fixed-point unit.
#[inline(always)]
pub fn softmax_f32(logits: &[f32], out: &mut Vec<f32>) {
    out.clear();
    let Some(max) = logits.iter().copied().reduce(f32::max) else {
        return;
    };
    out.extend(logits.iter().map(|&x| (x - max).exp()));
    let sum: f32 = out.iter().sum();
    let inv = 1.0 / sum;
    out.iter_mut().for_each(|p| *p *= inv);
}

/// `exp(x)` for `x <= 0` in f32 by range reduction and a degree-6 polynomial, written so
/// that the compiler vectorises loops over it (no library call): relative error below
/// `3e-7` on `[-87, 0]`; inputs below `-87.3` (and `-inf`) give about `1e-38`, not 0.
#[inline(always)]
pub fn exp_nonpositive(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Round to nearest (ties to even) by the 1.5 * 2^23 trick.
    const MAGIC: f32 = 12_582_912.0;
    let x = x.max(-87.3);
    let n = (x * LOG2E + MAGIC) - MAGIC;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    p * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// `sum_j exp(x_j - max)` for `max >= x_j`, with [`exp_nonpositive`] over lanes of 8 summed
/// in a fixed order (the same result on every machine and thread count).
#[inline(always)]
pub fn exp_sum_f32(xs: &[f32], max: f32) -> f32 {
    let mut lanes = [0f32; 8];
    let chunks = xs.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for (l, &x) in lanes.iter_mut().zip(c) {
            *l += exp_nonpositive(x - max);
        }
    }
    let mut s = lanes.iter().sum::<f32>();
    for &x in tail {
        s += exp_nonpositive(x - max);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(scores: &[i32], frac: u32) -> Vec<f64> {
        let x: Vec<f64> = scores
            .iter()
            .map(|&s| f64::from(s) / f64::from(1u32 << frac))
            .collect();
        let m = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = x.iter().map(|v| (v - m).exp()).collect();
        let s: f64 = e.iter().sum();
        e.iter().map(|v| v / s).collect()
    }

    #[test]
    fn fast_exp_is_close_to_exp_over_its_range() {
        let mut worst = 0.0f64;
        for i in 0..=87_000 {
            let x = -(i as f32) * 0.001 - 0.000_37 * (i % 7) as f32;
            let got = f64::from(exp_nonpositive(x));
            let want = f64::from(x).exp();
            worst = worst.max((got / want - 1.0).abs());
        }
        assert!(worst < 3e-7, "worst relative error {worst}");
        assert!(exp_nonpositive(f32::NEG_INFINITY) < 1e-37);
        assert_eq!(exp_nonpositive(0.0), 1.0);
        let xs: Vec<f32> = (0..1001).map(|i| (i as f32 * 0.37).sin() * 3.0).collect();
        let mx = xs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let want: f64 = xs.iter().map(|&x| f64::from(x - mx).exp()).sum();
        let got = f64::from(exp_sum_f32(&xs, mx));
        assert!((got / want - 1.0).abs() < 1e-6, "{got} vs {want}");
    }

    #[test]
    fn exp_code_matches_exp() {
        let q = QuantConfig::default();
        let sm = FixedSoftmax::new(&q);
        for u in [0u32, 1, 63, 64, 65, 500, 1000, 4095, 8191] {
            let exact = (-(f64::from(u)) / 128.0).exp();
            let got = sm.exp_code(u) as f64 / 65536.0;
            assert!(
                (got - exact).abs() <= 3.0 / 65536.0,
                "u={u}: {got} vs {exact}"
            );
        }
    }

    #[test]
    fn mantissa_rounding() {
        assert_eq!(round_to_bits(255, 8), 255);
        assert_eq!(round_to_bits(256, 8), 256);
        assert_eq!(round_to_bits(257, 8), 258);
        assert_eq!(round_to_bits(65535, 8), 65536);
        assert_eq!(round_to_bits(0x1_2345, 8), 0x1_2400);
        for x in 1u64..100_000 {
            let r = round_to_bits(x, 8);
            assert!(
                (r as f64 / x as f64 - 1.0).abs() <= 1.0 / 256.0,
                "{x} -> {r}"
            );
        }
    }

    #[test]
    fn deferred_weights_relative_error_independent_of_length() {
        let q = QuantConfig::default();
        let sm = FixedSoftmax::new(&q);
        let mut w = Vec::new();
        let mut state = 7u64;
        for n in [1usize, 16, 600, 1500, 8192] {
            let scores: Vec<i32> = (0..n)
                .map(|_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    ((state >> 33) % 512) as i32 - 256
                })
                .collect();
            let sum = sm.deferred_weights(&scores, &mut w);
            let r = reference(&scores, q.score_frac_bits);
            let total: f64 = w.iter().map(|&x| x as f64 / sum as f64).sum();
            assert!(
                (total - 1.0).abs() < 2.0 * 2f64.powi(-15),
                "n={n}: mass {total}"
            );
            for (x, pr) in w.iter().zip(&r) {
                let p = *x as f64 / sum as f64;
                let bound = pr * (2.0 / 256.0 + 2f64.powi(-15))
                    + 3.0 * 2f64.powi(-16) / (sum as f64 / 65536.0);
                assert!((p - pr).abs() <= bound, "n={n}: {p} vs {pr}");
            }
        }
    }

    #[test]
    fn fixed_softmax_within_documented_bound() {
        let q = QuantConfig::default();
        let sm = FixedSoftmax::new(&q);
        let p_one = f64::from(1u32 << q.prob_bits);
        let mut state = 12345u64;
        let (mut exps, mut probs) = (Vec::new(), Vec::new());
        for n in [1usize, 2, 3, 10, 100, 1000, 4096] {
            let scores: Vec<i32> = (0..n)
                .map(|_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    ((state >> 33) % 4096) as i32 - 2048
                })
                .collect();
            sm.probabilities(&scores, &mut exps, &mut probs);
            let r = reference(&scores, q.score_frac_bits);
            for (p, pr) in probs.iter().zip(&r) {
                let got = f64::from(*p) / p_one;
                let bound = 0.5 / p_one
                    + pr * (2f64.powi(-(q.sum_bits as i32 - 1))
                        + 3.0 * 2f64.powi(-(q.exp_bits as i32 - 1)));
                assert!(
                    (got - pr).abs() <= bound,
                    "n={n}: {got} vs {pr} (bound {bound})"
                );
            }
        }
    }
}
