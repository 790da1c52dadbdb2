//! SpAtten's cascade (`sprint_attention::peers::spatten`) against a direct transcription of
//! the published algorithm written here in f64 (no code shared with the crate): the kept
//! token and head sets of every layer, the requant decisions of progressive quantisation,
//! and the outputs, on small multi-layer inputs with padding, GQA and causal masking. The
//! kept token sets are also checked against decisions made by SpAtten's public Python code
//! (`tools/reference/spatten_public_topk.py`).

mod common;

use common::random_input;
use sprint_attention::peers::spatten::{Cascade, LayerPlan, run_layer};
use sprint_attention::{AttentionInput, run_layer as run_one_layer};
use sprint_core::config::{AttentionConfig, Variant};
use sprint_core::peers::SpattenConfig;

/// The configuration of the tests: SpAtten with the given schedules.
fn config(token_keep: &[f32], head_keep: &[f32], causal: bool) -> AttentionConfig {
    let mut cfg = AttentionConfig {
        variant: Variant::Spatten,
        causal,
        ..AttentionConfig::default()
    };
    cfg.peers.spatten.token_keep = token_keep.to_vec();
    cfg.peers.spatten.head_keep = head_keep.to_vec();
    cfg
}

/// What the transcription computes for one layer.
struct RefLayer {
    tokens: Vec<bool>,
    heads: Vec<bool>,
    /// `[head][query][element]`.
    output: Vec<Vec<Vec<f64>>>,
    /// Kept keys of each (head, query).
    kept: Vec<Vec<Vec<usize>>>,
    /// Smallest gap between the last kept and the first pruned importance (tokens, heads)
    /// of this layer's decisions (`inf` when nothing was pruned).
    margins: (f64, f64),
    /// Rows recomputed by progressive quantisation, per head: `(query, largest MSB-only
    /// probability)`.
    requant: Vec<Vec<(usize, f64)>>,
    /// Largest MSB-only probability of every computed row (head, query).
    max_msb: Vec<(usize, usize, f64)>,
}

/// The published cascade, transcribed: state is each token's and head's accumulated
/// importance and the sets still alive.
struct RefCascade {
    layers: usize,
    run: usize,
    tok_imp: Vec<f64>,
    head_imp: Vec<f64>,
    tokens: Vec<bool>,
    heads: Vec<bool>,
}

/// `floor(fraction * n)`, at least 1.
fn count(fraction: f32, n: usize) -> usize {
    ((f64::from(fraction) * n as f64 + 1e-6).floor() as usize).clamp(1, n)
}

/// Keeps the `k` alive entries of largest importance (ties: lower index); returns the gap
/// between the last kept and the first dropped importance.
fn keep_top(imp: &[f64], alive: &mut [bool], k: usize) -> f64 {
    let mut order: Vec<usize> = (0..alive.len()).filter(|&j| alive[j]).collect();
    order.sort_by(|&a, &b| imp[b].partial_cmp(&imp[a]).unwrap().then(a.cmp(&b)));
    let gap = if order.len() > k {
        imp[order[k - 1]] - imp[order[k]]
    } else {
        f64::INFINITY
    };
    for &j in order.iter().skip(k) {
        alive[j] = false;
    }
    gap
}

/// Symmetric quantisation of a head to `bits` (scale from the valid rows' absolute maximum,
/// in f32 as the functional model's quantiser, round half to even), returned as integer codes.
fn codes(x: &[f32], d: usize, valid: Option<&Vec<bool>>, bits: u32) -> (Vec<i64>, f64) {
    let m = ((1i64 << (bits - 1)) - 1) as f32;
    let mut a = 0.0f32;
    for (t, row) in x.chunks(d).enumerate() {
        if valid.is_none_or(|v| v[t]) {
            for &e in row {
                a = a.max(e.abs());
            }
        }
    }
    if a == 0.0 {
        return (vec![0; x.len()], 0.0);
    }
    let step = a / m;
    let c = x
        .iter()
        .map(|&e| {
            let y = e / step;
            let f = y.floor();
            let r = if y - f > 0.5 || (y - f == 0.5 && f % 2.0 != 0.0) {
                f + 1.0
            } else {
                f
            };
            r.clamp(-m, m) as i64
        })
        .collect();
    (c, f64::from(step))
}

fn softmax(logits: &[f64]) -> Vec<f64> {
    let mx = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = logits.iter().map(|l| (l - mx).exp()).collect();
    let z: f64 = e.iter().sum();
    e.iter().map(|x| x / z).collect()
}

impl RefCascade {
    fn new(layers: usize) -> Self {
        Self {
            layers,
            run: 0,
            tok_imp: Vec::new(),
            head_imp: Vec::new(),
            tokens: Vec::new(),
            heads: Vec::new(),
        }
    }

    fn layer(
        &mut self,
        sp: &SpattenConfig,
        l: usize,
        input: &AttentionInput,
        causal: bool,
    ) -> RefLayer {
        let (h_n, n, d) = (input.q.heads(), input.q.seq(), input.q.head_dim());
        let group = h_n / input.k.heads();
        let real = |j: usize| input.key_valid.as_ref().is_none_or(|v| v[j]);
        let mut margins = (f64::INFINITY, f64::INFINITY);
        if self.run == 0 {
            self.tokens = (0..n).map(real).collect();
            self.heads = vec![true; h_n];
            self.tok_imp = vec![0.0; n];
            self.head_imp = vec![0.0; h_n];
        } else {
            let entry = |s: &[f32]| s[(l * s.len() / self.layers).min(s.len() - 1)];
            let n_real = (0..n).filter(|&j| real(j)).count();
            margins.0 = keep_top(
                &self.tok_imp,
                &mut self.tokens,
                count(entry(&sp.token_keep), n_real),
            );
            margins.1 = keep_top(
                &self.head_imp,
                &mut self.heads,
                count(entry(&sp.head_keep), h_n),
            );
        }
        let mut output = vec![vec![vec![0.0; d]; n]; h_n];
        let mut kept = vec![vec![Vec::new(); n]; h_n];
        let mut requant = vec![Vec::new(); h_n];
        let mut max_msb = Vec::new();
        let mut tok_add = vec![0.0; n];
        let mut head_add = vec![0.0; h_n];
        let scale = 1.0 / (d as f64).sqrt();
        for h in 0..h_n {
            if !self.heads[h] {
                continue;
            }
            let kvh = h / group;
            let q = input.q.head(h);
            let k = input.k.head(kvh);
            let v = input.v.head(kvh);
            // Progressive quantisation's codes: Q at query_bits, K at msb + lsb bits, its
            // MSB-only value with the LSBs cleared (floor division by 2^lsb).
            let (qc, qs) = codes(q, d, input.query_valid.as_ref(), sp.query_bits);
            let (kc, ks) = codes(
                k,
                d,
                input.key_valid.as_ref(),
                sp.key_msb_bits + sp.key_lsb_bits,
            );
            let lsb = 1i64 << sp.key_lsb_bits;
            for i in 0..n {
                if input.query_valid.as_ref().is_some_and(|v| !v[i]) {
                    continue;
                }
                let cand: Vec<usize> = (0..n)
                    .filter(|&j| self.tokens[j] && (!causal || j <= i))
                    .collect();
                if cand.is_empty() {
                    continue;
                }
                let dot = |j: usize, key: &dyn Fn(usize) -> f64, query: &dyn Fn(usize) -> f64| {
                    (0..d)
                        .map(|e| query(i * d + e) * key(j * d + e))
                        .sum::<f64>()
                        * scale
                };
                let mut probs;
                if sp.progressive_quantization {
                    let qv = |x: usize| qc[x] as f64 * qs;
                    let k_msb = |x: usize| (kc[x].div_euclid(lsb) * lsb) as f64 * ks;
                    let k_full = |x: usize| kc[x] as f64 * ks;
                    probs = softmax(
                        &cand
                            .iter()
                            .map(|&j| dot(j, &k_msb, &qv))
                            .collect::<Vec<_>>(),
                    );
                    let mx = probs.iter().copied().fold(0.0, f64::max);
                    max_msb.push((h, i, mx));
                    if mx < f64::from(sp.requant_threshold) {
                        requant[h].push((i, mx));
                        probs = softmax(
                            &cand
                                .iter()
                                .map(|&j| dot(j, &k_full, &qv))
                                .collect::<Vec<_>>(),
                        );
                    }
                } else {
                    let qv = |x: usize| f64::from(q[x]);
                    let kv = |x: usize| f64::from(k[x]);
                    probs = softmax(&cand.iter().map(|&j| dot(j, &kv, &qv)).collect::<Vec<_>>());
                }
                for (&j, &p) in cand.iter().zip(&probs) {
                    for e in 0..d {
                        output[h][i][e] += p * f64::from(v[j * d + e]);
                    }
                }
                if self.tokens[i] {
                    for (&j, &p) in cand.iter().zip(&probs) {
                        tok_add[j] += p;
                    }
                    head_add[h] += output[h][i].iter().map(|x| x.abs()).sum::<f64>();
                }
                kept[h][i] = cand;
            }
        }
        for (a, b) in self.tok_imp.iter_mut().zip(&tok_add) {
            *a += b;
        }
        for (a, b) in self.head_imp.iter_mut().zip(&head_add) {
            *a += b;
        }
        self.run += 1;
        RefLayer {
            tokens: self.tokens.clone(),
            heads: self.heads.clone(),
            output,
            kept,
            margins,
            requant,
            max_msb,
        }
    }
}

/// Runs `layers` layers of random inputs (seed `seed + l`) through the crate's cascade and
/// the transcription and checks every decision and output.
#[allow(clippy::too_many_arguments)]
fn check_cascade(
    seed: u64,
    layers: usize,
    heads: usize,
    kv_heads: usize,
    n: usize,
    d: usize,
    padding: usize,
    cfg: &AttentionConfig,
) -> (Vec<LayerPlan>, u64) {
    let sp = &cfg.peers.spatten;
    let mut cascade = Cascade::new(layers);
    let mut reference = RefCascade::new(layers);
    let mut plans = Vec::new();
    let mut requant_total = 0;
    for l in 0..layers {
        let mut input = random_input(seed + l as u64, heads, kv_heads, n, n, d);
        if padding > 0 {
            let valid: Vec<bool> = (0..n).map(|t| t < n - padding).collect();
            input.query_valid = Some(valid.clone());
            input.key_valid = Some(valid);
        }
        let plan = cascade
            .plan(sp, l, input.key_valid.as_deref(), n, heads)
            .unwrap();
        let r = reference.layer(sp, l, &input, cfg.causal);
        assert!(
            r.margins.0 > 1e-6 && r.margins.1 > 1e-6,
            "layer {l}: a near tie"
        );
        assert_eq!(plan.tokens, r.tokens, "layer {l}: kept tokens");
        assert_eq!(plan.heads, r.heads, "layer {l}: kept heads");
        let run = run_layer(cfg, l, &plan, &input).unwrap();
        cascade.record(&run).unwrap();
        for h in 0..heads {
            let t = &run.run.heads[h];
            assert_eq!(t.stats.cascade_tokens_kept, plan.tokens_kept() as u64);
            assert_eq!(t.stats.cascade_head_pruned, u64::from(!plan.heads[h]));
            for i in 0..n {
                let row: Vec<usize> = (0..n).filter(|&j| t.masks.get(i, j)).collect();
                assert_eq!(row, r.kept[h][i], "layer {l} head {h} query {i}: kept keys");
                assert_eq!(t.records[i].kept as usize, row.len());
                let got = &run.run.output.head(h)[i * d..(i + 1) * d];
                for (e, (&g, &w)) in got.iter().zip(&r.output[h][i]).enumerate() {
                    assert!(
                        (f64::from(g) - w).abs() <= 1e-5 * (1.0 + w.abs()),
                        "layer {l} head {h} query {i} element {e}: {g} vs {w}"
                    );
                }
            }
            if sp.progressive_quantization {
                // Rows within 1e-6 of the threshold may go either way.
                let thr = f64::from(sp.requant_threshold);
                let sure = r.requant[h].iter().filter(|(_, p)| thr - p > 1e-6).count() as u64;
                let near = r
                    .max_msb
                    .iter()
                    .filter(|(hh, _, p)| *hh == h && (p - thr).abs() <= 1e-6)
                    .count() as u64;
                assert!(
                    t.stats.requant_rows >= sure && t.stats.requant_rows <= sure + near,
                    "layer {l} head {h}: {} requant rows, transcription {sure} (+{near} near)",
                    t.stats.requant_rows
                );
            } else {
                assert_eq!(t.stats.requant_rows, 0);
            }
        }
        requant_total += run.requant_rows;
        plans.push(plan);
    }
    (plans, requant_total)
}

#[test]
fn cascade_matches_the_transcription_with_padding_gqa_and_causal_masking() {
    let token_keep = [1.0, 0.75, 0.5, 0.25];
    let head_keep = [1.0, 0.75, 0.75, 0.5];
    for causal in [false, true] {
        for padding in [0, 5] {
            let cfg = config(&token_keep, &head_keep, causal);
            let (plans, _) = check_cascade(40 + padding as u64, 4, 4, 2, 29, 8, padding, &cfg);
            // The schedule is applied: 29 - padding real tokens, 4 heads.
            let real = 29 - padding;
            let want: Vec<usize> = token_keep.iter().map(|&f| count(f, real)).collect();
            let got: Vec<usize> = plans.iter().map(LayerPlan::tokens_kept).collect();
            assert_eq!(got, want, "causal {causal} padding {padding}");
            let heads: Vec<usize> = plans.iter().map(LayerPlan::heads_kept).collect();
            assert_eq!(heads, vec![4, 3, 3, 2]);
            // Cascade: each layer keeps a subset of the previous layer's tokens and heads.
            for w in plans.windows(2) {
                assert!(w[1].tokens.iter().zip(&w[0].tokens).all(|(a, b)| !a || *b));
                assert!(w[1].heads.iter().zip(&w[0].heads).all(|(a, b)| !a || *b));
            }
        }
    }
}

#[test]
fn schedule_is_read_on_the_model_depth() {
    // Eight layers on a four-entry schedule: two layers per entry.
    let cfg = config(&[1.0, 0.5, 0.5, 0.25], &[1.0], false);
    let (plans, _) = check_cascade(7, 8, 2, 2, 16, 4, 0, &cfg);
    let got: Vec<usize> = plans.iter().map(LayerPlan::tokens_kept).collect();
    assert_eq!(got, vec![16, 16, 8, 8, 8, 8, 4, 4]);
}

#[test]
fn progressive_quantisation_recomputes_the_unconfident_rows() {
    // A threshold between the rows' largest MSB-only probabilities, so that both kinds
    // occur: the median over the first layer's rows.
    let mut cfg = config(&[1.0, 0.6], &[1.0, 0.5], true);
    cfg.peers.spatten.progressive_quantization = true;
    let input = random_input(90, 4, 2, 40, 40, 8);
    let mut probe = RefCascade::new(2);
    let r = probe.layer(&cfg.peers.spatten, 0, &input, true);
    let mut m: Vec<f64> = r.max_msb.iter().map(|x| x.2).collect();
    m.sort_by(f64::total_cmp);
    // Halfway across the first gap of at least 1e-4 from the median up, so that no row
    // lies near it.
    let k = (m.len() / 2..m.len() - 1)
        .find(|&k| m[k + 1] - m[k] > 1e-4)
        .unwrap();
    cfg.peers.spatten.requant_threshold = ((m[k] + m[k + 1]) / 2.0) as f32;
    let (_, requant) = check_cascade(90, 2, 4, 2, 40, 8, 0, &cfg);
    assert!(requant > 20, "{requant} rows recomputed");
    // With the published threshold and 6 + 4 bits on these rows, the decisions are checked
    // the same way.
    let mut cfg = config(&[1.0, 0.6], &[1.0, 0.5], false);
    cfg.peers.spatten.progressive_quantization = true;
    check_cascade(91, 2, 4, 2, 40, 8, 3, &cfg);
}

#[test]
fn a_single_layer_call_names_why_spatten_needs_a_model() {
    let cfg = config(&[1.0], &[1.0], false);
    let input = random_input(1, 2, 2, 8, 8, 4);
    let e = run_one_layer(&cfg, 0, &[f32::NEG_INFINITY; 2], &input).unwrap_err();
    assert!(e.to_string().contains("across the layers"), "{e}");
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    let mut cfg = config(&[1.0, 0.5, 0.3], &[1.0, 0.75, 0.5], true);
    cfg.peers.spatten.progressive_quantization = true;
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let mut c = Cascade::new(3);
            let mut outs = Vec::new();
            for l in 0..3 {
                let input = random_input(300 + l, 4, 4, 150, 150, 16);
                let plan = c
                    .plan(&cfg.peers.spatten, l as usize, None, 150, 4)
                    .unwrap();
                let r = run_layer(&cfg, l as usize, &plan, &input).unwrap();
                c.record(&r).unwrap();
                outs.push((plan, r.run.output.data, r.token_importance, r.requant_rows));
            }
            outs
        })
    };
    let one = run(1);
    let two = run(2);
    for (a, b) in one.iter().zip(&two) {
        assert_eq!(a.0, b.0);
        assert_eq!(a.1, b.1);
        assert_eq!(a.2, b.2);
        assert_eq!(a.3, b.3);
    }
}

#[test]
fn bad_plans_are_errors_not_panics() {
    let cfg = config(&[1.0], &[1.0], false);
    let input = random_input(2, 2, 2, 8, 8, 4);
    let plan = LayerPlan::keep_all(None, 7, 2);
    assert!(run_layer(&cfg, 0, &plan, &input).is_err());
    let mut c = Cascade::new(2);
    c.plan(&cfg.peers.spatten, 0, None, 8, 2).unwrap();
    let e = c.plan(&cfg.peers.spatten, 1, None, 9, 2).unwrap_err();
    assert!(e.to_string().contains("spatten"), "{e}");
    let cross = random_input(3, 2, 2, 4, 8, 4);
    assert!(run_layer(&cfg, 0, &LayerPlan::keep_all(None, 8, 2), &cross).is_err());
}

/// The kept tokens of each layer that SpAtten's public code chose on the same inputs
/// (`tools/reference/spatten_public_topk.py`, which runs `SpAttenKVCache.apply_token_pruning`
/// of mit-han-lab/spatten at commit a0f1388, `spatten_llm/kv_cache_token_pruning.py`, with
/// `start_size = recent_size = 0` and `important_size` = the layer's kept count, on the
/// cache the previous layer left): case (causal), then one list per layer.
const PUBLIC_TOPK: &[(bool, &[&[usize]])] = &[
    (
        false,
        &[
            &[
                0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19,
            ],
            &[1, 4, 5, 6, 7, 8, 10, 11, 12, 14, 16, 17, 18, 19],
            &[1, 5, 7, 8, 10, 11, 12, 16, 18, 19],
            &[1, 5, 8, 10, 16, 18],
        ],
    ),
    (
        true,
        &[
            &[
                0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19,
            ],
            &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14],
            &[0, 1, 2, 3, 4, 5, 6, 7, 8, 10],
            &[0, 1, 2, 3, 4, 5],
        ],
    ),
];

#[test]
fn kept_tokens_match_spattens_public_code() {
    // The script's setting: 4 layers, 4 heads on 2 KV heads, 20 tokens, d = 8, inputs
    // `random_input(500 + layer, ...)`, schedule 1.0, 0.7, 0.5, 0.3, no head pruning.
    assert_eq!(PUBLIC_TOPK.len(), 2);
    for &(causal, layers) in PUBLIC_TOPK {
        let cfg = config(&[1.0, 0.7, 0.5, 0.3], &[1.0], causal);
        let mut c = Cascade::new(4);
        for (l, want) in layers.iter().enumerate() {
            let input = random_input(500 + l as u64, 4, 2, 20, 20, 8);
            let plan = c.plan(&cfg.peers.spatten, l, None, 20, 4).unwrap();
            let got: Vec<usize> = (0..20).filter(|&j| plan.tokens[j]).collect();
            assert_eq!(&got, want, "causal {causal} layer {l}");
            let r = run_layer(&cfg, l, &plan, &input).unwrap();
            c.record(&r).unwrap();
        }
    }
}
