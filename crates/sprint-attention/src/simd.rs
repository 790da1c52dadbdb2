//! A block of queries through the datapath ([`run_block`]), with runtime CPU-feature
//! dispatch of its per-query phases.
//!
//! The binary targets baseline x86-64 (SSE2), which left the per-key loops (V-PU, comparator,
//! audit, softmax look-ups) unvectorised beyond 128 bits. The block's row loop is compiled a
//! second and third time with AVX2 + FMA and with AVX-512 enabled, and the best one the CPU
//! supports runs. Every routine is integer or IEEE-exact in the same order of operations
//! (no fast-math, no contraction), so the three copies give bit-identical results.
#![allow(unsafe_code)]

use crate::block::{
    BlockOut, BlockScores, ROW_SCRATCH, SCORE_BUFFERS, Scratch, run_rows, score_block,
};
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

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,bmi1,bmi2,lzcnt,popcnt")]
fn quantize_avx512(x: &[f32], scale: f32, out: &mut [i8]) {
    crate::quant::quantize_into(x, scale, out);
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
