//! Synthetic kept sets with given statistics, deterministic from a seed: the equivalent of
//! one head of a trace, produced one query row at a time (never a whole mask in memory).
//!
//! Per real query `i` with `v_i` visible keys (all real keys; `0..=i` when causal) the kept
//! set has `k_i = max(1, round(keep_rate * v_i))` keys. It evolves from the previous query's
//! set: `round((1 - overlap) * |P_(i-1)|)` random members are dropped, then random visible
//! non-members are added until the size is `k_i` (members past `v_i` never exist, since
//! keys are only added from the visible range). So `|P_i ∩ P_(i-1)| / |P_i| ≈ overlap`.
//! Which keys are added: uniformly random visible non-members, or, when the statistics
//! carry a recall histogram ([`crate::recall`]), keys drawn by recall distance: a bin is
//! drawn from the histogram, then a distance uniformly within it, and the first non-member
//! at that depth of the head's LRU stack of kept keys is added (a key never kept before for
//! the last bin, or when the stack is not that deep). `softmax_kept = round(softmax_fraction
//! * k_i)`. Padding queries (trailing) are empty.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sprint_core::bits::words_for;

use crate::recall::{BINS, EDGES, NEVER, RecencyStack};

/// Parameters of one synthetic head.
#[derive(Clone, Debug, PartialEq)]
pub struct SynthHeadSpec {
    /// Tokens (queries = keys).
    pub n: usize,
    /// Real tokens (a prefix; the rest is padding).
    pub valid: usize,
    /// Causal attention.
    pub causal: bool,
    /// Kept fraction of the visible keys.
    pub keep_rate: f64,
    /// Fraction of kept keys that enter the softmax.
    pub softmax_fraction: f64,
    /// Fraction of the kept set carried over from the previous query.
    pub overlap: f64,
    /// Probabilities of the recall bins of the keys added to a kept set
    /// ([`crate::recall::BINS`], summing to 1); `None`: uniformly random visible keys.
    pub recall: Option<[f64; BINS]>,
    /// Seed (combine the workload seed with layer and head).
    pub seed: u64,
}

/// Generator state of one head.
pub struct SynthHead {
    spec: SynthHeadSpec,
    rng: ChaCha8Rng,
    members: Vec<u32>,
    row: Vec<u64>,
    free_scratch: Vec<u32>,
    stack: Option<RecencyStack>,
    /// Size of the previous kept set (the top of `stack`).
    prev_len: usize,
}

/// A seed for (workload seed, layer, head), well mixed (SplitMix64).
pub fn head_seed(seed: u64, layer: u32, head: u32) -> u64 {
    let mut z =
        seed ^ (u64::from(layer) << 32 | u64::from(head)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl SynthHead {
    /// A generator for `spec`.
    pub fn new(spec: SynthHeadSpec) -> Self {
        let w = words_for(spec.n);
        Self {
            rng: ChaCha8Rng::seed_from_u64(spec.seed),
            members: Vec::new(),
            row: vec![0; w],
            free_scratch: Vec::new(),
            stack: spec.recall.map(|_| RecencyStack::new(spec.n)),
            prev_len: 0,
            spec,
        }
    }

    fn has(&self, j: usize) -> bool {
        self.row[j / 64] >> (j % 64) & 1 == 1
    }

    fn flip(&mut self, j: usize) {
        self.row[j / 64] ^= 1 << (j % 64);
    }

    /// The next query's row: `(valid, kept row, softmax_kept)`. Call for `i = 0, 1, ...`.
    pub fn next(&mut self, i: usize) -> (bool, &[u64], u32) {
        let s = &self.spec;
        if i >= s.valid {
            if !self.members.is_empty() {
                self.members.clear();
                self.row.fill(0);
            }
            return (false, &self.row, 0);
        }
        // Real keys are the prefix `0..valid` of `n` (queries and keys aligned).
        let visible = sprint_core::visibility::visible_limit(i, s.n, s.n, s.causal).min(s.valid);
        let target = ((s.keep_rate * visible as f64).round() as usize).clamp(1, visible);
        let drop = ((1.0 - s.overlap) * self.members.len() as f64).round() as usize;
        for _ in 0..drop.min(self.members.len()) {
            let k = self.rng.random_range(0..self.members.len());
            let j = self.members.swap_remove(k) as usize;
            self.flip(j);
        }
        while self.members.len() > target {
            let k = self.rng.random_range(0..self.members.len());
            let j = self.members.swap_remove(k) as usize;
            self.flip(j);
        }
        let missing = target - self.members.len();
        let free = visible - self.members.len();
        if let Some(recall) = self.spec.recall {
            self.add_by_recall(&recall, missing, visible);
        } else if missing > 0 && missing * 4 >= free {
            // Dense case: sample from the explicit free list.
            let mut fl = std::mem::take(&mut self.free_scratch);
            fl.clear();
            fl.extend((0..visible as u32).filter(|&j| !self.has(j as usize)));
            for _ in 0..missing {
                let k = self.rng.random_range(0..fl.len());
                let j = fl.swap_remove(k);
                self.flip(j as usize);
                self.members.push(j);
            }
            self.free_scratch = fl;
        } else {
            let mut added = 0;
            while added < missing {
                let j = self.rng.random_range(0..visible);
                if !self.has(j) {
                    self.flip(j);
                    self.members.push(j as u32);
                    added += 1;
                }
            }
        }
        if let Some(st) = self.stack.as_mut() {
            st.touch(&self.row);
            self.prev_len = self.members.len();
        }
        let sm = ((self.spec.softmax_fraction * target as f64).round() as u32).min(target as u32);
        (true, &self.row, sm)
    }

    /// Adds `missing` keys of the `visible` ones by recall distance. The stack's top holds
    /// the previous kept set (`prev` keys, touched last), so a distance `d` is position
    /// `prev + d`; members found there (kept again this query) are stepped over.
    fn add_by_recall(&mut self, recall: &[f64; BINS], missing: usize, visible: usize) {
        let prev = self.prev_len;
        for _ in 0..missing {
            let u: f64 = self.rng.random();
            let mut acc = 0.0;
            let bin = (0..BINS)
                .find(|&b| {
                    acc += recall[b];
                    u < acc
                })
                .unwrap_or(NEVER);
            let mut pick = None;
            if bin != NEVER {
                let st = self.stack.as_ref().expect("recall has a stack");
                let x = EDGES[bin] + self.rng.random::<f64>() * (EDGES[bin + 1] - EDGES[bin]);
                let mut p = prev + (x * visible as f64) as usize;
                while p < st.len() {
                    let j = st.key_at(p);
                    if !self.has(j) && j < visible {
                        pick = Some(j);
                        break;
                    }
                    p += 1;
                }
            }
            let j = match pick {
                Some(j) => j,
                None => self.random_new_key(visible),
            };
            self.flip(j);
            self.members.push(j as u32);
        }
    }

    /// A random visible non-member, never kept before when there is one.
    fn random_new_key(&mut self, visible: usize) -> usize {
        let st = self.stack.as_ref().expect("recall has a stack");
        let never = visible.saturating_sub(st.len());
        if never > 0 {
            for _ in 0..64 {
                let j = self.rng.random_range(0..visible);
                if st.position(j).is_none() && !self.has(j) {
                    return j;
                }
            }
            let fresh: Vec<usize> = (0..visible)
                .filter(|&j| st.position(j).is_none() && !self.has(j))
                .collect();
            if !fresh.is_empty() {
                return fresh[self.rng.random_range(0..fresh.len())];
            }
        }
        let free: Vec<usize> = (0..visible).filter(|&j| !self.has(j)).collect();
        free[self.rng.random_range(0..free.len())]
    }
}
