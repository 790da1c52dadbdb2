//! The V-PU of a CORELET: the weighted sum of the kept values (8b x 8b products) and the
//! signed `output_bits`-bit output, for both softmax organisations (see [`crate::softmax`]).
//!
//! Products and sums of integers are exact in the float types used here (f32 below 2^24 for
//! the per-key datapath, f64 below 2^53 for the deferred one), so these functions compute the
//! integer datapath bit for bit.

/// Fractional bits of the deferred output code in V steps: `output_bits - 8`, so that the
/// largest convex combination of 8-bit values (127) fits the signed output.
pub fn deferred_output_frac_bits(output_bits: u32) -> u32 {
    output_bits - 8
}

/// Keys whose products are summed in 32-bit lanes before the 64-bit accumulator takes them:
/// `|w v| < 2^24` (weights are at most 2^17), so 128 of them stay below 2^31.
const KEYS_PER_I32_CHUNK: usize = 128;

/// Deferred normalisation: `acc = sum_j w_j v_j` over `keys` in integers (exact; 32-bit
/// partial sums of 128 keys folded into 64-bit accumulators), then each output element is
/// `round(acc * 2^F / sum)` (half away from zero), saturated to `output_bits` signed bits and
/// written to `dst` in real units (`v_scale / 2^F` per step). Returns the number of saturated
/// elements. `v8` holds every key's value codes, `d` per key; `acc32`/`acc` are scratch of
/// length `d`. Weights must be below 2^17.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub fn deferred(
    keys: &[u32],
    weights: &[u32],
    sum: u64,
    v8: &[i8],
    v_scale: f32,
    output_bits: u32,
    acc32: &mut [i32],
    acc: &mut [i64],
    dst: &mut [f32],
) -> u64 {
    let d = dst.len();
    acc.fill(0);
    // AVX-512 VNNI: four keys per instruction; elsewhere the common head widths get a copy
    // whose accumulators live in registers.
    if crate::vnni::vpu_available(d) {
        crate::vnni::vpu_accumulate(keys, weights, v8, acc);
    } else {
        accumulate_any(keys, weights, v8, acc32, acc);
    }
    let frac = deferred_output_frac_bits(output_bits);
    let scale = f64::from(1u32 << frac) / sum as f64;
    let hi = ((1i64 << (output_bits - 1)) - 1) as f64;
    let unit = v_scale / (1u32 << frac) as f32;
    let mut saturated = 0u64;
    for (o, &a) in dst.iter_mut().zip(acc.iter()) {
        // |acc| < 2^17 * 127 * n < 2^53: exact in f64.
        let x = a as f64 * scale;
        let code = (x + 0.5f64.copysign(x)).trunc();
        let clamped = code.clamp(-hi - 1.0, hi);
        saturated += u64::from(clamped != code);
        *o = clamped as f32 * unit;
    }
    saturated
}

/// `acc += sum_j w_j v_j` over `keys`, with a register copy for the common head widths.
#[inline(always)]
fn accumulate_any(keys: &[u32], weights: &[u32], v8: &[i8], acc32: &mut [i32], acc: &mut [i64]) {
    match acc.len() {
        32 => accumulate_fixed::<32>(keys, weights, v8, acc),
        64 => accumulate_fixed::<64>(keys, weights, v8, acc),
        128 => accumulate_fixed::<128>(keys, weights, v8, acc),
        _ => accumulate(keys, weights, v8, acc32, acc),
    }
}

/// `acc += sum_j w_j v_j` over `keys` for any head width `d = acc.len()` (`acc32` is scratch
/// of the same length).
#[inline(always)]
fn accumulate(keys: &[u32], weights: &[u32], v8: &[i8], acc32: &mut [i32], acc: &mut [i64]) {
    let d = acc.len();
    for (kc, wc) in keys
        .chunks(KEYS_PER_I32_CHUNK)
        .zip(weights.chunks(KEYS_PER_I32_CHUNK))
    {
        acc32.fill(0);
        for (&j, &w) in kc.iter().zip(wc) {
            debug_assert!(w <= 1 << 17);
            if w == 0 {
                continue;
            }
            let j = j as usize;
            for (a, &x) in acc32.iter_mut().zip(&v8[j * d..(j + 1) * d]) {
                *a += w as i32 * i32::from(x);
            }
        }
        for (a, &p) in acc.iter_mut().zip(acc32.iter()) {
            *a += i64::from(p);
        }
    }
}

/// [`accumulate`] for a head width known at compile time: the 32-bit partial sums stay in
/// vector registers across the keys.
#[inline(always)]
fn accumulate_fixed<const D: usize>(keys: &[u32], weights: &[u32], v8: &[i8], acc: &mut [i64]) {
    for (kc, wc) in keys
        .chunks(KEYS_PER_I32_CHUNK)
        .zip(weights.chunks(KEYS_PER_I32_CHUNK))
    {
        let mut acc32 = [0i32; D];
        for (&j, &w) in kc.iter().zip(wc) {
            debug_assert!(w <= 1 << 17);
            if w == 0 {
                continue;
            }
            let j = j as usize;
            let row: &[i8; D] = v8[j * D..(j + 1) * D]
                .try_into()
                .expect("a value row of D codes");
            for l in 0..D {
                acc32[l] += w as i32 * i32::from(row[l]);
            }
        }
        for (a, &p) in acc.iter_mut().zip(acc32.iter()) {
            *a += i64::from(p);
        }
    }
}

/// The literal per-key datapath: `acc = sum_j p_j v_j` with `p_j` probability codes of
/// `prob_bits` fractional bits, the low bits that do not fit the `output_bits` output dropped
/// (round half up) and the result saturated; written to `dst` in real units. Returns the
/// number of saturated elements. `v8` holds every key's value codes, `d` per key.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub fn per_key(
    keys: &[u32],
    probs: &[u32],
    prob_bits: u32,
    v8: &[f32],
    v_scale: f32,
    output_bits: u32,
    acc: &mut [f32],
    dst: &mut [f32],
) -> u64 {
    let d = dst.len();
    acc.fill(0.0);
    // Integer products and sums below 2^24 are exact in f32 (|sum| <= (2^P + n/2) * 127).
    for (&j, &p) in keys.iter().zip(probs) {
        let p = p as f32;
        let j = j as usize;
        for (a, &x) in acc.iter_mut().zip(&v8[j * d..(j + 1) * d]) {
            *a += p * x;
        }
    }
    // |acc| < 2^(P+7) + n * 64: drop the low bits that do not fit the W-bit output, round half
    // up, and saturate.
    let shift = (prob_bits + 8).saturating_sub(output_bits);
    let hi = (1i64 << (output_bits - 1)) - 1;
    let unit = v_scale * (2f32).powi(shift as i32 - prob_bits as i32);
    let mut saturated = 0u64;
    for (o, &a) in dst.iter_mut().zip(acc.iter()) {
        let a = a as i64;
        let code = if shift == 0 {
            a
        } else {
            (a + (1i64 << (shift - 1))) >> shift
        };
        let clamped = code.clamp(-hi - 1, hi);
        saturated += u64::from(clamped != code);
        *o = clamped as f32 * unit;
    }
    saturated
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deferred_is_the_weighted_mean() {
        // Two keys, weights 3 and 1: (3 * 100 + 1 * -20) / 4 = 70 V steps.
        let v8 = [100i8, -20];
        let (mut acc32, mut acc) = ([0i32; 1], [0i64; 1]);
        let mut out = [0f32; 1];
        let sat = deferred(
            &[0, 1],
            &[3, 1],
            4,
            &v8,
            0.5,
            16,
            &mut acc32,
            &mut acc,
            &mut out,
        );
        assert_eq!(sat, 0);
        assert_eq!(out[0], 35.0);
        // A sum truncated below the true one scales up and saturates an 8-bit output.
        let sat = deferred(
            &[0],
            &[1 << 16],
            1 << 15,
            &[127],
            1.0,
            8,
            &mut acc32,
            &mut acc,
            &mut out,
        );
        assert_eq!(sat, 1);
        assert_eq!(out[0], 127.0);
        // Many keys at the largest weight and value: exact past the 32-bit chunk.
        let n = 1000;
        let keys: Vec<u32> = (0..n as u32).collect();
        let sat = deferred(
            &keys,
            &vec![1 << 16; n],
            (n as u64) << 16,
            &vec![-127i8; n],
            1.0,
            16,
            &mut acc32,
            &mut acc,
            &mut out,
        );
        assert_eq!(sat, 0);
        assert_eq!(out[0], -127.0);
    }
}
