//! Whole-workload simulation: every head under every design, heads in parallel (rayon),
//! statistics summed in head order (integer sums, so identical for any thread count).

use std::io::Read;

use rayon::prelude::*;
use sprint_core::trace::{HeadTrace, TraceHeader, TraceReader};

use crate::config::Design;
use crate::error::{Result, SimError};
use crate::generate::{SynthHead, SynthHeadSpec, head_seed};
use crate::head::{HeadShape, HeadSim, Validity};
use crate::peer_stage::PeerCounts;
use crate::stats::HeadStats;
use crate::workload::ModelWorkload;
use crate::wstats::WorkloadStats;

fn sum(per_head: Vec<Vec<HeadStats>>, designs: usize) -> Result<Vec<HeadStats>> {
    let mut total = vec![HeadStats::default(); designs];
    for h in per_head {
        for (t, s) in total.iter_mut().zip(h) {
            add_checked(t, s)?;
        }
    }
    Ok(total)
}

/// Largest total a simulation reports (cycles, bursts, operations): 2^62, far beyond any
/// plausible run, so that no sum can wrap around 64 bits silently.
pub const MAX_COUNT: u64 = 1 << 62;

/// `t += s`, refusing a total whose cycles, bursts or operation counts exceed
/// [`MAX_COUNT`] (the sums are of u64 counts that would otherwise wrap silently).
fn add_checked(t: &mut HeadStats, s: HeadStats) -> Result<()> {
    for (what, a, b) in [
        ("cycles", t.cycles, s.cycles),
        ("bursts", t.bursts, s.bursts),
        ("dense operations", t.dense_ops, s.dense_ops),
        ("executed MACs", t.executed_macs, s.executed_macs),
    ] {
        if a.checked_add(b).is_none_or(|x| x > MAX_COUNT) {
            return Err(SimError::workload(
                "simulation",
                format!(
                    "the total of {what} exceeds {MAX_COUNT}: the workload or the preset's timings are implausibly large"
                ),
            ));
        }
    }
    *t += s;
    Ok(())
}

/// Simulates head (`layer`, `head`) of a model workload under every design.
pub fn synth_head(
    designs: &[Design],
    w: &ModelWorkload,
    stats: &WorkloadStats,
    layer: u32,
    head: u32,
) -> Vec<HeadStats> {
    let n = w.seq_len as usize;
    let valid = w.valid_tokens();
    let group = w.heads / w.kv_heads;
    let keep_rate = stats.keep_rate(layer, w.layers);
    let mean_visible = if w.causal {
        (valid as f64 + 1.0) / 2.0
    } else {
        valid as f64
    };
    let shape = HeadShape {
        n_queries: n,
        n_keys: n,
        head_dim: w.head_dim,
        causal: w.causal,
        writes_kv: head.is_multiple_of(group),
        locality: sprint_core::config::LocalityPolicy::Residency,
        mean_kept_keys: Some(keep_rate * mean_visible),
    };
    let mut sims: Vec<HeadSim<'_>> = designs
        .iter()
        .map(|d| HeadSim::new(d, shape.clone(), Validity::Prefix(valid)))
        .collect();
    let needs_kept = designs
        .iter()
        .any(|d| d.kept_before_fetch || d.on_chip_pruning);
    if needs_kept {
        let mut g = SynthHead::new(SynthHeadSpec {
            n,
            valid,
            causal: w.causal,
            keep_rate,
            softmax_fraction: stats.softmax_fraction,
            overlap: stats.query_overlap,
            recall: stats.recall,
            seed: head_seed(stats.seed, layer, head),
        });
        for i in 0..n {
            let (ok, row, sm) = g.next(i);
            for s in &mut sims {
                s.query(i, ok, Some(row), sm);
            }
        }
    } else {
        for i in 0..n {
            for s in &mut sims {
                s.query(i, i < valid, None, 0);
            }
        }
    }
    sims.into_iter().map(HeadSim::finish).collect()
}

/// Simulates a model workload (synthetic kept sets from `stats`) under every design; one
/// summed [`HeadStats`] per design. Runs on the caller's rayon pool.
pub fn run_model(
    designs: &[Design],
    w: &ModelWorkload,
    stats: &WorkloadStats,
) -> Result<Vec<HeadStats>> {
    let mut out = run_models(&[ModelJob {
        designs,
        workload: w,
        stats,
    }])?;
    Ok(out.pop().unwrap_or_default())
}

/// One model workload under some designs: a unit of [`run_models`].
#[derive(Clone, Copy, Debug)]
pub struct ModelJob<'a> {
    /// Designs, each summed on its own.
    pub designs: &'a [Design],
    /// The workload.
    pub workload: &'a ModelWorkload,
    /// Statistics of its synthetic kept sets.
    pub stats: &'a WorkloadStats,
}

/// Simulates several model workloads at once (each as [`run_model`] would): every (job,
/// layer, head) is one task of the caller's rayon pool, so workloads of different sizes
/// share the threads without a barrier between them; per job the heads are summed in
/// head order (integer sums), so the result is identical for any thread count and equal
/// to running the jobs one by one. One vector per job, one sum per design.
pub fn run_models(jobs: &[ModelJob<'_>]) -> Result<Vec<Vec<HeadStats>>> {
    run_models_with_progress(jobs, |_, _| {})
}

/// [`run_models`], calling `progress(heads done, heads total)` from the worker threads as
/// heads finish (in completion order, which varies between runs; the results do not).
pub fn run_models_with_progress(
    jobs: &[ModelJob<'_>],
    progress: impl Fn(usize, usize) + Sync,
) -> Result<Vec<Vec<HeadStats>>> {
    for j in jobs {
        j.workload.validate()?;
        for d in j.designs {
            d.check_head_dim(j.workload.head_dim)?;
        }
    }
    let tasks: Vec<(usize, u32, u32)> = jobs
        .iter()
        .enumerate()
        .flat_map(|(k, j)| {
            (0..j.workload.layers).flat_map(move |l| (0..j.workload.heads).map(move |h| (k, l, h)))
        })
        .collect();
    let total = tasks.len();
    let done = std::sync::atomic::AtomicUsize::new(0);
    let per_head: Vec<Vec<HeadStats>> = tasks
        .par_iter()
        .map(|&(k, l, h)| {
            let j = &jobs[k];
            let s = synth_head(j.designs, j.workload, j.stats, l, h);
            progress(
                done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1,
                total,
            );
            s
        })
        .collect();
    let mut per_head = per_head.into_iter();
    let mut out = Vec::with_capacity(jobs.len());
    for j in jobs {
        let n = j.workload.layers as usize * j.workload.heads as usize;
        out.push(sum(per_head.by_ref().take(n).collect(), j.designs.len())?);
    }
    Ok(out)
}

/// Simulates one trace head under every design.
pub fn trace_head(designs: &[Design], header: &TraceHeader, head: &HeadTrace) -> Vec<HeadStats> {
    let n = header.n_keys as usize;
    let group = header.heads / header.kv_heads;
    let shape = HeadShape {
        n_queries: header.n_queries as usize,
        n_keys: n,
        head_dim: header.head_dim,
        causal: header.causal,
        writes_kv: head.head.is_multiple_of(group),
        locality: header.locality_policy,
        mean_kept_keys: mean_kept(head),
    };
    let kv = Validity::from_words(n, head.key_valid.words());
    let counts = peer_counts(header, head);
    let mut sims: Vec<HeadSim<'_>> = designs
        .iter()
        .map(|d| HeadSim::with_counts(d, shape.clone(), kv.clone(), &counts))
        .collect();
    for (i, r) in head.records.iter().enumerate() {
        let valid = head.query_valid.get(i);
        let row = head.masks.row_words(i);
        for s in &mut sims {
            s.query(i, valid, Some(row), r.softmax_kept);
        }
    }
    sims.into_iter().map(HeadSim::finish).collect()
}

/// Key bit-planes per visible pair a trace head counts (a `leopard` trace: its
/// `k_bits_processed` over its kept pairs, which are every visible pair); `None` when the
/// trace does not count them.
pub fn counted_key_planes(head: &HeadTrace) -> Option<f64> {
    let planes = head.stats.k_bits_processed;
    let pairs: u64 = head
        .records
        .iter()
        .enumerate()
        .filter(|(i, _)| head.query_valid.get(*i))
        .map(|(_, r)| u64::from(r.kept))
        .sum();
    (planes > 0 && pairs > 0).then(|| planes as f64 / pairs as f64)
}

/// Visible (query, key) pairs of a trace head: real keys each real query may see.
fn visible_pairs(header: &TraceHeader, head: &HeadTrace) -> u64 {
    let (nq, nk) = (header.n_queries as usize, header.n_keys as usize);
    let valid = head.key_valid.words();
    let mut prefix = Vec::with_capacity(nk + 1);
    prefix.push(0u64);
    for j in 0..nk {
        let bit = valid[j / 64] >> (j % 64) & 1;
        prefix.push(prefix[j] + bit);
    }
    (0..nq)
        .filter(|&i| head.query_valid.get(i))
        .map(|i| prefix[sprint_core::visibility::visible_limit(i, nq, nk, header.causal)])
        .sum()
}

/// What a trace head counts of a peer's work ([`PeerCounts`]): LeOPArd's key planes
/// ([`counted_key_planes`]), A3's search iterations and Energon's round-1 survivors per
/// visible pair, SpAtten's recomputed rows per real query; `None` where the trace does not
/// count them (zero).
pub fn peer_counts(header: &TraceHeader, head: &HeadTrace) -> PeerCounts {
    let st = &head.stats;
    let per_pair = |x: u64| {
        let pairs = visible_pairs(header, head);
        (x > 0 && pairs > 0).then(|| x as f64 / pairs as f64)
    };
    let queries = (0..header.n_queries as usize)
        .filter(|&i| head.query_valid.get(i))
        .count() as u64;
    PeerCounts {
        key_planes_per_pair: counted_key_planes(head),
        iterations_per_visible: per_pair(st.candidate_iterations),
        round1_keep: per_pair(st.filter_kept[0]),
        requant_fraction: (st.requant_rows > 0 && queries > 0)
            .then(|| (st.requant_rows as f64 / queries as f64).min(1.0)),
    }
}

/// Mean kept keys per real query of a trace head (`None` when it has no real query).
fn mean_kept(head: &HeadTrace) -> Option<f64> {
    let (mut kept, mut queries) = (0u64, 0u64);
    for (i, r) in head.records.iter().enumerate() {
        if head.query_valid.get(i) {
            kept += u64::from(r.kept);
            queries += 1;
        }
    }
    (queries > 0).then(|| kept as f64 / queries as f64)
}

/// Checks that a trace header agrees with a workload's shape.
pub fn check_trace_shape(h: &TraceHeader, w: &ModelWorkload) -> Result<()> {
    let ours = (w.layers, w.heads, w.head_dim, w.seq_len);
    let theirs = (h.layers, h.heads, h.head_dim, h.n_queries);
    if ours != theirs || h.n_keys != h.n_queries {
        return Err(SimError::workload(
            &w.name,
            format!(
                "trace shape (layers {}, heads {}, head_dim {}, {} queries x {} keys) disagrees with the workload (layers {}, heads {}, head_dim {}, {} tokens)",
                h.layers,
                h.heads,
                h.head_dim,
                h.n_queries,
                h.n_keys,
                w.layers,
                w.heads,
                w.head_dim,
                w.seq_len
            ),
        ));
    }
    Ok(())
}

/// Bytes of decoded trace heads [`run_trace`] holds at once (at least one head). Bytes.
pub const TRACE_DECODE_BUDGET_BYTES: u64 = 512 << 20;

/// Decoded size of one head of a trace with this header: its kept-set bit matrix, padding
/// masks and per-query records. Bytes (an estimate from above).
pub fn decoded_head_bytes(h: &TraceHeader) -> u64 {
    let (q, k) = (u64::from(h.n_queries), u64::from(h.n_keys));
    q * k.div_ceil(64) * 8 + (q + k).div_ceil(8) + q * 64 + 256
}

/// How many heads [`run_trace`] decodes at a time: `2 x threads`, capped so that their
/// decoded size stays within [`TRACE_DECODE_BUDGET_BYTES`]; at least 1.
pub fn heads_in_flight(h: &TraceHeader, threads: usize) -> usize {
    let by_budget = (TRACE_DECODE_BUDGET_BYTES / decoded_head_bytes(h).max(1)).max(1);
    (2 * threads.max(1)).min(usize::try_from(by_budget).unwrap_or(usize::MAX))
}

/// Replays a trace under every design, streaming: heads are read in chunks of a few per
/// worker thread and simulated in parallel. Returns the header and one sum per design.
pub fn run_trace<R: Read>(
    designs: &[Design],
    mut reader: TraceReader<R>,
    expect: Option<&ModelWorkload>,
) -> Result<(TraceHeader, Vec<HeadStats>)> {
    let header = reader.header().clone();
    if let Some(w) = expect {
        check_trace_shape(&header, w)?;
    }
    for d in designs {
        d.check_head_dim(header.head_dim)?;
    }
    // Heads decoded at once: 2 per worker thread, but never more than the decode budget
    // allows for this header's shape (at least one head), whatever the thread count.
    let chunk = heads_in_flight(&header, rayon::current_num_threads());
    let mut total = vec![HeadStats::default(); designs.len()];
    loop {
        let mut heads = Vec::with_capacity(chunk);
        while heads.len() < chunk {
            match reader.next_head()? {
                Some(h) => heads.push(h),
                None => break,
            }
        }
        if heads.is_empty() {
            break;
        }
        let per_head: Vec<Vec<HeadStats>> = heads
            .par_iter()
            .map(|h| trace_head(designs, &header, h))
            .collect();
        for (t, s) in total.iter_mut().zip(sum(per_head, designs.len())?) {
            add_checked(t, s)?;
        }
    }
    Ok((header, total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sprint_core::trace::KindBytes;

    fn header(n: u32) -> TraceHeader {
        TraceHeader {
            producer: "t".into(),
            workload: "t".into(),
            variant: "sprint".into(),
            layers: 1,
            heads: 65536,
            kv_heads: 65536,
            head_dim: 64,
            n_queries: n,
            n_keys: n,
            causal: false,
            bytes: KindBytes {
                k_msb: 32,
                k_lsb: 32,
                v: 64,
                q: 64,
                index: 2,
            },
            k_buffer_bytes: 8192,
            v_buffer_bytes: 8192,
            locality_policy: sprint_core::config::LocalityPolicy::Residency,
            provenance: None,
        }
    }

    /// Issue #11 row 4: the heads decoded at once fit the budget whatever the thread count
    /// and the declared shape (at least one head).
    #[test]
    fn heads_in_flight_are_bounded_by_memory_not_threads() {
        for threads in [1, 2, 4, 64, 256] {
            for n in [0, 64, 4096, 16384, 32768, 65536] {
                let h = header(n);
                let k = heads_in_flight(&h, threads);
                assert!(k >= 1 && k <= 2 * threads);
                if k > 1 {
                    assert!(k as u64 * decoded_head_bytes(&h) <= TRACE_DECODE_BUDGET_BYTES);
                }
            }
        }
        assert_eq!(heads_in_flight(&header(65536), 256), 1);
        assert_eq!(heads_in_flight(&header(64), 4), 8);
    }

    /// Issue #11 row 6: sums that would wrap around 64 bits are refused.
    #[test]
    fn overflowing_sums_are_errors() {
        let mut t = HeadStats {
            cycles: MAX_COUNT - 1,
            ..HeadStats::default()
        };
        let s = HeadStats {
            cycles: 2,
            ..HeadStats::default()
        };
        let e = add_checked(&mut t, s).unwrap_err().to_string();
        assert!(e.contains("cycles") && e.contains("exceeds"), "{e}");
        assert_eq!(t.cycles, MAX_COUNT - 1);
        let big = HeadStats {
            bursts: u64::MAX,
            ..HeadStats::default()
        };
        assert!(
            add_checked(
                &mut HeadStats {
                    bursts: 1,
                    ..HeadStats::default()
                },
                big
            )
            .is_err()
        );
        assert!(
            add_checked(
                &mut t,
                HeadStats {
                    cycles: 1,
                    ..HeadStats::default()
                }
            )
            .is_ok()
        );
    }
}
