//! Shared helpers: a small fixed synthetic trace and designs with overrides.

#![allow(dead_code)]

use sprint_core::bits::{BitMatrix, BitVec};
use sprint_core::locality::LocalityEngine;
use sprint_core::trace::{HeadTrace, KindBytes, TraceHeader, TraceReader, TraceWriter};
use sprint_sim::Design;
use sprint_sim::generate::{SynthHead, SynthHeadSpec, head_seed};
use sprint_sim::presets::load_design;
use sprint_sim::workload::ModelWorkload;
use sprint_sim::wstats::WorkloadStats;

/// A design from a built-in preset with overrides; panics on error.
pub fn design(name: &str, sets: &[&str]) -> Design {
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    load_design(name, &sets).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A small workload: `layers x heads`, `n` tokens, `d`, padding fraction, causal.
pub fn small_workload(
    layers: u32,
    heads: u32,
    n: u32,
    d: u32,
    padding: f64,
    causal: bool,
) -> ModelWorkload {
    ModelWorkload {
        name: "test".into(),
        layers,
        heads,
        kv_heads: heads,
        head_dim: d,
        seq_len: n,
        padding_fraction: padding,
        causal,
        source: "test".into(),
    }
}

/// Statistics with the given keep rate, softmax fraction and overlap.
pub fn stats(keep: f64, softmax: f64, overlap: f64) -> WorkloadStats {
    WorkloadStats {
        keep_rate_by_depth: vec![keep],
        softmax_fraction: softmax,
        query_overlap: overlap,
        recall: None,
        seed: 7,
        source: "test".into(),
    }
}

/// The fixed golden trace: 2 layers x 3 heads, 96 tokens (24 padding), d = 64, kept sets
/// from the generator (keep 0.25, softmax 0.9, overlap 0.85, seed 7), as trace bytes.
pub fn golden_trace() -> Vec<u8> {
    trace_bytes(
        &small_workload(2, 3, 96, 64, 0.25, false),
        &stats(0.25, 0.9, 0.85),
    )
}

/// A trace of `w` with kept sets generated from `st` (the same sets `run_model` uses).
pub fn trace_bytes(w: &ModelWorkload, st: &WorkloadStats) -> Vec<u8> {
    trace_bytes_as(w, st, "sprint", Default::default())
}

/// [`trace_bytes`] as written by `variant`, every head carrying the statistics `stats`.
pub fn trace_bytes_as(
    w: &ModelWorkload,
    st: &WorkloadStats,
    variant: &str,
    stats: sprint_core::trace::HeadStats,
) -> Vec<u8> {
    let n = w.seq_len as usize;
    let valid = w.valid_tokens();
    let header = TraceHeader {
        producer: "sprint-sim tests".into(),
        workload: w.name.clone(),
        variant: variant.into(),
        layers: w.layers,
        heads: w.heads,
        kv_heads: w.kv_heads,
        head_dim: w.head_dim,
        n_queries: n as u32,
        n_keys: n as u32,
        causal: w.causal,
        bytes: KindBytes {
            k_msb: w.head_dim / 2,
            k_lsb: w.head_dim / 2,
            v: w.head_dim,
            q: w.head_dim,
            index: 2,
        },
        k_buffer_bytes: 8192,
        v_buffer_bytes: 8192,
        locality_policy: sprint_core::config::LocalityPolicy::Residency,
        provenance: None,
    };
    let mut wr = TraceWriter::new(Vec::new(), &header).expect("header");
    for l in 0..w.layers {
        for h in 0..w.heads {
            let mut g = SynthHead::new(SynthHeadSpec {
                n,
                valid,
                causal: w.causal,
                keep_rate: st.keep_rate(l, w.layers),
                softmax_fraction: st.softmax_fraction,
                overlap: st.query_overlap,
                recall: st.recall,
                seed: head_seed(st.seed, l, h),
            });
            let cap = 8192 / w.head_dim as usize;
            let mut eng = LocalityEngine::new(n, cap, cap);
            let mut masks = BitMatrix::zeros(n, n);
            let mut records = Vec::with_capacity(n);
            for i in 0..n {
                let (ok, row, sm) = g.next(i);
                if ok {
                    masks.row_words_mut(i).copy_from_slice(row);
                    records.push(eng.record(row, sm));
                } else {
                    records.push(Default::default());
                }
            }
            let head = HeadTrace {
                layer: l,
                head: h,
                kv_head: h / (w.heads / w.kv_heads),
                query_valid: BitVec::from_indices(n, 0..valid),
                key_valid: BitVec::from_indices(n, 0..valid),
                masks,
                records,
                stats,
            };
            wr.write_head(&head).expect("valid head");
        }
    }
    wr.finish().expect("finish")
}

/// A reader over trace bytes.
pub fn reader(bytes: &[u8]) -> TraceReader<&[u8]> {
    TraceReader::new(bytes).expect("trace header")
}
