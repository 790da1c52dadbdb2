//! Bounded fuzzing (proptest, a fixed number of cases in the normal test run) of the text
//! readers of the simulator: hardware presets (files and `--set` overrides), energy tables
//! and workload-statistics files. A valid file is mutated with hostile tokens; loading must
//! give a validated value or an error, never a panic, and an accepted preset must simulate
//! a small workload without overflow.

use proptest::prelude::*;
use sprint_sim::presets::{load_design, load_energy};
use sprint_sim::run::run_model;
use sprint_sim::workload::model_workload;
use sprint_sim::wstats::StatsFile;

const PRESET: &str = include_str!("../configs/presets/s-sprint.toml");
const ENERGY: &str = include_str!("../configs/energy/default.toml");
const STATS: &str = include_str!("../configs/workload-stats/default.toml");

const NASTY: &[&str] = &[
    "-1",
    "0",
    "1e30",
    "1e-30",
    "-1e30",
    "nan",
    "inf",
    "-inf",
    "4294967296",
    "18446744073709551616",
    "\"x\"",
    "true",
    "[]",
    "{}",
    "=",
    "[",
    "]",
    "\n[memory]\n",
    "\n[memory.channelz]\nvalue = 4\n",
    "{ value = 1e30 }",
    "{ value = -3 }",
    "\u{0}",
    "inherits = \"s-sprint\"\n",
    "inherits = \"nope\"\n",
    "1.5",
    "-0",
];

/// `text` with the edits applied, tokens from [`NASTY`].
fn mutate(text: &str, edits: &[(usize, usize, bool)]) -> String {
    sprint_core::fuzz::mutate(text, edits, NASTY)
}

fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("sprint-sim-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

const KEYS: &[&str] = &[
    "memory.trcd_ns",
    "memory.tcl_ns",
    "memory.trp_ns",
    "memory.taxth_ns",
    "memory.bus_bytes_per_ns",
    "memory.channels",
    "memory.burst_bytes",
    "memory.row_bytes",
    "core.clock_ghz",
    "core.corelets",
    "buffer.k_buffer_bytes_per_corelet",
    "design.reuse",
    "design.prefetch_queries",
    "design.run_ahead",
    "design.query_block_per_corelet",
    "memory",
    "nope.key",
    "memory.channelz",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn preset_file_reader_never_panics(
        edits in proptest::collection::vec((any::<usize>(), any::<usize>(), any::<bool>()), 1..4)
    ) {
        let p = temp_file("preset.toml", &mutate(PRESET, &edits));
        let _ = load_design(p.to_str().unwrap(), &[]);
    }

    #[test]
    fn overrides_are_validated_and_never_overflow(
        key in 0usize..KEYS.len(),
        value in 0usize..NASTY.len(),
    ) {
        let set = format!("{}={}", KEYS[key], NASTY[value]);
        if let Ok(d) = load_design("s-sprint", &[set]) {
            // An accepted value simulates a small workload with sane counts.
            let mut w = model_workload("ViT-B").unwrap();
            w.layers = 1;
            w.heads = 1;
            w.kv_heads = 1;
            w.seq_len = 32;
            if let Ok(t) = run_model(&[d], &w, &StatsFile::default_stats().resolve("ViT-B")) {
                prop_assert!(t[0].cycles < 1 << 62);
            }
        }
    }

    #[test]
    fn energy_table_reader_never_panics(
        edits in proptest::collection::vec((any::<usize>(), any::<usize>(), any::<bool>()), 1..4)
    ) {
        let p = temp_file("energy.toml", &mutate(ENERGY, &edits));
        let _ = load_energy(p.to_str().unwrap(), &[]);
    }

    #[test]
    fn workload_stats_reader_never_panics(
        edits in proptest::collection::vec((any::<usize>(), any::<usize>(), any::<bool>()), 1..4)
    ) {
        if let Ok(s) = StatsFile::from_toml_str(&mutate(STATS, &edits), "fuzz.toml") {
            let _ = s.resolve("BERT-B");
        }
    }
}
