//! The 1-bit analog comparators of one crossbar read: which keys survive in-memory pruning.
//!
//! Every bitline integrates the score of one key; its comparator compares it with the
//! reference `Th'` (the threshold mapped into score steps, minus the margin). With
//! [`MsbBiasCorrection::QuerySum`](sprint_core::config::MsbBiasCorrection) the reference of
//! each read is lowered by the expected contribution of the unseen `K_LSB` bits,
//! `lsb_mean * sum(q_dac)` steps, so the comparison is unbiased. A noisy read adds
//! `read_sigma * z_j` to key `j`'s score, with `z_j` a counter-based normal of the read's
//! stream (the same draw whatever keys are evaluated).

use crate::noise::counter_normal;

/// The comparators of one read.
#[derive(Clone, Copy, Debug)]
pub struct Comparator {
    /// Reference `Th'` in score steps for this read (`-inf` keeps everything), bias
    /// correction included.
    pub threshold: f64,
    /// Read-noise sigma in score steps (0 = noiseless).
    pub read_sigma: f64,
    /// Keys farther than this many sigmas from the threshold are decided without their draw.
    pub tail_sigmas: f64,
    /// Key of the read's noise stream (see [`crate::noise::stream_key`]).
    pub noise_key: u64,
}

impl Comparator {
    /// The analog score of key `j` as the bitline holds it: `score + offset + noise`, in
    /// steps (used by SPRINT without recompute, which reads the scores out).
    #[inline(always)]
    pub fn analog_score(&self, score: f64, offsets: &[f32], j: usize) -> f64 {
        let mut s = score;
        if let Some(o) = offsets.get(j) {
            s += f64::from(*o);
        }
        if self.read_sigma > 0.0 {
            s += self.read_sigma * counter_normal(self.noise_key, j as u64);
        }
        s
    }

    /// Clears in `out` (packed words holding the visible keys) every key whose analog score
    /// stays below the reference. `scores[j]` is key `j`'s noiseless score in steps,
    /// `offsets` the crossbar's comparator offsets (or empty).
    #[inline(always)]
    pub fn decide(&self, scores: &[f32], offsets: &[f32], out: &mut [u64]) {
        if self.threshold == f64::NEG_INFINITY {
            return;
        }
        if self.read_sigma == 0.0 && offsets.is_empty() {
            decide_noiseless(scores, self.threshold, out);
            return;
        }
        self.decide_each(|j| f64::from(scores[j]), offsets, out);
    }

    /// For a noiseless read without offsets, the integer reference: an integer score `s`
    /// passes exactly when `s >= ceil(Th')`. `None` when noise or offsets are on, or when
    /// every key passes (`Th' = -inf`).
    #[inline(always)]
    pub fn integer_threshold(&self, offsets: &[f32]) -> Option<i32> {
        (self.read_sigma == 0.0 && offsets.is_empty() && self.threshold != f64::NEG_INFINITY).then(
            || {
                self.threshold
                    .ceil()
                    .clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i32
            },
        )
    }

    /// [`Self::decide`] for integer scores (an ideal crossbar read by the int8 GEMM).
    #[inline(always)]
    pub fn decide_int(&self, scores: &[i32], offsets: &[f32], out: &mut [u64]) {
        if self.threshold == f64::NEG_INFINITY {
            return;
        }
        if let Some(t) = self.integer_threshold(offsets) {
            and_ge(scores, t, out);
            return;
        }
        self.decide_each(|j| f64::from(scores[j]), offsets, out);
    }

    /// The key-by-key rule with offsets and read noise (drawn only near the reference).
    #[inline(always)]
    fn decide_each(&self, score: impl Fn(usize) -> f64, offsets: &[f32], out: &mut [u64]) {
        let t = self.threshold;
        let band = self.tail_sigmas * self.read_sigma;
        for (wi, word) in out.iter_mut().enumerate() {
            let mut w = *word;
            let mut keep = 0u64;
            while w != 0 {
                let b = w.trailing_zeros() as usize;
                w &= w - 1;
                let j = wi * 64 + b;
                let mut s = score(j);
                if let Some(o) = offsets.get(j) {
                    s += f64::from(*o);
                }
                let kept = if self.read_sigma > 0.0 && (s - t).abs() <= band {
                    s + self.read_sigma * counter_normal(self.noise_key, j as u64) >= t
                } else {
                    s >= t
                };
                keep |= u64::from(kept) << b;
            }
            *word = keep;
        }
    }
}

/// Bits `b` of the 64-key chunk where `chunk[b] >= t` (vectorised to mask compares).
#[inline(always)]
pub(crate) fn ge_bits<T: Copy + PartialOrd>(chunk: &[T], t: T) -> u64 {
    let mut bits = 0u64;
    if let Ok(full) = <&[T; 64]>::try_from(chunk) {
        // Whole-vector compares into one flag byte per key, then eight flag bytes at a time
        // gathered into their bits by one multiply: byte `i` (0 or 1) lands on bit `56 + i`
        // of `v * 0x0102_0408_1020_4080`, and the partial products below bit 56 never carry
        // into it.
        let mut flags = [0u8; 64];
        for b in 0..64 {
            flags[b] = u8::from(full[b] >= t);
        }
        for (k, eight) in flags.chunks_exact(8).enumerate() {
            let v = u64::from_le_bytes(eight.try_into().expect("eight flags"));
            bits |= (v.wrapping_mul(0x0102_0408_1020_4080) >> 56) << (8 * k);
        }
        return bits;
    }
    for (b, &s) in chunk.iter().enumerate() {
        bits |= u64::from(s >= t) << b;
    }
    bits
}

/// Clears in the packed words `out` every key whose score in `scores` is below `t`.
#[inline(always)]
pub(crate) fn and_ge<T: Copy + PartialOrd>(scores: &[T], t: T, out: &mut [u64]) {
    for (wi, word) in out.iter_mut().enumerate() {
        if *word == 0 {
            continue;
        }
        let lo = wi * 64;
        *word &= ge_bits(&scores[lo..(lo + 64).min(scores.len())], t);
    }
}

/// Noiseless comparator over whole words: `s >= t` evaluated in f32 against the smallest f32
/// not below `t`, which decides every f32 score exactly as the f64 comparison would.
#[inline(always)]
fn decide_noiseless(scores: &[f32], t: f64, out: &mut [u64]) {
    let mut t32 = t as f32;
    if f64::from(t32) < t {
        t32 = t32.next_up();
    }
    and_ge(scores, t32, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ge_bits_matches_the_bit_loop() {
        let mut state = 3u64;
        for len in [64usize, 63, 17, 1, 0] {
            for _ in 0..200 {
                let chunk: Vec<i32> = (0..len)
                    .map(|_| {
                        state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                        (state >> 40) as i32 % 9 - 4
                    })
                    .collect();
                let naive = chunk
                    .iter()
                    .enumerate()
                    .fold(0u64, |acc, (b, &x)| acc | (u64::from(x >= 0) << b));
                assert_eq!(ge_bits(&chunk, 0), naive, "len {len}");
            }
        }
    }

    #[test]
    fn noiseless_rule() {
        let c = Comparator {
            threshold: 2.5,
            read_sigma: 0.0,
            tail_sigmas: 8.0,
            noise_key: 0,
        };
        let scores = [1.0f32, 2.5, 3.0, 2.4999];
        let mut out = [0b1111u64];
        c.decide(&scores, &[], &mut out);
        assert_eq!(out[0], 0b0110);
        let mut out = [0b1011u64];
        c.decide(&scores, &[0.0, 0.0, 0.0, 1.0], &mut out);
        assert_eq!(out[0], 0b1010);
    }

    #[test]
    fn noisy_decision_uses_the_same_draw_as_the_score() {
        let c = Comparator {
            threshold: 0.0,
            read_sigma: 1.0,
            tail_sigmas: 8.0,
            noise_key: 99,
        };
        let scores = vec![0.0f32; 256];
        let mut out = [u64::MAX; 4];
        c.decide(&scores, &[], &mut out);
        for j in 0..256 {
            let kept = out[j / 64] >> (j % 64) & 1 == 1;
            assert_eq!(kept, c.analog_score(0.0, &[], j) >= 0.0, "key {j}");
        }
    }
}
