//! The functional model against independent references: dense attention, a brute-force
//! comparator rule, and an independently computed masked softmax.

mod common;

use common::{Lcg, masked_softmax_attention, random_input, relative_error, visible};
use proptest::prelude::*;
use sprint_attention::run_layer;
use sprint_core::config::{AttentionConfig, MsbBiasCorrection, RecomputeMode, Variant};

fn float_cfg(variant: Variant) -> AttentionConfig {
    AttentionConfig {
        variant,
        recompute: RecomputeMode::Float,
        ..AttentionConfig::default()
    }
}

/// Acceptance 1: threshold -inf, no noise, float recompute == dense softmax attention.
#[test]
fn no_pruning_float_equals_dense() {
    let shapes = [
        (2, 1, 1, 32),
        (2, 2, 7, 64),
        (3, 1, 100, 128),
        (1, 1, 513, 64),
        (1, 1, 4096, 64),
    ];
    for (seed, &(heads, kv, n, d)) in shapes.iter().enumerate() {
        let input = random_input(seed as u64, heads, kv, n, n, d);
        let reference = masked_softmax_attention(&input, |_, i, _| visible(&input, false, i));
        for variant in [
            Variant::Sprint,
            Variant::Dense,
            Variant::RuntimePruning,
            Variant::SprintNoRecompute,
        ] {
            if variant == Variant::SprintNoRecompute {
                continue; // scores are approximate by design
            }
            let cfg = float_cfg(variant);
            let run = run_layer(&cfg, 0, &vec![f32::NEG_INFINITY; heads], &input).unwrap();
            let err = relative_error(&run.output.data, &reference);
            assert!(err < 1e-5, "{variant:?} n={n} d={d}: relative error {err}");
            let dense = sprint_attention::dense::attention(&input, false).unwrap();
            assert!(relative_error(&dense.data, &reference) < 1e-5);
        }
    }
}

/// Independent model of the in-memory comparator rule (SPRINT.md section 3).
fn brute_force_kept(
    input: &sprint_attention::AttentionInput,
    cfg: &AttentionConfig,
    th: &[f32],
    h: usize,
    i: usize,
) -> Vec<usize> {
    let [heads, nq, d] = input.q.dims;
    let [kvh, nk, _] = input.k.dims;
    let g = h / (heads / kvh);
    let scale = |x: &[f32]| {
        let m = x.iter().fold(0f32, |m, v| m.max(v.abs()));
        if m > 0.0 { m / 127.0 } else { 1.0 }
    };
    let qs = scale(&input.q.data[h * nq * d..(h + 1) * nq * d]);
    let ks = scale(&input.k.data[g * nk * d..(g + 1) * nk * d]);
    let code = |x: f32, s: f32| (x / s).round().clamp(-127.0, 127.0) as i64;
    let bits = cfg.quant.query_dac_bits as i32;
    let step = 2f64.powi(8 - bits);
    let lo = -(2f64.powi(bits - 1));
    let hi = 2f64.powi(bits - 1) - 1.0;
    let q: Vec<i64> = (0..d)
        .map(|t| {
            let c = code(input.q.data[(h * nq + i) * d + t], qs) as f64;
            (c / step).round().clamp(lo, hi) as i64
        })
        .collect();
    let k_step = 2i64.pow(8 - cfg.quant.k_msb_bits);
    let unit = step * k_step as f64 * f64::from(qs) * f64::from(ks) / (d as f64).sqrt();
    // Unbiased score: the reference drops by the mean unseen low part, (k_step - 1) / 2 per
    // element in low-part units, i.e. (k_step - 1) / (2 k_step) MSB steps times sum(q).
    let correction = match cfg.quant.msb_bias_correction {
        MsbBiasCorrection::QuerySum => {
            (k_step - 1) as f64 / (2 * k_step) as f64 * q.iter().sum::<i64>() as f64
        }
        MsbBiasCorrection::None => 0.0,
    };
    let t = (f64::from(th[h]) - f64::from(cfg.threshold.margin)) / unit - correction;
    visible(input, cfg.causal, i)
        .into_iter()
        .filter(|&j| {
            let s: i64 = (0..d)
                .map(|e| {
                    let k = code(input.k.data[(g * nk + j) * d + e], ks);
                    q[e] * k.div_euclid(k_step)
                })
                .sum();
            s as f64 >= t
        })
        .collect()
}

#[derive(Debug, Clone)]
struct Case {
    heads: usize,
    group: usize,
    nq: usize,
    nk: usize,
    d: usize,
    causal: bool,
    pad_keys: usize,
    pad_queries: usize,
    threshold: f32,
    margin: f32,
    dac_bits: u32,
    seed: u64,
}

fn cases() -> impl Strategy<Value = Case> {
    (
        1usize..4,
        1usize..3,
        1usize..40,
        0usize..40,
        prop::sample::select(vec![8usize, 16, 32, 64]),
        any::<bool>(),
        0usize..5,
        0usize..5,
        -1.5f32..1.0,
        0f32..0.5,
        1u32..=8,
        any::<u64>(),
    )
        .prop_map(
            |(kv, group, nq, extra, d, causal, pk, pq, threshold, margin, dac_bits, seed)| Case {
                heads: kv * group,
                group,
                nq,
                nk: nq + extra,
                d,
                causal,
                pad_keys: pk,
                pad_queries: pq,
                threshold,
                margin,
                dac_bits,
                seed,
            },
        )
}

fn build(case: &Case) -> sprint_attention::AttentionInput {
    let mut input = random_input(
        case.seed,
        case.heads,
        case.heads / case.group,
        case.nq,
        case.nk,
        case.d,
    );
    let mut rng = Lcg(case.seed ^ 0x55);
    if case.pad_keys > 0 {
        input.key_valid = Some(
            (0..case.nk)
                .map(|_| rng.below(case.pad_keys + 2) != 0)
                .collect(),
        );
    }
    if case.pad_queries > 0 {
        input.query_valid = Some(
            (0..case.nq)
                .map(|_| rng.below(case.pad_queries + 2) != 0)
                .collect(),
        );
    }
    input
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Acceptance 2: noiseless kept sets equal the comparator rule evaluated by brute force.
    #[test]
    fn kept_set_matches_comparator_rule(case in cases()) {
        let input = build(&case);
        let mut cfg = AttentionConfig { variant: Variant::Sprint, causal: case.causal, ..AttentionConfig::default() };
        cfg.quant.query_dac_bits = case.dac_bits;
        cfg.quant.k_msb_bits = 1 + (case.seed % 8) as u32;
        if case.seed % 3 == 0 {
            cfg.quant.msb_bias_correction = MsbBiasCorrection::None;
        }
        cfg.threshold.margin = case.margin;
        let th: Vec<f32> = (0..case.heads).map(|h| case.threshold + 0.1 * h as f32).collect();
        let run = run_layer(&cfg, 0, &th, &input).unwrap();
        for (h, trace) in run.heads.iter().enumerate() {
            for i in 0..case.nq {
                let got: Vec<usize> = trace.masks.row_ones(i).collect();
                let want = if input.query_valid.as_ref().is_some_and(|m| !m[i]) {
                    vec![]
                } else {
                    brute_force_kept(&input, &cfg, &th, h, i)
                };
                prop_assert_eq!(&got, &want, "head {} query {}", h, i);
                let rec = trace.records[i];
                prop_assert_eq!(rec.kept as usize, want.len());
                prop_assert!(rec.softmax_kept <= rec.kept);
                prop_assert_eq!(rec.k_fetched + rec.k_reused, rec.kept);
                prop_assert_eq!(rec.v_fetched + rec.v_reused, rec.kept);
            }
        }
    }

    /// Acceptance 2: runtime pruning (float recompute) equals a masked softmax computed
    /// independently: keys with logit >= Th among the visible ones.
    #[test]
    fn runtime_pruning_equals_masked_softmax(case in cases()) {
        let input = build(&case);
        let cfg = AttentionConfig { causal: case.causal, ..float_cfg(Variant::RuntimePruning) };
        let th: Vec<f32> = (0..case.heads).map(|h| case.threshold - 0.05 * h as f32).collect();
        let run = run_layer(&cfg, 0, &th, &input).unwrap();
        let reference = masked_softmax_attention(&input, |h, i, logits| {
            visible(&input, case.causal, i).into_iter().filter(|&j| logits[j] >= f64::from(th[h])).collect()
        });
        // Keys within float rounding of the threshold may fall either way; skip rows that have one.
        let [heads, nq, d] = input.q.dims;
        let nk = input.k.dims[1];
        for (h, &th_h) in th.iter().enumerate().take(heads) {
            let g = h / case.group;
            for i in 0..nq {
                let row = (h * nq + i) * d;
                let err = relative_error(&run.output.data[row..row + d], &reference[row..row + d]);
                let q = &input.q.data[row..row + d];
                let close_call = (0..nk).any(|j| {
                    let k = &input.k.data[(g * nk + j) * d..(g * nk + j + 1) * d];
                    let logit = q.iter().zip(k).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum::<f64>()
                        / (d as f64).sqrt();
                    (logit - f64::from(th_h)).abs() < 1e-5
                });
                prop_assert!(err < 1e-5 || close_call, "head {} query {}: error {}", h, i, err);
            }
        }
    }
}
