//! One attention layer computed the way SPRINT does (SPRINT.md section 3), for any of the
//! four variants, with the per-query trace of which keys moved on chip.
//!
//! The layer runs in named phases ([`crate::layer`] runs them in order): [`prepare_kv_head`]
//! and [`prepare_q_head`] quantise every head (and program the crossbars); [`crate::block`]
//! runs fixed blocks of [`QUERY_BLOCK`] queries per head through
//! in-memory scoring, the comparator, the exact recompute, the softmax and the V-PU; then
//! [`assemble`] gathers the blocks and the locality engine serves each head's kept sets in
//! query order. Blocks run on the caller's rayon pool; every output element is produced by
//! the same code whatever the thread count, so results are bit-identical across 1 or many
//! threads.

use rayon::prelude::*;
use sprint_core::bits::{BitMatrix, BitVec, words_for};
use sprint_core::config::{AttentionConfig, RecomputeMode, ScaleSource};
use sprint_core::locality::{LocalityEngine, fill_locality};
use sprint_core::trace::{HeadStats, HeadTrace, QueryRecord};

use crate::block::BlockOut;
use crate::error::Result;
pub use crate::head::QUERY_BLOCK;
use crate::head::{HeadCtx, KEY_PREFIX_STEP, KvHead, QHead, quantize_score};
use crate::int8_gemm::{self, PackedKeys};
use crate::noise;
use crate::quant;
use crate::softmax::FixedSoftmax;
use crate::tensor::{AttentionInput, LayerShape, Tensor3};

/// Largest head dimension for which int8 x int8 dot products are exact in an f32 GEMM
/// (`128^2 * d <= 2^24`; keys read back through stuck cells reach -128).
pub(crate) const MAX_EXACT_GEMM_DIM: usize = (1 << 24) / (128 * 128);

/// Output of one layer.
#[derive(Clone, Debug)]
pub struct LayerRun {
    /// Attention output, `[heads, n_queries, head_dim]`, real units. Padding queries and
    /// queries whose every key was pruned get zeros.
    pub output: Tensor3,
    /// One trace per query head; empty when the run was asked for counts only
    /// ([`crate::Detail::Counts`]).
    pub heads: Vec<HeadTrace>,
    /// The counts of every query head (summed over its queries), with or without traces.
    pub counts: Vec<HeadCounts>,
    /// (query, key) pairs that were candidates: real queries x visible real keys.
    pub visible_pairs: u64,
}

/// What one query head of a layer run counts, summed over its queries: what a forward pass
/// records when nobody asked for the trace.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeadCounts {
    /// (query, key) pairs whose key moved on chip (the in-memory kept set), in pairs.
    pub kept: u64,
    /// Pairs whose key entered the softmax, in pairs.
    pub softmax_kept: u64,
    /// Keys newly fetched into the key buffer by the locality engine, in keys.
    pub k_fetched: u64,
    /// The datapath statistics (audit and saturation counts).
    pub stats: HeadStats,
}

impl HeadCounts {
    /// The counts of one head's trace.
    pub fn of_trace(h: &HeadTrace) -> Self {
        let mut c = Self {
            stats: h.stats,
            ..Self::default()
        };
        for r in &h.records {
            c.kept += u64::from(r.kept);
            c.softmax_kept += u64::from(r.softmax_kept);
            c.k_fetched += u64::from(r.k_fetched);
        }
        c
    }
}

pub(crate) fn scales_for(src: &ScaleSource, data: &[f32], head: usize, which: &str) -> Result<f32> {
    Ok(match src {
        ScaleSource::Dynamic => crate::simd::symmetric_scale(data),
        ScaleSource::Fixed { q, k, v } => {
            let s = match which {
                "q" => q,
                "k" => k,
                _ => v,
            };
            s.for_head(head, which)?
        }
    })
}

/// Bitline full scale in score steps: `d * 2^(query_dac_bits-1) * 2^(k_msb_bits-1)`.
pub fn full_scale_steps(head_dim: usize, query_dac_bits: u32, k_msb_bits: u32) -> f64 {
    head_dim as f64 * f64::from(1u32 << (query_dac_bits - 1)) * f64::from(1u32 << (k_msb_bits - 1))
}

/// The smallest `s` in `[lo, hi]` for which the monotone predicate `pred` (false, then true)
/// holds; `None` when it holds nowhere.
fn first_passing(lo: i64, hi: i64, pred: impl Fn(i64) -> bool) -> Option<i64> {
    if pred(lo) {
        return Some(lo);
    }
    if !pred(hi) {
        return None;
    }
    let (mut lo, mut hi) = (lo, hi);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if pred(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Some(hi)
}

/// A bound on the magnitude of an exact integer score `q8 . k` of a `d`-wide head (`k` may be
/// a stuck-at read-back, down to -128).
fn exact_score_bound(d: usize) -> i64 {
    128 * 128 * d as i64
}

/// The smallest exact integer score `s` (`q8 . k8`) whose fixed-point code reaches `th`
/// logits, as an f32 (exact); `-inf` when every score does, `+inf` when none does.
fn exact_min_fixed(cfg: &AttentionConfig, th: f32, unit: f64, d: usize) -> f32 {
    if th == f32::NEG_INFINITY {
        return f32::NEG_INFINITY;
    }
    let q = &cfg.quant;
    let hi = f64::from((1u32 << (q.score_bits - 1)) - 1);
    let scale = f64::from(1u32 << q.score_frac_bits);
    let th_code = f64::from(th) * scale;
    let passes = |s: i64| f64::from(quantize_score(s as f64 * unit, hi, scale).0) >= th_code;
    let bound = exact_score_bound(d);
    match first_passing(-bound, bound, passes) {
        Some(s) if s == -bound => f32::NEG_INFINITY,
        Some(s) => s as f32,
        None => f32::INFINITY,
    }
}

/// The exact integer scores whose fixed-point codes saturate: `(below, above)` such that a
/// score saturates exactly when it is `<= below` or `>= above` (`i32::MIN` / `i32::MAX` when
/// no score of the head's range does).
fn saturation_bounds(cfg: &AttentionConfig, unit: f64, d: usize) -> (i32, i32) {
    let q = &cfg.quant;
    let hi = f64::from((1u32 << (q.score_bits - 1)) - 1);
    let scale = f64::from(1u32 << q.score_frac_bits);
    // The rounded value before the clamp, as `quantize_score` computes it.
    let rounded = |s: i64| {
        let x = s as f64 * unit * scale;
        (x + 0.5f64.copysign(x)).trunc()
    };
    let bound = exact_score_bound(d);
    let above = first_passing(-bound, bound, |s| rounded(s) > hi).map_or(i32::MAX, |s| s as i32);
    let below = match first_passing(-bound, bound, |s| rounded(s) >= -hi - 1.0) {
        Some(s) if s == -bound => i32::MIN,
        Some(s) => (s - 1) as i32,
        None => bound as i32,
    };
    (below, above)
}

/// A head's keys in the form the exact-score GEMM takes: packed for the int8 kernels when
/// they are exact, else as f32 (exact small integers) when the head is narrow enough; neither
/// outside fixed point or for an empty key set.
struct ExactKeys {
    packed: Option<PackedKeys>,
    f32: Vec<f32>,
}

impl ExactKeys {
    /// `keys` (`n x d`) in the form the exact GEMM takes; packed prefixes every `step` keys.
    fn new(keys: &[i8], n: usize, d: usize, fixed: bool, step: usize) -> Self {
        let none = Self {
            packed: None,
            f32: Vec::new(),
        };
        if !fixed || keys.is_empty() {
            none
        } else if int8_gemm::exact_for(255, 128) {
            Self {
                packed: Some(PackedKeys::with_prefixes(keys, n, d, step)),
                f32: Vec::new(),
            }
        } else if d <= MAX_EXACT_GEMM_DIM {
            Self {
                packed: None,
                f32: keys.iter().map(|&x| f32::from(x)).collect(),
            }
        } else {
            none
        }
    }
}

/// What phase 1 derives from the configuration once for every head: which forms of the
/// codes the blocks will read (see `block::integer_scores`), the crossbar's full scale and
/// the query's DAC and `K_LSB` correction.
pub(crate) struct CodeForms {
    /// The variant scores in memory (a crossbar holds `K_MSB`).
    in_memory: bool,
    /// Fixed-point recompute.
    fixed: bool,
    /// The softmax normalises after the V-PU.
    deferred: bool,
    /// The in-memory scores come from the int8 GEMM on the ideal crossbar's levels.
    int8_crossbar: bool,
    /// Exact scores as integer dot products (heads too wide for the exact GEMMs).
    integer_dots: bool,
    /// Exact scores from the f32 GEMM on exact small integers.
    f32_exact_gemm: bool,
    /// Bitline full scale in score steps.
    full_scale: f64,
    /// Bits of `K_LSB`.
    lsb_bits: u32,
    /// The expected score of the unseen `K_LSB` bits per DAC query step (0 without bias
    /// correction).
    correction: f64,
    /// The DAC level of every 8-bit query code.
    dac_table: [i8; 256],
}

impl CodeForms {
    /// The forms for heads of width `d` under `cfg`.
    pub(crate) fn new(cfg: &AttentionConfig, d: usize) -> Self {
        let q = &cfg.quant;
        let in_memory = cfg.variant.prunes_in_memory();
        let fixed = cfg.recompute == RecomputeMode::FixedPoint;
        Self {
            in_memory,
            fixed,
            deferred: q.softmax_normalisation
                == sprint_core::config::SoftmaxNormalisation::Deferred,
            int8_crossbar: in_memory
                && cfg.noise.cells_ideal()
                && int8_gemm::exact_for(255, 1 << (q.k_msb_bits - 1)),
            integer_dots: fixed && !int8_gemm::exact_for(255, 128) && d > MAX_EXACT_GEMM_DIM,
            f32_exact_gemm: fixed && !int8_gemm::exact_for(255, 128) && d <= MAX_EXACT_GEMM_DIM,
            full_scale: full_scale_steps(d, q.query_dac_bits, q.k_msb_bits),
            lsb_bits: 8 - q.k_msb_bits,
            correction: match q.msb_bias_correction {
                sprint_core::config::MsbBiasCorrection::QuerySum => {
                    quant::lsb_mean_in_msb_steps(q.k_msb_bits)
                }
                sprint_core::config::MsbBiasCorrection::None => 0.0,
            },
            dac_table: quant::dac_table(q.query_dac_bits),
        }
    }
}

/// KV head `h`: K and V quantised, `K_MSB` programmed into the crossbar, and the forms of
/// the codes the blocks read.
pub(crate) fn prepare_kv_head(
    cfg: &AttentionConfig,
    layer: usize,
    shape: LayerShape,
    input: &AttentionInput,
    f: &CodeForms,
    h: usize,
) -> Result<KvHead> {
    let d = shape.head_dim;
    let q = &cfg.quant;
    let k = input.k.head(h);
    let v = input.v.head(h);
    let k_scale = scales_for(&q.scales, k, h, "k")?;
    let v_scale = scales_for(&q.scales, v, h, "v")?;
    // Causal blocks read only the first keys: packed prefixes let them multiply those alone.
    let step = if cfg.causal {
        KEY_PREFIX_STEP
    } else {
        shape.n_keys
    };
    let k8 = crate::simd::quantize(k, k_scale);
    let v8 = crate::simd::quantize(v, v_scale);
    let msb: Vec<i8> = if f.in_memory {
        k8.iter()
            .map(|&x| quant::split_key_bits(x, q.k_msb_bits).0)
            .collect()
    } else {
        Vec::new()
    };
    let crossbar = f.in_memory.then(|| {
        noise::program_crossbar(
            &msb,
            shape.n_keys,
            q.k_msb_bits,
            &cfg.noise,
            f.full_scale,
            cfg.seed,
            layer,
            h,
        )
    });
    let k_read_back: Vec<i8> = match &crossbar {
        Some(xb) if !xb.read_back.is_empty() && f.fixed => k8
            .iter()
            .zip(&xb.read_back)
            .map(|(&x, &m)| {
                let lsb = quant::split_key_bits(x, q.k_msb_bits).1;
                // MSB level << lsb_bits plus the LSBs stays within i8.
                ((i16::from(m) << f.lsb_bits) + i16::from(lsb)) as i8
            })
            .collect(),
        _ => Vec::new(),
    };
    let k_msb_packed = crossbar.as_ref().filter(|_| f.int8_crossbar).map(|_| {
        // Ideal cells: the weights are the programmed levels, `K_MSB` itself.
        PackedKeys::with_prefixes(&msb, shape.n_keys, d, step)
    });
    let exact = ExactKeys::new(&k8, shape.n_keys, d, f.fixed, step);
    let read_back = ExactKeys::new(&k_read_back, shape.n_keys, d, f.fixed, step);
    let widen = |x: &[i8]| -> Vec<i16> {
        if f.integer_dots {
            x.iter().map(|&v| i16::from(v)).collect()
        } else {
            Vec::new()
        }
    };
    Ok(KvHead {
        k_scale,
        v_scale,
        k8: widen(&k8),
        k8_f32: exact.f32,
        k8_packed: exact.packed,
        k_read_back: widen(&k_read_back),
        k_read_back_f32: read_back.f32,
        k_read_back_packed: read_back.packed,
        v8_f32: if f.fixed && !f.deferred {
            v8.iter().map(|&x| f32::from(x)).collect()
        } else {
            Vec::new()
        },
        v8: if f.fixed && f.deferred {
            v8
        } else {
            Vec::new()
        },
        crossbar,
        k_msb_packed,
    })
}

/// Query head `h`: Q quantised, its DAC levels with their `K_LSB` correction, and the forms
/// of the codes the blocks read.
pub(crate) fn prepare_q_head(
    cfg: &AttentionConfig,
    shape: LayerShape,
    input: &AttentionInput,
    f: &CodeForms,
    h: usize,
) -> Result<QHead> {
    let d = shape.head_dim;
    let q = &cfg.quant;
    let qf = input.q.head(h);
    let q_scale = scales_for(&q.scales, qf, h, "q")?;
    let q8 = crate::simd::quantize(qf, q_scale);
    let to_u8 = |x: &[i8]| -> Vec<u8> { x.iter().map(|&v| (i16::from(v) + 128) as u8).collect() };
    let (q_dac, q_dac_u8, lsb_correction) = if f.in_memory {
        let dac: Vec<i8> = q8.iter().map(|&x| f.dac_table[x as u8 as usize]).collect();
        let corr = dac
            .chunks_exact(d)
            .map(|row| f.correction * f64::from(row.iter().map(|&x| i32::from(x)).sum::<i32>()))
            .collect();
        let dac_f32 = if f.int8_crossbar {
            Vec::new()
        } else {
            dac.iter().map(|&x| f32::from(x)).collect()
        };
        let dac_u8 = if f.int8_crossbar {
            to_u8(&dac)
        } else {
            Vec::new()
        };
        (dac_f32, dac_u8, corr)
    } else {
        (Vec::new(), Vec::new(), Vec::new())
    };
    let q_abs_sum = if f.fixed {
        q8.chunks_exact(d)
            .map(|row| row.iter().map(|&x| u32::from(x.unsigned_abs())).sum())
            .collect()
    } else {
        Vec::new()
    };
    Ok(QHead {
        q_scale,
        q_abs_sum,
        q8_u8: if f.fixed && !f.f32_exact_gemm && !f.integer_dots {
            to_u8(&q8)
        } else {
            Vec::new()
        },
        q_dac_u8,
        q8: if f.integer_dots {
            q8.iter().map(|&x| i16::from(x)).collect()
        } else {
            Vec::new()
        },
        q8_f32: if f.f32_exact_gemm {
            q8.iter().map(|&x| f32::from(x)).collect()
        } else {
            Vec::new()
        },
        q_dac,
        lsb_correction,
    })
}

/// What every block of query head `h` reads: its prepared query head `qh`, its KV head
/// `kv`, the input's tensors (of `shape`) and masks, and the thresholds and bounds derived from `Th`
/// (`th`, logits) and `margin` (logits) at the head's scales.
#[allow(clippy::too_many_arguments)]
pub(crate) fn head_context<'a>(
    cfg: &'a AttentionConfig,
    (layer, h, th, margin): (usize, usize, f32, f32),
    shape: LayerShape,
    input: &'a AttentionInput,
    qh: &'a QHead,
    kv: &'a KvHead,
    key_valid: &'a BitVec,
    query_valid: &'a [bool],
    softmax: &'a FixedSoftmax,
) -> HeadCtx<'a> {
    let d = shape.head_dim;
    let kvh = shape.kv_head_of(h);
    let fixed = cfg.recompute == RecomputeMode::FixedPoint;
    let approx_unit = quant::approx_score_unit(
        cfg.quant.query_dac_bits,
        cfg.quant.k_msb_bits,
        qh.q_scale,
        kv.k_scale,
        d,
    );
    let exact_unit = quant::exact_score_unit(qh.q_scale, kv.k_scale, d);
    let full_scale = full_scale_steps(d, cfg.quant.query_dac_bits, cfg.quant.k_msb_bits);
    let sat = if fixed {
        saturation_bounds(cfg, exact_unit, d)
    } else {
        (i32::MIN, i32::MAX)
    };
    HeadCtx {
        cfg,
        shape,
        qh,
        kv,
        q_f: input.q.head(h),
        k_f: input.k.head(kvh),
        v_f: input.v.head(kvh),
        key_valid,
        query_valid,
        softmax,
        threshold: th,
        comparator_threshold: (f64::from(th) - f64::from(margin)) / approx_unit,
        read_sigma: f64::from(cfg.noise.read_sigma_fs) * full_scale,
        noise_seed: (cfg.seed, layer, h),
        exact_min: if fixed {
            exact_min_fixed(cfg, th, exact_unit, d)
        } else {
            th
        },
        sat_below: sat.0,
        sat_above: sat.1,
        approx_unit,
        exact_unit,
    }
}

/// The real keys of `input` as a bit vector (all of them without a `key_valid` mask).
pub(crate) fn key_valid_bits(input: &AttentionInput, shape: LayerShape) -> BitVec {
    match &input.key_valid {
        Some(m) => BitVec::from_indices(
            shape.n_keys,
            m.iter().enumerate().filter(|(_, v)| **v).map(|(i, _)| i),
        ),
        None => BitVec::ones(shape.n_keys),
    }
}

/// One layer of a peer design's variant ([`crate::peers`]). The thresholds `Th` (one per
/// query head) are LeOPArd's; Sanger, A3 and Energon have their own decision parameters in
/// `cfg.peers`.
pub(crate) fn run_peer_layer(
    cfg: &AttentionConfig,
    layer: usize,
    thresholds: &[f32],
    shape: LayerShape,
    input: &AttentionInput,
) -> LayerRun {
    let key_valid = key_valid_bits(input, shape);
    let all_valid = vec![true; shape.n_queries];
    let query_valid: &[bool] = input.query_valid.as_deref().unwrap_or(&all_valid);
    let blocks = match cfg.variant {
        sprint_core::config::Variant::Sanger => {
            crate::peers::sanger::run(&cfg.peers.sanger, cfg.causal, input, shape)
        }
        sprint_core::config::Variant::Leopard => {
            crate::peers::leopard::run(cfg.causal, thresholds, input, shape)
        }
        sprint_core::config::Variant::A3 => {
            crate::peers::a3::run(&cfg.peers.a3, cfg.causal, input, shape)
        }
        sprint_core::config::Variant::Energon => {
            crate::peers::energon::run(&cfg.peers.energon, cfg.causal, input, shape)
        }
        v => unreachable!("{} is not a peer variant", v.name()),
    };
    assemble(cfg, layer, shape, blocks, key_valid, query_valid)
}

/// Last phase: gathers the blocks into the output and one trace per head, and runs the
/// locality engine over each head's kept sets in query order.
pub(crate) fn assemble(
    cfg: &AttentionConfig,
    layer: usize,
    shape: LayerShape,
    blocks: Vec<(usize, BlockOut)>,
    key_valid: BitVec,
    query_valid: &[bool],
) -> LayerRun {
    let d = shape.head_dim;
    let mut output = Tensor3::zeros([shape.heads, shape.n_queries, d]);
    let mut masks: Vec<BitMatrix> = (0..shape.heads)
        .map(|_| BitMatrix::zeros(shape.n_queries, shape.n_keys))
        .collect();
    let mut records = vec![vec![QueryRecord::default(); shape.n_queries]; shape.heads];
    let mut stats = vec![HeadStats::default(); shape.heads];
    let mut visible_pairs = 0u64;
    let wpr = words_for(shape.n_keys);
    for (h, blk) in blocks {
        let out = output.head_mut(h);
        out[blk.rows.start * d..blk.rows.end * d].copy_from_slice(&blk.output);
        for (r, i) in blk.rows.clone().enumerate() {
            masks[h]
                .row_words_mut(i)
                .copy_from_slice(&blk.masks[r * wpr..(r + 1) * wpr]);
            records[h][i].kept = blk.kept[r];
            records[h][i].softmax_kept = blk.softmax_kept[r];
        }
        stats[h] += blk.stats;
        visible_pairs += blk.visible;
    }

    let k_cap = (cfg.buffer.k_bytes / d as u64) as usize;
    let v_cap = (cfg.buffer.v_bytes / d as u64) as usize;
    let query_valid_bits = BitVec::from_indices(
        shape.n_queries,
        query_valid
            .iter()
            .enumerate()
            .filter(|(_, v)| **v)
            .map(|(i, _)| i),
    );
    let heads: Vec<HeadTrace> = masks
        .into_par_iter()
        .zip(records)
        .zip(stats)
        .enumerate()
        .map(|(h, ((masks, mut records), stats))| {
            let mut engine =
                LocalityEngine::with_policy(shape.n_keys, k_cap, v_cap, cfg.buffer.locality);
            for (i, rec) in records.iter_mut().enumerate() {
                if !query_valid[i] {
                    continue;
                }
                let (k, v) = engine.step(masks.row_words(i));
                fill_locality(rec, k, v);
            }
            HeadTrace {
                layer: layer as u32,
                head: h as u32,
                kv_head: shape.kv_head_of(h) as u32,
                query_valid: query_valid_bits.clone(),
                key_valid: key_valid.clone(),
                masks,
                records,
                stats,
            }
        })
        .collect();

    LayerRun {
        output,
        counts: heads.iter().map(HeadCounts::of_trace).collect(),
        heads,
        visible_pairs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_min_matches_the_code_rule() {
        let cfg = AttentionConfig::default();
        let unit = 0.0013;
        for th in [-3.0f32, -0.01, 0.0, 0.37, 2.0, 15.99] {
            let m = exact_min_fixed(&cfg, th, unit, 64);
            let hi = f64::from((1u32 << 11) - 1);
            let code = |s: f32| quantize_score(f64::from(s) * unit, hi, 128.0).0;
            assert!(f64::from(code(m)) >= f64::from(th) * 128.0, "th {th}");
            assert!(f64::from(code(m - 1.0)) < f64::from(th) * 128.0, "th {th}");
        }
        assert_eq!(
            exact_min_fixed(&cfg, f32::NEG_INFINITY, unit, 64),
            f32::NEG_INFINITY
        );
        assert_eq!(exact_min_fixed(&cfg, 100.0, unit, 64), f32::INFINITY);
    }
}
