//! The peer designs' functional models against direct transcriptions of their published
//! algorithms, computed independently here in f64 (no code shared with the crate), on small
//! inputs with padding, GQA and causal masking, and on rows of 4096 keys.

mod common;

use common::{Lcg, random_input};
use sprint_attention::{AttentionInput, Tensor3, dense, run_layer};
use sprint_core::config::{AttentionConfig, Variant};

/// Sanger's decision and output for one query head, transcribed from the public PyTorch
/// model (hatsu3/Sanger, modeling_sanger_spattn.py and quant_utils.py): normalise Q rows and
/// K vectors, fake-quantise each tensor symmetrically with its absolute maximum (round half
/// to even), multiply, scale back by the norms and 1/sqrt(d), softmax over the visible keys,
/// mask = probability > threshold, then exact softmax attention over the mask.
/// One query of the transcription: the predicted probability of every visible key as
/// `(key, p)`, and the output row.
struct RefRow {
    probs: Vec<(usize, f64)>,
    output: Vec<f64>,
}

/// The transcription's rows, one per query asked for.
struct SangerRef {
    rows: Vec<RefRow>,
}

fn quantise_f64(x: f64, abs_max: f64, bits: u32) -> f64 {
    let m = f64::from((1u32 << (bits - 1)) - 1);
    if abs_max == 0.0 {
        return 0.0;
    }
    let s = m / abs_max;
    let y = x * s;
    // Round half to even, written out.
    let f = y.floor();
    let r = if y - f > 0.5 || (y - f == 0.5 && f % 2.0 != 0.0) {
        f + 1.0
    } else {
        f
    };
    r.clamp(-m, m) / s
}

fn norm(x: &[f32]) -> f64 {
    x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>().sqrt()
}

/// Absolute maximum of the normalised rows of every head over the valid tokens.
fn abs_max_normalised(t: &Tensor3, valid: Option<&Vec<bool>>) -> f64 {
    let d = t.head_dim();
    let mut m = 0.0f64;
    for h in 0..t.heads() {
        for (i, row) in t.head(h).chunks(d).enumerate() {
            if valid.is_some_and(|v| !v[i]) {
                continue;
            }
            let n = norm(row);
            if n > 0.0 {
                for &x in row {
                    m = m.max((f64::from(x) / n).abs());
                }
            }
        }
    }
    m
}

fn sanger_ref(
    input: &AttentionInput,
    h: usize,
    causal: bool,
    bits: u32,
    threshold: f64,
    rows: &[usize],
) -> SangerRef {
    let (nq, d) = (input.q.seq(), input.q.head_dim());
    let nk = input.k.seq();
    let kvh = h * input.k.heads() / input.q.heads();
    let qa = abs_max_normalised(&input.q, input.query_valid.as_ref());
    let ka = abs_max_normalised(&input.k, input.key_valid.as_ref());
    let q = input.q.head(h);
    let k = input.k.head(kvh);
    let v = input.v.head(kvh);
    let scale = 1.0 / (d as f64).sqrt();
    let mut out = Vec::new();
    for &i in rows {
        let qi = &q[i * d..(i + 1) * d];
        let qn = norm(qi);
        let limit = if causal {
            (i + 1 + nk - nq).min(nk)
        } else {
            nk
        };
        let vis: Vec<usize> = (0..limit)
            .filter(|&j| input.key_valid.as_ref().is_none_or(|m| m[j]))
            .collect();
        let pred: Vec<f64> = vis
            .iter()
            .map(|&j| {
                let kj = &k[j * d..(j + 1) * d];
                let kn = norm(kj);
                let dot: f64 = (0..d)
                    .map(|e| {
                        let a = if qn > 0.0 { f64::from(qi[e]) / qn } else { 0.0 };
                        let b = if kn > 0.0 { f64::from(kj[e]) / kn } else { 0.0 };
                        quantise_f64(a, qa, bits) * quantise_f64(b, ka, bits)
                    })
                    .sum();
                dot * qn * kn * scale
            })
            .collect();
        let mx = pred.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let z: f64 = pred.iter().map(|s| (s - mx).exp()).sum();
        let probs: Vec<(usize, f64)> = vis
            .iter()
            .zip(&pred)
            .map(|(&j, s)| (j, (s - mx).exp() / z))
            .collect();
        let kept: Vec<usize> = probs
            .iter()
            .filter(|(_, p)| *p > threshold)
            .map(|(j, _)| *j)
            .collect();
        let mut o = vec![0.0f64; d];
        if !kept.is_empty() {
            let s: Vec<f64> = kept
                .iter()
                .map(|&j| {
                    (0..d)
                        .map(|e| f64::from(qi[e]) * f64::from(k[j * d + e]))
                        .sum::<f64>()
                        * scale
                })
                .collect();
            let mx = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let z: f64 = s.iter().map(|x| (x - mx).exp()).sum();
            for (&j, x) in kept.iter().zip(&s) {
                let p = (x - mx).exp() / z;
                for e in 0..d {
                    o[e] += p * f64::from(v[j * d + e]);
                }
            }
        }
        out.push(RefRow { probs, output: o });
    }
    SangerRef { rows: out }
}

fn sanger_cfg(causal: bool, threshold: f32) -> AttentionConfig {
    let mut cfg = AttentionConfig {
        variant: Variant::Sanger,
        causal,
        ..AttentionConfig::default()
    };
    cfg.peers.sanger.prob_threshold = threshold;
    cfg
}

/// Checks the run's masks and outputs of head `h` against the transcription on `rows`.
/// Keys whose reference probability lies within `1e-6` (relative) of the threshold are
/// not judged (float rounding may put them on either side).
fn check_head(
    input: &AttentionInput,
    cfg: &AttentionConfig,
    h: usize,
    rows: &[usize],
    out_tol: f64,
) -> (u64, u64) {
    let th = cfg.peers.sanger.prob_threshold;
    let run = run_layer(cfg, 0, &vec![0.0; input.q.heads()], input).unwrap();
    let r = sanger_ref(
        input,
        h,
        cfg.causal,
        cfg.peers.sanger.qk_bits,
        f64::from(th),
        rows,
    );
    let d = input.q.head_dim();
    let (mut kept, mut visible) = (0u64, 0u64);
    for (&i, RefRow { probs, output: o }) in rows.iter().zip(&r.rows) {
        let mask = run.heads[h].masks.row_words(i);
        for &(j, p) in probs {
            visible += 1;
            let bit = mask[j / 64] >> (j % 64) & 1 == 1;
            kept += u64::from(bit);
            if (p - f64::from(th)).abs() <= 1e-6 * f64::from(th).max(1e-30) {
                continue;
            }
            assert_eq!(bit, p > f64::from(th), "head {h} query {i} key {j}: p {p}");
        }
        let got = &run.output.head(h)[i * d..(i + 1) * d];
        for e in 0..d {
            let diff = (f64::from(got[e]) - o[e]).abs();
            assert!(
                diff <= out_tol,
                "head {h} query {i} element {e}: {} vs {} (diff {diff})",
                got[e],
                o[e]
            );
        }
    }
    (kept, visible)
}

#[test]
fn sanger_matches_its_transcription_with_padding_gqa_and_causal_masking() {
    for causal in [false, true] {
        let mut input = random_input(7, 4, 2, 37, 37, 16);
        let mut valid = vec![true; 37];
        for j in [3, 30, 31, 36] {
            valid[j] = false;
        }
        input.key_valid = Some(valid.clone());
        input.query_valid = Some(valid);
        let cfg = sanger_cfg(causal, 2e-2);
        let rows: Vec<usize> = (0..37).filter(|i| ![3, 30, 31, 36].contains(i)).collect();
        for h in 0..4 {
            let (kept, visible) = check_head(&input, &cfg, h, &rows, 1e-5);
            assert!(
                kept > 0 && kept < visible,
                "causal {causal} head {h}: {kept} of {visible}"
            );
        }
    }
}

/// Q, K, V of `heads` heads, `nq` queries and `nk` keys whose scores have real structure:
/// queries align with a few keys (a peaked row over a random background), as trained heads
/// do.
fn peaked_input(seed: u64, heads: usize, nq: usize, nk: usize, d: usize) -> AttentionInput {
    let mut rng = Lcg(seed);
    let q: Vec<f32> = (0..heads * nq * d).map(|_| rng.next_f32()).collect();
    let mut k: Vec<f32> = (0..heads * nk * d).map(|_| rng.next_f32() * 0.5).collect();
    for h in 0..heads {
        for i in 0..nq {
            for _ in 0..3 {
                let j = rng.below(nk);
                for e in 0..d {
                    k[(h * nk + j) * d + e] = q[(h * nq + i) * d + e] * 0.9;
                }
            }
        }
    }
    let v: Vec<f32> = (0..heads * nk * d).map(|_| rng.next_f32()).collect();
    AttentionInput::new(
        Tensor3::new([heads, nq, d], q).unwrap(),
        Tensor3::new([heads, nk, d], k).unwrap(),
        Tensor3::new([heads, nk, d], v).unwrap(),
    )
}

#[test]
fn sanger_at_4096_keys_matches_its_transcription_and_keeps_a_real_fraction() {
    // 192 queries against 4096 keys (the last queries of a long causal sequence).
    let (nq, nk) = (192, 4096);
    let input = peaked_input(11, 2, nq, nk, 64);
    for causal in [false, true] {
        // The published threshold would keep almost nothing at 4096 keys (2e-3 > 1 / 4096 on
        // average); a threshold below the mean probability keeps a real fraction.
        let cfg = sanger_cfg(causal, 3e-4);
        let rows: Vec<usize> = (0..nq).step_by(11).collect();
        let (kept, visible) = check_head(&input, &cfg, 1, &rows, 1e-5);
        let rate = kept as f64 / visible as f64;
        assert!(
            (0.05..0.95).contains(&rate),
            "causal {causal}: kept {kept} of {visible}"
        );
    }
}

#[test]
fn sanger_with_a_zero_threshold_is_dense_attention_at_4096_keys() {
    let input = peaked_input(5, 2, 192, 4096, 64);
    for causal in [false, true] {
        let cfg = sanger_cfg(causal, 0.0);
        let run = run_layer(&cfg, 0, &[0.0, 0.0], &input).unwrap();
        let reference = dense::attention(&input, causal).unwrap();
        let worst = run
            .output
            .head(1)
            .iter()
            .zip(reference.head(1))
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst <= 1e-5, "causal {causal}: worst {worst}");
        let kept: u64 = run.heads[1].records.iter().map(|r| u64::from(r.kept)).sum();
        // Query i sees keys 0..=i + 4096 - 192 when causal.
        let expect: u64 = if causal {
            (0..192u64).map(|i| i + 1 + 4096 - 192).sum()
        } else {
            192 * 4096
        };
        assert_eq!(kept, expect, "causal {causal}");
    }
}

/// LeOPArd's bit-serial unit for one pair, transcribed plane by plane: the key's 8-bit two's
/// complement code is consumed from its most significant bit; after each plane the partial
/// score plus the largest contribution the planes still to come can add is compared with the
/// threshold, and the unit stops when that bound falls below it. Returns (planes processed,
/// kept). Integer arithmetic on the codes; `t_int` is the smallest integer score that keeps.
fn leopard_pair_ref(q: &[i8], k: &[i8], t_int: i64) -> (u32, bool) {
    let s_plus: i64 = q.iter().map(|&x| i64::from(x.max(0))).sum();
    let mut partial = 0i64;
    for (n, b) in (0..8u32).rev().enumerate() {
        // Plane b of each key code (two's complement: the top plane weighs -2^7).
        let weight = if b == 7 { -(1i64 << 7) } else { 1i64 << b };
        for (&qi, &ki) in q.iter().zip(k) {
            let bit = (i64::from(ki as u8) >> b) & 1;
            partial += i64::from(qi) * bit * weight;
        }
        let remaining_max = ((1i64 << b) - 1) * s_plus;
        if partial + remaining_max < t_int {
            return (n as u32 + 1, false);
        }
    }
    (8, true)
}

/// Symmetric int8 codes of a head as the crate's datapath makes them (an independent
/// restatement: scale `max |x| / 127`, round half away from zero).
fn codes(x: &[f32]) -> (Vec<i8>, f32) {
    let m = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let s = if m > 0.0 { m / 127.0 } else { 1.0 };
    (
        x.iter()
            .map(|&v| {
                let y = f64::from(v / s);
                (y + 0.5f64.copysign(y)).trunc().clamp(-127.0, 127.0) as i8
            })
            .collect(),
        s,
    )
}

fn check_leopard(input: &AttentionInput, causal: bool, th: f32, rows: &[usize]) -> (u64, u64) {
    let heads = input.q.heads();
    let cfg = AttentionConfig {
        variant: Variant::Leopard,
        causal,
        ..AttentionConfig::default()
    };
    let run = run_layer(&cfg, 0, &vec![th; heads], input).unwrap();
    let (nq, nk, d) = (input.q.seq(), input.k.seq(), input.q.head_dim());
    let (mut survivors, mut visible_total) = (0u64, 0u64);
    for h in 0..heads {
        let kvh = h * input.k.heads() / heads;
        let (q8, sq) = codes(input.q.head(h));
        let (k8, sk) = codes(input.k.head(kvh));
        let unit = f64::from(sq) * f64::from(sk) / (d as f64).sqrt();
        let t_int = (f64::from(th) / unit).ceil() as i64;
        let mut bits = 0u64;
        let mut all_rows_bits = true;
        for i in 0..nq {
            if input.query_valid.as_ref().is_some_and(|m| !m[i]) {
                continue;
            }
            let limit = if causal {
                (i + 1 + nk - nq).min(nk)
            } else {
                nk
            };
            let judged = rows.contains(&i);
            let mut kept = Vec::new();
            for j in 0..limit {
                if input.key_valid.as_ref().is_some_and(|m| !m[j]) {
                    continue;
                }
                let (planes, keep) =
                    leopard_pair_ref(&q8[i * d..(i + 1) * d], &k8[j * d..(j + 1) * d], t_int);
                bits += u64::from(planes);
                if judged {
                    visible_total += 1;
                    if keep {
                        kept.push(j);
                    }
                }
            }
            if !judged {
                all_rows_bits = false;
                continue;
            }
            assert_eq!(
                run.heads[h].records[i].softmax_kept as usize,
                kept.len(),
                "head {h} query {i}"
            );
            survivors += kept.len() as u64;
            // The survivors get exact float attention: the masked f64 reference.
            let reference = common::masked_softmax_attention(input, |hh, ii, _| {
                if hh == h && ii == i {
                    kept.clone()
                } else {
                    Vec::new()
                }
            });
            let got = &run.output.head(h)[i * d..(i + 1) * d];
            for e in 0..d {
                let want = reference[(h * nq + i) * d + e];
                assert!(
                    (f64::from(got[e]) - want).abs() <= 1e-5,
                    "head {h} query {i} element {e}: {} vs {want}",
                    got[e]
                );
            }
        }
        if all_rows_bits {
            assert_eq!(run.heads[h].stats.k_bits_processed, bits, "head {h}");
        }
    }
    (survivors, visible_total)
}

#[test]
fn leopard_matches_its_bit_serial_transcription_with_padding_gqa_and_causal_masking() {
    for causal in [false, true] {
        let mut input = random_input(3, 4, 2, 29, 29, 16);
        let mut valid = vec![true; 29];
        valid[5] = false;
        valid[28] = false;
        input.key_valid = Some(valid.clone());
        input.query_valid = Some(valid);
        let rows: Vec<usize> = (0..29).filter(|i| ![5, 28].contains(i)).collect();
        let (kept, visible) = check_leopard(&input, causal, 0.5, &rows);
        assert!(
            kept > 0 && kept < visible,
            "causal {causal}: {kept} of {visible}"
        );
    }
}

#[test]
fn leopard_at_4096_keys_keeps_the_exact_survivors_and_counts_its_planes() {
    let input = peaked_input(13, 1, 24, 4096, 64);
    for causal in [false, true] {
        let rows: Vec<usize> = (0..24).collect();
        let (kept, visible) = check_leopard(&input, causal, 0.3, &rows);
        let rate = kept as f64 / visible as f64;
        assert!(
            (0.02..0.9).contains(&rate),
            "causal {causal}: {kept} of {visible}"
        );
    }
}

#[test]
fn sanger_predicted_probabilities_are_the_decisions_quantity() {
    // Every visible pair once, each query's probabilities summing to 1, and the threshold
    // the variant applies cuts them where the variant's mask does.
    let mut input = random_input(21, 2, 1, 40, 40, 16);
    let mut valid = vec![true; 40];
    valid[7] = false;
    input.key_valid = Some(valid.clone());
    input.query_valid = Some(valid);
    let causal = true;
    let mut cfg = AttentionConfig {
        variant: Variant::Sanger,
        causal,
        ..AttentionConfig::default()
    };
    cfg.peers.sanger.prob_threshold = 0.03;
    let mut probs = Vec::new();
    sprint_attention::peers::sanger::predicted_probabilities(
        &cfg.peers.sanger,
        causal,
        &input,
        &mut |p| probs.push(p),
    )
    .unwrap();
    let run = run_layer(&cfg, 0, &[0.0, 0.0], &input).unwrap();
    let visible: u64 = (0..40)
        .filter(|&i| i != 7)
        .map(|i| common::visible(&input, causal, i).len() as u64)
        .sum();
    assert_eq!(probs.len() as u64, 2 * visible);
    let above = probs.iter().filter(|&&p| p > 0.03 * (1.0 + 1e-5)).count() as u64;
    let at_most = probs.iter().filter(|&&p| p > 0.03 * (1.0 - 1e-5)).count() as u64;
    let kept: u64 = run
        .heads
        .iter()
        .flat_map(|h| h.records.iter().map(|r| u64::from(r.kept)))
        .sum();
    assert!(
        above <= kept && kept <= at_most,
        "{above} <= {kept} <= {at_most}"
    );
    let mut at = 0;
    for _h in 0..2 {
        for i in (0..40).filter(|&i| i != 7) {
            let n = common::visible(&input, causal, i).len();
            let s: f32 = probs[at..at + n].iter().sum();
            assert!((s - 1.0).abs() < 1e-5, "query {i}: {s}");
            at += n;
        }
    }
}
