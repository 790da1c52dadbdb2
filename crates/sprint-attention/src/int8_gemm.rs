//! Exact integer score GEMMs (`q . k` of small signed integers, 32-bit sums) on the `rten-gemm`
//! crate's int8 kernels (AVX-512 VNNI / AVX2 on x86-64, dot-product instructions on Arm).
//!
//! The kernels multiply unsigned 8-bit left operands by signed 8-bit right operands. A signed
//! query code `q` is stored as `q + zero_point` (unsigned) with that zero point declared, so the
//! kernel subtracts `zero_point * sum(k)` and the result is the signed dot product, exactly:
//! integer sums do not depend on the order of accumulation, so every thread count and every
//! kernel gives the same scores.
#![allow(unsafe_code)]

use rten_gemm::{
    GemmExecutor, GemmInputA, GemmInputB, GemmUninitOptions, PackedBMatrix, QuantParams,
};
use rten_tensor::Matrix;

use crate::vnni::{self, VnniKeys};

/// A head's keys (`n` rows of `d` signed codes) packed once for every query block: all of
/// them, and for causal heads also the prefixes of every multiple of a step, so that a block
/// whose queries see only the first keys multiplies only those.
pub(crate) struct PackedKeys {
    /// The packed prefixes' columns, increasing; the last is `n`.
    cols: Vec<usize>,
    /// `(columns, the first columns keys packed)` for `rten-gemm`, one per entry of `cols`;
    /// empty when the VNNI kernel serves (its one packing serves every prefix).
    packs: Vec<(usize, PackedBMatrix<i8>)>,
    /// The keys packed for the VNNI kernel, where the CPU has it ([`crate::vnni`]).
    vnni: Option<VnniKeys>,
    n: usize,
    d: usize,
}

thread_local! {
    /// The int8 GEMM executor of this thread (the kernel is chosen by CPU features, the same
    /// on every thread, so keys packed on one thread serve all).
    static EXEC: GemmExecutor<u8, i8, i32> = GemmExecutor::default();
}

/// Whether the int8 kernels are exact for left operands up to `max_lhs` (unsigned, after the
/// zero-point shift) and right operands of magnitude up to `max_rhs`. Kernels without a
/// 32-bit dot-product instruction (AVX2 without VNNI) add pairs of products in saturating
/// 16-bit lanes, which is exact only while `2 * max_lhs * max_rhs < 2^15`.
pub(crate) fn exact_for(max_lhs: u32, max_rhs: u32) -> bool {
    if crate::isa::level() == crate::isa::Level::Baseline {
        // The int8 kernels are wide-vector code too: a baseline run uses the f32 GEMMs.
        return false;
    }
    !EXEC.with(|e| e.may_saturate()) || 2 * max_lhs * max_rhs < 1 << 15
}

impl PackedKeys {
    /// Packs `keys` (`n x d`, row-major) as the right operand `K^T`.
    pub(crate) fn new(keys: &[i8], n: usize, d: usize) -> Self {
        Self::with_prefixes(keys, n, d, n)
    }

    /// Packs `keys` (`n x d`, row-major) as the right operand `K^T`, and its first `c` keys for
    /// every multiple `c` of `step` below `n`.
    pub(crate) fn with_prefixes(keys: &[i8], n: usize, d: usize, step: usize) -> Self {
        assert_eq!(keys.len(), n * d, "keys length");
        let mut cols: Vec<usize> = (1..)
            .map(|i| i * step.max(1))
            .take_while(|&c| c < n)
            .collect();
        cols.push(n);
        if vnni::available(d) {
            return Self {
                cols,
                packs: Vec::new(),
                vnni: Some(VnniKeys::new(keys, n, d)),
                n,
                d,
            };
        }
        let packs = cols
            .iter()
            .map(|&c| {
                let view = Matrix::from_data([c, d], &keys[..c * d]);
                (c, EXEC.with(|e| e.prepack_b(view.transposed())))
            })
            .collect();
        Self {
            cols,
            packs,
            vnni: None,
            n,
            d,
        }
    }

    /// The fewest columns a product can have that covers the first `need` keys: the
    /// smallest packed prefix of at least `need` keys.
    pub(crate) fn columns_for(&self, need: usize) -> usize {
        self.cols
            .iter()
            .copied()
            .find(|&c| c >= need)
            .unwrap_or(self.n)
    }
}

/// `out[r * n + j] = sum_l (lhs[r * d + l] - zero_point) * k[j * d + l]` for the `m = lhs.len()
/// / d` query rows; `zero_points` holds `zero_point` once per row (scratch the caller keeps).
pub(crate) fn scores(lhs: &[u8], zero_points: &[u8], keys: &PackedKeys, out: &mut [i32]) {
    scores_cols(lhs, zero_points, keys, keys.n, out);
}

/// [`scores`] against the first `cols` keys only (`cols` one of the packed prefixes, see
/// [`PackedKeys::columns_for`]): `out` is `m x cols`, each score the same as in [`scores`].
pub(crate) fn scores_cols(
    lhs: &[u8],
    zero_points: &[u8],
    keys: &PackedKeys,
    cols: usize,
    out: &mut [i32],
) {
    let d = keys.d;
    assert!(
        keys.cols.contains(&cols),
        "a packed prefix of the requested columns"
    );
    if let Some(v) = &keys.vnni {
        debug_assert_eq!(v.n(), keys.n);
        vnni::scores(lhs, zero_points, v, cols, out);
        return;
    }
    let packed = &keys
        .packs
        .iter()
        .find(|p| p.0 == cols)
        .expect("a packed prefix of the requested columns")
        .1;
    assert_eq!(lhs.len() % d.max(1), 0, "lhs length");
    let m = lhs.len().checked_div(d).unwrap_or(0);
    assert_eq!(zero_points.len(), m, "zero points");
    assert_eq!(out.len(), m * cols, "output length");
    if m == 0 || cols == 0 {
        return;
    }
    let a = Matrix::from_data([m, d], lhs);
    let opts = GemmUninitOptions {
        a_quant: Some(QuantParams {
            zero_point: zero_points,
        }),
        ..GemmUninitOptions::default()
    };
    // `gemm_uninit` writes every element of its output.
    let dst = as_uninit(out);
    EXEC.with(|e| {
        e.gemm_uninit(
            dst,
            GemmInputA::Unpacked(a),
            GemmInputB::Packed(packed),
            opts,
        )
        .map(|_| ())
    })
    .expect("int8 score GEMM: operand shapes are checked above");
}

/// Views an initialised slice as possibly-uninitialised storage for an output parameter.
fn as_uninit(x: &mut [i32]) -> &mut [std::mem::MaybeUninit<i32>] {
    // `MaybeUninit<i32>` has the layout of `i32`; writing through it keeps the values valid.
    let len = x.len();
    let ptr = x.as_mut_ptr().cast::<std::mem::MaybeUninit<i32>>();
    // SAFETY: same pointer, length and layout; the borrow of `x` is held for the lifetime.
    unsafe { std::slice::from_raw_parts_mut(ptr, len) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_scores_match_naive_at_real_lengths() {
        if crate::isa::level() == crate::isa::Level::Baseline {
            // A baseline run never uses the int8 kernels (the f32 GEMM serves it).
            assert!(!exact_for(1, 1));
            return;
        }
        // Full-range operands where the kernel is exact for them; on kernels that add
        // products in saturating 16-bit lanes (AVX2 without VNNI), the range `exact_for`
        // accepts (the engine falls back to the f32 GEMM beyond it).
        let key_range = if exact_for(255, 127) {
            255
        } else {
            assert!(
                !exact_for(255, 65) && exact_for(255, 64),
                "16-bit lane bound"
            );
            129
        };
        for (m, n, d) in [(1, 1, 1), (3, 17, 5), (64, 4096, 64), (7, 600, 128)] {
            let q: Vec<i32> = (0..m * d).map(|i| (i as i32 * 37 % 255) - 127).collect();
            let k: Vec<i8> = (0..n * d)
                .map(|i| ((i as i32 * 91 % key_range) - key_range / 2) as i8)
                .collect();
            let lhs: Vec<u8> = q.iter().map(|&x| (x + 128) as u8).collect();
            let packed = PackedKeys::new(&k, n, d);
            let mut out = vec![0; m * n];
            scores(&lhs, &vec![128u8; m], &packed, &mut out);
            for r in 0..m {
                for j in 0..n {
                    let naive: i32 = (0..d).map(|l| q[r * d + l] * i32::from(k[j * d + l])).sum();
                    assert_eq!(out[r * n + j], naive, "m {m} n {n} d {d} ({r}, {j})");
                }
            }
        }
    }

    #[test]
    fn prefix_scores_are_the_first_columns_of_the_full_product() {
        if !exact_for(255, 127) {
            return;
        }
        let (m, n, d) = (5, 600, 64);
        let lhs: Vec<u8> = (0..m * d).map(|i| (i * 53 % 256) as u8).collect();
        let k: Vec<i8> = (0..n * d)
            .map(|i| ((i * 29 % 255) as i32 - 127) as i8)
            .collect();
        let full = PackedKeys::new(&k, n, d);
        let mut want = vec![0; m * n];
        scores(&lhs, &vec![128u8; m], &full, &mut want);
        let prefixes = PackedKeys::with_prefixes(&k, n, d, 256);
        for (need, cols) in [(1, 256), (256, 256), (257, 512), (513, 600), (600, 600)] {
            assert_eq!(prefixes.columns_for(need), cols);
            let mut got = vec![0; m * cols];
            scores_cols(&lhs, &vec![128u8; m], &prefixes, cols, &mut got);
            for r in 0..m {
                assert_eq!(
                    got[r * cols..(r + 1) * cols],
                    want[r * n..r * n + cols],
                    "row {r}"
                );
            }
        }
    }
}
