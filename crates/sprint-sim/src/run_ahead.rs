//! The memory controller's run-ahead per head (Little's law, docs/simulator.md
//! "Run-ahead"); re-exported by `crate::head`.

use crate::config::{Design, Peer, RunAhead};
use crate::peer_stage::{PeerCounts, PeerRates, filter_cycles, rates};
use crate::shape::{HeadShape, Validity};

/// The controller's run-ahead for one head, queries: `design.prefetch_queries` under
/// [`RunAhead::Fixed`]; under [`RunAhead::LittlesLaw`] the queries in flight that cover the
/// latency `W` from issuing a query to its first data at the core's service time `A` per
/// query, `ceil(W / A)`, at least 1. `W` = CopyQ (tCL) + tAxTh + ReadP (tCL, its transfer of
/// the mean visible keys' bits, tRCD when ReadP activates a row) with in-memory pruning,
/// plus the query vector's fetch from a closed row (tRCD + tCL + its transfer); `A` = the
/// QK-PU cycles of the busiest CORELET at the head's mean scored keys per query (kept keys
/// with in-memory pruning, visible keys otherwise).
pub fn run_ahead(d: &Design, shape: &HeadShape, key_valid: &Validity) -> usize {
    let r = rates(d, shape.causal, &PeerCounts::default());
    run_ahead_rates(d, shape, key_valid, &r)
}

/// [`run_ahead`] for the peers too, at their per-head rates: a filter stage's (Sanger,
/// Energon, A3) occupancy at the mean visible keys adds to the latency, and a peer that
/// knows its kept set before the fetch is served at the kept keys; LeOPArd's service time
/// is its bit-serial unit's at its key planes per pair.
pub fn run_ahead_rates(
    d: &Design,
    shape: &HeadShape,
    key_valid: &Validity,
    r: &PeerRates,
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
    }
    if d.kept_before_fetch
        && let Some(k) = shape.mean_kept_keys
    {
        scored = k.min(mean_visible);
    }
    latency += filter_cycles(d, r, mean_visible.ceil() as u64, dim) as f64;
    let per_key = match d.peer {
        Some(Peer::Leopard { lanes, .. }) => r.planes_per_pair * dim as f64 / f64::from(lanes),
        _ => d.core.qk_cycles_per_key(dim) as f64 / f64::from(d.core.qk_units),
    };
    let service = (scored / f64::from(d.core.corelets)).ceil().max(1.0) * per_key;
    ((latency / service).ceil() as usize).clamp(1, MAX_RUN_AHEAD)
}

/// Largest run-ahead Little's law may give, queries (a controller's queue is finite).
pub const MAX_RUN_AHEAD: usize = 64;
