//! Paired comparison of two accuracy runs on the same items: the difference in accuracy,
//! a percentile-bootstrap 95 % confidence interval of it, the discordant items, and the
//! exact McNemar test.
//!
//! Two variants (or two models) scored on the same test documents differ only on the
//! documents one gets right and the other wrong; on a split of a few hundred documents one
//! document is a fraction of a point, so a point difference alone cannot say whether
//! two runs differ. The bootstrap resamples the items with replacement ([`RESAMPLES`]
//! times, a fixed seed: the interval is a deterministic function of the two vectors).

use rand::RngExt;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{EvalError, Result};

/// Bootstrap resamples behind every interval.
pub const RESAMPLES: usize = 10_000;

/// Seed of the bootstrap's random stream (fixed: the interval depends on the data only).
const BOOTSTRAP_SEED: u64 = 0x9a1e_d5ee_d000_0001;

/// A candidate run's accuracy against a reference run's, item by item.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PairedDelta {
    /// Items compared (the same items, in the same order, in both runs).
    pub items: usize,
    /// Items the candidate gets right and the reference wrong.
    pub gained: usize,
    /// Items the reference gets right and the candidate wrong.
    pub lost: usize,
    /// `accuracy(candidate) - accuracy(reference)`, as a fraction (`(gained - lost) / items`).
    pub delta: f64,
    /// 2.5 % and 97.5 % percentiles of the delta over [`RESAMPLES`] paired bootstrap
    /// resamples of the items, as fractions.
    pub ci95: (f64, f64),
    /// Two-sided exact McNemar p-value: the probability, under "both runs are equally
    /// accurate", of a split of the `gained + lost` discordant items at least as uneven
    /// (binomial with p = 1/2; 1 when there is no discordant item).
    pub mcnemar_p: f64,
}

/// Compares `candidate` with `reference`, both one `correct` flag per item in the same order.
pub fn paired_accuracy_delta(reference: &[bool], candidate: &[bool]) -> Result<PairedDelta> {
    if reference.len() != candidate.len() {
        return Err(EvalError::Input(format!(
            "paired comparison needs the same items: the reference has {} and the candidate {}",
            reference.len(),
            candidate.len()
        )));
    }
    let n = reference.len();
    if n == 0 {
        return Err(EvalError::Input("paired comparison of zero items".into()));
    }
    // Per-item difference: +1 gained, -1 lost, 0 same.
    let diff: Vec<i32> = reference
        .iter()
        .zip(candidate)
        .map(|(&r, &c)| i32::from(c) - i32::from(r))
        .collect();
    let gained = diff.iter().filter(|&&d| d > 0).count();
    let lost = diff.iter().filter(|&&d| d < 0).count();
    let delta = (gained as f64 - lost as f64) / n as f64;

    let mut rng = ChaCha8Rng::seed_from_u64(BOOTSTRAP_SEED);
    let mut sums: Vec<i64> = (0..RESAMPLES)
        .map(|_| (0..n).map(|_| diff[rng.random_range(0..n)] as i64).sum())
        .collect();
    sums.sort_unstable();
    let at = |q: f64| sums[((q * (RESAMPLES - 1) as f64).round() as usize).min(RESAMPLES - 1)];
    let ci95 = (at(0.025) as f64 / n as f64, at(0.975) as f64 / n as f64);

    Ok(PairedDelta {
        items: n,
        gained,
        lost,
        delta,
        ci95,
        mcnemar_p: mcnemar_exact(gained, lost),
    })
}

/// Two-sided exact McNemar p-value for `b` and `c` discordant items: `min(1, 2 P(X <=
/// min(b, c)))` with `X ~ Binomial(b + c, 1/2)`, summed in log space.
pub fn mcnemar_exact(b: usize, c: usize) -> f64 {
    let m = b + c;
    if m == 0 {
        return 1.0;
    }
    let k = b.min(c);
    let ln_half_m = -(m as f64) * std::f64::consts::LN_2;
    // ln C(m, i) built up term by term.
    let mut ln_choose = 0.0f64;
    let mut tail = 0.0f64;
    for i in 0..=k {
        if i > 0 {
            ln_choose += ((m - i + 1) as f64).ln() - (i as f64).ln();
        }
        tail += (ln_choose + ln_half_m).exp();
    }
    (2.0 * tail).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mcnemar_matches_hand_computed_binomials() {
        // b = 0, c = 5: 2 * 0.5^5.
        assert!((mcnemar_exact(0, 5) - 0.0625).abs() < 1e-15);
        // b = 1, c = 4: 2 * (1 + 5) / 32.
        assert!((mcnemar_exact(1, 4) - 0.375).abs() < 1e-15);
        // Balanced: capped at 1.
        assert_eq!(mcnemar_exact(3, 3), 1.0);
        assert_eq!(mcnemar_exact(0, 0), 1.0);
        // b = 2, c = 20: 2 * (1 + 22 + 231) / 2^22.
        let want = 2.0 * 254.0 / 4_194_304.0;
        assert!((mcnemar_exact(20, 2) - want).abs() < 1e-15);
    }

    #[test]
    fn counts_and_delta() {
        let r = [true, true, false, false, true];
        let c = [true, false, true, true, true];
        let d = paired_accuracy_delta(&r, &c).unwrap();
        assert_eq!((d.items, d.gained, d.lost), (5, 2, 1));
        assert!((d.delta - 0.2).abs() < 1e-15);
        assert!(d.ci95.0 <= d.delta && d.delta <= d.ci95.1);
        assert!(paired_accuracy_delta(&r, &c[..4]).is_err());
        assert!(paired_accuracy_delta(&[], &[]).is_err());
    }

    #[test]
    fn identical_runs_have_a_zero_interval() {
        let r: Vec<bool> = (0..444).map(|i| i % 7 != 0).collect();
        let d = paired_accuracy_delta(&r, &r).unwrap();
        assert_eq!((d.delta, d.ci95, d.mcnemar_p), (0.0, (0.0, 0.0), 1.0));
    }

    /// At the scale of a real test split the bootstrap interval agrees with the normal
    /// approximation of the paired difference's mean (same centre, half-width within 10 %).
    #[test]
    fn bootstrap_agrees_with_the_normal_approximation_on_444_items() {
        let n = 444;
        // 2 gained, 5 lost, the rest agree.
        let r: Vec<bool> = (0..n).map(|i| i >= 2).collect();
        let c: Vec<bool> = (0..n).map(|i| !(2..7).contains(&i)).collect();
        let d = paired_accuracy_delta(&r, &c).unwrap();
        assert_eq!((d.gained, d.lost), (2, 5));
        let mean = -3.0 / n as f64;
        let var = (7.0 / n as f64 - mean * mean) * n as f64 / (n - 1) as f64;
        let half = 1.96 * (var / n as f64).sqrt();
        let boot_half = (d.ci95.1 - d.ci95.0) / 2.0;
        assert!(
            (boot_half / half - 1.0).abs() < 0.1,
            "bootstrap half-width {boot_half} vs normal {half}"
        );
        let centre = (d.ci95.0 + d.ci95.1) / 2.0;
        assert!((centre - mean).abs() < 0.25 * half, "{centre} vs {mean}");
        // Deterministic.
        assert_eq!(d, paired_accuracy_delta(&r, &c).unwrap());
    }
}
