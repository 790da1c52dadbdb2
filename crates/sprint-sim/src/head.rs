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

use crate::config::{Design, Peer, ReusePolicy, RunAhead};
use crate::keyset::{KeySet, Src, and_not_update, diff_resident, fill_range, mask_from, set_of};
use crate::memory::{Kind, MemoryState};
use crate::stats::HeadStats;

/// Which keys (or queries) of a head are real tokens.
#[derive(Clone, Debug, PartialEq)]
pub enum Validity {
    /// The first `m` are real, the rest padding.
    Prefix(usize),
    /// Bit `j` set when token `j` is real (`words_for(n)` words).
    Bits(Vec<u64>),
}

impl Validity {
    /// From a bit vector: a prefix when it is one (faster), bits otherwise.
    pub fn from_words(n: usize, words: &[u64]) -> Self {
        let count: usize = words.iter().map(|w| w.count_ones() as usize).sum();
        let prefix = (0..count).all(|j| words[j / 64] >> (j % 64) & 1 == 1);
        if prefix && count <= n {
            Validity::Prefix(count)
        } else {
            Validity::Bits(words.to_vec())
        }
    }

    /// Number of real tokens.
    pub fn count(&self) -> usize {
        match self {
            Validity::Prefix(m) => *m,
            Validity::Bits(w) => w.iter().map(|x| x.count_ones() as usize).sum(),
        }
    }
}

/// Shape and identity of one head.
#[derive(Clone, Debug, PartialEq)]
pub struct HeadShape {
    /// Queries (mask rows).
    pub n_queries: usize,
    /// Keys (mask columns).
    pub n_keys: usize,
    /// Elements per vector.
    pub head_dim: u32,
    /// Causal masking (query `i` sees keys `0..=i`).
    pub causal: bool,
    /// This query head is the first of its K/V group and is charged the K/V writes.
    pub writes_kv: bool,
    /// Policy of the `locality` reuse: the trace's (its header), `residency` for generated
    /// workloads.
    pub locality: LocalityPolicy,
    /// Mean keys kept in memory per real query of the head, when the workload prunes
    /// (`None`: every visible key); sizes the Little's-law run-ahead
    /// ([`crate::config::RunAhead::LittlesLaw`]).
    pub mean_kept_keys: Option<f64>,
}

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
    /// Sanger: the visible keys of the query as a bit row (the predictor's input).
    pred_row: Vec<u64>,
    /// Sanger: 4-bit predictor keys on chip in the current query block.
    loaded_k4: Vec<u64>,
    /// Sanger: predictor keys the query fetches.
    fetch_k4: Vec<u64>,
    /// Sanger: the predictor keys of a head fit the predictor's half of the key buffer.
    fits_k4: bool,
    /// Sanger: query block of `loaded_k4`.
    pred_block: Option<usize>,
    /// Sanger: the predictor is free from this cycle.
    pred_free: u64,
    /// LeOPArd: key bit-planes processed per visible pair in this head.
    planes_per_pair: f64,
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
    /// Sanger: 4-bit predictor keys fetched.
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
        let n = shape.n_keys;
        let planes_per_pair = key_planes(d, &shape, planes_per_pair);
        // Sanger splits its key buffer: half holds the 4-bit predictor keys, half the
        // exact 8-bit keys of the mask.
        let sanger = matches!(d.peer, Some(Peer::Sanger { .. }));
        let k_cap_all = d.k_capacity_keys(shape.head_dim);
        let k_cap = if sanger { k_cap_all / 2 } else { k_cap_all };
        let v_cap = d.v_capacity_keys(shape.head_dim);
        let policy = match d.reuse {
            ReusePolicy::Locality => Some(shape.locality),
            ReusePolicy::LocalityResidency => Some(LocalityPolicy::Residency),
            ReusePolicy::LocalitySldStrict => Some(LocalityPolicy::SldStrict),
            ReusePolicy::None | ReusePolicy::WholeHead | ReusePolicy::QueryBlock => None,
        };
        let engine = policy.map(|p| LocalityEngine::with_policy(n, k_cap, v_cap, p));
        let w = words_for(n);
        let ahead = run_ahead_with(d, &shape, &key_valid, planes_per_pair);
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
            pred_row: vec![0; if sanger { w } else { 0 }],
            loaded_k4: vec![0; if sanger { w } else { 0 }],
            fetch_k4: vec![0; if sanger { w } else { 0 }],
            fits_k4: n <= k_cap_all,
            pred_block: None,
            pred_free: 0,
            planes_per_pair,
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
            Some(Peer::Leopard { .. }) => (scored as f64 * self.planes_per_pair).round() as u64,
            _ => 0,
        };
        Some(Selection {
            vis_n,
            scored_range,
            scored,
            sm,
            prune_info,
            planes,
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
                    let block = d.query_block_per_corelet as usize * d.core.corelets as usize;
                    let b = i / block;
                    if self.block != Some(b) {
                        self.block = Some(b);
                        if !self.fits_k {
                            self.loaded_k.fill(0);
                        }
                        if !self.fits_v {
                            self.loaded_v.fill(0);
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
        if matches!(d.peer, Some(Peer::Sanger { .. })) {
            f.k4_fetched = self.predictor_keys(i);
        }
        f
    }

    /// Sanger: the 4-bit keys the predictor needs for query `i` (every visible key),
    /// tiled like the dense baseline: a block of queries shares each fetched key, a head
    /// whose predictor keys fit is fetched once. Fills `fetch_k4`; returns its size.
    fn predictor_keys(&mut self, i: usize) -> u64 {
        let d = self.d;
        match self.visible(i) {
            KeySet::Range(a, b) => fill_range(&mut self.pred_row, a, b),
            KeySet::Bits(_) => self.pred_row.copy_from_slice(&self.vis),
        }
        let block = d.query_block_per_corelet as usize * d.core.corelets as usize;
        let b = i / block;
        if self.pred_block != Some(b) {
            self.pred_block = Some(b);
            if !self.fits_k4 {
                self.loaded_k4.fill(0);
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
        } else if let Some(Peer::Sanger {
            predictor_bits,
            predictor_macs,
        }) = d.peer
        {
            // The predictor: q and the 4-bit keys it lacks, then every visible pair's
            // low-bit product on the predictor's MACs (all CORELETs), as keys arrive.
            let dim = u64::from(self.shape.head_dim);
            let k4_bytes = (u64::from(predictor_bits) * dim).div_ceil(8);
            self.mem.add(KeySet::Range(i, i + 1), Kind::Q, dim);
            self.mem
                .add(KeySet::Bits(&self.fetch_k4), Kind::KLsb, k4_bytes);
            let (first, last) = self.mem.flush(gate);
            let occ = predictor_cycles(d, predictor_macs, sel.vis_n, dim);
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
        if !matches!(d.peer, Some(Peer::Sanger { .. })) {
            self.mem.add(KeySet::Range(i, i + 1), Kind::Q, dim);
        }
        if d.in_memory_pruning {
            self.mem.add(k_set, Kind::KMsb, half);
            self.mem.add(k_set, Kind::KLsb, half);
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
        let qk_per_key = dim.div_ceil(u64::from(c.qk_multipliers));
        let v_per_key = dim.div_ceil(u64::from(c.v_multipliers));
        let fill = log2_ceil(dim.min(u64::from(c.qk_multipliers))) + 1;
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
            _ => qk_per_key * qk_max,
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
        self.v_free = recip.max(self.v_free) + v_per_key * sm_max;
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
        let (scored, sm, vis_n) = (sel.scored, sel.sm, sel.vis_n);
        let qk_per_key = dim.div_ceil(u64::from(d.core.qk_multipliers));
        let v_per_key = dim.div_ceil(u64::from(d.core.v_multipliers));
        let s = &mut self.s;
        s.queries += 1;
        s.scoring_cycles += scoring;
        s.keys_scored += scored;
        s.keys_softmax += sm;
        s.k_fetched += f.k_fetched;
        s.k_reused += f.k_reused;
        s.k_streamed += f.k_streamed;
        s.v_fetched += f.v_fetched;
        s.v_reused += f.v_reused;
        s.v_streamed += f.v_streamed;
        s.v_busy_cycles += v_per_key * sm;
        match d.peer {
            Some(Peer::Leopard { lanes, .. }) => {
                let planes = sel.planes;
                s.k_bit_planes += planes;
                s.qk_busy_cycles += (planes * dim).div_ceil(u64::from(lanes));
                s.executed_macs += (planes * dim).div_ceil(8) + sm * dim;
            }
            _ => {
                s.qk_busy_cycles += qk_per_key * scored;
                s.executed_macs += (scored + sm) * dim;
            }
        }
        s.moved.q += dim;
        if d.in_memory_pruning {
            s.moved.k_msb += f.k_fetched * half;
            s.moved.k_lsb += f.k_fetched * half;
            s.moved.index += f.k_fetched * u64::from(d.index_bytes);
        } else {
            s.moved.k_whole += f.k_fetched * dim;
        }
        s.moved.v += f.v_fetched * dim;
        let mut k4_bits = 0;
        if let Some(Peer::Sanger { predictor_bits, .. }) = d.peer {
            let b = u64::from(predictor_bits);
            k4_bits = b * dim;
            s.moved.k_predictor += f.k4_fetched * k4_bits.div_ceil(8);
            // `scoring` is the predictor's occupancy here, not in-memory scoring.
            s.scoring_cycles -= scoring;
            s.predictor_busy_cycles += scoring;
            s.predictor_macs += vis_n * dim;
            // A b-bit multiply costs (b / 8)^2 of an 8-bit one (array multiplier area).
            s.executed_macs += (vis_n * dim * b * b).div_ceil(64);
        }
        let a = &mut s.actions;
        let k_bytes = if d.in_memory_pruning { 2 * half } else { dim };
        a.reram_read_bits +=
            8 * (dim + f.k_fetched * k_bytes + f.v_fetched * dim) + f.k4_fetched * k4_bits;
        if d.in_memory_pruning {
            let m = &d.memory;
            a.in_memory_macs += vis_n * dim;
            a.comparator_decisions += vis_n;
            a.dac_rows += vis_n.div_ceil(u64::from(m.crossbar_columns)) * dim;
            a.copy_q_bits += dim * u64::from(d.query_dac_bits);
            a.read_p_bits += vis_n;
        }
        a.sram_k_write_bits += 8 * f.k_fetched * dim + f.k4_fetched * k4_bits;
        a.sram_v_write_bits += 8 * f.v_fetched * dim;
        a.sram_v_read_bits += 8 * sm * dim;
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
                a.sram_k_read_bits += 8 * scored * dim;
                a.qk_mults += scored * dim;
                a.qk_adds += scored * dim.saturating_sub(1);
            }
        }
        if let Some(Peer::Sanger { predictor_bits, .. }) = d.peer {
            // The predictor: every visible pair's b-bit products, read from the buffer,
            // priced as (b / 8)^2 of an 8-bit multiply plus one add each.
            let b = u64::from(predictor_bits);
            a.sram_k_read_bits += vis_n * dim * b;
            a.qk_mults += (vis_n * dim * b * b).div_ceil(64);
            a.qk_adds += vis_n * dim;
        }
        a.q_reg_bits += 8 * dim * n;
        a.softmax_exps += sm;
        a.softmax_divides += n;
        a.softmax_norm_mults += sm;
        a.v_macs += sm * dim;
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
            // Sanger keeps a low-bit copy of K for its predictor, written at run time.
            if let Some(Peer::Sanger { predictor_bits, .. }) = self.d.peer {
                self.s.written_bytes += tokens * (u64::from(predictor_bits) * dim).div_ceil(8);
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

/// The controller's run-ahead for one head, queries: `design.prefetch_queries` under
/// [`RunAhead::Fixed`]; under [`RunAhead::LittlesLaw`] the queries in flight that cover the
/// latency `W` from issuing a query to its first data at the core's service time `A` per
/// query, `ceil(W / A)`, at least 1. `W` = CopyQ (tCL) + tAxTh + ReadP (tCL, its transfer of
/// the mean visible keys' bits, tRCD when ReadP activates a row) with in-memory pruning,
/// plus the query vector's fetch from a closed row (tRCD + tCL + its transfer); `A` = the
/// QK-PU cycles of the busiest CORELET at the head's mean scored keys per query (kept keys
/// with in-memory pruning, visible keys otherwise).
pub fn run_ahead(d: &Design, shape: &HeadShape, key_valid: &Validity) -> usize {
    run_ahead_with(d, shape, key_valid, key_planes(d, shape, None))
}

/// [`run_ahead`] for the peers too: Sanger's latency adds its predictor's occupancy at the
/// mean visible keys and its service time is the kept keys'; LeOPArd's service time is
/// its bit-serial unit's at `planes_per_pair` key planes per pair.
pub fn run_ahead_with(
    d: &Design,
    shape: &HeadShape,
    key_valid: &Validity,
    planes_per_pair: f64,
) -> usize {
    if d.run_ahead == RunAhead::Fixed {
        return d.prefetch_queries as usize;
    }
    let m = &d.memory;
    let real = if d.skip_padding {
        key_valid.count()
    } else {
        shape.n_keys
    } as f64;
    let causal = shape.causal && d.causal_aware;
    let mean_visible = if causal { (real + 1.0) / 2.0 } else { real };
    let dim = u64::from(shape.head_dim);
    let q_transfer = (dim.div_ceil(u64::from(m.min_transfer_bytes))) * m.ttransfer;
    let mut latency = (m.trcd + m.tcl + q_transfer) as f64;
    let mut scored = mean_visible;
    if d.in_memory_pruning {
        let readp_bytes = (mean_visible / 8.0).ceil() as u64;
        let readp = readp_bytes.div_ceil(u64::from(m.min_transfer_bytes)) * m.ttransfer;
        let act = if m.readp_activates_row { m.trcd } else { 0 };
        latency += (m.tcl + m.taxth + act + m.tcl + readp) as f64;
        if let Some(k) = shape.mean_kept_keys {
            scored = k.min(mean_visible);
        }
    }
    let mut per_key = dim.div_ceil(u64::from(d.core.qk_multipliers)) as f64;
    match d.peer {
        Some(Peer::Sanger { predictor_macs, .. }) => {
            latency += predictor_cycles(d, predictor_macs, mean_visible.ceil() as u64, dim) as f64;
            if let Some(k) = shape.mean_kept_keys {
                scored = k.min(mean_visible);
            }
        }
        Some(Peer::Leopard { lanes, .. }) => {
            per_key = planes_per_pair * dim as f64 / f64::from(lanes);
        }
        None => {}
    }
    let service = (scored / f64::from(d.core.corelets)).ceil().max(1.0) * per_key;
    ((latency / service).ceil() as usize).clamp(1, MAX_RUN_AHEAD)
}

/// Sanger's predictor occupancy for `visible` keys of `dim` elements: every pair's `dim`
/// low-bit MACs over the predictor MACs of all CORELETs, cycles.
fn predictor_cycles(d: &Design, macs_per_corelet: u32, visible: u64, dim: u64) -> u64 {
    (visible * dim).div_ceil(u64::from(macs_per_corelet) * u64::from(d.core.corelets))
}

/// Key bit-planes per visible pair a LeOPArd design processes in a head of `shape`: the
/// workload's count when it has one, else the design's statistic for causal or
/// bidirectional heads; 0 for every other design.
fn key_planes(d: &Design, shape: &HeadShape, counted: Option<f64>) -> f64 {
    match d.peer {
        Some(Peer::Leopard {
            planes_bidirectional,
            planes_causal,
            ..
        }) => counted.unwrap_or(if shape.causal {
            planes_causal
        } else {
            planes_bidirectional
        }),
        _ => 0.0,
    }
}

/// Largest run-ahead Little's law may give, queries (a controller's queue is finite).
pub const MAX_RUN_AHEAD: usize = 64;
