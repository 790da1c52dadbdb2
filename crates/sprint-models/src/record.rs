//! What a forward pass records about its attention layers: kept-key counts per layer, and
//! optionally the full SPRINT trace of every sequence of the batch.

use std::path::Path;

use serde::Serialize;
use sprint_core::config::AttentionConfig;
use sprint_core::trace::{HeadTrace, TraceHeader, write_trace};

use crate::error::Result;

/// Counts of (query, key) pairs of one or more attention layers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct KeepStats {
    /// Pairs a dense layer would score: real queries x real keys they may see (causal).
    pub visible: u64,
    /// Pairs whose key was moved on chip (the in-memory kept set; all visible for dense).
    pub kept: u64,
    /// Pairs whose key entered the softmax (after the optional exact-score threshold).
    pub softmax_kept: u64,
    /// Datapath statistics summed over heads: comparator audit and saturation counts.
    pub datapath: sprint_core::trace::HeadStats,
    /// Keys newly fetched into the key buffer by the locality engine (sum over queries).
    pub k_fetched: u64,
}

impl KeepStats {
    /// `kept / visible` (1 when nothing is visible).
    pub fn kept_fraction(&self) -> f64 {
        if self.visible == 0 {
            1.0
        } else {
            self.kept as f64 / self.visible as f64
        }
    }

    /// `softmax_kept / visible` (1 when nothing is visible).
    pub fn softmax_fraction(&self) -> f64 {
        if self.visible == 0 {
            1.0
        } else {
            self.softmax_kept as f64 / self.visible as f64
        }
    }
}

impl std::ops::AddAssign for KeepStats {
    fn add_assign(&mut self, o: Self) {
        self.visible += o.visible;
        self.kept += o.kept;
        self.softmax_kept += o.softmax_kept;
        self.datapath += o.datapath;
        self.k_fetched += o.k_fetched;
    }
}

/// The SPRINT trace of one sequence: every (layer, query head) of the forward pass.
#[derive(Clone, Debug)]
pub struct SequenceTrace {
    /// Header; `workload` is the model name until the caller sets it.
    pub header: TraceHeader,
    /// Head traces in (layer, head) order.
    pub heads: Vec<HeadTrace>,
}

impl SequenceTrace {
    /// Writes the trace atomically to `path` (format of `docs/trace-format.md`).
    pub fn write(&self, path: &Path) -> Result<()> {
        write_trace(path, &self.header, &self.heads)?;
        Ok(())
    }
}

/// What one sequence of a batch recorded.
#[derive(Clone, Debug, Default)]
pub struct SequenceRecord {
    /// Counts per attention layer.
    pub layers: Vec<KeepStats>,
    /// The trace, when the forward pass was asked to collect it.
    pub trace: Option<SequenceTrace>,
}

impl SequenceRecord {
    /// Counts summed over the layers.
    pub fn totals(&self) -> KeepStats {
        let mut t = KeepStats::default();
        for l in &self.layers {
            t += *l;
        }
        t
    }
}

/// What a forward pass recorded, one entry per sequence of the batch.
#[derive(Clone, Debug, Default)]
pub struct RunRecord {
    /// Per-sequence records, in batch order.
    pub sequences: Vec<SequenceRecord>,
}

impl RunRecord {
    /// Counts summed over sequences and layers.
    pub fn totals(&self) -> KeepStats {
        let mut t = KeepStats::default();
        for s in &self.sequences {
            t += s.totals();
        }
        t
    }

    /// Counts per layer, summed over sequences.
    pub fn per_layer(&self) -> Vec<KeepStats> {
        let n = self
            .sequences
            .iter()
            .map(|s| s.layers.len())
            .max()
            .unwrap_or(0);
        let mut out = vec![KeepStats::default(); n];
        for s in &self.sequences {
            for (o, l) in out.iter_mut().zip(&s.layers) {
                *o += *l;
            }
        }
        out
    }

    /// Appends the sequences of `other` (e.g. the next batch).
    pub fn extend(&mut self, other: RunRecord) {
        self.sequences.extend(other.sequences);
    }
}

/// The shape of one attention layer call on one sequence, for the trace header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallShape {
    /// Query heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Tokens per sequence (queries = keys).
    pub seq: usize,
    /// Elements per head vector.
    pub head_dim: usize,
}

/// State an attention backend carries from one layer to the next within one forward pass of
/// one sequence (e.g. SpAtten's cascade), of a type the backend chooses.
struct SessionState(Box<dyn std::any::Any + Send>);

impl std::fmt::Debug for SessionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionState(..)")
    }
}

/// Collects what the attention layers of one forward pass report, and carries the
/// per-sequence state of the backends whose decisions span layers ([`Recorder::session`]).
/// Created by the model's forward pass; attention backends add one layer at a time.
#[derive(Debug)]
pub struct Recorder {
    collect_traces: bool,
    workload: String,
    layers: usize,
    sequences: Vec<SequenceRecord>,
    sessions: Vec<Option<SessionState>>,
}

impl Recorder {
    /// A recorder for `batch` sequences of a model with `layers` attention layers; full
    /// traces are kept only if `collect_traces`. `workload` names the model in trace headers.
    pub fn new(batch: usize, layers: usize, collect_traces: bool, workload: &str) -> Self {
        Self {
            collect_traces,
            workload: workload.to_string(),
            layers,
            sequences: vec![SequenceRecord::default(); batch],
            sessions: (0..batch).map(|_| None).collect(),
        }
    }

    /// Attention layers of the model (applications, for models that share layers).
    pub fn layers(&self) -> usize {
        self.layers
    }

    /// The state of sequence `seq` that a backend carries across the layers of this forward
    /// pass: created by `make` at the first call (and whenever a different type was stored),
    /// the same value at the later calls. `None` when `seq` is not in the batch.
    pub fn session<T: std::any::Any + Send>(
        &mut self,
        seq: usize,
        make: impl FnOnce() -> T,
    ) -> Option<&mut T> {
        let slot = self.sessions.get_mut(seq)?;
        if !slot.as_ref().is_some_and(|s| s.0.is::<T>()) {
            *slot = Some(SessionState(Box::new(make())));
        }
        slot.as_mut().and_then(|s| s.0.downcast_mut::<T>())
    }

    /// True when backends should hand over their head traces.
    pub fn wants_traces(&self) -> bool {
        self.collect_traces
    }

    /// Records one layer of sequence `seq`: its counts and, when collecting, its head traces
    /// (`cfg` and `shape` describe the call, for the trace header).
    pub fn add_layer(
        &mut self,
        seq: usize,
        layer: usize,
        stats: KeepStats,
        heads: Option<Vec<HeadTrace>>,
        cfg: &AttentionConfig,
        shape: CallShape,
    ) {
        let layers = self.layers;
        let collect = self.collect_traces;
        let workload = self.workload.clone();
        let Some(rec) = self.sequences.get_mut(seq) else {
            return;
        };
        if rec.layers.len() <= layer {
            rec.layers.resize(layer + 1, KeepStats::default());
        }
        rec.layers[layer] += stats;
        if collect && let Some(heads) = heads {
            let trace = rec.trace.get_or_insert_with(|| {
                let ls = sprint_attention::LayerShape {
                    heads: shape.heads,
                    kv_heads: shape.kv_heads,
                    n_queries: shape.seq,
                    n_keys: shape.seq,
                    head_dim: shape.head_dim,
                };
                SequenceTrace {
                    header: sprint_attention::summary::trace_header(cfg, &ls, layers, &workload),
                    heads: Vec::new(),
                }
            });
            trace.heads.extend(heads);
        }
    }

    /// The record of the forward pass.
    pub fn finish(self) -> RunRecord {
        RunRecord {
            sequences: self.sequences,
        }
    }
}
