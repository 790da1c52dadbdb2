//! 8-bit symmetric quantisation, the K_MSB / K_LSB split, and the low-precision query
//! driven into the crossbar DACs.

/// Largest magnitude of an 8-bit symmetric code.
pub const INT8_MAX: f32 = 127.0;

/// Scale (real units per integer step) that maps `max |x|` to 127; 1.0 for an all-zero slice.
pub fn symmetric_scale(x: &[f32]) -> f32 {
    scale_of_max(max_abs(x))
}

/// The scale of [`symmetric_scale`] for a largest magnitude `m`.
#[inline(always)]
pub(crate) fn scale_of_max(m: f32) -> f32 {
    if m > 0.0 { m / INT8_MAX } else { 1.0 }
}

/// `max |x|` (0 for an empty slice; NaNs ignored), in sixteen lanes that vectorise: the
/// maximum of a set does not depend on the order it is taken in.
#[inline(always)]
pub(crate) fn max_abs(x: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 16];
    let chunks = x.chunks_exact(16);
    let tail = chunks.remainder();
    for c in chunks {
        for (m, v) in lanes.iter_mut().zip(c) {
            *m = m.max(v.abs());
        }
    }
    let m = lanes.iter().fold(0.0f32, |m, &v| m.max(v));
    tail.iter().fold(m, |m, v| m.max(v.abs()))
}

/// Quantises to int8 codes: `round(x / scale)` (half away from zero), clamped to [-127, 127].
pub fn quantize(x: &[f32], scale: f32) -> Vec<i8> {
    let mut out = vec![0i8; x.len()];
    quantize_into(x, scale, &mut out);
    out
}

/// [`quantize`] into `out` (as long as `x`), as a plain loop that vectorises.
#[inline(always)]
pub(crate) fn quantize_into(x: &[f32], scale: f32, out: &mut [i8]) {
    let inv = 1.0 / scale;
    for (o, &v) in out.iter_mut().zip(x) {
        // round_half_away(v * inv) clamped to +-127, branch-free: adding +-0.5 in f64 is
        // exact, and clamping before the truncating cast to +-127.75 truncates to the
        // same code (NaN casts to 0 either way).
        let y = f64::from(v * inv);
        *o = (y + 0.5f64.copysign(y)).clamp(-127.75, 127.75) as i32 as i8;
    }
}

/// Rounds half away from zero, like `f32::round`, without a libm call (values of interest
/// are far below 2^31).
pub fn round_half_away(x: f32) -> f32 {
    if x.abs() >= 8_388_608.0 {
        return x; // already an integer
    }
    // In f64 the addition is exact for every f32 below 2^29, so no double rounding.
    (f64::from(x) + 0.5f64.copysign(f64::from(x))) as i64 as f32
}

/// Splits an 8-bit key code into its signed high nibble and unsigned low nibble, so that
/// `k == 16 * msb + lsb` with `msb` in [-8, 7] and `lsb` in [0, 15] (the paper's 4 + 4 split).
pub fn split_key(k: i8) -> (i8, u8) {
    split_key_bits(k, 4)
}

/// Splits an 8-bit key code into a signed `msb_bits`-bit high part and an unsigned
/// `8 - msb_bits`-bit low part: `k == 2^(8 - msb_bits) * msb + lsb`, `msb` in
/// `[-2^(msb_bits-1), 2^(msb_bits-1) - 1]`, `lsb` in `[0, 2^(8 - msb_bits) - 1]`.
pub fn split_key_bits(k: i8, msb_bits: u32) -> (i8, u8) {
    debug_assert!((1..=8).contains(&msb_bits));
    let lsb_bits = 8 - msb_bits;
    let msb = k >> lsb_bits;
    let lsb = (k as u8) & ((1u16 << lsb_bits) - 1) as u8;
    (msb, lsb)
}

/// Mean of the unsigned `K_LSB` part, `(2^lsb_bits - 1) / 2`, as a fraction of one `K_MSB`
/// step (`2^lsb_bits`): the expected share of a step that a truncated score misses per
/// element. 0 when `msb_bits == 8`.
pub fn lsb_mean_in_msb_steps(msb_bits: u32) -> f64 {
    let lsb_bits = 8 - msb_bits;
    let step = f64::from(1u32 << lsb_bits);
    (step - 1.0) / (2.0 * step)
}

/// [`query_to_dac`] of every 8-bit code, indexed by `code as u8`.
pub fn dac_table(bits: u32) -> [i8; 256] {
    std::array::from_fn(|u| query_to_dac(u as u8 as i8, bits))
}

/// The query code driven into the DACs at `bits` bits: `round(q / 2^(8-bits))`, clamped to the
/// signed `bits`-bit range. Its weight relative to the 8-bit code is `2^(8-bits)`.
pub fn query_to_dac(q: i8, bits: u32) -> i8 {
    debug_assert!((1..=8).contains(&bits));
    if bits >= 8 {
        return q;
    }
    let step = (1i32 << (8 - bits)) as f32;
    let lo = -(1i32 << (bits - 1)) as f32;
    let hi = ((1i32 << (bits - 1)) - 1) as f32;
    round_half_away(f32::from(q) / step).clamp(lo, hi) as i8
}

/// Real-unit weight of one step of the in-memory score `q_dac . K_MSB`, in logits:
/// `2^(8 - query_dac_bits) * 2^(8 - k_msb_bits) * scale_q * scale_k / sqrt(d)`.
pub fn approx_score_unit(
    query_dac_bits: u32,
    k_msb_bits: u32,
    scale_q: f32,
    scale_k: f32,
    head_dim: usize,
) -> f64 {
    let q_step = f64::from(1u32 << (8 - query_dac_bits.min(8)));
    let k_step = f64::from(1u32 << (8 - k_msb_bits.min(8)));
    q_step * k_step * f64::from(scale_q) * f64::from(scale_k) / (head_dim as f64).sqrt()
}

/// Real-unit weight of one step of the exact integer score `q8 . k8`, in logits.
pub fn exact_score_unit(scale_q: f32, scale_k: f32, head_dim: usize) -> f64 {
    f64::from(scale_q) * f64::from(scale_k) / (head_dim as f64).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_exact_for_every_int8() {
        for k in i8::MIN..=i8::MAX {
            let (m, l) = split_key(k);
            assert!((-8..=7).contains(&m));
            assert!(l <= 15);
            assert_eq!(16 * i32::from(m) + i32::from(l), i32::from(k), "k = {k}");
        }
    }

    #[test]
    fn split_is_exact_for_every_width() {
        for bits in 1..=8u32 {
            for k in i8::MIN..=i8::MAX {
                let (m, l) = split_key_bits(k, bits);
                let lo = -(1i32 << (bits - 1));
                assert!(
                    (lo..-lo).contains(&i32::from(m)),
                    "bits {bits} k {k} msb {m}"
                );
                assert!(u32::from(l) < (1u32 << (8 - bits)));
                assert_eq!(
                    (1i32 << (8 - bits)) * i32::from(m) + i32::from(l),
                    i32::from(k),
                    "bits {bits} k {k}"
                );
            }
        }
        assert_eq!(lsb_mean_in_msb_steps(4), 15.0 / 32.0);
        assert_eq!(lsb_mean_in_msb_steps(8), 0.0);
    }

    #[test]
    fn rounding_matches_std() {
        for i in -4000..4000 {
            let x = i as f32 * 0.25 + 0.001 * (i % 3) as f32;
            assert_eq!(round_half_away(x), x.round(), "{x}");
        }
        assert_eq!(round_half_away(0.49999997), 0.0);
        assert_eq!(round_half_away(-2.5), -3.0);
    }

    #[test]
    fn dac_query_ranges() {
        assert_eq!(query_to_dac(127, 4), 7);
        assert_eq!(query_to_dac(-127, 4), -8);
        assert_eq!(query_to_dac(24, 4), 2); // 1.5 rounds away from zero
        assert_eq!(query_to_dac(-5, 8), -5);
        for q in -127i8..=127 {
            let d = query_to_dac(q, 1);
            assert!(d == -1 || d == 0, "{q} -> {d}");
        }
    }

    #[test]
    fn quantize_round_trip_within_half_step() {
        let x = [0.3f32, -1.7, 2.54, 0.0, -2.54];
        let s = symmetric_scale(&x);
        let q = quantize(&x, s);
        for (a, b) in x.iter().zip(&q) {
            assert!((a - f32::from(*b) * s).abs() <= 0.5 * s + 1e-6);
        }
        assert_eq!(q[2], 127);
        assert_eq!(q[4], -127);
    }
}
