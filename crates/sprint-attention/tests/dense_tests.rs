//! The dense reference streams over query blocks: its result equals the whole-matrix
//! computation (one score and one probability matrix of `n_queries x n_keys` per head, the
//! reference before streaming, written out here) bit for bit, and naive f64 attention within
//! float tolerance, at thousands of keys with padding, causal masking and GQA.

mod common;

use common::{masked_softmax_attention, random_input, relative_error, visible};
use sprint_attention::dense::{DENSE_QUERY_BLOCK, attention};
use sprint_attention::gemm::{matmul_nn, matmul_nt};
use sprint_attention::softmax::softmax_f32;
use sprint_attention::{AttentionInput, Tensor3};

/// The reference before streaming: whole `n_queries x n_keys` matrices per head.
fn whole_matrix(input: &AttentionInput, causal: bool) -> Vec<f32> {
    let [heads, nq, d] = input.q.dims;
    let [kvh, nk, _] = input.k.dims;
    let inv = 1.0 / (d as f32).sqrt();
    let mut all = Vec::new();
    for h in 0..heads {
        let g = h / (heads / kvh);
        let mut scores = vec![0f32; nq * nk];
        matmul_nt(input.q.head(h), input.k.head(g), &mut scores, nq, nk, d);
        let mut probs = vec![0f32; nq * nk];
        let mut row = Vec::new();
        for i in 0..nq {
            if input.query_valid.as_ref().is_some_and(|m| !m[i]) {
                continue;
            }
            let keys = visible(input, causal, i);
            let logits: Vec<f32> = keys.iter().map(|&j| scores[i * nk + j] * inv).collect();
            softmax_f32(&logits, &mut row);
            for (&j, &p) in keys.iter().zip(&row) {
                probs[i * nk + j] = p;
            }
        }
        let mut out = vec![0f32; nq * d];
        matmul_nn(&probs, input.v.head(g), &mut out, nq, d, nk);
        all.extend(out);
    }
    all
}

fn padded(mut input: AttentionInput, seed: u64) -> AttentionInput {
    let nq = input.q.dims[1];
    let nk = input.k.dims[1];
    input.key_valid = Some(
        (0..nk)
            .map(|j| !(j * 7 + seed as usize).is_multiple_of(11))
            .collect(),
    );
    input.query_valid = Some(
        (0..nq)
            .map(|i| !(i * 5 + seed as usize).is_multiple_of(13))
            .collect(),
    );
    input
}

#[test]
fn streamed_reference_equals_the_whole_matrix_bit_for_bit() {
    // Query counts around the block size and a long row; GQA (4 query heads on 2 K/V heads).
    for (seed, nq, nk) in [
        (1, DENSE_QUERY_BLOCK - 1, 700),
        (2, DENSE_QUERY_BLOCK + 1, 2500),
        (3, 3 * DENSE_QUERY_BLOCK + 17, 3 * DENSE_QUERY_BLOCK + 17),
        (4, 1, 300),
        (5, 5, 64),
        (6, 2 * DENSE_QUERY_BLOCK, 1000),
        (7, 2 * DENSE_QUERY_BLOCK - 1, 129),
        (8, 1000, 1500),
    ] {
        for causal in [false, true] {
            let input = padded(random_input(seed, 4, 2, nq, nk, 64), seed);
            let ours = attention(&input, causal).unwrap();
            let whole = whole_matrix(&input, causal);
            assert_eq!(ours.dims, [4, nq, 64]);
            let differing = ours
                .data
                .iter()
                .zip(&whole)
                .filter(|(a, b)| a.to_bits() != b.to_bits())
                .count();
            assert_eq!(differing, 0, "nq {nq}, nk {nk}, causal {causal}");
        }
    }
}

#[test]
fn streamed_reference_matches_f64_attention_at_thousands_of_keys() {
    let input = padded(random_input(9, 2, 1, 300, 4096, 64), 4);
    for causal in [false, true] {
        let ours = attention(&input, causal).unwrap();
        let exact = masked_softmax_attention(&input, |_, i, _| visible(&input, causal, i));
        let e = relative_error(&ours.data, &exact);
        assert!(e < 1e-5, "causal {causal}: relative error {e}");
        // Padding queries get zeros.
        let q_valid = input.query_valid.as_ref().unwrap();
        for (i, ok) in q_valid.iter().enumerate() {
            if !ok {
                assert!(ours.data[i * 64..(i + 1) * 64].iter().all(|x| *x == 0.0));
            }
        }
    }
}

#[test]
fn empty_query_sets_give_an_empty_output() {
    let q = Tensor3::new([2, 0, 8], vec![]).unwrap();
    let k = Tensor3::new([2, 5, 8], vec![0.5; 80]).unwrap();
    let v = Tensor3::new([2, 5, 8], vec![1.0; 80]).unwrap();
    let input = AttentionInput::new(q, k, v);
    match attention(&input, false) {
        Ok(t) => assert!(t.data.is_empty()),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}
