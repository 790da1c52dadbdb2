//! The before/after table of docs/simulator.md ("The paper's design as the default"): the
//! sourced default with the model's choices of issue #23 taken back one at a time, each
//! row a full comparison with Figs 10, 11 and 12a and Table III. Rows are cumulative, from
//! the earlier default (strict reuse rule, a baseline that re-streams every key per query,
//! one query in flight, no padding on the decoder and synthetic inputs, uniformly random
//! entering keys) to the default as shipped. Every row runs today's workload shapes
//! (ALBERT-XL as 32 heads of 64, as Fig 10 implies).
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
    // query (the whole-head dataflow), one query ahead, no padding on GPT-2-L and Synth;
    // the first tiled baseline had one block of 8 queries per CORELET and kept nothing of a
    // head that does not fit resident, and GPT-2-L was read as 28 % padded.
    let first_tiling = [
        ("baseline_query_block_shared", 0.0),
        ("baseline_resident_buffer_fraction", 0.0),
        ("baseline_tile_double_buffered", 0.0),
    ];
    let strict = [
        ("sprint_locality", 1.0),
        ("baseline_query_block_per_corelet", 1.0),
        ("prefetch_queries", 1.0),
        ("padding_gpt2_l", 0.0),
        ("padding_synth", 0.0),
    ];
    let with = |extra: &[(&'static str, f64)]| -> Vec<(&'static str, f64)> {
        first_tiling.iter().chain(extra).copied().collect()
    };
    let block8 = [
        ("baseline_query_block_per_corelet", 8.0),
        ("padding_gpt2_l", 0.28),
    ];
    let rows: Vec<(&str, Calibration, &StatsFile)> = vec![
        (
            "earlier default (sld-strict, streaming baseline, 1 ahead, no padding)",
            cal("a", &with(&strict)),
            &without_recall,
        ),
        (
            "+ residency",
            cal("b", &with(&strict[1..])),
            &without_recall,
        ),
        (
            "+ query-tiled baseline (8 per CORELET)",
            cal("c", &with(&[strict[2], strict[3], strict[4], block8[0]])),
            &without_recall,
        ),
        (
            "+ run-ahead by Little's law",
            cal("d", &with(&[strict[3], strict[4], block8[0]])),
            &without_recall,
        ),
        (
            "+ GPT-2-L / Synth padding read off Fig 10 (28 / 49 %)",
            cal("e", &with(&block8)),
            &without_recall,
        ),
        (
            "+ entering keys by measured recall distance",
            cal("f", &with(&block8)),
            &with_recall,
        ),
        (
            "+ block shared by the CORELETs, half of each buffer resident (Fig 10 Mask only)",
            cal(
                "g",
                &[("baseline_tile_double_buffered", 0.0), block8[0], block8[1]],
            ),
            &with_recall,
        ),
        (
            "+ block 5 and GPT-2-L padding 25 % read again under that tiling",
            cal("h", &[("baseline_tile_double_buffered", 0.0)]),
            &with_recall,
        ),
        (
            "+ double-buffered tiles (the default)",
            cal("i", &[]),
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
