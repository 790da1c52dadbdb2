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
