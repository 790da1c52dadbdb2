//! The engine for one (layer, query head): queries in order, each an event sequence
//! (in-memory scoring, a fetch batch, CORELET stages), with the buffer policy deciding what
//! is fetched. Heads are independent (all buffers and banks start empty), so they can be
//! simulated in parallel and their statistics summed.
//!
//! Per query `k` (padding rows skipped when the design skips padding), in phases select ->
//! buffers -> memory -> core -> count. Latencies (tCL, the adder-tree fill, the divide, the
//! cross-CORELET reduce) delay one query's result; only occupancies (the arrays during
//! tAxTh, the data bus, the QK-PU, the divider and the V-PU) delay the next query:
//! ```text
//! gate       = a_done[k-1-prefetch]                  -- bounded run-ahead of the controller
//! scoring    = CopyQ (tCL) -> tAxTh -> ReadP (tCL latency, then its bus transfer)
//!   pipelined:   CopyQ starts once the DAC buffer is free (previous tAxTh done); tAxTh
//!                occupies the arrays; ReadP's data follow the previous ReadP's data
//!   unpipelined: CopyQ starts after the previous query's transfers
//! (first, last) = memory batch issued at the end of ReadP (at `gate` without in-memory
//!              pruning): q, then K (K_MSB transposed + K_LSB, or whole K), then V
//! core_start = max(a_free[k-1], first)               -- the query vector arrived
//! a_free     = max(core_start + A, last + qk_per_key) -- bypass: resident keys first
//!            | max(core_start, last) + A             -- no bypass: wait for every miss
//! a_done     = a_free + fill + reduce                -- latency of the adder tree and sum
//! recip      = max(a_done, div_free[k-1]) + divide   -- the divider's occupancy
//! v_free     = max(recip, v_free[k-1]) + V
//! b_done     = v_free + reduce
//! ```
//! `A` = QK-PU and softmax exponentials over the keys of the busiest CORELET (keys are
//! interleaved, key `j` on CORELET `j % n`), `V` = V-PU over the softmax keys of the
//! busiest CORELET, `fill` = adder-tree depth + 1, `reduce` = log2(CORELETs) adder levels.

use std::collections::VecDeque;

use sprint_core::bits::words_for;
use sprint_core::config::LocalityPolicy;
use sprint_core::locality::LocalityEngine;

use crate::config::{Design, Peer, ReusePolicy};
use crate::keyset::{
    KeySet, Src, and_not_update, diff_resident, fill_range, keep_first, mask_from, set_of,
};
use crate::memory::{Kind, MemoryState};
use crate::peer_stage::{
    Filter, PeerCounts, PeerRates, count_filter, filter, filter_capacity, filter_cycles, rates,
    requant_row, topk_cycles, values_kept,
};
pub use crate::run_ahead::{MAX_RUN_AHEAD, run_ahead, run_ahead_rates};
pub use crate::shape::{HeadShape, Validity};
use crate::stats::HeadStats;

/// Simulation of one head under one design.
pub struct HeadSim<'d> {
    d: &'d Design,
    shape: HeadShape,
    key_valid: Validity,
    mem: MemoryState,
    engine: Option<LocalityEngine>,
    loaded_k: Vec<u64>,
    loaded_v: Vec<u64>,
    fits_k: bool,
    fits_v: bool,
    k_cap: usize,
    v_cap: usize,
    vis: Vec<u64>,
    row: Vec<u64>,
    fetch_k: Vec<u64>,
    fetch_v: Vec<u64>,
    block: Option<usize>,
    /// The filter stage (Sanger, Energon, A3), if the design has one.
    filter: Option<Filter>,
    /// Filter stage: the visible keys of the query as a bit row (its input).
    pred_row: Vec<u64>,
    /// Filter stage: filter keys on chip in the current query block.
    loaded_k4: Vec<u64>,
    /// Filter stage: filter keys the query fetches.
    fetch_k4: Vec<u64>,
    /// Filter stage: the filter keys of a head fit the filter's share of the key buffer.
    fits_k4: bool,
    /// Filter stage: the filter's share of the key buffer, keys.
    k4_cap: usize,
    /// Filter stage: query block of `loaded_k4`.
    pred_block: Option<usize>,
    /// Filter stage: free from this cycle.
    pred_free: u64,
    /// SpAtten: the top-k engine is free from this cycle.
    topk_free: u64,
    /// The peer's per-head rates (LeOPArd's planes, A3's iterations, ...).
    rates: PeerRates,
    run_ahead: usize,
    mem_done: u64,
    axth_done: u64,
    readp_done: u64,
    a_hist: VecDeque<u64>,
    a_free: u64,
    div_free: u64,
    v_free: u64,
    b_done: u64,
    s: HeadStats,
}

/// What one query scores (phase `select`); the sets themselves are in `HeadSim::row`
/// (scored, when a bit set) and `HeadSim::vis` (visible).
#[derive(Clone, Copy, Debug)]
struct Selection {
    /// Visible keys (scored in ReRAM by in-memory pruning).
    vis_n: u64,
    /// The scored set as a range, when it is one.
    scored_range: Option<(usize, usize)>,
    /// Keys scored on chip.
    scored: u64,
    /// Keys entering softmax and x V.
    sm: u64,
    /// The workload carries a kept set for this (real) query.
    prune_info: bool,
    /// LeOPArd: key bit-planes processed by the bit-serial unit for this query.
    planes: u64,
    /// Keys whose values enter x V (SpAtten's local value pruning keeps fewer than `sm`).
    v_n: u64,
    /// SpAtten: the row is recomputed with the keys' LSBs (progressive quantisation).
    requant: bool,
}

/// What one query fetches and reuses (phase `buffers`), keys.
#[derive(Clone, Copy, Debug)]
struct Fetch {
    k_src: Src,
    v_src: Src,
    k_fetched: u64,
    k_reused: u64,
    k_streamed: u64,
    v_fetched: u64,
    v_reused: u64,
    v_streamed: u64,
    /// Filter stage: filter keys fetched.
    k4_fetched: u64,
}

/// `ceil(log2(x))`, 0 for `x <= 1` (adder-tree levels over `x` inputs).
fn log2_ceil(x: u64) -> u64 {
    u64::from(x.next_power_of_two().trailing_zeros())
}

impl<'d> HeadSim<'d> {
    /// A head of `shape` with real keys `key_valid`, under design `d`.
    pub fn new(d: &'d Design, shape: HeadShape, key_valid: Validity) -> Self {
        Self::with_key_planes(d, shape, key_valid, None)
    }

    /// [`HeadSim::new`] with the key bit-planes a LeOPArd design processes per visible pair
    /// in this head, when the workload counts them (a trace's `k_bits_processed`); `None`
    /// takes the design's statistic (`peer.key_planes_per_pair_*`). Other designs ignore it.
    pub fn with_key_planes(
        d: &'d Design,
        shape: HeadShape,
        key_valid: Validity,
        planes_per_pair: Option<f64>,
    ) -> Self {
        let counts = PeerCounts {
            key_planes_per_pair: planes_per_pair,
            ..PeerCounts::default()
        };
        Self::with_counts(d, shape, key_valid, &counts)
    }

    /// [`HeadSim::new`] with what the workload counts of a peer's work in this head (a
    /// trace's head statistics); each `None` takes the preset's statistic.
    pub fn with_counts(
        d: &'d Design,
        shape: HeadShape,
        key_valid: Validity,
        counts: &PeerCounts,
    ) -> Self {
        let n = shape.n_keys;
        let rates = rates(d, shape.causal, counts);
        let filter = filter(d.peer, u64::from(shape.head_dim));
        // A low-bit filter copy (Sanger, Energon) takes half the key buffer, the exact
        // 8-bit keys of the mask the other half.
        let k_cap_all = d.k_capacity_keys(shape.head_dim);
        let split = filter.is_some_and(|f| f.split_buffer);
        let k_cap = if split { k_cap_all / 2 } else { k_cap_all };
        let filter_cap = filter.map_or(0, |f| filter_capacity(d, &f));
        let fw = if filter.is_some() { words_for(n) } else { 0 };
        let v_cap = d.v_capacity_keys(shape.head_dim);
        let policy = match d.reuse {
            ReusePolicy::Locality => Some(shape.locality),
            ReusePolicy::LocalityResidency => Some(LocalityPolicy::Residency),
            ReusePolicy::LocalitySldStrict => Some(LocalityPolicy::SldStrict),
            ReusePolicy::None | ReusePolicy::WholeHead | ReusePolicy::QueryBlock => None,
        };
        let engine = policy.map(|p| LocalityEngine::with_policy(n, k_cap, v_cap, p));
        let w = words_for(n);
        let ahead = tiled_run_ahead(
            d,
            n,
            k_cap,
            v_cap,
            run_ahead_rates(d, &shape, &key_valid, &rates),
        );
        Self {
            d,
            key_valid,
            mem: MemoryState::new(&d.memory),
            engine,
            loaded_k: vec![0; w],
            loaded_v: vec![0; w],
            // The dense dataflows tile by the padded length the hardware is given, also
            // when padded rows and columns are skipped (Mask only): Fig 10's Mask-only
            // bars (70 / 85 / 99 % at S / M / L for the 384-token encoders) follow it.
            fits_k: n <= k_cap,
            fits_v: n <= v_cap,
            k_cap,
            v_cap,
            vis: vec![0; w],
            row: vec![0; w],
            fetch_k: vec![0; w],
            fetch_v: vec![0; w],
            block: None,
            filter,
            pred_row: vec![0; fw],
            loaded_k4: vec![0; fw],
            fetch_k4: vec![0; fw],
            fits_k4: n <= filter_cap,
            k4_cap: filter_cap,
            pred_block: None,
            pred_free: 0,
            topk_free: 0,
            rates,
            run_ahead: ahead,
            mem_done: 0,
            axth_done: 0,
            readp_done: 0,
            a_hist: VecDeque::new(),
            a_free: 0,
            div_free: 0,
            v_free: 0,
            b_done: 0,
            s: HeadStats {
                heads: 1,
                ..HeadStats::default()
            },
            shape,
        }
    }

    /// Keys query `i` may attend to under this design.
    fn visible(&mut self, i: usize) -> KeySet<'_> {
        let n = self.shape.n_keys;
        let causal = self.shape.causal && self.d.causal_aware;
        let hi = sprint_core::visibility::visible_limit(i, self.shape.n_queries, n, causal);
        match (&self.key_valid, self.d.skip_padding) {
            (_, false) => KeySet::Range(0, hi),
            (Validity::Prefix(m), true) => KeySet::Range(0, hi.min(*m)),
            (Validity::Bits(w), true) => {
                self.vis.copy_from_slice(w);
                mask_from(&mut self.vis, hi);
                KeySet::Bits(&self.vis)
            }
        }
    }

    /// Simulates query `i`. `valid`: a real token. `kept`: the in-memory kept set (bit row
    /// of `words_for(n_keys)` words), `None` when the workload carries no pruning (all
    /// visible keys kept). `softmax_kept`: keys passing the exact threshold (`<= |kept|`).
    pub fn query(&mut self, i: usize, valid: bool, kept: Option<&[u64]>, softmax_kept: u32) {
        if !valid && self.d.skip_padding {
            return;
        }
        let Some(sel) = self.select(i, valid, kept, softmax_kept) else {
            return;
        };
        let f = self.buffers(i, &sel);
        if self.d.traffic_only {
            self.count(&sel, &f, 0);
            return;
        }
        let (first, last, scoring) = self.memory(i, &sel, &f);
        self.core(&sel, first, last);
        self.count(&sel, &f, scoring);
    }

    /// Phase 1: the visible keys (into `vis` when a bit set), the set scored on chip (into
    /// `row`: the kept set, or every visible key) and the softmax count. `None` when the
    /// query has nothing to score.
    fn select(
        &mut self,
        i: usize,
        valid: bool,
        kept: Option<&[u64]>,
        softmax_kept: u32,
    ) -> Option<Selection> {
        let d = self.d;
        let vis_set = self.visible(i);
        let vis_n = vis_set.count();
        if vis_n == 0 {
            return None;
        }
        let vis_range = match vis_set {
            KeySet::Range(a, b) => Some((a, b)),
            KeySet::Bits(_) => None,
        };
        let use_kept = d.kept_before_fetch && valid && kept.is_some();
        match (kept, use_kept, vis_range) {
            (Some(k), true, _) => self.row.copy_from_slice(k),
            (_, _, Some((a, b))) => fill_range(&mut self.row, a, b),
            _ => self.row.copy_from_slice(&self.vis),
        }
        let scored_range = match vis_range {
            Some(r) if !use_kept => Some(r),
            _ => None,
        };
        let scored = match scored_range {
            Some((a, b)) => (b - a) as u64,
            None => KeySet::Bits(&self.row).count(),
        };
        if scored == 0 {
            return None;
        }
        let prune_info = valid && kept.is_some();
        let sm = if d.on_chip_pruning && prune_info {
            u64::from(softmax_kept).min(scored)
        } else {
            scored
        };
        let planes = match d.peer {
            Some(Peer::Leopard { .. }) => {
                (scored as f64 * self.rates.planes_per_pair).round() as u64
            }
            _ => 0,
        };
        let requant = requant_row(self.s.queries, self.rates.requant_fraction);
        Some(Selection {
            vis_n,
            scored_range,
            scored,
            sm,
            prune_info,
            planes,
            v_n: values_kept(d, sm),
            requant,
        })
    }

    /// Phase 2: the buffer policy decides which of the scored keys (and values) are
    /// fetched (into `fetch_k` / `fetch_v` when a bit set) and which are reused.
    fn buffers(&mut self, i: usize, sel: &Selection) -> Fetch {
        let d = self.d;
        let scored = sel.scored;
        let mut f = match d.reuse {
            ReusePolicy::Locality
            | ReusePolicy::LocalityResidency
            | ReusePolicy::LocalitySldStrict => {
                let engine = self.engine.as_mut().expect("locality engine");
                diff_resident(
                    &self.row,
                    engine.key_buffer().resident_words(),
                    &mut self.fetch_k,
                );
                diff_resident(
                    &self.row,
                    engine.value_buffer().resident_words(),
                    &mut self.fetch_v,
                );
                let (k, v) = engine.step(&self.row);
                Fetch {
                    k_src: Src::FetchBuf,
                    v_src: Src::FetchBuf,
                    k_fetched: u64::from(k.fetched),
                    k_reused: u64::from(k.reused),
                    k_streamed: u64::from(k.streamed),
                    v_fetched: u64::from(v.fetched),
                    v_reused: u64::from(v.reused),
                    v_streamed: u64::from(v.streamed),
                    k4_fetched: 0,
                }
            }
            ReusePolicy::None => Fetch {
                k_src: Src::Scored,
                v_src: Src::Scored,
                k_fetched: scored,
                k_reused: 0,
                k_streamed: scored.saturating_sub(self.k_cap as u64),
                v_fetched: scored,
                v_reused: 0,
                v_streamed: scored.saturating_sub(self.v_cap as u64),
                k4_fetched: 0,
            },
            ReusePolicy::WholeHead | ReusePolicy::QueryBlock => {
                // Query-block: a new block of queries forgets what does not fit.
                if d.reuse == ReusePolicy::QueryBlock {
                    let b = i / d.query_block();
                    if self.block != Some(b) {
                        self.block = Some(b);
                        if !self.fits_k {
                            keep_first(&mut self.loaded_k, d.resident_keys(self.k_cap));
                        }
                        if !self.fits_v {
                            keep_first(&mut self.loaded_v, d.resident_keys(self.v_cap));
                        }
                    }
                }
                let blockwise = d.reuse == ReusePolicy::QueryBlock;
                let (k_fetched, k_streamed, k_src) = if self.fits_k || blockwise {
                    let n = and_not_update(&self.row, &mut self.loaded_k, &mut self.fetch_k);
                    (n, if self.fits_k { 0 } else { n }, Src::FetchBuf)
                } else {
                    (scored, scored, Src::Scored)
                };
                let (v_fetched, v_streamed, v_src) = if self.fits_v || blockwise {
                    let n = and_not_update(&self.row, &mut self.loaded_v, &mut self.fetch_v);
                    (n, if self.fits_v { 0 } else { n }, Src::FetchBuf)
                } else {
                    (scored, scored, Src::Scored)
                };
                Fetch {
                    k_src,
                    v_src,
                    k_fetched,
                    k_reused: scored - k_fetched,
                    k_streamed,
                    v_fetched,
                    v_reused: scored - v_fetched,
                    v_streamed,
                    k4_fetched: 0,
                }
            }
        };
        // On-chip pruning alone: only the kept keys' values are needed; their identities
        // are unknown (counts only), so their addresses are approximated by the first `sm`.
        let v_count_only = d.on_chip_pruning && !d.kept_before_fetch && sel.prune_info;
        if v_count_only && !self.fits_v {
            (f.v_fetched, f.v_reused, f.v_streamed) = (sel.sm, 0, sel.sm);
            f.v_src = Src::FirstN(sel.sm as usize);
        }
        if sel.v_n < sel.sm {
            // SpAtten's local value pruning fetches the top `v_n` values of the kept keys;
            // their identities are unknown (counts only), so the policy's fetches over the
            // kept set are scaled by `v_n / sm` and addressed as the first ones.
            let scale = |x: u64| (x * sel.v_n).div_ceil(sel.sm);
            f.v_fetched = scale(f.v_fetched);
            f.v_streamed = scale(f.v_streamed);
            f.v_reused = sel.v_n - f.v_fetched.min(sel.v_n);
            f.v_src = Src::FirstN(f.v_fetched as usize);
        }
        if let Some(filt) = self.filter {
            f.k4_fetched = self.predictor_keys(i);
            if !filt.split_buffer {
                // A3: the candidates' keys came with the search's keys, already on chip.
                (f.k_fetched, f.k_reused, f.k_streamed) = (0, sel.scored, 0);
                f.k_src = Src::FirstN(0);
            }
        }
        f
    }

    /// The filter keys the filter stage needs for query `i` (every visible key), tiled like
    /// the dense baseline: a block of queries shares each fetched key, a head
    /// whose predictor keys fit is fetched once. Fills `fetch_k4`; returns its size.
    fn predictor_keys(&mut self, i: usize) -> u64 {
        let d = self.d;
        match self.visible(i) {
            KeySet::Range(a, b) => fill_range(&mut self.pred_row, a, b),
            KeySet::Bits(_) => self.pred_row.copy_from_slice(&self.vis),
        }
        let b = i / d.query_block();
        if self.pred_block != Some(b) {
            self.pred_block = Some(b);
            if !self.fits_k4 {
                keep_first(&mut self.loaded_k4, d.resident_keys(self.k4_cap));
            }
        }
        and_not_update(&self.pred_row, &mut self.loaded_k4, &mut self.fetch_k4)
    }

    /// Phase 3: in-memory scoring (CopyQ, tAxTh, ReadP) and the fetch batch. Returns
    /// (first data, last data, scoring cycles).
    fn memory(&mut self, i: usize, sel: &Selection, f: &Fetch) -> (u64, u64, u64) {
        let d = self.d;
        let m = &d.memory;
        let p = self.run_ahead;
        let gate = if self.a_hist.len() > p {
            self.a_hist[self.a_hist.len() - 1 - p]
        } else {
            0
        };
        let (t0, scoring) = if d.in_memory_pruning {
            let readp_bus = self.mem.transfer_cycles(sel.vis_n.div_ceil(8));
            let act = if m.readp_activates_row { m.trcd } else { 0 };
            let start = if d.scoring_pipelined {
                // CopyQ may overwrite the DAC buffer once the previous tAxTh is done.
                gate.max(self.axth_done.saturating_sub(m.tcl))
            } else {
                gate.max(self.mem_done)
            };
            let copyq_done = start + m.tcl;
            let axth_done = copyq_done.max(self.axth_done) + m.taxth;
            // tCL is a latency; ReadP's data follow the previous ReadP's on the bus.
            let readp_done = (axth_done + act + m.tcl).max(self.readp_done) + readp_bus;
            self.axth_done = axth_done;
            self.readp_done = readp_done;
            (readp_done, readp_done - start)
        } else if let Some(filt) = self.filter {
            // The filter stage: q and the filter keys it lacks, then its work over every
            // visible key (all CORELETs), as keys arrive.
            let dim = u64::from(self.shape.head_dim);
            self.mem.add(KeySet::Range(i, i + 1), Kind::Q, dim);
            self.mem
                .add(KeySet::Bits(&self.fetch_k4), filt.kind, filt.key_bytes);
            let (first, last) = self.mem.flush(gate);
            let occ = filter_cycles(d, &self.rates, sel.vis_n, dim);
            let start = self.pred_free.max(first);
            let done = (start + occ).max(last + 1);
            self.pred_free = done;
            self.mem_done = self.mem_done.max(last);
            (done, occ)
        } else {
            (gate, 0)
        };
        let dim = u64::from(self.shape.head_dim);
        let half = (4 * dim).div_ceil(8);
        let k_set = set_of(f.k_src, sel.scored_range, &self.fetch_k, &self.row);
        let v_set = set_of(f.v_src, sel.scored_range, &self.fetch_v, &self.row);
        if self.filter.is_none() {
            self.mem.add(KeySet::Range(i, i + 1), Kind::Q, dim);
        }
        if d.in_memory_pruning {
            self.mem.add(k_set, Kind::KMsb, half);
            self.mem.add(k_set, Kind::KLsb, half);
        } else if self.progressive() {
            // SpAtten's progressive quantisation: the MSB halves of the fetched keys; a
            // recomputed row also reads every scored key's LSB half.
            self.mem.add(k_set, Kind::KMsb, half);
            if sel.requant {
                let all = set_of(Src::Scored, sel.scored_range, &self.fetch_k, &self.row);
                self.mem.add(all, Kind::KLsb, half);
            }
        } else {
            self.mem.add(k_set, Kind::KWhole, dim);
        }
        self.mem.add(v_set, Kind::V, dim);
        let (first, last) = self.mem.flush(t0);
        self.mem_done = self.mem_done.max(last);
        (first, last, scoring)
    }

    /// Phase 4: the CORELET stages, with latencies separated from occupancies.
    fn core(&mut self, sel: &Selection, first: u64, last: u64) {
        let d = self.d;
        let c = &d.core;
        let dim = u64::from(self.shape.head_dim);
        let n = u64::from(c.corelets);
        let scored_set = set_of(Src::Scored, sel.scored_range, &self.fetch_k, &self.row);
        let qk_max = (0..c.corelets as usize)
            .map(|r| scored_set.count_residue(n as usize, r))
            .max()
            .unwrap_or(0);
        let sm_max = sel.sm.div_ceil(n);
        let v_max = sel.v_n.div_ceil(n);
        let qk_per_key = c.qk_cycles_per_key(dim);
        let fill = log2_ceil(dim.min(u64::from(c.qk_unit_width()))) + 1;
        let reduce = if n > 1 {
            log2_ceil(n) * c.reduce_cycles
        } else {
            0
        };
        let qk_cycles = match d.peer {
            Some(Peer::Leopard { lanes, .. }) => {
                // Bit-serial: the busiest CORELET's share of the query's key planes, each
                // plane of `d` elements on `lanes` 1-bit x 8-bit lanes.
                (sel.planes * qk_max * dim).div_ceil(sel.scored * u64::from(lanes))
            }
            _ => c.qk_cycles(qk_max, dim) * if sel.requant { 2 } else { 1 },
        };
        let occ_a = qk_cycles.max(sm_max.div_ceil(u64::from(c.exps_per_cycle)));
        let core_start = self.a_free.max(first);
        if first > self.a_free {
            self.s.core_wait_cycles += first - self.a_free;
        }
        self.a_free = if d.miss_bypass {
            (core_start + occ_a).max(last + qk_per_key)
        } else {
            core_start.max(last) + occ_a
        };
        let a_done = self.a_free + fill + reduce;
        let recip = a_done.max(self.div_free) + c.divide_cycles;
        self.div_free = recip;
        // SpAtten: the top-k engine picks the values between softmax and x V.
        let topk = topk_cycles(d, sel.sm);
        let v_start = if topk > 0 {
            self.topk_free = recip.max(self.topk_free) + topk;
            self.topk_free
        } else {
            recip
        };
        self.v_free = v_start.max(self.v_free) + c.v_cycles(v_max, dim);
        self.b_done = self.b_done.max(self.v_free + reduce);
        let p = self.run_ahead;
        self.a_hist.push_back(a_done);
        if self.a_hist.len() > p + 1 {
            self.a_hist.pop_front();
        }
    }

    /// Phase 5: the counts of the query (work, bytes moved, energy-relevant actions).
    fn count(&mut self, sel: &Selection, f: &Fetch, scoring: u64) {
        let d = self.d;
        let dim = u64::from(self.shape.head_dim);
        let half = (4 * dim).div_ceil(8);
        let n = u64::from(d.core.corelets);
        let (scored, sm, vis_n, v_n) = (sel.scored, sel.sm, sel.vis_n, sel.v_n);
        // A row progressive quantisation recomputes is scored twice, the second time
        // with every scored key's LSB half fetched.
        let passes = if sel.requant { 2 } else { 1 };
        let progressive = self.progressive();
        let s = &mut self.s;
        s.queries += 1;
        s.keys_scored += scored;
        s.keys_softmax += sm;
        s.k_fetched += f.k_fetched;
        s.k_reused += f.k_reused;
        s.k_streamed += f.k_streamed;
        s.v_fetched += f.v_fetched;
        s.v_reused += f.v_reused;
        s.v_streamed += f.v_streamed;
        s.v_busy_cycles += d.core.v_cycles(v_n, dim);
        s.requant_rows += u64::from(sel.requant);
        s.topk_busy_cycles += topk_cycles(d, sm);
        match d.peer {
            Some(Peer::Leopard { lanes, .. }) => {
                let planes = sel.planes;
                s.k_bit_planes += planes;
                s.qk_busy_cycles += (planes * dim).div_ceil(u64::from(lanes));
                s.executed_macs += (planes * dim).div_ceil(8) + v_n * dim;
            }
            _ => {
                s.qk_busy_cycles += d.core.qk_cycles(scored, dim) * passes;
                s.executed_macs += (scored * passes + v_n) * dim;
            }
        }
        s.moved.q += dim;
        let k_bits = if d.in_memory_pruning {
            s.moved.k_msb += f.k_fetched * half;
            s.moved.k_lsb += f.k_fetched * half;
            s.moved.index += f.k_fetched * u64::from(d.index_bytes);
            8 * f.k_fetched * 2 * half
        } else if progressive {
            let lsb = if sel.requant { scored } else { 0 };
            s.moved.k_msb += f.k_fetched * half;
            s.moved.k_lsb += lsb * half;
            8 * (f.k_fetched + lsb) * half
        } else {
            s.moved.k_whole += f.k_fetched * dim;
            8 * f.k_fetched * dim
        };
        s.moved.v += f.v_fetched * dim;
        if let Some(filt) = self.filter {
            // `scoring` is the filter stage's occupancy here, not in-memory scoring.
            count_filter(s, d, &self.rates, &filt, f.k4_fetched, vis_n, scoring);
        } else {
            s.scoring_cycles += scoring;
        }
        let a = &mut s.actions;
        a.reram_read_bits += 8 * (dim + f.v_fetched * dim) + k_bits;
        if d.in_memory_pruning {
            let m = &d.memory;
            a.in_memory_macs += vis_n * dim;
            a.comparator_decisions += vis_n;
            a.dac_rows += vis_n.div_ceil(u64::from(m.crossbar_columns)) * dim;
            a.copy_q_bits += dim * u64::from(d.query_dac_bits);
            a.read_p_bits += vis_n;
        }
        a.sram_k_write_bits += k_bits;
        a.sram_v_write_bits += 8 * f.v_fetched * dim;
        a.sram_v_read_bits += 8 * v_n * dim;
        match d.peer {
            Some(Peer::Leopard { .. }) => {
                // One key bit-plane: `d` 1-bit x 8-bit products (an eighth of an 8-bit
                // multiply each), one adder-tree pass, read from the buffer plane by plane.
                let planes = sel.planes;
                a.sram_k_read_bits += planes * dim;
                a.qk_mults += (planes * dim).div_ceil(8);
                a.qk_adds += planes * dim.saturating_sub(1);
            }
            _ => {
                a.sram_k_read_bits += 8 * scored * dim * passes;
                a.qk_mults += scored * dim * passes;
                a.qk_adds += scored * dim.saturating_sub(1) * passes;
            }
        }
        // SpAtten's quick-select compares each element it reads once (a 16-bit add each).
        if topk_cycles(d, sm) > 0 {
            a.qk_adds += 2 * sm;
        }
        a.q_reg_bits += 8 * dim * n;
        a.softmax_exps += sm;
        a.softmax_divides += n;
        a.softmax_norm_mults += sm;
        a.v_macs += v_n * dim;
    }

    /// SpAtten with progressive quantisation: keys are fetched as MSB halves.
    fn progressive(&self) -> bool {
        matches!(
            self.d.peer,
            Some(Peer::Spatten {
                progressive: true,
                ..
            })
        )
    }

    /// Ends the head: adds the run-time K/V writes and the dense-equivalent op count, and
    /// returns the statistics.
    pub fn finish(mut self) -> HeadStats {
        let dim = u64::from(self.shape.head_dim);
        let (nq, nk) = (self.shape.n_queries as u64, self.shape.n_keys as u64);
        let pairs = if self.shape.causal {
            (1..=nq).map(|i| i.min(nk)).sum::<u64>()
        } else {
            nq * nk
        };
        self.s.dense_ops = 4 * dim * pairs;
        // The projections write the real tokens only, whatever the attention skips: every
        // query head's Q (CopyQ and the q fetch read it back), and the first head of a K/V
        // group its K and V. Fig 12a's BERT-B S-Baseline bar (ReRAM read : write about
        // 11.4) agrees with K/V of the real tokens and disagrees with padded writes.
        let tokens = self.key_valid.count() as u64;
        let queries = tokens.min(nq);
        self.s.written_q_bytes = queries * dim;
        if self.shape.writes_kv {
            self.s.written_bytes = tokens * 2 * dim;
            // Sanger and Energon keep a low-bit copy of K for their filter stage, written
            // at run time (A3's filter keys are K itself).
            if let Some(f) = self.filter.filter(|f| f.split_buffer) {
                self.s.written_bytes += tokens * f.key_bytes;
            }
        }
        self.s.actions.reram_write_bits = 8 * self.s.written_bytes;
        self.s.actions.reram_write_q_bits = 8 * self.s.written_q_bytes;
        self.s.cycles = self.b_done;
        self.s.activations = self.mem.activations;
        self.s.bursts = self.mem.bursts;
        self.s
    }
}

/// The run-ahead of a query-tiled design over a head whose K or V do not fit, queries: at
/// least one block. Such a design streams a block's keys tile by tile, double-buffered, so
/// each tile's fetch overlaps the block's work on the previous tile; this query-major
/// simulator issues a block's whole stream at its first query, and running one block
/// ahead gives the same overlap (docs/simulator.md "Query-tiled baseline"). `ahead`: the
/// run-ahead by the design's own rule.
fn tiled_run_ahead(d: &Design, n: usize, k_cap: usize, v_cap: usize, ahead: usize) -> usize {
    let streams = n > k_cap || n > v_cap;
    if d.reuse == ReusePolicy::QueryBlock && d.tile_double_buffered && streams {
        ahead
            .max(d.query_block())
            .min(crate::run_ahead::MAX_RUN_AHEAD)
    } else {
        ahead
    }
}
