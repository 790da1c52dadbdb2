//! `sprint simulate --compare-paper --json` without the CLI: both calibrations on every
//! paper workload, the same JSON document on stdout. For timing the simulator alone
//! (`cargo run --release -p sprint-sim --example compare_paper -- [threads]`).

use sprint_sim::calibration::Calibration;
use sprint_sim::paper::compare_many;
use sprint_sim::presets::load_energy;
use sprint_sim::wstats::StatsFile;

fn main() {
    let threads: usize = std::env::args()
        .nth(1)
        .map_or(0, |s| s.parse().expect("threads"));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("pool");
    let table = load_energy("default", &[]).expect("energy table");
    let stats = StatsFile::default_stats();
    let cals = [
        Calibration::sourced_default(),
        Calibration::paper_inferred().expect("paper-inferred"),
    ];
    let cmps = pool
        .install(|| compare_many(&[], &table, &stats, &cals, |_, _| {}))
        .expect("compare");
    println!("{}", serde_json::to_string_pretty(&cmps).expect("json"));
}
