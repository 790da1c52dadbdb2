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

use std::io::Read;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sprint_core::bits::words_for;
use sprint_core::trace::{HeadTrace, TraceHeader, TraceReader};

use crate::config::{Design, ns_to_cycles};
use crate::error::{Result, SimError};
use crate::generate::{SynthHead, SynthHeadSpec, head_seed};
use crate::head::{HeadShape, HeadSim, Validity};
use crate::sourced::Sourced;
use crate::stats::HeadStats;
use crate::wstats::WorkloadStats;

/// The embedded SmolLM2 decode configuration.
pub const SMOLLM2: &str = include_str!("../configs/decode/smollm2.toml");

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

/// Most query-key pairs one decode run may simulate (layers x query heads x batch x the
/// cached keys summed over the steps): 2^38, about 1000 x the default SmolLM2 decode (30 x 9
/// heads, 1024 tokens after 512: 2.8e8 pairs) and the same bound as one model workload
/// (`crate::workload::MAX_PAIRS`). Checked before anything is allocated.
pub const MAX_DECODE_PAIRS: u64 = 1 << 38;

/// Query-key pairs of a decode shape (exact, in u128: no product of u32 values overflows).
fn decode_pairs(s: &DecodeShape) -> u128 {
    let (p, t) = (
        u128::from(s.prompt_tokens.value),
        u128::from(s.new_tokens.value),
    );
    let keys = t * p + t * (t + 1) / 2;
    u128::from(s.layers.value) * u128::from(s.heads.value) * u128::from(s.batch.value) * keys
}

impl DecodeFile {
    /// The shape in words: layers, heads, K/V heads, head dimension, tokens generated after
    /// the prompt, batch.
    pub fn shape_text(&self) -> String {
        let sh = &self.shape;
        format!(
            "{} layers x {} heads, {} K/V heads, d = {}, {} tokens after a {}-token prompt, batch {}",
            sh.layers.value,
            sh.heads.value,
            sh.kv_heads.value,
            sh.head_dim.value,
            sh.new_tokens.value,
            sh.prompt_tokens.value,
            sh.batch.value
        )
    }

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
        let pairs = decode_pairs(s);
        if pairs > u128::from(MAX_DECODE_PAIRS) {
            return Err(SimError::config(
                key("shape"),
                format!(
                    "layers x heads x batch x cached keys over the steps = {pairs:.3e} query-key pairs, over the limit of {MAX_DECODE_PAIRS:.3e} (docs/limits.md); lower shape.batch, shape.layers or shape.heads",
                    pairs = pairs as f64,
                    MAX_DECODE_PAIRS = MAX_DECODE_PAIRS as f64
                ),
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

impl DecodeTotals {
    /// The attention counts with the write stalls added to the cycles (what a report of the
    /// decode is built from).
    pub fn with_stalls(&self) -> HeadStats {
        let mut t = self.totals;
        t.cycles += self.write_stall_cycles;
        t
    }
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

/// One (layer, group, sequence): every step under every design, kept sets from the
/// generator.
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
                recall: stats.recall,
                seed: head_seed(stats.seed.wrapping_add(u64::from(seq)), layer, head),
            })
        })
        .collect();
    for g in &mut gens {
        for i in 0..p {
            g.next(i);
        }
    }
    steps(designs, f, words_for(n), |i, rows, sms| {
        for (q, g) in gens.iter_mut().enumerate() {
            let (_, row, sm) = g.next(i);
            rows[q].copy_from_slice(row);
            sms[q] = sm;
        }
    })
}

/// The decode steps of one (layer, group, sequence) under every design: `fill(i, rows,
/// softmax_kept)` writes the kept row (`row_words` words, keys `0..=i` only) and the
/// softmax count of each of the group's query heads at token `i`.
fn steps(
    designs: &[Design],
    f: &DecodeFile,
    row_words: usize,
    mut fill: impl FnMut(usize, &mut [Vec<u64>], &mut [u32]),
) -> Vec<HeadStats> {
    let s = &f.shape;
    let (p, t_new) = (s.prompt_tokens.value as usize, s.new_tokens.value as usize);
    let per = (s.heads.value / s.kv_heads.value) as usize;
    let dim = u64::from(s.head_dim.value);
    let mut rows: Vec<Vec<u64>> = vec![vec![0; row_words]; per];
    let mut sms = vec![0u32; per];
    let mut out = vec![HeadStats::default(); designs.len()];
    for t in 0..t_new {
        let i = p + t;
        fill(i, &mut rows, &mut sms);
        let keys = i + 1;
        let w = words_for(keys);
        let kept: u64 = rows
            .iter()
            .flat_map(|r| &r[..w])
            .map(|x| u64::from(x.count_ones()))
            .sum();
        let mean_kept_keys = Some(kept as f64 / per as f64);
        for (d, o) in designs.iter().zip(out.iter_mut()) {
            let shape = HeadShape {
                n_queries: per,
                n_keys: keys,
                head_dim: s.head_dim.value,
                causal: false,
                writes_kv: false,
                locality: sprint_core::config::LocalityPolicy::Residency,
                mean_kept_keys,
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
    Ok(totals(designs, f, &per_unit))
}

/// Kept sets of a decode taken from a causal prefill trace of the functional model
/// (teacher forcing): row `t` of a causal trace is exactly the attention of decode step `t`
/// over the cache `0..=t`, so step `t` of the decode uses row `t` of every query head.
#[derive(Clone, Debug)]
pub struct DecodeTrace {
    /// The trace's header.
    pub header: TraceHeader,
    /// Every head, ordered by (layer, head).
    heads: Vec<HeadTrace>,
}

impl DecodeTrace {
    /// Reads a whole causal trace and checks it against decode configuration `f`: same
    /// layers, heads, K/V heads and head dimension; causal; `n_queries = n_keys >=
    /// prompt + new` tokens; every (layer, head) present with the standard GQA grouping
    /// (`kv_head = head / (heads / kv_heads)`), no padding in the tokens used, no kept key
    /// after its query; batch 1 (a trace is one sequence). Errors name the mismatch.
    pub fn read<R: Read>(mut reader: TraceReader<R>, f: &DecodeFile) -> Result<Self> {
        let h = reader.header().clone();
        let s = &f.shape;
        let bad = |k: &str, m: String| Err(SimError::workload("decode trace", format!("{k}: {m}")));
        for (k, ours, theirs) in [
            ("shape.layers", s.layers.value, h.layers),
            ("shape.heads", s.heads.value, h.heads),
            ("shape.kv_heads", s.kv_heads.value, h.kv_heads),
            ("shape.head_dim", s.head_dim.value, h.head_dim),
        ] {
            if ours != theirs {
                return bad(
                    k,
                    format!("the decode configuration has {ours}, the trace {theirs}"),
                );
            }
        }
        if !h.causal {
            return bad(
                "causal",
                "the trace is not causal: its rows are not decode steps".into(),
            );
        }
        let need = u64::from(s.prompt_tokens.value) + u64::from(s.new_tokens.value);
        if h.n_queries != h.n_keys || u64::from(h.n_queries) < need {
            return bad(
                "shape.new_tokens",
                format!(
                    "prompt {} + new {} = {need} tokens, the trace has {} queries x {} keys (use a decode file with prompt_tokens + new_tokens <= {})",
                    s.prompt_tokens.value,
                    s.new_tokens.value,
                    h.n_queries,
                    h.n_keys,
                    h.n_queries.min(h.n_keys)
                ),
            );
        }
        if s.batch.value != 1 {
            return bad(
                "shape.batch",
                format!(
                    "{} sequences, a trace holds one (set batch = 1)",
                    s.batch.value
                ),
            );
        }
        let per = h.heads / h.kv_heads;
        let n = need as usize;
        let mut heads = Vec::new();
        while let Some(t) = reader.next_head()? {
            if t.kv_head != t.head / per {
                return bad(
                    "kv_head",
                    format!(
                        "layer {} head {} uses K/V head {}, expected {} (head / {per})",
                        t.layer,
                        t.head,
                        t.kv_head,
                        t.head / per
                    ),
                );
            }
            for i in 0..n {
                if !t.query_valid.get(i) || !t.key_valid.get(i) {
                    return bad(
                        "padding",
                        format!("layer {} head {}: token {i} is padding", t.layer, t.head),
                    );
                }
            }
            for i in s.prompt_tokens.value as usize..n {
                let row = t.masks.row_words(i);
                let lo = i + 1;
                let past = row.iter().enumerate().any(|(wi, &w)| {
                    let first = wi * 64;
                    if first >= lo {
                        w != 0
                    } else if lo - first < 64 {
                        w >> (lo - first) != 0
                    } else {
                        false
                    }
                });
                if past {
                    return bad(
                        "causal",
                        format!(
                            "layer {} head {}: query {i} keeps a later key",
                            t.layer, t.head
                        ),
                    );
                }
            }
            heads.push(t);
        }
        heads.sort_by_key(|t| (t.layer, t.head));
        let expected = h.layers as usize * h.heads as usize;
        if heads.len() != expected {
            return bad(
                "heads",
                format!(
                    "the trace holds {} of the {expected} (layer, head) pairs",
                    heads.len()
                ),
            );
        }
        Ok(Self { header: h, heads })
    }
}

/// Simulates the decode under every design with the kept sets of `trace` (read against
/// `f` by [`DecodeTrace::read`]); otherwise exactly [`run_decode`] (same steps, writes,
/// stalls). On the caller's rayon pool.
pub fn run_decode_trace(
    designs: &[Design],
    f: &DecodeFile,
    trace: &DecodeTrace,
) -> Result<Vec<DecodeTotals>> {
    for d in designs {
        d.check_head_dim(f.shape.head_dim.value)?;
    }
    let s = &f.shape;
    let per = (s.heads.value / s.kv_heads.value) as usize;
    let words = words_for(trace.header.n_keys as usize);
    let units: Vec<(u32, u32)> = (0..s.layers.value)
        .flat_map(|l| (0..s.kv_heads.value).map(move |g| (l, g)))
        .collect();
    let per_unit: Vec<Vec<HeadStats>> = units
        .par_iter()
        .map(|&(l, g)| {
            let first = (l * s.heads.value) as usize + g as usize * per;
            let group = &trace.heads[first..first + per];
            steps(designs, f, words, |i, rows, sms| {
                for (q, h) in group.iter().enumerate() {
                    rows[q].copy_from_slice(h.masks.row_words(i));
                    sms[q] = h.records[i].softmax_kept;
                }
            })
        })
        .collect();
    Ok(totals(designs, f, &per_unit))
}

/// Sums the units per design and adds the write stalls and writes of every (layer, step).
fn totals(designs: &[Design], f: &DecodeFile, per_unit: &[Vec<HeadStats>]) -> Vec<DecodeTotals> {
    let s = &f.shape;
    let steps = u64::from(s.layers.value) * u64::from(s.new_tokens.value);
    let mut out = Vec::new();
    for (k, d) in designs.iter().enumerate() {
        let mut t = HeadStats::default();
        for u in per_unit {
            t += u[k];
        }
        let (stall, writes) = step_write_stall(d, f);
        out.push(DecodeTotals {
            totals: t,
            write_stall_cycles: stall * steps,
            writes: writes * steps,
        });
    }
    out
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
                write_energy_share: share(r.energy.reram_write + r.energy.reram_write_q),
                read_energy_share: share(r.energy.reram_read),
                energy_reduction: r.energy_reduction,
                bytes_moved: r.totals.moved.total(),
                writes: o.writes,
                lifetime_s_at_simulated_rate: f.write.endurance_writes_per_cell.value * r.seconds,
            }
        })
        .collect()
}
