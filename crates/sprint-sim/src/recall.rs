//! Recall distance: how recently a key that enters a kept set was last kept.
//!
//! Under the `residency` locality policy a buffer of `C` keys holds, roughly, the `C` keys
//! kept most recently, so what a head fetches depends on *which* keys enter each kept set,
//! not only on how many (the query overlap). For a key `j` entering `P_t` (kept by query
//! `t`, not by the previous real query), its recall distance is its position in the LRU
//! stack of the head's kept keys (most recently kept first) minus `|P_(t-1)|`: the number
//! of keys outside `P_(t-1)` that were kept more recently than `j` (the stack distance of
//! Mattson et al., 1970, less the previous set). A key never kept before has none.
//!
//! Distances are binned as fractions of the keys the query sees, so a histogram measured
//! on a real trace (`sprint simulate --trace T --measure-stats S`) transfers to workloads
//! of another length: bins `[0, 1/64)`, `[1/64, 1/32)`, `[1/32, 1/16)`, `[1/16, 1/8)`,
//! `[1/8, 1/4)`, `[1/4, 1/2)`, `[1/2, 1]` of the visible keys, and a last bin for keys
//! never kept before.

/// Bin edges, fractions of the visible keys (the last range is closed).
pub const EDGES: [f64; 8] = [
    0.0,
    1.0 / 64.0,
    1.0 / 32.0,
    1.0 / 16.0,
    1.0 / 8.0,
    1.0 / 4.0,
    1.0 / 2.0,
    1.0,
];

/// Number of bins: the seven distance ranges of [`EDGES`] and "never kept before".
pub const BINS: usize = EDGES.len();

/// Index of the "never kept before" bin.
pub const NEVER: usize = BINS - 1;

/// Marker for "never kept" in [`RecencyStack`]'s position array.
const NONE: u32 = u32::MAX;

/// The bin of a recall distance of `distance` keys when the query sees `visible` keys.
pub fn bin_of(distance: usize, visible: usize) -> usize {
    let x = distance as f64 / visible.max(1) as f64;
    (0..NEVER - 1)
        .find(|&b| x < EDGES[b + 1])
        .unwrap_or(NEVER - 1)
}

/// The LRU stack of the keys a head has kept: most recently kept first.
#[derive(Clone, Debug)]
pub struct RecencyStack {
    order: Vec<u32>,
    pos: Vec<u32>,
    front: Vec<u32>,
    back: Vec<u32>,
}

impl RecencyStack {
    /// An empty stack for a head of `n` keys.
    pub fn new(n: usize) -> Self {
        Self {
            order: Vec::new(),
            pos: vec![NONE; n],
            front: Vec::new(),
            back: Vec::new(),
        }
    }

    /// Keys ever kept.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// True when no key was kept yet.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Position of key `j` (0 = most recently kept), `None` if never kept.
    pub fn position(&self, j: usize) -> Option<usize> {
        match self.pos[j] {
            NONE => None,
            p => Some(p as usize),
        }
    }

    /// The key at position `p` (`p < len`).
    pub fn key_at(&self, p: usize) -> usize {
        self.order[p] as usize
    }

    /// Moves the keys of `kept` (a bit row) to the top: those already on the stack keep
    /// their relative order, new ones follow them in ascending key order, and the rest keep
    /// theirs below. `O(len + |kept|)`.
    pub fn touch(&mut self, kept: &[u64]) {
        let has = |j: u32| kept[j as usize / 64] >> (j % 64) & 1 == 1;
        self.front.clear();
        self.back.clear();
        for &j in &self.order {
            if has(j) {
                self.front.push(j);
            } else {
                self.back.push(j);
            }
        }
        for (wi, &w) in kept.iter().enumerate() {
            let mut x = w;
            while x != 0 {
                let j = (wi * 64) as u32 + x.trailing_zeros();
                x &= x - 1;
                if self.pos[j as usize] == NONE {
                    self.front.push(j);
                }
            }
        }
        self.order.clear();
        self.order.extend_from_slice(&self.front);
        self.order.extend_from_slice(&self.back);
        for (p, &j) in self.order.iter().enumerate() {
            self.pos[j as usize] = p as u32;
        }
    }
}

/// Histogram counts of recall bins over the entering keys of successive kept sets of one
/// head (the measurement side).
#[derive(Clone, Debug)]
pub struct RecallCounter {
    stack: RecencyStack,
    prev: Vec<u64>,
    prev_count: usize,
    /// Entering keys per bin.
    pub counts: [u64; BINS],
}

impl RecallCounter {
    /// A counter for a head of `n` keys.
    pub fn new(n: usize) -> Self {
        Self {
            stack: RecencyStack::new(n),
            prev: vec![0; n.div_ceil(64)],
            prev_count: 0,
            counts: [0; BINS],
        }
    }

    /// Counts the keys of `kept` (a non-empty bit row of a real query that sees `visible`
    /// keys) that were not in the previous kept set, by recall bin.
    pub fn add(&mut self, kept: &[u64], visible: usize) {
        for (wi, (&w, &p)) in kept.iter().zip(&self.prev).enumerate() {
            let mut x = w & !p;
            while x != 0 {
                let j = wi * 64 + x.trailing_zeros() as usize;
                x &= x - 1;
                let b = match self.stack.position(j) {
                    Some(pos) => bin_of(pos.saturating_sub(self.prev_count), visible),
                    None => NEVER,
                };
                self.counts[b] += 1;
            }
        }
        self.stack.touch(kept);
        self.prev.copy_from_slice(kept);
        self.prev_count = kept.iter().map(|w| w.count_ones() as usize).sum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_follow_the_edges() {
        assert_eq!(bin_of(0, 640), 0);
        assert_eq!(bin_of(9, 640), 0);
        assert_eq!(bin_of(10, 640), 1);
        assert_eq!(bin_of(319, 640), 5);
        assert_eq!(bin_of(320, 640), 6);
        assert_eq!(bin_of(640, 640), 6);
        assert_eq!(bin_of(5000, 640), 6);
    }

    /// Hand-counted: keys {0,1}, then {1,2}, then {0,3}, then {0,2}. Query 1: 2 is new.
    /// Query 2: stack [1,2,0] (1 and 2 kept last, 1 before 2 by the earlier order), 0 at
    /// position 2, previous set of 2 -> distance 0; 3 new. Query 3: stack [0,3,1,2], 2 at 3,
    /// previous {0,3} -> distance 1 (key 1 is more recent).
    #[test]
    fn distances_are_counted_by_hand() {
        let row = |ks: &[usize]| {
            let mut w = vec![0u64; 1];
            for &k in ks {
                w[0] |= 1 << k;
            }
            w
        };
        let mut c = RecallCounter::new(8);
        c.add(&row(&[0, 1]), 64);
        assert_eq!(c.counts[NEVER], 2);
        c.add(&row(&[1, 2]), 64);
        assert_eq!(c.counts[NEVER], 3);
        c.add(&row(&[0, 3]), 64);
        assert_eq!((c.counts[0], c.counts[NEVER]), (1, 4));
        assert_eq!(c.stack.key_at(0), 0);
        assert_eq!(c.stack.key_at(1), 3);
        assert_eq!(c.stack.position(2), Some(3));
        c.add(&row(&[0, 2]), 2);
        // distance 1 of 2 visible keys = 0.5: the last range.
        assert_eq!(c.counts[6], 1);
        assert_eq!(c.counts.iter().sum::<u64>(), 6);
    }
}
