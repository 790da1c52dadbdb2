//! Small dense kernels used per kept key: dot products and scaled accumulation.

/// Integer dot product of int8 codes held in `i16` (so the multiply-add maps to one
/// SIMD instruction), accumulated in `i32`.
#[inline(always)]
pub fn dot_i16(a: &[i16], b: &[i16]) -> i32 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0i32; 16];
    let mut ca = a.chunks_exact(16);
    let mut cb = b.chunks_exact(16);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for l in 0..16 {
            acc[l] += i32::from(x[l]) * i32::from(y[l]);
        }
    }
    let tail: i32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| i32::from(*x) * i32::from(*y))
        .sum();
    acc.iter().sum::<i32>() + tail
}

/// Float dot product with eight partial sums.
#[inline(always)]
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0f32; 8];
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    acc.iter().sum::<f32>() + tail
}

/// `acc += w * v` in `f32`.
#[inline(always)]
pub fn axpy_f32(acc: &mut [f32], w: f32, v: &[f32]) {
    debug_assert_eq!(acc.len(), v.len());
    for (a, x) in acc.iter_mut().zip(v) {
        *a += w * x;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dots_match_naive() {
        let a: Vec<i16> = (0..37).map(|i| i * 7 % 255 - 127).collect();
        let b: Vec<i16> = (0..37).map(|i| i * 13 % 255 - 127).collect();
        let naive: i32 = a
            .iter()
            .zip(&b)
            .map(|(x, y)| i32::from(*x) * i32::from(*y))
            .sum();
        assert_eq!(dot_i16(&a, &b), naive);
        let af: Vec<f32> = a.iter().map(|&x| f32::from(x)).collect();
        let bf: Vec<f32> = b.iter().map(|&x| f32::from(x)).collect();
        assert_eq!(dot_f32(&af, &bf), naive as f32);
    }
}
