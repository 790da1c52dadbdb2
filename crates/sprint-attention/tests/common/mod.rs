//! Helpers shared by the integration tests: random tensors and independent references.
#![allow(dead_code, missing_docs)]

use sprint_attention::{AttentionInput, Tensor3};

/// Deterministic pseudo-random numbers (PCG-like LCG), independent of the crate's RNG.
pub struct Lcg(pub u64);

impl Lcg {
    pub fn next_f32(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    pub fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n
    }
}

pub fn random_tensor(rng: &mut Lcg, dims: [usize; 3], amp: f32) -> Tensor3 {
    let n = dims.iter().product();
    Tensor3::new(dims, (0..n).map(|_| rng.next_f32() * amp).collect()).unwrap()
}

pub fn random_input(
    seed: u64,
    heads: usize,
    kv_heads: usize,
    nq: usize,
    nk: usize,
    d: usize,
) -> AttentionInput {
    let mut rng = Lcg(seed);
    let q = random_tensor(&mut rng, [heads, nq, d], 2.0);
    let k = random_tensor(&mut rng, [kv_heads, nk, d], 2.0);
    let v = random_tensor(&mut rng, [kv_heads, nk, d], 1.0);
    AttentionInput::new(q, k, v)
}

/// Visible keys of query i, computed from scratch.
pub fn visible(input: &AttentionInput, causal: bool, i: usize) -> Vec<usize> {
    let nq = input.q.dims[1];
    let nk = input.k.dims[1];
    (0..nk)
        .filter(|&j| input.key_valid.as_ref().is_none_or(|m| m[j]))
        .filter(|&j| !causal || (j as i64) <= i as i64 + nk as i64 - nq as i64)
        .collect()
}

/// Naive f64 attention over `keep(h, i) -> keys` with float logits `q.k / sqrt(d)`.
pub fn masked_softmax_attention(
    input: &AttentionInput,
    keep: impl Fn(usize, usize, &[f64]) -> Vec<usize>,
) -> Vec<f64> {
    let [heads, nq, d] = input.q.dims;
    let [kvh, nk, _] = input.k.dims;
    let group = heads / kvh;
    let mut out = vec![0f64; heads * nq * d];
    for h in 0..heads {
        let g = h / group;
        for i in 0..nq {
            if input.query_valid.as_ref().is_some_and(|m| !m[i]) {
                continue;
            }
            let q = &input.q.data[(h * nq + i) * d..(h * nq + i + 1) * d];
            let logits: Vec<f64> = (0..nk)
                .map(|j| {
                    let k = &input.k.data[(g * nk + j) * d..(g * nk + j + 1) * d];
                    q.iter()
                        .zip(k)
                        .map(|(a, b)| f64::from(*a) * f64::from(*b))
                        .sum::<f64>()
                        / (d as f64).sqrt()
                })
                .collect();
            let keys = keep(h, i, &logits);
            if keys.is_empty() {
                continue;
            }
            let m = keys
                .iter()
                .map(|&j| logits[j])
                .fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = keys.iter().map(|&j| (logits[j] - m).exp()).collect();
            let s: f64 = e.iter().sum();
            for (&j, ej) in keys.iter().zip(&e) {
                let v = &input.v.data[(g * nk + j) * d..(g * nk + j + 1) * d];
                for t in 0..d {
                    out[(h * nq + i) * d + t] += ej / s * f64::from(v[t]);
                }
            }
        }
    }
    out
}

/// Norm-relative error `||a - b|| / ||b||` (0 when both are zero).
pub fn relative_error(a: &[f32], b: &[f64]) -> f64 {
    let num: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (f64::from(*x) - y).powi(2))
        .sum();
    let den: f64 = b.iter().map(|y| y * y).sum();
    if den == 0.0 {
        num.sqrt()
    } else {
        (num / den).sqrt()
    }
}
