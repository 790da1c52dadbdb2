//! Simulation speed by scenario. The acceptance scenario is `gpt2-l-1024/s-sprint+s-baseline`
//! (36 layers x 20 heads at 1024 tokens, both designs in one pass): it must stay under 30 s
//! on 2 cores. Run with `cargo bench -p sprint-bench --bench sim` (add a filter such as
//! `bert-b` for the quick scenarios only).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sprint_sim::presets::load_design;
use sprint_sim::run::run_model;
use sprint_sim::workload::model_workload;
use sprint_sim::wstats::StatsFile;

fn scenario(c: &mut Criterion, workload: &str, presets: &[&str], samples: usize) {
    let designs: Vec<_> = presets
        .iter()
        .map(|p| load_design(p, &[]).unwrap())
        .collect();
    let w = model_workload(workload).unwrap();
    let stats = StatsFile::default_stats().resolve(&w.name);
    let mut g = c.benchmark_group(format!("{}-{}", workload.to_lowercase(), w.seq_len));
    g.sample_size(samples);
    g.throughput(Throughput::Elements(u64::from(w.layers * w.heads)));
    g.bench_function(presets.join("+"), |b| {
        b.iter(|| run_model(&designs, &w, &stats).unwrap())
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    scenario(c, "BERT-B", &["s-sprint", "s-baseline"], 20);
    scenario(c, "ViT-B", &["s-sprint", "s-baseline"], 20);
    scenario(c, "GPT-2-L", &["s-sprint", "s-baseline"], 10);
}

criterion_group!(sim, benches);
criterion_main!(sim);
