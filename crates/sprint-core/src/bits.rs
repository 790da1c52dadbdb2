//! Bit-packed masks: one bit per key, 64 keys per word, least significant bit first.

/// Indices of the set bits of packed words (bit `i` = bit `i % 64` of word `i / 64`), ascending.
#[inline(always)]
pub fn iter_ones(words: &[u64]) -> impl Iterator<Item = usize> + '_ {
    words.iter().enumerate().flat_map(|(wi, &w)| {
        let mut w = w;
        std::iter::from_fn(move || {
            if w == 0 {
                None
            } else {
                let b = w.trailing_zeros() as usize;
                w &= w - 1;
                Some(wi * 64 + b)
            }
        })
    })
}

/// A fixed-length vector of bits, packed 64 to a `u64` word (bit `i` is bit `i % 64` of word `i / 64`).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct BitVec {
    len: usize,
    words: Vec<u64>,
}

/// Number of `u64` words needed to hold `len` bits.
pub fn words_for(len: usize) -> usize {
    len.div_ceil(64)
}

impl BitVec {
    /// All-zero vector of `len` bits.
    pub fn zeros(len: usize) -> Self {
        Self {
            len,
            words: vec![0; words_for(len)],
        }
    }

    /// All-one vector of `len` bits.
    pub fn ones(len: usize) -> Self {
        let mut v = Self {
            len,
            words: vec![u64::MAX; words_for(len)],
        };
        v.clear_tail();
        v
    }

    /// Builds a vector from packed words; bits past `len` are cleared.
    /// Returns `None` when `words.len()` does not match `len`.
    pub fn from_words(len: usize, words: Vec<u64>) -> Option<Self> {
        if words.len() != words_for(len) {
            return None;
        }
        let mut v = Self { len, words };
        v.clear_tail();
        Some(v)
    }

    /// Builds a vector of `len` bits with the given indices set. Panics if an index is `>= len`.
    pub fn from_indices(len: usize, indices: impl IntoIterator<Item = usize>) -> Self {
        let mut v = Self::zeros(len);
        for i in indices {
            v.set(i, true);
        }
        v
    }

    fn clear_tail(&mut self) {
        let rem = self.len % 64;
        if rem != 0
            && let Some(last) = self.words.last_mut()
        {
            *last &= (1u64 << rem) - 1;
        }
    }

    /// Length in bits.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the vector has no bits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Packed words (read-only).
    pub fn words(&self) -> &[u64] {
        &self.words
    }

    /// Bit `i`. Panics if `i >= len`.
    pub fn get(&self, i: usize) -> bool {
        assert!(i < self.len, "bit index {i} out of range {}", self.len);
        (self.words[i / 64] >> (i % 64)) & 1 == 1
    }

    /// Sets bit `i` to `value`. Panics if `i >= len`.
    pub fn set(&mut self, i: usize, value: bool) {
        assert!(i < self.len, "bit index {i} out of range {}", self.len);
        let mask = 1u64 << (i % 64);
        if value {
            self.words[i / 64] |= mask;
        } else {
            self.words[i / 64] &= !mask;
        }
    }

    /// Number of set bits.
    pub fn count_ones(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Indices of the set bits, ascending.
    pub fn iter_ones(&self) -> impl Iterator<Item = usize> + '_ {
        iter_ones(&self.words)
    }

    /// Little-endian byte image, `ceil(len / 8)` bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out: Vec<u8> = self.words.iter().flat_map(|w| w.to_le_bytes()).collect();
        out.truncate(self.len.div_ceil(8));
        out
    }

    /// Inverse of [`BitVec::to_bytes`]; `None` if `bytes.len() != ceil(len / 8)`.
    pub fn from_bytes(len: usize, bytes: &[u8]) -> Option<Self> {
        if bytes.len() != len.div_ceil(8) {
            return None;
        }
        let mut words = vec![0u64; words_for(len)];
        for (i, &b) in bytes.iter().enumerate() {
            words[i / 8] |= u64::from(b) << (8 * (i % 8));
        }
        Self::from_words(len, words)
    }
}

/// A row-major matrix of bits: `rows` bit vectors of `cols` bits each, stored contiguously.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct BitMatrix {
    rows: usize,
    cols: usize,
    words_per_row: usize,
    words: Vec<u64>,
}

impl BitMatrix {
    /// All-zero `rows x cols` matrix.
    pub fn zeros(rows: usize, cols: usize) -> Self {
        let words_per_row = words_for(cols);
        Self {
            rows,
            cols,
            words_per_row,
            words: vec![0; rows * words_per_row],
        }
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns (bits per row).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Packed words of row `r`.
    pub fn row_words(&self, r: usize) -> &[u64] {
        &self.words[r * self.words_per_row..(r + 1) * self.words_per_row]
    }

    /// Mutable packed words of row `r`. Callers must keep bits past `cols` clear.
    pub fn row_words_mut(&mut self, r: usize) -> &mut [u64] {
        &mut self.words[r * self.words_per_row..(r + 1) * self.words_per_row]
    }

    /// Row `r` as an owned [`BitVec`].
    pub fn row(&self, r: usize) -> BitVec {
        BitVec::from_words(self.cols, self.row_words(r).to_vec()).expect("row width matches")
    }

    /// Replaces row `r`. Panics if the widths differ.
    pub fn set_row(&mut self, r: usize, row: &BitVec) {
        assert_eq!(row.len(), self.cols, "row width");
        self.row_words_mut(r).copy_from_slice(row.words());
    }

    /// Bit at (`r`, `c`).
    pub fn get(&self, r: usize, c: usize) -> bool {
        assert!(c < self.cols && r < self.rows);
        (self.row_words(r)[c / 64] >> (c % 64)) & 1 == 1
    }

    /// Sets the bit at (`r`, `c`).
    pub fn set(&mut self, r: usize, c: usize, value: bool) {
        assert!(c < self.cols && r < self.rows);
        let mask = 1u64 << (c % 64);
        let w = &mut self.row_words_mut(r)[c / 64];
        if value {
            *w |= mask;
        } else {
            *w &= !mask;
        }
    }

    /// Set bits in row `r`.
    pub fn row_count_ones(&self, r: usize) -> usize {
        self.row_words(r)
            .iter()
            .map(|w| w.count_ones() as usize)
            .sum()
    }

    /// Indices of set bits in row `r`, ascending.
    pub fn row_ones(&self, r: usize) -> impl Iterator<Item = usize> + '_ {
        iter_ones(self.row_words(r))
    }

    /// Total set bits.
    pub fn count_ones(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip_and_tail_cleared() {
        let v = BitVec::from_indices(70, [0, 5, 63, 64, 69]);
        assert_eq!(v.count_ones(), 5);
        let b = v.to_bytes();
        assert_eq!(b.len(), 9);
        assert_eq!(BitVec::from_bytes(70, &b).unwrap(), v);
        assert_eq!(v.iter_ones().collect::<Vec<_>>(), vec![0, 5, 63, 64, 69]);
        assert_eq!(BitVec::ones(70).count_ones(), 70);
    }

    #[test]
    fn matrix_rows() {
        let mut m = BitMatrix::zeros(3, 130);
        m.set(1, 129, true);
        m.set(1, 2, true);
        assert_eq!(m.row_ones(1).collect::<Vec<_>>(), vec![2, 129]);
        assert_eq!(m.row(1).count_ones(), 2);
        assert_eq!(m.count_ones(), 2);
    }
}
