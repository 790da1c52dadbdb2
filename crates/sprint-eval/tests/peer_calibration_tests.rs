//! The peers' knobs calibrated to a kept fraction (`sprint eval --peer-keep`,
//! `sprint_eval::peer_calibrate`): A3's cut as a quantile on a known distribution, Energon's
//! shared alpha against the variant's own run and a brute-force scan on a small input, and
//! SpAtten's schedule scale against its cascade run layer by layer (exact on a bidirectional
//! model) and a brute-force scan.

use sprint_attention::peers::{energon, spatten};
use sprint_attention::{AttentionInput, Tensor3, run_layer};
use sprint_core::config::{AttentionConfig, Variant};
use sprint_eval::calibrate::ScoreHistogram;
use sprint_eval::peer_calibrate::{PeerStats, spatten_scale_for_keep, spatten_softmax_fraction};

/// A small deterministic generator (64-bit LCG) of values in [-1, 1).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

fn input(seed: u64, heads: usize, n: usize, d: usize) -> AttentionInput {
    let mut rng = Lcg(seed);
    let mut t = |amp: f32| {
        let data = (0..heads * n * d).map(|_| rng.next() * amp).collect();
        Tensor3::new([heads, n, d], data).unwrap()
    };
    let (q, k, v) = (t(2.0), t(2.0), t(1.0));
    AttentionInput::new(q, k, v)
}

#[test]
fn a3_cut_is_the_margin_quantile_over_the_visible_pairs() {
    // 1000 candidate margins evenly over (-10, 0] among 4000 visible pairs.
    let mut s = PeerStats::default();
    let mut h = ScoreHistogram::new();
    for i in 0..1000 {
        h.add(-(i as f32) / 100.0 - 0.001);
    }
    s.a3_margins = h;
    s.a3_visible = 4000;
    // Keep 10 % of the visible pairs: the 400 largest margins, those above -4.
    let r = s.a3_ratio_for_keep(0.1).unwrap().unwrap();
    let m = r.ln();
    assert!((m - -4.0).abs() < 0.02, "margin {m}");
    // More than the candidates' share (25 %): every candidate stays (ratio 0).
    assert_eq!(s.a3_ratio_for_keep(0.5).unwrap(), Some(0.0));
    assert_eq!(PeerStats::default().a3_ratio_for_keep(0.5).unwrap(), None);
    assert!(s.a3_ratio_for_keep(0.0).is_err());
}

#[test]
fn a3_cut_keeps_the_target_on_the_variants_own_candidates() {
    use sprint_attention::peers::a3;
    for causal in [false, true] {
        let inp = input(11, 2, 128, 16);
        let mut cfg = AttentionConfig {
            variant: Variant::A3,
            causal,
            ..AttentionConfig::default()
        };
        let (margins, visible) = a3::candidate_margins(&cfg.peers.a3, causal, &inp).unwrap();
        let mut s = PeerStats::default();
        margins.iter().for_each(|&m| s.a3_margins.add(m));
        s.a3_visible = visible;
        let cands = margins.len() as f64 / visible as f64;
        for keep in [0.05, 0.1] {
            assert!(
                keep < cands,
                "the candidates ({cands}) are fewer than the target"
            );
            cfg.peers.a3.post_score_ratio = s.a3_ratio_for_keep(keep).unwrap().unwrap();
            let run = run_layer(&cfg, 0, &[0.0; 2], &inp).unwrap();
            // The quantile is interpolated inside bins of 1/128 logit.
            let f = softmax_fraction(&run);
            assert!((f - keep).abs() < 0.005, "causal {causal}: {f} vs {keep}");
        }
    }
}

fn energon_cfg(alpha: f32, causal: bool) -> AttentionConfig {
    let mut cfg = AttentionConfig {
        variant: Variant::Energon,
        causal,
        ..AttentionConfig::default()
    };
    let rounds = cfg.peers.energon.round_alpha.len();
    cfg.peers.energon.round_alpha = vec![alpha; rounds];
    cfg
}

/// Fraction of the visible pairs a layer run keeps in the softmax.
fn softmax_fraction(run: &sprint_attention::LayerRun) -> f64 {
    let kept: u64 = run
        .heads
        .iter()
        .flat_map(|h| &h.records)
        .map(|r| u64::from(r.softmax_kept))
        .sum();
    kept as f64 / run.visible_pairs as f64
}

#[test]
fn energon_alpha_reaches_the_target_on_the_variants_own_decisions() {
    for causal in [false, true] {
        let inp = input(7, 2, 96, 16);
        let cfg = energon_cfg(0.0, causal);
        let mut s = PeerStats {
            energon_rounds: cfg.peers.energon.round_key_bits.len(),
            ..PeerStats::default()
        };
        energon::round_scores(&cfg.peers.energon, causal, &inp, 1, &mut |r| {
            s.energon_rows.push(r.concat())
        })
        .unwrap();
        let measured = |a: f32| {
            let run = run_layer(&energon_cfg(a, causal), 0, &[0.0; 2], &inp).unwrap();
            softmax_fraction(&run)
        };
        for keep in [0.1, 0.25, 0.5] {
            let a = s.energon_alpha_for_keep(keep).unwrap().unwrap();
            // Every row sampled: the prediction is the variant's own kept fraction.
            assert_eq!(s.energon_fraction(a), measured(a), "alpha {a}");
            assert!(s.energon_fraction(a) >= keep);
            assert!(s.energon_fraction(a + 2.0f32.powi(-19)) < keep);
            // Brute force over a grid of alphas: no alpha keeps a fraction at or above the
            // target that is closer to it than 0.5 % of the pairs.
            let best = (-256..=256)
                .map(|i| s.energon_fraction(i as f32 / 256.0))
                .filter(|&f| f >= keep)
                .fold(f64::INFINITY, f64::min);
            assert!(
                s.energon_fraction(a) <= best + 0.005,
                "{keep}: {a} vs {best}"
            );
        }
    }
}

#[test]
fn spatten_scale_matches_its_cascade_on_a_bidirectional_model() {
    let (layers, heads, n) = (4, 4, 60);
    let base = AttentionConfig {
        variant: Variant::Spatten,
        ..AttentionConfig::default()
    };
    let sp = &base.peers.spatten;
    for keep in [0.3, 0.5] {
        let s = spatten_scale_for_keep(sp, layers, heads, &[n], false, keep)
            .unwrap()
            .unwrap();
        let f = spatten_softmax_fraction(sp, layers, heads, &[n], false, s);
        assert!(f >= keep);
        assert!(spatten_softmax_fraction(sp, layers, heads, &[n], false, s - 1e-6) < keep);
        // Brute force: the smallest scale on a fine grid that reaches the target.
        let grid = (0..=20000)
            .map(|i| i as f64 / 2000.0)
            .find(|&x| spatten_softmax_fraction(sp, layers, heads, &[n], false, x) >= keep)
            .unwrap();
        assert!(s <= grid && grid - s <= 1.0 / 2000.0, "{s} vs {grid}");
        // The cascade run layer by layer keeps exactly the predicted fraction.
        let mut cfg = base.clone();
        cfg.peers.spatten.token_keep = sprint_eval::peer_calibrate::scaled_token_keep(sp, s);
        let mut cascade = spatten::Cascade::new(layers);
        let (mut kept, mut visible) = (0.0, 0.0);
        for l in 0..layers {
            let inp = input(100 + l as u64, heads, n, 8);
            let plan = cascade.plan(&cfg.peers.spatten, l, None, n, heads).unwrap();
            let run = spatten::run_layer(&cfg, l, &plan, &inp).unwrap();
            kept += softmax_fraction(&run.run) * run.run.visible_pairs as f64;
            visible += run.run.visible_pairs as f64;
            cascade.record(&run).unwrap();
        }
        assert!(
            (kept / visible - f).abs() < 1e-12,
            "{} vs {f}",
            kept / visible
        );
    }
}
