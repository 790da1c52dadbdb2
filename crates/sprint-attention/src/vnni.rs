//! A score-GEMM kernel for AVX-512 VNNI (`vpdpbusd`) without a generic tile loop: the keys of
//! a head are packed once into panels of 16 keys, and each tile of [`ROWS`] queries x
//! [`PANELS`] panels keeps its 32-bit sums in registers over the whole depth (32, 64 or 128
//! in the models here), so a block of queries is a few loops over the panels with no packing
//! of the left operand and no per-call set-up.
//!
//! `vpdpbusd` multiplies four unsigned bytes of the left operand by four signed bytes of the
//! right one and adds the four products to a 32-bit lane, exactly (no saturation); the zero
//! point of the left operand is taken out at the end with each key's code sum, so every
//! score is the signed integer dot product, the same as any other exact kernel gives.
#![allow(unsafe_code)]

/// Query rows of one register tile.
const ROWS: usize = 6;
/// 16-key panels of one register tile (the packed keys are padded to a multiple of them).
const PANELS: usize = 4;
/// Keys per panel (one 512-bit register of 32-bit sums).
const LANES: usize = 16;
/// Keys per tile.
const TILE_KEYS: usize = LANES * PANELS;

/// A head's keys packed for [`scores`]: for panel `p` (keys `16p..16p + 16`) and depth group
/// `t` (codes `4t..4t + 4`), 64 bytes: key `16p + c`'s four codes at `4c`. Keys past `n` up to
/// a multiple of [`TILE_KEYS`] are zero.
pub(crate) struct VnniKeys {
    data: Vec<i8>,
    /// Sum of each key's codes (zero for the padding), for the zero-point correction.
    code_sums: Vec<i32>,
    n: usize,
    d: usize,
}

/// Whether the CPU and the instruction-set cap allow the kernel, for keys of `d` codes.
pub(crate) fn available(d: usize) -> bool {
    if d == 0 || !d.is_multiple_of(4) || crate::isa::level() != crate::isa::Level::Avx512 {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    {
        static VNNI: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *VNNI.get_or_init(|| std::is_x86_feature_detected!("avx512vnni"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

impl VnniKeys {
    /// Packs `keys` (`n x d` signed codes, row-major; `d` a multiple of 4).
    pub(crate) fn new(keys: &[i8], n: usize, d: usize) -> Self {
        assert!(
            d.is_multiple_of(4) && d > 0,
            "depth {d} not a multiple of 4"
        );
        assert_eq!(keys.len(), n * d, "keys length");
        let padded = n.div_ceil(TILE_KEYS) * TILE_KEYS;
        let groups = d / 4;
        let mut data = vec![0i8; padded * d];
        for (j, key) in keys.chunks_exact(d).enumerate() {
            let (p, c) = (j / LANES, j % LANES);
            for t in 0..groups {
                let at = (p * groups + t) * LANES * 4 + 4 * c;
                data[at..at + 4].copy_from_slice(&key[4 * t..4 * t + 4]);
            }
        }
        let mut code_sums = vec![0i32; padded];
        for (s, key) in code_sums.iter_mut().zip(keys.chunks_exact(d)) {
            *s = key.iter().map(|&x| i32::from(x)).sum();
        }
        Self {
            data,
            code_sums,
            n,
            d,
        }
    }

    /// Keys packed.
    pub(crate) fn n(&self) -> usize {
        self.n
    }
}

/// `out[r * cols + j] = sum_l (lhs[r * d + l] - zero_points[r]) * k[j * d + l]` for the
/// `m = lhs.len() / d` rows and the first `cols <= n` keys. The caller must have checked
/// [`available`] for `keys`' depth.
pub(crate) fn scores(
    lhs: &[u8],
    zero_points: &[u8],
    keys: &VnniKeys,
    cols: usize,
    out: &mut [i32],
) {
    let d = keys.d;
    let m = lhs.len() / d;
    assert_eq!(lhs.len(), m * d, "lhs length");
    assert_eq!(zero_points.len(), m, "zero points");
    assert!(cols <= keys.n, "{cols} columns of {} keys", keys.n);
    assert_eq!(out.len(), m * cols, "output length");
    assert!(available(d), "the VNNI kernel is not available");
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `available` detected AVX-512 (F, BW, VL, DQ) and VNNI; the lengths the
    // kernel indexes by are asserted above.
    unsafe {
        scores_avx512(lhs, zero_points, keys, cols, out)
    }
}

/// See [`scores`]: tiles of [`ROWS`] rows x [`TILE_KEYS`] keys (fewer rows at the bottom).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")]
fn scores_avx512(lhs: &[u8], zero_points: &[u8], keys: &VnniKeys, cols: usize, out: &mut [i32]) {
    let m = zero_points.len();
    for k0 in (0..cols).step_by(TILE_KEYS) {
        let mut r0 = 0;
        while r0 < m {
            let t = Tile { r0, k0, cols };
            // SAFETY: as for `scores` (features enabled here; rows `r0..r0 + rows` exist).
            unsafe {
                match m - r0 {
                    1 => tile::<1>(lhs, zero_points, keys, t, out),
                    2 => tile::<2>(lhs, zero_points, keys, t, out),
                    3 => tile::<3>(lhs, zero_points, keys, t, out),
                    4 => tile::<4>(lhs, zero_points, keys, t, out),
                    5 => tile::<5>(lhs, zero_points, keys, t, out),
                    _ => tile::<ROWS>(lhs, zero_points, keys, t, out),
                }
            }
            r0 += ROWS.min(m - r0);
        }
    }
}

/// Where a register tile sits: its first row and key, and the output's columns.
#[derive(Clone, Copy)]
struct Tile {
    r0: usize,
    k0: usize,
    cols: usize,
}

/// One tile of `R` rows from `t.r0` and [`TILE_KEYS`] keys from `t.k0` (stored up to
/// `t.cols`). Requires: rows `t.r0..t.r0 + R` exist, `t.k0 < t.cols <= keys.n`, and the
/// features of [`scores_avx512`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")]
#[inline]
unsafe fn tile<const R: usize>(
    lhs: &[u8],
    zero_points: &[u8],
    keys: &VnniKeys,
    t: Tile,
    out: &mut [i32],
) {
    use std::arch::x86_64::*;
    let (d, groups) = (keys.d, keys.d / 4);
    let p0 = t.k0 / LANES;
    let mut acc = [[_mm512_setzero_si512(); PANELS]; R];
    // SAFETY (whole body): the panels `p0..p0 + PANELS` lie inside `keys.data` (padded to a
    // multiple of the tile), the rows' codes inside `lhs`, and every store below is masked to
    // the columns `< t.cols` of rows inside `out`.
    unsafe {
        let b = keys.data.as_ptr().add(p0 * groups * LANES * 4);
        let a = lhs.as_ptr().add(t.r0 * d);
        for g in 0..groups {
            let mut bv = [_mm512_setzero_si512(); PANELS];
            for (p, v) in bv.iter_mut().enumerate() {
                *v = _mm512_loadu_si512(b.add(((p * groups) + g) * LANES * 4).cast());
            }
            for (r, row) in acc.iter_mut().enumerate() {
                let av = _mm512_set1_epi32(a.add(r * d + 4 * g).cast::<i32>().read_unaligned());
                for (acc, &bv) in row.iter_mut().zip(&bv) {
                    *acc = _mm512_dpbusd_epi32(*acc, av, bv);
                }
            }
        }
        for (r, row) in acc.iter().enumerate() {
            let zp = _mm512_set1_epi32(i32::from(zero_points[t.r0 + r]));
            let dst = out.as_mut_ptr().add((t.r0 + r) * t.cols);
            for (p, &v) in row.iter().enumerate() {
                let k = t.k0 + p * LANES;
                if k >= t.cols {
                    break;
                }
                let sums = _mm512_loadu_si512(keys.code_sums.as_ptr().add(k).cast());
                let s = _mm512_sub_epi32(v, _mm512_mullo_epi32(zp, sums));
                let left = t.cols - k;
                let mask: __mmask16 = if left >= LANES {
                    0xffff
                } else {
                    (1u16 << left) - 1
                };
                _mm512_mask_storeu_epi32(dst.add(k), mask, s);
            }
        }
    }
}

/// Keys whose weight planes are built at a time (on the stack).
const VPU_CHUNK: usize = 256;

/// Whether [`vpu_accumulate`] serves value rows of `d` codes on this CPU.
pub(crate) fn vpu_available(d: usize) -> bool {
    d.is_multiple_of(32) && available(d)
}

/// The V-PU's integer sums `acc[l] += sum_t weights[t] * v8[keys[t] * d + l]` (`d =
/// acc.len()`), exactly, four keys per instruction: each weight (below 2^24) is split into
/// three byte planes, each plane's bytes of four keys multiply the four keys' codes of one
/// element in one `vpdpbusd` lane, and the planes' 32-bit sums are combined as `p0 + 2^8 p1
/// + 2^16 p2` in 64 bits (the top plane only where a group has a weight of 2^16 or more).
/// Every sum is an integer, so the result is the one the plain loop gives. Requires
/// [`vpu_available`] for `d`, `weights.len() == keys.len()`, each key's row inside `v8`.
pub(crate) fn vpu_accumulate(keys: &[u32], weights: &[u32], v8: &[i8], acc: &mut [i64]) {
    let d = acc.len();
    assert!(vpu_available(d), "the VNNI V-PU is not available for d {d}");
    assert_eq!(keys.len(), weights.len(), "one weight per key");
    #[cfg(target_arch = "x86_64")]
    for (kc, wc) in keys.chunks(VPU_CHUNK).zip(weights.chunks(VPU_CHUNK)) {
        // SAFETY: `vpu_available` detected AVX-512 and VNNI.
        unsafe { vpu_chunk(kc, wc, v8, acc) }
    }
}

/// The planes' products of [`vpu_chunk`] at one vector width (`$w` codes per register):
/// for each `$w`-element slice of the rows, every group of four keys is interleaved so that
/// lane `L`, dword `i` of `u[x]` holds element `16L + 4x + i` of the four keys, and each
/// plane's four weight bytes multiply it in one instruction.
#[cfg(target_arch = "x86_64")]
macro_rules! vpu_planes {
    ($w:expr, $vt:ty, $zero:ident, $load:ident, $lo8:ident, $hi8:ident, $lo16:ident,
     $hi16:ident, $set1:ident, $dp:ident, $store:ident,
     ($keys:expr, $v8:expr, $acc:expr, $planes:expr, $groups:expr)) => {{
        let (keys, v8, acc, planes, groups) = ($keys, $v8, $acc, $planes, $groups);
        let (n, d) = (keys.len(), acc.len());
        let dword = |plane: &[u8; VPU_CHUNK], g: usize| {
            i32::from_le_bytes(plane[4 * g..4 * g + 4].try_into().expect("four bytes"))
        };
        for c in (0..d).step_by($w) {
            let mut sums: [[$vt; 4]; 3] = [[$zero(); 4]; 3];
            for g in 0..groups {
                // Keys past the last reuse its row with weight 0.
                let row = |i: usize| {
                    let j = keys[(4 * g + i).min(n - 1)] as usize;
                    // SAFETY: every key is below the rows of `v8` (checked by the caller)
                    // and `c + $w <= d`.
                    unsafe { $load(v8.as_ptr().add(j * d + c).cast()) }
                };
                let (r0, r1, r2, r3) = (row(0), row(1), row(2), row(3));
                let (t0, t1, t2, t3) = ($lo8(r0, r1), $hi8(r0, r1), $lo8(r2, r3), $hi8(r2, r3));
                let u = [$lo16(t0, t2), $hi16(t0, t2), $lo16(t1, t3), $hi16(t1, t3)];
                let used = if dword(&planes[2], g) == 0 { 2 } else { 3 };
                for (p, plane_sums) in sums.iter_mut().enumerate().take(used) {
                    let b = $set1(dword(&planes[p], g));
                    for (sum, &ux) in plane_sums.iter_mut().zip(&u) {
                        *sum = $dp(*sum, b, ux);
                    }
                }
            }
            let mut lanes = [[[0i32; $w / 4]; 4]; 3];
            for (l, s) in lanes.iter_mut().zip(&sums) {
                for (dst, &v) in l.iter_mut().zip(s) {
                    // SAFETY: `$w / 4` i32 lanes into an array of as many.
                    unsafe { $store(dst.as_mut_ptr().cast(), v) };
                }
            }
            for x in 0..4 {
                for lane in 0..$w / 4 {
                    let e = c + 16 * (lane / 4) + 4 * x + lane % 4;
                    acc[e] += i64::from(lanes[0][x][lane])
                        + (i64::from(lanes[1][x][lane]) << 8)
                        + (i64::from(lanes[2][x][lane]) << 16);
                }
            }
        }
    }};
}

/// [`vpu_accumulate`] of at most [`VPU_CHUNK`] keys (whose products cannot overflow the
/// planes' 32-bit sums: `4 * 255 * 128` per instruction, 64 instructions).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")]
fn vpu_chunk(keys: &[u32], weights: &[u32], v8: &[i8], acc: &mut [i64]) {
    use std::arch::x86_64::*;
    let n = keys.len();
    let groups = n.div_ceil(4);
    // Byte `t` of plane `p`: byte `p` of weight `t` (0 past the last key).
    let mut planes = [[0u8; VPU_CHUNK]; 3];
    let mut any = _mm512_setzero_si512();
    for s in (0..n).step_by(16) {
        let mask: __mmask16 = if n - s >= 16 {
            0xffff
        } else {
            (1u16 << (n - s)) - 1
        };
        // SAFETY: the masked load reads weights `s..min(s + 16, n)` only; the stores write
        // bytes `s..s + 16 <= VPU_CHUNK` of each plane.
        unsafe {
            let w = _mm512_maskz_loadu_epi32(mask, weights.as_ptr().add(s).cast());
            any = _mm512_or_si512(any, w);
            for (p, plane) in planes.iter_mut().enumerate() {
                let shift = _mm512_set1_epi32(8 * p as i32);
                let bytes = _mm512_cvtepi32_epi8(_mm512_srlv_epi32(w, shift));
                _mm_storeu_si128(plane.as_mut_ptr().add(s).cast(), bytes);
            }
        }
    }
    assert!(
        (_mm512_reduce_or_epi32(any) as u32) < 1 << 24,
        "weights of at most 24 bits"
    );
    let d = acc.len();
    // Every key's row, checked once; the loads below read inside it.
    let rows = v8.len() / d;
    assert!(
        keys.iter().fold(0, |m, &j| m.max(j)) < rows as u32,
        "a key past the value rows"
    );
    if d.is_multiple_of(64) {
        vpu_planes!(
            64,
            __m512i,
            _mm512_setzero_si512,
            _mm512_loadu_si512,
            _mm512_unpacklo_epi8,
            _mm512_unpackhi_epi8,
            _mm512_unpacklo_epi16,
            _mm512_unpackhi_epi16,
            _mm512_set1_epi32,
            _mm512_dpbusd_epi32,
            _mm512_storeu_si512,
            (keys, v8, acc, &planes, groups)
        );
    } else {
        vpu_planes!(
            32,
            __m256i,
            _mm256_setzero_si256,
            _mm256_loadu_si256,
            _mm256_unpacklo_epi8,
            _mm256_unpackhi_epi8,
            _mm256_unpacklo_epi16,
            _mm256_unpackhi_epi16,
            _mm256_set1_epi32,
            _mm256_dpbusd_epi32,
            _mm256_storeu_si256,
            (keys, v8, acc, &planes, groups)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic stream of pseudo-random numbers (a linear congruential generator).
    fn numbers(mut state: u64) -> impl FnMut() -> u32 {
        move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as u32
        }
    }

    /// Plain signed i32 dot products.
    fn reference(q: &[i32], k: &[i8], m: usize, cols: usize, d: usize) -> Vec<i32> {
        let mut out = vec![0; m * cols];
        for r in 0..m {
            for j in 0..cols {
                out[r * cols + j] = (0..d).map(|l| q[r * d + l] * i32::from(k[j * d + l])).sum();
            }
        }
        out
    }

    #[test]
    fn matches_plain_dot_products() {
        if !available(64) {
            return;
        }
        let mut next = numbers(9u64);
        for d in [32usize, 64, 128, 4, 12] {
            for (m, n) in [(1, 1), (7, 37), (64, 256), (13, 129), (5, 600), (64, 64)] {
                // Full ranges: unsigned 0..=255 on the left, -128..=127 on the right, with
                // the extremes present.
                let lhs: Vec<u8> = (0..m * d)
                    .map(|i| if i % 11 == 0 { 255 } else { next() as u8 })
                    .collect();
                let k: Vec<i8> = (0..n * d)
                    .map(|i| if i % 7 == 0 { -128 } else { next() as i8 })
                    .collect();
                let zps: Vec<u8> = (0..m).map(|r| [128, 0, 255, 37][r % 4]).collect();
                let q: Vec<i32> = lhs
                    .iter()
                    .enumerate()
                    .map(|(i, &x)| i32::from(x) - i32::from(zps[i / d]))
                    .collect();
                let packed = VnniKeys::new(&k, n, d);
                for cols in [n, n / 2, 1] {
                    let mut got = vec![i32::MIN; m * cols];
                    scores(&lhs, &zps, &packed, cols, &mut got);
                    assert_eq!(
                        got,
                        reference(&q, &k, m, cols, d),
                        "m {m} n {n} cols {cols} d {d}"
                    );
                }
            }
        }
    }

    #[test]
    fn vpu_matches_the_plain_sums() {
        if !vpu_available(32) {
            return;
        }
        let mut next = numbers(21u64);
        for d in [32usize, 64, 128] {
            let n_rows = 300;
            let v8: Vec<i8> = (0..n_rows * d)
                .map(|i| if i % 13 == 0 { -128 } else { next() as i8 })
                .collect();
            for len in [0usize, 1, 3, 4, 5, 17, 255, 256, 257, 700] {
                let keys: Vec<u32> = (0..len).map(|_| next() % n_rows as u32).collect();
                // Weights of every size up to 2^24 - 1, the top plane set in some groups.
                let weights: Vec<u32> = (0..len)
                    .map(|t| match t % 5 {
                        0 => (1 << 24) - 1,
                        1 => 1 << 16,
                        2 => next() % 256,
                        _ => next() % (1 << 16),
                    })
                    .collect();
                let mut want = vec![7i64; d];
                for (&j, &w) in keys.iter().zip(&weights) {
                    for l in 0..d {
                        want[l] += i64::from(w) * i64::from(v8[j as usize * d + l]);
                    }
                }
                let mut got = vec![7i64; d];
                vpu_accumulate(&keys, &weights, &v8, &mut got);
                assert_eq!(got, want, "d {d}, {len} keys");
            }
        }
    }
}
