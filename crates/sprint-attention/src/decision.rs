//! The scores SPRINT's pruning decisions see, in logit units, for training thresholds
//! against the datapath rather than against the exact float scores.
//!
//! SPRINT keeps key `j` for query `i` in the softmax when two tests pass:
//!
//! 1. the in-memory comparator: the analog score of the 8-bit query's DAC code against the
//!    `K_MSB` cells (with the crossbar's non-idealities, comparator offset and read noise)
//!    reaches the reference `(Th - margin) / unit - lsb_correction_i` in score steps;
//! 2. for SPRINT with recompute, the recheck: the recomputed 8-bit score of the kept key
//!    (`q8 . k8`, with the read-back levels when stuck-at cells change them) reaches `Th`.
//!
//! [`decision_scores`] returns both as logits, so that test 1 is `comparator >= Th` and
//! test 2 is `recheck >= Th`, using the same quantisation, crossbar programming and noise
//! streams as [`crate::run_layer`] with the same configuration and seed. The only departures:
//! read noise is drawn for every key (the engine skips keys more than `tail_sigmas` sigmas
//! from the reference, whose decision such a draw does not change), and the recheck score is
//! not rounded to the softmax's fixed-point code (at most `2^-score_frac_bits` logits).

use sprint_core::config::{AttentionConfig, MsbBiasCorrection, RecomputeMode, Variant};

use crate::engine::{full_scale_steps, scales_for};
use crate::error::{AttentionError, Result, shape_error};
use crate::gemm::matmul_nt;
use crate::noise::{self, Purpose, counter_normal, stream_key};
use crate::quant;

/// The two decision scores of one query head over one sequence, `n_queries x n_keys`
/// row-major, logits.
#[derive(Clone, Debug, Default)]
pub struct DecisionScores {
    /// Key `j` passes query `i`'s in-memory comparator when `comparator[i * n_keys + j] >= Th`.
    pub comparator: Vec<f32>,
    /// Key `j` passes the recheck of SPRINT with recompute when `recheck[i * n_keys + j] >=
    /// Th`; empty for SPRINT without recompute (no recheck).
    pub recheck: Vec<f32>,
}

/// The decision scores of query head `head` (KV head `kv_head`) of `layer` for one sequence:
/// `q` `[n_queries, d]`, `k` `[n_keys, d]` (real units, as [`crate::AttentionInput`] holds one
/// head). `cfg.seed` keys the crossbar programming and the read noise as in the engine;
/// `cfg.variant` must prune in memory.
#[allow(clippy::too_many_arguments)]
pub fn decision_scores(
    cfg: &AttentionConfig,
    layer: usize,
    head: usize,
    kv_head: usize,
    q: &[f32],
    k: &[f32],
    n_queries: usize,
    n_keys: usize,
    d: usize,
) -> Result<DecisionScores> {
    if !cfg.variant.prunes_in_memory() {
        return Err(AttentionError::Config(sprint_core::CoreError::config(
            "variant",
            format!(
                "decision scores are those of the in-memory variants, not {:?}",
                cfg.variant
            ),
        )));
    }
    if q.len() != n_queries * d || k.len() != n_keys * d {
        return Err(shape_error(
            "decision scores q / k",
            format!("{} / {}", n_queries * d, n_keys * d),
            format!("{} / {}", q.len(), k.len()),
        ));
    }
    let qc = &cfg.quant;
    let margin = f64::from(cfg.margin(layer)?);
    let q_scale = scales_for(&qc.scales, q, head, "q")?;
    let k_scale = scales_for(&qc.scales, k, kv_head, "k")?;
    let q8 = quant::quantize(q, q_scale);
    let k8 = quant::quantize(k, k_scale);
    let full_scale = full_scale_steps(d, qc.query_dac_bits, qc.k_msb_bits);

    // 1. The comparator: analog score of the DAC query on the programmed K_MSB cells.
    let dac_table = quant::dac_table(qc.query_dac_bits);
    let dac: Vec<f32> = q8
        .iter()
        .map(|&x| f32::from(dac_table[x as u8 as usize]))
        .collect();
    let msb: Vec<i8> = k8
        .iter()
        .map(|&x| quant::split_key_bits(x, qc.k_msb_bits).0)
        .collect();
    let xb = noise::program_crossbar(
        &msb,
        n_keys,
        qc.k_msb_bits,
        &cfg.noise,
        full_scale,
        cfg.seed,
        layer,
        kv_head,
    );
    let mut comparator = vec![0f32; n_queries * n_keys];
    matmul_nt(&dac, &xb.weights, &mut comparator, n_queries, n_keys, d);
    let correction = match qc.msb_bias_correction {
        MsbBiasCorrection::QuerySum => quant::lsb_mean_in_msb_steps(qc.k_msb_bits),
        MsbBiasCorrection::None => 0.0,
    };
    let unit = quant::approx_score_unit(qc.query_dac_bits, qc.k_msb_bits, q_scale, k_scale, d);
    let read_sigma = f64::from(cfg.noise.read_sigma_fs) * full_scale;
    for i in 0..n_queries {
        let corr = correction
            * dac[i * d..(i + 1) * d]
                .iter()
                .map(|&x| f64::from(x))
                .sum::<f64>();
        let key = stream_key(cfg.seed, Purpose::Read, layer, head, i);
        let row = &mut comparator[i * n_keys..(i + 1) * n_keys];
        for (j, s) in row.iter_mut().enumerate() {
            let mut steps = f64::from(*s) + corr;
            if let Some(o) = xb.offsets.get(j) {
                steps += f64::from(*o);
            }
            if read_sigma > 0.0 {
                steps += read_sigma * counter_normal(key, j as u64);
            }
            *s = (steps * unit + margin) as f32;
        }
    }

    // 2. The recheck of the recomputed score.
    let recheck = match (cfg.variant, cfg.recompute) {
        (Variant::SprintNoRecompute, _) => Vec::new(),
        (_, RecomputeMode::Float) => {
            let mut r = vec![0f32; n_queries * n_keys];
            matmul_nt(q, k, &mut r, n_queries, n_keys, d);
            let inv = 1.0 / (d as f32).sqrt();
            r.iter_mut().for_each(|x| *x *= inv);
            r
        }
        (_, RecomputeMode::FixedPoint) => {
            let lsb_bits = 8 - qc.k_msb_bits;
            let keys: Vec<f32> = if xb.read_back.is_empty() {
                k8.iter().map(|&x| f32::from(x)).collect()
            } else {
                k8.iter()
                    .zip(&xb.read_back)
                    .map(|(&x, &m)| {
                        let lsb = quant::split_key_bits(x, qc.k_msb_bits).1;
                        f32::from(((i16::from(m) << lsb_bits) + i16::from(lsb)) as i8)
                    })
                    .collect()
            };
            let q8f: Vec<f32> = q8.iter().map(|&x| f32::from(x)).collect();
            let mut r = vec![0f32; n_queries * n_keys];
            // Exact: integer products, sums below 2^24 for d <= 1024.
            matmul_nt(&q8f, &keys, &mut r, n_queries, n_keys, d);
            let eu = quant::exact_score_unit(q_scale, k_scale, d);
            r.iter_mut().for_each(|x| *x = (f64::from(*x) * eu) as f32);
            r
        }
    };
    Ok(DecisionScores {
        comparator,
        recheck,
    })
}
