//! Multinomial logistic regression (softmax regression) for linear probes on frozen
//! embeddings: features standardised with the training mean and deviation (per feature,
//! or one deviation for all: [`LogRegOptions::isotropic`]), L2 penalty,
//! full-batch gradient descent with Nesterov momentum from zero weights. Everything is
//! f64 and sequential, so the same data gives bit-identical weights on every run.

use crate::error::{EvalError, Result};

/// Training settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LogRegOptions {
    /// Full-batch gradient steps (default 400).
    pub iterations: usize,
    /// Step size on the standardised features (default 0.5).
    pub learning_rate: f64,
    /// Nesterov momentum in [0, 1) (default 0.9).
    pub momentum: f64,
    /// L2 penalty `lambda/2 * |W|^2` on the weights, not the biases (default 1e-3).
    pub l2: f64,
    /// Scale every feature by one deviation, the root mean square of the features'
    /// deviations (true), instead of each by its own (false, the default). Per-feature
    /// scaling magnifies near-constant features; a probe that a model is trained through
    /// must not be hypersensitive to them (fine-tuning moves them directly).
    pub isotropic: bool,
}

impl Default for LogRegOptions {
    fn default() -> Self {
        Self {
            iterations: 400,
            learning_rate: 0.5,
            momentum: 0.9,
            l2: 1e-3,
            isotropic: false,
        }
    }
}

/// A trained classifier.
#[derive(Clone, Debug, PartialEq)]
pub struct LogisticRegression {
    classes: usize,
    dim: usize,
    mean: Vec<f64>,
    inv_std: Vec<f64>,
    /// `weights[c * dim + j]`.
    weights: Vec<f64>,
    bias: Vec<f64>,
}

fn softmax_in_place(z: &mut [f64]) {
    let m = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut s = 0.0;
    for x in z.iter_mut() {
        *x = (*x - m).exp();
        s += *x;
    }
    for x in z.iter_mut() {
        *x /= s;
    }
}

impl LogisticRegression {
    /// Trains on `features` (one row per example, all of one length) and `labels` in
    /// `0..classes`.
    pub fn fit(
        features: &[Vec<f32>],
        labels: &[usize],
        classes: usize,
        opts: &LogRegOptions,
    ) -> Result<Self> {
        let n = features.len();
        if n == 0 || n != labels.len() {
            return Err(EvalError::Input(format!(
                "logistic regression: {n} feature rows for {} labels",
                labels.len()
            )));
        }
        let dim = features[0].len();
        if dim == 0 || features.iter().any(|r| r.len() != dim) {
            return Err(EvalError::Input(
                "logistic regression: feature rows differ in length or are empty".into(),
            ));
        }
        if classes < 2 || labels.iter().any(|&l| l >= classes) {
            return Err(EvalError::Input(format!(
                "logistic regression: labels must be in 0..{classes} with at least 2 classes"
            )));
        }
        let mut mean = vec![0.0; dim];
        for r in features {
            for (m, &x) in mean.iter_mut().zip(r) {
                *m += x as f64;
            }
        }
        mean.iter_mut().for_each(|m| *m /= n as f64);
        let mut var = vec![0.0; dim];
        for r in features {
            for ((v, &x), m) in var.iter_mut().zip(r).zip(&mean) {
                *v += (x as f64 - m).powi(2);
            }
        }
        let inv = |v: f64| {
            let s = (v / n as f64).sqrt();
            if s > 1e-12 { 1.0 / s } else { 0.0 }
        };
        let inv_std: Vec<f64> = if opts.isotropic {
            vec![inv(var.iter().sum::<f64>() / dim as f64); dim]
        } else {
            var.iter().map(|&v| inv(v)).collect()
        };
        let x: Vec<f64> = features
            .iter()
            .flat_map(|r| {
                r.iter()
                    .zip(&mean)
                    .zip(&inv_std)
                    .map(|((&x, m), s)| (x as f64 - m) * s)
            })
            .collect();

        let k = classes;
        let mut w = vec![0.0; k * dim];
        let mut b = vec![0.0; k];
        let mut vw = vec![0.0; k * dim];
        let mut vb = vec![0.0; k];
        let mut gw = vec![0.0; k * dim];
        let mut gb = vec![0.0; k];
        let mut z = vec![0.0; k];
        let mut lw = vec![0.0; k * dim];
        let mut lb = vec![0.0; k];
        for _ in 0..opts.iterations {
            // Look-ahead point (Nesterov).
            for i in 0..k * dim {
                lw[i] = w[i] + opts.momentum * vw[i];
            }
            for c in 0..k {
                lb[c] = b[c] + opts.momentum * vb[c];
            }
            gw.iter_mut().for_each(|g| *g = 0.0);
            gb.iter_mut().for_each(|g| *g = 0.0);
            for (i, &y) in labels.iter().enumerate() {
                let xi = &x[i * dim..(i + 1) * dim];
                for c in 0..k {
                    let wc = &lw[c * dim..(c + 1) * dim];
                    z[c] = lb[c] + wc.iter().zip(xi).map(|(a, b)| a * b).sum::<f64>();
                }
                softmax_in_place(&mut z);
                z[y] -= 1.0;
                for c in 0..k {
                    let e = z[c];
                    gb[c] += e;
                    let gc = &mut gw[c * dim..(c + 1) * dim];
                    for (g, &xv) in gc.iter_mut().zip(xi) {
                        *g += e * xv;
                    }
                }
            }
            let inv_n = 1.0 / n as f64;
            for i in 0..k * dim {
                let g = gw[i] * inv_n + opts.l2 * lw[i];
                vw[i] = opts.momentum * vw[i] - opts.learning_rate * g;
                w[i] += vw[i];
            }
            for c in 0..k {
                vb[c] = opts.momentum * vb[c] - opts.learning_rate * gb[c] * inv_n;
                b[c] += vb[c];
            }
        }
        Ok(Self {
            classes,
            dim,
            mean,
            inv_std,
            weights: w,
            bias: b,
        })
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Class scores (logits) of one feature row.
    pub fn decision(&self, row: &[f32]) -> Result<Vec<f64>> {
        if row.len() != self.dim {
            return Err(EvalError::Input(format!(
                "logistic regression: feature row of {} values, trained on {}",
                row.len(),
                self.dim
            )));
        }
        let xs: Vec<f64> = row
            .iter()
            .zip(&self.mean)
            .zip(&self.inv_std)
            .map(|((&x, m), s)| (x as f64 - m) * s)
            .collect();
        Ok((0..self.classes)
            .map(|c| {
                let wc = &self.weights[c * self.dim..(c + 1) * self.dim];
                self.bias[c] + wc.iter().zip(&xs).map(|(a, b)| a * b).sum::<f64>()
            })
            .collect())
    }

    /// The classifier as one affine map on raw (unstandardised) features: `(weights,
    /// bias)` with `weights[c * dim + j]`, so that `decision(x)[c] = bias[c] + sum_j
    /// weights[c * dim + j] * x[j]` (the standardisation folded in).
    pub fn raw_affine(&self) -> (Vec<f64>, Vec<f64>) {
        let mut w = vec![0.0; self.classes * self.dim];
        let mut b = self.bias.clone();
        for c in 0..self.classes {
            for j in 0..self.dim {
                let wj = self.weights[c * self.dim + j] * self.inv_std[j];
                w[c * self.dim + j] = wj;
                b[c] -= wj * self.mean[j];
            }
        }
        (w, b)
    }

    /// Class probabilities of one row.
    pub fn predict_proba(&self, row: &[f32]) -> Result<Vec<f64>> {
        let mut z = self.decision(row)?;
        softmax_in_place(&mut z);
        Ok(z)
    }

    /// Most likely class of each row (the first on ties).
    pub fn predict(&self, rows: &[Vec<f32>]) -> Result<Vec<usize>> {
        rows.iter()
            .map(|r| {
                let z = self.decision(r)?;
                let mut best = 0;
                for c in 1..z.len() {
                    if z[c] > z[best] {
                        best = c;
                    }
                }
                Ok(best)
            })
            .collect()
    }
}
