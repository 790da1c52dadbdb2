//! The score phases of a block of queries: the in-memory scores of every key (a crossbar read
//! per query) and the exact scores, into per-thread matrices, and the decisions the GEMMs can
//! make in registers (the noiseless comparator, the audit's exact compares) as bits.

use sprint_core::config::{RecomputeMode, Variant};
use sprint_core::visibility::visible_limit;

use crate::comparator::Comparator;
use crate::gemm::matmul_nt;
use crate::head::{HeadCtx, QUERY_BLOCK, needs_all_exact_scores};
use crate::int8_gemm;
use crate::kernels::dot_i16;
use crate::noise::{Purpose, stream_key};

/// The score matrices of a block (`rows x n_keys`, row-major), reused per thread. Each is
/// empty when the block's variant and mode do not need it.
#[derive(Default)]
pub(crate) struct BlockScores {
    /// In-memory scores in steps from an ideal crossbar (int8 GEMM).
    pub approx_int: ScoreMatrix<i32>,
    /// In-memory scores in steps from a crossbar with cell non-idealities (f32 GEMM).
    pub approx_f32: ScoreMatrix<f32>,
    /// Fixed point: exact integer scores `q8 . k8` of every key.
    pub exact_int: ScoreMatrix<i32>,
    /// Fixed point: the recompute's integer scores against the stuck-at read-back of K.
    pub recompute_int: ScoreMatrix<i32>,
    /// Float mode: exact logits `q . k / sqrt(d)` of every key.
    pub exact_f32: ScoreMatrix<f32>,
    /// Staging for the f32 GEMM fallback of the integer scores.
    staging: ScoreMatrix<f32>,
    /// Columns (keys) of every matrix of the block: the first keys, as many as its queries
    /// may see (see [`block_columns`]); the rows' stride.
    pub cols: usize,
}

/// A block's score matrix whose storage outlives the block: it is sized once and never
/// zero-filled again, because every producer overwrites all of it. Empty means "not
/// computed for this block".
#[derive(Default)]
pub(crate) struct ScoreMatrix<T> {
    buf: Vec<T>,
    len: usize,
}

impl<T: Copy + Default> ScoreMatrix<T> {
    /// Marks the matrix as not computed.
    fn clear(&mut self) {
        self.len = 0;
    }

    /// Storage for `len` elements, every one of which the caller must overwrite.
    fn for_overwrite(&mut self, len: usize) -> &mut [T] {
        if self.buf.len() < len {
            self.buf.resize(len, T::default());
        }
        self.len = len;
        &mut self.buf[..len]
    }

    /// The computed elements (empty when not computed).
    pub(crate) fn as_slice(&self) -> &[T] {
        &self.buf[..self.len]
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Phase: the in-memory scores (steps of `q_dac . K_MSB`) of the whole block, one crossbar
/// read per query: integer when the crossbar is ideal, f32 from the programmed weights
/// otherwise; nothing for the variants that score on chip.
fn score_in_memory(ctx: &HeadCtx, rows: &std::ops::Range<usize>, sc: &mut BlockScores) {
    sc.approx_int.clear();
    sc.approx_f32.clear();
    let Some(xb) = &ctx.kv.crossbar else {
        return;
    };
    let (n, d, m) = (sc.cols, ctx.shape.head_dim, rows.len());
    if let Some(packed) = &ctx.kv.k_msb_packed {
        let q = &ctx.qh.q_dac_u8[rows.start * d..rows.end * d];
        int8_gemm::scores_cols(
            q,
            &ZERO_POINTS[..m],
            packed,
            n,
            sc.approx_int.for_overwrite(m * n),
        );
    } else {
        let q = &ctx.qh.q_dac[rows.start * d..rows.end * d];
        let w = &xb.weights[..n * d];
        matmul_nt(q, w, sc.approx_f32.for_overwrite(m * n), m, n, d);
    }
}

/// Zero points of the int8 GEMMs' left operands (`code + 128`), one per block row.
static ZERO_POINTS: [u8; QUERY_BLOCK] = [128; QUERY_BLOCK];

/// Exact integer scores of the block's queries against the first `n` of one set of keys
/// (`n x` the rows into the matrix given with it): the int8 GEMM when its kernel is exact,
/// else an f32 GEMM of exact small integers, else integer dots.
fn integer_scores(
    ctx: &HeadCtx,
    rows: &std::ops::Range<usize>,
    packed: Option<&int8_gemm::PackedKeys>,
    keys_f32: &[f32],
    keys_i16: &[i16],
    staging: &mut ScoreMatrix<f32>,
    (n, out): (usize, &mut ScoreMatrix<i32>),
) {
    let (d, m) = (ctx.shape.head_dim, rows.len());
    let out = out.for_overwrite(m * n);
    if let Some(packed) = packed {
        let q = &ctx.qh.q8_u8[rows.start * d..rows.end * d];
        int8_gemm::scores_cols(q, &ZERO_POINTS[..m], packed, n, out);
        return;
    }
    if !keys_f32.is_empty() {
        // Exact: integer products and sums below 2^24.
        let staging = staging.for_overwrite(m * n);
        let q = &ctx.qh.q8_f32[rows.start * d..rows.end * d];
        matmul_nt(q, &keys_f32[..n * d], staging, m, n, d);
        out.iter_mut()
            .zip(staging.iter())
            .for_each(|(o, &x)| *o = x as i32);
    } else {
        // Too wide for exact f32 sums and no exact int8 kernel: integer dots.
        for (r, i) in rows.clone().enumerate() {
            let q8 = &ctx.qh.q8[i * d..(i + 1) * d];
            for j in 0..n {
                out[r * n + j] = dot_i16(q8, &keys_i16[j * d..(j + 1) * d]);
            }
        }
    }
}

/// Phase: the exact scores of every key for the block. Fixed point: integer `q8 . k8` (for
/// runtime pruning, dense, the audit and the recompute) and, with stuck-at cells, the
/// recompute's `q8 . k_read_back`; float mode: logits `q . k / sqrt(d)` (for the variants
/// that score on chip and the audit).
fn exact_scores(ctx: &HeadCtx, rows: &std::ops::Range<usize>, sc: &mut BlockScores) {
    let (n, d, m) = (sc.cols, ctx.shape.head_dim, rows.len());
    sc.exact_int.clear();
    sc.recompute_int.clear();
    sc.exact_f32.clear();
    let kv = ctx.kv;
    if ctx.cfg.recompute == RecomputeMode::Float {
        if needs_all_exact_scores(ctx.cfg) {
            let exact = sc.exact_f32.for_overwrite(m * n);
            let q = &ctx.q_f[rows.start * d..rows.end * d];
            matmul_nt(q, &ctx.k_f[..n * d], exact, m, n, d);
            let inv = 1.0 / (d as f32).sqrt();
            exact.iter_mut().for_each(|x| *x *= inv);
        }
        return;
    }
    let read_back = !kv.k_read_back.is_empty();
    let recomputes_true_keys = ctx.cfg.variant == Variant::Sprint && !read_back;
    if needs_all_exact_scores(ctx.cfg) || recomputes_true_keys {
        integer_scores(
            ctx,
            rows,
            kv.k8_packed.as_ref(),
            &kv.k8_f32,
            &kv.k8,
            &mut sc.staging,
            (n, &mut sc.exact_int),
        );
    }
    if ctx.cfg.variant == Variant::Sprint && read_back {
        integer_scores(
            ctx,
            rows,
            kv.k_read_back_packed.as_ref(),
            &kv.k_read_back_f32,
            &kv.k_read_back,
            &mut sc.staging,
            (n, &mut sc.recompute_int),
        );
    }
}

/// The comparators of query `i`'s read.
#[inline(always)]
pub(crate) fn comparator(ctx: &HeadCtx, i: usize) -> Comparator {
    let (seed, layer, head) = ctx.noise_seed;
    Comparator {
        threshold: ctx.comparator_threshold - ctx.qh.lsb_correction[i],
        read_sigma: ctx.read_sigma,
        tail_sigmas: f64::from(ctx.cfg.noise.tail_sigmas),
        noise_key: stream_key(seed, Purpose::Read, layer, head, i),
    }
}

/// Phases 1 and 2 of rows `rows` of one head: the in-memory scores and the exact scores.
pub(crate) fn score_block(ctx: &HeadCtx, rows: &std::ops::Range<usize>, sc: &mut BlockScores) {
    sc.cols = block_columns(ctx, rows);
    score_in_memory(ctx, rows, sc);
    exact_scores(ctx, rows, sc);
}

/// The keys the score matrices of block `rows` cover: all of them, except in causal heads
/// whose scores are integers from one GEMM or dot products per key (the in-memory scores of an
/// ideal crossbar, fixed-point recompute), where the first keys the block's last query sees,
/// rounded up to a packed prefix. Those integer scores do not depend on how many columns a
/// product has; float GEMMs might, so they keep every column.
fn block_columns(ctx: &HeadCtx, rows: &std::ops::Range<usize>) -> usize {
    let s = ctx.shape;
    let kv = ctx.kv;
    let float_scores = ctx.cfg.recompute == RecomputeMode::Float
        || (kv.crossbar.is_some() && kv.k_msb_packed.is_none());
    if !ctx.cfg.causal || float_scores || rows.is_empty() {
        return s.n_keys;
    }
    let need = visible_limit(rows.end - 1, s.n_queries, s.n_keys, true);
    let packed = kv.k_msb_packed.as_ref().or(kv.k8_packed.as_ref());
    packed.map_or(need, |p| p.columns_for(need))
}

/// The exact-score threshold as an integer: scores `>= exact_min` (an integer or +-inf in
/// f32) are exactly those `>=` this.
#[inline(always)]
pub(crate) fn exact_min_int(exact_min: f32) -> i32 {
    if exact_min == f32::NEG_INFINITY {
        i32::MIN
    } else if exact_min == f32::INFINITY {
        i32::MAX
    } else {
        exact_min as i32
    }
}
