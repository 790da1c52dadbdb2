//! Locality engine: SPRINT's "dynamic spatial locality" (design doc §4).
//!
//! Per (layer, head), queries are served in order. Each query brings a kept set `P_t` (the
//! keys that survived in-memory pruning, as a bit-packed row). Two independent residency
//! tables, one for the on-chip key buffer and one for the value buffer, decide for every
//! kept key whether it is already on chip (*reused*) or must be moved from main memory
//! (*fetched*), and which resident keys to evict to make room.
//!
//! # Policy `residency` (the default, [`LocalityPolicy::Residency`])
//!
//! A residency table keyed by token index, as SPRINT.md section 4 and the paper's Fig 10
//! require (SPRINT's traffic falls with the buffer and equals Mask only's at L, so keys
//! stay on chip while they fit). For each buffer of capacity `C` keys and the current kept
//! set `P_t`:
//!
//! * `reused = |P_t ∩ resident|`, `fetched = |P_t \ resident|`, so
//!   `fetched + reused == |P_t|` always.
//! * Resident keys of `P_t` are never evicted. To make room for fetched keys, resident keys
//!   not in `P_t` are evicted: first those that *just became pruned* (in `P_{t-1}`, not in
//!   `P_t`), lowest key index first; then the least recently used others (smallest last
//!   query at which the key was kept; ties broken by lower key index). Free slots are used
//!   before anything is evicted.
//! * Fetched keys get slots in ascending key order. When `P_t` does not fit (at most
//!   `C - reused` fetched keys can be retained), the remaining fetched keys stream through
//!   without being retained: `streamed` counts them (`streamed <= fetched`).
//! * A capacity of 0 is allowed: every kept key is fetched and streamed.
//!
//! # Policy `sld-strict` (an option, [`LocalityPolicy::SldStrict`])
//!
//! The strict reading of the SLD engine: consecutive pruning vectors are compared, `fetch =
//! P_t AND NOT P_(t-1)`, `reuse = P_t AND P_(t-1)`, `evict = P_(t-1) AND NOT P_t`. The
//! buffer holds what fitted of the previous kept set: with `R_(t-1)` the retained part,
//! `reused = |P_t ∩ R_(t-1)|`, every other key of `P_t` is fetched, the keys of `R_(t-1)`
//! outside `P_t` are dropped even when slots are free, and fetched keys fill the free slots
//! in ascending key order; the rest stream through (`streamed`). Its traffic cannot depend
//! on the buffer size once the kept set fits, which Fig 10 contradicts; it is kept to show
//! what a previous-query-only buffer costs. Configs and traces of earlier releases call it
//! `paper`.
//!
//! # Empty kept sets and padding rows
//!
//! Padding rows (invalid queries) must be skipped entirely: do not call
//! [`LocalityEngine::step`] for them. For safety, a call with an empty kept set is a
//! no-op that is indistinguishable from skipping: it returns zero counts, changes no
//! residency, does not advance the query clock and does not become the "previous" set of
//! the next query (which still compares against the last non-empty set).
//!
//! # Cost
//!
//! Per query: `O(n_keys / 64 + |P_t|)` word-level set operations and bit scans, plus
//! `O(n_keys / 64 + C)` only when eviction has to fall back to LRU order (a linear
//! selection over the evictable resident keys, no sorting, no hashing). When both buffers
//! have the same (effective) capacity they evolve identically, so only one table is
//! simulated and its counts are reported for both.

use crate::bits::iter_ones;
use crate::bits::words_for;
use crate::config::LocalityPolicy;
use crate::trace::QueryRecord;

/// Marker for "no slot" in [`ResidencyTable`]'s key-to-slot array and "no key" in its
/// slot-to-key array.
const NONE: u32 = u32::MAX;

/// Counts of one query for one buffer, in keys.
///
/// Invariants: `fetched + reused` is the size of the query's kept set and
/// `streamed <= fetched`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct BufferStep {
    /// Kept keys that were not resident and were moved from main memory (into the buffer
    /// or streamed through it).
    pub fetched: u32,
    /// Kept keys that were already resident in the buffer.
    pub reused: u32,
    /// Fetched keys that found no slot and streamed through without being retained.
    pub streamed: u32,
}

/// Residency table of one on-chip buffer (key buffer or value buffer).
///
/// Holds at most [`ResidencyTable::capacity`] keys, each in a slot. Keys are identified by
/// their index within the head (`0..n_keys`). Under the `sld-strict` policy the buffer only ever
/// holds keys of the current kept set and never evicts by age, so the table keeps the
/// resident set alone (word-wide bit operations) and no slots.
#[derive(Clone, Debug)]
pub struct ResidencyTable {
    policy: LocalityPolicy,
    /// Resident keys (kept up to date under every policy).
    count: usize,
    /// Bit `k` set when key `k` is resident (same packing as the kept rows).
    resident: Vec<u64>,
    /// Slot of each key, or [`NONE`].
    slot_of: Vec<u32>,
    /// Key held by each slot, or [`NONE`]; its length is the effective capacity.
    slot_key: Vec<u32>,
    /// Last query (engine clock) at which the key in each slot was in a kept set.
    slot_last_used: Vec<u64>,
    /// Free slots, popped from the end (initially lowest slot first).
    free: Vec<u32>,
    /// Scratch space for LRU selection: `(last_used, key)` of eviction candidates.
    lru_scratch: Vec<(u64, u32)>,
}

impl ResidencyTable {
    /// Empty table for `n_keys` keys holding at most `capacity` of them (capacities above
    /// `n_keys` behave exactly like `n_keys`).
    fn new(n_keys: usize, capacity: usize, policy: LocalityPolicy) -> Self {
        let slots = capacity.min(n_keys);
        Self {
            policy,
            count: 0,
            resident: vec![0; words_for(n_keys)],
            slot_of: vec![NONE; n_keys],
            slot_key: vec![NONE; slots],
            slot_last_used: vec![0; slots],
            free: (0..slots as u32).rev().collect(),
            lru_scratch: Vec::new(),
        }
    }

    /// Effective capacity in keys: the requested capacity clamped to `n_keys`.
    pub fn capacity(&self) -> usize {
        self.slot_key.len()
    }

    /// Number of resident keys.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when no key is resident.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether key `key` is resident. Panics if `key >= n_keys`.
    pub fn is_resident(&self, key: usize) -> bool {
        self.resident[key / 64] >> (key % 64) & 1 == 1
    }

    /// Buffer slot holding key `key`, if resident and slots are tracked (the
    /// `residency` policy; the `sld-strict` policy keeps no slots and answers `None`).
    /// Panics if `key >= n_keys`.
    pub fn slot_of(&self, key: usize) -> Option<usize> {
        match self.slot_of[key] {
            NONE => None,
            s => Some(s as usize),
        }
    }

    /// The resident set as a bit row (`words_for(n_keys)` words, same packing as the kept
    /// rows): bit `k % 64` of word `k / 64` is set when key `k` is resident.
    pub fn resident_words(&self) -> &[u64] {
        &self.resident
    }

    /// Resident keys, ascending.
    pub fn resident_keys(&self) -> impl Iterator<Item = usize> + '_ {
        iter_ones(&self.resident)
    }

    /// Empties the table (all slots free).
    fn clear(&mut self) {
        self.count = 0;
        self.resident.fill(0);
        self.slot_of.fill(NONE);
        self.slot_key.fill(NONE);
        self.slot_last_used.fill(0);
        self.free.clear();
        self.free.extend((0..self.slot_key.len() as u32).rev());
    }

    /// Removes resident key `key`, freeing its slot.
    fn evict(&mut self, key: usize) {
        let slot = self.slot_of[key];
        debug_assert_ne!(slot, NONE, "evicting a key that is not resident");
        self.slot_of[key] = NONE;
        self.slot_key[slot as usize] = NONE;
        self.resident[key / 64] &= !(1u64 << (key % 64));
        self.free.push(slot);
    }

    /// Serves kept set `kept` (with `kept_count` set bits, non-zero) at query clock `now`,
    /// given the previous kept set `prev`.
    fn serve(&mut self, kept: &[u64], prev: &[u64], kept_count: u32, now: u64) -> BufferStep {
        let step = match self.policy {
            LocalityPolicy::SldStrict => self.serve_strict(kept, kept_count),
            LocalityPolicy::Residency => self.serve_residency(kept, prev, kept_count, now),
        };
        self.count = (step.reused + step.fetched - step.streamed) as usize;
        step
    }

    /// The `sld-strict` policy on the resident set alone: drop what left the kept set, reuse what
    /// stayed, admit the lowest fetched keys into the free capacity, stream the rest.
    fn serve_strict(&mut self, kept: &[u64], kept_count: u32) -> BufferStep {
        let mut reused = 0u32;
        for (r, &p) in self.resident.iter_mut().zip(kept) {
            *r &= p;
            reused += r.count_ones();
        }
        let fetched = kept_count - reused;
        let admit = fetched.min(self.capacity() as u32 - reused);
        let mut left = admit;
        for (r, &p) in self.resident.iter_mut().zip(kept) {
            if left == 0 {
                break;
            }
            let miss = p & !*r;
            let c = miss.count_ones();
            if c <= left {
                *r |= miss;
                left -= c;
            } else {
                // The lowest `left` misses of this word.
                let mut above = miss;
                for _ in 0..left {
                    above &= above - 1;
                }
                *r |= miss & !above;
                left = 0;
            }
        }
        BufferStep {
            fetched,
            reused,
            streamed: fetched - admit,
        }
    }

    /// The `residency` policy with slots and last-use times.
    fn serve_residency(
        &mut self,
        kept: &[u64],
        prev: &[u64],
        kept_count: u32,
        now: u64,
    ) -> BufferStep {
        let reused: u32 = kept
            .iter()
            .zip(&self.resident)
            .map(|(p, r)| (p & r).count_ones())
            .sum();
        let fetched = kept_count - reused;
        // Slots usable by fetched keys: free ones plus resident keys outside `kept`.
        let usable = (self.capacity() - reused as usize) as u32;
        let admit = fetched.min(usable);
        let streamed = fetched - admit;

        let mut to_evict = (admit as usize).saturating_sub(self.free.len());
        if to_evict > 0 {
            to_evict = self.evict_just_pruned(kept, prev, to_evict);
        }
        if to_evict > 0 {
            self.evict_lru(kept, prev, to_evict);
        }

        // One ascending pass over `kept`: touch resident keys, admit the lowest fetched ones.
        // Evicted keys were outside `kept`, so `kept & resident` is unchanged by eviction.
        // A buffer that holds every key of the head never evicts, so it never reads the
        // last-use times and the resident keys need no touch.
        let tracks_use = self.capacity() < self.slot_of.len();
        let mut admitted = 0u32;
        for (wi, &p) in kept.iter().enumerate() {
            let resident_before = self.resident[wi];
            let mut hits = if tracks_use { p & resident_before } else { 0 };
            while hits != 0 {
                let key = wi * 64 + hits.trailing_zeros() as usize;
                hits &= hits - 1;
                self.slot_last_used[self.slot_of[key] as usize] = now;
            }
            let mut misses = p & !resident_before;
            while misses != 0 && admitted < admit {
                let key = wi * 64 + misses.trailing_zeros() as usize;
                misses &= misses - 1;
                let slot = self
                    .free
                    .pop()
                    .expect("a slot was freed for every admitted key");
                self.slot_of[key] = slot;
                self.slot_key[slot as usize] = key as u32;
                self.slot_last_used[slot as usize] = now;
                self.resident[wi] |= 1u64 << (key % 64);
                admitted += 1;
            }
        }
        debug_assert_eq!(admitted, admit);

        BufferStep {
            fetched,
            reused,
            streamed,
        }
    }

    /// Evicts up to `n` resident keys that just became pruned (in `prev`, not in `kept`),
    /// lowest key first. Returns how many evictions are still needed.
    fn evict_just_pruned(&mut self, kept: &[u64], prev: &[u64], mut n: usize) -> usize {
        for wi in 0..kept.len() {
            let mut cand = self.resident[wi] & prev[wi] & !kept[wi];
            while cand != 0 && n > 0 {
                let key = wi * 64 + cand.trailing_zeros() as usize;
                cand &= cand - 1;
                self.evict(key);
                n -= 1;
            }
            if n == 0 {
                break;
            }
        }
        n
    }

    /// Evicts the `n` least recently used resident keys outside `kept` and `prev` (ties:
    /// lower key first). There must be at least `n` such keys.
    fn evict_lru(&mut self, kept: &[u64], prev: &[u64], n: usize) {
        let mut cands = std::mem::take(&mut self.lru_scratch);
        cands.clear();
        for wi in 0..kept.len() {
            let mut bits = self.resident[wi] & !prev[wi] & !kept[wi];
            while bits != 0 {
                let key = wi * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                cands.push((self.slot_last_used[self.slot_of[key] as usize], key as u32));
            }
        }
        assert!(cands.len() >= n, "not enough evictable keys");
        if n < cands.len() {
            // (last_used, key) pairs are distinct, so the `n` smallest form a unique set.
            cands.select_nth_unstable(n - 1);
        }
        for &(_, key) in &cands[..n] {
            self.evict(key as usize);
        }
        self.lru_scratch = cands;
    }
}

/// The locality engine of one (layer, head): a key-buffer and a value-buffer residency
/// table fed the same sequence of kept sets. See the [module documentation](self) for the
/// policy. Use one engine per head, or [`LocalityEngine::reset`] between heads.
#[derive(Clone, Debug)]
pub struct LocalityEngine {
    n_keys: usize,
    policy: LocalityPolicy,
    /// Kept set of the last non-empty query (all zero before the first one).
    prev: Vec<u64>,
    /// Non-empty queries served so far (the LRU clock).
    queries: u64,
    key: ResidencyTable,
    /// `None` when the value buffer has the same effective capacity as the key buffer:
    /// both then evolve identically and `key` stands for both.
    value: Option<ResidencyTable>,
}

impl LocalityEngine {
    /// Residency-cache engine ([`LocalityPolicy::Residency`]) for heads of `n_keys` keys,
    /// with a key buffer of `k_capacity` keys and a value buffer of `v_capacity` keys (either
    /// may be 0). Panics if `n_keys >= u32::MAX`.
    pub fn new(n_keys: usize, k_capacity: usize, v_capacity: usize) -> Self {
        Self::with_policy(n_keys, k_capacity, v_capacity, LocalityPolicy::Residency)
    }

    /// Engine of `policy` for heads of `n_keys` keys, with a key buffer of `k_capacity` keys
    /// and a value buffer of `v_capacity` keys (either may be 0). Panics if
    /// `n_keys >= u32::MAX`.
    pub fn with_policy(
        n_keys: usize,
        k_capacity: usize,
        v_capacity: usize,
        policy: LocalityPolicy,
    ) -> Self {
        assert!(n_keys < NONE as usize, "n_keys {n_keys} too large");
        let key = ResidencyTable::new(n_keys, k_capacity, policy);
        let value = (v_capacity.min(n_keys) != key.capacity())
            .then(|| ResidencyTable::new(n_keys, v_capacity, policy));
        Self {
            n_keys,
            policy,
            prev: vec![0; words_for(n_keys)],
            queries: 0,
            key,
            value,
        }
    }

    /// The policy this engine follows.
    pub fn policy(&self) -> LocalityPolicy {
        self.policy
    }

    /// Keys per head.
    pub fn n_keys(&self) -> usize {
        self.n_keys
    }

    /// Number of non-empty queries served since construction or the last reset.
    pub fn queries(&self) -> u64 {
        self.queries
    }

    /// Residency table of the key buffer.
    pub fn key_buffer(&self) -> &ResidencyTable {
        &self.key
    }

    /// Residency table of the value buffer.
    pub fn value_buffer(&self) -> &ResidencyTable {
        self.value.as_ref().unwrap_or(&self.key)
    }

    /// Empties both buffers and forgets the previous kept set (start of a new head).
    pub fn reset(&mut self) {
        self.prev.fill(0);
        self.queries = 0;
        self.key.clear();
        if let Some(v) = &mut self.value {
            v.clear();
        }
    }

    /// Serves one query's kept set and returns `(key buffer counts, value buffer counts)`.
    ///
    /// `kept_row` is bit-packed (`words_for(n_keys)` words, bit `j % 64` of word `j / 64`
    /// set when key `j` is kept; bits past `n_keys` must be zero). An empty kept set is a
    /// no-op returning zeros (see the module documentation); padding rows should not be
    /// passed at all.
    ///
    /// Panics if `kept_row` has the wrong length or bits set past `n_keys`.
    pub fn step(&mut self, kept_row: &[u64]) -> (BufferStep, BufferStep) {
        assert_eq!(
            kept_row.len(),
            self.prev.len(),
            "kept row has {} words, expected {} for {} keys",
            kept_row.len(),
            self.prev.len(),
            self.n_keys
        );
        let tail = self.n_keys % 64;
        if tail != 0 {
            let last = kept_row[kept_row.len() - 1];
            assert_eq!(last >> tail, 0, "kept row has bits set past n_keys");
        }
        let kept: u32 = kept_row.iter().map(|w| w.count_ones()).sum();
        if kept == 0 {
            return (BufferStep::default(), BufferStep::default());
        }
        let now = self.queries;
        let k = self.key.serve(kept_row, &self.prev, kept, now);
        let v = match &mut self.value {
            Some(table) => table.serve(kept_row, &self.prev, kept, now),
            None => k,
        };
        self.prev.copy_from_slice(kept_row);
        self.queries += 1;
        (k, v)
    }

    /// Serves one query (as [`LocalityEngine::step`]) and returns its complete trace record:
    /// `kept` is the number of set bits of `kept_row`, `softmax_kept` is passed through,
    /// and the locality fields come from the step. Panics if `softmax_kept > kept`.
    pub fn record(&mut self, kept_row: &[u64], softmax_kept: u32) -> QueryRecord {
        let (k, v) = self.step(kept_row);
        let kept = k.fetched + k.reused;
        assert!(
            softmax_kept <= kept,
            "softmax_kept {softmax_kept} exceeds kept {kept}"
        );
        let mut rec = QueryRecord {
            kept,
            softmax_kept,
            ..QueryRecord::default()
        };
        fill_locality(&mut rec, k, v);
        rec
    }
}

/// Writes the locality fields (`k_fetched` ..= `v_streamed`) of `record` from one step's
/// key-buffer counts `k` and value-buffer counts `v`; `kept` and `softmax_kept` are left
/// untouched.
pub fn fill_locality(record: &mut QueryRecord, k: BufferStep, v: BufferStep) {
    record.k_fetched = k.fetched;
    record.k_reused = k.reused;
    record.k_streamed = k.streamed;
    record.v_fetched = v.fetched;
    record.v_reused = v.reused;
    record.v_streamed = v.streamed;
}
