//! The recall-distance statistic ([`sprint_sim::recall`]): a generated head reproduces the
//! histogram it was given (measured back with the trace-side counter), and keys drawn by
//! recall distance are what the residency buffer turns into reuse.

use sprint_core::locality::LocalityEngine;
use sprint_sim::generate::{SynthHead, SynthHeadSpec};
use sprint_sim::recall::{BINS, RecallCounter};

fn spec(n: usize, causal: bool, recall: Option<[f64; BINS]>) -> SynthHeadSpec {
    SynthHeadSpec {
        n,
        valid: n,
        causal,
        keep_rate: 0.2,
        softmax_fraction: 0.8,
        overlap: 0.7,
        recall,
        seed: 7,
    }
}

/// Measured histogram of a generated head of `n` keys (all real).
fn measure(s: SynthHeadSpec) -> [f64; BINS] {
    let (n, causal) = (s.n, s.causal);
    let mut g = SynthHead::new(s);
    let mut c = RecallCounter::new(n);
    for i in 0..n {
        let (_, row, _) = g.next(i);
        let visible = sprint_core::visibility::visible_limit(i, n, n, causal);
        c.add(row, visible);
    }
    let total: u64 = c.counts.iter().sum();
    let mut out = [0.0; BINS];
    for (o, &k) in out.iter_mut().zip(&c.counts) {
        *o = k as f64 / total as f64;
    }
    out
}

/// Rows of 2048 keys (about 410 kept, 120 entering per query): each bin within 0.03 of the
/// histogram given, causal and not. The histogram is one a head can have: each bin asks
/// for fewer keys per query than its range of the stack holds (the first bin, 32 positions,
/// gets 18), and few never-kept keys (a head has only so many).
#[test]
fn a_generated_head_has_the_recall_it_was_given() {
    let want = [0.15, 0.15, 0.15, 0.15, 0.15, 0.15, 0.09, 0.01];
    for causal in [false, true] {
        let got = measure(spec(2048, causal, Some(want)));
        for b in 0..BINS {
            assert!(
                (got[b] - want[b]).abs() < 0.03,
                "causal {causal}: bin {b} got {:.3}, want {:.3} ({got:?})",
                got[b],
                want[b]
            );
        }
    }
}

/// Under the residency policy with a 400-key buffer (about 205 kept per query), entering keys that were kept recently
/// are mostly still on chip: a head whose entrants all come from the nearest bin fetches far
/// fewer keys than one with uniformly random entrants, at the same sizes and overlap.
#[test]
fn recent_recall_turns_into_reuse() {
    let n = 1024;
    let fetched = |recall: Option<[f64; BINS]>| {
        let mut g = SynthHead::new(spec(n, false, recall));
        let mut e = LocalityEngine::new(n, 400, 400);
        let mut total = 0u64;
        for i in 0..n {
            let (_, row, _) = g.next(i);
            total += u64::from(e.step(row).0.fetched);
        }
        total
    };
    let near = fetched(Some([1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]));
    let random = fetched(None);
    assert!(
        near * 2 < random,
        "recent entrants fetched {near} keys, random {random}"
    );
}
