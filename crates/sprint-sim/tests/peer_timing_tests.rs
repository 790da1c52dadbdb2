//! Exact timing of short command sequences on the peer designs (Sanger, LeOPArd), derived by
//! hand like `command_timing_tests.rs`, and closed-form counts of their dataflows.
//!
//! Timing at 1 GHz on the presets' memory (s-sprint's): tRCD 25, tCL 15, one 32 B transfer 5
//! cycles, 4 channels x 4 banks; token `j` on channel `j % 4`, bank `(j / 4 + o) % 4` with
//! the per-kind offset `o` (whole K 0, Sanger's 4-bit K in the K_LSB region 1, V 2, Q 3).
//! A read of a closed row ends at `issue + tRCD + tCL + transfers`, and the reads of one
//! channel share its bus.

mod common;

use sprint_sim::head::{HeadShape, HeadSim, Validity, run_ahead};
use sprint_sim::run::run_model;

fn one_key() -> HeadShape {
    HeadShape {
        n_queries: 1,
        n_keys: 1,
        head_dim: 64,
        causal: false,
        writes_kv: false,
        locality: sprint_core::config::LocalityPolicy::Residency,
        mean_kept_keys: None,
    }
}

/// One Sanger query keeping its one key, on one CORELET. The predictor's batch is issued at
/// 0: q (64 B, bank 3) from a closed row ends at 25 + 15 + 10 = 50; the 4-bit key (32 B,
/// bank 1, activated in parallel) follows q on the bus: 50 + 5 = 55. The predictor (1 pair x
/// 64 MACs on 256 MACs: 1 cycle) starts when q is there (50) and ends after the last key:
/// max(50 + 1, 55 + 1) = 56. The mask is then known and the exact batch is issued at 56:
/// K (64 B, bank 0) ends at 56 + 40 + 10 = 106, V (bank 2) follows on the bus: 116. The QK
/// stage (1 key, 1 cycle) bypasses to the last data: max(106 + 1, 116 + 1) = 117; adder
/// tree fill log2(64) + 1 = 7: 124; divide 16: 140; V-PU one value: 141.
#[test]
fn one_sanger_query_exact_timing() {
    let d = common::design("sanger", &["core.corelets=1"]);
    let mut sim = HeadSim::new(&d, one_key(), Validity::Prefix(1));
    sim.query(0, true, Some(&[1u64]), 1);
    let s = sim.finish();
    assert_eq!(s.cycles, 141);
    assert_eq!(s.predictor_busy_cycles, 1);
    assert_eq!(s.predictor_macs, 64);
    assert_eq!(s.activations, 4);
    assert_eq!(s.moved.k_predictor, 32);
    assert_eq!((s.moved.k_whole, s.moved.v, s.moved.q), (64, 64, 64));
    assert_eq!(s.scoring_cycles, 0);
}

/// One LeOPArd query on its one key with 8 bit-serial lanes: q, K and V (64 B each, banks
/// 3, 0, 2 of channel 0) issued at 0 end at 50, 60, 70. The key's 5.38 planes per pair
/// (the preset's bidirectional statistic) round to 5 planes for this query, each of 64
/// elements on 8 lanes: 40 cycles from q's arrival, 50 + 40 = 90 (after the last data, 71).
/// Fill 7: 97; divide 16: 113; V-PU one survivor: 114. With the trace's count of 8 planes
/// (full precision): 64 cycles, 50 + 64 + 7 + 16 + 1 = 138.
#[test]
fn one_leopard_query_exact_timing() {
    let d = common::design(
        "leopard",
        &["core.corelets=1", "peer.bit_serial_lanes_per_corelet=8"],
    );
    let mut sim = HeadSim::new(&d, one_key(), Validity::Prefix(1));
    sim.query(0, true, Some(&[1u64]), 1);
    let s = sim.finish();
    assert_eq!(s.cycles, 114);
    assert_eq!(s.k_bit_planes, 5);
    assert_eq!(s.qk_busy_cycles, 40);
    assert_eq!((s.moved.k_whole, s.moved.v, s.moved.q), (64, 64, 64));
    let mut sim = HeadSim::with_key_planes(&d, one_key(), Validity::Prefix(1), Some(8.0));
    sim.query(0, true, Some(&[1u64]), 1);
    let s = sim.finish();
    assert_eq!(s.cycles, 138);
    assert_eq!(s.k_bit_planes, 8);
}

/// LeOPArd at full precision (8 planes per pair) on 512 lanes scores one 64-element key per
/// cycle, as the 64 8-bit multipliers of the dense designs do: a compute-bound LeOPArd and
/// SPRINT's "Pruning" design (on-chip runtime pruning, same tiling) on fitting heads take
/// the same cycles when both skip padding. With 5.38 planes the QK stage shrinks by
/// 8 / 5.38 wherever it is the bottleneck, and never grows.
#[test]
fn leopard_at_full_precision_equals_runtime_pruning() {
    let w = common::small_workload(1, 2, 96, 64, 0.25, false);
    let st = common::stats(0.25, 0.9, 0.85);
    let full = common::design(
        "leopard",
        &[
            "peer.key_planes_per_pair_bidirectional=8",
            "core.corelets=1",
        ],
    );
    let early = common::design("leopard", &["core.corelets=1"]);
    let pruning = common::design(
        "pruning",
        &["design.skip_padding=true", "design.causal_aware=true"],
    );
    let t = run_model(&[full, early, pruning], &w, &st).unwrap();
    assert_eq!(t[0].cycles, t[2].cycles);
    assert_eq!(t[0].moved, t[2].moved);
    assert_eq!(t[0].k_bit_planes, 8 * t[0].keys_scored);
    assert!(t[1].cycles <= t[0].cycles);
    assert_eq!(t[1].moved, t[0].moved);
}

/// Sanger's predictor tiling, counted: 512 keys of d = 64 do not fit the predictor's half of
/// M's key buffer (8 KB of 4-bit keys = 256 keys), so half of it keeps the first 128 keys
/// and every block of 5 queries (the baseline's shared block) streams the other 384:
/// 128 + 103 x 384 = 39 808 keys, 32 B each. The predictor
/// performs 512 x 512 pairs x 64 MACs on 2 x 256 MACs per cycle: 64 cycles per query.
/// The exact phase fetches the masked keys only, so the exact K and V bytes are those of
/// the kept keys (at most the predictor's key count).
#[test]
fn sanger_predictor_is_tiled_and_counted() {
    let w = common::small_workload(1, 1, 512, 64, 0.0, false);
    let st = common::stats(0.25, 0.9, 0.85);
    let d = common::design("sanger", &[]);
    let t = &run_model(&[d], &w, &st).unwrap()[0];
    assert_eq!(t.moved.k_predictor, (128 + 103 * 384) * 32);
    assert_eq!(t.predictor_macs, 512 * 512 * 64);
    assert_eq!(t.predictor_busy_cycles, 512 * 64);
    assert_eq!(
        t.keys_softmax, t.keys_scored,
        "no recheck: every masked key in softmax"
    );
    assert!(t.moved.k_whole <= (128 + 103 * 384) * 64);
    // The 4-bit copy of K is written at run time beside K and V.
    assert_eq!(t.written_bytes, 512 * (64 + 64 + 32));
}

/// Little's law for the peers (docs/simulator.md "Run-ahead"): W for Sanger adds its
/// predictor's occupancy to the query's fetch (25 + 15 + 10 = 50): 207 visible keys x 64 on
/// 2 x 256 MACs = 26 cycles, W = 76; its service is the kept keys' (55 on 2 CORELETs: 28),
/// so ceil(76 / 28) = 3. LeOPArd's service is the bit-serial unit's: 104 keys per CORELET
/// x 5.38 planes x 64 / 512 lanes = 69.94 cycles, W = 50: 1.
#[test]
fn peer_run_ahead_is_littles_law() {
    let shape = HeadShape {
        n_queries: 384,
        n_keys: 384,
        head_dim: 64,
        causal: false,
        writes_kv: true,
        locality: sprint_core::config::LocalityPolicy::Residency,
        mean_kept_keys: Some(55.0),
    };
    let valid = Validity::Prefix(207);
    assert_eq!(run_ahead(&common::design("sanger", &[]), &shape, &valid), 3);
    assert_eq!(
        run_ahead(&common::design("leopard", &[]), &shape, &valid),
        1
    );
}

/// A peer preset with a key of the other dataflow, a missing key, or in-memory pruning is
/// refused with the key named.
#[test]
fn peer_sections_are_checked() {
    use sprint_sim::presets::load_design;
    let err = |name: &str, sets: &[&str]| {
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        load_design(name, &sets).unwrap_err().to_string()
    };
    let e = err("sanger", &["design.in_memory_pruning=true"]);
    assert!(e.contains("design.in_memory_pruning"), "{e}");
    let e = err("sanger", &["design.on_chip_pruning=true"]);
    assert!(e.contains("design.on_chip_pruning"), "{e}");
    let e = err("leopard", &["peer.key_planes_per_pair_causal=9"]);
    assert!(
        e.contains("peer.key_planes_per_pair_causal") && e.contains("1..=8"),
        "{e}"
    );
    let e = err("leopard", &["peer.bit_serial_lanes_per_corelet=0"]);
    assert!(e.contains("peer.bit_serial_lanes_per_corelet"), "{e}");
    let e = err("sanger", &["peer.predictor_bits=0"]);
    assert!(e.contains("peer.predictor_bits"), "{e}");
    let e = err("sanger", &["peer.dataflow=\"leopard\""]);
    assert!(
        e.contains("peer.predictor_bits") || e.contains("peer.key_bits"),
        "{e}"
    );
    let e = err("s-sprint", &["peer.key_bits=8"]);
    assert!(e.contains("peer"), "{e}");
}

/// One A3 query keeping its one key as a candidate, on one CORELET. The search's batch is
/// issued at 0: q (64 B, bank 3) from a closed row ends at 25 + 15 + 10 = 50, the whole key
/// (64 B, bank 0, activated in parallel) follows q on the bus: 60. The search (1 iteration
/// per visible key, 1 per cycle) starts when q is there and ends after the key: max(50 + 1,
/// 60 + 1) = 61. The candidate's key is on chip already, so the exact batch is V alone
/// (bank 2), issued at 61: 61 + 40 + 10 = 111. QK (1 key, 1 cycle): 112; fill 7: 119;
/// divide 16: 135; V-PU one survivor: 136.
#[test]
fn one_a3_query_exact_timing() {
    let d = common::design("a3", &["core.corelets=1"]);
    let mut sim = HeadSim::new(&d, one_key(), Validity::Prefix(1));
    sim.query(0, true, Some(&[1u64]), 1);
    let s = sim.finish();
    assert_eq!(s.cycles, 136);
    assert_eq!(s.candidate_iterations, 1);
    assert_eq!(s.predictor_busy_cycles, 1);
    assert_eq!((s.k_fetched, s.k_reused), (0, 1));
    assert_eq!((s.moved.k_whole, s.moved.v, s.moved.q), (64, 64, 64));
    assert_eq!(s.activations, 3);
    // A3's filter keys are K itself: no extra copy is written.
    assert_eq!(s.written_bytes, 0);
}

/// One Energon query keeping its one key, on one CORELET. As Sanger's: q ends at 50, the
/// 4-bit key (32 B, bank 1) at 55. The filter rounds: round 1 over the visible key, round 2
/// over its survivors (round(1 x 0.494) = 0, at least 1): (1 + 1) x 64 MACs on 256 per cycle
/// = 1 cycle, ending at max(50 + 1, 55 + 1) = 56. The exact batch at 56: K ends at 106, V
/// at 116; QK 117; fill 7: 124; divide 16: 140; V-PU 141.
#[test]
fn one_energon_query_exact_timing() {
    let d = common::design("energon", &["core.corelets=1"]);
    let mut sim = HeadSim::new(&d, one_key(), Validity::Prefix(1));
    sim.query(0, true, Some(&[1u64]), 1);
    let s = sim.finish();
    assert_eq!(s.cycles, 141);
    assert_eq!(s.predictor_busy_cycles, 1);
    assert_eq!(s.predictor_macs, 128);
    assert_eq!(s.moved.k_predictor, 32);
    assert_eq!((s.moved.k_whole, s.moved.v, s.moved.q), (64, 64, 64));
}

/// One SpAtten query keeping its one key, on one CORELET: q, K and V (64 B each, banks 3,
/// 0, 2 of channel 0) issued at 0 end at 50, 60, 70. QK bypasses to the last data: 71; fill
/// 7: 78; divide 16: 94. The top-k engine selects the values (quick-select reads 2 x 1
/// element at 4 per cycle: 1 cycle): 95; V-PU the one kept value: 96. At 1 element per
/// cycle the top-k takes 2 cycles: 97. Progressive quantisation with every row recomputed:
/// q 50, K_MSB (32 B, bank 0) 55, K_LSB (32 B, bank 1) 60, V 70; QK twice (2 cycles) still
/// ends at the last data + 1 = 71, so 96 again, with 32 + 32 B of key moved.
#[test]
fn one_spatten_query_exact_timing() {
    let run = |sets: &[&str]| {
        let mut all = vec!["core.corelets=1"];
        all.extend_from_slice(sets);
        let d = common::design("spatten", &all);
        let mut sim = HeadSim::new(&d, one_key(), Validity::Prefix(1));
        sim.query(0, true, Some(&[1u64]), 1);
        sim.finish()
    };
    let s = run(&[]);
    assert_eq!(s.cycles, 96);
    assert_eq!(s.topk_busy_cycles, 1);
    assert_eq!((s.moved.k_whole, s.moved.v, s.moved.q), (64, 64, 64));
    assert_eq!(run(&["peer.topk_elements_per_cycle=1"]).cycles, 97);
    let s = run(&[
        "peer.progressive_quantization=true",
        "peer.requant_row_fraction=1.0",
    ]);
    assert_eq!(s.cycles, 96);
    assert_eq!(s.requant_rows, 1);
    assert_eq!((s.moved.k_msb, s.moved.k_lsb, s.moved.k_whole), (32, 32, 0));
    assert_eq!(s.qk_busy_cycles, 2);
}

/// The filter stages counted on a head of 96 tokens, 72 real (d = 64, not causal, M's two
/// CORELETs): every real query sees 72 keys. A3 runs 72 iterations per query (one per
/// visible key), 72 x 72 in all, at 2 per cycle: 36 cycles per query; its keys (96 <= 256
/// fit) are fetched once, 72 x 64 B, and the exact stage fetches none. Energon filters
/// 72 + round(72 x 0.494) = 108 pairs per query, 72 x 108 x 64 MACs, and writes a 4-bit
/// copy of K (32 B per real token) beside K and V.
#[test]
fn filter_stages_are_counted() {
    let w = common::small_workload(1, 1, 96, 64, 0.25, false);
    let st = common::stats(0.25, 0.9, 0.85);
    let t = run_model(
        &[common::design("a3", &[]), common::design("energon", &[])],
        &w,
        &st,
    )
    .unwrap();
    let (a3, en) = (&t[0], &t[1]);
    assert_eq!(a3.candidate_iterations, 72 * 72);
    assert_eq!(a3.predictor_busy_cycles, 72 * 36);
    assert_eq!(a3.moved.k_whole, 72 * 64);
    assert_eq!(a3.k_fetched, 0);
    assert!(a3.keys_softmax <= a3.keys_scored);
    assert_eq!(en.predictor_macs, 72 * 108 * 64);
    assert_eq!(en.written_bytes, 72 * (64 + 64 + 32));
    assert_eq!(en.keys_softmax, en.keys_scored, "no recheck");
}

/// SpAtten's local value pruning: with every value kept the top-k engine is idle and the
/// V traffic is the kept keys'; at 30 % each query's x V covers ceil(0.3 x kept) values,
/// so the V-PU's cycles and the values moved fall, the keys and the softmax do not.
#[test]
fn spatten_value_pruning_scales_the_values() {
    let w = common::small_workload(1, 2, 512, 64, 0.0, false);
    let st = common::stats(0.25, 0.9, 0.85);
    let all = common::design("spatten", &["peer.value_keep_fraction=1.0"]);
    let top = common::design("spatten", &[]);
    let t = run_model(&[all, top], &w, &st).unwrap();
    assert_eq!(t[0].topk_busy_cycles, 0);
    assert!(t[1].topk_busy_cycles > 0);
    assert_eq!(t[0].keys_softmax, t[1].keys_softmax);
    assert_eq!(t[0].moved.k_whole, t[1].moved.k_whole);
    let (v_all, v_top) = (t[0].v_busy_cycles, t[1].v_busy_cycles);
    // ceil(0.3 x kept) per query: between 0.3 and 0.3 + 1 / kept of the full x V.
    assert!(v_top as f64 >= 0.3 * v_all as f64 && (v_top as f64) < 0.32 * v_all as f64);
    assert!(t[1].moved.v < t[0].moved.v);
}

/// A peer that knows its kept set before the fetch is driven by the generated kept sets
/// also when no other design of the run prunes (regression: Sanger alone used to see every
/// visible key as kept), and a design's numbers do not depend on its neighbours.
#[test]
fn peers_alone_get_the_kept_sets() {
    let w = common::small_workload(1, 2, 256, 64, 0.25, false);
    let st = common::stats(0.25, 0.9, 0.85);
    for name in ["sanger", "a3", "spatten", "energon"] {
        let alone = run_model(&[common::design(name, &[])], &w, &st).unwrap();
        let beside = run_model(
            &[common::design("s-baseline", &[]), common::design(name, &[])],
            &w,
            &st,
        )
        .unwrap();
        assert_eq!(alone[0], beside[1], "{name}");
        assert!(alone[0].keys_scored < 2 * 192 * 192 / 2, "{name}: pruned");
    }
}

/// The new dataflows' keys are checked like the others: a key of another dataflow, a
/// fraction out of range, or a recheck where the dataflow has none is refused by name.
#[test]
fn new_peer_sections_are_checked() {
    use sprint_sim::presets::load_design;
    let err = |name: &str, sets: &[&str]| {
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        load_design(name, &sets).unwrap_err().to_string()
    };
    let e = err("a3", &["peer.predictor_bits=4"]);
    assert!(e.contains("peer.predictor_bits") && e.contains("a3"), "{e}");
    let e = err("spatten", &["peer.value_keep_fraction=0"]);
    assert!(e.contains("peer.value_keep_fraction"), "{e}");
    let e = err("spatten", &["peer.value_keep_fraction=1.5"]);
    assert!(e.contains("peer.value_keep_fraction"), "{e}");
    let e = err("energon", &["design.on_chip_pruning=true"]);
    assert!(e.contains("design.on_chip_pruning"), "{e}");
    let e = err("energon", &["peer.filter_key_bits=3"]);
    assert!(e.contains("peer.filter_key_bits"), "{e}");
    let e = err("a3", &["peer.candidate_iterations_per_cycle_per_corelet=0"]);
    assert!(
        e.contains("candidate_iterations_per_cycle_per_corelet"),
        "{e}"
    );
    for p in [
        "a3",
        "a3-published",
        "spatten",
        "spatten-published",
        "energon",
        "energon-published",
    ] {
        load_design(p, &[]).unwrap_or_else(|e| panic!("{p}: {e}"));
    }
}

/// A trace's own counts drive its design, per visible pair: on 96 tokens with 72 real
/// (2 heads), 72 x 72 = 5184 visible pairs per head. An `a3` trace counting 2 iterations per
/// pair makes A3 run 2 x 5184 per head (the preset's 1 per key would give 5184); an
/// `energon` trace whose round 1 kept half the pairs costs (5184 + 2592) x 64 filter MACs
/// per head. `--peer-trace` replays each trace on its variant's design beside S-Baseline,
/// and refuses a variant without one.
#[test]
fn traces_drive_the_peers_with_their_own_counts() {
    use sprint_core::trace::HeadStats as TraceStats;
    use sprint_sim::peer_traces::peer_trace_rows;
    use sprint_sim::presets::load_energy;
    use sprint_sim::run::run_trace;
    let w = common::small_workload(1, 2, 96, 64, 0.25, false);
    let st = common::stats(0.25, 0.9, 0.85);
    let pairs = 72 * 72;
    let a3_trace = common::trace_bytes_as(
        &w,
        &st,
        "a3",
        TraceStats {
            candidate_iterations: 2 * pairs,
            ..Default::default()
        },
    );
    let a3 = common::design("a3", &[]);
    let (_, t) = run_trace(std::slice::from_ref(&a3), common::reader(&a3_trace), None).unwrap();
    assert_eq!(t[0].candidate_iterations, 2 * 2 * pairs);
    let mut kept = [0u64; sprint_core::peers::MAX_FILTER_ROUNDS];
    kept[0] = pairs / 2;
    let en_trace = common::trace_bytes_as(
        &w,
        &st,
        "energon",
        TraceStats {
            filter_kept: kept,
            ..Default::default()
        },
    );
    let en = common::design("energon", &[]);
    let (_, t) = run_trace(std::slice::from_ref(&en), common::reader(&en_trace), None).unwrap();
    assert_eq!(t[0].predictor_macs, 2 * (pairs + pairs / 2) * 64);
    let table = load_energy("default", &[]).unwrap();
    let rows = peer_trace_rows(
        vec![
            ("a3".to_string(), common::reader(&a3_trace)),
            ("energon".to_string(), common::reader(&en_trace)),
        ],
        &[],
        &table,
    )
    .unwrap();
    assert_eq!(
        (rows[0].name.as_str(), rows[1].name.as_str()),
        ("A3", "Energon")
    );
    assert!(rows.iter().all(|r| r.speedup > 1.0));
    let dense = common::trace_bytes_as(&w, &st, "dense", Default::default());
    let e = peer_trace_rows(
        vec![("d.trace".to_string(), common::reader(&dense))],
        &[],
        &table,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("d.trace") && e.contains("dense"), "{e}");
}
