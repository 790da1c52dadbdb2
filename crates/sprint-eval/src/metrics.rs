//! Metrics: accuracy, perplexity from per-token negative log-likelihoods, and the
//! numerically careful pieces they are built from (log-sum-exp, argmax).

use serde::Serialize;

/// Fraction of `predicted[i] == labels[i]` (0 for empty input).
///
/// Panics if the lengths differ (a programming error, not a data error).
pub fn accuracy(predicted: &[usize], labels: &[usize]) -> f64 {
    assert_eq!(predicted.len(), labels.len(), "accuracy: length mismatch");
    if labels.is_empty() {
        return 0.0;
    }
    let right = predicted.iter().zip(labels).filter(|(p, l)| p == l).count();
    right as f64 / labels.len() as f64
}

/// Index of the largest value; the first one on ties; 0 for an empty slice. NaN never wins.
pub fn argmax(xs: &[f32]) -> usize {
    let mut best = 0;
    let mut best_v = f32::NEG_INFINITY;
    for (i, &x) in xs.iter().enumerate() {
        if x > best_v {
            best = i;
            best_v = x;
        }
    }
    best
}

/// `log(sum(exp(x)))` in f64, shifted by the maximum (exact for large logits).
pub fn log_sum_exp(xs: &[f32]) -> f64 {
    let m = xs.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    if !m.is_finite() {
        return m;
    }
    let s: f64 = xs.iter().map(|&x| (x as f64 - m).exp()).sum();
    m + s.ln()
}

/// Negative log-likelihood `-log softmax(logits)[target]` in nats.
pub fn token_nll(logits: &[f32], target: usize) -> f64 {
    log_sum_exp(logits) - logits[target] as f64
}

/// Running sum of token negative log-likelihoods (nats).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Perplexity {
    /// Sum of `-ln p(token)` over the scored tokens.
    pub nll_sum: f64,
    /// Number of scored tokens.
    pub tokens: u64,
}

impl Perplexity {
    /// Adds one token's negative log-likelihood (nats).
    pub fn add(&mut self, nll: f64) {
        self.nll_sum += nll;
        self.tokens += 1;
    }

    /// Adds the counts of `other`.
    pub fn merge(&mut self, other: &Perplexity) {
        self.nll_sum += other.nll_sum;
        self.tokens += other.tokens;
    }

    /// Mean negative log-likelihood per token (nats); NaN when nothing was scored.
    pub fn mean_nll(&self) -> f64 {
        if self.tokens == 0 {
            f64::NAN
        } else {
            self.nll_sum / self.tokens as f64
        }
    }

    /// `exp(mean NLL)`; NaN when nothing was scored.
    pub fn perplexity(&self) -> f64 {
        self.mean_nll().exp()
    }
}
