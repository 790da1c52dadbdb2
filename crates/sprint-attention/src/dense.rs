//! Dense float softmax attention: the reference every variant is compared against.

use rayon::prelude::*;

use crate::error::Result;
use crate::gemm::{matmul_nn, matmul_nt};
use crate::softmax::softmax_f32;
use crate::tensor::{AttentionInput, Tensor3};

/// Queries per block of the dense reference (the last block of a head takes the remainder,
/// so blocks hold 1 to `2 x DENSE_QUERY_BLOCK - 1` queries): a block in flight holds two
/// `queries x n_keys` f32 matrices (scores and probabilities), not `n_queries x n_keys`.
pub const DENSE_QUERY_BLOCK: usize = 128;

/// Dense softmax attention in f32 with optimised GEMMs, honouring padding, causal masking
/// and GQA. Padding queries (and queries that see no key) get zeros. Streams over blocks of
/// [`DENSE_QUERY_BLOCK`] queries, so memory grows with the block times the keys; heads and
/// blocks run in parallel on the caller's rayon pool, and each row is computed by the same
/// code whatever the thread count.
pub fn attention(input: &AttentionInput, causal: bool) -> Result<Tensor3> {
    let s = input.validate()?;
    let (nq, nk, d) = (s.n_queries, s.n_keys, s.head_dim);
    let inv = 1.0 / (d as f32).sqrt();
    let mut out = vec![0f32; s.heads * nq * d];
    // Blocks start at multiples of the block size; the last one takes the remainder, so no
    // block is shorter than a full one (the GEMM's path for a few rows sums in another
    // order, and every row must come out as it does from the whole matrix).
    let n_blocks = (nq / DENSE_QUERY_BLOCK).max(1);
    let bounds = move |b: usize| {
        let first = b * DENSE_QUERY_BLOCK;
        let last = if b + 1 == n_blocks {
            nq
        } else {
            first + DENSE_QUERY_BLOCK
        };
        (first, last)
    };
    if nq > 0 && d > 0 {
        out.par_chunks_mut(nq * d)
            .enumerate()
            .flat_map(|(h, head)| {
                let mut rest = head;
                let mut parts = Vec::with_capacity(n_blocks);
                for b in 0..n_blocks {
                    let (first, last) = bounds(b);
                    let (part, tail) = rest.split_at_mut((last - first) * d);
                    parts.push((h, first, part));
                    rest = tail;
                }
                parts
            })
            .for_each(|(h, first, rows)| {
                let m = rows.len() / d;
                let kvh = s.kv_head_of(h);
                let q = &input.q.head(h)[first * d..(first + m) * d];
                let mut scores = vec![0f32; m * nk];
                matmul_nt(q, input.k.head(kvh), &mut scores, m, nk, d);
                let mut probs = vec![0f32; m * nk];
                let (mut row, mut visible, mut logits) = (Vec::new(), Vec::new(), Vec::new());
                for r in 0..m {
                    let i = first + r;
                    if input.query_valid.as_ref().is_some_and(|v| !v[i]) {
                        continue;
                    }
                    let limit = sprint_core::visibility::visible_limit(i, nq, nk, causal);
                    visible.clear();
                    visible.extend(
                        (0..limit).filter(|&j| input.key_valid.as_ref().is_none_or(|v| v[j])),
                    );
                    logits.clear();
                    logits.extend(visible.iter().map(|&j| scores[r * nk + j] * inv));
                    softmax_f32(&logits, &mut row);
                    let p = &mut probs[r * nk..(r + 1) * nk];
                    for (&j, &pj) in visible.iter().zip(&row) {
                        p[j] = pj;
                    }
                }
                matmul_nn(&probs, input.v.head(kvh), rows, m, d, nk);
            });
    }
    Tensor3::new([s.heads, nq, d], out)
}
