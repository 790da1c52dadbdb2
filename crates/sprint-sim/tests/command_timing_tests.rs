//! Exact timing of short command sequences (Ramulator-style layer 2).

mod common;

use sprint_sim::head::{HeadShape, HeadSim, Validity};
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
        150,
        "a partial burst costs a whole burst"
    );
}

/// One SPRINT query keeping one key: CopyQ (tCL 15) -> tAxTh (8) -> ReadP (tCL 15 + one
/// burst 10) = 48; then on bank (0, 0): q at 48 + 25 + 15 + 10 = 98 (ready 83); K_MSB
/// (transposed, other row): 83 + 3 + 25 = 111 -> data 126..136; K_LSB: 121 + 28 = 149 ->
/// 164..174; V: 159 + 28 = 187 -> 202..212. Core: starts at 98, bypass: A ends at
/// max(98 + 8, 212 + 8) = 220 (A = 1 key + adder-tree fill 7); B = divide 16 + 1 = 17.
#[test]
fn one_sprint_query_exact_timing() {
    let d = common::design("s-sprint", &[]);
    let shape = HeadShape {
        n_queries: 1,
        n_keys: 64,
        head_dim: 64,
        causal: false,
        writes_kv: false,
        locality: sprint_core::config::LocalityPolicy::Paper,
    };
    let mut sim = HeadSim::new(&d, shape, Validity::Prefix(64));
    sim.query(0, true, Some(&[1u64]), 1);
    let s = sim.finish();
    assert_eq!(s.scoring_cycles, 48);
    assert_eq!(s.cycles, 237);
    assert_eq!(s.activations, 4);
    assert_eq!(s.bursts, 4);
}

/// The same query without bypass waits for every miss before scoring: A = 212 + 8.
#[test]
fn no_bypass_waits_for_misses() {
    let d = common::design("s-sprint", &["design.miss_bypass=false"]);
    let shape = HeadShape {
        n_queries: 1,
        n_keys: 64,
        head_dim: 64,
        causal: false,
        writes_kv: false,
        locality: sprint_core::config::LocalityPolicy::Paper,
    };
    let mut sim = HeadSim::new(&d, shape, Validity::Prefix(64));
    sim.query(0, true, Some(&[1u64]), 1);
    assert_eq!(sim.finish().cycles, 212 + 8 + 17);
}
