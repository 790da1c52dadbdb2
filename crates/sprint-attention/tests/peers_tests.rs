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

/// Exact f64 attention of query `i` of head `h` over the keys `keys` (logits `q.k / sqrt(d)`
/// of the float inputs); zeros for an empty set. Also returns every visible logit asked for.
fn attend_one(input: &AttentionInput, h: usize, i: usize, keys: &[usize]) -> Vec<f64> {
    let d = input.q.head_dim();
    let kvh = h * input.k.heads() / input.q.heads();
    let mut o = vec![0.0f64; d];
    if keys.is_empty() {
        return o;
    }
    let l: Vec<f64> = keys.iter().map(|&j| logit(input, h, i, j)).collect();
    let m = l.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let z: f64 = l.iter().map(|x| (x - m).exp()).sum();
    let v = input.v.head(kvh);
    for (&j, x) in keys.iter().zip(&l) {
        let p = (x - m).exp() / z;
        for e in 0..d {
            o[e] += p * f64::from(v[j * d + e]);
        }
    }
    o
}

/// The float logit `q_i . k_j / sqrt(d)` of head `h`, in f64.
fn logit(input: &AttentionInput, h: usize, i: usize, j: usize) -> f64 {
    let d = input.q.head_dim();
    let kvh = h * input.k.heads() / input.q.heads();
    let (q, k) = (input.q.head(h), input.k.head(kvh));
    (0..d)
        .map(|e| f64::from(q[i * d + e]) * f64::from(k[j * d + e]))
        .sum::<f64>()
        / (d as f64).sqrt()
}

fn mask_keys(run: &sprint_attention::LayerRun, h: usize, i: usize, nk: usize) -> Vec<usize> {
    let w = run.heads[h].masks.row_words(i);
    (0..nk)
        .filter(|&j| w[j / 64] >> (j % 64) & 1 == 1)
        .collect()
}

fn assert_row_close(run: &sprint_attention::LayerRun, h: usize, i: usize, want: &[f64]) {
    let d = want.len();
    let got = &run.output.head(h)[i * d..(i + 1) * d];
    for e in 0..d {
        assert!(
            got[e].is_finite(),
            "head {h} query {i} element {e}: {}",
            got[e]
        );
        assert!(
            (f64::from(got[e]) - want[e]).abs() <= 1e-5,
            "head {h} query {i} element {e}: {} vs {}",
            got[e],
            want[e]
        );
    }
}

/// A3's candidate search for one query, transcribed as the pointer walk the paper and the
/// patent application describe: every column of the key matrix sorted; per column a max
/// pointer at the end with the largest products (the largest codes when `q_j >= 0`, the
/// smallest when `q_j < 0`) and a min pointer at the other end; each of the `M` iterations
/// takes the largest product under the max pointers and the smallest under the min pointers
/// (ties: the lower column; within a column equal codes in key order), adds each to its
/// key's estimated score and advances that pointer. Only the visible keys are in the columns.
/// Returns the estimated score of every key of `visible` (integer products of the codes).
fn a3_estimates(q: &[i8], k: &[i8], d: usize, visible: &[usize], m: usize) -> Vec<i64> {
    let n = visible.len();
    // Per column: positions into `visible`, in the max walk's and the min walk's order.
    let mut max_walk = Vec::with_capacity(d);
    let mut min_walk = Vec::with_capacity(d);
    for j in 0..d {
        let code = |t: usize| i64::from(k[visible[t] * d + j]);
        let mut up: Vec<usize> = (0..n).collect();
        up.sort_by_key(|&t| (code(t), visible[t]));
        let mut down: Vec<usize> = (0..n).collect();
        down.sort_by_key(|&t| (-code(t), visible[t]));
        if q[j] >= 0 {
            max_walk.push(down);
            min_walk.push(up);
        } else {
            max_walk.push(up);
            min_walk.push(down);
        }
    }
    let mut est = vec![0i64; n];
    let (mut pmax, mut pmin) = (vec![0usize; d], vec![0usize; d]);
    let product = |j: usize, t: usize| i64::from(q[j]) * i64::from(k[visible[t] * d + j]);
    for _ in 0..m {
        // The largest product under the max pointers, the lowest column on ties.
        let mut best: Option<(i64, usize)> = None;
        for j in 0..d {
            if pmax[j] < n {
                let p = product(j, max_walk[j][pmax[j]]);
                if best.is_none_or(|(b, _)| p > b) {
                    best = Some((p, j));
                }
            }
        }
        let (p, j) = best.expect("M <= n d / 2 leaves products");
        est[max_walk[j][pmax[j]]] += p;
        pmax[j] += 1;
        let mut worst: Option<(i64, usize)> = None;
        for j in 0..d {
            if pmin[j] < n {
                let p = product(j, min_walk[j][pmin[j]]);
                if worst.is_none_or(|(b, _)| p < b) {
                    worst = Some((p, j));
                }
            }
        }
        let (p, j) = worst.expect("M <= n d / 2 leaves products");
        est[min_walk[j][pmin[j]]] += p;
        pmin[j] += 1;
    }
    est
}

fn a3_cfg(causal: bool, iterations_per_key: f32, ratio: f32) -> AttentionConfig {
    let mut cfg = AttentionConfig {
        variant: Variant::A3,
        causal,
        ..AttentionConfig::default()
    };
    cfg.peers.a3.iterations_per_key = iterations_per_key;
    cfg.peers.a3.post_score_ratio = ratio;
    cfg
}

/// Checks A3's run on queries `rows` of every head against the transcription: the candidate
/// set (the trace's kept set) exactly, the survivors of the post-scoring cut (except queries
/// with a candidate within 1e-5 logits of the cut, where float rounding may put it on either
/// side: their number is returned) and the output to 1e-5 against exact f64 attention on the
/// survivors; the iterations in the trace when every query is checked. Returns (survivors,
/// candidates, visible pairs, unjudged queries).
fn check_a3(input: &AttentionInput, cfg: &AttentionConfig, rows: &[usize]) -> [u64; 4] {
    let heads = input.q.heads();
    let run = run_layer(cfg, 0, &vec![0.0; heads], input).unwrap();
    let (nq, nk, d) = (input.q.seq(), input.k.seq(), input.q.head_dim());
    let a = &cfg.peers.a3;
    let mut totals = [0u64; 4];
    for h in 0..heads {
        let kvh = h * input.k.heads() / heads;
        let (q8, _) = codes(input.q.head(h));
        let (k8, _) = codes(input.k.head(kvh));
        let mut iterations = 0u64;
        for &i in rows {
            if input.query_valid.as_ref().is_some_and(|m| !m[i]) {
                continue;
            }
            let vis = common::visible(input, cfg.causal, i);
            let m = ((f64::from(a.iterations_per_key) * vis.len() as f64).ceil() as usize)
                .min(vis.len() * d / 2);
            iterations += m as u64;
            let est = a3_estimates(&q8[i * d..(i + 1) * d], &k8, d, &vis, m);
            let cands: Vec<usize> = vis
                .iter()
                .zip(&est)
                .filter(|(_, s)| **s > 0)
                .map(|(&j, _)| j)
                .collect();
            assert_eq!(mask_keys(&run, h, i, nk), cands, "head {h} query {i}");
            let rec = run.heads[h].records[i];
            assert_eq!(rec.kept as usize, cands.len(), "head {h} query {i}");
            totals[1] += cands.len() as u64;
            totals[2] += vis.len() as u64;
            if cands.is_empty() {
                continue;
            }
            let l: Vec<f64> = cands.iter().map(|&j| logit(input, h, i, j)).collect();
            let l_max = l.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let floor = l_max + f64::from(a.post_score_ratio).ln();
            if l.iter().any(|x| (x - floor).abs() <= 1e-5) {
                totals[3] += 1;
                continue;
            }
            let kept: Vec<usize> = cands
                .iter()
                .zip(&l)
                .filter(|(_, x)| **x >= floor)
                .map(|(&j, _)| j)
                .collect();
            assert_eq!(rec.softmax_kept as usize, kept.len(), "head {h} query {i}");
            totals[0] += kept.len() as u64;
            assert_row_close(&run, h, i, &attend_one(input, h, i, &kept));
        }
        if rows.len() == nq {
            assert_eq!(
                run.heads[h].stats.candidate_iterations, iterations,
                "head {h}"
            );
        }
    }
    totals
}

#[test]
fn a3_matches_its_pointer_walk_transcription_with_padding_gqa_and_causal_masking() {
    for causal in [false, true] {
        let mut input = random_input(17, 4, 2, 33, 33, 8);
        let mut valid = vec![true; 33];
        for j in [2, 20, 32] {
            valid[j] = false;
        }
        input.key_valid = Some(valid.clone());
        input.query_valid = Some(valid);
        let rows: Vec<usize> = (0..33).collect();
        for (f, ratio) in [(1.0, 1e-3), (0.25, 0.05), (2.5, 0.0)] {
            let [kept, cands, visible, unjudged] =
                check_a3(&input, &a3_cfg(causal, f, ratio), &rows);
            assert!(
                0 < cands && cands < visible && kept <= cands && unjudged <= 2,
                "causal {causal} M/n {f}: {kept} kept, {cands} candidates of {visible}, {unjudged} unjudged"
            );
        }
    }
}

#[test]
fn a3_takes_ties_in_column_then_key_order() {
    // Small integer inputs whose codes repeat, so that many products tie at the M-th value.
    let mut rng = Lcg(29);
    let mut small = |n: usize| -> Vec<f32> {
        (0..n)
            .map(|_| (rng.below(7) as f32 - 3.0) * 0.5)
            .collect::<Vec<f32>>()
    };
    let (q, k, v) = (small(2 * 12 * 4), small(2 * 12 * 4), small(2 * 12 * 4));
    let mut q = q;
    // Codes reach the largest magnitude, so the scale is exact.
    q[0] = 1.5;
    let input = AttentionInput::new(
        Tensor3::new([2, 12, 4], q).unwrap(),
        Tensor3::new([2, 12, 4], k).unwrap(),
        Tensor3::new([2, 12, 4], v).unwrap(),
    );
    let rows: Vec<usize> = (0..12).collect();
    for f in [0.5, 1.0, 1.5] {
        check_a3(&input, &a3_cfg(true, f, 0.0), &rows);
        check_a3(&input, &a3_cfg(false, f, 0.0), &rows);
    }
}

#[test]
fn a3_at_4096_keys_matches_its_transcription_and_is_attention_on_its_survivors() {
    let (nq, nk) = (96, 4096);
    let input = peaked_input(31, 2, nq, nk, 64);
    for causal in [false, true] {
        // The published parameters (configs/peers/published.toml).
        let cfg = AttentionConfig {
            variant: Variant::A3,
            causal,
            ..AttentionConfig::default()
        };
        let rows: Vec<usize> = (0..nq).step_by(19).collect();
        let [kept, cands, visible, unjudged] = check_a3(&input, &cfg, &rows);
        assert!(
            0 < kept && kept <= cands && cands < visible && unjudged <= 1,
            "causal {causal}: {kept} kept, {cands} candidates of {visible}"
        );
        // A stronger cut (a margin of 1.6 logits) drops candidates here.
        let strong = a3_cfg(causal, 1.0, 0.2);
        let [kept, cands, _, unjudged] = check_a3(&input, &strong, &rows);
        assert!(
            0 < kept && kept < cands && unjudged <= 1,
            "causal {causal}, ratio 0.2: {kept} kept of {cands} candidates"
        );
        // Every query: the output is exact attention restricted to the run's own survivors
        // (its candidates within the cut, from f64 logits) and finite.
        let run = run_layer(&cfg, 0, &[0.0, 0.0], &input).unwrap();
        let ratio = f64::from(cfg.peers.a3.post_score_ratio);
        for h in 0..2 {
            for i in 0..nq {
                let cands = mask_keys(&run, h, i, nk);
                let l: Vec<f64> = cands.iter().map(|&j| logit(&input, h, i, j)).collect();
                let floor = l.iter().cloned().fold(f64::NEG_INFINITY, f64::max) + ratio.ln();
                if l.iter().any(|x| (x - floor).abs() <= 1e-5) {
                    continue;
                }
                let kept: Vec<usize> = cands
                    .iter()
                    .zip(&l)
                    .filter(|(_, x)| **x >= floor)
                    .map(|(&j, _)| j)
                    .collect();
                assert_row_close(&run, h, i, &attend_one(&input, h, i, &kept));
            }
        }
    }
}

/// Energon's filtering, transcribed: Q and K quantised symmetrically per head (scale
/// `(2^(b-1) - 1) / max |x|` in f32, round half to even, clamp), round `r` scoring its keys
/// with the query's levels and the key levels' top `round_key_bits[r]` bits (integer
/// division by `2^(key_bits - b)` rounded down), its threshold `(1 - alpha) mean + alpha max`
/// (`alpha >= 0`) or `(1 + alpha) mean - alpha min` over the scores it computed (f64),
/// keeping the keys at or above it. Returns each round's survivors.
fn energon_rounds(
    cfg: &sprint_core::peers::EnergonConfig,
    q: &[i64],
    k: &[i64],
    d: usize,
    visible: &[usize],
) -> Vec<Vec<usize>> {
    let mut keep = visible.to_vec();
    let mut out = Vec::new();
    for (&b, &alpha) in cfg.round_key_bits.iter().zip(&cfg.round_alpha) {
        let div = 1i64 << (cfg.key_bits - b);
        let score = |j: usize| -> i64 {
            (0..d)
                .map(|e| q[e] * k[j * d + e].div_euclid(div))
                .sum::<i64>()
        };
        let s: Vec<i64> = keep.iter().map(|&j| score(j)).collect();
        let (sum, max, min) = (
            s.iter().sum::<i64>(),
            *s.iter().max().unwrap(),
            *s.iter().min().unwrap(),
        );
        let mean = sum as f64 / s.len() as f64;
        let a = f64::from(alpha);
        let theta = if a >= 0.0 {
            (1.0 - a) * mean + a * max as f64
        } else {
            (1.0 + a) * mean - a * min as f64
        };
        keep = keep
            .iter()
            .zip(&s)
            .filter(|(_, x)| **x as f64 >= theta)
            .map(|(&j, _)| j)
            .collect();
        out.push(keep.clone());
    }
    out
}

/// Symmetric `bits`-bit levels of a head, in f32 arithmetic, rounding half to even.
fn energon_levels(x: &[f32], bits: u32) -> Vec<i64> {
    let m = ((1i64 << (bits - 1)) - 1) as f32;
    let abs_max = x.iter().fold(0f32, |a, v| a.max(v.abs()));
    if abs_max == 0.0 {
        return vec![0; x.len()];
    }
    let s = m / abs_max;
    x.iter()
        .map(|&v| {
            let y = v * s;
            let f = y.floor();
            let r = if y - f > 0.5 || (y - f == 0.5 && f % 2.0 != 0.0) {
                f + 1.0
            } else {
                f
            };
            r.clamp(-m, m) as i64
        })
        .collect()
}

fn energon_cfg(causal: bool, alpha: [f32; 2]) -> AttentionConfig {
    let mut cfg = AttentionConfig {
        variant: Variant::Energon,
        causal,
        ..AttentionConfig::default()
    };
    cfg.peers.energon.round_alpha = alpha.to_vec();
    cfg
}

/// Checks Energon's run on queries `rows` of every head against the transcription: every
/// round's survivors (the last round's as the trace's kept set, exactly), the output to 1e-5
/// against exact f64 attention on them, and the rounds' counts in the trace when every query
/// is checked. Returns (survivors per round, visible pairs).
fn check_energon(input: &AttentionInput, cfg: &AttentionConfig, rows: &[usize]) -> (Vec<u64>, u64) {
    let heads = input.q.heads();
    let run = run_layer(cfg, 0, &vec![0.0; heads], input).unwrap();
    let (nq, nk, d) = (input.q.seq(), input.k.seq(), input.q.head_dim());
    let e = &cfg.peers.energon;
    let mut per_round = vec![0u64; e.round_key_bits.len()];
    let mut visible = 0;
    for h in 0..heads {
        let kvh = h * input.k.heads() / heads;
        let q = energon_levels(input.q.head(h), e.query_bits);
        let k = energon_levels(input.k.head(kvh), e.key_bits);
        let mut head_rounds = vec![0u64; per_round.len()];
        for &i in rows {
            if input.query_valid.as_ref().is_some_and(|m| !m[i]) {
                continue;
            }
            let vis = common::visible(input, cfg.causal, i);
            visible += vis.len() as u64;
            if vis.is_empty() {
                continue;
            }
            let rounds = energon_rounds(e, &q[i * d..(i + 1) * d], &k, d, &vis);
            for (r, s) in rounds.iter().enumerate() {
                head_rounds[r] += s.len() as u64;
            }
            let last = rounds.last().unwrap();
            assert_eq!(&mask_keys(&run, h, i, nk), last, "head {h} query {i}");
            let rec = run.heads[h].records[i];
            assert_eq!(rec.kept as usize, last.len());
            assert_eq!(rec.softmax_kept as usize, last.len());
            assert_row_close(&run, h, i, &attend_one(input, h, i, last));
        }
        if rows.len() == nq {
            assert_eq!(
                &run.heads[h].stats.filter_kept[..head_rounds.len()],
                &head_rounds[..],
                "head {h}"
            );
        }
        for (a, b) in per_round.iter_mut().zip(head_rounds) {
            *a += b;
        }
    }
    (per_round, visible)
}

#[test]
fn energon_matches_its_transcription_with_padding_gqa_and_causal_masking() {
    for causal in [false, true] {
        let mut input = random_input(23, 4, 2, 35, 35, 16);
        let mut valid = vec![true; 35];
        for j in [0, 17, 33, 34] {
            valid[j] = false;
        }
        input.key_valid = Some(valid.clone());
        input.query_valid = Some(valid);
        let rows: Vec<usize> = (0..35).collect();
        for alpha in [[0.0, 0.0], [0.3, -0.2], [-0.5, 0.6]] {
            let (per_round, visible) = check_energon(&input, &energon_cfg(causal, alpha), &rows);
            assert!(
                0 < per_round[1] && per_round[1] <= per_round[0] && per_round[0] < visible,
                "causal {causal} alpha {alpha:?}: {per_round:?} of {visible}"
            );
        }
    }
}

#[test]
fn energon_at_4096_keys_matches_its_transcription_and_alpha_minus_one_is_dense() {
    let (nq, nk) = (96, 4096);
    let input = peaked_input(37, 2, nq, nk, 64);
    for causal in [false, true] {
        // The published parameters: every query checked, so the trace's counts too.
        let cfg = energon_cfg(causal, [0.0, 0.0]);
        assert_eq!(
            cfg.peers.energon,
            sprint_core::peers::PeerConfig::default().energon
        );
        let rows: Vec<usize> = (0..nq).collect();
        let (per_round, visible) = check_energon(&input, &cfg, &rows);
        assert!(
            0 < per_round[1] && per_round[1] < per_round[0] && per_round[0] < visible,
            "causal {causal}: {per_round:?} of {visible}"
        );
        // alpha = -1 puts every round's threshold at its minimum: every visible key is
        // kept, and the output is dense attention.
        let all = energon_cfg(causal, [-1.0, -1.0]);
        let run = run_layer(&all, 0, &[0.0, 0.0], &input).unwrap();
        let reference = dense::attention(&input, causal).unwrap();
        for h in 0..2 {
            let worst = run
                .output
                .head(h)
                .iter()
                .zip(reference.head(h))
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(worst <= 1e-5, "causal {causal} head {h}: worst {worst}");
            let kept: u64 = run.heads[h].records.iter().map(|r| u64::from(r.kept)).sum();
            let expect: u64 = (0..nq)
                .map(|i| common::visible(&input, causal, i).len() as u64)
                .sum();
            assert_eq!(kept, expect);
        }
    }
}
