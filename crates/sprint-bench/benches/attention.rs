//! SPRINT functional model vs dense f32 attention (candle's optimised matmul + softmax),
//! measured side by side at seq 512 and 4096, head_dim 64, on synthetic attention with
//! realistic locality. SPRINT runs at a threshold that keeps about 20% of the keys, noise off.
//!
//! Run: `cargo bench -p sprint-bench --bench attention`. The kept fraction actually
//! reached is printed before each group.

use candle_core::{DType, Device, Tensor};
use criterion::{Criterion, criterion_group, criterion_main};
use sprint_attention::synth::{SynthSpec, generate};
use sprint_attention::{AttentionInput, run_layer};
use sprint_core::config::{AttentionConfig, Variant};

const HEADS: usize = 4;
const HEAD_DIM: usize = 64;

fn dense_candle(q: &Tensor, k: &Tensor, v: &Tensor) -> Tensor {
    let scale = 1.0 / (HEAD_DIM as f64).sqrt();
    let scores = (q.matmul(&k.t().unwrap()).unwrap() * scale).unwrap();
    let probs = candle_nn::ops::softmax_last_dim(&scores).unwrap();
    probs.matmul(v).unwrap()
}

fn to_candle(t: &sprint_attention::Tensor3) -> Tensor {
    Tensor::from_slice(&t.data, (t.dims[0], t.dims[1], t.dims[2]), &Device::Cpu).unwrap()
}

/// Threshold (logits) at the 80th percentile of head 0's exact scores: keeps ~20% of keys.
fn threshold_for_keep(input: &AttentionInput, keep: f64) -> f32 {
    let q = to_candle(&input.q).get(0).unwrap();
    let k = to_candle(&input.k).get(0).unwrap();
    let s = (q.matmul(&k.t().unwrap()).unwrap() / (HEAD_DIM as f64).sqrt()).unwrap();
    let mut v: Vec<f32> = s
        .flatten_all()
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        .to_vec1()
        .unwrap();
    v.sort_by(f32::total_cmp);
    v[((1.0 - keep) * v.len() as f64) as usize]
}

fn bench(c: &mut Criterion) {
    for seq in [512usize, 4096] {
        let input = generate(&SynthSpec {
            heads: HEADS,
            kv_heads: HEADS,
            seq,
            head_dim: HEAD_DIM,
            ..SynthSpec::default()
        });
        let th = threshold_for_keep(&input, 0.2);
        let cfg = AttentionConfig {
            variant: Variant::Sprint,
            ..AttentionConfig::default()
        };
        let ths = vec![th; HEADS];
        let probe = run_layer(&cfg, 0, &ths, &input).unwrap();
        let kept: u64 = probe
            .heads
            .iter()
            .map(|h| h.masks.count_ones() as u64)
            .sum();
        println!(
            "seq {seq}: threshold {th:.3} keeps {:.1}% of keys in memory",
            100.0 * kept as f64 / probe.visible_pairs as f64
        );
        let (q, k, v) = (
            to_candle(&input.q),
            to_candle(&input.k),
            to_candle(&input.v),
        );
        let mut group = c.benchmark_group(format!("attention/seq{seq}"));
        group.sample_size(10);
        group.bench_function("dense_f32_candle", |b| b.iter(|| dense_candle(&q, &k, &v)));
        group.bench_function("sprint_keep20", |b| {
            b.iter(|| run_layer(&cfg, 0, &ths, &input).unwrap())
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
