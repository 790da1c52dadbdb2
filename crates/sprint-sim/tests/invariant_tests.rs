//! Whole-design invariants (Ramulator-style layer 3).

mod common;

use sprint_sim::energy::energy;
use sprint_sim::paper::same_simulation;
use sprint_sim::presets::{load_energy, preset_names};
use sprint_sim::report::build;
use sprint_sim::run::{ModelJob, run_model, run_models, run_trace};

/// SPRINT keeping every key (threshold -inf) without reuse moves at least the K/V bytes of
/// the streaming baseline (every query fetches every key either way; here the K/V do not
/// fit, so they are equal), and its time is not better than memory allows.
#[test]
fn sprint_minus_inf_no_reuse_moves_at_least_the_baseline_kv() {
    let base = common::design("s-baseline", &["design.skip_padding=true"]);
    let nr = common::design("sprint-no-reuse", &[]);
    for (n, pad) in [(384, 0.0), (384, 0.46), (96, 0.0)] {
        let w = common::small_workload(2, 2, n, 64, pad, false);
        let t = run_model(
            &[base.clone(), nr.clone()],
            &w,
            &common::stats(1.0, 1.0, 1.0),
        )
        .unwrap();
        assert!(
            t[1].moved.kv() >= t[0].moved.kv(),
            "n {n}: sprint {} < baseline {}",
            t[1].moved.kv(),
            t[0].moved.kv()
        );
        assert_eq!(t[1].keys_scored, t[0].keys_scored, "same keys scored");
    }
}

/// Energy is the sum of its parts, and each part is its counts times the table.
#[test]
fn energy_is_the_sum_of_its_parts() {
    let table = load_energy("default", &[]).unwrap();
    let designs: Vec<_> = preset_names()
        .iter()
        .map(|p| common::design(p, &[]))
        .collect();
    let w = common::small_workload(2, 2, 128, 64, 0.25, false);
    let t = run_model(&designs, &w, &common::stats(0.2, 0.9, 0.85)).unwrap();
    let reports = build(&designs, &table, &t).unwrap();
    for (r, d) in reports.iter().zip(&designs) {
        let sum: f64 = r.energy.parts().iter().map(|(_, v)| v).sum();
        assert_eq!(sum, r.energy.total());
        let e = energy(
            &table,
            &r.totals.actions,
            d.k_buffer_bytes,
            d.v_buffer_bytes,
            0,
            0.0,
        )
        .unwrap();
        assert_eq!(e.reram_read, r.totals.actions.reram_read_bits as f64 * 3.1);
        assert_eq!(
            e.reram_write,
            r.totals.actions.reram_write_bits as f64 * 24.4
        );
        assert_eq!(
            e.reram_write_q,
            r.totals.actions.reram_write_q_bits as f64 * 24.4
        );
        let moved_bits = 8 * (r.totals.moved.total() - r.totals.moved.index);
        assert_eq!(r.totals.actions.reram_read_bits, moved_bits, "{}", r.name);
        let reg = r.registry();
        assert_eq!(reg["energy_pj.total"], serde_json::json!(r.energy.total()));
    }
}

/// More buffer never increases traffic, for every reuse policy.
#[test]
fn more_buffer_never_increases_traffic() {
    let bytes = common::golden_trace();
    for preset in [
        "s-sprint",
        "s-baseline",
        "pruning",
        "mask-only",
        "sprint-no-reuse",
    ] {
        let mut last = u64::MAX;
        for kib in [1u64, 2, 3, 4, 6, 8, 12, 16, 32, 64] {
            let b = kib * 1024;
            let d = common::design(
                preset,
                &[
                    &format!("buffer.k_buffer_bytes_per_corelet={b}"),
                    &format!("buffer.v_buffer_bytes_per_corelet={b}"),
                ],
            );
            let (_, t) = run_trace(&[d], common::reader(&bytes), None).unwrap();
            let moved = t[0].moved.total();
            assert!(moved <= last, "{preset}: {kib} KiB moves {moved} > {last}");
            last = moved;
        }
    }
}

/// Results do not depend on the number of threads.
#[test]
fn results_are_identical_for_any_thread_count() {
    let designs: Vec<_> = ["s-sprint", "s-baseline", "pruning"]
        .iter()
        .map(|p| common::design(p, &[]))
        .collect();
    let w = common::small_workload(3, 4, 160, 64, 0.2, true);
    let st = common::stats(0.3, 0.9, 0.8);
    let run = |threads| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| run_model(&designs, &w, &st).unwrap())
    };
    assert_eq!(run(1), run(3));
}

/// Replaying a trace of the generated kept sets gives exactly the synthetic run's results.
#[test]
fn trace_replay_equals_the_synthetic_run() {
    let designs: Vec<_> = preset_names()
        .iter()
        .map(|p| common::design(p, &[]))
        .collect();
    for causal in [false, true] {
        let w = common::small_workload(2, 3, 130, 64, if causal { 0.0 } else { 0.3 }, causal);
        let st = common::stats(0.25, 0.9, 0.85);
        let bytes = common::trace_bytes(&w, &st);
        let (_, from_trace) = run_trace(&designs, common::reader(&bytes), Some(&w)).unwrap();
        let synthetic = run_model(&designs, &w, &st).unwrap();
        assert_eq!(from_trace, synthetic, "causal {causal}");
    }
}

/// Skipping padding, pruning and reuse each reduce traffic on a padded workload: Mask only
/// and SPRINT without reuse each move less than the baseline, reuse less than no reuse,
/// and SPRINT less than Mask only. (SPRINT without reuse need not beat Mask only: the
/// tiled baseline dataflow shares each fetched key among a block of queries.)
#[test]
fn each_mechanism_reduces_traffic() {
    let names = ["s-baseline", "mask-only", "sprint-no-reuse", "s-sprint"];
    let designs: Vec<_> = names.iter().map(|p| common::design(p, &[])).collect();
    let w = common::small_workload(2, 2, 384, 64, 0.46, false);
    let t = run_model(&designs, &w, &common::stats(0.15, 0.94, 0.85)).unwrap();
    for (more, less) in [(0, 1), (0, 2), (2, 3), (1, 3)] {
        assert!(
            t[less].moved.total() < t[more].moved.total(),
            "{} does not move less than {}",
            names[less],
            names[more]
        );
    }
}

/// Several workloads in one parallel run (`run_models`): identical for 1 and 2 threads, and
/// equal to running each workload on its own.
#[test]
fn run_models_is_thread_count_independent_and_equals_one_by_one() {
    let a: Vec<_> = ["s-sprint", "s-baseline"]
        .iter()
        .map(|p| common::design(p, &[]))
        .collect();
    let b: Vec<_> = ["m-sprint", "mask-only", "l-baseline"]
        .iter()
        .map(|p| common::design(p, &[]))
        .collect();
    let w1 = common::small_workload(2, 3, 130, 64, 0.3, false);
    let w2 = common::small_workload(3, 2, 200, 64, 0.0, true);
    let s1 = common::stats(0.25, 0.9, 0.85);
    let s2 = common::stats(0.4, 0.7, 0.6);
    let jobs = [
        ModelJob {
            designs: &a,
            workload: &w1,
            stats: &s1,
        },
        ModelJob {
            designs: &b,
            workload: &w2,
            stats: &s2,
        },
        ModelJob {
            designs: &b,
            workload: &w1,
            stats: &s2,
        },
    ];
    let run = |threads| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| run_models(&jobs).unwrap())
    };
    let one = run(1);
    assert_eq!(one, run(2));
    for (j, got) in jobs.iter().zip(&one) {
        assert_eq!(got, &run_model(j.designs, j.workload, j.stats).unwrap());
    }
}

/// Traffic-only mode (what `--compare-paper` uses for Pruning and Mask only, whose time it
/// never reads) counts the same actions, bytes and writes as the timed run; only the
/// timing statistics are left at 0.
#[test]
fn traffic_only_counts_equal_the_timed_run() {
    let w = common::small_workload(2, 2, 150, 64, 0.3, true);
    let st = common::stats(0.3, 0.8, 0.7);
    for p in ["pruning", "mask-only", "s-sprint", "s-baseline"] {
        let timed = common::design(p, &[]);
        let mut fast = timed.clone();
        fast.traffic_only = true;
        let t = run_model(&[timed, fast], &w, &st).unwrap();
        assert_eq!(t[0].actions, t[1].actions, "{p}");
        assert_eq!(t[0].moved, t[1].moved, "{p}");
        assert_eq!(
            (
                t[0].written_bytes,
                t[0].written_q_bytes,
                t[0].k_fetched,
                t[0].v_fetched
            ),
            (
                t[1].written_bytes,
                t[1].written_q_bytes,
                t[1].k_fetched,
                t[1].v_fetched
            ),
            "{p}"
        );
        assert_eq!(t[1].cycles, 0);
    }
}

/// Designs that differ only in key and names simulate identically; any simulated value
/// makes them different.
#[test]
fn same_simulation_ignores_names_only() {
    let a = common::design("s-baseline", &[]);
    let mut b = a.clone();
    b.key = "other".into();
    b.file.name = "Other".into();
    assert!(same_simulation(&a, &b));
    let c = common::design("s-baseline", &["design.query_block_per_corelet=3"]);
    let d = common::design("s-baseline", &["memory.channels=2"]);
    assert_ne!(a.query_block_per_corelet, 3);
    assert!(!same_simulation(&a, &c));
    assert!(!same_simulation(&a, &d));
}
