//! Continuous fidelity of a variant to a reference run on the same items, so that a few
//! hundred items still resolve an effect that accuracy (a count of documents) cannot:
//!
//! - classification: the mean Kullback-Leibler divergence of the variant's class posterior
//!   from the reference's, `KL(p_ref || p_var)` in nats, and the number of items whose
//!   predicted class changed (flips);
//! - embeddings: the mean cosine similarity of each item's embedding to the reference's;
//! - perplexity: the change of perplexity against the reference with a paired
//!   block-bootstrap 95 % interval, the scored tokens cut into blocks of [`BLOCK_TOKENS`]
//!   consecutive tokens of a window (neighbouring tokens' losses are correlated, blocks are
//!   resampled whole), [`RESAMPLES`] resamples from a fixed seed;
//! - next-token distributions: the mean per-token KL divergence of a run's next-token
//!   distribution from a reference run's, `KL(p_ref || p_run)` in nats ([`token_kl`]),
//!   with the same block bootstrap ([`block_mean`]): a continuous measure that resolves
//!   small differences on a few windows, where the perplexity change is dominated by the
//!   few tokens whose loss moves most.

use rand::RngExt;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{EvalError, Result};

/// Scored tokens per block of the perplexity bootstrap (a window of 512 tokens gives 4
/// blocks of 128 and a shorter last one of 127).
pub const BLOCK_TOKENS: usize = 128;

/// Bootstrap resamples behind every perplexity interval.
pub const RESAMPLES: usize = 2_000;

/// Seed of the block bootstrap's random stream (fixed: the interval depends on the data only).
const BOOTSTRAP_SEED: u64 = 0x9a1e_d5ee_d000_0002;

/// What an item-level run keeps to be compared with another run on the same items (in
/// memory only: embeddings and per-block sums are not written into reports).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ItemOutputs {
    /// Classification: class posterior of each item.
    pub posteriors: Option<Vec<Vec<f64>>>,
    /// Encoders: the embedding of each item.
    pub embeddings: Option<Vec<Vec<f32>>>,
    /// Perplexity: summed NLL (nats) and scored tokens of each block, in window order.
    pub nll_blocks: Option<Vec<(f64, u64)>>,
    /// Perplexity, when asked for: the next-token logits of every scored position, to
    /// compare later runs with.
    pub next_token: Option<Arc<NextTokenLogits>>,
    /// Perplexity, when reference runs were given: per reference (in the order given), the
    /// summed per-token KL divergence (nats) from the reference's next-token distribution
    /// and the scored tokens of each block, in the blocks of [`Self::nll_blocks`].
    pub kl_blocks: Option<Vec<Vec<(f64, u64)>>>,
}

/// The next-token logits of every scored position of a perplexity run, in pass order
/// (window by window, position by position), kept so that other runs on the same windows
/// can be compared with it token by token ([`token_kl`]). Large: positions x vocabulary
/// floats (4 windows of 512 tokens of SmolLM2: 402 MB).
#[derive(Clone, Default, PartialEq)]
pub struct NextTokenLogits {
    /// Vocabulary size: floats per position.
    pub vocab: usize,
    /// Logits, position after position.
    pub logits: Vec<f32>,
}

impl NextTokenLogits {
    /// Positions kept.
    pub fn positions(&self) -> usize {
        self.logits.len() / self.vocab.max(1)
    }

    /// The logits of position `i` (pass order), if kept.
    pub fn row(&self, i: usize) -> Option<&[f32]> {
        self.logits.get(i * self.vocab..(i + 1) * self.vocab)
    }
}

impl std::fmt::Debug for NextTokenLogits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "NextTokenLogits {{ positions: {}, vocab: {} }}",
            self.positions(),
            self.vocab
        )
    }
}

/// Vocabulary entries per part of [`token_kl`]'s sums: fixed, so the sums are the same
/// whatever the thread count.
const KL_PART: usize = 4096;

/// `KL(softmax(reference) || softmax(run))` in nats between two next-token distributions
/// given by their logits, in f64: with `p = softmax(reference)`,
/// `sum_v p_v (reference_v - run_v) - lse(reference) + lse(run)` (the log-partition
/// functions shifted by each maximum), floored at 0. The sums run over fixed parts of the
/// vocabulary in parallel and are added in order (the same result for any thread count).
/// Panics if the lengths differ (a programming error).
pub fn token_kl(reference: &[f32], run: &[f32]) -> f64 {
    use rayon::prelude::*;
    assert_eq!(
        reference.len(),
        run.len(),
        "token_kl: vocabulary sizes differ"
    );
    let max = |x: &[f32]| f64::from(x.iter().copied().fold(f32::NEG_INFINITY, f32::max));
    let (mr, mx) = (max(reference), max(run));
    if !mr.is_finite() || !mx.is_finite() {
        return f64::NAN;
    }
    // Per part: sum exp(r - mr), sum exp(x - mx), sum exp(r - mr) (r - x).
    let parts: Vec<(f64, f64, f64)> = reference
        .par_chunks(KL_PART)
        .zip(run.par_chunks(KL_PART))
        .map(|(r, x)| {
            let (mut sr, mut sx, mut w) = (0.0f64, 0.0f64, 0.0f64);
            for (&a, &b) in r.iter().zip(x) {
                let (a, b) = (f64::from(a), f64::from(b));
                let e = (a - mr).exp();
                sr += e;
                sx += (b - mx).exp();
                w += e * (a - b);
            }
            (sr, sx, w)
        })
        .collect();
    let (mut sr, mut sx, mut w) = (0.0, 0.0, 0.0);
    for (a, b, c) in parts {
        sr += a;
        sx += b;
        w += c;
    }
    (w / sr - (mr + sr.ln()) + (mx + sx.ln())).max(0.0)
}

/// The mean of a per-token quantity over blocks of consecutive tokens, given each block's
/// sum and token count (`sum / tokens` over all blocks), with its block-bootstrap 95 %
/// interval: [`RESAMPLES`] resamples of the blocks with replacement from a fixed seed, the
/// mean recomputed from the resampled sums.
pub fn block_mean(blocks: &[(f64, u64)]) -> Result<(f64, (f64, f64))> {
    let k = blocks.len();
    let tokens: u64 = blocks.iter().map(|b| b.1).sum();
    if k == 0 || tokens == 0 {
        return Err(EvalError::Input("a block mean over no tokens".into()));
    }
    let mean = |idx: &mut dyn Iterator<Item = usize>| {
        let (mut s, mut n) = (0.0, 0u64);
        for i in idx {
            s += blocks[i].0;
            n += blocks[i].1;
        }
        s / n.max(1) as f64
    };
    let point = mean(&mut (0..k));
    let mut rng = ChaCha8Rng::seed_from_u64(BOOTSTRAP_SEED ^ 0x0006_b10c);
    let mut xs: Vec<f64> = (0..RESAMPLES)
        .map(|_| mean(&mut (0..k).map(|_| rng.random_range(0..k))))
        .collect();
    xs.sort_by(f64::total_cmp);
    let at = |q: f64| xs[((q * (RESAMPLES - 1) as f64).round() as usize).min(RESAMPLES - 1)];
    Ok((point, (at(0.025), at(0.975))))
}

/// A run against a reference run on the same items.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Fidelity {
    /// Items compared.
    pub items: usize,
    /// Mean `KL(p_reference || p_run)` of the class posteriors, nats.
    pub kl_mean: Option<f64>,
    /// 2.5 % and 97.5 % percentiles of the mean KL over [`RESAMPLES`] bootstrap resamples
    /// of the items, nats.
    #[serde(default)]
    pub kl_ci95: Option<(f64, f64)>,
    /// Items whose predicted class (argmax of the posterior) differs from the reference's.
    pub flips: Option<usize>,
    /// Mean cosine similarity of the embeddings to the reference's.
    pub cosine_mean: Option<f64>,
    /// Perplexity change against the reference, percent.
    pub ppl_change_pct: Option<f64>,
    /// 2.5 % and 97.5 % percentiles of the perplexity change over the paired block
    /// bootstrap, percent.
    pub ppl_change_ci95: Option<(f64, f64)>,
    /// Blocks behind the perplexity interval.
    pub blocks: Option<usize>,
    /// Mean per-token KL divergence of the run's next-token distribution from the
    /// reference's, nats ([`token_kl`]).
    #[serde(default)]
    pub token_kl_mean: Option<f64>,
    /// Its block-bootstrap 95 % interval, nats ([`block_mean`]).
    #[serde(default)]
    pub token_kl_ci95: Option<(f64, f64)>,
    /// The largest share of the run's summed NLL increase over the reference that comes
    /// from one window (`None` when the NLL did not increase or the windows are not
    /// known; above 1 when the other windows improved): near or above 1, one window
    /// dominates the perplexity change.
    #[serde(default)]
    pub ppl_top_window_share: Option<f64>,
    /// The window (0-based, in evaluation order) of [`Self::ppl_top_window_share`].
    #[serde(default)]
    pub ppl_top_window: Option<usize>,
}

fn argmax(p: &[f64]) -> usize {
    let mut best = 0;
    for (i, &x) in p.iter().enumerate() {
        if x > p[best] {
            best = i;
        }
    }
    best
}

/// `KL(p || q)` in nats; probabilities are floored at 1e-12 so a zero in `q` stays finite.
pub fn kl_divergence(p: &[f64], q: &[f64]) -> f64 {
    p.iter()
        .zip(q)
        .filter(|(a, _)| **a > 0.0)
        .map(|(&a, &b)| a * (a / b.max(1e-12)).ln())
        .sum::<f64>()
        .max(0.0)
}

/// Cosine similarity of two vectors (1 for two zero vectors, 0 for one).
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        ab += f64::from(x) * f64::from(y);
        aa += f64::from(x) * f64::from(x);
        bb += f64::from(y) * f64::from(y);
    }
    if aa == 0.0 && bb == 0.0 {
        1.0
    } else if aa == 0.0 || bb == 0.0 {
        0.0
    } else {
        ab / (aa.sqrt() * bb.sqrt())
    }
}

fn same_len(what: &str, a: usize, b: usize) -> Result<()> {
    if a != b {
        return Err(EvalError::Input(format!(
            "fidelity needs the same items: the reference has {a} {what} and the run {b}"
        )));
    }
    Ok(())
}

/// Perplexity change (percent) of `run` against `reference` over the same blocks, with the
/// paired block-bootstrap 95 % interval: the blocks are resampled with replacement and the
/// change recomputed from the resampled sums of both runs.
pub fn ppl_change(reference: &[(f64, u64)], run: &[(f64, u64)]) -> Result<(f64, (f64, f64))> {
    same_len("blocks", reference.len(), run.len())?;
    if reference.is_empty() {
        return Err(EvalError::Input(
            "perplexity change over zero blocks".into(),
        ));
    }
    for (a, b) in reference.iter().zip(run) {
        if a.1 != b.1 {
            return Err(EvalError::Input(format!(
                "perplexity blocks differ in scored tokens ({} against {})",
                a.1, b.1
            )));
        }
    }
    let change = |r: f64, c: f64, n: u64| 100.0 * (((c - r) / n as f64).exp() - 1.0);
    let (r, c, n) = sums(reference, run, 0..reference.len());
    let point = change(r, c, n);
    let k = reference.len();
    let mut rng = ChaCha8Rng::seed_from_u64(BOOTSTRAP_SEED);
    let mut xs: Vec<f64> = (0..RESAMPLES)
        .map(|_| {
            let (r, c, n) = sums(reference, run, (0..k).map(|_| rng.random_range(0..k)));
            change(r, c, n)
        })
        .collect();
    xs.sort_by(f64::total_cmp);
    let at = |q: f64| xs[((q * (RESAMPLES - 1) as f64).round() as usize).min(RESAMPLES - 1)];
    Ok((point, (at(0.025), at(0.975))))
}

/// The percentile-bootstrap 95 % interval of the mean of `xs` ([`RESAMPLES`] resamples of
/// the items, a fixed seed).
pub fn mean_interval(xs: &[f64]) -> (f64, f64) {
    let n = xs.len();
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(BOOTSTRAP_SEED ^ 0x6b1);
    let mut means: Vec<f64> = (0..RESAMPLES)
        .map(|_| (0..n).map(|_| xs[rng.random_range(0..n)]).sum::<f64>() / n as f64)
        .collect();
    means.sort_by(f64::total_cmp);
    let at = |q: f64| means[((q * (RESAMPLES - 1) as f64).round() as usize).min(RESAMPLES - 1)];
    (at(0.025), at(0.975))
}

fn sums(
    reference: &[(f64, u64)],
    run: &[(f64, u64)],
    idx: impl Iterator<Item = usize>,
) -> (f64, f64, u64) {
    let (mut r, mut c, mut n) = (0.0, 0.0, 0u64);
    for i in idx {
        r += reference[i].0;
        c += run[i].0;
        n += reference[i].1;
    }
    (r, c, n.max(1))
}

/// The window whose blocks (`per_window` consecutive blocks each) contribute most to the
/// summed NLL increase of `run` over `reference`, and its share of that increase (above 1
/// when the other windows improved), or `None` when the NLL did not increase.
pub fn top_window_share(
    reference: &[(f64, u64)],
    run: &[(f64, u64)],
    per_window: usize,
) -> Option<(usize, f64)> {
    let per_window = per_window.max(1);
    let diffs: Vec<f64> = reference
        .chunks(per_window)
        .zip(run.chunks(per_window))
        .map(|(a, b)| a.iter().zip(b).map(|(x, y)| y.0 - x.0).sum())
        .collect();
    let total: f64 = diffs.iter().sum();
    if total <= 0.0 {
        return None;
    }
    let (w, top) = diffs
        .iter()
        .copied()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(&b.1))?;
    Some((w, top / total))
}

/// The fidelity of `run` to `reference` over whatever both kept.
pub fn compare(reference: &ItemOutputs, run: &ItemOutputs) -> Result<Fidelity> {
    let mut f = Fidelity::default();
    if let (Some(p), Some(q)) = (&reference.posteriors, &run.posteriors) {
        same_len("posteriors", p.len(), q.len())?;
        f.items = p.len();
        if !p.is_empty() {
            let kl: Vec<f64> = p.iter().zip(q).map(|(a, b)| kl_divergence(a, b)).collect();
            f.kl_mean = Some(kl.iter().sum::<f64>() / kl.len() as f64);
            f.kl_ci95 = Some(mean_interval(&kl));
        }
        f.flips = Some(
            p.iter()
                .zip(q)
                .filter(|(a, b)| argmax(a) != argmax(b))
                .count(),
        );
    }
    if let (Some(a), Some(b)) = (&reference.embeddings, &run.embeddings) {
        same_len("embeddings", a.len(), b.len())?;
        f.items = a.len();
        if !a.is_empty() {
            f.cosine_mean =
                Some(a.iter().zip(b).map(|(x, y)| cosine(x, y)).sum::<f64>() / a.len() as f64);
        }
    }
    if let (Some(a), Some(b)) = (&reference.nll_blocks, &run.nll_blocks)
        && !a.is_empty()
    {
        let (c, ci) = ppl_change(a, b)?;
        f.ppl_change_pct = Some(c);
        f.ppl_change_ci95 = Some(ci);
        f.blocks = Some(a.len());
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kl_and_cosine_match_hand_values() {
        let p = [0.5, 0.5];
        let q = [0.25, 0.75];
        let want = 0.5 * (2.0f64).ln() + 0.5 * (0.5f64 / 0.75).ln();
        assert!((kl_divergence(&p, &q) - want).abs() < 1e-15);
        assert_eq!(kl_divergence(&p, &p), 0.0);
        assert!((cosine(&[1.0, 0.0], &[1.0, 1.0]) - 0.5f64.sqrt()).abs() < 1e-12);
        assert_eq!(cosine(&[0.0, 0.0], &[0.0, 0.0]), 1.0);
    }

    /// `KL(p || q)` by hand for logits whose softmax is known: reference logits
    /// `[0, ln 3]` give `p = [1/4, 3/4]`, run logits `[5, 5]` (shifted: the same) give
    /// `q = [1/2, 1/2]`; `KL = 1/4 ln(1/2) + 3/4 ln(3/2)`.
    #[test]
    fn token_kl_matches_a_hand_computed_case() {
        let p = [0.0f32, 3.0f32.ln()];
        let q = [5.0f32, 5.0];
        let want = 0.25 * (0.5f64).ln() + 0.75 * (1.5f64).ln();
        let got = token_kl(&p, &q);
        assert!((got - want).abs() < 1e-7, "{got} against {want}");
        assert_eq!(token_kl(&q, &q), 0.0);
        // The same as the definition on probabilities, over a vocabulary of several parts.
        let n = 3 * KL_PART + 17;
        let a: Vec<f32> = (0..n).map(|i| ((i * 7919) % 1000) as f32 / 100.0).collect();
        let b: Vec<f32> = (0..n)
            .map(|i| ((i * 104729) % 1000) as f32 / 120.0)
            .collect();
        let softmax = |x: &[f32]| {
            let m = x.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            let e: Vec<f64> = x.iter().map(|&v| (v as f64 - m).exp()).collect();
            let z: f64 = e.iter().sum();
            e.into_iter().map(|v| v / z).collect::<Vec<_>>()
        };
        let direct = kl_divergence(&softmax(&a), &softmax(&b));
        assert!((token_kl(&a, &b) - direct).abs() < 1e-9 * direct.max(1.0));
    }

    /// Blocks of equal size: the mean of the block means; one block: a zero-width
    /// interval; the interval holds the point and narrows with more blocks.
    #[test]
    fn block_mean_by_hand() {
        let (m, ci) = block_mean(&[(2.0, 4), (6.0, 4)]).unwrap();
        assert_eq!(m, 1.0);
        assert!(
            ci.0 >= 0.5 && ci.1 <= 1.5 && ci.0 <= m && m <= ci.1,
            "{ci:?}"
        );
        // Resamples of two blocks: both low (0.5), mixed (1.0), both high (1.5).
        assert_eq!((ci.0, ci.1), (0.5, 1.5));
        assert_eq!(block_mean(&[(3.0, 10)]).unwrap(), (0.3, (0.3, 0.3)));
        let noisy = |k: usize| -> Vec<(f64, u64)> {
            (0..k)
                .map(|i| (128.0 * (0.1 + if i % 2 == 0 { 0.05 } else { -0.05 }), 128))
                .collect()
        };
        let (m16, c16) = block_mean(&noisy(16)).unwrap();
        let (_, c256) = block_mean(&noisy(256)).unwrap();
        assert!((m16 - 0.1).abs() < 1e-12 && c16.0 < m16 && m16 < c16.1);
        assert!(c256.1 - c256.0 < 0.5 * (c16.1 - c16.0));
        assert!(block_mean(&[]).is_err());
    }

    /// Windows of two blocks: increases 0.5 and 1.5 in window 0 and 1, -0.5 in window 2
    /// (total 1.5); window 1 carries all of it.
    #[test]
    fn top_window_share_by_hand() {
        let r = [(1.0, 10); 6];
        let x = [
            (1.5, 10),
            (1.0, 10),
            (2.0, 10),
            (1.5, 10),
            (0.5, 10),
            (1.0, 10),
        ];
        assert_eq!(top_window_share(&r, &x, 2), Some((1, 1.0)));
        assert_eq!(top_window_share(&r, &x, 6), Some((0, 1.0)));
        assert_eq!(top_window_share(&r, &r, 2), None);
    }

    #[test]
    fn flips_count_changed_predictions() {
        let a = ItemOutputs {
            posteriors: Some(vec![vec![0.9, 0.1], vec![0.4, 0.6], vec![0.7, 0.3]]),
            ..Default::default()
        };
        let b = ItemOutputs {
            posteriors: Some(vec![vec![0.8, 0.2], vec![0.6, 0.4], vec![0.2, 0.8]]),
            ..Default::default()
        };
        let f = compare(&a, &b).unwrap();
        assert_eq!((f.items, f.flips), (3, Some(2)));
        assert!(f.kl_mean.unwrap() > 0.0);
        let (lo, hi) = f.kl_ci95.unwrap();
        assert!(
            lo <= f.kl_mean.unwrap() && f.kl_mean.unwrap() <= hi,
            "{f:?}"
        );
        let same = compare(&a, &a).unwrap();
        assert_eq!(same.kl_ci95, Some((0.0, 0.0)));
        assert_eq!((same.flips, same.kl_mean), (Some(0), Some(0.0)));
    }

    /// A uniform shift of every block's mean NLL by `d` nats is a change of exactly
    /// `exp(d) - 1`, with a zero-width interval; noise around it gives an interval that
    /// holds the point and narrows with more blocks.
    #[test]
    fn block_bootstrap_interval() {
        let d = 0.1;
        let base: Vec<(f64, u64)> = (0..40)
            .map(|i| (128.0 * (3.0 + 0.01 * i as f64), 128))
            .collect();
        let shifted: Vec<(f64, u64)> = base.iter().map(|&(s, n)| (s + d * n as f64, n)).collect();
        let (c, ci) = ppl_change(&base, &shifted).unwrap();
        let want = 100.0 * (d.exp() - 1.0);
        assert!(
            (c - want).abs() < 1e-9 && (ci.0 - want).abs() < 1e-9 && (ci.1 - want).abs() < 1e-9
        );
        type Blocks = Vec<(f64, u64)>;
        let noisy = |k: usize| -> (Blocks, Blocks) {
            let b: Blocks = (0..k).map(|_| (128.0 * 3.0, 128)).collect();
            let r: Vec<(f64, u64)> = (0..k)
                .map(|i| (128.0 * (3.0 + d + if i % 2 == 0 { 0.2 } else { -0.2 }), 128))
                .collect();
            (b, r)
        };
        let (b, r) = noisy(16);
        let (c16, ci16) = ppl_change(&b, &r).unwrap();
        assert!(ci16.0 < c16 && c16 < ci16.1, "{ci16:?} {c16}");
        let (b, r) = noisy(256);
        let (_, ci256) = ppl_change(&b, &r).unwrap();
        assert!(ci256.1 - ci256.0 < 0.5 * (ci16.1 - ci16.0));
        assert_eq!(ppl_change(&b, &r).unwrap(), ppl_change(&b, &r).unwrap());
        assert!(ppl_change(&b, &r[1..]).is_err());
    }
}
