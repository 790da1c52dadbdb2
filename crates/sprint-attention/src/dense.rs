//! Dense float softmax attention: the reference every variant is compared against.

use crate::error::Result;
use crate::gemm::{matmul_nn, matmul_nt};
use crate::softmax::softmax_f32;
use crate::tensor::{AttentionInput, Tensor3};

/// Dense softmax attention in f32 with optimised GEMMs, honouring padding, causal masking
/// and GQA. Padding queries (and queries that see no key) get zeros.
pub fn attention(input: &AttentionInput, causal: bool) -> Result<Tensor3> {
    let s = input.validate()?;
    let (nq, nk, d) = (s.n_queries, s.n_keys, s.head_dim);
    let mut out = Tensor3::zeros([s.heads, nq, d]);
    let inv = 1.0 / (d as f32).sqrt();
    let mut scores = vec![0f32; nq * nk];
    let mut probs = vec![0f32; nq * nk];
    let mut row = Vec::new();
    for h in 0..s.heads {
        let kvh = s.kv_head_of(h);
        matmul_nt(input.q.head(h), input.k.head(kvh), &mut scores, nq, nk, d);
        for i in 0..nq {
            let p = &mut probs[i * nk..(i + 1) * nk];
            p.fill(0.0);
            if input.query_valid.as_ref().is_some_and(|m| !m[i]) {
                continue;
            }
            let limit = if causal {
                (i + 1 + nk).saturating_sub(nq).min(nk)
            } else {
                nk
            };
            let visible: Vec<usize> = (0..limit)
                .filter(|&j| input.key_valid.as_ref().is_none_or(|m| m[j]))
                .collect();
            let logits: Vec<f32> = visible.iter().map(|&j| scores[i * nk + j] * inv).collect();
            softmax_f32(&logits, &mut row);
            for (&j, &pj) in visible.iter().zip(&row) {
                p[j] = pj;
            }
        }
        matmul_nn(&probs, input.v.head(kvh), out.head_mut(h), nq, d, nk);
    }
    Ok(out)
}
