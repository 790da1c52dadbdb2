//! Closed-form checks (Ramulator-style layer 1): a streaming baseline takes bytes /
//! bandwidth plus the pipeline fill; a compute-bound run takes MACs / (MACs per cycle) plus
//! the per-query adder-tree fill.

mod common;

use sprint_sim::run::run_model;

/// One channel, one bank, no row timing: the bus never idles, so the run is the bytes moved
/// over the channel bandwidth plus the core's tail after the last byte (QK tail 1 + fill 7,
/// then divide 16 + 512 values).
#[test]
fn streaming_baseline_is_bytes_over_bandwidth_plus_fill() {
    let d = common::design(
        "s-baseline",
        &[
            "design.reuse=\"whole-head\"",
            "memory.channels=1",
            "memory.banks_per_channel=1",
            "memory.trcd_ns=0",
            "memory.tcl_ns=0",
            "memory.trp_ns=0",
        ],
    );
    let w = common::small_workload(1, 1, 512, 64, 0.0, false);
    let t = run_model(std::slice::from_ref(&d), &w, &common::stats(1.0, 1.0, 1.0)).unwrap();
    let bytes = t[0].moved.total();
    assert_eq!(
        bytes,
        512 * (64 + 2 * 512 * 64),
        "q + K + V for every query"
    );
    let bw = d.memory.bytes_per_cycle; // 6.4 B per cycle
    let fill = (1 + 7) + (16 + 512);
    assert_eq!(t[0].cycles, (bytes as f64 / bw) as u64 + fill);
}

/// With the preset's 4 channels x 4 banks and real row timing, the streaming baseline stays
/// within 2% of bytes / (4 x 6.4 B/cycle): bank interleaving hides the row switches.
#[test]
fn streaming_baseline_with_row_timing_is_bandwidth_bound() {
    let d = common::design("s-baseline", &["design.reuse=\"whole-head\""]);
    let w = common::small_workload(1, 2, 512, 64, 0.0, false);
    let t = run_model(std::slice::from_ref(&d), &w, &common::stats(1.0, 1.0, 1.0)).unwrap();
    let ideal = t[0].moved.total() as f64 / (4.0 * d.memory.bytes_per_cycle);
    let ratio = t[0].cycles as f64 / ideal;
    assert!((1.0..1.02).contains(&ratio), "cycles / ideal = {ratio}");
}

/// K/V fit (64 KB buffers), memory made instant (64 channels, 1 cycle per burst, no row
/// timing): the QK-PU is busy n x d / 64 cycles per query, back to back; the adder-tree
/// fill (7) and the divide (16) are latencies paid once, at the end (issue #10: they were
/// counted as occupancy per query).
#[test]
fn compute_bound_is_macs_over_macs_per_cycle() {
    let d = common::design(
        "s-baseline",
        &[
            "buffer.k_buffer_bytes_per_corelet=65536",
            "buffer.v_buffer_bytes_per_corelet=65536",
            "memory.channels=64",
            "memory.banks_per_channel=1",
            "memory.bus_bytes_per_ns=64.0",
            "memory.trcd_ns=0",
            "memory.tcl_ns=0",
            "memory.trp_ns=0",
        ],
    );
    let (n, dim) = (512u64, 64u64);
    let w = common::small_workload(1, 1, n as u32, dim as u32, 0.0, false);
    let t = run_model(std::slice::from_ref(&d), &w, &common::stats(1.0, 1.0, 1.0)).unwrap();
    let macs_per_query = n * dim;
    let macs_per_cycle = u64::from(d.core.qk_multipliers);
    let fill = 7; // log2(64) adder levels + 1 multiplier stage
    let divide = 16;
    // First query vector arrives at cycle 1; then n queries of 512 QK cycles back to back;
    // the last query's fill and divide, then its 512 values through the V-PU.
    let expected = 1 + n * (macs_per_query / macs_per_cycle) + fill + divide + n;
    assert_eq!(t[0].cycles, expected);
    assert_eq!(t[0].k_fetched, n, "each key fetched once");
}

/// Dot-product units score keys in parallel (SpAtten's 512 multipliers broadcast the query
/// to 8 keys of d = 64 per cycle): the compute-bound run of
/// `compute_bound_is_macs_over_macs_per_cycle` takes n / 8 cycles per query for QK, the
/// softmax (8 exponentials per cycle) and the V-PU; the same 512 multipliers as one unit
/// still score one key per cycle.
#[test]
fn units_score_keys_in_parallel() {
    let sets = |units: u32| {
        vec![
            "buffer.k_buffer_bytes_per_corelet=65536".to_string(),
            "buffer.v_buffer_bytes_per_corelet=65536".into(),
            "memory.channels=64".into(),
            "memory.banks_per_channel=1".into(),
            "memory.bus_bytes_per_ns=64.0".into(),
            "memory.trcd_ns=0".into(),
            "memory.tcl_ns=0".into(),
            "memory.trp_ns=0".into(),
            "core.qk_multipliers_per_corelet=512".into(),
            "core.v_multipliers_per_corelet=512".into(),
            format!("core.qk_units_per_corelet={units}"),
            format!("core.v_units_per_corelet={units}"),
            "core.softmax_exps_per_cycle=8".into(),
        ]
    };
    let (n, dim) = (512u64, 64u64);
    let w = common::small_workload(1, 1, n as u32, dim as u32, 0.0, false);
    let run = |units: u32| {
        let s = sets(units);
        let refs: Vec<&str> = s.iter().map(String::as_str).collect();
        let d = common::design("s-baseline", &refs);
        run_model(std::slice::from_ref(&d), &w, &common::stats(1.0, 1.0, 1.0)).unwrap()[0]
    };
    let (fill, divide) = (7, 16); // each unit is 64 wide: log2(64) + 1
    // First query vector at cycle 1; n queries of n / 8 QK cycles back to back; the last
    // query's fill and divide, then its n values through the V-PU 8 at a time.
    assert_eq!(run(8).cycles, 1 + n * (n / 8) + fill + divide + n / 8);
    // One unit of 512: one key per cycle (a 64-element key fills 7 levels of its tree), one
    // value per cycle; the softmax's n / 8 cycles hide under the QK-PU's n.
    assert_eq!(run(1).cycles, 1 + n * n + fill + divide + n);
}

/// A short query on 4 CORELETs: the per-query latencies (fill 7, cross-CORELET reduce
/// 2 x 2, divide 16) no longer set a floor on the throughput; the QK-PU occupancy does.
/// 64 keys on 4 CORELETs = 16 cycles per query, so 256 queries take 256 x 16 cycles plus
/// one set of latencies and the last V stage (16 values + reduce 4).
#[test]
fn per_query_latencies_are_not_occupancy() {
    let d = common::design(
        "l-baseline",
        &[
            "memory.channels=64",
            "memory.banks_per_channel=1",
            "memory.bus_bytes_per_ns=64.0",
            "memory.trcd_ns=0",
            "memory.tcl_ns=0",
            "memory.trp_ns=0",
        ],
    );
    let n = 64u64;
    let w = common::small_workload(1, 1, n as u32, 64, 0.0, false);
    // 64 tokens give 64 queries; repeat the head 4 times via heads = 4 (summed cycles).
    let t = run_model(std::slice::from_ref(&d), &w, &common::stats(1.0, 1.0, 1.0)).unwrap();
    let (fill, reduce, divide) = (7, 4, 16);
    let expected = 1 + n * 16 + fill + reduce + divide + 16 + reduce;
    assert_eq!(t[0].cycles, expected);
}

/// More CORELETs divide the compute-bound time (keys interleaved, exact per-CORELET counts).
#[test]
fn corelets_divide_compute() {
    let sets = [
        "buffer.k_buffer_bytes_per_corelet=65536",
        "buffer.v_buffer_bytes_per_corelet=65536",
        "memory.channels=64",
        "memory.bus_bytes_per_ns=64.0",
        "core.softmax_divide_cycles=0",
        "core.corelet_reduce_cycles=0",
    ];
    let one = common::design("s-baseline", &sets);
    let mut s4 = sets.to_vec();
    s4.push("core.corelets=4");
    let four = common::design("s-baseline", &s4);
    let w = common::small_workload(1, 1, 512, 64, 0.0, false);
    let t = run_model(&[one, four], &w, &common::stats(1.0, 1.0, 1.0)).unwrap();
    let r = t[0].cycles as f64 / t[1].cycles as f64;
    assert!(r > 3.5 && r <= 4.0, "speedup of 4 CORELETs = {r}");
}

/// Memory channels per CORELET (`memory.channels_per_corelet`), derived by hand: M-Baseline
/// (2 CORELETs) with 1 channel per CORELET has 2 channels of 6.4 B/cycle, one bank each, no
/// row timing. Keys alternate between the channels (key `j` on channel `j % 2`), so each
/// channel carries half of every query's K and V (512 x 64 B), and query `i`'s 64 B vector
/// goes to channel `i % 2`: 256 vectors each. Each bus never idles, so both finish at
/// (512 x 32768 + 256 x 64) / 6.4 = 2 624 000 cycles; then the last query's tail: QK 1,
/// fill 7, reduce r, divide 16, 256 values per CORELET, reduce r. With the channels shared
/// (the default) the one channel carries everything: (512 x (64 + 65536)) / 6.4 = 5 248 000.
#[test]
fn memory_channels_per_corelet_scale_the_bandwidth() {
    let base = [
        "design.reuse=\"whole-head\"",
        "memory.channels=1",
        "memory.banks_per_channel=1",
        "memory.trcd_ns=0",
        "memory.tcl_ns=0",
        "memory.trp_ns=0",
    ];
    let mut per = base.to_vec();
    per.push("memory.channels_per_corelet=true");
    let shared = common::design("m-baseline", &base);
    let scaled = common::design("m-baseline", &per);
    assert_eq!((shared.memory.channels, scaled.memory.channels), (1, 2));
    let w = common::small_workload(1, 1, 512, 64, 0.0, false);
    let st = common::stats(1.0, 1.0, 1.0);
    let t = run_model(&[shared, scaled.clone()], &w, &st).unwrap();
    let r = scaled.core.reduce_cycles;
    let tail = 1 + 7 + r + 16 + 256 + r;
    assert_eq!(t[1].cycles, 2_624_000 + tail);
    assert_eq!(t[0].cycles, 5_248_000 + tail);
    assert_eq!(t[0].moved, t[1].moved, "same bytes, twice the bandwidth");
    // One CORELET: per-CORELET channels are the shared channels.
    let s1 = common::design("s-baseline", &[]);
    let s2 = common::design("s-baseline", &["memory.channels_per_corelet=true"]);
    assert_eq!(s1.memory, s2.memory);
}

/// A streamed head on the query-tiled baseline with double-buffered tiles is bound by the
/// QK-PU when a block's stream takes less bus time than its work: n = 1024 keys of 64 B,
/// blocks of 8 queries, 64 resident keys; each later block streams 960 keys x 128 B =
/// 120 KB, 4800 cycles at 4 x 6.4 B/cycle, under the block's 8 x 1024 QK cycles. So the run
/// is n x n QK cycles plus at most the first block's stream and the tail (2 %); without
/// double buffering every block waits for its stream (at least 30 % more).
#[test]
fn double_buffered_tiles_hide_the_stream_behind_the_work() {
    let n = 1024u64;
    let w = common::small_workload(1, 1, n as u32, 64, 0.0, false);
    let st = common::stats(1.0, 1.0, 1.0);
    let block = "design.query_block_per_corelet=8";
    let db = common::design("s-baseline", &[block]);
    let single = common::design("s-baseline", &[block, "design.tile_double_buffered=false"]);
    let t = run_model(&[db, single], &w, &st).unwrap();
    let work = n * n;
    let ratio = t[0].cycles as f64 / work as f64;
    assert!(
        (1.0..1.02).contains(&ratio),
        "double-buffered: cycles / (n x n) = {ratio}"
    );
    let ratio = t[1].cycles as f64 / work as f64;
    assert!(ratio > 1.3, "single-buffered: cycles / (n x n) = {ratio}");
}
