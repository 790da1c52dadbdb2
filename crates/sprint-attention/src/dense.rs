//! Dense float softmax attention: the reference every variant is compared against.

use rayon::prelude::*;

use crate::error::Result;
use crate::gemm::{matmul_nn, matmul_nt};
use crate::softmax::softmax_f32;
use crate::tensor::{AttentionInput, Tensor3};

/// Dense softmax attention in f32 with optimised GEMMs, honouring padding, causal masking
/// and GQA. Padding queries (and queries that see no key) get zeros. Heads run in parallel on
/// the caller's rayon pool; each head is computed by the same code whatever the thread count.
pub fn attention(input: &AttentionInput, causal: bool) -> Result<Tensor3> {
    let s = input.validate()?;
    let (nq, nk, d) = (s.n_queries, s.n_keys, s.head_dim);
    let inv = 1.0 / (d as f32).sqrt();
    let heads: Vec<Vec<f32>> = (0..s.heads)
        .into_par_iter()
        .map(|h| {
            let kvh = s.kv_head_of(h);
            let mut scores = vec![0f32; nq * nk];
            matmul_nt(input.q.head(h), input.k.head(kvh), &mut scores, nq, nk, d);
            let mut probs = vec![0f32; nq * nk];
            let (mut row, mut visible, mut logits) = (Vec::new(), Vec::new(), Vec::new());
            for i in 0..nq {
                if input.query_valid.as_ref().is_some_and(|m| !m[i]) {
                    continue;
                }
                let limit = sprint_core::visibility::visible_limit(i, nq, nk, causal);
                visible.clear();
                visible
                    .extend((0..limit).filter(|&j| input.key_valid.as_ref().is_none_or(|m| m[j])));
                logits.clear();
                logits.extend(visible.iter().map(|&j| scores[i * nk + j] * inv));
                softmax_f32(&logits, &mut row);
                let p = &mut probs[i * nk..(i + 1) * nk];
                for (&j, &pj) in visible.iter().zip(&row) {
                    p[j] = pj;
                }
            }
            let mut out = vec![0f32; nq * d];
            matmul_nn(&probs, input.v.head(kvh), &mut out, nq, d, nk);
            out
        })
        .collect();
    Tensor3::new([s.heads, nq, d], heads.concat())
}
