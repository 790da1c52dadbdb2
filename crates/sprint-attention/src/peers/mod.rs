//! The peer designs' pruning decisions as functional models (the attention-pruning
//! accelerators SPRINT is compared with), each computing one layer into the same per-head
//! blocks as SPRINT's datapath, so that the locality engine and the traces treat every
//! variant alike. Parameters: [`sprint_core::peers`]. The blocks of every design run through
//! one driver here ([`run_blocks`]), which holds the designs' only `unsafe` code: the calls
//! into the instruction-set copies of a block.
#![allow(unsafe_code)]

pub mod a3;
pub mod energon;
pub mod leopard;
pub mod sanger;
pub mod spatten;

use rayon::prelude::*;

use crate::gemm::matmul_nt;
use crate::head::QUERY_BLOCK;
use crate::int8_gemm::{self, PackedKeys};
use crate::softmax::exp_nonpositive;
use crate::tensor::LayerShape;

/// Exact float attention of one query over the keys `kept` of `v` (`rows x d`,
/// row-major): `scores[j]` is the query's exact `q . k_j` for every key `j` (one row of the
/// block's score GEMM); the logits `scores[j] * inv_sqrt_d` of the kept keys go through a
/// softmax, and the weighted sum of their `v_j` is added into `out` (zeros on entry).
/// `logits` and `probs` are scratch.
///
/// The arithmetic is that of a plain loop: the exponentials' sum is added key by key in
/// `kept`'s order, and each output element is `acc += (p_j / z) * v_j` key by key (held in
/// registers for the head widths 32, 64 and 128). Only the maximum is taken over lanes; it
/// is the same number (the logits are finite), at most a zero of the other sign, and
/// `exp(l - max)` is the same for either zero.
/// What a peer's blocks read of their layer: the design's configuration `cfg` (LeOPArd's:
/// its per-head thresholds), whether the layer is causal, its input and shape, and the data
/// `p` the design prepared once per layer.
pub(crate) struct LayerKernel<'a, C: ?Sized, P> {
    pub(crate) cfg: &'a C,
    pub(crate) causal: bool,
    pub(crate) input: &'a crate::AttentionInput,
    pub(crate) shape: LayerShape,
    pub(crate) p: &'a P,
}

/// Marks the keys `keep` in row `r` of the block's masks (`wpr` words per row) and records
/// them as the row's kept set and softmax set, keys.
#[inline(always)]
pub(crate) fn record_kept(out: &mut crate::block::BlockOut, r: usize, wpr: usize, keep: &[usize]) {
    let row = &mut out.masks[r * wpr..(r + 1) * wpr];
    for &j in keep {
        row[j / 64] |= 1 << (j % 64);
    }
    out.kept[r] = keep.len() as u32;
    out.softmax_kept[r] = keep.len() as u32;
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) fn attend_kept(
    scores: &[f32],
    v: &[f32],
    kept: &[usize],
    inv_sqrt_d: f32,
    logits: &mut Vec<f32>,
    probs: &mut Vec<f32>,
    out: &mut [f32],
) {
    logits.clear();
    logits.resize(kept.len(), 0.0);
    for (l, &j) in logits.iter_mut().zip(kept) {
        *l = scores[j] * inv_sqrt_d;
    }
    let mx = lanes_max(logits);
    probs.clear();
    probs.resize(logits.len(), 0.0);
    for (pr, &l) in probs.iter_mut().zip(logits.iter()) {
        *pr = exp_nonpositive(l - mx);
    }
    let mut z = 0.0f32;
    for &pr in probs.iter() {
        z += pr;
    }
    let inv_z = 1.0 / z;
    weighted_sum(v, kept, probs, inv_z, out);
}

/// `out[e] += (probs[t] * inv_z) * v[kept[t]][e]` for every `t` in order (`v` rows of
/// `out.len()` elements), the sums held in registers for the head widths 32, 64 and 128.
#[inline(always)]
pub(crate) fn weighted_sum(v: &[f32], kept: &[usize], probs: &[f32], inv_z: f32, out: &mut [f32]) {
    let d = out.len();
    match d {
        32 => weighted_sum_of::<32>(v, kept, probs, inv_z, out),
        64 => weighted_sum_of::<64>(v, kept, probs, inv_z, out),
        128 => weighted_sum_of::<128>(v, kept, probs, inv_z, out),
        _ => {
            for (&j, &pr) in kept.iter().zip(probs.iter()) {
                let w = pr * inv_z;
                for (acc, &x) in out.iter_mut().zip(&v[j * d..(j + 1) * d]) {
                    *acc += w * x;
                }
            }
        }
    }
}

/// The largest of `xs` (`-inf` when empty), over 16 lanes.
#[inline(always)]
pub(crate) fn lanes_max(xs: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 16];
    let chunks = xs.chunks_exact(16);
    let tail = chunks.remainder();
    for c in chunks {
        for (m, &x) in lanes.iter_mut().zip(c) {
            *m = m.max(x);
        }
    }
    let mx = tail.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    lanes.iter().copied().fold(mx, f32::max)
}

/// [`weighted_sum`] on a head width `N` known at compile time, so that the sums stay in
/// registers.
#[inline(always)]
fn weighted_sum_of<const N: usize>(
    v: &[f32],
    kept: &[usize],
    probs: &[f32],
    inv_z: f32,
    out: &mut [f32],
) {
    let mut acc = [0f32; N];
    acc.copy_from_slice(out);
    for (&j, &pr) in kept.iter().zip(probs) {
        let w = pr * inv_z;
        let row: &[f32; N] = v[j * N..(j + 1) * N].try_into().expect("a row of N");
        for (a, &x) in acc.iter_mut().zip(row) {
            *a += w * x;
        }
    }
    out.copy_from_slice(&acc);
}

/// The exact scores `q_i . k_j` of the query rows `rows` of `q` (`n_queries x d`) against
/// every key of `k` (`n_keys x d`), into `out` (`rows.len() x n_keys`), by one GEMM.
pub(crate) fn exact_scores(
    q: &[f32],
    k: &[f32],
    rows: &std::ops::Range<usize>,
    d: usize,
    out: &mut Vec<f32>,
) {
    let n = k.len() / d.max(1);
    out.resize(rows.len() * n, 0.0);
    crate::gemm::matmul_nt(&q[rows.start * d..rows.end * d], k, out, rows.len(), n, d);
}

/// One peer design's computation of a block of query rows of one head, run by
/// [`run_blocks`]: the design's prepared layer and parameters live in the implementing
/// value, its per-thread buffers in [`BlockKernel::Scratch`].
pub(crate) trait BlockKernel: Sync {
    /// Per-thread buffers reused across blocks; every element read is written first, so
    /// which buffers a block gets does not change its result.
    type Scratch: Default + 'static;
    /// What one block returns.
    type Out: Send;
    /// The thread-local that holds this design's buffers.
    fn scratch() -> &'static std::thread::LocalKey<std::cell::RefCell<Self::Scratch>>;
    /// Computes query rows `rows` of head `h`. Implementations mark it `#[inline(always)]`
    /// so that it is compiled into each instruction-set copy of [`run_blocks`].
    fn block(&self, h: usize, rows: std::ops::Range<usize>, s: &mut Self::Scratch) -> Self::Out;
}

/// Implements [`BlockKernel`] for a design's `$kernel<'_>`, whose block is
/// `$block(&kernel, h, rows, &mut scratch)` (marked `#[inline(always)]`) with the per-thread
/// buffers `$scratch` held in a thread-local named `$tls`.
macro_rules! block_kernel {
    ($kernel:ident, $scratch:ty, $tls:ident, $block:path) => {
        impl crate::peers::BlockKernel for $kernel<'_> {
            type Scratch = $scratch;
            type Out = crate::block::BlockOut;

            fn scratch() -> &'static std::thread::LocalKey<std::cell::RefCell<$scratch>> {
                &$tls
            }

            #[inline(always)]
            fn block(
                &self,
                h: usize,
                rows: std::ops::Range<usize>,
                s: &mut $scratch,
            ) -> crate::block::BlockOut {
                $block(self, h, rows, s)
            }
        }

        thread_local! {
            static $tls: std::cell::RefCell<$scratch> = std::cell::RefCell::default();
        }
    };
}
pub(crate) use block_kernel;

/// Runs `kernel` on every block of [`QUERY_BLOCK`] queries of each of `heads` heads of
/// `n_queries` queries, in parallel on the caller's rayon pool, at the widest instruction set
/// the CPU has ([`crate::isa::level`]). Returns one output per block in (head, block) order,
/// each with its head; each block is computed by the same code whatever the thread count.
pub(crate) fn run_blocks<K: BlockKernel>(
    kernel: &K,
    heads: usize,
    n_queries: usize,
) -> Vec<(usize, K::Out)> {
    let per_head = n_queries.div_ceil(QUERY_BLOCK);
    (0..heads * per_head)
        .into_par_iter()
        .map(|t| {
            let (h, b) = (t / per_head, t % per_head);
            let start = b * QUERY_BLOCK;
            let rows = start..(start + QUERY_BLOCK).min(n_queries);
            (h, run_one(kernel, h, rows))
        })
        .collect()
}

/// One block of [`run_blocks`], with the thread's buffers.
fn run_one<K: BlockKernel>(kernel: &K, h: usize, rows: std::ops::Range<usize>) -> K::Out {
    // The buffers leave the thread-local for the call (a GEMM inside may let this thread
    // run another block meanwhile, which then finds empty buffers).
    let mut s = K::scratch().with(std::cell::RefCell::take);
    let out = match crate::isa::level() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `level()` returned Avx512 only after detecting every enabled feature.
        crate::isa::Level::Avx512 => unsafe { block_avx512(kernel, h, rows, &mut s) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `level()` returned Avx2 only after detecting every enabled feature.
        crate::isa::Level::Avx2 => unsafe { block_avx2(kernel, h, rows, &mut s) },
        _ => kernel.block(h, rows, &mut s),
    };
    K::scratch().with(|c| c.replace(s));
    out
}

/// [`BlockKernel::block`] compiled with AVX-512 (the crate targets baseline x86-64; see
/// [`crate::simd`]). The designs' arithmetic is integer or IEEE-exact in the same order at
/// every level, so every copy gives the same bits.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,bmi1,bmi2,lzcnt,popcnt")]
fn block_avx512<K: BlockKernel>(
    kernel: &K,
    h: usize,
    rows: std::ops::Range<usize>,
    s: &mut K::Scratch,
) -> K::Out {
    kernel.block(h, rows, s)
}

/// [`BlockKernel::block`] compiled with AVX2 + FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,bmi1,bmi2,lzcnt,popcnt")]
fn block_avx2<K: BlockKernel>(
    kernel: &K,
    h: usize,
    rows: std::ops::Range<usize>,
    s: &mut K::Scratch,
) -> K::Out {
    kernel.block(h, rows, s)
}

/// Integer products of each query head's codes with several code sets of each KV head's keys
/// (LeOPArd's shifted planes, Energon's rounds), computed per block of queries.
pub(crate) enum SetProducts {
    /// int8 GEMMs (exact for the codes' range on this CPU): query codes shifted by 128;
    /// per KV head, each key set packed.
    Int8 {
        q_u8: Vec<Vec<u8>>,
        keys: Vec<Vec<PackedKeys>>,
    },
    /// f32 GEMMs of the codes (exact small integers for `d <= 1040`).
    Float {
        q: Vec<Vec<f32>>,
        keys: Vec<Vec<Vec<f32>>>,
    },
}

impl SetProducts {
    /// The products of query codes `q` (per query head, `n_queries x d`) with the key sets
    /// `sets` (per KV head, per set, `n_keys x d`): the int8 GEMM when `int8` (the caller has
    /// checked [`int8_gemm::exact_for`] on the codes' range), else the f32 GEMM.
    pub(crate) fn new(
        int8: bool,
        q: &[Vec<i8>],
        sets: &[Vec<Vec<i8>>],
        n_keys: usize,
        d: usize,
    ) -> Self {
        if int8 {
            Self::Int8 {
                q_u8: q
                    .iter()
                    .map(|l| l.iter().map(|&x| (i16::from(x) + 128) as u8).collect())
                    .collect(),
                keys: sets
                    .iter()
                    .map(|rs| rs.iter().map(|k| PackedKeys::new(k, n_keys, d)).collect())
                    .collect(),
            }
        } else {
            let f = |x: &[i8]| x.iter().map(|&v| f32::from(v)).collect::<Vec<f32>>();
            Self::Float {
                q: q.iter().map(|l| f(l)).collect(),
                keys: sets
                    .iter()
                    .map(|rs| rs.iter().map(|k| f(k)).collect())
                    .collect(),
            }
        }
    }

    /// [`Self::block`] into `out` (one buffer per key set, reused across blocks; every
    /// element is written) with `zero` as the int8 GEMM's zero-point scratch.
    pub(crate) fn block_into(
        &self,
        shape: LayerShape,
        h: usize,
        rows: &std::ops::Range<usize>,
        out: &mut Vec<Vec<i32>>,
        zero: &mut Vec<u8>,
    ) {
        let Self::Int8 { q_u8, keys } = self else {
            *out = self.block(shape, h, rows);
            return;
        };
        let (nk, d, m) = (shape.n_keys, shape.head_dim, rows.len());
        let sets = &keys[shape.kv_head_of(h)];
        out.resize_with(sets.len(), Vec::new);
        zero.clear();
        zero.resize(m, 128);
        for (o, k) in out.iter_mut().zip(sets) {
            o.resize(m * nk, 0);
            int8_gemm::scores(&q_u8[h][rows.start * d..rows.end * d], zero, k, o);
        }
    }

    /// Each key set's integer products of query rows `rows` of head `h` with every key of its
    /// KV head, `rows.len() x n_keys`.
    pub(crate) fn block(
        &self,
        shape: LayerShape,
        h: usize,
        rows: &std::ops::Range<usize>,
    ) -> Vec<Vec<i32>> {
        let (nk, d) = (shape.n_keys, shape.head_dim);
        let kvh = shape.kv_head_of(h);
        let m = rows.len();
        let block = rows.start * d..rows.end * d;
        match self {
            Self::Int8 { q_u8, keys } => {
                let zero = vec![128u8; m];
                keys[kvh]
                    .iter()
                    .map(|k| {
                        let mut out = vec![0i32; m * nk];
                        int8_gemm::scores(&q_u8[h][block.clone()], &zero, k, &mut out);
                        out
                    })
                    .collect()
            }
            Self::Float { q, keys } => keys[kvh]
                .iter()
                .map(|k| {
                    let mut out = vec![0f32; m * nk];
                    matmul_nt(&q[h][block.clone()], k, &mut out, m, nk, d);
                    out.into_iter().map(|x| x as i32).collect()
                })
                .collect(),
        }
    }
}
