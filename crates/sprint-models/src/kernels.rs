//! Fused f32 kernels for the hot parts of a forward pass: a linear layer with its bias and
//! activation, residual + layer norm, and dense masked softmax attention.
//!
//! They work on contiguous row-major slices taken from candle tensors and return new
//! buffers, so a layer costs one allocation and one pass over memory instead of one per
//! candle op. Work is split into blocks whose size does not depend on the thread count and
//! each block runs the single-threaded GEMM of `sprint_attention::gemm`, so results are
//! bit-identical whatever the size of the rayon pool.

use candle_core::{Storage, Tensor};
use rayon::prelude::*;
use sprint_attention::gemm::{matmul_nn, matmul_nn_acc, matmul_nt, matmul_nt_acc};

use crate::activation::Activation;
use crate::error::{CandleContext, ModelError, Result};
use crate::fastmath;

/// Rows of a linear layer's input per parallel block.
const LINEAR_BLOCK_ROWS: usize = 128;

/// Query rows per parallel block of [`dense_attention`].
const ATTENTION_BLOCK_ROWS: usize = 128;

/// Runs `f` on the contiguous f32 data of `t` (made contiguous first if needed).
pub fn with_f32<R>(t: &Tensor, what: &str, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let t = t.contiguous().op(what)?;
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else {
        return Err(ModelError::Input(format!(
            "{what}: tensor is not on the CPU"
        )));
    };
    let data = cpu.as_slice::<f32>().op(what)?;
    let (lo, hi) = layout
        .contiguous_offsets()
        .ok_or_else(|| ModelError::Input(format!("{what}: tensor is not contiguous")))?;
    Ok(f(&data[lo..hi]))
}

/// `y = act(x W^T + b)` for `x` `[rows, in_dim]`, `W^T` given as `weight_t`
/// `[in_dim, out_dim]` (row-major), `b` `[out_dim]`; returns `y` `[rows, out_dim]`
/// row-major.
///
/// With `W^T` row-major the GEMM reads the weight as column-major panels, which it copies
/// whole; given `W` row-major it would gather a transposed copy element by element for every
/// block of rows. Both compute the same products in the same order (the same bits), except
/// where the `gemm` crate takes a layout-dependent special path (a block of one row, at
/// most 256 outputs in a block, at most two inputs): those blocks multiply by `W` as
/// before, so results do not depend on the layout at all.
pub fn linear(
    x: &[f32],
    in_dim: usize,
    weight_t: &[f32],
    bias: Option<&[f32]>,
    act: Option<Activation>,
) -> Vec<f32> {
    let out_dim = weight_t.len() / in_dim.max(1);
    debug_assert_eq!(weight_t.len(), out_dim * in_dim);
    debug_assert!(bias.is_none_or(|b| b.len() == out_dim));
    let rows = x.len() / in_dim.max(1);
    // Start from the bias rows (one pass, no zero fill) and let the GEMM accumulate.
    let mut y = Vec::with_capacity(rows * out_dim);
    match bias {
        Some(b) => (0..rows).for_each(|_| y.extend_from_slice(b)),
        None => y.resize(rows * out_dim, 0.0),
    }
    if out_dim == 0 {
        return y;
    }
    // `W` row-major, only if a block takes one of the `gemm` crate's special paths.
    let special = |m: usize| m < 2 || out_dim < 2 || in_dim <= 2 || m * out_dim <= 256;
    let last = match rows % LINEAR_BLOCK_ROWS {
        0 => LINEAR_BLOCK_ROWS.min(rows),
        r => r,
    };
    let weight = (rows > 0 && (special(LINEAR_BLOCK_ROWS.min(rows)) || special(last)))
        .then(|| transpose(weight_t, in_dim, out_dim));
    y.par_chunks_mut(LINEAR_BLOCK_ROWS * out_dim)
        .zip(x.par_chunks(LINEAR_BLOCK_ROWS * in_dim))
        .for_each(|(yb, xb)| {
            let m = xb.len() / in_dim;
            match &weight {
                Some(w) if special(m) => {
                    if bias.is_some() {
                        matmul_nt_acc(xb, w, yb, m, out_dim, in_dim);
                    } else {
                        matmul_nt(xb, w, yb, m, out_dim, in_dim);
                    }
                }
                _ => {
                    if bias.is_some() {
                        matmul_nn_acc(xb, weight_t, yb, m, out_dim, in_dim);
                    } else {
                        matmul_nn(xb, weight_t, yb, m, out_dim, in_dim);
                    }
                }
            }
            if let Some(act) = act {
                act.apply_slice(yb);
            }
        });
    y
}

/// `a` `[rows, cols]` row-major, transposed to `[cols, rows]` row-major.
pub fn transpose(a: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    debug_assert_eq!(a.len(), rows * cols);
    let mut out = Vec::with_capacity(a.len());
    for c in 0..cols {
        out.extend((0..rows).map(|r| a[r * cols + c]));
    }
    out
}

/// Splits the output of a fused Q/K/V projection, `[batch, seq, (heads + 2 kv_heads) d]`,
/// into `q` `[batch, heads, seq, d]` and `k`, `v` `[batch, kv_heads, seq, d]`;
/// `heads = [heads, kv_heads]`.
pub fn split_heads(
    qkv: &[f32],
    batch: usize,
    seq: usize,
    heads: [usize; 2],
    d: usize,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let [hq, hkv] = heads;
    let width = (hq + 2 * hkv) * d;
    debug_assert_eq!(qkv.len(), batch * seq * width);
    // Gathered in output order: one sequential pass, no zero fill.
    let part = |first_head: usize, count: usize| -> Vec<f32> {
        let mut out = Vec::with_capacity(batch * count * seq * d);
        for b in 0..batch {
            for h in first_head..first_head + count {
                for t in 0..seq {
                    let src = (b * seq + t) * width + h * d;
                    out.extend_from_slice(&qkv[src..src + d]);
                }
            }
        }
        out
    };
    (part(0, hq), part(hq, hkv), part(hq + hkv, hkv))
}

/// `[batch, heads, seq, d]` to `[batch, seq, heads d]`.
pub fn merge_heads(x: &[f32], batch: usize, heads: usize, seq: usize, d: usize) -> Vec<f32> {
    debug_assert_eq!(x.len(), batch * heads * seq * d);
    let mut out = Vec::with_capacity(x.len());
    for b in 0..batch {
        for t in 0..seq {
            for h in 0..heads {
                let src = ((b * heads + h) * seq + t) * d;
                out.extend_from_slice(&x[src..src + d]);
            }
        }
    }
    out
}

/// `LN(x + r)` row by row over rows of `dim` elements: mean and variance of the sum
/// (biased, two passes), then `(v - mean) / sqrt(var + eps) * gain + bias`.
pub fn add_layer_norm(
    x: &[f32],
    residual: &[f32],
    gain: &[f32],
    bias: &[f32],
    eps: f32,
) -> Vec<f32> {
    let dim = gain.len();
    debug_assert_eq!(x.len(), residual.len());
    // The sum is the first pass (no zero fill); normalisation runs in parallel, in place.
    let mut out: Vec<f32> = x.iter().zip(residual).map(|(a, b)| a + b).collect();
    out.par_chunks_mut(dim * LINEAR_BLOCK_ROWS).for_each(|ob| {
        for o in ob.chunks_mut(dim) {
            let mean = o.iter().sum::<f32>() / dim as f32;
            let var = o.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / dim as f32;
            let inv = 1.0 / (var + eps).sqrt();
            o.iter_mut()
                .zip(gain.iter().zip(bias))
                .for_each(|(v, (g, b))| *v = (*v - mean) * inv * g + b);
        }
    });
    out
}

/// Shape and masks of one [`dense_attention`] call.
#[derive(Clone, Copy, Debug)]
pub struct DenseShape<'a> {
    /// Sequences in the batch.
    pub batch: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (`heads` is a multiple).
    pub kv_heads: usize,
    /// Tokens per sequence.
    pub seq: usize,
    /// Elements per head.
    pub head_dim: usize,
    /// `valid[b][t]`: token `t` of sequence `b` is real.
    pub valid: &'a [Vec<bool>],
    /// Query `i` sees keys `j <= i` only.
    pub causal: bool,
}

/// Float softmax attention `softmax(q k^T / sqrt(d)) v` over the visible keys, for `q`
/// `[batch, heads, seq, d]` and `k`, `v` `[batch, kv_heads, seq, d]`; returns
/// `[batch, heads, seq, d]`. Padding queries and queries that see no key get zeros. Scores
/// exist for one block of query rows at a time, never for the whole sequence.
pub fn dense_attention(q: &[f32], k: &[f32], v: &[f32], shape: DenseShape) -> Vec<f32> {
    let DenseShape {
        batch,
        heads,
        kv_heads,
        seq,
        head_dim: d,
        valid,
        causal,
    } = shape;
    let group = heads / kv_heads;
    let scale = 1.0 / (d as f32).sqrt();
    let head_len = seq * d;
    let mut out = vec![0f32; batch * heads * head_len];
    if head_len == 0 {
        return out;
    }
    out.par_chunks_mut(head_len)
        .enumerate()
        .flat_map_iter(|(bh, oh)| {
            oh.chunks_mut(ATTENTION_BLOCK_ROWS * d)
                .enumerate()
                .map(move |(blk, ob)| (bh, blk, ob))
        })
        .for_each_init(Vec::new, |scores: &mut Vec<f32>, (bh, blk, ob)| {
            let (b, h) = (bh / heads, bh % heads);
            let kvh = b * kv_heads + h / group;
            let kh = &k[kvh * head_len..(kvh + 1) * head_len];
            let vh = &v[kvh * head_len..(kvh + 1) * head_len];
            let start = blk * ATTENTION_BLOCK_ROWS;
            let rows = ob.len() / d;
            let end = if causal { start + rows } else { seq };
            let qb = &q[bh * head_len + start * d..bh * head_len + (start + rows) * d];
            scores.clear();
            scores.resize(rows * end, 0.0);
            matmul_nt(qb, &kh[..end * d], scores, rows, end, d);
            let vis = &valid[b];
            let padded = vis.iter().any(|&t| !t);
            for (r, row) in scores.chunks_mut(end).enumerate() {
                let i = start + r;
                if padded && !vis[i] {
                    row.fill(0.0);
                    continue;
                }
                let limit = if causal { i + 1 } else { end };
                softmax_row(&mut row[..limit], scale, padded.then_some(&vis[..limit]));
                row[limit..].fill(0.0);
            }
            matmul_nn(scores, &vh[..end * d], ob, rows, d, end);
        });
    out
}

/// In place: `row[j] <- exp(scale (row[j] - max)) / sum` over the keys `visible[j]`
/// (all if `None`), 0 elsewhere; all zeros if no key is visible.
fn softmax_row(row: &mut [f32], scale: f32, visible: Option<&[bool]>) {
    if let Some(vis) = visible {
        row.iter_mut()
            .zip(vis)
            .filter(|(_, v)| !**v)
            .for_each(|(s, _)| *s = f32::NEG_INFINITY);
    }
    let max = row
        .iter()
        .fold(f32::NEG_INFINITY, |m, &s| if s > m { s } else { m });
    if max == f32::NEG_INFINITY {
        row.fill(0.0);
        return;
    }
    // exp of -inf is exactly 0, so masked keys drop out.
    row.iter_mut()
        .for_each(|s| *s = fastmath::exp((*s - max) * scale));
    let sum = sum_f32(row);
    let inv = 1.0 / sum;
    row.iter_mut().for_each(|s| *s *= inv);
}

/// Sum of `xs` in eight interleaved partial sums (a fixed order, so deterministic, and one
/// the compiler can vectorise).
fn sum_f32(xs: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = xs.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        acc.iter_mut().zip(c).for_each(|(a, v)| *a += v);
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    use sprint_attention::synth::uniform_values as data;

    fn run_all(threads: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let (rows, din, dout) = (300, 48, 40);
            let x = data(rows * din, 1);
            let w = data(dout * din, 2);
            let b = data(dout, 3);
            let y = linear(
                &x,
                din,
                &transpose(&w, dout, din),
                Some(&b),
                Some(Activation::Gelu),
            );
            let r = data(rows * dout, 4);
            let ln = add_layer_norm(&y, &r, &data(dout, 5), &data(dout, 6), 1e-5);
            let (batch, heads, kv, seq, d) = (2, 4, 2, 150, 8);
            let q = data(batch * heads * seq * d, 7);
            let k = data(batch * kv * seq * d, 8);
            let v = data(batch * kv * seq * d, 9);
            let valid = vec![vec![true; seq], (0..seq).map(|t| t < 100).collect()];
            let shape = DenseShape {
                batch,
                heads,
                kv_heads: kv,
                seq,
                head_dim: d,
                valid: &valid,
                causal: true,
            };
            (y, ln, dense_attention(&q, &k, &v, shape))
        })
    }

    #[test]
    fn bit_identical_whatever_the_thread_count() {
        let one = run_all(1);
        let three = run_all(3);
        assert!(
            one.0
                .iter()
                .zip(&three.0)
                .all(|(a, b)| a.to_bits() == b.to_bits())
        );
        assert!(
            one.1
                .iter()
                .zip(&three.1)
                .all(|(a, b)| a.to_bits() == b.to_bits())
        );
        assert!(
            one.2
                .iter()
                .zip(&three.2)
                .all(|(a, b)| a.to_bits() == b.to_bits())
        );
    }

    #[test]
    fn linear_and_layer_norm_match_f64() {
        let (rows, din, dout) = (130, 20, 12);
        let x = data(rows * din, 11);
        let w = data(dout * din, 12);
        let b = data(dout, 13);
        let y = linear(&x, din, &transpose(&w, dout, din), Some(&b), None);
        for r in 0..rows {
            for o in 0..dout {
                let want: f64 = f64::from(b[o])
                    + (0..din)
                        .map(|i| f64::from(x[r * din + i]) * f64::from(w[o * din + i]))
                        .sum::<f64>();
                assert!((f64::from(y[r * dout + o]) - want).abs() < 1e-5);
            }
        }
        let res = data(rows * dout, 14);
        let (g, bb) = (data(dout, 15), data(dout, 16));
        let ln = add_layer_norm(&y, &res, &g, &bb, 1e-5);
        for r in 0..rows {
            let s: Vec<f64> = (0..dout)
                .map(|o| f64::from(y[r * dout + o]) + f64::from(res[r * dout + o]))
                .collect();
            let mean = s.iter().sum::<f64>() / dout as f64;
            let var = s.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / dout as f64;
            for o in 0..dout {
                let want = (s[o] - mean) / (var + 1e-5).sqrt() * f64::from(g[o]) + f64::from(bb[o]);
                assert!((f64::from(ln[r * dout + o]) - want).abs() < 1e-5);
            }
        }
    }
}
