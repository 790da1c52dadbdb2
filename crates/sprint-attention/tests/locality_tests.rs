//! Tests of the locality engine against an independent, set-based reference model.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use sprint_attention::locality::{BufferStep, LocalityEngine, fill_locality};
use sprint_core::bits::BitVec;
use sprint_core::trace::QueryRecord;

// ---------------------------------------------------------------------------------------
// Reference model: one buffer, ordered sets and maps, written straight from the policy.
// ---------------------------------------------------------------------------------------

/// One buffer of the reference model.
struct RefBuffer {
    capacity: usize,
    /// Resident keys.
    resident: BTreeSet<usize>,
}

/// Reference locality model: two buffers sharing the kept-set history.
struct Reference {
    /// Query counter (only non-empty queries count).
    now: u64,
    /// Previous non-empty kept set.
    prev: BTreeSet<usize>,
    /// Last query at which each key was in a kept set (every key ever kept).
    last_used: BTreeMap<usize, u64>,
    k: RefBuffer,
    v: RefBuffer,
}

impl RefBuffer {
    fn serve(
        &mut self,
        kept: &BTreeSet<usize>,
        prev: &BTreeSet<usize>,
        last_used: &BTreeMap<usize, u64>,
    ) -> BufferStep {
        let reused = kept.intersection(&self.resident).count();
        let fetched: Vec<usize> = kept.difference(&self.resident).copied().collect();
        // Eviction order: just-pruned keys first, then by last use, then by key index.
        let mut victims: Vec<usize> = self.resident.difference(kept).copied().collect();
        victims.sort_by_key(|k| (!prev.contains(k), last_used[k], *k));
        let mut victims = victims.into_iter();
        let mut streamed = 0;
        for &key in &fetched {
            // ascending key order: lowest keys get slots first
            if self.resident.len() < self.capacity {
                self.resident.insert(key);
            } else if let Some(victim) = victims.next() {
                self.resident.remove(&victim);
                self.resident.insert(key);
            } else {
                streamed += 1;
            }
        }
        assert!(self.resident.len() <= self.capacity);
        BufferStep {
            fetched: fetched.len() as u32,
            reused: reused as u32,
            streamed,
        }
    }
}

impl Reference {
    fn new(k_capacity: usize, v_capacity: usize) -> Self {
        Self {
            now: 0,
            prev: BTreeSet::new(),
            last_used: BTreeMap::new(),
            k: RefBuffer {
                capacity: k_capacity,
                resident: BTreeSet::new(),
            },
            v: RefBuffer {
                capacity: v_capacity,
                resident: BTreeSet::new(),
            },
        }
    }

    fn step(&mut self, kept: &BTreeSet<usize>) -> (BufferStep, BufferStep) {
        if kept.is_empty() {
            return (BufferStep::default(), BufferStep::default());
        }
        let k = self.k.serve(kept, &self.prev, &self.last_used);
        let v = self.v.serve(kept, &self.prev, &self.last_used);
        for &key in kept {
            self.last_used.insert(key, self.now);
        }
        self.prev = kept.clone();
        self.now += 1;
        (k, v)
    }
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn row(n_keys: usize, keys: impl IntoIterator<Item = usize>) -> BitVec {
    BitVec::from_indices(n_keys, keys)
}

fn step_keys(
    engine: &mut LocalityEngine,
    keys: impl IntoIterator<Item = usize>,
) -> (BufferStep, BufferStep) {
    let r = row(engine.n_keys(), keys);
    engine.step(r.words())
}

fn bs(fetched: u32, reused: u32, streamed: u32) -> BufferStep {
    BufferStep {
        fetched,
        reused,
        streamed,
    }
}

fn check_invariants(kept: usize, s: BufferStep, capacity: usize) {
    assert_eq!((s.fetched + s.reused) as usize, kept, "{s:?}");
    assert!(s.streamed <= s.fetched, "{s:?}");
    assert!(s.reused as usize <= capacity, "{s:?}");
}

/// SplitMix64: a tiny deterministic generator for the long random sequences.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A random walk of kept sets of density about `density`, where each query replaces
/// roughly `churn` of the previous set (correlated, as with real attention).
fn random_walk(
    rng: &mut SplitMix,
    n_keys: usize,
    n_queries: usize,
    density: f64,
    churn: f64,
) -> Vec<BTreeSet<usize>> {
    let target = ((n_keys as f64 * density) as usize).max(1);
    let mut cur = BTreeSet::new();
    let mut out = Vec::with_capacity(n_queries);
    for _ in 0..n_queries {
        let drop = ((cur.len() as f64) * churn).ceil() as usize;
        for _ in 0..drop {
            if cur.is_empty() {
                break;
            }
            let idx = rng.below(cur.len());
            let k = *cur.iter().nth(idx).unwrap();
            cur.remove(&k);
        }
        while cur.len() < target {
            cur.insert(rng.below(n_keys));
        }
        out.push(cur.clone());
    }
    out
}

// ---------------------------------------------------------------------------------------
// Hand-built cases
// ---------------------------------------------------------------------------------------

#[test]
fn identical_sets_that_fit_are_all_reuse_after_first_query() {
    let n = 200;
    let keys: Vec<usize> = (0..n).step_by(7).collect(); // 29 keys
    let mut e = LocalityEngine::new(n, 32, 64);
    let (k, v) = step_keys(&mut e, keys.iter().copied());
    assert_eq!(k, bs(29, 0, 0));
    assert_eq!(v, bs(29, 0, 0));
    for _ in 0..10 {
        let (k, v) = step_keys(&mut e, keys.iter().copied());
        assert_eq!(k, bs(0, 29, 0));
        assert_eq!(v, bs(0, 29, 0));
    }
}

#[test]
fn buffer_smaller_than_kept_set_counts_streaming_exactly() {
    let n = 100;
    let keys: Vec<usize> = (0..25).map(|i| i * 3).collect();
    let mut e = LocalityEngine::new(n, 10, 10);
    let (k, v) = step_keys(&mut e, keys.iter().copied());
    assert_eq!(k, bs(25, 0, 15));
    assert_eq!(v, k);
    // The lowest key indices got the slots.
    assert_eq!(
        e.key_buffer().resident_keys().collect::<Vec<_>>(),
        keys[..10].to_vec()
    );
    for _ in 0..5 {
        let (k, v) = step_keys(&mut e, keys.iter().copied());
        assert_eq!(k, bs(15, 10, 15));
        assert_eq!(v, k);
    }
}

#[test]
fn key_and_value_buffers_are_independent() {
    let n = 100;
    let keys: Vec<usize> = (0..25).collect();
    let mut e = LocalityEngine::new(n, 10, 30);
    assert_eq!(e.key_buffer().capacity(), 10);
    assert_eq!(e.value_buffer().capacity(), 30);
    let (k, v) = step_keys(&mut e, keys.iter().copied());
    assert_eq!(k, bs(25, 0, 15));
    assert_eq!(v, bs(25, 0, 0));
    let (k, v) = step_keys(&mut e, keys.iter().copied());
    assert_eq!(k, bs(15, 10, 15));
    assert_eq!(v, bs(0, 25, 0));
}

#[test]
fn zero_capacity_streams_everything() {
    let mut e = LocalityEngine::new(70, 0, 0);
    for _ in 0..3 {
        let (k, v) = step_keys(&mut e, [1, 5, 64, 69]);
        assert_eq!(k, bs(4, 0, 4));
        assert_eq!(v, bs(4, 0, 4));
    }
    assert!(e.key_buffer().is_empty());
}

#[test]
fn capacity_larger_than_n_keys_is_clamped() {
    let mut e = LocalityEngine::new(10, 1000, 5);
    assert_eq!(e.key_buffer().capacity(), 10);
    let (k, _) = step_keys(&mut e, 0..10);
    assert_eq!(k, bs(10, 0, 0));
    let (k, v) = step_keys(&mut e, 0..10);
    assert_eq!(k, bs(0, 10, 0));
    assert_eq!(v, bs(5, 5, 5));
}

#[test]
fn just_pruned_key_is_evicted_before_older_lru_key() {
    let mut e = LocalityEngine::new(8, 3, 3);
    step_keys(&mut e, [0]); // q0: key 0 last used at 0
    step_keys(&mut e, [1, 2]); // q1: buffer full {0, 1, 2}
    // q2: key 1 just became pruned; key 0 is older but must survive.
    let (k, _) = step_keys(&mut e, [2, 3]);
    assert_eq!(k, bs(1, 1, 0));
    let kb = e.key_buffer();
    assert_eq!(kb.resident_keys().collect::<Vec<_>>(), vec![0, 2, 3]);
    assert!(!kb.is_resident(1));

    // q3: {2, 3} both just pruned, one slot needed: the lower key (2) goes.
    let (k, _) = step_keys(&mut e, [4]);
    assert_eq!(k, bs(1, 0, 0));
    assert_eq!(
        e.key_buffer().resident_keys().collect::<Vec<_>>(),
        vec![0, 3, 4]
    );

    // q4: two slots needed: just-pruned 4 first, then LRU among {0 (q0), 3 (q2)}: 0.
    let (k, _) = step_keys(&mut e, [5, 6]);
    assert_eq!(k, bs(2, 0, 0));
    assert_eq!(
        e.key_buffer().resident_keys().collect::<Vec<_>>(),
        vec![3, 5, 6]
    );
    // Key 0 was really evicted: fetching it again is a miss.
    let (k, _) = step_keys(&mut e, [0, 3]);
    assert_eq!(k, bs(1, 1, 0));
}

#[test]
fn lru_ties_are_broken_by_lower_key_index() {
    let mut e = LocalityEngine::new(16, 4, 4);
    step_keys(&mut e, [0, 1]); // q0
    step_keys(&mut e, [2]); // q1
    step_keys(&mut e, [3]); // q2: full {0, 1, 2, 3}
    // q3 keeps 3 (nothing just pruned); LRU candidates 0, 1 (q0) and 2 (q1): 0 goes.
    let (k, _) = step_keys(&mut e, [3, 4]);
    assert_eq!(k, bs(1, 1, 0));
    assert_eq!(
        e.key_buffer().resident_keys().collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
}

#[test]
fn resident_kept_keys_are_never_evicted_and_excess_streams() {
    let mut e = LocalityEngine::new(64, 4, 4);
    step_keys(&mut e, [10, 11]);
    // Kept keys 10, 11 are resident; only 2 free slots for the 4 new keys (lowest first).
    let (k, _) = step_keys(&mut e, [10, 11, 20, 21, 22, 23]);
    assert_eq!(k, bs(4, 2, 2));
    assert_eq!(
        e.key_buffer().resident_keys().collect::<Vec<_>>(),
        vec![10, 11, 20, 21]
    );
}

#[test]
fn empty_kept_set_is_a_no_op() {
    let mut e = LocalityEngine::new(8, 2, 2);
    step_keys(&mut e, [0]);
    step_keys(&mut e, [1]); // full {0, 1}, prev {1}
    assert_eq!(
        step_keys(&mut e, []),
        (BufferStep::default(), BufferStep::default())
    );
    assert_eq!(e.queries(), 2);
    // prev is still {1}: key 1 is the just-pruned victim, not LRU key 0.
    let (k, _) = step_keys(&mut e, [2]);
    assert_eq!(k, bs(1, 0, 0));
    assert_eq!(
        e.key_buffer().resident_keys().collect::<Vec<_>>(),
        vec![0, 2]
    );
}

#[test]
fn reset_starts_a_new_head() {
    let mut e = LocalityEngine::new(50, 8, 4);
    step_keys(&mut e, 0..6);
    e.reset();
    assert!(e.key_buffer().is_empty() && e.value_buffer().is_empty());
    assert_eq!(e.queries(), 0);
    let (k, v) = step_keys(&mut e, 0..6);
    assert_eq!(k, bs(6, 0, 0));
    assert_eq!(v, bs(6, 0, 2));
}

#[test]
fn record_fills_query_record() {
    let mut e = LocalityEngine::new(40, 3, 5);
    let r = row(40, [1, 2, 3, 4]);
    let rec = e.record(r.words(), 2);
    assert_eq!(
        rec,
        QueryRecord {
            kept: 4,
            softmax_kept: 2,
            k_fetched: 4,
            k_reused: 0,
            k_streamed: 1,
            v_fetched: 4,
            v_reused: 0,
            v_streamed: 0,
        }
    );
    let rec = e.record(r.words(), 4);
    assert_eq!((rec.k_fetched, rec.k_reused, rec.k_streamed), (1, 3, 1));
    assert_eq!((rec.v_fetched, rec.v_reused, rec.v_streamed), (0, 4, 0));

    let mut rec = QueryRecord {
        kept: 7,
        softmax_kept: 6,
        ..QueryRecord::default()
    };
    fill_locality(&mut rec, bs(3, 4, 1), bs(2, 5, 0));
    assert_eq!(
        rec,
        QueryRecord {
            kept: 7,
            softmax_kept: 6,
            k_fetched: 3,
            k_reused: 4,
            k_streamed: 1,
            v_fetched: 2,
            v_reused: 5,
            v_streamed: 0,
        }
    );
}

#[test]
#[should_panic(expected = "past n_keys")]
fn bits_past_n_keys_are_rejected() {
    let mut e = LocalityEngine::new(70, 4, 4);
    e.step(&[0, 1 << 6]);
}

#[test]
#[should_panic(expected = "words")]
fn wrong_row_length_is_rejected() {
    let mut e = LocalityEngine::new(70, 4, 4);
    e.step(&[1]);
}

// ---------------------------------------------------------------------------------------
// Long random sequences
// ---------------------------------------------------------------------------------------

#[test]
fn totals_reconcile_over_long_random_sequence() {
    let n = 1024;
    let (kc, vc) = (96, 40);
    let mut rng = SplitMix(7);
    let seq = random_walk(&mut rng, n, 1500, 0.12, 0.1);
    let mut e = LocalityEngine::new(n, kc, vc);
    let (mut kept_total, mut k_tot, mut v_tot) = (0u64, [0u64; 3], [0u64; 3]);
    for kept in &seq {
        let (k, v) = step_keys(&mut e, kept.iter().copied());
        check_invariants(kept.len(), k, kc);
        check_invariants(kept.len(), v, vc);
        assert!(e.key_buffer().len() <= kc && e.value_buffer().len() <= vc);
        kept_total += kept.len() as u64;
        for (tot, s) in [(&mut k_tot, k), (&mut v_tot, v)] {
            tot[0] += u64::from(s.fetched);
            tot[1] += u64::from(s.reused);
            tot[2] += u64::from(s.streamed);
        }
    }
    assert_eq!(k_tot[0] + k_tot[1], kept_total);
    assert_eq!(v_tot[0] + v_tot[1], kept_total);
    // Some reuse does happen at this churn.
    assert!(k_tot[1] > 0 && v_tot[1] > 0);
    assert!(k_tot[2] <= k_tot[0] && v_tot[2] <= v_tot[0]);
}

#[test]
fn long_random_sequence_matches_reference() {
    for (seed, n, kc, vc, density, churn) in [
        (1, 4096, 128, 128, 0.05, 0.05),
        (2, 777, 64, 200, 0.1, 0.2),
        (3, 300, 300, 17, 0.3, 0.02),
        (4, 513, 0, 40, 0.02, 0.5),
    ] {
        let mut rng = SplitMix(seed);
        let seq = random_walk(&mut rng, n, 400, density, churn);
        let mut e = LocalityEngine::new(n, kc, vc);
        let mut r = Reference::new(kc, vc);
        for (t, kept) in seq.iter().enumerate() {
            let got = step_keys(&mut e, kept.iter().copied());
            let want = r.step(kept);
            assert_eq!(got, want, "seed {seed} query {t}");
            assert!(
                e.key_buffer()
                    .resident_keys()
                    .eq(r.k.resident.iter().copied()),
                "seed {seed} query {t}: key residency differs"
            );
            assert!(
                e.value_buffer()
                    .resident_keys()
                    .eq(r.v.resident.iter().copied()),
                "seed {seed} query {t}: value residency differs"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Property test: engine vs reference on random correlated kept-set sequences
// ---------------------------------------------------------------------------------------

/// One query of a generated sequence, as a change to the running kept set.
#[derive(Clone, Debug)]
enum Change {
    /// Toggle these keys (indices taken modulo `n_keys`), then serve the set.
    Toggle(Vec<usize>),
    /// Replace the set by these keys, then serve it.
    Jump(Vec<usize>),
    /// Serve an empty set (the running set is kept for the next query).
    Empty,
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        8 => prop::collection::vec(any::<usize>(), 0..12).prop_map(Change::Toggle),
        1 => prop::collection::vec(any::<usize>(), 0..120).prop_map(Change::Jump),
        1 => Just(Change::Empty),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn engine_matches_reference(
        n_keys in 1usize..=300,
        k_capacity in 0usize..=64,
        v_capacity in 0usize..=64,
        same_capacity in any::<bool>(),
        initial in prop::collection::vec(any::<usize>(), 0..80),
        changes in prop::collection::vec(change(), 1..60),
    ) {
        let v_capacity = if same_capacity { k_capacity } else { v_capacity };
        let mut engine = LocalityEngine::new(n_keys, k_capacity, v_capacity);
        let mut reference = Reference::new(k_capacity, v_capacity);
        let mut cur: BTreeSet<usize> = initial.iter().map(|k| k % n_keys).collect();
        for (t, ch) in changes.iter().enumerate() {
            let kept = match ch {
                Change::Toggle(keys) => {
                    for k in keys {
                        let k = k % n_keys;
                        if !cur.remove(&k) {
                            cur.insert(k);
                        }
                    }
                    cur.clone()
                }
                Change::Jump(keys) => {
                    cur = keys.iter().map(|k| k % n_keys).collect();
                    cur.clone()
                }
                Change::Empty => BTreeSet::new(),
            };
            let got = step_keys(&mut engine, kept.iter().copied());
            let want = reference.step(&kept);
            prop_assert_eq!(got, want, "query {}", t);
            check_invariants(kept.len(), got.0, k_capacity);
            check_invariants(kept.len(), got.1, v_capacity);
            prop_assert!(engine.key_buffer().resident_keys().eq(reference.k.resident.iter().copied()));
            prop_assert!(engine.value_buffer().resident_keys().eq(reference.v.resident.iter().copied()));
        }
    }
}

/// Policy `sld-strict` against an independent model of the strict rule: the buffer holds what
/// fitted of the previous kept set; reuse = kept AND held; the rest is fetched, filling free
/// slots in ascending key order, and whatever does not fit streams. Rows of 4096 keys with
/// real keep rates (10-40 %), drifting kept sets, and buffers smaller and larger than a set.
#[test]
fn sld_strict_policy_matches_an_independent_model() {
    use sprint_core::config::LocalityPolicy;
    let n = 4096;
    let mut state = 0x5eed_u64;
    let mut next = |m: u64| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) % m
    };
    for capacity in [0usize, 128, 700, 4096] {
        let mut engine =
            LocalityEngine::with_policy(n, capacity, capacity, LocalityPolicy::SldStrict);
        let mut held: BTreeSet<usize> = BTreeSet::new();
        let mut kept: BTreeSet<usize> = (0..n).filter(|_| next(100) < 25).collect();
        for _ in 0..200 {
            // Drift: drop and add a few percent of the keys, keep rate 10-40 %.
            let target = (n as u64 * (10 + next(31)) / 100) as usize;
            kept.retain(|_| next(100) >= 3);
            while kept.len() < target {
                kept.insert(next(n as u64) as usize);
            }
            while kept.len() > target {
                let k = *kept.iter().nth(next(kept.len() as u64) as usize).unwrap();
                kept.remove(&k);
            }
            let mut row = vec![0u64; n.div_ceil(64)];
            for &k in &kept {
                row[k / 64] |= 1 << (k % 64);
            }
            let (k, v) = engine.step(&row);
            let reused: BTreeSet<usize> = kept.intersection(&held).copied().collect();
            let fetched: Vec<usize> = kept.difference(&held).copied().collect();
            let admit = capacity.saturating_sub(reused.len()).min(fetched.len());
            assert_eq!(k.reused as usize, reused.len(), "capacity {capacity}");
            assert_eq!(k.fetched as usize, fetched.len(), "capacity {capacity}");
            assert_eq!(
                k.streamed as usize,
                fetched.len() - admit,
                "capacity {capacity}"
            );
            assert_eq!(k, v);
            held = reused;
            held.extend(fetched.into_iter().take(admit));
            let resident: BTreeSet<usize> = engine.key_buffer().resident_keys().collect();
            assert_eq!(resident, held, "capacity {capacity}");
        }
    }
}
