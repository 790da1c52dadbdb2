//! The peers' own stages on the engine (`crate::head` calls them): the per-head rates of
//! their work (from a trace's head statistics or the preset's), and the **filter stage** of
//! the peers that decide their kept set on chip from keys they fetch first: Sanger's
//! predictor, Energon's filtering rounds and A3's candidate search. Per query the filter
//! stage fetches q and the filter keys it lacks (every visible key, query-tiled), works for
//! [`filter_cycles`], and only then is the exact batch issued. Closed forms and sources:
//! docs/simulator.md "The peers as designs".

use crate::config::{Design, Peer};
use crate::memory::Kind;
use crate::stats::HeadStats;

/// What a workload counts of a peer's work in one head (a trace's head statistics, over
/// its real queries); `None` takes the preset's statistic.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PeerCounts {
    /// LeOPArd: key bit-planes per visible pair (`k_bits_processed`), planes.
    pub key_planes_per_pair: Option<f64>,
    /// A3: search iterations per visible pair (`candidate_iterations`), iterations.
    pub iterations_per_visible: Option<f64>,
    /// Energon: round-1 survivors per visible pair (`filter_kept[0]`), fraction.
    pub round1_keep: Option<f64>,
    /// SpAtten: recomputed rows per real query (`requant_rows`), fraction.
    pub requant_fraction: Option<f64>,
}

/// A peer's per-head rates, resolved from [`PeerCounts`] or the preset (0 where the
/// design does not use one).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PeerRates {
    /// LeOPArd: key bit-planes per visible pair, planes.
    pub planes_per_pair: f64,
    /// A3: search iterations per visible key, iterations.
    pub iterations_per_visible: f64,
    /// Energon: round-1 survivors per visible key, fraction.
    pub round1_keep: f64,
    /// SpAtten: fraction of rows recomputed with the LSBs.
    pub requant_fraction: f64,
}

/// The rates of design `d` in a head (`causal` picks LeOPArd's causal statistic).
pub fn rates(d: &Design, causal: bool, c: &PeerCounts) -> PeerRates {
    let mut r = PeerRates::default();
    match d.peer {
        Some(Peer::Leopard {
            planes_bidirectional,
            planes_causal,
            ..
        }) => {
            let preset = if causal {
                planes_causal
            } else {
                planes_bidirectional
            };
            r.planes_per_pair = c.key_planes_per_pair.unwrap_or(preset);
        }
        Some(Peer::A3 {
            iterations_per_visible,
            ..
        }) => r.iterations_per_visible = c.iterations_per_visible.unwrap_or(iterations_per_visible),
        Some(Peer::Energon { round1_keep, .. }) => {
            r.round1_keep = c.round1_keep.unwrap_or(round1_keep);
        }
        Some(Peer::Spatten {
            progressive: true,
            requant_fraction,
            ..
        }) => r.requant_fraction = c.requant_fraction.unwrap_or(requant_fraction),
        _ => {}
    }
    r
}

/// The filter stage of a design: the bytes of one filter key, the memory region it is read
/// from, and whether it shares the key buffer with the exact keys (half each).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Filter {
    /// Elements of a key (the head dimension `d`).
    pub dim: u64,
    /// Bytes of one filter key of `d` elements.
    pub key_bytes: u64,
    /// Region of the filter keys (address map offset).
    pub kind: Kind,
    /// The filter keys take half the key buffer (a low-bit copy beside the exact keys);
    /// `false`: they are the exact keys (A3), in the whole buffer.
    pub split_buffer: bool,
}

/// The filter stage of `peer` for `dim`-element keys, if it has one.
pub fn filter(peer: Option<Peer>, dim: u64) -> Option<Filter> {
    let low_bit = |bits: u32| Filter {
        dim,
        key_bytes: (u64::from(bits) * dim).div_ceil(8),
        kind: Kind::KLsb,
        split_buffer: true,
    };
    match peer? {
        Peer::Sanger { predictor_bits, .. } => Some(low_bit(predictor_bits)),
        Peer::Energon { filter_bits, .. } => Some(low_bit(filter_bits)),
        Peer::A3 { .. } => Some(Filter {
            dim,
            key_bytes: dim,
            kind: Kind::KWhole,
            split_buffer: false,
        }),
        Peer::Leopard { .. } | Peer::Spatten { .. } => None,
    }
}

/// Filter keys the whole design's key buffer holds.
pub fn filter_capacity(d: &Design, f: &Filter) -> usize {
    let bytes = d.k_buffer_bytes * u64::from(d.core.corelets);
    let bytes = if f.split_buffer { bytes / 2 } else { bytes };
    (bytes / f.key_bytes.max(1)) as usize
}

/// A3's search iterations for a query with `visible` keys.
fn iterations(r: &PeerRates, visible: u64) -> u64 {
    (visible as f64 * r.iterations_per_visible).round() as u64
}

/// Energon's round-1 survivors of `visible` keys (at least one when any is visible).
fn round1(r: &PeerRates, visible: u64) -> u64 {
    ((visible as f64 * r.round1_keep).round() as u64).clamp(visible.min(1), visible)
}

/// The filter stage's occupancy for a query with `visible` keys of `dim` elements, cycles:
/// Sanger `visible x d` MACs, Energon `(visible + round-1 survivors) x d` MACs, each on
/// its MACs per cycle of every CORELET; A3 its search iterations on every CORELET's
/// candidate-selection module. 0 for a design without a filter stage.
pub fn filter_cycles(d: &Design, r: &PeerRates, visible: u64, dim: u64) -> u64 {
    let n = u64::from(d.core.corelets);
    match d.peer {
        Some(Peer::Sanger { predictor_macs, .. }) => {
            (visible * dim).div_ceil(u64::from(predictor_macs) * n)
        }
        Some(Peer::Energon { filter_macs, .. }) => {
            ((visible + round1(r, visible)) * dim).div_ceil(u64::from(filter_macs) * n)
        }
        Some(Peer::A3 {
            iterations_per_cycle,
            ..
        }) => iterations(r, visible).div_ceil(u64::from(iterations_per_cycle) * n),
        _ => 0,
    }
}

/// Counts the filter stage of one query: `fetched` filter keys, `visible` keys scored by
/// it in `occupancy` cycles (`f.dim` elements each). Bytes by kind, ReRAM read bits, the key buffer's writes and
/// reads, and the filter's arithmetic (priced as fractions of an 8-bit multiply plus
/// adds, in the QK-PU's share):
/// - Sanger: every visible pair's `b`-bit products, `(b / 8)^2` of a multiply each;
/// - Energon: round 1 `b x b/2` bits over every visible pair, round 2 `b x b` bits over
///   the survivors (reading the `b/2` key bits round 1 did not);
/// - A3: per iteration two component products (largest and smallest), two updates of a
///   `log2 d`-level comparator tree and two estimated-score adds, two 8-bit reads.
pub fn count_filter(
    s: &mut HeadStats,
    d: &Design,
    r: &PeerRates,
    f: &Filter,
    fetched: u64,
    visible: u64,
    occupancy: u64,
) {
    let dim = f.dim;
    let fetched_bits = 8 * fetched * f.key_bytes;
    s.predictor_busy_cycles += occupancy;
    s.actions.reram_read_bits += fetched_bits;
    s.actions.sram_k_write_bits += fetched_bits;
    let a = &mut s.actions;
    match d.peer {
        Some(Peer::Sanger { predictor_bits, .. }) => {
            let b = u64::from(predictor_bits);
            s.moved.k_predictor += fetched * f.key_bytes;
            s.predictor_macs += visible * dim;
            let mults = (visible * dim * b * b).div_ceil(64);
            s.executed_macs += mults;
            a.sram_k_read_bits += visible * dim * b;
            a.qk_mults += mults;
            a.qk_adds += visible * dim;
        }
        Some(Peer::Energon { filter_bits, .. }) => {
            let b = u64::from(filter_bits);
            let r1 = round1(r, visible);
            s.moved.k_predictor += fetched * f.key_bytes;
            s.predictor_macs += (visible + r1) * dim;
            let mults = (visible * dim * b * (b / 2) + r1 * dim * b * b).div_ceil(64);
            s.executed_macs += mults;
            a.sram_k_read_bits += (visible + r1) * dim * (b / 2);
            a.qk_mults += mults;
            a.qk_adds += (visible + r1) * dim;
        }
        Some(Peer::A3 { .. }) => {
            let it = iterations(r, visible);
            s.moved.k_whole += fetched * f.key_bytes;
            s.candidate_iterations += it;
            let levels = u64::from(dim.next_power_of_two().trailing_zeros());
            s.executed_macs += (2 * it).div_ceil(dim.max(1));
            a.sram_k_read_bits += 2 * it * 8;
            a.qk_mults += 2 * it;
            a.qk_adds += 2 * it * (levels + 1);
        }
        _ => {}
    }
}

/// SpAtten: whether the `q`-th real query of a head is recomputed with the keys' LSBs, for a
/// fraction `f` of rows spread evenly (the `q`-th of every `1 / f`).
pub fn requant_row(q: u64, f: f64) -> bool {
    f > 0.0 && ((q + 1) as f64 * f).floor() > (q as f64 * f).floor()
}

/// SpAtten: the values local value pruning keeps of `softmax` keys (at least one).
pub fn values_kept(d: &Design, softmax: u64) -> u64 {
    match d.peer {
        Some(Peer::Spatten { value_keep, .. }) => {
            ((softmax as f64 * value_keep).ceil() as u64).clamp(softmax.min(1), softmax)
        }
        _ => softmax,
    }
}

/// SpAtten: the top-k engine's occupancy to select the values of a query with `softmax`
/// probabilities, cycles: quick-select reads about `2 x softmax` elements (`n + n/2 +
/// ...`) at its elements per cycle; 0 when every value is kept or for other designs.
pub fn topk_cycles(d: &Design, softmax: u64) -> u64 {
    match d.peer {
        Some(Peer::Spatten {
            topk_per_cycle,
            value_keep,
            ..
        }) if value_keep < 1.0 => (2 * softmax).div_ceil(u64::from(topk_per_cycle)),
        _ => 0,
    }
}
