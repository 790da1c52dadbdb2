//! Run-level statistics: kept fractions, bytes moved by kind, reuse, and the error of an
//! output against dense attention.

use serde::Serialize;
use sprint_core::config::{AttentionConfig, ThresholdFile, Thresholds};
use sprint_core::trace::{HeadStats, HeadTrace, KindBytes, KindTotals, Provenance, TraceHeader};
use sprint_core::visibility::visible_limit;

use crate::engine::LayerRun;
use crate::tensor::LayerShape;

/// Bytes per vector of each kind for head dimension `d` (8-bit Q/K/V; K split 4 + 4 bits).
pub fn kind_bytes(head_dim: usize, index_bytes: u32) -> KindBytes {
    let d = head_dim as u32;
    KindBytes {
        k_msb: (4 * d).div_ceil(8),
        k_lsb: (4 * d).div_ceil(8),
        v: d,
        q: d,
        index: index_bytes,
    }
}

/// How a run of `cfg` with `thresholds` (when known) was made, for the trace header.
pub fn provenance(cfg: &AttentionConfig, thresholds: Option<&Thresholds>) -> Provenance {
    let thresholds_toml = thresholds
        .map(|t| {
            let file = ThresholdFile {
                per_head: Some(t.values.clone()),
                ..ThresholdFile::default()
            };
            toml::to_string(&file).unwrap_or_default()
        })
        .unwrap_or_default();
    Provenance {
        tool: format!("sprint {}", env!("CARGO_PKG_VERSION")),
        config_toml: toml::to_string(cfg).unwrap_or_default(),
        thresholds_toml,
        seed: cfg.seed,
        recompute: match cfg.recompute {
            sprint_core::config::RecomputeMode::FixedPoint => "fixed-point".into(),
            sprint_core::config::RecomputeMode::Float => "float".into(),
        },
    }
}

/// The trace header describing runs of `cfg` on `layers` layers of `shape`, with its
/// provenance (set the thresholds with [`provenance`] when they are known).
pub fn trace_header(
    cfg: &AttentionConfig,
    shape: &LayerShape,
    layers: usize,
    workload: &str,
) -> TraceHeader {
    TraceHeader {
        producer: format!("sprint {}", env!("CARGO_PKG_VERSION")),
        workload: workload.to_string(),
        variant: cfg.variant.name().to_string(),
        layers: layers as u32,
        heads: shape.heads as u32,
        kv_heads: shape.kv_heads as u32,
        head_dim: shape.head_dim as u32,
        n_queries: shape.n_queries as u32,
        n_keys: shape.n_keys as u32,
        causal: cfg.causal,
        bytes: kind_bytes(shape.head_dim, cfg.buffer.index_bytes),
        k_buffer_bytes: cfg.buffer.k_bytes,
        v_buffer_bytes: cfg.buffer.v_bytes,
        locality_policy: cfg.buffer.locality,
        provenance: Some(provenance(cfg, None)),
    }
}

/// Error of an output against a reference (dense attention).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ErrorStats {
    /// Largest absolute elementwise difference (output units).
    pub max_abs: f64,
    /// `||out - ref|| / ||ref||` (Frobenius norms).
    pub relative: f64,
    /// Cosine similarity of the flattened tensors (1 = same direction).
    pub cosine: f64,
}

/// Compares `out` with `reference` elementwise (same length).
pub fn error_stats(out: &[f32], reference: &[f32]) -> ErrorStats {
    assert_eq!(
        out.len(),
        reference.len(),
        "compared tensors differ in length"
    );
    let (mut max_abs, mut diff2, mut ref2, mut out2, mut dot) = (0f64, 0f64, 0f64, 0f64, 0f64);
    for (&a, &b) in out.iter().zip(reference) {
        let (a, b) = (f64::from(a), f64::from(b));
        max_abs = max_abs.max((a - b).abs());
        diff2 += (a - b) * (a - b);
        ref2 += b * b;
        out2 += a * a;
        dot += a * b;
    }
    let relative = if ref2 > 0.0 {
        (diff2 / ref2).sqrt()
    } else {
        diff2.sqrt()
    };
    let cosine = if ref2 > 0.0 && out2 > 0.0 {
        dot / (ref2.sqrt() * out2.sqrt())
    } else if ref2 == out2 {
        1.0
    } else {
        0.0
    };
    ErrorStats {
        max_abs,
        relative,
        cosine,
    }
}

/// Summary of a run over one or more layers.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunSummary {
    /// Variant name.
    pub variant: String,
    /// Layers run.
    pub layers: usize,
    /// Query heads per layer.
    pub heads: usize,
    /// Queries per head.
    pub n_queries: usize,
    /// Keys per head.
    pub n_keys: usize,
    /// Elements per vector.
    pub head_dim: usize,
    /// Candidate (query, key) pairs: real queries x visible keys.
    pub visible_pairs: u64,
    /// Pairs whose key moved on chip.
    pub kept_pairs: u64,
    /// Pairs that entered the softmax.
    pub softmax_pairs: u64,
    /// `kept_pairs / visible_pairs`.
    pub kept_fraction: f64,
    /// `softmax_pairs / visible_pairs`.
    pub softmax_fraction: f64,
    /// Bytes fetched from main memory, by kind.
    pub fetched_bytes: KindTotals,
    /// Bytes served from the on-chip buffers instead, by kind.
    pub reused_bytes: KindTotals,
    /// Reused keys / kept keys (key buffer).
    pub key_reuse_ratio: f64,
    /// Keys that streamed through a full key buffer.
    pub streamed_keys: u64,
    /// Locality policy of the fetch/reuse counts (`residency` or `sld-strict`).
    pub locality_policy: String,
    /// Mean over real queries of the keys newly fetched (key buffer) as a share of the keys the
    /// query may see: the paper reports about 2.1 % (configs/paper-results.toml `[locality]`).
    pub new_fetch_share: f64,
    /// Per layer: the in-memory decisions against exact pruning and the saturation counts.
    pub per_layer: Vec<LayerStats>,
    /// Error of the output against dense float attention, if computed.
    pub error_vs_dense: Option<ErrorStats>,
    /// Median wall time of one pass over all layers, seconds, when timed.
    pub pass_seconds: Option<f64>,
}

/// Datapath statistics of one layer, summed over its heads.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LayerStats {
    /// Layer index.
    pub layer: usize,
    /// The summed head statistics (pairs, elements).
    pub stats: HeadStats,
    /// Comparator false-prune rate: pairs exact pruning keeps but the comparator pruned, over
    /// the pairs exact pruning keeps (0 when not audited).
    pub false_prune_rate: f64,
    /// Comparator false-keep rate: pairs the comparator kept but exact pruning drops, over
    /// the visible pairs exact pruning drops (0 when not audited).
    pub false_keep_rate: f64,
}

impl LayerStats {
    /// Statistics of layer `layer` from its summed head statistics and visible pairs.
    pub fn new(layer: usize, stats: HeadStats, visible_pairs: u64) -> Self {
        let frac = |x: u64, of: u64| if of == 0 { 0.0 } else { x as f64 / of as f64 };
        Self {
            layer,
            stats,
            false_prune_rate: frac(stats.false_pruned, stats.exact_kept),
            false_keep_rate: frac(
                stats.false_kept,
                visible_pairs.saturating_sub(stats.exact_kept),
            ),
        }
    }
}

/// Mean over the real queries of `heads` of `k_fetched / visible keys` (`causal` as run).
pub fn new_fetch_share<'a>(heads: impl IntoIterator<Item = &'a HeadTrace>, causal: bool) -> f64 {
    let (mut sum, mut count) = (0f64, 0u64);
    for h in heads {
        let (nq, nk) = (h.masks.rows(), h.masks.cols());
        let mut prefix = Vec::with_capacity(nk + 1);
        prefix.push(0u64);
        for j in 0..nk {
            prefix.push(prefix[j] + u64::from(h.key_valid.get(j)));
        }
        for (i, r) in h.records.iter().enumerate() {
            if !h.query_valid.get(i) {
                continue;
            }
            let vis = prefix[visible_limit(i, nq, nk, causal)];
            if vis > 0 {
                sum += f64::from(r.k_fetched) / vis as f64;
                count += 1;
            }
        }
    }
    if count == 0 { 0.0 } else { sum / count as f64 }
}

impl RunSummary {
    /// Summarises `runs` (one per layer) of `cfg` on `shape`.
    pub fn new(cfg: &AttentionConfig, shape: &LayerShape, runs: &[LayerRun]) -> Self {
        let bytes = kind_bytes(shape.head_dim, cfg.buffer.index_bytes);
        let heads = runs.iter().flat_map(|r| &r.heads);
        let (mut fetched, mut reused) = (KindTotals::default(), KindTotals::default());
        let (mut kept, mut softmax, mut k_reused, mut streamed) = (0u64, 0u64, 0u64, 0u64);
        for h in heads {
            fetched += h.bytes_by_kind(&bytes);
            reused += h.reused_bytes_by_kind(&bytes);
            for r in &h.records {
                kept += u64::from(r.kept);
                softmax += u64::from(r.softmax_kept);
                k_reused += u64::from(r.k_reused);
                streamed += u64::from(r.k_streamed);
            }
        }
        let visible: u64 = runs.iter().map(|r| r.visible_pairs).sum();
        let frac = |x: u64, of: u64| if of == 0 { 0.0 } else { x as f64 / of as f64 };
        Self {
            variant: cfg.variant.name().to_string(),
            layers: runs.len(),
            heads: shape.heads,
            n_queries: shape.n_queries,
            n_keys: shape.n_keys,
            head_dim: shape.head_dim,
            visible_pairs: visible,
            kept_pairs: kept,
            softmax_pairs: softmax,
            kept_fraction: frac(kept, visible),
            softmax_fraction: frac(softmax, visible),
            fetched_bytes: fetched,
            reused_bytes: reused,
            key_reuse_ratio: frac(k_reused, kept),
            streamed_keys: streamed,
            locality_policy: cfg.buffer.locality.name().to_string(),
            new_fetch_share: new_fetch_share(runs.iter().flat_map(|r| &r.heads), cfg.causal),
            per_layer: runs
                .iter()
                .enumerate()
                .map(|(l, r)| {
                    let mut st = HeadStats::default();
                    for h in &r.heads {
                        st += h.stats;
                    }
                    LayerStats::new(l, st, r.visible_pairs)
                })
                .collect(),
            error_vs_dense: None,
            pass_seconds: None,
        }
    }
}

/// All head traces of several layers, in (layer, head) order.
pub fn all_heads(runs: &[LayerRun]) -> impl Iterator<Item = &HeadTrace> {
    runs.iter().flat_map(|r| r.heads.iter())
}
