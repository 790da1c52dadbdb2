//! A plain f64 transformer toolkit written independently of the crate (row-major loops, no
//! candle): reads safetensors with the `safetensors` crate and runs GPT-2, ALBERT and ViT
//! forwards the straightforward way, for comparison with the candle models.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::Path;

/// Rows of f64 values.
pub type Rows = Vec<Vec<f64>>;

/// Every tensor of a safetensors file as (shape, f64 values).
pub struct Weights(pub HashMap<String, (Vec<usize>, Vec<f64>)>);

impl Weights {
    /// Reads an f32 safetensors file.
    pub fn read(path: &Path) -> Self {
        let bytes = std::fs::read(path).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let mut m = HashMap::new();
        for (name, view) in st.tensors() {
            assert_eq!(view.dtype(), safetensors::Dtype::F32);
            let vals = view
                .data()
                .chunks_exact(4)
                .map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                .collect();
            m.insert(name.to_string(), (view.shape().to_vec(), vals));
        }
        Self(m)
    }

    /// Values of `name`.
    pub fn v(&self, name: &str) -> &[f64] {
        &self
            .0
            .get(name)
            .unwrap_or_else(|| panic!("no tensor {name}"))
            .1
    }

    /// Shape of `name`.
    pub fn shape(&self, name: &str) -> &[usize] {
        &self.0[name].0
    }
}

/// `x W^T + b` with `W` `[out, in]`.
pub fn linear(x: &Rows, w: &[f64], b: Option<&[f64]>, out: usize) -> Rows {
    x.iter()
        .map(|row| {
            let n = row.len();
            (0..out)
                .map(|o| {
                    let mut s = b.map_or(0.0, |b| b[o]);
                    for (i, xi) in row.iter().enumerate() {
                        s += xi * w[o * n + i];
                    }
                    s
                })
                .collect()
        })
        .collect()
}

/// `x W + b` with `W` `[in, out]` (GPT-2 Conv1D).
pub fn conv1d(x: &Rows, w: &[f64], b: &[f64], out: usize) -> Rows {
    x.iter()
        .map(|row| {
            (0..out)
                .map(|o| {
                    let mut s = b[o];
                    for (i, xi) in row.iter().enumerate() {
                        s += xi * w[i * out + o];
                    }
                    s
                })
                .collect()
        })
        .collect()
}

/// LayerNorm of every row.
pub fn layer_norm(x: &Rows, g: &[f64], b: &[f64], eps: f64) -> Rows {
    x.iter()
        .map(|row| {
            let n = row.len() as f64;
            let mean = row.iter().sum::<f64>() / n;
            let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
            let inv = 1.0 / (var + eps).sqrt();
            row.iter()
                .enumerate()
                .map(|(i, v)| (v - mean) * inv * g[i] + b[i])
                .collect()
        })
        .collect()
}

/// Elementwise sum.
pub fn add(a: &Rows, b: &Rows) -> Rows {
    a.iter()
        .zip(b)
        .map(|(x, y)| x.iter().zip(y).map(|(p, q)| p + q).collect())
        .collect()
}

/// erf to about 1e-14: Taylor series below 2.5, continued fraction of erfc above.
pub fn erf(x: f64) -> f64 {
    let a = x.abs();
    let r = if a < 2.5 {
        let mut term = a;
        let mut sum = a;
        let mut n = 0.0;
        loop {
            n += 1.0;
            term *= -a * a / n;
            let t = term / (2.0 * n + 1.0);
            sum += t;
            if t.abs() < 1e-17 {
                break;
            }
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        // erfc(a) = exp(-a^2)/sqrt(pi) * 1/(a + 1/2/(a + 1/(a + 3/2/(a + 2/(a + ...)))))
        let mut f = a;
        for k in (1..60).rev() {
            f = a + (k as f64 / 2.0) / f;
        }
        1.0 - (-a * a).exp() / std::f64::consts::PI.sqrt() / f
    };
    r.copysign(x)
}

/// Exact GELU.
pub fn gelu(x: f64) -> f64 {
    0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2))
}

/// Tanh GELU (`gelu_new`).
pub fn gelu_tanh(x: f64) -> f64 {
    0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x.powi(3))).tanh())
}

/// Applies `f` to every element.
pub fn map(x: &Rows, f: fn(f64) -> f64) -> Rows {
    x.iter()
        .map(|r| r.iter().map(|&v| f(v)).collect())
        .collect()
}

/// Multi-head softmax attention of one sequence; `q`, `k`, `v` are `[seq, heads*d]`.
/// Padding keys are skipped; padding queries give zeros.
pub fn attention(q: &Rows, k: &Rows, v: &Rows, heads: usize, valid: &[bool], causal: bool) -> Rows {
    let n = q.len();
    let d = q[0].len() / heads;
    let mut out = vec![vec![0.0; heads * d]; n];
    for h in 0..heads {
        for i in 0..n {
            if !valid[i] {
                continue;
            }
            let keys: Vec<usize> = (0..n)
                .filter(|&j| valid[j] && (!causal || j <= i))
                .collect();
            let s: Vec<f64> = keys
                .iter()
                .map(|&j| {
                    (0..d)
                        .map(|e| q[i][h * d + e] * k[j][h * d + e])
                        .sum::<f64>()
                        / (d as f64).sqrt()
                })
                .collect();
            let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
            let z: f64 = e.iter().sum();
            for (p, &j) in e.iter().zip(&keys) {
                for c in 0..d {
                    out[i][h * d + c] += p / z * v[j][h * d + c];
                }
            }
        }
    }
    out
}

/// Rows `ids` of a `[rows, dim]` table.
pub fn lookup(table: &[f64], dim: usize, ids: &[u32]) -> Rows {
    ids.iter()
        .map(|&i| table[i as usize * dim..(i as usize + 1) * dim].to_vec())
        .collect()
}
