//! The schedule of a run: the soft mask's temperature and the items of each step.

use sprint_assets::data;

use super::options::LearnOptions;

/// Temperature of step `step` of `total`: geometric from `t_start` to `t_end`.
pub fn temperature(o: &LearnOptions, step: usize, total: usize) -> f64 {
    if total <= 1 {
        return o.t_end;
    }
    let f = step as f64 / (total - 1) as f64;
    o.t_start * (o.t_end / o.t_start).powf(f)
}

/// The items of step `step` over `n` items (`n / batch_size` steps per epoch, rounded
/// up): a seeded permutation of the items per epoch, cut into batches.
pub(super) fn step_items(o: &LearnOptions, n: usize, step: usize) -> Vec<usize> {
    let per_epoch = n.div_ceil(o.batch_size);
    let epoch = step / per_epoch;
    let perm = data::permutation(
        n,
        o.seed ^ 0xe90c_0000 ^ (epoch as u64).wrapping_mul(0x9e37_79b9),
    );
    let b = step % per_epoch;
    perm[b * o.batch_size..((b + 1) * o.batch_size).min(n)].to_vec()
}
