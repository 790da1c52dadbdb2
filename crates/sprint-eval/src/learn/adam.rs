//! Adam (Kingma & Ba, arXiv 1412.6980), bias-corrected, in f64 on the host: the optimiser
//! of the thresholds and the fine-tuned tensors. Its moments are the state a checkpoint
//! keeps ([`super::Checkpoint`]'s `m` and `v`), so a resumed run continues bit for bit.

use serde::{Deserialize, Serialize};

/// Decay of the first moments per step (dimensionless).
pub const ADAM_BETA1: f64 = 0.9;

/// Decay of the second moments per step (dimensionless).
pub const ADAM_BETA2: f64 = 0.999;

/// Added to the root of the bias-corrected second moment (units of the gradient) so an
/// update never divides by zero.
pub const ADAM_EPSILON: f64 = 1e-8;

/// Adam's state: one first and one second moment per parameter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Adam {
    /// First moments: the running mean of the gradients (units of the gradient, loss per
    /// unit of the parameter).
    pub m: Vec<f64>,
    /// Second moments: the running mean of the squared gradients (units of the gradient,
    /// squared); never negative.
    pub v: Vec<f64>,
}

impl Adam {
    /// Zero moments for `n` parameters (the state before the first step).
    pub fn new(n: usize) -> Self {
        Self {
            m: vec![0.0; n],
            v: vec![0.0; n],
        }
    }

    /// The update of step `step` (0-based: the bias correction uses `step + 1`): moves
    /// `params[i]` for every `i` from `first` on (parameters before `first` and their
    /// moments stay as they are) by its gradient `grads[i]`, at learning rate `lr(i)`
    /// (units of the parameter per step).
    pub fn step(
        &mut self,
        step: usize,
        params: &mut [f64],
        grads: &[f32],
        first: usize,
        lr: impl Fn(usize) -> f64,
    ) {
        let (b1, b2, eps) = (ADAM_BETA1, ADAM_BETA2, ADAM_EPSILON);
        let k = (step + 1) as i32;
        for (i, &gi) in grads.iter().enumerate().take(params.len()).skip(first) {
            let gi = f64::from(gi);
            let lr = lr(i);
            self.m[i] = b1 * self.m[i] + (1.0 - b1) * gi;
            self.v[i] = b2 * self.v[i] + (1.0 - b2) * gi * gi;
            let mh = self.m[i] / (1.0 - b1.powi(k));
            let vh = self.v[i] / (1.0 - b2.powi(k));
            params[i] -= lr * mh / (vh.sqrt() + eps);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first step of Adam moves every parameter by about `lr` against its gradient's
    /// sign (the bias-corrected ratio is `g / |g|`); parameters before `first` stay.
    #[test]
    fn first_step_moves_by_the_learning_rate() {
        let mut adam = Adam::new(3);
        let mut p = vec![1.0, 1.0, 1.0];
        adam.step(0, &mut p, &[5.0, 2.0, -0.5], 1, |i| {
            if i < 2 { 0.1 } else { 0.01 }
        });
        assert_eq!(p[0], 1.0);
        assert_eq!((adam.m[0], adam.v[0]), (0.0, 0.0));
        assert!((p[1] - 0.9).abs() < 1e-8, "{}", p[1]);
        assert!((p[2] - 1.01).abs() < 1e-8, "{}", p[2]);
        assert!(adam.v.iter().all(|&v| v >= 0.0));
    }
}
