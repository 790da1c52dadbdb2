//! The peer designs' pruning decisions as functional models (the attention-pruning
//! accelerators SPRINT is compared with), each computing one layer into the same per-head
//! blocks as SPRINT's datapath, so that the locality engine and the traces treat every
//! variant alike. Parameters: [`sprint_core::peers`].

pub mod a3;
pub mod energon;
pub mod leopard;
pub mod sanger;
pub mod spatten;

use crate::softmax::exp_nonpositive;

/// Exact float attention of one query over the keys `kept` of `v` (`rows x d`,
/// row-major): `scores[j]` is the query's exact `q . k_j` for every key `j` (one row of the
/// block's score GEMM); the logits `scores[j] * inv_sqrt_d` of the kept keys go through a
/// softmax, and the weighted sum of their `v_j` is added into `out` (zeros on entry).
/// `logits` and `probs` are scratch.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) fn attend_kept(
    scores: &[f32],
    v: &[f32],
    kept: &[usize],
    inv_sqrt_d: f32,
    logits: &mut Vec<f32>,
    probs: &mut Vec<f32>,
    out: &mut [f32],
) {
    let d = out.len();
    logits.clear();
    logits.resize(kept.len(), 0.0);
    for (l, &j) in logits.iter_mut().zip(kept) {
        *l = scores[j] * inv_sqrt_d;
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

/// The exact scores `q_i . k_j` of the query rows `rows` of `q` (`n_queries x d`) against
/// every key of `k` (`n_keys x d`), into `out` (`rows.len() x n_keys`), by one GEMM.
pub(crate) fn exact_scores(
    q: &[f32],
    k: &[f32],
    rows: &std::ops::Range<usize>,
    d: usize,
    out: &mut Vec<f32>,
) {
    let n = k.len() / d.max(1);
    out.resize(rows.len() * n, 0.0);
    crate::gemm::matmul_nt(&q[rows.start * d..rows.end * d], k, out, rows.len(), n, d);
}
