//! Compaction of a row's kept keys: from a 64-key word of the kept mask and the row's scores,
//! append the kept key indices and their scores to dense arrays (the recompute's list).
//!
//! Two implementations give the same output: a bit-by-bit loop for any CPU, and an AVX-512
//! one that compresses 16 lanes at a time. The AVX-512 one compresses into a register and
//! stores all 16 lanes (`vpcompressd` straight to memory is microcoded and slow on some
//! cores), so the destination arrays carry [`SLACK`] spare elements past the kept count.
#![allow(unsafe_code)]

/// Spare elements the destination arrays need past the last kept key.
pub(crate) const SLACK: usize = 16;

/// How a block's row loop compacts kept keys (chosen per instruction-set copy in
/// [`crate::simd`]).
pub(crate) trait Compact {
    /// Appends the keys `lo + b` for the set bits `b` of `word`, ascending, to `keys` and
    /// their scores `chunk[b]` to `scores`, starting at index `len`; returns the new length.
    /// `chunk` is the row's scores from key `lo` (at most 64 of them; every set bit of `word`
    /// indexes into it). `keys` and `scores` must hold `len + popcount(word) + SLACK`
    /// elements.
    fn append(
        word: u64,
        lo: usize,
        chunk: &[i32],
        keys: &mut [u32],
        scores: &mut [i32],
        len: usize,
    ) -> usize;

    /// Bits `b` of a chunk of at most 64 integer scores where `chunk[b] >= t`.
    #[inline(always)]
    fn ge_bits(chunk: &[i32], t: i32) -> u64 {
        crate::comparator::ge_bits(chunk, t)
    }

    /// The softmax's deferred weights of the score codes `codes` (`weights` as long): the
    /// entry `max - code` of `table` (its last entry for larger differences), and their sum,
    /// as [`crate::softmax::FixedSoftmax::deferred_weights`] looks them up. `codes` must not
    /// be empty.
    #[inline(always)]
    fn weights(table: &[u32], codes: &[i32], weights: &mut [u32]) -> u64 {
        let max = codes.iter().copied().fold(i32::MIN, i32::max);
        let last = table.len() - 1;
        let mut sum = 0u64;
        for (w, &c) in weights.iter_mut().zip(codes) {
            *w = table[((max - c) as u32 as usize).min(last)];
            sum += u64::from(*w);
        }
        sum
    }

    /// Clears in the packed words `out` every key whose score in `scores` is below `t`.
    #[inline(always)]
    fn and_ge(scores: &[i32], t: i32, out: &mut [u64]) {
        for (wi, word) in out.iter_mut().enumerate() {
            if *word == 0 {
                continue;
            }
            let lo = wi * 64;
            *word &= Self::ge_bits(&scores[lo..(lo + 64).min(scores.len())], t);
        }
    }
}

/// Bit by bit (every CPU).
pub(crate) struct Scalar;

impl Compact for Scalar {
    #[inline(always)]
    fn append(
        word: u64,
        lo: usize,
        chunk: &[i32],
        keys: &mut [u32],
        scores: &mut [i32],
        mut len: usize,
    ) -> usize {
        let mut w = word;
        while w != 0 {
            let b = w.trailing_zeros() as usize;
            w &= w - 1;
            keys[len] = (lo + b) as u32;
            scores[len] = chunk[b];
            len += 1;
        }
        len
    }
}

/// 16 lanes at a time with AVX-512 compress. Only [`crate::simd`]'s AVX-512 copy of the row
/// loop may use it (it runs after the CPU features were detected).
#[cfg(target_arch = "x86_64")]
pub(crate) struct Avx512;

#[cfg(target_arch = "x86_64")]
impl Compact for Avx512 {
    #[inline(always)]
    fn append(
        word: u64,
        lo: usize,
        chunk: &[i32],
        keys: &mut [u32],
        scores: &mut [i32],
        len: usize,
    ) -> usize {
        let kept = word.count_ones() as usize;
        assert!(
            keys.len() >= len + kept + SLACK && scores.len() >= len + kept + SLACK,
            "compaction buffers too short"
        );
        assert!(
            chunk.len() >= 64 || word >> chunk.len() == 0,
            "kept bits past the row's scores"
        );
        // SAFETY: this type is only used by `simd::rows_avx512`, which is entered after
        // detecting avx512f; the bounds the intrinsics rely on are asserted above.
        unsafe { append_avx512(word, lo, chunk, keys, scores, len) }
    }

    #[inline(always)]
    fn weights(table: &[u32], codes: &[i32], weights: &mut [u32]) -> u64 {
        assert!(
            !codes.is_empty() && weights.len() == codes.len() && table.len() < 1 << 30,
            "weights: one per code, a table"
        );
        // SAFETY: as for `append`; every gathered index is at most `table.len() - 1`.
        unsafe { weights_avx512(table, codes, weights) }
    }

    #[inline(always)]
    fn ge_bits(chunk: &[i32], t: i32) -> u64 {
        match <&[i32; 64]>::try_from(chunk) {
            // SAFETY: as for `append`; the array holds the 64 lanes read.
            Ok(full) => unsafe { ge_bits_avx512(full, t) },
            Err(_) => crate::comparator::ge_bits(chunk, t),
        }
    }
}

/// [`Compact::ge_bits`] of a full chunk: four 16-lane compares into mask registers.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn ge_bits_avx512(chunk: &[i32; 64], t: i32) -> u64 {
    use std::arch::x86_64::*;
    let tv = _mm512_set1_epi32(t);
    let mut bits = 0u64;
    for g in 0..4 {
        // SAFETY: lanes 16g..16g+16 lie inside the 64-element array.
        let v = unsafe { _mm512_loadu_epi32(chunk.as_ptr().add(16 * g)) };
        bits |= u64::from(_mm512_cmpge_epi32_mask(v, tv)) << (16 * g);
    }
    bits
}

/// [`Compact::weights`] sixteen codes at a time: a vector maximum, then gathers from the
/// table (which fits the L1 cache). Weights are below 2^31, so sixteen 32-bit lanes add
/// 2^16 of them without overflow before the sum moves to 64 bits. Requires: `codes` not
/// empty, `weights` as long, `table` not empty and shorter than 2^30 entries.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn weights_avx512(table: &[u32], codes: &[i32], weights: &mut [u32]) -> u64 {
    use std::arch::x86_64::*;
    let n = codes.len();
    let mask_of = |s: usize| -> __mmask16 {
        if n - s >= 16 {
            0xffff
        } else {
            (1u16 << (n - s)) - 1
        }
    };
    let mut maxv = _mm512_set1_epi32(i32::MIN);
    for s in (0..n).step_by(16) {
        // SAFETY: the masked load reads codes `s..min(s + 16, n)` only.
        let c = unsafe { _mm512_maskz_loadu_epi32(mask_of(s), codes.as_ptr().add(s)) };
        maxv = _mm512_mask_max_epi32(maxv, mask_of(s), maxv, c);
    }
    let max = _mm512_set1_epi32(_mm512_reduce_max_epi32(maxv));
    let last = _mm512_set1_epi32(table.len() as i32 - 1);
    let (mut sum, mut lanes, mut rounds) = (0u64, _mm512_setzero_si512(), 0u32);
    for s in (0..n).step_by(16) {
        let m = mask_of(s);
        // SAFETY: masked loads and stores touch elements `s..min(s + 16, n)` of `codes` and
        // `weights`; the gathered indices are clamped to `table.len() - 1` (as unsigned, so
        // a difference past `i32::MAX` clamps too), and masked-off lanes gather nothing.
        unsafe {
            let c = _mm512_maskz_loadu_epi32(m, codes.as_ptr().add(s));
            let u = _mm512_min_epu32(_mm512_sub_epi32(max, c), last);
            let w = _mm512_mask_i32gather_epi32::<4>(
                _mm512_setzero_si512(),
                m,
                u,
                table.as_ptr().cast(),
            );
            _mm512_mask_storeu_epi32(weights.as_mut_ptr().add(s).cast(), m, w);
            lanes = _mm512_add_epi32(lanes, w);
        }
        rounds += 1;
        if rounds == 1 << 16 {
            sum += lane_sum(lanes);
            (lanes, rounds) = (_mm512_setzero_si512(), 0);
        }
    }
    sum + lane_sum(lanes)
}

/// Sum of sixteen unsigned 32-bit lanes, in 64 bits.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
fn lane_sum(v: std::arch::x86_64::__m512i) -> u64 {
    use std::arch::x86_64::*;
    let lo = _mm512_cvtepu32_epi64(_mm512_castsi512_si256(v));
    let hi = _mm512_cvtepu32_epi64(_mm512_extracti64x4_epi64::<1>(v));
    _mm512_reduce_add_epi64(_mm512_add_epi64(lo, hi)) as u64
}

/// See [`Avx512`]. Requires: `keys`/`scores` hold `len + popcount(word) + 16` elements, and
/// every set bit `b` of `word` is below `chunk.len()`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn append_avx512(
    word: u64,
    lo: usize,
    chunk: &[i32],
    keys: &mut [u32],
    scores: &mut [i32],
    mut len: usize,
) -> usize {
    use std::arch::x86_64::*;
    let lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    for g in 0..4 {
        let m = (word >> (16 * g)) as u16;
        if m == 0 {
            continue;
        }
        let base = _mm512_set1_epi32((lo + 16 * g) as i32);
        let idx = _mm512_add_epi32(base, lanes);
        // SAFETY: only lanes set in `m` are read (masked loads do not touch the others), and
        // each is a set bit of `word`, below `chunk.len()`.
        let sc = unsafe { _mm512_maskz_loadu_epi32(m, chunk.as_ptr().add(16 * g)) };
        let ck = _mm512_maskz_compress_epi32(m, idx);
        let cs = _mm512_maskz_compress_epi32(m, sc);
        // SAFETY: `len + 16 <= len + popcount(word) + SLACK <= len()` of both arrays, so the
        // full 16-lane stores stay in bounds (lanes past the kept count are overwritten
        // later or ignored).
        unsafe {
            _mm512_storeu_si512(keys.as_mut_ptr().add(len).cast(), ck);
            _mm512_storeu_si512(scores.as_mut_ptr().add(len).cast(), cs);
        }
        len += m.count_ones() as usize;
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run<C: Compact>(words: &[u64], scores: &[i32]) -> (Vec<u32>, Vec<i32>) {
        let total: usize = words.iter().map(|w| w.count_ones() as usize).sum();
        let mut keys = vec![0u32; total + SLACK];
        let mut out = vec![0i32; total + SLACK];
        let mut len = 0;
        for (wi, &w) in words.iter().enumerate() {
            let lo = wi * 64;
            let chunk = &scores[lo..(lo + 64).min(scores.len())];
            len = C::append(w, lo, chunk, &mut keys, &mut out, len);
        }
        keys.truncate(len);
        out.truncate(len);
        (keys, out)
    }

    #[test]
    fn implementations_agree_with_the_mask() {
        let n: usize = 4096 + 37;
        let scores: Vec<i32> = (0..n as i32).map(|j| j * 7 - 3000).collect();
        let mut state = 11u64;
        let words: Vec<u64> = (0..n.div_ceil(64))
            .map(|wi| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                let w = state ^ (state >> 29);
                let valid = n - wi * 64;
                if valid >= 64 {
                    w
                } else {
                    w & ((1u64 << valid) - 1)
                }
            })
            .collect();
        let (keys, out) = run::<Scalar>(&words, &scores);
        let expect: Vec<u32> = (0..n as u32)
            .filter(|&j| words[j as usize / 64] >> (j % 64) & 1 == 1)
            .collect();
        assert_eq!(keys, expect);
        assert!(
            keys.iter()
                .zip(&out)
                .all(|(&j, &s)| scores[j as usize] == s)
        );
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx512f") {
            assert_eq!(run::<Avx512>(&words, &scores), (keys.clone(), out));
            for wi in 0..words.len() {
                let chunk = &scores[wi * 64..(wi * 64 + 64).min(n)];
                for t in [-3000, 0, 7, 30000] {
                    assert_eq!(Avx512::ge_bits(chunk, t), Scalar::ge_bits(chunk, t));
                }
            }
        }
    }

    #[test]
    fn weight_lookups_agree() {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx512f") {
            let table: Vec<u32> = (0..3000u32).map(|u| (3000 - u) * 43).chain([0]).collect();
            let mut state = 5u64;
            for n in [1usize, 15, 16, 17, 100, 840, 4096] {
                let codes: Vec<i32> = (0..n)
                    .map(|t| {
                        state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                        match t % 9 {
                            0 => -(1 << 20),
                            1 => 1 << 20,
                            _ => (state >> 40) as i32 % 5000 - 2500,
                        }
                    })
                    .collect();
                let (mut a, mut b) = (vec![0u32; n], vec![0u32; n]);
                let sa = Scalar::weights(&table, &codes, &mut a);
                let sb = Avx512::weights(&table, &codes, &mut b);
                assert_eq!((sa, &a), (sb, &b), "{n} codes");
            }
        }
    }
}
