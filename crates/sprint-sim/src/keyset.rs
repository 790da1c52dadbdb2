//! Sets of key indices as the engine sees them: a contiguous range (dense designs, trailing
//! padding) or a bit-packed row (kept sets, arbitrary padding).

use sprint_core::bits::iter_ones;

/// A set of key indices.
#[derive(Clone, Copy, Debug)]
pub enum KeySet<'a> {
    /// Keys `start..end`.
    Range(usize, usize),
    /// Keys whose bit is set (bit `j % 64` of word `j / 64`).
    Bits(&'a [u64]),
}

impl KeySet<'_> {
    /// Number of keys.
    pub fn count(&self) -> u64 {
        match *self {
            KeySet::Range(a, b) => b.saturating_sub(a) as u64,
            KeySet::Bits(w) => w.iter().map(|x| u64::from(x.count_ones())).sum(),
        }
    }

    /// Keys `j` with `j % modulus == residue`. Exact for ranges and for bit sets when
    /// `modulus` divides 64; otherwise the even share `ceil(count / modulus)`.
    pub fn count_residue(&self, modulus: usize, residue: usize) -> u64 {
        if modulus <= 1 {
            return self.count();
        }
        match *self {
            KeySet::Range(a, b) => count_congruent(a, b, modulus, residue),
            KeySet::Bits(w) => {
                if 64 % modulus == 0 {
                    let mut pattern = 0u64;
                    let mut bit = residue;
                    while bit < 64 {
                        pattern |= 1 << bit;
                        bit += modulus;
                    }
                    w.iter()
                        .map(|x| u64::from((x & pattern).count_ones()))
                        .sum()
                } else {
                    self.count().div_ceil(modulus as u64)
                }
            }
        }
    }

    /// The keys, ascending.
    pub fn iter(&self) -> Box<dyn Iterator<Item = usize> + '_> {
        match *self {
            KeySet::Range(a, b) => Box::new(a..b),
            KeySet::Bits(w) => Box::new(iter_ones(w)),
        }
    }
}

/// Number of `j` in `a..b` with `j % m == r` (`r < m`).
pub fn count_congruent(a: usize, b: usize, m: usize, r: usize) -> u64 {
    if b <= a {
        return 0;
    }
    // Count in 0..x of j ≡ r (mod m).
    let upto = |x: usize| -> usize { if x > r { (x - r).div_ceil(m) } else { 0 } };
    (upto(b) - upto(a)) as u64
}

/// Where a fetch set's keys are.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Src {
    /// The policy's fetch buffer (`fetch_k` / `fetch_v`).
    FetchBuf,
    /// The whole scored set.
    Scored,
    /// Keys `0..n` (address approximation when only a count is known).
    FirstN(usize),
}

/// The key set a [`Src`] names.
pub(crate) fn set_of<'a>(
    src: Src,
    scored_range: Option<(usize, usize)>,
    buf: &'a [u64],
    row: &'a [u64],
) -> KeySet<'a> {
    match src {
        Src::FetchBuf => KeySet::Bits(buf),
        Src::Scored => match scored_range {
            Some((a, b)) => KeySet::Range(a, b),
            None => KeySet::Bits(row),
        },
        Src::FirstN(k) => KeySet::Range(0, k),
    }
}

/// Clears bits `>= hi`.
pub(crate) fn mask_from(words: &mut [u64], hi: usize) {
    for (wi, w) in words.iter_mut().enumerate() {
        let lo = wi * 64;
        if lo >= hi {
            *w = 0;
        } else if hi - lo < 64 {
            *w &= (1u64 << (hi - lo)) - 1;
        }
    }
}

/// Sets exactly bits `a..b`.
pub(crate) fn fill_range(words: &mut [u64], a: usize, b: usize) {
    for (wi, w) in words.iter_mut().enumerate() {
        let (lo, hi) = (wi * 64, wi * 64 + 64);
        let (s, e) = (a.max(lo), b.min(hi));
        *w = if s >= e {
            0
        } else if e - s == 64 {
            u64::MAX
        } else {
            ((1u64 << (e - s)) - 1) << (s - lo)
        };
    }
}

/// `out = set & !resident` (bit rows of the same length).
pub(crate) fn diff_resident(set: &[u64], resident: &[u64], out: &mut [u64]) {
    for ((o, &s), &r) in out.iter_mut().zip(set).zip(resident) {
        *o = s & !r;
    }
}

/// Clears every bit of `set` from index `n` on: what stays are keys `0..n`.
pub(crate) fn keep_first(set: &mut [u64], n: usize) {
    let (w, b) = (n / 64, n % 64);
    if w >= set.len() {
        return;
    }
    set[w] &= (1u64 << b) - 1;
    set[w + 1..].fill(0);
}

/// `out = set & !loaded; loaded |= set`; returns `|out|`.
pub(crate) fn and_not_update(set: &[u64], loaded: &mut [u64], out: &mut [u64]) -> u64 {
    let mut n = 0;
    for ((s, l), o) in set.iter().zip(loaded.iter_mut()).zip(out.iter_mut()) {
        *o = s & !*l;
        *l |= s;
        n += u64::from(o.count_ones());
    }
    n
}
