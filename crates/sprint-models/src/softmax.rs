//! Row-wise softmax of attention scores with padding and causal masks, as a candle custom op
//! that runs rows in parallel on the rayon pool.

use candle_core::{CpuStorage, CustomOp1, Layout, Shape};
use rayon::prelude::*;

/// Softmax over the last dimension of scores `[batch, heads, rows, keys]`, where row `r`
/// stands for query `row_offset + r`. Query `i` of sequence `b` sees key `j` when
/// `valid[b][j]` (if `check_valid`) and, if `causal`, `j <= i`. Padding queries and queries
/// that see no key get all-zero rows.
#[derive(Clone, Copy, Debug)]
pub struct MaskedSoftmax<'a> {
    /// `valid[b][t]`: token `t` of sequence `b` is real.
    pub valid: &'a [Vec<bool>],
    /// Whether to apply `valid` (false when nothing is padded: faster).
    pub check_valid: bool,
    /// Causal masking.
    pub causal: bool,
    /// Query index of row 0.
    pub row_offset: usize,
}

impl MaskedSoftmax<'_> {
    fn row(&self, b: usize, i: usize, src: &[f32], dst: &mut [f32]) {
        let valid = &self.valid[b];
        if self.check_valid && !valid[i] {
            return;
        }
        let limit = if self.causal {
            (i + 1).min(src.len())
        } else {
            src.len()
        };
        let seen = |j: usize| !self.check_valid || valid[j];
        let mut max = f32::NEG_INFINITY;
        for (j, &s) in src[..limit].iter().enumerate() {
            if seen(j) && s > max {
                max = s;
            }
        }
        if max == f32::NEG_INFINITY {
            return;
        }
        let mut sum = 0f32;
        for (j, (d, &s)) in dst[..limit].iter_mut().zip(&src[..limit]).enumerate() {
            if seen(j) {
                *d = (s - max).exp();
                sum += *d;
            }
        }
        let inv = 1.0 / sum;
        dst[..limit].iter_mut().for_each(|d| *d *= inv);
    }
}

impl CustomOp1 for MaskedSoftmax<'_> {
    fn name(&self) -> &'static str {
        "masked-softmax"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (b, h, rows, keys) = layout.shape().dims4()?;
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("masked softmax: scores must be f32");
        };
        let Some((lo, hi)) = layout.contiguous_offsets() else {
            candle_core::bail!("masked softmax: scores must be contiguous");
        };
        if self.valid.len() != b || self.valid.iter().any(|v| v.len() < self.row_offset + rows) {
            candle_core::bail!(
                "masked softmax: mask does not cover {b} sequences of {} queries",
                self.row_offset + rows
            );
        }
        let src = &data[lo..hi];
        let mut dst = vec![0f32; src.len()];
        dst.par_chunks_mut(keys)
            .zip(src.par_chunks(keys))
            .enumerate()
            .for_each(|(idx, (d, s))| {
                let r = idx % rows;
                let seq = idx / (rows * h);
                self.row(seq, self.row_offset + r, s, d);
            });
        Ok((CpuStorage::F32(dst), Shape::from_dims(&[b, h, rows, keys])))
    }
}
