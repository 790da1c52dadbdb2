//! Analog non-idealities of the in-memory scoring, seeded and reproducible.
//!
//! Cell model [D]: each `K_MSB` element (4-bit signed) is held by one multi-level cell
//! pair whose conductance encodes the value. When K is written, each cell draws
//! - stuck-at-0 with probability `stuck_at_zero_rate` (reads as 0),
//! - stuck-at-1 with probability `stuck_at_one_rate` (reads as the largest level, +7),
//! - otherwise a multiplicative conductance error `w * (1 + conductance_sigma * z)`.
//!
//! Each comparator (one per bitline, i.e. per key) has a fixed input offset
//! `comparator_offset_sigma_fs * FS * z`. Each read adds bitline noise
//! `read_sigma_fs * FS * z` to every key's score. `z` are independent standard normals.
//!
//! Every draw comes from a ChaCha8 stream keyed by (seed, purpose, layer, head, index), so
//! results depend on the seed and the data only, never on the thread count.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use sprint_core::config::NoiseConfig;

/// What a random stream is used for; part of its key.
#[derive(Clone, Copy, Debug)]
#[repr(u64)]
pub enum Purpose {
    /// Cell programming (stuck-at, conductance variation) of one KV head.
    Cells = 1,
    /// Comparator offsets of one KV head.
    Offsets = 2,
    /// Read noise of one query.
    Read = 3,
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A random stream keyed by the seed and the coordinates of what it randomises.
pub fn stream(seed: u64, purpose: Purpose, layer: usize, head: usize, index: usize) -> ChaCha8Rng {
    let mut h = splitmix(seed);
    for part in [purpose as u64, layer as u64, head as u64, index as u64] {
        h = splitmix(h ^ part);
    }
    ChaCha8Rng::seed_from_u64(h)
}

/// A standard normal draw.
pub fn normal(rng: &mut ChaCha8Rng) -> f64 {
    rng.sample::<f64, _>(StandardNormal)
}

/// The crossbar holding one KV head's `K_MSB`: effective weights and comparator offsets.
#[derive(Clone, Debug)]
pub struct Crossbar {
    /// `n_keys x d` effective weights, row-major (integers when the cells are ideal).
    pub weights: Vec<f32>,
    /// Per-key comparator offsets in score steps; empty when offsets are off.
    pub offsets: Vec<f32>,
}

/// Largest cell level a stuck-at-1 cell reads as.
pub const STUCK_AT_ONE_LEVEL: f32 = 7.0;

/// Writes `k_msb` (`n_keys x d`) into a crossbar, applying the cell non-idealities.
/// `full_scale` is the bitline full scale in score steps.
pub fn program_crossbar(
    k_msb: &[i8],
    n_keys: usize,
    noise: &NoiseConfig,
    full_scale: f64,
    seed: u64,
    layer: usize,
    kv_head: usize,
) -> Crossbar {
    let mut weights: Vec<f32> = k_msb.iter().map(|&w| f32::from(w)).collect();
    let cells_ideal = noise.conductance_sigma == 0.0
        && noise.stuck_at_zero_rate == 0.0
        && noise.stuck_at_one_rate == 0.0;
    if !cells_ideal {
        let mut rng = stream(seed, Purpose::Cells, layer, kv_head, 0);
        let (p0, p1) = (
            f64::from(noise.stuck_at_zero_rate),
            f64::from(noise.stuck_at_one_rate),
        );
        let sigma = f64::from(noise.conductance_sigma);
        for w in weights.iter_mut() {
            let u: f64 = if p0 + p1 > 0.0 { rng.random() } else { 1.0 };
            if u < p0 {
                *w = 0.0;
            } else if u < p0 + p1 {
                *w = STUCK_AT_ONE_LEVEL;
            } else if sigma > 0.0 {
                *w = (f64::from(*w) * (1.0 + sigma * normal(&mut rng))) as f32;
            }
        }
    }
    let offsets = if noise.comparator_offset_sigma_fs > 0.0 {
        let mut rng = stream(seed, Purpose::Offsets, layer, kv_head, 0);
        let s = f64::from(noise.comparator_offset_sigma_fs) * full_scale;
        (0..n_keys).map(|_| (s * normal(&mut rng)) as f32).collect()
    } else {
        Vec::new()
    };
    Crossbar { weights, offsets }
}

/// The 1-bit comparators of one read: decides which keys are kept.
#[derive(Clone, Copy, Debug)]
pub struct Comparator {
    /// Threshold `Th'` in score steps (`-inf` keeps everything).
    pub threshold: f64,
    /// Read-noise sigma in score steps (0 = noiseless).
    pub read_sigma: f64,
    /// Keys farther than this many sigmas from the threshold are decided without a draw.
    pub tail_sigmas: f64,
}

impl Comparator {
    /// Sets in `out` (packed words, already holding the visible keys) only the visible keys
    /// whose analog score reaches the threshold. `scores[j]` is key `j`'s noiseless score in
    /// steps, `offsets` the crossbar's comparator offsets (or empty); `rng` the read's noise
    /// stream (`None`, or `read_sigma == 0`, means a noiseless read).
    pub fn decide(
        &self,
        scores: &[f32],
        offsets: &[f32],
        out: &mut [u64],
        mut rng: Option<&mut ChaCha8Rng>,
    ) {
        if self.threshold == f64::NEG_INFINITY {
            return;
        }
        let t = self.threshold;
        let noisy = rng.is_some() && self.read_sigma > 0.0;
        if !noisy && offsets.is_empty() {
            decide_noiseless(scores, t, out);
            return;
        }
        let band = self.tail_sigmas * self.read_sigma;
        for (wi, word) in out.iter_mut().enumerate() {
            let mut w = *word;
            let mut keep = 0u64;
            while w != 0 {
                let b = w.trailing_zeros() as usize;
                w &= w - 1;
                let j = wi * 64 + b;
                let mut s = f64::from(scores[j]);
                if let Some(o) = offsets.get(j) {
                    s += f64::from(*o);
                }
                let kept = match rng.as_deref_mut() {
                    Some(r) if self.read_sigma > 0.0 && (s - t).abs() <= band => {
                        s + self.read_sigma * normal(r) >= t
                    }
                    _ => s >= t,
                };
                keep |= u64::from(kept) << b;
            }
            *word = keep;
        }
    }
}

/// Noiseless comparator over whole words: `s >= t` evaluated in f32 against the smallest f32
/// not below `t`, which decides every f32 score exactly as the f64 comparison would.
fn decide_noiseless(scores: &[f32], t: f64, out: &mut [u64]) {
    let mut t32 = t as f32;
    if f64::from(t32) < t {
        t32 = t32.next_up();
    }
    for (wi, word) in out.iter_mut().enumerate() {
        if *word == 0 {
            continue;
        }
        let lo = wi * 64;
        let chunk = &scores[lo..(lo + 64).min(scores.len())];
        let mut keep = 0u64;
        for (b, &s) in chunk.iter().enumerate() {
            keep |= u64::from(s >= t32) << b;
        }
        *word &= keep;
    }
}

/// Standard normal cumulative distribution function.
pub fn normal_cdf(x: f64) -> f64 {
    0.5 * erfc(-x / std::f64::consts::SQRT_2)
}

/// Complementary error function (W. J. Cody's rational Chebyshev approximation via
/// the Numerical Recipes `erfcc` form; relative error below 1.2e-7).
pub fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let a = normal(&mut stream(1, Purpose::Read, 0, 0, 5));
        let b = normal(&mut stream(1, Purpose::Read, 0, 0, 5));
        let c = normal(&mut stream(1, Purpose::Read, 0, 0, 6));
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn cdf_values() {
        assert!((normal_cdf(0.0) - 0.5).abs() < 1e-7);
        assert!((normal_cdf(1.0) - 0.841_344_746).abs() < 1e-6);
        assert!((normal_cdf(-2.0) - 0.022_750_132).abs() < 1e-6);
    }

    #[test]
    fn ideal_crossbar_is_exact() {
        let k = [-8i8, 7, 0, 3];
        let c = program_crossbar(&k, 2, &NoiseConfig::default(), 100.0, 0, 0, 0);
        assert_eq!(c.weights, vec![-8.0, 7.0, 0.0, 3.0]);
        assert!(c.offsets.is_empty());
    }
}
