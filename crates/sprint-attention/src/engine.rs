//! One attention layer computed the way SPRINT does (SPRINT.md section 3), for any of the
//! four variants, with the per-query trace of which keys moved on chip.
//!
//! Work is split into fixed blocks of [`QUERY_BLOCK`] queries per head and run on the
//! caller's rayon pool; every output element is produced by the same code whatever the
//! thread count, so results are bit-identical across 1 or many threads.

use rayon::prelude::*;
use sprint_core::bits::{BitMatrix, BitVec, iter_ones, words_for};
use sprint_core::config::{AttentionConfig, RecomputeMode, ScaleSource, Variant};
use sprint_core::trace::{HeadTrace, QueryRecord};

use crate::error::{Result, shape_error};
use crate::gemm::matmul_nt;
use crate::kernels::{axpy_f32, dot_f32, dot_i16};
use crate::locality::LocalityEngine;
use crate::noise::{self, Comparator, Crossbar, Purpose};
use crate::quant;
use crate::softmax::{FixedSoftmax, softmax_f32};
use crate::tensor::{AttentionInput, LayerShape, Tensor3};

/// Queries per work item.
pub const QUERY_BLOCK: usize = 64;

/// Largest head dimension for which int8 x int8 dot products are exact in an f32 GEMM
/// (`127^2 * d < 2^24`).
const MAX_EXACT_GEMM_DIM: usize = (1 << 24) / (127 * 127);

/// Output of one layer.
#[derive(Clone, Debug)]
pub struct LayerRun {
    /// Attention output, `[heads, n_queries, head_dim]`, real units. Padding queries and
    /// queries whose every key was pruned get zeros.
    pub output: Tensor3,
    /// One trace per query head.
    pub heads: Vec<HeadTrace>,
    /// (query, key) pairs that were candidates: real queries x visible real keys.
    pub visible_pairs: u64,
}

/// Per-KV-head data, shared by the query heads of a group.
struct KvHead {
    k_scale: f32,
    v_scale: f32,
    /// K codes widened to i16 for the exact dot products.
    k8: Vec<i16>,
    /// V codes as f32 (exact small integers) for the V-PU.
    v8_f32: Vec<f32>,
    /// `k8` as f32, for GEMM-scored variants in fixed point.
    k8_f32: Vec<f32>,
    crossbar: Option<Crossbar>,
}

/// Per-query-head data.
struct QHead {
    q_scale: f32,
    q8: Vec<i16>,
    q8_f32: Vec<f32>,
    q_dac: Vec<f32>,
}

/// Everything a block needs about its head.
struct HeadCtx<'a> {
    cfg: &'a AttentionConfig,
    shape: LayerShape,
    layer: usize,
    head: usize,
    qh: &'a QHead,
    kv: &'a KvHead,
    q_f: &'a [f32],
    k_f: &'a [f32],
    v_f: &'a [f32],
    key_valid: &'a BitVec,
    query_valid: &'a [bool],
    softmax: &'a FixedSoftmax,
    /// `Th`, logits.
    threshold: f32,
    comparator: Comparator,
    approx_unit: f64,
    exact_unit: f64,
}

/// What a block returns.
struct BlockOut {
    rows: std::ops::Range<usize>,
    output: Vec<f32>,
    masks: Vec<u64>,
    kept: Vec<u32>,
    softmax_kept: Vec<u32>,
    visible: u64,
}

fn scales_for(src: &ScaleSource, data: &[f32], head: usize, which: &str) -> Result<f32> {
    Ok(match src {
        ScaleSource::Dynamic => quant::symmetric_scale(data),
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

/// Bitline full scale in score steps: `d * 2^(query_dac_bits-1) * 8`.
pub fn full_scale_steps(head_dim: usize, query_dac_bits: u32) -> f64 {
    head_dim as f64 * f64::from(1u32 << (query_dac_bits - 1)) * 8.0
}

/// Runs one layer. `thresholds[h]` is `Th` (logits) of query head `h`; the caller's rayon
/// pool sets the parallelism.
pub fn run_layer(
    cfg: &AttentionConfig,
    layer: usize,
    thresholds: &[f32],
    input: &AttentionInput,
) -> Result<LayerRun> {
    let shape = input.validate()?;
    if thresholds.len() != shape.heads {
        return Err(shape_error(
            "thresholds per query head",
            shape.heads,
            thresholds.len(),
        ));
    }
    let d = shape.head_dim;
    let in_memory = cfg.variant.prunes_in_memory();
    let fixed = cfg.recompute == RecomputeMode::FixedPoint;
    let full_scale = full_scale_steps(d, cfg.quant.query_dac_bits);

    let kv_heads: Vec<KvHead> = (0..shape.kv_heads)
        .into_par_iter()
        .map(|h| -> Result<KvHead> {
            let k = input.k.head(h);
            let v = input.v.head(h);
            let k_scale = scales_for(&cfg.quant.scales, k, h, "k")?;
            let v_scale = scales_for(&cfg.quant.scales, v, h, "v")?;
            let k8 = quant::quantize(k, k_scale);
            let v8 = quant::quantize(v, v_scale);
            let crossbar = in_memory.then(|| {
                let msb: Vec<i8> = k8.iter().map(|&x| quant::split_key(x).0).collect();
                noise::program_crossbar(
                    &msb,
                    shape.n_keys,
                    &cfg.noise,
                    full_scale,
                    cfg.seed,
                    layer,
                    h,
                )
            });
            let k8_f32 = if fixed && !in_memory && d <= MAX_EXACT_GEMM_DIM {
                k8.iter().map(|&x| f32::from(x)).collect()
            } else {
                Vec::new()
            };
            Ok(KvHead {
                k_scale,
                v_scale,
                k8: k8.iter().map(|&x| i16::from(x)).collect(),
                v8_f32: v8.iter().map(|&x| f32::from(x)).collect(),
                k8_f32,
                crossbar,
            })
        })
        .collect::<Result<_>>()?;

    let q_heads: Vec<QHead> = (0..shape.heads)
        .into_par_iter()
        .map(|h| -> Result<QHead> {
            let q = input.q.head(h);
            let q_scale = scales_for(&cfg.quant.scales, q, h, "q")?;
            let q8 = quant::quantize(q, q_scale);
            let q_dac = if in_memory {
                q8.iter()
                    .map(|&x| f32::from(quant::query_to_dac(x, cfg.quant.query_dac_bits)))
                    .collect()
            } else {
                Vec::new()
            };
            let q8_f32 = if fixed && !in_memory {
                q8.iter().map(|&x| f32::from(x)).collect()
            } else {
                Vec::new()
            };
            Ok(QHead {
                q_scale,
                q8: q8.iter().map(|&x| i16::from(x)).collect(),
                q8_f32,
                q_dac,
            })
        })
        .collect::<Result<_>>()?;

    let key_valid = match &input.key_valid {
        Some(m) => BitVec::from_indices(
            shape.n_keys,
            m.iter().enumerate().filter(|(_, v)| **v).map(|(i, _)| i),
        ),
        None => BitVec::ones(shape.n_keys),
    };
    let all_valid = vec![true; shape.n_queries];
    let query_valid: &[bool] = input.query_valid.as_deref().unwrap_or(&all_valid);
    let softmax = FixedSoftmax::new(&cfg.quant);

    let contexts: Vec<HeadCtx> = (0..shape.heads)
        .map(|h| {
            let kvh = shape.kv_head_of(h);
            let qh = &q_heads[h];
            let kv = &kv_heads[kvh];
            let approx_unit =
                quant::approx_score_unit(cfg.quant.query_dac_bits, qh.q_scale, kv.k_scale, d);
            let th = thresholds[h];
            let th_prime = f64::from(th) - f64::from(cfg.threshold.margin);
            HeadCtx {
                cfg,
                shape,
                layer,
                head: h,
                qh,
                kv,
                q_f: input.q.head(h),
                k_f: input.k.head(kvh),
                v_f: input.v.head(kvh),
                key_valid: &key_valid,
                query_valid,
                softmax: &softmax,
                threshold: th,
                comparator: Comparator {
                    threshold: th_prime / approx_unit,
                    read_sigma: f64::from(cfg.noise.read_sigma_fs) * full_scale,
                    tail_sigmas: f64::from(cfg.noise.tail_sigmas),
                },
                approx_unit,
                exact_unit: quant::exact_score_unit(qh.q_scale, kv.k_scale, d),
            }
        })
        .collect();

    let blocks_per_head = shape.n_queries.div_ceil(QUERY_BLOCK);
    let blocks: Vec<(usize, BlockOut)> = (0..shape.heads * blocks_per_head)
        .into_par_iter()
        .map(|t| {
            let h = t / blocks_per_head;
            let b = t % blocks_per_head;
            let start = b * QUERY_BLOCK;
            let rows = start..(start + QUERY_BLOCK).min(shape.n_queries);
            (h, run_block(&contexts[h], rows))
        })
        .collect();

    let mut output = Tensor3::zeros([shape.heads, shape.n_queries, d]);
    let mut masks: Vec<BitMatrix> = (0..shape.heads)
        .map(|_| BitMatrix::zeros(shape.n_queries, shape.n_keys))
        .collect();
    let mut records = vec![vec![QueryRecord::default(); shape.n_queries]; shape.heads];
    let mut visible_pairs = 0u64;
    for (h, blk) in blocks {
        let out = output.head_mut(h);
        out[blk.rows.start * d..blk.rows.end * d].copy_from_slice(&blk.output);
        let wpr = words_for(shape.n_keys);
        for (r, i) in blk.rows.clone().enumerate() {
            masks[h]
                .row_words_mut(i)
                .copy_from_slice(&blk.masks[r * wpr..(r + 1) * wpr]);
            records[h][i].kept = blk.kept[r];
            records[h][i].softmax_kept = blk.softmax_kept[r];
        }
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
        .enumerate()
        .map(|(h, (masks, mut records))| {
            let mut engine = LocalityEngine::new(shape.n_keys, k_cap, v_cap);
            for (i, rec) in records.iter_mut().enumerate() {
                if !query_valid[i] {
                    continue;
                }
                let (k, v) = engine.step(masks.row_words(i));
                rec.k_fetched = k.fetched;
                rec.k_reused = k.reused;
                rec.k_streamed = k.streamed;
                rec.v_fetched = v.fetched;
                rec.v_reused = v.reused;
                rec.v_streamed = v.streamed;
            }
            HeadTrace {
                layer: layer as u32,
                head: h as u32,
                kv_head: shape.kv_head_of(h) as u32,
                query_valid: query_valid_bits.clone(),
                key_valid: key_valid.clone(),
                masks,
                records,
            }
        })
        .collect();

    Ok(LayerRun {
        output,
        heads,
        visible_pairs,
    })
}

/// Keys visible to query `i`: real keys, and with causal masking `j <= i + n_keys - n_queries`.
fn visible_keys(ctx: &HeadCtx, i: usize, out: &mut [u64]) {
    out.copy_from_slice(ctx.key_valid.words());
    if ctx.cfg.causal {
        // Keys 0..limit are visible: the last query sees every key.
        let limit = (i + 1 + ctx.shape.n_keys)
            .saturating_sub(ctx.shape.n_queries)
            .min(ctx.shape.n_keys);
        for (wi, w) in out.iter_mut().enumerate() {
            let lo = wi * 64;
            if lo >= limit {
                *w = 0;
            } else if limit - lo < 64 {
                *w &= (1u64 << (limit - lo)) - 1;
            }
        }
    }
}

/// Rounds a logit to the signed fixed-point score code (half away from zero), saturating.
fn quantize_score(logit: f64, hi: f64, scale: f64) -> i32 {
    let x = logit * scale;
    // `as` truncates toward zero; adding +-0.5 first rounds half away from zero without libm.
    let r = (x + 0.5f64.copysign(x)) as i64 as f64;
    r.clamp(-hi - 1.0, hi) as i32
}

/// Keeps the pairs `(keys[t], vals[t])` whose value passes `keep`, in order.
fn retain_pairs<T: Copy>(keys: &mut Vec<usize>, vals: &mut Vec<T>, keep: impl Fn(T) -> bool) {
    let mut w = 0;
    for t in 0..keys.len() {
        if keep(vals[t]) {
            keys[w] = keys[t];
            vals[w] = vals[t];
            w += 1;
        }
    }
    keys.truncate(w);
    vals.truncate(w);
}

fn run_block(ctx: &HeadCtx, rows: std::ops::Range<usize>) -> BlockOut {
    let cfg = ctx.cfg;
    let LayerShape {
        n_keys,
        head_dim: d,
        ..
    } = ctx.shape;
    let m = rows.len();
    let wpr = words_for(n_keys);
    let fixed = cfg.recompute == RecomputeMode::FixedPoint;
    let in_memory = cfg.variant.prunes_in_memory();

    // Approximate in-memory scores (score steps) of the whole block: one crossbar read per query.
    let mut approx = Vec::new();
    if let Some(xb) = &ctx.kv.crossbar {
        approx = vec![0f32; m * n_keys];
        let q = &ctx.qh.q_dac[rows.start * d..rows.end * d];
        matmul_nt(q, &xb.weights, &mut approx, m, n_keys, d);
    }
    // Exact scores of every key, for the variants that score every key on chip.
    let mut full = Vec::new();
    if !in_memory {
        full = vec![0f32; m * n_keys];
        if fixed && !ctx.kv.k8_f32.is_empty() {
            let q = &ctx.qh.q8_f32[rows.start * d..rows.end * d];
            matmul_nt(q, &ctx.kv.k8_f32, &mut full, m, n_keys, d);
        } else if !fixed {
            let q = &ctx.q_f[rows.start * d..rows.end * d];
            matmul_nt(q, ctx.k_f, &mut full, m, n_keys, d);
            let inv = 1.0 / (d as f32).sqrt();
            full.iter_mut().for_each(|x| *x *= inv);
        }
    }

    let mut out = BlockOut {
        rows: rows.clone(),
        output: vec![0f32; m * d],
        masks: vec![0u64; m * wpr],
        kept: vec![0; m],
        softmax_kept: vec![0; m],
        visible: 0,
    };
    let mut keys: Vec<usize> = Vec::new();
    let mut codes: Vec<i32> = Vec::new();
    let mut logits: Vec<f32> = Vec::new();
    let (mut exps, mut probs, mut probs_f) = (Vec::new(), Vec::new(), Vec::new());
    let mut acc = vec![0f32; d];
    let inv_sqrt_d = 1.0 / (d as f32).sqrt();
    let score_hi = f64::from((1u32 << (cfg.quant.score_bits - 1)) - 1);
    let score_scale = f64::from(1u32 << cfg.quant.score_frac_bits);
    let offsets: &[f32] = ctx.kv.crossbar.as_ref().map_or(&[], |x| &x.offsets);
    let th_code = f64::from(ctx.threshold) * f64::from(1u32 << cfg.quant.score_frac_bits);

    for (r, i) in rows.clone().enumerate() {
        if !ctx.query_valid[i] {
            continue;
        }
        let row_mask = &mut out.masks[r * wpr..(r + 1) * wpr];
        visible_keys(ctx, i, row_mask);
        out.visible += row_mask
            .iter()
            .map(|w| u64::from(w.count_ones()))
            .sum::<u64>();
        if in_memory {
            let mut rng = (ctx.comparator.read_sigma > 0.0)
                .then(|| noise::stream(cfg.seed, Purpose::Read, ctx.layer, ctx.head, i));
            ctx.comparator.decide(
                &approx[r * n_keys..(r + 1) * n_keys],
                offsets,
                row_mask,
                rng.as_mut(),
            );
        }
        out.kept[r] = row_mask.iter().map(|w| w.count_ones()).sum();

        // Softmax inputs per variant: candidate keys, their scores, then the recheck.
        keys.clear();
        keys.extend(iter_ones(row_mask));
        let approx_row = if approx.is_empty() {
            &[][..]
        } else {
            &approx[r * n_keys..(r + 1) * n_keys]
        };
        let full_row = if full.is_empty() {
            &[][..]
        } else {
            &full[r * n_keys..(r + 1) * n_keys]
        };
        let recheck = match cfg.variant {
            Variant::Dense | Variant::SprintNoRecompute => false,
            Variant::RuntimePruning => true,
            Variant::Sprint => cfg.threshold.exact_recheck,
        };
        let dst = &mut out.output[r * d..(r + 1) * d];
        if fixed {
            codes.clear();
            match cfg.variant {
                Variant::SprintNoRecompute => codes.extend(keys.iter().map(|&j| {
                    quantize_score(
                        f64::from(approx_row[j]) * ctx.approx_unit,
                        score_hi,
                        score_scale,
                    )
                })),
                _ if !full_row.is_empty() => codes.extend(keys.iter().map(|&j| {
                    quantize_score(
                        f64::from(full_row[j]) * ctx.exact_unit,
                        score_hi,
                        score_scale,
                    )
                })),
                _ => {
                    let q8 = &ctx.qh.q8[i * d..(i + 1) * d];
                    codes.extend(keys.iter().map(|&j| {
                        let s = dot_i16(q8, &ctx.kv.k8[j * d..(j + 1) * d]);
                        quantize_score(f64::from(s) * ctx.exact_unit, score_hi, score_scale)
                    }))
                }
            }
            if recheck {
                retain_pairs(&mut keys, &mut codes, |c| f64::from(c) >= th_code);
            }
            out.softmax_kept[r] = keys.len() as u32;
            if keys.is_empty() {
                continue;
            }
            ctx.softmax.probabilities(&codes, &mut exps, &mut probs);
            // Integer products and sums below 2^24 are exact in f32 (|sum| <= (2^P + n/2) * 127).
            acc.fill(0.0);
            for (&j, &p) in keys.iter().zip(&probs) {
                axpy_f32(&mut acc, p as f32, &ctx.kv.v8_f32[j * d..(j + 1) * d]);
            }
            // |acc| < 2^(P+7) + n * 64: drop the low bits that do not fit the W-bit output,
            // round half up, and saturate.
            let p_bits = ctx.softmax.prob_bits();
            let shift = (p_bits + 8).saturating_sub(cfg.quant.output_bits);
            let hi = (1i64 << (cfg.quant.output_bits - 1)) - 1;
            let unit = ctx.kv.v_scale * (2f32).powi(shift as i32 - p_bits as i32);
            for (o, &a) in dst.iter_mut().zip(&acc) {
                let a = a as i64;
                let code = if shift == 0 {
                    a
                } else {
                    (a + (1i64 << (shift - 1))) >> shift
                };
                *o = code.clamp(-hi - 1, hi) as f32 * unit;
            }
        } else {
            logits.clear();
            match cfg.variant {
                Variant::SprintNoRecompute => logits.extend(
                    keys.iter()
                        .map(|&j| (f64::from(approx_row[j]) * ctx.approx_unit) as f32),
                ),
                Variant::Sprint => {
                    let q_f = &ctx.q_f[i * d..(i + 1) * d];
                    logits.extend(
                        keys.iter()
                            .map(|&j| dot_f32(q_f, &ctx.k_f[j * d..(j + 1) * d]) * inv_sqrt_d),
                    )
                }
                _ => logits.extend(keys.iter().map(|&j| full_row[j])),
            }
            if recheck {
                retain_pairs(&mut keys, &mut logits, |x| x >= ctx.threshold);
            }
            out.softmax_kept[r] = keys.len() as u32;
            if keys.is_empty() {
                continue;
            }
            softmax_f32(&logits, &mut probs_f);
            for (&j, &p) in keys.iter().zip(&probs_f) {
                axpy_f32(dst, p, &ctx.v_f[j * d..(j + 1) * d]);
            }
        }
    }
    out
}
