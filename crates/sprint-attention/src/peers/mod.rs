//! The peer designs' pruning decisions as functional models (the attention-pruning
//! accelerators SPRINT is compared with), each computing one layer into the same per-head
//! blocks as SPRINT's datapath, so that the locality engine and the traces treat every
//! variant alike. Parameters: [`sprint_core::peers`].

pub mod leopard;
pub mod sanger;

use crate::softmax::exp_nonpositive;

/// `sum_l a[l] * b[l]` in lanes of 8 summed in a fixed order (vectorised by the compiler).
#[inline(always)]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ta, tb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            lanes[l] += x[l] * y[l];
        }
    }
    let mut s = lanes.iter().sum::<f32>();
    for (x, y) in ta.iter().zip(tb) {
        s += x * y;
    }
    s
}

/// Exact float attention of query `q` over the keys `kept` of `k` / `v` (`rows x d`,
/// row-major): logits `q . k_j * inv_sqrt_d`, a softmax over them, and the weighted sum of the
/// `v_j` added into `out` (zeros on entry). `logits` and `probs` are scratch.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) fn attend_kept(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    kept: &[usize],
    inv_sqrt_d: f32,
    logits: &mut Vec<f32>,
    probs: &mut Vec<f32>,
    out: &mut [f32],
) {
    let d = q.len();
    logits.clear();
    logits.resize(kept.len(), 0.0);
    for (l, &j) in logits.iter_mut().zip(kept) {
        *l = dot(q, &k[j * d..(j + 1) * d]) * inv_sqrt_d;
    }
    let mx = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    probs.clear();
    probs.resize(logits.len(), 0.0);
    let mut z = 0.0f32;
    for (pr, &l) in probs.iter_mut().zip(logits.iter()) {
        *pr = exp_nonpositive(l - mx);
        z += *pr;
    }
    let inv_z = 1.0 / z;
    for (&j, &pr) in kept.iter().zip(probs.iter()) {
        let w = pr * inv_z;
        for (acc, &x) in out.iter_mut().zip(&v[j * d..(j + 1) * d]) {
            *acc += w * x;
        }
    }
}
