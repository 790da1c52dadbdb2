//! A3's pruning decision (Ham et al., HPCA 2020, arXiv 2002.10941; patent application US
//! 2020/0311182): approximate candidate selection, exact scores for the candidates, the
//! post-scoring cut, exact softmax and weighted sum on the survivors.
//!
//! Each column `j` of a head's key matrix is sorted once. For query `q`, a greedy search runs
//! `M` iterations ([`iterations`]); each takes the largest remaining component product
//! `q_j k_ij` (a max pointer per column, walking the sorted column from the end that gives the
//! largest products) and the smallest remaining one (a min pointer per column), and adds each
//! to its key's estimated score. The keys whose estimated score is positive are the
//! candidates. Their exact scores are computed, and a candidate stays in the softmax when its
//! weight relative to the largest candidate's, `exp(l - l_max)`, is at least
//! `post_score_ratio`.
//!
//! Codes: this project's 8-bit symmetric per-head codes of Q and K (the same as SPRINT's exact
//! recompute and the `leopard` variant; A3's own bit widths are in its paper, not reachable
//! here), so every product and estimated score is an exact integer. Ties between equal
//! products are taken in column order, then key order (a max pointer's column walks equal
//! codes in key order). Padding keys are not in the sorted columns; under causal masking a
//! query's search runs over its visible keys only.
//!
//! The search is computed without walking it step by step, with the same result: the `M`
//! products the max pointers take are the `M` largest of the query's visible products in that
//! order, so they are every product above the `M`-th largest value `tau` and the first ties at
//! `tau`. `tau` comes from a binary search over the product values, counting per column from
//! a histogram of the visible keys' codes; the taken products are then read group by group
//! from the sorted columns. The min pointers are the max pointers of `-q`.
//!
//! The trace's kept set is the candidates (the keys whose exact score is computed); the
//! survivors of the cut are its softmax count; the iterations `M` are summed in
//! [`sprint_core::trace::HeadStats::candidate_iterations`].

use sprint_core::peers::A3Config;
use sprint_core::visibility::visible_limit;

use crate::block::BlockOut;
use crate::quant::{quantize, symmetric_scale};
use crate::tensor::{AttentionInput, LayerShape};

/// Largest magnitude of a code (8-bit symmetric codes, `-127..=127`).
const CODE_MAX: i32 = 127;

/// Entries of a per-column table indexed by code `v + 127` for `v` in `-127..=128`.
const TABLE: usize = 256;

/// The iterations `M` of the greedy search for a query with `n` visible keys of `d` elements:
/// `ceil(iterations_per_key * n)`, at most `n * d / 2` (so that the max and the min pointers
/// never take the same product).
pub fn iterations(iterations_per_key: f32, n: usize, d: usize) -> usize {
    let m = (f64::from(iterations_per_key) * n as f64).ceil();
    // A finite positive `m` casts exactly below 2^53; the cast saturates above.
    (m as usize).min(n * d / 2)
}

/// A KV head's keys for the search: codes, and each column's real keys sorted by code (then
/// key), with where each code's group starts.
struct SortedKeys {
    /// Codes, `n_keys x d`, row-major.
    codes: Vec<i8>,
    /// Per column `j`: the real keys sorted by (code, key), at `j * n_real ..`.
    order: Vec<u32>,
    /// Per column `j`: start in `order` of the group of code `v` at `j * TABLE + v + 127`, for
    /// `v` in `-127..=128` (code 128's entry is `n_real`).
    starts: Vec<u32>,
    /// Real (non-padding) keys.
    n_real: usize,
    /// Keys, padding included.
    n_keys: usize,
}

impl SortedKeys {
    fn new(codes: Vec<i8>, n: usize, d: usize, key_valid: Option<&Vec<bool>>) -> Self {
        let real: Vec<u32> = (0..n)
            .filter(|&j| key_valid.is_none_or(|m| m[j]))
            .map(|j| j as u32)
            .collect();
        let n_real = real.len();
        let mut order = vec![0u32; d * n_real];
        let mut starts = vec![0u32; d * TABLE];
        let mut next = [0u32; TABLE];
        for j in 0..d {
            let st = &mut starts[j * TABLE..(j + 1) * TABLE];
            for &k in &real {
                st[idx(i32::from(codes[k as usize * d + j])) + 1] += 1;
            }
            for v in 1..TABLE {
                st[v] += st[v - 1];
            }
            next.copy_from_slice(st);
            // A counting sort, stable in key order.
            let col = &mut order[j * n_real..(j + 1) * n_real];
            for &k in &real {
                let c = idx(i32::from(codes[k as usize * d + j]));
                col[next[c] as usize] = k;
                next[c] += 1;
            }
        }
        Self {
            codes,
            order,
            starts,
            n_real,
            n_keys: n,
        }
    }
}

/// `floor(t / a)` (`t.div_euclid(a)`) for `a` in `1..=127` and `|t| < 2^14` (every value
/// the search divides), by one f32 division: both operands are exact in f32, and the
/// correctly rounded quotient cannot cross an integer, since a quotient that is not an
/// integer lies at least `1/127` from one and the rounding error is below `2^-11`.
#[inline(always)]
fn floor_div(t: i32, a: i32) -> i32 {
    debug_assert!((1..=CODE_MAX).contains(&a) && t.abs() < 1 << 14);
    (t as f32 / a as f32).floor() as i32
}

/// Table index of code `v` (`-127..=128`).
#[inline(always)]
fn idx(v: i32) -> usize {
    (v + CODE_MAX) as usize
}

struct Prepared {
    q8: Vec<Vec<i8>>,
    keys: Vec<SortedKeys>,
}

fn prepare(input: &AttentionInput, shape: LayerShape) -> Prepared {
    let d = shape.head_dim;
    let q8 = (0..shape.heads)
        .map(|h| quantize(input.q.head(h), symmetric_scale(input.q.head(h))))
        .collect();
    let keys = (0..shape.kv_heads)
        .map(|h| {
            let k = input.k.head(h);
            SortedKeys::new(
                quantize(k, symmetric_scale(k)),
                shape.n_keys,
                d,
                input.key_valid.as_ref(),
            )
        })
        .collect();
    Prepared { q8, keys }
}

/// Runs A3 on every head of a layer: one [`BlockOut`] per block of
/// [`crate::head::QUERY_BLOCK`] queries of a head, in (head, block) order, in parallel on the
/// caller's rayon pool (the same bits for any thread count).
pub(crate) fn run(
    cfg: &A3Config,
    causal: bool,
    input: &AttentionInput,
    shape: LayerShape,
) -> Vec<(usize, BlockOut)> {
    let p = prepare(input, shape);
    let kernel = Kernel {
        cfg,
        causal,
        input,
        shape,
        p: &p,
    };
    super::run_blocks(&kernel, shape.heads, shape.n_queries)
}

/// A layer's blocks for [`super::run_blocks`].
type Kernel<'a> = super::LayerKernel<'a, A3Config, Prepared>;

super::block_kernel!(Kernel, Scratch, SCRATCH, block_with);

/// Per-thread buffers of a block, reused across blocks (every element read is written
/// first, so which buffers a block gets does not change its result).
#[derive(Default)]
pub(crate) struct Scratch {
    exact: Vec<f32>,
    est: Vec<i32>,
    cands: Vec<usize>,
    kept: Vec<usize>,
    logits: Vec<f32>,
    probs: Vec<f32>,
}

/// A3's post-scoring margins of a layer, the quantity its cut `post_score_ratio` thresholds:
/// for every candidate of every query (the search at `cfg`'s `iterations_per_key`), its
/// exact logit minus the largest candidate logit of its query (`<= 0`, logit units), in
/// (head, query, key) order; and the visible pairs of the layer. A ratio `T` keeps the
/// candidates whose margin is at least `ln T`, so the fraction of the visible pairs in the
/// softmax at `T` is the count of margins `>= ln T` over the visible pairs (calibrating
/// the cut to a target kept fraction). The candidates are the variant's own.
pub fn candidate_margins(
    cfg: &A3Config,
    causal: bool,
    input: &AttentionInput,
) -> crate::Result<(Vec<f32>, u64)> {
    let shape = input.validate()?;
    let (nk, d) = (shape.n_keys, shape.head_dim);
    let all = A3Config {
        post_score_ratio: 0.0,
        ..cfg.clone()
    };
    let inv = 1.0 / (d as f32).sqrt();
    let (mut margins, mut visible, mut exact) = (Vec::new(), 0u64, Vec::new());
    for (h, out) in run(&all, causal, input, shape) {
        visible += out.visible;
        let kvh = shape.kv_head_of(h);
        let rows = out.rows.clone();
        super::exact_scores(input.q.head(h), input.k.head(kvh), &rows, d, &mut exact);
        let wpr = out.masks.len() / rows.len().max(1);
        for r in 0..rows.len() {
            let ex = &exact[r * nk..(r + 1) * nk];
            let row = &out.masks[r * wpr..(r + 1) * wpr];
            let cands = (0..nk).filter(|&j| row[j / 64] >> (j % 64) & 1 == 1);
            let l_max = cands
                .clone()
                .map(|j| ex[j] * inv)
                .fold(f32::NEG_INFINITY, f32::max);
            margins.extend(cands.map(|j| ex[j] * inv - l_max));
        }
    }
    Ok((margins, visible))
}

/// Per column `j`, how many visible keys have each code or more: `ge[j * TABLE + v + 127]`
/// for `v` in `-127..=128`, kept for the keys below `limit` as the block's queries advance.
struct Histogram {
    ge: Vec<u32>,
    /// The keys counted: the real keys below this.
    limit: usize,
    /// Visible keys counted.
    n: usize,
}

impl Histogram {
    /// The counts of the real keys below `limit`.
    fn new(keys: &SortedKeys, d: usize, limit: usize, key_valid: Option<&[bool]>) -> Self {
        let mut ge = vec![0u32; d * TABLE];
        let n;
        if limit >= keys.n_keys {
            // Every real key: from the sorted columns' group starts.
            n = keys.n_real;
            for (g, s) in ge.iter_mut().zip(&keys.starts) {
                *g = keys.n_real as u32 - s;
            }
        } else {
            let mut count = vec![0u32; d * TABLE];
            let mut real = 0;
            for k in 0..limit {
                if key_valid.is_some_and(|m| !m[k]) {
                    continue;
                }
                real += 1;
                for (j, &c) in keys.codes[k * d..(k + 1) * d].iter().enumerate() {
                    count[j * TABLE + idx(i32::from(c))] += 1;
                }
            }
            n = real;
            // Codes >= v: a running sum from the top (code 128 has no keys).
            for j in 0..d {
                let mut acc = 0;
                for v in (0..TABLE).rev() {
                    acc += count[j * TABLE + v];
                    ge[j * TABLE + v] = acc;
                }
            }
        }
        Self { ge, limit, n }
    }

    /// Counts the real keys in `self.limit..limit` too.
    fn extend(&mut self, keys: &SortedKeys, d: usize, limit: usize, key_valid: Option<&[bool]>) {
        for k in self.limit..limit {
            if key_valid.is_some_and(|m| !m[k]) {
                continue;
            }
            self.n += 1;
            for (j, &c) in keys.codes[k * d..(k + 1) * d].iter().enumerate() {
                // Codes >= v for every v <= c.
                for g in &mut self.ge[j * TABLE..j * TABLE + idx(i32::from(c)) + 1] {
                    *g += 1;
                }
            }
        }
        self.limit = self.limit.max(limit);
    }

    /// Visible keys of column `j` whose product with `q` exceeds `t`.
    #[inline(always)]
    fn count_above(&self, j: usize, q: i32, t: i32) -> u32 {
        let ge = &self.ge[j * TABLE..(j + 1) * TABLE];
        if q == 0 {
            return if t < 0 { self.n as u32 } else { 0 };
        }
        // q v > t  <=>  v >= a (q > 0)  or  v <= -a (q < 0), with a = floor(t / |q|) + 1.
        let a = floor_div(t, q.abs()) + 1;
        if q > 0 {
            ge[idx(a.clamp(-CODE_MAX, CODE_MAX + 1))]
        } else {
            self.n as u32 - ge[idx((1 - a).clamp(-CODE_MAX, CODE_MAX + 1))]
        }
    }

    /// Visible products `q_j v` above `t`, over every column.
    #[inline(always)]
    fn total_above(&self, q: &[i32], t: i32) -> u64 {
        q.iter()
            .enumerate()
            .map(|(j, &qj)| u64::from(self.count_above(j, qj, t)))
            .sum()
    }
}

/// One side of the search: the `m` largest products of `q` (the max pointers; the min
/// pointers are this with `-q`), each `sign * q_j v` added to its key's estimated score in
/// `est`. Keys at or past `limit` are skipped (not visible).
#[inline(always)]
fn take_largest(
    keys: &SortedKeys,
    hist: &Histogram,
    q: &[i32],
    m: usize,
    sign: i32,
    limit: usize,
    est: &mut [i32],
) {
    let m = m as u64;
    // tau, the m-th largest product, is t* + 1 with t* the largest t that has at least m
    // products above it (fewer than m lie above tau).
    let max_p = CODE_MAX * CODE_MAX;
    let (mut lo, mut hi) = (-max_p - 1, max_p);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if hist.total_above(q, mid) >= m {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let tau = lo + 1;
    let n_real = keys.n_real;
    let all = limit >= est.len();
    let mut add = |j: usize, v: i32, qj: i32, budget: &mut u64| {
        let (s, e) = (
            keys.starts[j * TABLE + idx(v)] as usize,
            keys.starts[j * TABLE + idx(v) + 1] as usize,
        );
        let w = sign * qj * v;
        for &k in &keys.order[j * n_real + s..j * n_real + e] {
            if *budget == 0 {
                return;
            }
            let k = k as usize;
            if all || k < limit {
                est[k] += w;
                *budget -= 1;
            }
        }
    };
    // Every product above tau (fewer than m of them).
    let mut unlimited = u64::MAX;
    for (j, &qj) in q.iter().enumerate() {
        if qj == 0 {
            continue; // products 0: nothing to add
        }
        let a = floor_div(tau, qj.abs()) + 1;
        if qj > 0 {
            for v in a.max(-CODE_MAX)..=CODE_MAX {
                add(j, v, qj, &mut unlimited);
            }
        } else {
            for v in -CODE_MAX..=(-a).min(CODE_MAX) {
                add(j, v, qj, &mut unlimited);
            }
        }
    }
    // Then the ties at tau, in column order and key order, up to m. Ties at 0 add nothing.
    if tau == 0 {
        return;
    }
    let mut need = m - hist.total_above(q, tau);
    for (j, &qj) in q.iter().enumerate() {
        if need == 0 {
            break;
        }
        if qj == 0 || tau % qj != 0 {
            continue;
        }
        let v = tau / qj;
        if (-CODE_MAX..=CODE_MAX).contains(&v) {
            add(j, v, qj, &mut need);
        }
    }
}

#[inline(always)]
fn block_with(
    kn: &Kernel<'_>,
    h: usize,
    rows: std::ops::Range<usize>,
    s: &mut Scratch,
) -> BlockOut {
    let (cfg, causal, input, shape, p) = (kn.cfg, kn.causal, kn.input, kn.shape, kn.p);
    let (nq, nk, d) = (shape.n_queries, shape.n_keys, shape.head_dim);
    let kvh = shape.kv_head_of(h);
    let keys = &p.keys[kvh];
    let wpr = sprint_core::bits::words_for(nk);
    let (q, k, v) = (input.q.head(h), input.k.head(kvh), input.v.head(kvh));
    let inv = 1.0 / (d as f32).sqrt();
    let mut out = BlockOut::empty(rows.clone(), d, wpr);
    super::exact_scores(q, k, &rows, d, &mut s.exact);
    let Scratch {
        exact,
        est,
        cands,
        kept,
        logits,
        probs,
    } = s;
    est.resize(nk, 0);
    let key_valid = input.key_valid.as_deref();
    let first_limit = visible_limit(rows.start, nq, nk, causal);
    let mut hist = Histogram::new(keys, d, first_limit, key_valid);
    let (mut qi, mut neg) = (vec![0i32; d], vec![0i32; d]);
    // exp(l - l_max) >= ratio  <=>  l >= l_max + ln(ratio) (ln 0 = -inf keeps every candidate).
    let cut = cfg.post_score_ratio.ln();
    for (r, i) in rows.enumerate() {
        if input.query_valid.as_ref().is_some_and(|mk| !mk[i]) {
            continue;
        }
        let limit = visible_limit(i, nq, nk, causal);
        hist.extend(keys, d, limit, key_valid);
        let n_visible = hist.n;
        out.visible += n_visible as u64;
        let m = iterations(cfg.iterations_per_key, n_visible, d);
        if m == 0 {
            continue;
        }
        out.stats.candidate_iterations += m as u64;
        for ((a, b), &c) in qi
            .iter_mut()
            .zip(neg.iter_mut())
            .zip(&p.q8[h][i * d..(i + 1) * d])
        {
            *a = i32::from(c);
            *b = -i32::from(c);
        }
        est[..limit].fill(0);
        take_largest(keys, &hist, &qi, m, 1, limit, est);
        take_largest(keys, &hist, &neg, m, -1, limit, est);
        // Candidates: visible keys with a positive estimated score (padding keys are never
        // taken, so their score stays 0).
        cands.clear();
        for (j, &s) in est[..limit].iter().enumerate() {
            if s > 0 {
                cands.push(j);
            }
        }
        if cands.is_empty() {
            continue;
        }
        let row = &mut out.masks[r * wpr..(r + 1) * wpr];
        for &j in cands.iter() {
            row[j / 64] |= 1 << (j % 64);
        }
        out.kept[r] = cands.len() as u32;
        // Post-scoring: the candidates within the cut of the largest exact logit.
        let ex = &exact[r * nk..(r + 1) * nk];
        let l_max = cands
            .iter()
            .map(|&j| ex[j] * inv)
            .fold(f32::NEG_INFINITY, f32::max);
        let floor = l_max + cut;
        kept.clear();
        kept.extend(cands.iter().copied().filter(|&j| ex[j] * inv >= floor));
        out.softmax_kept[r] = kept.len() as u32;
        super::attend_kept(
            ex,
            v,
            kept,
            inv,
            logits,
            probs,
            &mut out.output[r * d..(r + 1) * d],
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iterations_are_a_fraction_of_the_visible_keys_capped_at_half_the_products() {
        assert_eq!(iterations(1.0, 100, 64), 100);
        assert_eq!(iterations(0.25, 10, 64), 3);
        assert_eq!(iterations(10.0, 3, 2), 3);
        assert_eq!(iterations(1.0, 0, 64), 0);
    }

    #[test]
    fn the_histogram_counts_products_above_a_value() {
        // Two keys of two elements: codes (3, -2) and (-1, 5).
        let keys = SortedKeys::new(vec![3, -2, -1, 5], 2, 2, None);
        let hist = Histogram::new(&keys, 2, 2, None);
        // q = (2, -1): products column 0: 6, -2; column 1: 2, -5.
        let q = [2, -1];
        assert_eq!(hist.total_above(&q, 5), 1);
        assert_eq!(hist.total_above(&q, 1), 2);
        assert_eq!(hist.total_above(&q, -3), 3);
        assert_eq!(hist.total_above(&q, -6), 4);
        let mut est = vec![0; 2];
        take_largest(&keys, &hist, &q, 1, 1, 2, &mut est);
        assert_eq!(est, vec![6, 0]);
        take_largest(&keys, &hist, &[-2, 1], 1, -1, 2, &mut est);
        assert_eq!(est, vec![6, -5]);
    }
}
