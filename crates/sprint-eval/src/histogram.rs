//! Fixed-bin histograms of scores (logit units) and of softmax mass by score, with the
//! quantiles that calibrations read from them: bins of 1/128 logit over [-64, 64) (values
//! outside fall into the end bins), thresholds interpolated linearly inside their bin.

use crate::error::{EvalError, Result};

/// Lowest score the histograms resolve (logit units).
pub const HIST_MIN: f64 = -64.0;
/// Bins per logit.
pub const HIST_BINS_PER_LOGIT: f64 = 128.0;
/// Number of bins (covering [-64, 64)).
pub const HIST_BINS: usize = 128 * 128;

/// Counts of scores in fixed bins of 1/128 logit over [-64, 64).
#[derive(Clone, Debug, PartialEq)]
pub struct ScoreHistogram {
    counts: Vec<u64>,
}

impl Default for ScoreHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl ScoreHistogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self {
            counts: vec![0; HIST_BINS],
        }
    }

    /// Adds one score (logit units); NaN is ignored, out-of-range values go to the end bins.
    pub fn add(&mut self, x: f32) {
        if x.is_nan() {
            return;
        }
        let b = ((x as f64 - HIST_MIN) * HIST_BINS_PER_LOGIT).floor();
        let b = b.clamp(0.0, (HIST_BINS - 1) as f64) as usize;
        self.counts[b] += 1;
    }

    /// Adds the counts of `other`.
    pub fn merge(&mut self, other: &ScoreHistogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
    }

    /// Number of scores added.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The threshold `Th` such that a fraction `keep` of the scores is `>= Th`
    /// (linear inside the bin). `keep >= 1` gives -inf (keep everything); an empty
    /// histogram gives -inf too. `keep` must be in (0, 1].
    pub fn threshold_for_keep(&self, keep: f64) -> Result<f32> {
        check_keep(keep)?;
        let total = self.total();
        if keep >= 1.0 || total == 0 {
            return Ok(f32::NEG_INFINITY);
        }
        let target = keep * total as f64;
        let width = 1.0 / HIST_BINS_PER_LOGIT;
        let mut above = 0.0;
        for b in (0..HIST_BINS).rev() {
            let c = self.counts[b] as f64;
            if c > 0.0 && above + c >= target {
                let frac = (target - above) / c;
                let upper = HIST_MIN + (b + 1) as f64 * width;
                return Ok((upper - frac * width) as f32);
            }
            above += c;
        }
        Ok(f32::NEG_INFINITY)
    }

    /// Fraction of the scores that are `>= th` (bins counted by their centre).
    pub fn fraction_at_or_above(&self, th: f32) -> f64 {
        let total = self.total();
        if total == 0 {
            return 0.0;
        }
        let width = 1.0 / HIST_BINS_PER_LOGIT;
        let above: u64 = (0..HIST_BINS)
            .filter(|&b| HIST_MIN + (b as f64 + 0.5) * width >= th as f64)
            .map(|b| self.counts[b])
            .sum();
        above as f64 / total as f64
    }
}

/// Checks a target kept fraction: in (0, 1].
pub(crate) fn check_keep(keep: f64) -> Result<()> {
    if keep.is_finite() && keep > 0.0 && keep <= 1.0 {
        Ok(())
    } else {
        Err(EvalError::Input(format!(
            "target keep fraction must be in (0, 1], got {keep}"
        )))
    }
}

/// Softmax mass of the dense attention rows by score, in the bins of [`ScoreHistogram`]:
/// `mass[b]` sums the dense probabilities `p_ij` of the pairs whose score falls in bin `b`,
/// over `rows` query rows (so the total is `rows`).
#[derive(Clone, Debug, PartialEq)]
pub struct MassHistogram {
    mass: Vec<f64>,
    rows: u64,
}

impl Default for MassHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl MassHistogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self {
            mass: vec![0.0; HIST_BINS],
            rows: 0,
        }
    }

    /// Adds one attention row: its visible scores (logits) and their dense probabilities.
    pub fn add_row(&mut self, scores: &[f32], probs: &[f64]) {
        for (&x, &p) in scores.iter().zip(probs) {
            let b = ((x as f64 - HIST_MIN) * HIST_BINS_PER_LOGIT).floor();
            let b = b.clamp(0.0, (HIST_BINS - 1) as f64) as usize;
            self.mass[b] += p;
        }
        self.rows += 1;
    }

    /// Adds the mass and rows of `other`.
    pub fn merge(&mut self, other: &MassHistogram) {
        for (a, b) in self.mass.iter_mut().zip(&other.mass) {
            *a += b;
        }
        self.rows += other.rows;
    }

    /// Query rows added.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The threshold `Th` (logits) such that the pairs with scores `>= Th` carry, on
    /// average over the rows, a share `mass` of the dense softmax mass (linear inside the
    /// bin). `mass >= 1` or no rows gives -inf. `mass` must be in (0, 1].
    pub fn threshold_for_mass(&self, mass: f64) -> Result<f32> {
        if !(mass.is_finite() && mass > 0.0 && mass <= 1.0) {
            return Err(EvalError::Input(format!(
                "target softmax mass must be in (0, 1], got {mass}"
            )));
        }
        if mass >= 1.0 || self.rows == 0 {
            return Ok(f32::NEG_INFINITY);
        }
        let target = mass * self.rows as f64;
        let width = 1.0 / HIST_BINS_PER_LOGIT;
        let mut above = 0.0;
        for b in (0..HIST_BINS).rev() {
            let c = self.mass[b];
            if c > 0.0 && above + c >= target {
                let frac = (target - above) / c;
                let upper = HIST_MIN + (b + 1) as f64 * width;
                return Ok((upper - frac * width) as f32);
            }
            above += c;
        }
        Ok(f32::NEG_INFINITY)
    }
}
