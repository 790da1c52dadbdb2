//! Synthetic Q/K/V with the structure of real attention: mostly local (nearby tokens score
//! high, so adjacent queries keep overlapping key sets), a few global "sink" tokens, and
//! content noise. For examples, tests and benchmarks; real workloads come from models.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use crate::tensor::{AttentionInput, Tensor3};

/// Shape and structure of a synthetic input.
#[derive(Clone, Debug)]
pub struct SynthSpec {
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (divides `heads`).
    pub kv_heads: usize,
    /// Tokens (queries = keys).
    pub seq: usize,
    /// Elements per vector.
    pub head_dim: usize,
    /// Strength of the positional (local) component relative to content noise (default 3).
    pub locality: f32,
    /// Trailing padding tokens (masked out in both dimensions).
    pub padding: usize,
    /// Seed of the generator.
    pub seed: u64,
}

impl Default for SynthSpec {
    fn default() -> Self {
        Self {
            heads: 4,
            kv_heads: 4,
            seq: 256,
            head_dim: 64,
            locality: 3.0,
            padding: 0,
            seed: 0,
        }
    }
}

/// Generates Q, K, V and padding masks for `spec`.
pub fn generate(spec: &SynthSpec) -> AttentionInput {
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let d = spec.head_dim;
    let n = spec.seq;
    // Positional code: pairs of (cos, sin) at geometric frequencies, like rotary features;
    // q_i . k_j then depends on i - j and peaks at i = j.
    let pairs = d / 2;
    let freq = |m: usize| 0.6f32 / 40f32.powf(m as f32 / pairs.max(1) as f32);
    let pos = |i: usize, t: usize| {
        let m = t / 2;
        let a = i as f32 * freq(m);
        if t.is_multiple_of(2) {
            a.cos()
        } else {
            a.sin()
        }
    };
    let amp = spec.locality / (pairs.max(1) as f32).sqrt() * (d as f32).sqrt().sqrt();
    let mut normal = |s: f32| s * rng.sample::<f32, _>(StandardNormal);
    let sinks = [0usize, n / 3, (2 * n) / 3];
    let mut tensor = |heads: usize, is_query: bool, value: bool| {
        let mut data = Vec::with_capacity(heads * n * d);
        for _h in 0..heads {
            for i in 0..n {
                let sink = !is_query && sinks.contains(&i);
                for t in 0..d {
                    let x = if value {
                        normal(1.0)
                    } else {
                        let p = if t + 1 < d || d.is_multiple_of(2) {
                            pos(i, t)
                        } else {
                            0.0
                        };
                        amp * p + normal(0.5) + if sink { 0.6 * amp } else { 0.0 }
                    };
                    data.push(x);
                }
            }
        }
        Tensor3::new([heads, n, d], data).expect("sizes match")
    };
    let q = tensor(spec.heads, true, false);
    let k = tensor(spec.kv_heads, false, false);
    let v = tensor(spec.kv_heads, false, true);
    let valid: Vec<bool> = (0..n).map(|i| i + spec.padding < n).collect();
    let mut input = AttentionInput::new(q, k, v);
    if spec.padding > 0 {
        input.query_valid = Some(valid.clone());
        input.key_valid = Some(valid);
    }
    input
}

/// `n` values in [-1, 1) from a 64-bit linear congruential generator started at `seed`:
/// cheap, deterministic operands for kernel tests and benchmarks (no structure; use
/// [`generate`] for attention-like inputs).
pub fn uniform_values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}
