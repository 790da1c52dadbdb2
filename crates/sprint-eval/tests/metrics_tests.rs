//! Metrics against hand-computed values.

use sprint_eval::metrics::{Perplexity, accuracy, argmax, log_sum_exp, token_nll};

#[test]
fn accuracy_counts_matches() {
    assert_eq!(accuracy(&[0, 1, 2, 1], &[0, 1, 1, 1]), 0.75);
    assert_eq!(accuracy(&[3], &[3]), 1.0);
    assert_eq!(accuracy(&[], &[]), 0.0);
}

#[test]
fn argmax_first_on_ties_and_ignores_nan() {
    assert_eq!(argmax(&[1.0, 3.0, 3.0, -1.0]), 1);
    assert_eq!(argmax(&[f32::NAN, 2.0, 1.0]), 1);
    assert_eq!(argmax(&[]), 0);
}

#[test]
fn perplexity_from_known_log_probs() {
    // Probabilities 1/2, 1/4, 1/8: mean NLL = ln 2 * (1 + 2 + 3) / 3 = 2 ln 2, ppl = 4.
    let mut p = Perplexity::default();
    for prob in [0.5f64, 0.25, 0.125] {
        p.add(-prob.ln());
    }
    assert_eq!(p.tokens, 3);
    assert!((p.mean_nll() - 2.0 * 2f64.ln()).abs() < 1e-12);
    assert!((p.perplexity() - 4.0).abs() < 1e-12);
    // Merging two halves equals the whole.
    let mut a = Perplexity::default();
    a.add(-(0.5f64).ln());
    let mut b = Perplexity::default();
    b.add(-(0.25f64).ln());
    b.add(-(0.125f64).ln());
    a.merge(&b);
    assert!((a.perplexity() - 4.0).abs() < 1e-12);
    assert!(Perplexity::default().perplexity().is_nan());
}

#[test]
fn token_nll_matches_log_softmax() {
    // logits [0, ln 3]: softmax = [1/4, 3/4].
    let logits = [0.0f32, 3f32.ln()];
    assert!((token_nll(&logits, 0) - 4f64.ln()).abs() < 1e-6);
    assert!((token_nll(&logits, 1) - (4.0f64 / 3.0).ln()).abs() < 1e-6);
    // Uniform over 8: NLL = ln 8, independent of the shift; large logits stay exact.
    let big = [1000.0f32; 8];
    assert!((token_nll(&big, 5) - 8f64.ln()).abs() < 1e-9);
    assert!((log_sum_exp(&[1000.0, 1000.0]) - (1000.0 + 2f64.ln())).abs() < 1e-9);
}
