//! Conformance of the attention backends: the candle dense backend against the functional
//! crate's float reference (`sprint_attention::dense::attention`), over causal / bidirectional,
//! padded / unpadded, GQA, and inputs long enough to be split into several query blocks.

use candle_core::{Device, Tensor};
use sprint_attention::{AttentionInput, Tensor3};
use sprint_core::config::{AttentionConfig, RecomputeMode, Variant};
use sprint_models::attention::{Attention, AttentionCall, DenseAttention, SprintAttention};
use sprint_models::record::Recorder;

fn random(dims: (usize, usize, usize, usize), seed: u64) -> Tensor {
    // A small LCG: deterministic, no extra dependency.
    let n = dims.0 * dims.1 * dims.2 * dims.3;
    let mut s = seed;
    let v: Vec<f32> = (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 4.0
        })
        .collect();
    Tensor::from_vec(v, dims, &Device::Cpu).unwrap()
}

fn tensor3(t: &Tensor) -> Tensor3 {
    let (h, s, d) = t.dims3().unwrap();
    Tensor3::new([h, s, d], t.flatten_all().unwrap().to_vec1().unwrap()).unwrap()
}

fn check(seq: usize, heads: usize, kv_heads: usize, causal: bool, lengths: &[usize]) {
    let (b, d) = (lengths.len(), 16);
    let q = random((b, heads, seq, d), 1);
    let k = random((b, kv_heads, seq, d), 2);
    let v = random((b, kv_heads, seq, d), 3);
    let valid: Vec<Vec<bool>> = lengths
        .iter()
        .map(|&l| (0..seq).map(|t| t < l).collect())
        .collect();
    let call = AttentionCall {
        layer: 0,
        q: &q,
        k: &k,
        v: &v,
        valid: &valid,
        causal,
    };
    let mut rec = Recorder::new(b, 1, false, "t");
    let ours = DenseAttention::new(AttentionConfig::default())
        .attend(&call, &mut rec)
        .unwrap();
    let cfg = AttentionConfig {
        variant: Variant::Sprint,
        recompute: RecomputeMode::Float,
        ..AttentionConfig::default()
    };
    let th = cfg.thresholds(1, heads).unwrap();
    let mut rec2 = Recorder::new(b, 1, false, "t");
    let functional = SprintAttention::new(cfg, th)
        .unwrap()
        .attend(&call, &mut rec2)
        .unwrap();
    let (a, b2) = (rec.finish().totals(), rec2.finish().totals());
    assert_eq!(
        (a.visible, a.kept, a.softmax_kept),
        (b2.visible, b2.kept, b2.softmax_kept),
        "visible/kept counts"
    );
    for (bi, valid) in valid.iter().enumerate() {
        let mut input = AttentionInput::new(
            tensor3(&q.get(bi).unwrap()),
            tensor3(&k.get(bi).unwrap()),
            tensor3(&v.get(bi).unwrap()),
        );
        input.query_valid = Some(valid.clone());
        input.key_valid = Some(valid.clone());
        let reference = sprint_attention::dense::attention(&input, causal).unwrap();
        for (name, t) in [("dense backend", &ours), ("sprint float -inf", &functional)] {
            let got: Vec<f32> = t.get(bi).unwrap().flatten_all().unwrap().to_vec1().unwrap();
            let diff = got
                .iter()
                .zip(&reference.data)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(
                diff < 1e-5,
                "{name}: seq {seq} heads {heads}/{kv_heads} causal {causal} lengths {lengths:?}: {diff}"
            );
        }
    }
}

#[test]
fn dense_backend_matches_float_reference() {
    check(20, 4, 4, false, &[20]);
    check(20, 4, 4, true, &[20, 13]);
    check(33, 6, 2, true, &[33, 1, 30]);
    check(33, 6, 3, false, &[5, 33]);
}

#[test]
fn several_query_blocks() {
    // 600 causal rows = 3 blocks of at most 256 rows.
    check(600, 3, 1, true, &[600, 577]);
    check(300, 2, 2, false, &[300]);
}
