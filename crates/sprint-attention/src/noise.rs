//! Analog non-idealities of the in-memory scoring, seeded and reproducible.
//!
//! Cell model (docs/non-idealities.md): a signed `K_MSB` level `w` in `[-W, W-1]`,
//! `W = 2^(k_msb_bits-1)`, is held by a differential pair of cells with conductances
//! normalised to `G_on = 1`, `G_off = 1 / on_off_ratio`:
//! `G+ = G_off + max(w, 0) / W * (1 - G_off)`, `G- = G_off + max(-w, 0) / W * (1 - G_off)`.
//! When K is written each cell independently draws
//! - stuck at its lowest conductance `G_off` with probability `stuck_at_zero_rate`,
//! - stuck at `G_on` with probability `stuck_at_one_rate`,
//! - otherwise the programmed value times `(1 + conductance_sigma * z)`,
//!
//! and the column loses `ir_drop_far_end * r / (d - 1)` of row `r`'s current (first-order IR
//! drop). The bitline reads the effective weight `W * (G+ - G-) / (1 - G_off)`. The digital
//! transposed read of `K_MSB` used by the recompute senses the stuck cells too:
//! `clamp(round(W * (G+ - G-) / (1 - G_off)), -W, W-1)` over the stuck-at pattern alone (the
//! variation stays within the level's read margin).
//!
//! Each comparator (one per bitline, i.e. per key) has a fixed input offset
//! `comparator_offset_sigma_fs * FS * z`. Each read adds bitline noise
//! `read_sigma_fs * FS * z` to every key's score. `z` are independent standard normals.
//!
//! Cell and offset draws come from a ChaCha8 stream keyed by (seed, purpose, layer, head);
//! the read noise of key `j` in the read of query `i` is a counter-based draw keyed by
//! (seed, layer, head, i, j), so it does not depend on which keys are evaluated or in which
//! order. Results depend on the seed and the data only, never on the thread count.

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

/// The key of a random stream: the seed and the coordinates of what it randomises.
pub fn stream_key(seed: u64, purpose: Purpose, layer: usize, head: usize, index: usize) -> u64 {
    let mut h = splitmix(seed);
    for part in [purpose as u64, layer as u64, head as u64, index as u64] {
        h = splitmix(h ^ part);
    }
    h
}

/// A random stream keyed by the seed and the coordinates of what it randomises.
pub fn stream(seed: u64, purpose: Purpose, layer: usize, head: usize, index: usize) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(stream_key(seed, purpose, layer, head, index))
}

/// A standard normal draw.
pub fn normal(rng: &mut ChaCha8Rng) -> f64 {
    rng.sample::<f64, _>(StandardNormal)
}

/// The standard normal draw number `counter` of the stream `key` (Box-Muller on two
/// 53-bit uniforms from a hash of the pair): the same value whoever asks and in which order.
pub fn counter_normal(key: u64, counter: u64) -> f64 {
    let a = splitmix(key ^ splitmix(counter.wrapping_mul(2)));
    let b = splitmix(key ^ splitmix(counter.wrapping_mul(2) | 1));
    // u1 in (0, 1], u2 in [0, 1).
    let u1 = ((a >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64);
    let u2 = (b >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// The crossbar holding one KV head's `K_MSB`: effective weights, comparator offsets and the
/// levels its transposed read returns.
#[derive(Clone, Debug)]
pub struct Crossbar {
    /// `n_keys x d` effective weights in `K_MSB` steps, row-major (the exact levels when the
    /// cells are ideal).
    pub weights: Vec<f32>,
    /// Per-key comparator offsets in score steps; empty when offsets are off.
    pub offsets: Vec<f32>,
    /// `n_keys x d` levels of the digital transposed read when stuck-at cells change them;
    /// empty when the read returns the programmed levels.
    pub read_back: Vec<i8>,
}

/// Conductances of one differential pair for level `w` (of `W = levels_half`), `G_on = 1`.
fn pair(w: i8, levels_half: f64, g_off: f64) -> (f64, f64) {
    let span = 1.0 - g_off;
    let wf = f64::from(w);
    (
        g_off + wf.max(0.0) / levels_half * span,
        g_off + (-wf).max(0.0) / levels_half * span,
    )
}

/// Writes `k_msb` (`n_keys x d`, levels of `k_msb_bits` bits) into a crossbar, applying the
/// cell non-idealities. `full_scale` is the bitline full scale in score steps.
#[allow(clippy::too_many_arguments)]
pub fn program_crossbar(
    k_msb: &[i8],
    n_keys: usize,
    k_msb_bits: u32,
    noise: &NoiseConfig,
    full_scale: f64,
    seed: u64,
    layer: usize,
    kv_head: usize,
) -> Crossbar {
    let d = k_msb.len().checked_div(n_keys).unwrap_or(0);
    let mut weights: Vec<f32> = k_msb.iter().map(|&w| f32::from(w)).collect();
    let mut read_back = Vec::new();
    if !noise.cells_ideal() {
        let mut rng = stream(seed, Purpose::Cells, layer, kv_head, 0);
        let (p0, p1) = (
            f64::from(noise.stuck_at_zero_rate),
            f64::from(noise.stuck_at_one_rate),
        );
        let stuck = p0 + p1 > 0.0;
        let sigma = f64::from(noise.conductance_sigma);
        let g_off = if noise.on_off_ratio.is_finite() {
            1.0 / f64::from(noise.on_off_ratio)
        } else {
            0.0
        };
        let half = f64::from(1u32 << (k_msb_bits - 1));
        let (lo, hi) = (-half, half - 1.0);
        let alpha = f64::from(noise.ir_drop_far_end);
        let mut rb_changed = false;
        let mut rb: Vec<i8> = Vec::with_capacity(if stuck { k_msb.len() } else { 0 });
        for (idx, (w, &level)) in weights.iter_mut().zip(k_msb).enumerate() {
            let (mut gp, mut gn) = pair(level, half, g_off);
            if stuck {
                for g in [&mut gp, &mut gn] {
                    let u: f64 = rng.random();
                    if u < p0 {
                        *g = g_off;
                    } else if u < p0 + p1 {
                        *g = 1.0;
                    }
                }
                let sensed = (half * (gp - gn) / (1.0 - g_off)).round().clamp(lo, hi) as i8;
                rb_changed |= sensed != level;
                rb.push(sensed);
            }
            if sigma > 0.0 {
                gp *= 1.0 + sigma * normal(&mut rng);
                gn *= 1.0 + sigma * normal(&mut rng);
            }
            let row = idx % d.max(1);
            let ir = if d > 1 {
                1.0 - alpha * row as f64 / (d - 1) as f64
            } else {
                1.0
            };
            *w = (half * (gp - gn) / (1.0 - g_off) * ir) as f32;
        }
        if rb_changed {
            read_back = rb;
        }
    }
    let offsets = if noise.comparator_offset_sigma_fs > 0.0 {
        let mut rng = stream(seed, Purpose::Offsets, layer, kv_head, 0);
        let s = f64::from(noise.comparator_offset_sigma_fs) * full_scale;
        (0..n_keys).map(|_| (s * normal(&mut rng)) as f32).collect()
    } else {
        Vec::new()
    };
    Crossbar {
        weights,
        offsets,
        read_back,
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
        let c = program_crossbar(&k, 2, 4, &NoiseConfig::default(), 100.0, 0, 0, 0);
        assert_eq!(c.weights, vec![-8.0, 7.0, 0.0, 3.0]);
        assert!(c.offsets.is_empty());
        assert!(c.read_back.is_empty());
        // A finite ON/OFF ratio alone cancels in the differential pair.
        let n = NoiseConfig {
            on_off_ratio: 4.5,
            ..NoiseConfig::default()
        };
        let c = program_crossbar(&k, 2, 4, &n, 100.0, 0, 0, 0);
        assert_eq!(c.weights, vec![-8.0, 7.0, 0.0, 3.0]);
    }

    #[test]
    fn zero_levels_vary_with_finite_on_off_ratio() {
        let k = vec![0i8; 4096];
        let mut n = NoiseConfig {
            conductance_sigma: 0.1,
            ..NoiseConfig::default()
        };
        let c = program_crossbar(&k, 64, 4, &n, 100.0, 0, 0, 0);
        assert!(
            c.weights.iter().all(|&w| w == 0.0),
            "G_off = 0: zeros stay exact"
        );
        n.on_off_ratio = 10.0;
        let c = program_crossbar(&k, 64, 4, &n, 100.0, 0, 0, 0);
        // w = 8 (G+ - G-) / (1 - 0.1) with G+- = 0.1 (1 + 0.1 z): sigma = 8 * 0.01 * sqrt(2) / 0.9.
        let var: f64 =
            c.weights.iter().map(|&w| f64::from(w).powi(2)).sum::<f64>() / k.len() as f64;
        let expect = 8.0 * 0.01 * 2f64.sqrt() / 0.9;
        assert!(
            (var.sqrt() / expect - 1.0).abs() < 0.05,
            "{} vs {expect}",
            var.sqrt()
        );
    }

    #[test]
    fn stuck_cells_change_the_read_back() {
        let k: Vec<i8> = (0..4096).map(|i| (i % 16) as i8 - 8).collect();
        let n = NoiseConfig {
            stuck_at_one_rate: 0.05,
            ..NoiseConfig::default()
        };
        let c = program_crossbar(&k, 64, 4, &n, 100.0, 3, 0, 0);
        assert_eq!(c.read_back.len(), k.len());
        let changed = c.read_back.iter().zip(&k).filter(|(a, b)| a != b).count();
        // Each of two cells sticks with p = 0.05; a stuck cell at its own level changes nothing.
        let frac = changed as f64 / k.len() as f64;
        assert!((0.05..0.12).contains(&frac), "{frac}");
        for (w, r) in c.weights.iter().zip(&c.read_back) {
            assert_eq!(w.round().clamp(-8.0, 7.0) as i8, *r);
        }
    }

    #[test]
    fn ir_drop_attenuates_far_rows() {
        let k = vec![4i8; 64];
        let n = NoiseConfig {
            ir_drop_far_end: 0.1,
            ..NoiseConfig::default()
        };
        let c = program_crossbar(&k, 1, 4, &n, 100.0, 0, 0, 0);
        assert_eq!(c.weights[0], 4.0);
        assert!((c.weights[63] - 3.6).abs() < 1e-6);
    }

    #[test]
    fn counter_normals_are_standard() {
        let n = 200_000u64;
        let (mut s, mut s2) = (0f64, 0f64);
        for j in 0..n {
            let z = counter_normal(42, j);
            s += z;
            s2 += z * z;
        }
        let mean = s / n as f64;
        let var = s2 / n as f64 - mean * mean;
        assert!(mean.abs() < 0.01, "{mean}");
        assert!((var - 1.0).abs() < 0.01, "{var}");
        assert_eq!(counter_normal(7, 3), counter_normal(7, 3));
        assert_ne!(counter_normal(7, 3), counter_normal(7, 4));
    }
}
