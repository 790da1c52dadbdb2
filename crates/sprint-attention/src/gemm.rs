//! Safe, single-threaded wrappers around the `gemm` crate's optimised kernels.
//!
//! Single-threaded on purpose: callers parallelise over fixed blocks with rayon, so every
//! output element is computed by the same code path whatever the thread count.
#![allow(unsafe_code)]

use gemm::Parallelism;

/// Strides (in elements) of the right-hand operand viewed as a `k x n` matrix.
#[derive(Clone, Copy)]
struct RhsLayout {
    row_stride: usize,
    col_stride: usize,
}

/// `c[m x n] = a[m x k] * rhs[k x n]` (or `c += ...` when `accumulate`), `a` and `c`
/// row-major, `rhs` read from `b` with `layout`.
#[allow(clippy::too_many_arguments)]
fn matmul(
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
    m: usize,
    n: usize,
    k: usize,
    layout: RhsLayout,
    accumulate: bool,
) {
    assert_eq!(a.len(), m * k, "lhs length");
    assert_eq!(b.len(), n * k, "rhs length");
    assert_eq!(c.len(), m * n, "dst length");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c.fill(0.0);
        }
        return;
    }
    // SAFETY: the slices are exactly m*n, m*k and k*n long (asserted above). The strides
    // address dst(i,j) = c[i*n + j], lhs(i,l) = a[i*k + l] and
    // rhs(l,j) = b[l*row_stride + j*col_stride], where (row_stride, col_stride) is (n, 1) or
    // (1, k), so every index is below k*n. `c` is uniquely borrowed and does not alias.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.as_ptr(),
            1,
            k as isize,
            b.as_ptr(),
            layout.col_stride as isize,
            layout.row_stride as isize,
            if accumulate { 1.0f32 } else { 0.0f32 },
            1.0f32,
            false,
            false,
            false,
            Parallelism::None,
        );
    }
}

/// `c[m x n] = a[m x k] * b[n x k]^T`, all row-major.
pub fn matmul_nt(a: &[f32], b: &[f32], c: &mut [f32], m: usize, n: usize, k: usize) {
    matmul(
        a,
        b,
        c,
        m,
        n,
        k,
        RhsLayout {
            row_stride: 1,
            col_stride: k,
        },
        false,
    );
}

/// `c[m x n] += a[m x k] * b[n x k]^T`, all row-major (for example `c` pre-filled with a
/// bias row per output row).
pub fn matmul_nt_acc(a: &[f32], b: &[f32], c: &mut [f32], m: usize, n: usize, k: usize) {
    matmul(
        a,
        b,
        c,
        m,
        n,
        k,
        RhsLayout {
            row_stride: 1,
            col_stride: k,
        },
        true,
    );
}

/// `c[m x n] += a[m x k] * b[k x n]`, all row-major (for example `c` pre-filled with a
/// bias row per output row).
pub fn matmul_nn_acc(a: &[f32], b: &[f32], c: &mut [f32], m: usize, n: usize, k: usize) {
    matmul(
        a,
        b,
        c,
        m,
        n,
        k,
        RhsLayout {
            row_stride: n,
            col_stride: 1,
        },
        true,
    );
}

/// `c[m x n] = a[m x k] * b[k x n]`, all row-major.
pub fn matmul_nn(a: &[f32], b: &[f32], c: &mut [f32], m: usize, n: usize, k: usize) {
    matmul(
        a,
        b,
        c,
        m,
        n,
        k,
        RhsLayout {
            row_stride: n,
            col_stride: 1,
        },
        false,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::synth::uniform_values as data;

    /// `matmul_nn(_acc)` on `W^T` gives the bits of `matmul_nt(_acc)` on `W` wherever the
    /// `gemm` crate takes its general (packed) path, as the linear layers rely on: more
    /// than one row and output, more than two inputs, more than 256 outputs in the block.
    #[test]
    fn transposed_rhs_same_bits() {
        for &m in &[2usize, 5, 17, 48, 49, 100, 128] {
            for &n in &[3usize, 17, 64, 96, 384, 1152] {
                for &k in &[3usize, 32, 100, 384, 1536] {
                    if m * n <= 256 {
                        continue;
                    }
                    let a = data(m * k, 1);
                    let w = data(n * k, 2);
                    let wt: Vec<f32> = (0..k * n).map(|i| w[(i % n) * k + i / n]).collect();
                    let bias = data(n, 3);
                    let mut c1: Vec<f32> = (0..m).flat_map(|_| bias.clone()).collect();
                    let mut c2 = c1.clone();
                    matmul_nt_acc(&a, &w, &mut c1, m, n, k);
                    matmul_nn_acc(&a, &wt, &mut c2, m, n, k);
                    let mut d1 = vec![0.0; m * n];
                    let mut d2 = vec![0.0; m * n];
                    matmul_nt(&a, &w, &mut d1, m, n, k);
                    matmul_nn(&a, &wt, &mut d2, m, n, k);
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&c1), bits(&c2), "acc m={m} n={n} k={k}");
                    assert_eq!(bits(&d1), bits(&d2), "m={m} n={n} k={k}");
                }
            }
        }
    }

    #[test]
    fn matches_naive() {
        let (m, n, k) = (5, 7, 3);
        let a: Vec<f32> = (0..m * k).map(|i| i as f32 * 0.5 - 3.0).collect();
        let b: Vec<f32> = (0..n * k).map(|i| (i % 5) as f32 - 2.0).collect();
        let mut c = vec![0.0; m * n];
        matmul_nt(&a, &b, &mut c, m, n, k);
        for i in 0..m {
            for j in 0..n {
                let r: f32 = (0..k).map(|l| a[i * k + l] * b[j * k + l]).sum();
                assert_eq!(c[i * n + j], r);
            }
        }
        // b viewed as k x n
        let mut c2 = vec![0.0; m * n];
        let bt: Vec<f32> = (0..k * n).map(|i| b[(i % n) * k + i / n]).collect();
        matmul_nn(&a, &bt, &mut c2, m, n, k);
        assert_eq!(c, c2);
        // accumulate onto a bias
        let mut c3: Vec<f32> = (0..m * n).map(|i| (i % n) as f32).collect();
        matmul_nt_acc(&a, &b, &mut c3, m, n, k);
        for i in 0..m {
            for j in 0..n {
                assert_eq!(c3[i * n + j], c[i * n + j] + j as f32);
            }
        }
    }
}
