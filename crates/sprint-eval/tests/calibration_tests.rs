//! Calibration: target keep fraction on synthetic scores, agreement of the calibrating
//! backend with a brute-force quantile, thresholds files.

// The brute-force reference indexes several flat arrays by the same loop variables.
#![allow(clippy::needless_range_loop)]
use candle_core::{Device, Tensor};
use sprint_core::config::{AttentionConfig, ThresholdFile};
use sprint_eval::calibrate::{
    CalibratingAttention, CalibrationMeta, ScoreHistogram, threshold_file, write_threshold_file,
};
use sprint_models::attention::{Attention, AttentionCall};
use sprint_models::record::Recorder;

/// Deterministic standard normals (xorshift + Box-Muller).
fn normals(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed | 1;
    let mut u = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        ((s >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    (0..n)
        .map(|_| {
            let (a, b) = (u(), u());
            ((-2.0 * a.ln()).sqrt() * (2.0 * std::f64::consts::PI * b).cos()) as f32
        })
        .collect()
}

fn kept(xs: &[f32], th: f32) -> f64 {
    xs.iter().filter(|&&x| x >= th).count() as f64 / xs.len() as f64
}

#[test]
fn histogram_threshold_hits_the_target_keep() {
    let xs: Vec<f32> = normals(200_000, 7).iter().map(|x| 3.0 * x - 1.0).collect();
    let mut h = ScoreHistogram::new();
    xs.iter().for_each(|&x| h.add(x));
    assert_eq!(h.total(), 200_000);
    for keep in [0.05, 0.1, 0.25, 0.5, 0.9] {
        let th = h.threshold_for_keep(keep).unwrap();
        let got = kept(&xs, th);
        assert!(
            (got - keep).abs() < 0.002,
            "keep {keep}: got {got} at Th {th}"
        );
    }
    assert_eq!(h.threshold_for_keep(1.0).unwrap(), f32::NEG_INFINITY);
    assert!(h.threshold_for_keep(0.0).is_err());
    assert!(h.threshold_for_keep(1.5).is_err());
    assert!(h.threshold_for_keep(f64::NAN).is_err());
    assert_eq!(
        ScoreHistogram::new().threshold_for_keep(0.3).unwrap(),
        f32::NEG_INFINITY
    );
}

#[test]
fn out_of_range_scores_land_in_the_end_bins() {
    let mut h = ScoreHistogram::new();
    for x in [-1e6f32, 1e6, f32::NAN, 0.0] {
        h.add(x);
    }
    assert_eq!(h.total(), 3);
    assert!(h.threshold_for_keep(1.0 / 3.0).unwrap() > 60.0);
}

/// Runs the calibrating backend on synthetic q/k and checks the thresholds against the
/// exact quantile of the visible scores computed by brute force.
fn check_backend(causal: bool, per_head: bool) {
    let (b, heads, kv, seq, d) = (2usize, 4usize, 2usize, 48usize, 16usize);
    let q = normals(b * heads * seq * d, 11);
    let k = normals(b * kv * seq * d, 12);
    let qt = Tensor::from_vec(q.clone(), (b, heads, seq, d), &Device::Cpu).unwrap();
    let kt = Tensor::from_vec(k.clone(), (b, kv, seq, d), &Device::Cpu).unwrap();
    // Second sequence has 40 real tokens.
    let valid: Vec<Vec<bool>> = vec![vec![true; seq], (0..seq).map(|t| t < 40).collect()];
    let cal = CalibratingAttention::new(AttentionConfig::default(), 1, heads);
    let call = AttentionCall {
        layer: 0,
        q: &qt,
        k: &kt,
        v: &kt,
        valid: &valid,
        causal,
    };
    let mut rec = Recorder::new(b, 1, false, "test");
    let out = cal.attend(&call, &mut rec).unwrap();
    assert_eq!(out.dims(), &[b, heads, seq, d]);
    let stats = cal.into_stats();
    // Brute force.
    let scale = 1.0 / (d as f32).sqrt();
    let mut per: Vec<Vec<f32>> = vec![Vec::new(); heads];
    for bi in 0..b {
        for h in 0..heads {
            let g = h / (heads / kv);
            for i in 0..seq {
                if !valid[bi][i] {
                    continue;
                }
                for j in 0..seq {
                    if !valid[bi][j] || (causal && j > i) {
                        continue;
                    }
                    let qo = ((bi * heads + h) * seq + i) * d;
                    let ko = ((bi * kv + g) * seq + j) * d;
                    let s: f32 = (0..d).map(|e| q[qo + e] * k[ko + e]).sum::<f32>() * scale;
                    per[h].push(s);
                }
            }
        }
    }
    let visible: usize = per.iter().map(Vec::len).sum();
    assert_eq!(stats.total() as usize, visible);
    let th = stats.thresholds(0.25, per_head).unwrap();
    let all: Vec<f32> = per.iter().flatten().copied().collect();
    for h in 0..heads {
        let xs = if per_head { &per[h] } else { &all };
        let got = kept(xs, th.values[0][h]);
        // Bins of 1/128 logit on a few thousand scores: within one score per bin.
        assert!((got - 0.25).abs() < 0.01, "head {h}: kept {got}");
    }
}

#[test]
fn calibrating_backend_matches_brute_force() {
    check_backend(false, false);
    check_backend(true, false);
    check_backend(true, true);
}

#[test]
fn thresholds_file_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("th.toml");
    let th = sprint_core::config::Thresholds {
        values: vec![vec![0.5; 3], vec![-1.25; 3]],
    };
    let meta = CalibrationMeta {
        target_keep: 0.25,
        per_head: false,
        model: "m".into(),
        task: "t".into(),
        split: "16 documents".into(),
        seed: 3,
        scores: 100,
    };
    write_threshold_file(&path, &threshold_file(&th, &meta)).unwrap();
    let f = ThresholdFile::read(&path).unwrap();
    assert_eq!(f.meta["target_keep"], "0.25");
    assert_eq!(f.meta["seed"], "3");
    assert!(f.meta["method"].contains("quantile"));
    assert_eq!(f.resolve(2, 3, "th.toml").unwrap(), th);
    // Per head, with -inf.
    let th2 = sprint_core::config::Thresholds {
        values: vec![vec![0.5, f32::NEG_INFINITY], vec![1.0, 2.0]],
    };
    let meta2 = CalibrationMeta {
        per_head: true,
        ..meta
    };
    write_threshold_file(&path, &threshold_file(&th2, &meta2)).unwrap();
    let f2 = ThresholdFile::read(&path).unwrap();
    assert_eq!(f2.resolve(2, 2, "th.toml").unwrap(), th2);
}

/// The mass calibration held at a kept fraction, on two causal layers of 2 heads x 512
/// tokens whose scores differ in spread (layer 1's queries 4x larger: peaked softmax rows):
/// the kept fraction of all visible scores, counted by brute force at the thresholds it
/// returns, is the target to within 0.01 (one histogram bin's worth of scores); the
/// thresholds are the mass calibration at the mass it reports; and the peaked layer keeps
/// fewer keys than the flat one, which a per-layer quantile would not do.
#[test]
fn mass_calibration_held_at_a_kept_fraction() {
    use sprint_eval::calibrate::{KeepMethod, keep_method_description};
    let (heads, seq, d) = (2usize, 512usize, 16usize);
    let cal = CalibratingAttention::new(AttentionConfig::default(), 2, heads);
    let valid = vec![vec![true; seq]];
    let mut scores: Vec<Vec<f32>> = vec![Vec::new(); 2];
    for layer in 0..2 {
        let gain = if layer == 0 { 0.5 } else { 2.0 };
        let q: Vec<f32> = normals(heads * seq * d, 21 + layer as u64)
            .iter()
            .map(|x| x * gain)
            .collect();
        let k = normals(heads * seq * d, 31 + layer as u64);
        let qt = Tensor::from_vec(q.clone(), (1, heads, seq, d), &Device::Cpu).unwrap();
        let kt = Tensor::from_vec(k.clone(), (1, heads, seq, d), &Device::Cpu).unwrap();
        let call = AttentionCall {
            layer,
            q: &qt,
            k: &kt,
            v: &kt,
            valid: &valid,
            causal: true,
        };
        cal.attend(&call, &mut Recorder::new(1, 2, false, "test"))
            .unwrap();
        let scale = 1.0 / (d as f32).sqrt();
        for h in 0..heads {
            for i in 0..seq {
                for j in 0..=i {
                    let (qo, ko) = ((h * seq + i) * d, (h * seq + j) * d);
                    let s: f32 = (0..d).map(|e| q[qo + e] * k[ko + e]).sum::<f32>() * scale;
                    scores[layer].push(s);
                }
            }
        }
    }
    let stats = cal.into_stats();
    for keep in [0.1, 0.25, 0.5] {
        let (th, mass) = stats.mass_thresholds_at_keep(keep, false).unwrap();
        assert!(mass > 0.0 && mass < 1.0, "mass {mass}");
        assert_eq!(th, stats.mass_thresholds(mass, false).unwrap());
        let per_layer: Vec<f64> = (0..2).map(|l| kept(&scores[l], th.values[l][0])).collect();
        let all = (per_layer[0] * scores[0].len() as f64 + per_layer[1] * scores[1].len() as f64)
            / (scores[0].len() + scores[1].len()) as f64;
        assert!(
            (all - keep).abs() < 0.01,
            "keep {keep}: kept {all} (mass {mass})"
        );
        assert!(
            per_layer[1] + 0.05 < per_layer[0],
            "keep {keep}: the peaked layer keeps {} against the flat one's {}",
            per_layer[1],
            per_layer[0]
        );
    }
    assert!(stats.mass_thresholds_at_keep(0.0, false).is_err());
    assert!(stats.mass_thresholds_at_keep(1.5, false).is_err());
    let described = keep_method_description(false, Some(0.97));
    assert!(described.contains("0.970000"), "{described}");
    assert_eq!("mass".parse::<KeepMethod>().unwrap(), KeepMethod::Mass);
    assert!("median".parse::<KeepMethod>().is_err());
}

#[test]
fn sanger_threshold_keeps_the_asked_fraction_of_the_pairs() {
    // Probabilities 10^(-x) for x evenly spaced in [1, 5]: a quarter of them lie above 10^-2.
    let mut s = sprint_eval::calibrate::ScoreStats::new(1, 1);
    assert_eq!(s.sanger_threshold_for_keep(0.25).unwrap(), None);
    let n = 40_000;
    for i in 0..n {
        let x = 1.0 + 4.0 * (i as f64 + 0.5) / n as f64;
        s.sanger_ln_prob.add((10f64.powf(-x)).ln() as f32);
    }
    let t = s.sanger_threshold_for_keep(0.25).unwrap().unwrap();
    assert!((t.log10() + 2.0).abs() < 0.01, "threshold {t}");
    // Keep everything: threshold 0.
    assert_eq!(s.sanger_threshold_for_keep(1.0).unwrap().unwrap(), 0.0);
}
