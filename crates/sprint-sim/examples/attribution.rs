//! The before/after table of docs/simulator.md ("The paper's design as the default"): the
//! sourced default with the model's choices of issue #23 taken back one at a time, each
//! row a full comparison with Figs 10, 11 and 12a and Table III. Rows are cumulative, from
//! the earlier default (strict reuse rule, a baseline that re-streams every key per query,
//! one query in flight, no padding on the decoder and synthetic inputs, uniformly random
//! entering keys) to the default as shipped.
//!
//! `cargo run --release -p sprint-sim --example attribution -- [threads]`

use std::collections::BTreeMap;

use sprint_sim::calibration::Calibration;
use sprint_sim::paper::compare_many_with_reports;
use sprint_sim::presets::load_energy;
use sprint_sim::sourced::Sourced;
use sprint_sim::wstats::StatsFile;

fn cal(name: &str, params: &[(&str, f64)]) -> Calibration {
    let mut c = Calibration::sourced_default();
    c.name = name.to_string();
    c.params = params
        .iter()
        .map(|&(k, v)| (k.to_string(), Sourced::new(v, "attribution row")))
        .collect::<BTreeMap<_, _>>();
    c
}

fn main() {
    let threads: usize = std::env::args()
        .nth(1)
        .map_or(0, |s| s.parse().expect("threads"));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("pool");
    let table = load_energy("default", &[]).expect("energy table");
    let with_recall = StatsFile::default_stats();
    let mut without_recall = with_recall.clone();
    without_recall.recall_by_distance = None;
    for m in without_recall.models.values_mut() {
        m.recall_by_distance = None;
    }
    // The earlier default: block 1 re-streams every key of a head that does not fit per
    // query (the whole-head dataflow), one query ahead, no padding on GPT-2-L and Synth.
    let strict = [
        ("sprint_locality", 1.0),
        ("baseline_query_block_per_corelet", 1.0),
        ("prefetch_queries", 1.0),
        ("padding_gpt2_l", 0.0),
        ("padding_synth", 0.0),
    ];
    let rows: Vec<(&str, Calibration, &StatsFile)> = vec![
        (
            "earlier default (sld-strict, streaming baseline, 1 ahead, no padding)",
            cal("a", &strict),
            &without_recall,
        ),
        ("+ residency", cal("b", &strict[1..]), &without_recall),
        (
            "+ query-tiled baseline (8 per CORELET)",
            cal("c", &strict[2..]),
            &without_recall,
        ),
        (
            "+ run-ahead by Little's law",
            cal("d", &strict[3..]),
            &without_recall,
        ),
        (
            "+ GPT-2-L / Synth padding read off Fig 10",
            cal("e", &[]),
            &without_recall,
        ),
        (
            "+ entering keys by measured recall distance (the default)",
            cal("f", &[]),
            &with_recall,
        ),
    ];
    println!(
        "| model | S | M | L | Fig 11 mean abs ln | energy S | Fig 10 MAE pp | M-SPRINT GOPs/s | GOPs/J | BERT-B S-Baseline read / write share % |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (label, c, stats) in rows {
        let out = pool
            .install(|| {
                compare_many_with_reports(&[], &table, stats, std::slice::from_ref(&c), |_, _| {})
            })
            .expect("compare");
        let (cmp, reports) = &out[0];
        let s = cmp.summary();
        let base = &reports[0][0];
        let tot = base.energy.fig12a_total();
        println!(
            "| {label} | {:.2} | {:.2} | {:.2} | {:.3} | {:.2} | {:.1} | {:.0} | {:.0} | {:.1} / {:.1} |",
            s.speedup_geomean[0],
            s.speedup_geomean[1],
            s.speedup_geomean[2],
            s.fig11_mean_abs_ln,
            s.energy_geomean,
            s.fig10_mae_pp,
            s.m_sprint_gops[0],
            s.m_sprint_gops[1],
            100.0 * base.energy.reram_read / tot,
            100.0 * base.energy.reram_write / tot,
        );
    }
}
