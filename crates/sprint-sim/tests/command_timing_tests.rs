//! Exact timing of short command sequences (Ramulator-style layer 2).

mod common;

use sprint_sim::head::{HeadShape, HeadSim, Validity, run_ahead};
use sprint_sim::memory::{Kind, MemoryState, Request};

fn req(channel: u32, bank: u32, row: u64, bytes: u64) -> Request {
    Request {
        channel,
        bank,
        kind: Kind::V,
        row,
        bytes,
    }
}

/// s-sprint timing in cycles at 1 GHz: tRCD 25, tCL 15, tRP 3 (2.5 ns rounded up),
/// tBURST 10 (64 B at 6.4 B/ns), tAxTh 8.
#[test]
fn preset_timing_in_cycles() {
    let m = common::design("s-sprint", &[]).memory;
    assert_eq!(
        (m.trcd, m.tcl, m.trp, m.tburst, m.taxth),
        (25, 15, 3, 10, 8)
    );
}

#[test]
fn single_read_to_a_closed_row() {
    let m = common::design("s-sprint", &[]).memory;
    let mut s = MemoryState::new(&m);
    assert_eq!(s.issue(0, req(0, 0, 0, 64)), 25 + 15 + 10);
    assert_eq!(s.activations, 1);
}

#[test]
fn row_hit_follows_back_to_back() {
    let m = common::design("s-sprint", &[]).memory;
    let mut s = MemoryState::new(&m);
    let a = s.issue(0, req(0, 0, 0, 64));
    assert_eq!(s.issue(0, req(0, 0, 0, 128)), a + 2 * 10);
    assert_eq!(s.activations, 1);
}

#[test]
fn row_conflict_precharges_and_activates() {
    let m = common::design("s-sprint", &[]).memory;
    let mut s = MemoryState::new(&m);
    let a = s.issue(0, req(0, 0, 0, 64)); // 50; bank ready for a column command at 35
    // Next column command: 35 + tRP 3 + tRCD 25 = 63; data 63 + 15 .. + 10.
    assert_eq!(a, 50);
    assert_eq!(s.issue(0, req(0, 0, 1, 64)), 63 + 15 + 10);
    assert_eq!(s.activations, 2);
}

#[test]
fn two_banks_share_the_bus_two_channels_do_not() {
    let m = common::design("s-sprint", &[]).memory;
    let mut s = MemoryState::new(&m);
    assert_eq!(s.issue(0, req(0, 0, 0, 64)), 50);
    assert_eq!(
        s.issue(0, req(0, 1, 0, 64)),
        60,
        "same channel: waits for the bus"
    );
    assert_eq!(
        s.issue(0, req(1, 0, 0, 64)),
        50,
        "other channel: in parallel"
    );
    assert_eq!(
        s.issue(100, req(2, 3, 9, 1)),
        145,
        "a partial burst costs a whole 32 B transfer (5 cycles)"
    );
    assert_eq!(
        s.issue(200, req(3, 0, 0, 96)),
        200 + 25 + 15 + 10 + 5,
        "96 B = one burst + one chop"
    );
    let whole = common::design("s-sprint", &["memory.min_transfer_bytes=64"]).memory;
    let mut w = MemoryState::new(&whole);
    assert_eq!(w.issue(100, req(2, 3, 9, 1)), 150, "no chop: a whole burst");
}

/// The kinds of one token sit in different banks (offsets K_MSB 0, K_LSB 1, V 2, Q 3), and
/// a transposed K_MSB read leaves the bank's ordinary row open.
#[test]
fn kinds_of_a_token_in_different_banks_and_kmsb_arrays_apart() {
    let m = common::design("s-sprint", &[]).memory;
    let s = MemoryState::new(&m);
    let banks: Vec<u32> = [Kind::KMsb, Kind::KLsb, Kind::V, Kind::Q]
        .iter()
        .map(|&k| s.locate(5, k).1)
        .collect();
    assert_eq!(banks, vec![1, 2, 3, 0], "token 5: channel 1, base bank 1");
    let mut s = MemoryState::new(&m);
    let lsb = |row| Request {
        channel: 0,
        bank: 0,
        kind: Kind::KLsb,
        row,
        bytes: 64,
    };
    let msb = Request {
        kind: Kind::KMsb,
        ..lsb(7)
    };
    assert_eq!(s.issue(0, lsb(0)), 50);
    // K_MSB opens its transposable array (tRCD, no precharge of the ordinary row): column
    // at 35 + 25 = 60, data 75..85.
    assert_eq!(s.issue(0, msb), 85);
    // The ordinary row is still open: a row hit, column at 75, data behind the bus at 85.
    assert_eq!(s.issue(0, lsb(0)), 95);
    assert_eq!(s.activations, 2);
}

/// One SPRINT query keeping one key: CopyQ (tCL 15) -> tAxTh (8) -> ReadP (tCL 15 + one
/// 32 B transfer 5) = 43; then on channel 0, all in different banks (q on bank 3, K_MSB 0,
/// K_LSB 1, V 2), each activated at 43 + 25 and its data after tCL at 83, one after the
/// other on the bus, q first: q 83..93, K_MSB (32 B) 93..98, K_LSB 98..103, V 103..113.
/// Core: starts at 93, bypass: A frees at max(93 + 1, 113 + 1) = 114, done after the fill
/// (7) at 121; divide 16 -> 137; V 1 -> 138.
#[test]
fn one_sprint_query_exact_timing() {
    let d = common::design("s-sprint", &[]);
    let mut sim = HeadSim::new(&d, one_key_shape(), Validity::Prefix(64));
    sim.query(0, true, Some(&[1u64]), 1);
    let s = sim.finish();
    assert_eq!(s.scoring_cycles, 43);
    assert_eq!(s.cycles, 138);
    assert_eq!(s.activations, 4);
    assert_eq!(s.bursts, 4);
}

fn one_key_shape() -> HeadShape {
    HeadShape {
        n_queries: 1,
        n_keys: 64,
        head_dim: 64,
        causal: false,
        writes_kv: false,
        locality: sprint_core::config::LocalityPolicy::SldStrict,
        mean_kept_keys: None,
    }
}

/// Without bypass the core waits for the last miss (113) before scoring: 113 + 1 + 7 +
/// 16 + 1; with a single kept key the bypass has nothing to overlap, so the same 138.
#[test]
fn no_bypass_waits_for_misses() {
    let d = common::design("s-sprint", &["design.miss_bypass=false"]);
    let mut sim = HeadSim::new(&d, one_key_shape(), Validity::Prefix(64));
    sim.query(0, true, Some(&[1u64]), 1);
    assert_eq!(sim.finish().cycles, 113 + 1 + 7 + 16 + 1);
}

/// Two consecutive queries keeping one key each, pipelined scoring: query 1's CopyQ starts
/// when query 0's tAxTh is done less tCL (38 - 15 = 23): CopyQ 23..38, tAxTh 38..46, ReadP
/// data from max(46 + 15, 43) = 61 to 66. The tCL of CopyQ and ReadP no longer block the
/// next query (issue #10: they were counted as occupancy, a floor of about 25 cycles per
/// query); scoring took 66 - 23 = 43 cycles, 43 + 43 = 86 in total.
#[test]
fn scoring_latencies_overlap_across_queries() {
    let d = common::design(
        "s-sprint",
        &["design.run_ahead=\"fixed\"", "design.prefetch_queries=4"],
    );
    let mut sim = HeadSim::new(&d, one_key_shape(), Validity::Prefix(64));
    sim.query(0, true, Some(&[1u64]), 1);
    sim.query(0, true, Some(&[1u64]), 1);
    assert_eq!(sim.finish().scoring_cycles, 86);
}

/// Little's law sizes the run-ahead (docs/simulator.md "Run-ahead"). S-SPRINT's timings at
/// 1 GHz: tRCD 25, tCL 15, tAxTh 8, one 32 B transfer 5 cycles. Latency from issuing a
/// query to its first data, 207 real keys visible: CopyQ 15 + tAxTh 8 + ReadP 15 + its
/// 26 B of bits (one transfer, 5) = 43, then the query vector from a closed row: 25 + 15 +
/// two transfers (10) = 50; W = 93. Service at 55 kept keys (d = 64 on 64 multipliers: one
/// cycle per key): S 55 -> ceil(93 / 55) = 2; M ceil(55 / 2) = 28 -> 4; L ceil(55 / 4) = 14
/// -> 7. The dense baseline: W = 50 over 384 keys per query -> 1. `fixed` takes the preset.
#[test]
fn run_ahead_is_littles_law() {
    let shape = |kept: Option<f64>| HeadShape {
        n_queries: 384,
        n_keys: 384,
        head_dim: 64,
        causal: false,
        writes_kv: true,
        locality: sprint_core::config::LocalityPolicy::Residency,
        mean_kept_keys: kept,
    };
    let valid = Validity::Prefix(207);
    for (preset, expect) in [("s-sprint", 2), ("m-sprint", 4), ("l-sprint", 7)] {
        let d = common::design(preset, &[]);
        assert_eq!(
            run_ahead(&d, &shape(Some(55.0)), &valid),
            expect,
            "{preset}"
        );
    }
    let base = common::design("s-baseline", &[]);
    assert_eq!(run_ahead(&base, &shape(None), &valid), 1);
    let fixed = common::design(
        "l-sprint",
        &["design.run_ahead=\"fixed\"", "design.prefetch_queries=3"],
    );
    assert_eq!(run_ahead(&fixed, &shape(Some(55.0)), &valid), 3);
}
