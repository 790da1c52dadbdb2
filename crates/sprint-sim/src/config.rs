//! Hardware presets: the serde structs mirroring a preset file ([`PresetFile`]) and the
//! validated runtime description of a design ([`Design`]) the engine uses.
//!
//! Every key carries its unit in its name (`trcd_ns`, `k_buffer_bytes_per_corelet`) and
//! every value is a [`Sourced`] `{ value, source }` pair. Unknown keys are errors.

use serde::{Deserialize, Serialize};

use crate::error::{Result, SimError};
pub use crate::peer_config::{Peer, PeerDataflow, PeerFile};
use crate::sourced::Sourced;

/// How a design reuses K/V already in its on-chip buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReusePolicy {
    /// SPRINT's locality engine (`sprint_core::locality`) with the policy of the trace being
    /// replayed (its header's `locality_policy`), or `residency` (the default policy) for
    /// generated workloads.
    Locality,
    /// The locality engine under the `residency` policy, whatever the trace says.
    #[serde(alias = "locality-lru")]
    LocalityResidency,
    /// The locality engine under the `sld-strict` policy (only the previous query's kept
    /// set stays on chip), whatever the trace says.
    LocalitySldStrict,
    /// No reuse: every query fetches every key it needs.
    None,
    /// A dense accelerator: when all of a head's K (and V) fit, each is fetched once;
    /// otherwise every query streams everything it needs again (a cyclic scan defeats LRU).
    WholeHead,
    /// A dense accelerator that holds a block of queries and streams each head's K/V once
    /// per block (`design.query_block_per_corelet` x CORELETs queries share every fetched
    /// key and value); whole-head reuse when the head fits. Read from Fig 10 (issue #10):
    /// the paper's S-Baseline moves about 83x the real tokens' K/V on BERT, not 384x.
    QueryBlock,
}

impl ReusePolicy {
    /// The kebab-case name used in presets.
    pub fn name(self) -> &'static str {
        match self {
            ReusePolicy::Locality => "locality",
            ReusePolicy::LocalityResidency => "locality-residency",
            ReusePolicy::LocalitySldStrict => "locality-sld-strict",
            ReusePolicy::None => "none",
            ReusePolicy::WholeHead => "whole-head",
            ReusePolicy::QueryBlock => "query-block",
        }
    }
}

/// How far the memory controller runs ahead of the core (queries in flight).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunAhead {
    /// Little's law: enough queries in flight to cover the latency from issuing a query to
    /// its first data at the core's service rate, `ceil(latency / service)` (at least 1),
    /// per head from its mean scored keys per query (`crate::head::HeadSim`).
    LittlesLaw,
    /// `design.prefetch_queries` queries ahead, whatever the workload.
    Fixed,
}

impl RunAhead {
    /// The kebab-case name used in presets.
    pub fn name(self) -> &'static str {
        match self {
            RunAhead::LittlesLaw => "littles-law",
            RunAhead::Fixed => "fixed",
        }
    }
}

/// `[design]`: what the design does (the "free" variables of the comparison).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DesignFile {
    /// Skip padded query rows and key columns.
    pub skip_padding: Sourced<bool>,
    /// Decide the kept set in ReRAM; only kept K/V are fetched (K stored split MSB/LSB).
    pub in_memory_pruning: Sourced<bool>,
    /// Only keys that pass the exact-score threshold enter softmax and x V.
    pub on_chip_pruning: Sourced<bool>,
    /// Buffer reuse policy.
    pub reuse: Sourced<ReusePolicy>,
    /// The core works on resident keys while misses return.
    pub miss_bypass: Sourced<bool>,
    /// Pipeline the in-memory scoring (CopyQ, tAxTh, ReadP) of consecutive queries.
    pub scoring_pipelined: Sourced<bool>,
    /// How the controller's run-ahead is set: `littles-law` (derived per head) or `fixed`
    /// (`prefetch_queries`).
    pub run_ahead: Sourced<RunAhead>,
    /// How many queries the memory controller may run ahead of the core under `run_ahead =
    /// "fixed"`, queries.
    pub prefetch_queries: Sourced<u32>,
    /// Bytes of the key index sent with each fetched key (on chip, no ReRAM energy).
    pub index_bytes_per_key: Sourced<u32>,
    /// Bits of the query copied into the in-memory DAC buffer (CopyQ size).
    pub query_dac_bits: Sourced<u32>,
    /// Skip the causal triangle (future keys) on causal workloads; `false` computes and
    /// fetches the whole square like a dense accelerator.
    pub causal_aware: Sourced<bool>,
    /// Queries per CORELET that share one pass over a head's K/V under the `query-block`
    /// reuse policy, queries.
    pub query_block_per_corelet: Sourced<u32>,
    /// `true` when every CORELET works on the same block of queries (keys interleaved
    /// across CORELETs), so the accelerator's block is `query_block_per_corelet` queries
    /// at any CORELET count; `false` when each CORELET holds its own block (the block is
    /// `query_block_per_corelet` times the CORELETs).
    pub query_block_shared: Sourced<bool>,
    /// Fraction of the K and of the V buffer that keeps a head's first keys on chip for
    /// the whole head when its K/V do not fit (`query-block` reuse); the other keys stream
    /// once per block of queries. 0 streams every key once per block.
    pub resident_buffer_fraction: Sourced<f64>,
    /// A query-tiled design fetches the next tile while it works on the current one, so a
    /// streamed block's fetch overlaps the block's work (`query-block` reuse).
    pub tile_double_buffered: Sourced<bool>,
}

/// `[core]`: the CORELETs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoreFile {
    /// Core clock, GHz; every time is converted to cycles of this clock.
    pub clock_ghz: Sourced<f64>,
    /// Number of CORELETs; keys are interleaved across them (key `j` to CORELET `j % n`).
    pub corelets: Sourced<u32>,
    /// 8-bit multipliers of each QK-PU (one score per cycle when `head_dim` fits).
    pub qk_multipliers_per_corelet: Sourced<u32>,
    /// 8-bit multipliers of each V-PU (one value vector per cycle when `head_dim` fits).
    pub v_multipliers_per_corelet: Sourced<u32>,
    /// Dot-product units the QK-PU's multipliers form (each takes one key at a time, with
    /// `qk_multipliers_per_corelet / qk_units_per_corelet` multipliers): SPRINT's one adder
    /// tree is 1; a design that broadcasts the query to several keys per cycle has more.
    pub qk_units_per_corelet: Sourced<u32>,
    /// Units the V-PU's multipliers form (each scales one value vector at a time, with
    /// `v_multipliers_per_corelet / v_units_per_corelet` multipliers).
    pub v_units_per_corelet: Sourced<u32>,
    /// Exponentials per cycle of each softmax unit.
    pub softmax_exps_per_cycle: Sourced<u32>,
    /// Cycles of the per-query divide that normalises the softmax.
    pub softmax_divide_cycles: Sourced<u32>,
    /// Cycles per adder level to combine partial sums across CORELETs.
    pub corelet_reduce_cycles: Sourced<u32>,
}

/// `[buffer]`: on-chip K/V buffers, per CORELET.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BufferFile {
    /// Key buffer of each CORELET, bytes (holds 8-bit keys).
    pub k_buffer_bytes_per_corelet: Sourced<u64>,
    /// Value buffer of each CORELET, bytes.
    pub v_buffer_bytes_per_corelet: Sourced<u64>,
}

/// `[memory]`: the ReRAM main memory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryFile {
    /// Independent channels (each with its own data bus): of the whole design, or of each
    /// CORELET when `channels_per_corelet` is true.
    pub channels: Sourced<u32>,
    /// Memory channels per CORELET: `channels` counts per CORELET, so the design has
    /// `channels x CORELETs` channels and its ReRAM bandwidth grows with its size (read
    /// from Fig 11's flat S/M/L speedups; docs/simulator.md). `false`: the same memory for
    /// every size.
    pub channels_per_corelet: Sourced<bool>,
    /// Banks per channel.
    pub banks_per_channel: Sourced<u32>,
    /// Data-bus bandwidth of one channel, bytes per ns.
    pub bus_bytes_per_ns: Sourced<f64>,
    /// Bytes per burst (the minimum transfer).
    pub burst_bytes: Sourced<u32>,
    /// Bytes of one open row (row buffer) per bank.
    pub row_bytes: Sourced<u32>,
    /// Smallest transfer on the data bus, bytes (a burst chop); a request occupies the bus
    /// for `ceil(bytes / min_transfer_bytes)` transfers of `min_transfer_bytes / bandwidth`.
    pub min_transfer_bytes: Sourced<u32>,
    /// Row activation to column command, ns.
    pub trcd_ns: Sourced<f64>,
    /// Column command to first data (CAS latency), ns; also CopyQ's timing.
    pub tcl_ns: Sourced<f64>,
    /// Precharge (close a row), ns.
    pub trp_ns: Sourced<f64>,
    /// In-memory approximate score and threshold, ns.
    pub taxth_ns: Sourced<f64>,
    /// ReadP activates a row first (adds tRCD).
    pub readp_activates_row: Sourced<bool>,
    /// Rows (wordlines) of a crossbar array.
    pub crossbar_rows: Sourced<u32>,
    /// Columns (bitlines) of a crossbar array: keys per array.
    pub crossbar_columns: Sourced<u32>,
}

/// A preset file as written (after `inherits` and `--set` have been applied).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresetFile {
    /// Display name, e.g. `S-SPRINT`.
    pub name: String,
    /// One line about the design.
    pub description: String,
    /// Preset this file was derived from (already merged in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inherits: Option<String>,
    /// What the design does.
    pub design: DesignFile,
    /// The CORELETs.
    pub core: CoreFile,
    /// On-chip buffers.
    pub buffer: BufferFile,
    /// ReRAM main memory.
    pub memory: MemoryFile,
    /// A peer accelerator's dataflow (absent: SPRINT's engine as the `[design]` flags say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<PeerFile>,
}

/// Core timing in cycles.
#[derive(Clone, Debug, PartialEq)]
pub struct Core {
    /// Clock, GHz.
    pub clock_ghz: f64,
    /// CORELETs.
    pub corelets: u32,
    /// QK-PU multipliers per CORELET.
    pub qk_multipliers: u32,
    /// V-PU multipliers per CORELET.
    pub v_multipliers: u32,
    /// QK-PU dot-product units per CORELET (keys scored in parallel).
    pub qk_units: u32,
    /// V-PU units per CORELET (value vectors scaled in parallel).
    pub v_units: u32,
    /// Exponentials per cycle per CORELET.
    pub exps_per_cycle: u32,
    /// Softmax divide, cycles.
    pub divide_cycles: u64,
    /// Cross-CORELET reduction, cycles per level.
    pub reduce_cycles: u64,
}

/// Memory timing in core cycles.
#[derive(Clone, Debug, PartialEq)]
pub struct Memory {
    /// Channels of the whole design (`memory.channels`, times the CORELETs when
    /// `memory.channels_per_corelet` is true).
    pub channels: u32,
    /// Banks per channel.
    pub banks: u32,
    /// Bytes per burst.
    pub burst_bytes: u32,
    /// Bytes per row.
    pub row_bytes: u32,
    /// Smallest transfer, bytes (divides `burst_bytes`).
    pub min_transfer_bytes: u32,
    /// One burst on the data bus, cycles.
    pub tburst: u64,
    /// One smallest transfer on the data bus, cycles.
    pub ttransfer: u64,
    /// tRCD, cycles.
    pub trcd: u64,
    /// tCL, cycles.
    pub tcl: u64,
    /// tRP, cycles.
    pub trp: u64,
    /// tAxTh, cycles.
    pub taxth: u64,
    /// ReadP activates a row first.
    pub readp_activates_row: bool,
    /// Crossbar rows.
    pub crossbar_rows: u32,
    /// Crossbar columns.
    pub crossbar_columns: u32,
    /// Channel bandwidth, bytes per core cycle (for closed-form checks).
    pub bytes_per_cycle: f64,
}

/// A validated design: the runtime form of a [`PresetFile`].
#[derive(Clone, Debug, PartialEq)]
pub struct Design {
    /// Preset key it was loaded as (e.g. `s-sprint` or a file path).
    pub key: String,
    /// The merged file, kept for provenance (echoed in `--json`).
    pub file: PresetFile,
    /// Skip padding.
    pub skip_padding: bool,
    /// In-memory pruning.
    pub in_memory_pruning: bool,
    /// On-chip pruning (exact threshold before softmax).
    pub on_chip_pruning: bool,
    /// Reuse policy.
    pub reuse: ReusePolicy,
    /// Miss bypass.
    pub miss_bypass: bool,
    /// Scoring pipelined across queries.
    pub scoring_pipelined: bool,
    /// How the run-ahead is set.
    pub run_ahead: RunAhead,
    /// Prefetch depth under [`RunAhead::Fixed`], queries.
    pub prefetch_queries: u32,
    /// Index bytes per fetched key.
    pub index_bytes: u32,
    /// Query bits copied by CopyQ.
    pub query_dac_bits: u32,
    /// Skips the causal triangle on causal workloads.
    pub causal_aware: bool,
    /// Queries per CORELET sharing one K/V pass under `query-block` reuse.
    pub query_block_per_corelet: u32,
    /// Every CORELET works on the same block of queries (`query-block` reuse).
    pub query_block_shared: bool,
    /// Fraction of each buffer holding a non-fitting head's first keys (`query-block`).
    pub resident_buffer_fraction: f64,
    /// Streamed tiles are double-buffered (`query-block` reuse).
    pub tile_double_buffered: bool,
    /// Core.
    pub core: Core,
    /// Key buffer per CORELET, bytes.
    pub k_buffer_bytes: u64,
    /// Value buffer per CORELET, bytes.
    pub v_buffer_bytes: u64,
    /// Memory.
    pub memory: Memory,
    /// A peer accelerator's dataflow, if the design is one.
    pub peer: Option<Peer>,
    /// The kept set is known before any key is fetched (in-memory pruning, or Sanger's
    /// on-chip predictor), so only kept keys are fetched and scored exactly.
    pub kept_before_fetch: bool,
    /// Count work, bytes and energy actions only, skipping the memory and core timing
    /// (cycles stay 0): what the fit needs, much faster. Not a preset key.
    pub traffic_only: bool,
}

fn positive(x: f64, key: &str) -> Result<f64> {
    if x.is_finite() && x > 0.0 {
        Ok(x)
    } else {
        Err(SimError::config(
            key,
            format!("must be a finite number > 0, got {x}"),
        ))
    }
}

fn non_negative(x: f64, key: &str) -> Result<f64> {
    if x.is_finite() && x >= 0.0 {
        Ok(x)
    } else {
        Err(SimError::config(
            key,
            format!("must be a finite number >= 0, got {x}"),
        ))
    }
}

/// Largest latency or burst time a preset may give, ns (1 ms; real DRAM/ReRAM timings are
/// tens of ns). Keeps every per-event cycle count far from 64-bit overflow.
pub const MAX_LATENCY_NS: f64 = 1e6;

fn fraction_below_one(x: f64, key: &str) -> Result<f64> {
    if x.is_finite() && (0.0..1.0).contains(&x) {
        Ok(x)
    } else {
        Err(SimError::config(key, format!("must be in [0, 1), got {x}")))
    }
}

fn latency(x: f64, key: &str) -> Result<f64> {
    let x = non_negative(x, key)?;
    if x > MAX_LATENCY_NS {
        return Err(SimError::config(
            key,
            format!("{x:e} ns exceeds the limit of {MAX_LATENCY_NS:e} ns"),
        ));
    }
    Ok(x)
}

fn in_range(x: u32, lo: u32, hi: u32, key: &str) -> Result<u32> {
    if (lo..=hi).contains(&x) {
        Ok(x)
    } else {
        Err(SimError::config(
            key,
            format!("must be in {lo}..={hi}, got {x}"),
        ))
    }
}

/// `ns` at `clock_ghz` in whole cycles, rounded up (a latency is never shortened).
pub fn ns_to_cycles(ns: f64, clock_ghz: f64) -> u64 {
    let c = ns * clock_ghz;
    // Tolerate float noise such as 10.000000000000002.
    (c - 1e-9).ceil().max(0.0) as u64
}

impl PresetFile {
    /// Validates every value and converts times to cycles; `key` is what the user called
    /// the preset. Errors name the offending key.
    pub fn into_design(self, key: &str) -> Result<Design> {
        let d = &self.design;
        let c = &self.core;
        let m = &self.memory;
        let core = core_of(c)?;
        let memory = memory_of(m, core.corelets, core.clock_ghz)?;
        let prefetch = in_range(d.prefetch_queries.value, 0, 1024, "design.prefetch_queries")?;
        let dac_bits = in_range(d.query_dac_bits.value, 1, 8, "design.query_dac_bits")?;
        let index_bytes = in_range(
            d.index_bytes_per_key.value,
            0,
            8,
            "design.index_bytes_per_key",
        )?;
        let block = in_range(
            d.query_block_per_corelet.value,
            1,
            1 << 20,
            "design.query_block_per_corelet",
        )?;
        let peer = match &self.peer {
            Some(p) => Some(p.validate(d.in_memory_pruning.value, d.on_chip_pruning.value)?),
            None => None,
        };
        let kept_before_fetch =
            d.in_memory_pruning.value || peer.is_some_and(|p| p.kept_before_fetch());
        Ok(Design {
            key: key.to_string(),
            peer,
            kept_before_fetch,
            causal_aware: d.causal_aware.value,
            query_block_per_corelet: block,
            query_block_shared: d.query_block_shared.value,
            resident_buffer_fraction: fraction_below_one(
                d.resident_buffer_fraction.value,
                "design.resident_buffer_fraction",
            )?,
            tile_double_buffered: d.tile_double_buffered.value,
            skip_padding: d.skip_padding.value,
            in_memory_pruning: d.in_memory_pruning.value,
            on_chip_pruning: d.on_chip_pruning.value,
            reuse: d.reuse.value,
            miss_bypass: d.miss_bypass.value,
            scoring_pipelined: d.scoring_pipelined.value,
            run_ahead: d.run_ahead.value,
            prefetch_queries: prefetch,
            index_bytes,
            query_dac_bits: dac_bits,
            core,
            k_buffer_bytes: self.buffer.k_buffer_bytes_per_corelet.value,
            v_buffer_bytes: self.buffer.v_buffer_bytes_per_corelet.value,
            memory,
            traffic_only: false,
            file: self,
        })
    }
}

/// The core of a preset, validated (errors name the offending key).
fn core_of(c: &CoreFile) -> Result<Core> {
    let clock = positive(c.clock_ghz.value, "core.clock_ghz")?;
    if clock > 100.0 {
        return Err(SimError::config(
            "core.clock_ghz",
            format!("{clock} GHz is not a plausible clock"),
        ));
    }
    let corelets = in_range(c.corelets.value, 1, 64, "core.corelets")?;
    let qk = in_range(
        c.qk_multipliers_per_corelet.value,
        1,
        65536,
        "core.qk_multipliers_per_corelet",
    )?;
    let vm = in_range(
        c.v_multipliers_per_corelet.value,
        1,
        65536,
        "core.v_multipliers_per_corelet",
    )?;
    let qk_units = units_of(
        c.qk_units_per_corelet.value,
        qk,
        "core.qk_units_per_corelet",
    )?;
    let v_units = units_of(c.v_units_per_corelet.value, vm, "core.v_units_per_corelet")?;
    let exps = in_range(
        c.softmax_exps_per_cycle.value,
        1,
        4096,
        "core.softmax_exps_per_cycle",
    )?;
    Ok(Core {
        clock_ghz: clock,
        corelets,
        qk_multipliers: qk,
        v_multipliers: vm,
        qk_units,
        v_units,
        exps_per_cycle: exps,
        divide_cycles: u64::from(c.softmax_divide_cycles.value),
        reduce_cycles: u64::from(c.corelet_reduce_cycles.value),
    })
}

/// A unit count that splits `multipliers` evenly (error names `key`).
fn units_of(units: u32, multipliers: u32, key: &str) -> Result<u32> {
    let u = in_range(units, 1, multipliers, key)?;
    if !multipliers.is_multiple_of(u) {
        return Err(SimError::config(
            key,
            format!("{u} units do not split {multipliers} multipliers evenly"),
        ));
    }
    Ok(u)
}

impl Core {
    /// Cycles one QK-PU unit spends on one key of `dim` elements.
    pub fn qk_cycles_per_key(&self, dim: u64) -> u64 {
        dim.div_ceil(u64::from(self.qk_multipliers / self.qk_units))
    }

    /// Cycles the QK-PU of one CORELET spends scoring `keys` keys of `dim` elements
    /// (`qk_units` keys at a time).
    pub fn qk_cycles(&self, keys: u64, dim: u64) -> u64 {
        keys.div_ceil(u64::from(self.qk_units)) * self.qk_cycles_per_key(dim)
    }

    /// Cycles the V-PU of one CORELET spends on `keys` value vectors of `dim` elements
    /// (`v_units` at a time).
    pub fn v_cycles(&self, keys: u64, dim: u64) -> u64 {
        keys.div_ceil(u64::from(self.v_units))
            * dim.div_ceil(u64::from(self.v_multipliers / self.v_units))
    }

    /// Multipliers of one QK-PU unit (the adder tree's width).
    pub fn qk_unit_width(&self) -> u32 {
        self.qk_multipliers / self.qk_units
    }
}

/// The memory of a preset, validated, with its times in cycles of `clock` GHz; channels
/// per corelet are multiplied by `corelets`.
fn memory_of(m: &MemoryFile, corelets: u32, clock: f64) -> Result<Memory> {
    let bw = positive(m.bus_bytes_per_ns.value, "memory.bus_bytes_per_ns")?;
    let burst = in_range(m.burst_bytes.value, 1, 1 << 20, "memory.burst_bytes")?;
    let row = in_range(m.row_bytes.value, 1, 1 << 24, "memory.row_bytes")?;
    if row < burst {
        return Err(SimError::config(
            "memory.row_bytes",
            format!("{row} B is smaller than one burst ({burst} B)"),
        ));
    }
    let chop = in_range(
        m.min_transfer_bytes.value,
        1,
        burst,
        "memory.min_transfer_bytes",
    )?;
    if !burst.is_multiple_of(chop) {
        return Err(SimError::config(
            "memory.min_transfer_bytes",
            format!("{chop} B does not divide the burst ({burst} B)"),
        ));
    }
    let tburst_ns = f64::from(burst) / bw;
    if tburst_ns > MAX_LATENCY_NS {
        return Err(SimError::config(
            "memory.bus_bytes_per_ns",
            format!(
                "{bw:e} B/ns makes one {burst} B burst last {tburst_ns:e} ns, over the limit of {MAX_LATENCY_NS:e} ns"
            ),
        ));
    }
    Ok(Memory {
        channels: in_range(
            if m.channels_per_corelet.value {
                m.channels.value.saturating_mul(corelets)
            } else {
                m.channels.value
            },
            1,
            1024,
            "memory.channels",
        )?,
        banks: in_range(
            m.banks_per_channel.value,
            1,
            1024,
            "memory.banks_per_channel",
        )?,
        burst_bytes: burst,
        row_bytes: row,
        min_transfer_bytes: chop,
        tburst: ns_to_cycles(tburst_ns, clock).max(1),
        ttransfer: ns_to_cycles(f64::from(chop) / bw, clock).max(1),
        trcd: ns_to_cycles(latency(m.trcd_ns.value, "memory.trcd_ns")?, clock),
        tcl: ns_to_cycles(latency(m.tcl_ns.value, "memory.tcl_ns")?, clock),
        trp: ns_to_cycles(latency(m.trp_ns.value, "memory.trp_ns")?, clock),
        taxth: ns_to_cycles(latency(m.taxth_ns.value, "memory.taxth_ns")?, clock),
        readp_activates_row: m.readp_activates_row.value,
        crossbar_rows: in_range(m.crossbar_rows.value, 1, 1 << 16, "memory.crossbar_rows")?,
        crossbar_columns: in_range(
            m.crossbar_columns.value,
            1,
            1 << 16,
            "memory.crossbar_columns",
        )?,
        bytes_per_cycle: bw / clock,
    })
}

impl Design {
    /// Display name.
    pub fn name(&self) -> &str {
        &self.file.name
    }

    /// Bytes of one key as stored on chip (8-bit elements).
    pub fn key_bytes(head_dim: u32) -> u64 {
        u64::from(head_dim)
    }

    /// Queries that share one pass over a head's K/V under `query-block` reuse: the block
    /// per CORELET, times the CORELETs unless they all work on the same block.
    pub fn query_block(&self) -> usize {
        let per = self.query_block_per_corelet as usize;
        if self.query_block_shared {
            per
        } else {
            per * self.core.corelets as usize
        }
    }

    /// Keys of a buffer of `capacity` keys that stay on chip for a whole head whose K/V do
    /// not fit, under `query-block` reuse.
    pub fn resident_keys(&self, capacity: usize) -> usize {
        (self.resident_buffer_fraction * capacity as f64).floor() as usize
    }

    /// Key-buffer capacity of the whole design, in keys of `head_dim` elements.
    pub fn k_capacity_keys(&self, head_dim: u32) -> usize {
        (self.k_buffer_bytes / Self::key_bytes(head_dim)) as usize * self.core.corelets as usize
    }

    /// Value-buffer capacity of the whole design, in values of `head_dim` elements.
    pub fn v_capacity_keys(&self, head_dim: u32) -> usize {
        (self.v_buffer_bytes / Self::key_bytes(head_dim)) as usize * self.core.corelets as usize
    }

    /// Checks the design against a workload's head dimension: each buffer must hold at
    /// least one key (value) vector.
    pub fn check_head_dim(&self, head_dim: u32) -> Result<()> {
        let need = Self::key_bytes(head_dim);
        for (key, have) in [
            ("buffer.k_buffer_bytes_per_corelet", self.k_buffer_bytes),
            ("buffer.v_buffer_bytes_per_corelet", self.v_buffer_bytes),
        ] {
            if have < need {
                return Err(SimError::config(
                    format!("{}: {key}", self.key),
                    format!(
                        "{have} B is smaller than one vector ({need} B at head_dim {head_dim})"
                    ),
                ));
            }
        }
        Ok(())
    }
}
