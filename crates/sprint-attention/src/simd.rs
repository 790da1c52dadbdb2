//! Runtime CPU-feature dispatch of the per-query datapath.
//!
//! The binary targets baseline x86-64 (SSE2), which left the per-key loops (V-PU, comparator,
//! audit, softmax look-ups) unvectorised beyond 128 bits. The block's row loop is compiled a
//! second and third time with AVX2 + FMA and with AVX-512 enabled, and the best one the CPU
//! supports runs. Every routine is integer or IEEE-exact in the same order of operations
//! (no fast-math, no contraction), so the three copies give bit-identical results.
#![allow(unsafe_code)]

use crate::block::{BlockOut, BlockScores, Scratch, run_rows};
#[cfg(target_arch = "x86_64")]
use crate::compact::Avx512;
use crate::compact::Scalar;
use crate::engine::HeadCtx;

/// The instruction sets a block can run with, narrowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Level {
    Baseline,
    Avx2,
    Avx512,
}

/// Environment variable that caps the instruction set (`baseline`, `avx2` or `avx512`), for
/// checking that every copy computes the same bits. `baseline` also keeps the score GEMMs off
/// the int8 kernels (their f32 fallback then runs).
pub const SIMD_CAP_ENV: &str = "SPRINT_SIMD";

/// The level the blocks run at: the widest the CPU has, capped by [`SIMD_CAP_ENV`].
pub(crate) fn level() -> Level {
    static LEVEL: std::sync::OnceLock<Level> = std::sync::OnceLock::new();
    *LEVEL.get_or_init(|| {
        let cap = match std::env::var(SIMD_CAP_ENV).as_deref() {
            Ok("baseline") => Level::Baseline,
            Ok("avx2") => Level::Avx2,
            _ => Level::Avx512,
        };
        detected().min(cap)
    })
}

/// The widest level the CPU supports.
fn detected() -> Level {
    {
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx512f")
                && std::is_x86_feature_detected!("avx512bw")
                && std::is_x86_feature_detected!("avx512vl")
                && std::is_x86_feature_detected!("avx512dq")
                && std::is_x86_feature_detected!("avx2")
                && std::is_x86_feature_detected!("fma")
                && std::is_x86_feature_detected!("bmi2")
                && std::is_x86_feature_detected!("lzcnt")
            {
                return Level::Avx512;
            }
            if std::is_x86_feature_detected!("avx2")
                && std::is_x86_feature_detected!("fma")
                && std::is_x86_feature_detected!("bmi2")
                && std::is_x86_feature_detected!("lzcnt")
            {
                return Level::Avx2;
            }
        }
        Level::Baseline
    }
}

/// Runs the per-query phases of a block with the widest instruction set available.
pub(crate) fn run_rows_dispatch(
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
