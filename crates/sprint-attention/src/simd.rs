//! A block of queries through the datapath ([`run_block`]), with runtime CPU-feature
//! dispatch of its per-query phases.
//!
//! The binary targets baseline x86-64 (SSE2), which left the per-key loops (V-PU, comparator,
//! audit, softmax look-ups) unvectorised beyond 128 bits. The block's row loop is compiled a
//! second and third time with AVX2 + FMA and with AVX-512 enabled, and the best one the CPU
//! supports runs. Every routine is integer or IEEE-exact in the same order of operations
//! (no fast-math, no contraction), so the three copies give bit-identical results.
#![allow(unsafe_code)]

use crate::block::{BlockOut, ROW_SCRATCH, SCORE_BUFFERS, Scratch, run_rows};
use crate::block_scores::{BlockScores, score_block};
#[cfg(target_arch = "x86_64")]
use crate::compact::Avx512;
use crate::compact::Scalar;
use crate::head::HeadCtx;
use crate::isa::{Level, level};

/// Runs query rows `rows` of one head: their scores, then their per-query phases at the
/// widest instruction set available.
pub(crate) fn run_block(ctx: &HeadCtx, rows: std::ops::Range<usize>) -> BlockOut {
    // The buffers leave the thread-locals for the call and go back after it: a GEMM inside
    // may wait on rayon, whose worker then runs another block on this same thread (work
    // stealing); that block finds empty buffers instead of a cell already borrowed. The
    // buffers are scratch (every element read is written first), so which ones a block gets
    // does not change its result.
    let mut sc = SCORE_BUFFERS.with(std::cell::RefCell::take);
    let mut scratch = ROW_SCRATCH.with(std::cell::RefCell::take);
    score_block(ctx, &rows, &mut sc);
    let out = run_rows_dispatch(ctx, rows, &sc, &mut scratch);
    SCORE_BUFFERS.with(|b| b.replace(sc));
    ROW_SCRATCH.with(|b| b.replace(scratch));
    out
}

/// Runs the per-query phases of a block with the widest instruction set available.
fn run_rows_dispatch(
    ctx: &HeadCtx,
    rows: std::ops::Range<usize>,
    sc: &BlockScores,
    s: &mut Scratch,
) -> BlockOut {
    match level() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `level()` returned Avx512 only after detecting every enabled feature.
        Level::Avx512 => unsafe { rows_avx512(ctx, rows, sc, s) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `level()` returned Avx2 only after detecting every enabled feature.
        Level::Avx2 => unsafe { rows_avx2(ctx, rows, sc, s) },
        _ => run_rows::<Scalar>(ctx, rows, sc, s),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,bmi1,bmi2,lzcnt,popcnt")]
fn rows_avx512(
    ctx: &HeadCtx,
    rows: std::ops::Range<usize>,
    sc: &BlockScores,
    s: &mut Scratch,
) -> BlockOut {
    run_rows::<Avx512>(ctx, rows, sc, s)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,bmi1,bmi2,lzcnt,popcnt")]
fn rows_avx2(
    ctx: &HeadCtx,
    rows: std::ops::Range<usize>,
    sc: &BlockScores,
    s: &mut Scratch,
) -> BlockOut {
    run_rows::<Scalar>(ctx, rows, sc, s)
}

/// [`crate::quant::quantize`] at the widest instruction set available (the same codes: the
/// same IEEE operations in the same order).
pub(crate) fn quantize(x: &[f32], scale: f32) -> Vec<i8> {
    let mut out = vec![0i8; x.len()];
    debug_assert_eq!(out.len(), x.len());
    match level() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `level()` returned Avx512 only after detecting every enabled feature.
        Level::Avx512 => unsafe { quantize_avx512(x, scale, &mut out) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `level()` returned Avx2 only after detecting every enabled feature.
        Level::Avx2 => unsafe { quantize_avx2(x, scale, &mut out) },
        _ => crate::quant::quantize_into(x, scale, &mut out),
    }
    out
}

/// [`crate::quant::symmetric_scale`] at the widest instruction set available (the same
/// scale: a maximum does not depend on the order it is taken in).
pub(crate) fn symmetric_scale(x: &[f32]) -> f32 {
    let m = match level() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `level()` returned Avx512 only after detecting every enabled feature.
        Level::Avx512 => unsafe { max_abs_avx512(x) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `level()` returned Avx2 only after detecting every enabled feature.
        Level::Avx2 => unsafe { max_abs_avx2(x) },
        _ => crate::quant::max_abs(x),
    };
    crate::quant::scale_of_max(m)
}

/// [`crate::quant::quantize_into`] sixteen codes at a time with explicit vector conversions
/// (the compiler turns Rust's saturating float-to-integer cast into one scalar conversion per
/// element): the same f32 product, f64 rounding and clamp, NaN lanes set to code 0 as the
/// cast does; the tail goes through the scalar loop.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,bmi1,bmi2,lzcnt,popcnt")]
fn quantize_avx512(x: &[f32], scale: f32, out: &mut [i8]) {
    use std::arch::x86_64::*;
    let inv = 1.0 / scale;
    let chunks = x.len() / 16;
    let invv = _mm512_set1_ps(inv);
    let half = _mm512_set1_pd(0.5);
    let sign = _mm512_set1_pd(-0.0);
    let (lo, hi) = (_mm512_set1_pd(-127.75), _mm512_set1_pd(127.75));
    let codes = |y: __m512d| -> __m256i {
        // round half away: y + copysign(0.5, y); then clamp (max, then min) as `f64::clamp`
        // does for numbers, NaN lanes (unordered with themselves) zeroed like the cast.
        let r = _mm512_add_pd(y, _mm512_or_pd(half, _mm512_and_pd(y, sign)));
        let c = _mm512_min_pd(_mm512_max_pd(r, lo), hi);
        let ordered = _mm512_cmp_pd_mask::<_CMP_ORD_Q>(r, r);
        _mm512_maskz_cvttpd_epi32(ordered, c)
    };
    for i in 0..chunks {
        // SAFETY: elements 16i..16i+16 lie inside `x` and `out` (`out.len() == x.len()`).
        unsafe {
            let v = _mm512_mul_ps(_mm512_loadu_ps(x.as_ptr().add(16 * i)), invv);
            let a = codes(_mm512_cvtps_pd(_mm512_castps512_ps256(v)));
            let b = codes(_mm512_cvtps_pd(_mm256_castpd_ps(
                _mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)),
            )));
            let all = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(a), b);
            // Codes lie in [-127, 127]: truncating each lane to a byte keeps it.
            _mm_storeu_si128(
                out.as_mut_ptr().add(16 * i).cast::<__m128i>(),
                _mm512_cvtepi32_epi8(all),
            );
        }
    }
    let done = chunks * 16;
    crate::quant::quantize_into(&x[done..], scale, &mut out[done..]);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,bmi1,bmi2,lzcnt,popcnt")]
fn quantize_avx2(x: &[f32], scale: f32, out: &mut [i8]) {
    crate::quant::quantize_into(x, scale, out);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,bmi1,bmi2,lzcnt,popcnt")]
fn max_abs_avx512(x: &[f32]) -> f32 {
    crate::quant::max_abs(x)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,bmi1,bmi2,lzcnt,popcnt")]
fn max_abs_avx2(x: &[f32]) -> f32 {
    crate::quant::max_abs(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantize_matches_the_scalar_codes_on_special_values() {
        let mut x: Vec<f32> = vec![
            0.0,
            -0.0,
            0.5,
            -0.5,
            1.5,
            -1.5,
            126.5,
            -126.5,
            127.4,
            127.75,
            -127.76,
            1e30,
            -1e30,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            f32::MIN_POSITIVE,
            3.4e38,
        ];
        let mut state = 7u64;
        for _ in 0..1000 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            x.push(((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 300.0);
        }
        for scale in [1.0f32, 0.37, 1e-30, 3.0, f32::MIN_POSITIVE] {
            let mut want = vec![0i8; x.len()];
            crate::quant::quantize_into(&x, scale, &mut want);
            assert_eq!(quantize(&x, scale), want, "scale {scale}");
        }
    }
}
