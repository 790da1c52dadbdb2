//! Eval throughput of MiniLM on BBC News at 256 tokens: documents per second of the
//! embedding pass `sprint eval` runs on the test split, dense and SPRINT (thresholds
//! calibrated to keep 25% of the keys on 8 other documents). Skipped with a message when
//! the assets are absent.
//!
//! `cargo bench -p sprint-bench --bench eval_throughput` (docs/evaluation.md).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sprint_assets::{Asset, Cache, data};
use sprint_core::config::{AttentionConfig, Variant};
use sprint_eval::calibrate::CalibratingAttention;
use sprint_models::backend;

/// The allocator of the `sprint` binary, so the bench measures what users run.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BATCH: usize = 16;
const SEQ: usize = 256;

fn bench(c: &mut Criterion) {
    let cache = Cache::from_env();
    for a in [Asset::MiniLm, Asset::Bbc] {
        if let Err(e) = cache.require(a) {
            eprintln!("SKIPPED (asset missing): {e}");
            return;
        }
    }
    let model = sprint_models::load("minilm", &cache).expect("MiniLM loads");
    let corpus = data::bbc(&cache).expect("BBC reads");
    let texts: Vec<&str> = corpus.docs.iter().map(|d| d.text.as_str()).collect();
    let (cal_texts, texts) = (&texts[..8], &texts[8..8 + BATCH]);
    let geo = model.model.geometry();
    let cal = CalibratingAttention::new(AttentionConfig::default(), geo.layers, geo.heads);
    let b = model.encode_batch(cal_texts, Some(SEQ)).unwrap();
    model.model.embed(&b, &cal, false, true).unwrap();
    let th = cal.into_stats().thresholds(0.25, false).unwrap();

    let mut g = c.benchmark_group("minilm_bbc_256");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.sample_size(10);
    for v in [Variant::Dense, Variant::Sprint] {
        let cfg = AttentionConfig {
            variant: v,
            ..AttentionConfig::default()
        };
        let attn = backend(cfg, th.clone()).unwrap();
        g.bench_function(v.name(), |bench| {
            bench.iter(|| {
                let batch = model.encode_batch(texts, Some(SEQ)).unwrap();
                model
                    .model
                    .embed(&batch, attn.as_ref(), false, true)
                    .unwrap()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
