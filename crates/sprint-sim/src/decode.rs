//! Decode with a growing KV cache (beyond the paper): autoregressive generation where each
//! new token's K is written into the crossbars (K_MSB into the transposable arrays, K_LSB
//! beside it) and its V and Q into ReRAM, then its one query attends to every cached key.
//!
//! Per (layer, K/V group, sequence of the batch, step `t`) one engine run: the group's query
//! heads (GQA: one K/V head serves `heads / kv_heads` query heads) are its queries, over the
//! `prompt + t + 1` cached keys, so a design with reuse may share the group's fetched K/V
//! between its heads. Buffers start cold at every step (the other layers and heads ran in
//! between). Kept sets come from the generator of a causal head of `prompt + new` tokens,
//! rows `prompt..`, with the workload statistics.
//!
//! Writes: per (layer, step) the batch writes `kv_heads` keys (two halves when K is split)
//! and values and `heads` queries. They must land before the layer's attention reads them
//! (the new token attends to itself), and nothing else is modelled to hide them, so they
//! stall: `ceil(writes / (channels x banks)) x tWP + ceil(bursts / channels) x tBURST`
//! cycles per (layer, step), an upper bound. Endurance: every token's Q, K and V has its own
//! slot, so a cell is written once per sequence; the projected lifetime is
//! `endurance x new_tokens / token_rate` seconds.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sprint_core::bits::words_for;

use crate::config::{Design, ns_to_cycles};
use crate::error::{Result, SimError};
use crate::generate::{SynthHead, SynthHeadSpec, head_seed};
use crate::head::{HeadShape, HeadSim, Validity};
use crate::sourced::Sourced;
use crate::stats::HeadStats;
use crate::wstats::WorkloadStats;

/// The embedded SmolLM2 decode configuration.
pub const SMOLLM2: &str = include_str!("../../../configs/decode/smollm2.toml");

/// `[shape]` of a decode configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecodeShape {
    /// Attention layers.
    pub layers: Sourced<u32>,
    /// Query heads per layer.
    pub heads: Sourced<u32>,
    /// K/V heads per layer (divides `heads`).
    pub kv_heads: Sourced<u32>,
    /// Elements per head vector.
    pub head_dim: Sourced<u32>,
    /// Tokens of the prompt (their K/V are cached before decoding), tokens.
    pub prompt_tokens: Sourced<u32>,
    /// Tokens generated, tokens.
    pub new_tokens: Sourced<u32>,
    /// Sequences decoded together, each with its own cache.
    pub batch: Sourced<u32>,
}

/// `[write]` of a decode configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecodeWrite {
    /// ReRAM write pulse (a bank is busy this long per write), ns.
    pub twp_ns: Sourced<f64>,
    /// Writes a ReRAM cell endures, writes.
    pub endurance_writes_per_cell: Sourced<f64>,
    /// Generation rate per sequence for the lifetime projection, tokens per second.
    pub token_rate_per_s: Sourced<f64>,
}

/// A decode configuration file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecodeFile {
    /// Name.
    pub name: String,
    /// One line about it.
    pub description: String,
    /// Shape.
    pub shape: DecodeShape,
    /// Write timing and endurance.
    pub write: DecodeWrite,
}

impl DecodeFile {
    /// Parses and validates; errors name the key.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self> {
        let f: DecodeFile = toml::from_str(text)
            .map_err(|e: toml::de::Error| SimError::config(origin, e.message().trim()))?;
        let s = &f.shape;
        let key = |k: &str| format!("{origin}: {k}");
        for (v, k) in [
            (s.layers.value, "shape.layers"),
            (s.heads.value, "shape.heads"),
            (s.kv_heads.value, "shape.kv_heads"),
            (s.head_dim.value, "shape.head_dim"),
            (s.new_tokens.value, "shape.new_tokens"),
            (s.batch.value, "shape.batch"),
        ] {
            if v == 0 {
                return Err(SimError::config(key(k), "must be > 0"));
            }
        }
        if !s.heads.value.is_multiple_of(s.kv_heads.value) {
            return Err(SimError::config(
                key("shape.kv_heads"),
                format!(
                    "{} does not divide heads {}",
                    s.kv_heads.value, s.heads.value
                ),
            ));
        }
        let n = u64::from(s.prompt_tokens.value) + u64::from(s.new_tokens.value);
        if n > 65536 {
            return Err(SimError::config(
                key("shape.new_tokens"),
                format!("prompt + new = {n} tokens exceeds 65536"),
            ));
        }
        let w = &f.write;
        for (v, k) in [
            (w.twp_ns.value, "write.twp_ns"),
            (
                w.endurance_writes_per_cell.value,
                "write.endurance_writes_per_cell",
            ),
            (w.token_rate_per_s.value, "write.token_rate_per_s"),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(SimError::config(
                    key(k),
                    format!("must be a finite number > 0, got {v}"),
                ));
            }
        }
        Ok(f)
    }

    /// The embedded SmolLM2 configuration.
    pub fn smollm2() -> Result<Self> {
        Self::from_toml_str(SMOLLM2, "decode smollm2")
    }
}

/// Decode counts of one design.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct DecodeTotals {
    /// Attention counts summed over layers, groups, sequences and steps (cycles without
    /// the write stalls; written bytes are the new tokens' Q, K and V).
    pub totals: HeadStats,
    /// Cycles the attention waited for the new token's writes.
    pub write_stall_cycles: u64,
    /// ReRAM write operations (one per bank write of Q, K half or whole K, V).
    pub writes: u64,
}

/// Write stall of one (layer, step), cycles, and its write count (module doc).
pub fn step_write_stall(d: &Design, f: &DecodeFile) -> (u64, u64) {
    let s = &f.shape;
    let m = &d.memory;
    let dim = u64::from(s.head_dim.value);
    let b = u64::from(s.batch.value);
    let k_writes = if d.in_memory_pruning { 2 } else { 1 };
    let writes = b * (u64::from(s.kv_heads.value) * (k_writes + 1) + u64::from(s.heads.value));
    let bytes = b * (u64::from(s.kv_heads.value) * 2 * dim + u64::from(s.heads.value) * dim);
    let twp = ns_to_cycles(f.write.twp_ns.value, d.core.clock_ghz);
    let banks = u64::from(m.channels) * u64::from(m.banks);
    let bursts = bytes.div_ceil(u64::from(m.burst_bytes));
    let stall = writes.div_ceil(banks) * twp + bursts.div_ceil(u64::from(m.channels)) * m.tburst;
    (stall, writes)
}

/// One (layer, group, sequence): every step under every design.
fn unit(
    designs: &[Design],
    f: &DecodeFile,
    stats: &WorkloadStats,
    layer: u32,
    group: u32,
    seq: u32,
) -> Vec<HeadStats> {
    let s = &f.shape;
    let (p, t_new) = (s.prompt_tokens.value as usize, s.new_tokens.value as usize);
    let n = p + t_new;
    let per = (s.heads.value / s.kv_heads.value) as usize;
    let dim = u64::from(s.head_dim.value);
    let mut gens: Vec<SynthHead> = (0..per)
        .map(|q| {
            let head = group * per as u32 + q as u32;
            SynthHead::new(SynthHeadSpec {
                n,
                valid: n,
                causal: true,
                keep_rate: stats.keep_rate(layer, s.layers.value),
                softmax_fraction: stats.softmax_fraction,
                overlap: stats.query_overlap,
                seed: head_seed(stats.seed.wrapping_add(u64::from(seq)), layer, head),
            })
        })
        .collect();
    for g in &mut gens {
        for i in 0..p {
            g.next(i);
        }
    }
    let mut rows: Vec<Vec<u64>> = vec![vec![0; words_for(n)]; per];
    let mut sms = vec![0u32; per];
    let mut out = vec![HeadStats::default(); designs.len()];
    for t in 0..t_new {
        let i = p + t;
        for (q, g) in gens.iter_mut().enumerate() {
            let (_, row, sm) = g.next(i);
            rows[q].copy_from_slice(row);
            sms[q] = sm;
        }
        let keys = i + 1;
        let w = words_for(keys);
        for (d, o) in designs.iter().zip(out.iter_mut()) {
            let shape = HeadShape {
                n_queries: per,
                n_keys: keys,
                head_dim: s.head_dim.value,
                causal: false,
                writes_kv: false,
                locality: sprint_core::config::LocalityPolicy::Paper,
            };
            let mut sim = HeadSim::new(d, shape, Validity::Prefix(keys));
            for q in 0..per {
                sim.query(q, true, Some(&rows[q][..w]), sms[q]);
            }
            let mut st = sim.finish();
            // The new token's K and V (one K/V head); its Q per query head is counted by
            // the engine (`written_q_bytes`).
            st.written_bytes = 2 * dim;
            st.actions.reram_write_bits += 8 * 2 * dim;
            *o += st;
        }
    }
    out
}

/// Simulates the decode under every design (on the caller's rayon pool).
pub fn run_decode(
    designs: &[Design],
    f: &DecodeFile,
    stats: &WorkloadStats,
) -> Result<Vec<DecodeTotals>> {
    for d in designs {
        d.check_head_dim(f.shape.head_dim.value)?;
    }
    let s = &f.shape;
    let units: Vec<(u32, u32, u32)> = (0..s.layers.value)
        .flat_map(|l| {
            (0..s.kv_heads.value).flat_map(move |g| (0..s.batch.value).map(move |b| (l, g, b)))
        })
        .collect();
    let per_unit: Vec<Vec<HeadStats>> = units
        .par_iter()
        .map(|&(l, g, b)| unit(designs, f, stats, l, g, b))
        .collect();
    let steps = u64::from(s.layers.value) * u64::from(s.new_tokens.value);
    let mut out = Vec::new();
    for (k, d) in designs.iter().enumerate() {
        let mut t = HeadStats::default();
        for u in &per_unit {
            t += u[k];
        }
        let (stall, writes) = step_write_stall(d, f);
        out.push(DecodeTotals {
            totals: t,
            write_stall_cycles: stall * steps,
            writes: writes * steps,
        });
    }
    Ok(out)
}

/// A decode run per design, as reported: time, energy shares, writes and cell lifetime.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DecodeSummary {
    /// Design display name.
    pub design: String,
    /// Cycles including the write stalls.
    pub cycles: u64,
    /// Cycles spent waiting for the new token's writes.
    pub write_stall_cycles: u64,
    /// Generated tokens per second per sequence.
    pub tokens_per_s: f64,
    /// Speedup over the first design.
    pub speedup: f64,
    /// Total energy, pJ.
    pub energy_pj: f64,
    /// Share of the energy in ReRAM writes (fraction).
    pub write_energy_share: f64,
    /// Share of the energy in ReRAM reads (fraction).
    pub read_energy_share: f64,
    /// Energy reduction over the first design.
    pub energy_reduction: f64,
    /// Bytes moved from ReRAM.
    pub bytes_moved: u64,
    /// ReRAM write operations (Q, K, V).
    pub writes: u64,
    /// Lifetime of a cell if decode ran back to back at the simulated rate, seconds
    /// (every cell of the cache is rewritten once per sequence).
    pub lifetime_s_at_simulated_rate: f64,
}

/// Cell lifetime at the decode file's stated token rate, seconds.
pub fn lifetime_s_at_stated_rate(f: &DecodeFile) -> f64 {
    f.write.endurance_writes_per_cell.value * f64::from(f.shape.new_tokens.value)
        / f.write.token_rate_per_s.value
}

/// One [`DecodeSummary`] per design from the reports built on the totals with their write
/// stalls added (`reports[i]` of `out[i]`).
pub fn summarise(
    reports: &[crate::report::DesignReport],
    out: &[DecodeTotals],
    f: &DecodeFile,
) -> Vec<DecodeSummary> {
    let new = f64::from(f.shape.new_tokens.value);
    reports
        .iter()
        .zip(out)
        .map(|(r, o)| {
            let total = r.energy.total();
            let share = |x: f64| if total > 0.0 { x / total } else { 0.0 };
            DecodeSummary {
                design: r.name.clone(),
                cycles: r.totals.cycles,
                write_stall_cycles: o.write_stall_cycles,
                tokens_per_s: if r.seconds > 0.0 {
                    new / r.seconds
                } else {
                    0.0
                },
                speedup: r.speedup,
                energy_pj: total,
                write_energy_share: share(r.energy.reram_write),
                read_energy_share: share(r.energy.reram_read),
                energy_reduction: r.energy_reduction,
                bytes_moved: r.totals.moved.total(),
                writes: o.writes,
                lifetime_s_at_simulated_rate: f.write.endurance_writes_per_cell.value * r.seconds,
            }
        })
        .collect()
}
