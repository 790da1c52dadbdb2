//! A head prepared for its blocks: the quantised operands of its query head and KV head
//! ([`QHead`], [`KvHead`]), the context every block of it reads ([`HeadCtx`]), and the
//! per-configuration choices and score rounding the blocks share.

use sprint_core::bits::BitVec;
use sprint_core::config::AttentionConfig;

use crate::int8_gemm::PackedKeys;
use crate::noise::Crossbar;
use crate::softmax::FixedSoftmax;
use crate::tensor::LayerShape;

/// Queries per work item.
pub const QUERY_BLOCK: usize = 64;

/// Keys per step of the packed key prefixes of a causal head: a block whose queries see at
/// most `c` keys multiplies the smallest packed prefix of at least `c` keys (a software
/// choice: a coarser step packs less and multiplies more; results do not depend on it).
pub(crate) const KEY_PREFIX_STEP: usize = 256;

/// Per-KV-head data, shared by the query heads of a group.
pub(crate) struct KvHead {
    pub k_scale: f32,
    pub v_scale: f32,
    /// K codes widened to i16 for exact dot products (heads too wide for the exact GEMMs).
    pub k8: Vec<i16>,
    /// K codes as f32 (exact small integers) for the f32 exact-score GEMM (CPUs whose int8
    /// kernels could saturate); empty otherwise, when `d > MAX_EXACT_GEMM_DIM` or in float
    /// mode.
    pub k8_f32: Vec<f32>,
    /// K codes packed for the int8 exact-score GEMM (fixed point, exact kernels).
    pub k8_packed: Option<PackedKeys>,
    /// K codes the recompute sees when stuck-at cells change the `K_MSB` read-back; empty
    /// when the read-back is exact.
    pub k_read_back: Vec<i16>,
    /// [`Self::k_read_back`] as f32 or packed, like `k8_f32` / `k8_packed`.
    pub k_read_back_f32: Vec<f32>,
    pub k_read_back_packed: Option<PackedKeys>,
    /// V codes as f32 for the per-key V-PU.
    pub v8_f32: Vec<f32>,
    /// V codes for the deferred V-PU.
    pub v8: Vec<i8>,
    /// The crossbar holding `K_MSB` (the variants that prune in memory).
    pub crossbar: Option<Crossbar>,
    /// The ideal crossbar's levels packed for the int8 in-memory-score GEMM; `None` when the
    /// cells are not ideal (the scores then come from the f32 weights).
    pub k_msb_packed: Option<PackedKeys>,
}

/// Per-query-head data.
pub(crate) struct QHead {
    pub q_scale: f32,
    pub q8: Vec<i16>,
    pub q8_f32: Vec<f32>,
    /// `q8 + 128` (the int8 GEMMs' unsigned left operand, zero point 128).
    pub q8_u8: Vec<u8>,
    pub q_dac: Vec<f32>,
    /// Per query: `sum |q8|` (fixed point), which bounds its exact scores by `128 sum |q8|`.
    pub q_abs_sum: Vec<u32>,
    /// `q_dac + 128`, like `q8_u8`.
    pub q_dac_u8: Vec<u8>,
    /// Per query: the expected score of the unseen `K_LSB` bits, in in-memory score steps
    /// (0 without bias correction).
    pub lsb_correction: Vec<f64>,
}

/// Everything a block needs about its head.
pub(crate) struct HeadCtx<'a> {
    pub cfg: &'a AttentionConfig,
    pub shape: LayerShape,
    pub qh: &'a QHead,
    pub kv: &'a KvHead,
    pub q_f: &'a [f32],
    pub k_f: &'a [f32],
    pub v_f: &'a [f32],
    pub key_valid: &'a BitVec,
    pub query_valid: &'a [bool],
    pub softmax: &'a FixedSoftmax,
    /// `Th`, logits.
    pub threshold: f32,
    /// `Th' = Th - margin` in in-memory score steps (before the per-query correction).
    pub comparator_threshold: f64,
    /// Read-noise sigma in score steps.
    pub read_sigma: f64,
    /// Key of the head's read-noise streams (one per query).
    pub noise_seed: (u64, usize, usize),
    /// Smallest exact score (in the units of the exact-score GEMM) that reaches `Th`.
    pub exact_min: f32,
    /// Fixed point: the exact integer scores whose codes saturate are `<= sat_below` or
    /// `>= sat_above`.
    pub sat_below: i32,
    pub sat_above: i32,
    pub approx_unit: f64,
    pub exact_unit: f64,
}

/// Rounds a logit to the signed fixed-point score code (half away from zero), saturating;
/// the flag says whether it saturated.
#[inline(always)]
pub(crate) fn quantize_score(logit: f64, hi: f64, scale: f64) -> (i32, bool) {
    let x = logit * scale;
    // Adding +-0.5 and truncating rounds half away from zero without libm or branches.
    let r = (x + 0.5f64.copysign(x)).trunc();
    let c = r.clamp(-hi - 1.0, hi);
    (c as i32, c != r)
}

/// Whether the in-memory decisions of `cfg` are audited against exact pruning.
pub(crate) fn audited(cfg: &AttentionConfig) -> bool {
    cfg.variant.prunes_in_memory() && cfg.audit_comparator
}

/// Whether a block needs the exact score of every key: the variants that score every key
/// on chip, and the audit.
pub(crate) fn needs_all_exact_scores(cfg: &AttentionConfig) -> bool {
    !cfg.variant.prunes_in_memory() || audited(cfg)
}
