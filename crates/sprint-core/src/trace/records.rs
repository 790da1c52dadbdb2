//! The trace's records: the header, the per-head blocks with their query records and
//! statistics, and the format version and limits they are read under.

use serde::{Deserialize, Serialize};

use crate::bits::{BitMatrix, BitVec};
use crate::config::LocalityPolicy;

/// Version of the on-disk format written by this crate (version 1 is still read).
pub const FORMAT_VERSION: u16 = 2;

/// Oldest on-disk format version this crate reads.
pub const OLDEST_READABLE_VERSION: u16 = 1;

/// Largest number of head statistics a version-2 head block may carry.
pub const MAX_HEAD_STATS: u32 = 16;

/// Bytes moved per key (or per query) of each kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct KindBytes {
    /// Bytes of one key's high half (`K_MSB`, 4 bits x d), read transposed from ReRAM.
    pub k_msb: u32,
    /// Bytes of one key's low half (`K_LSB`, 4 bits x d).
    pub k_lsb: u32,
    /// Bytes of one value vector (8 bits x d).
    pub v: u32,
    /// Bytes of one query vector sent on chip (8 bits x d).
    pub q: u32,
    /// Bytes of the key index sent with each fetched key.
    pub index: u32,
}

/// Everything a consumer needs to interpret the head blocks that follow.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TraceHeader {
    /// Tool and version that wrote the trace, e.g. `sprint 0.1.0`.
    pub producer: String,
    /// Workload name (model, task, or input file).
    pub workload: String,
    /// Variant that produced the kept sets (`dense`, `runtime-pruning`, `sprint`, ...).
    pub variant: String,
    /// Number of attention layers.
    pub layers: u32,
    /// Query heads per layer.
    pub heads: u32,
    /// Key/value heads per layer (`heads` unless grouped-query attention).
    pub kv_heads: u32,
    /// Elements per head vector.
    pub head_dim: u32,
    /// Queries per head (rows of each mask).
    pub n_queries: u32,
    /// Keys per head (columns of each mask).
    pub n_keys: u32,
    /// Whether causal masking was applied.
    pub causal: bool,
    /// Bytes per vector of each kind.
    pub bytes: KindBytes,
    /// Key buffer capacity the locality engine used, bytes.
    pub k_buffer_bytes: u64,
    /// Value buffer capacity the locality engine used, bytes.
    pub v_buffer_bytes: u64,
    /// Locality policy that produced the fetch/reuse counts (absent in traces written before
    /// locality policies existed, which used `residency`).
    #[serde(default = "legacy_locality_policy")]
    pub locality_policy: LocalityPolicy,
    /// How the trace was made, when the producer records it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Provenance>,
}

fn legacy_locality_policy() -> LocalityPolicy {
    LocalityPolicy::Residency
}

/// How a trace was made: enough to run it again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// Tool and version, e.g. `sprint 0.1.0`.
    pub tool: String,
    /// The full attention configuration as TOML (TOML keeps `-inf` thresholds exact).
    pub config_toml: String,
    /// The thresholds `Th` (logit units) per layer and query head, as a thresholds file
    /// (`per_head = [[...]]`, TOML).
    pub thresholds_toml: String,
    /// Seed of every random draw.
    pub seed: u64,
    /// Recompute mode (`fixed-point` or `float`).
    pub recompute: String,
}

/// Per-head statistics of the datapath (version 2 and later; all zero when read from a
/// version-1 trace). Counts are (query, key) pairs or output elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HeadStats {
    /// 1 when the in-memory decisions were checked against the exact score at the same
    /// threshold (the variants that prune in memory), else 0 and the next three are 0.
    pub audited: u64,
    /// Visible pairs whose exact score reaches `Th`: what exact pruning would keep.
    pub exact_kept: u64,
    /// Pairs with exact score `>= Th` that the in-memory comparator pruned.
    pub false_pruned: u64,
    /// Pairs with exact score `< Th` that the in-memory comparator kept.
    pub false_kept: u64,
    /// Score codes clamped to the `score_bits` range in the fixed-point recompute.
    pub score_saturated: u64,
    /// V-PU output elements clamped to the `output_bits` range.
    pub output_saturated: u64,
    /// Key bit-planes processed by a bit-serial dot product with early termination, summed
    /// over the visible pairs (the `leopard` variant; at most 8 per pair); 0 for the variants
    /// that do not compute bit-serially.
    pub k_bits_processed: u64,
    /// Tokens whose keys and values SpAtten's cascade token pruning kept for this layer (the
    /// same for every head of the layer; a query sees those of them it may see, causal); 0
    /// for the other variants.
    pub cascade_tokens_kept: u64,
    /// 1 when SpAtten's cascade head pruning removed this head in this layer (its output is
    /// zero and nothing of it is fetched); 0 otherwise and for the other variants.
    pub cascade_head_pruned: u64,
    /// Query rows that SpAtten's progressive quantisation recomputed with the keys' LSBs
    /// (their largest MSB-only probability was below the threshold); 0 for the other
    /// variants.
    pub requant_rows: u64,
    /// Iterations of a greedy candidate search, summed over the queries (the `a3` variant:
    /// each iteration takes one largest and one smallest component product `q_j k_ij`); 0
    /// for the other variants.
    pub candidate_iterations: u64,
    /// Pairs kept by each filtering round, summed over the queries (the `energon` variant:
    /// round `r` scores the pairs round `r - 1` kept, round 1 every visible pair); 0 past the
    /// last round and for the other variants.
    pub filter_kept: [u64; crate::peers::MAX_FILTER_ROUNDS],
}

/// Statistics always written (the first six of [`HeadStats::to_vec`]).
const ALWAYS_WRITTEN: usize = 6;

impl HeadStats {
    /// The statistics in their on-disk order: `audited`, `exact_kept`, `false_pruned`,
    /// `false_kept`, `score_saturated`, `output_saturated`, `k_bits_processed`,
    /// `cascade_tokens_kept`, `cascade_head_pruned`, `requant_rows`,
    /// `candidate_iterations`, then `filter_kept` by round. The first six always; the rest
    /// up to the last one that is not 0 (so traces of the variants without them keep their
    /// bytes).
    pub fn to_vec(&self) -> Vec<u64> {
        let mut v = vec![
            self.audited,
            self.exact_kept,
            self.false_pruned,
            self.false_kept,
            self.score_saturated,
            self.output_saturated,
            self.k_bits_processed,
            self.cascade_tokens_kept,
            self.cascade_head_pruned,
            self.requant_rows,
            self.candidate_iterations,
        ];
        v.extend(self.filter_kept);
        while v.len() > ALWAYS_WRITTEN && v.last() == Some(&0) {
            v.pop();
        }
        v
    }

    /// Statistics from their on-disk order; missing trailing values are 0 and values past
    /// the known ones are ignored (a later version may append more).
    pub fn from_slice(v: &[u64]) -> Self {
        let g = |i: usize| v.get(i).copied().unwrap_or(0);
        Self {
            audited: g(0),
            exact_kept: g(1),
            false_pruned: g(2),
            false_kept: g(3),
            score_saturated: g(4),
            output_saturated: g(5),
            k_bits_processed: g(6),
            cascade_tokens_kept: g(7),
            cascade_head_pruned: g(8),
            requant_rows: g(9),
            candidate_iterations: g(10),
            filter_kept: std::array::from_fn(|r| g(11 + r)),
        }
    }
}

impl std::ops::AddAssign for HeadStats {
    fn add_assign(&mut self, o: Self) {
        self.audited = self.audited.max(o.audited);
        self.exact_kept += o.exact_kept;
        self.false_pruned += o.false_pruned;
        self.false_kept += o.false_kept;
        self.score_saturated += o.score_saturated;
        self.output_saturated += o.output_saturated;
        self.k_bits_processed += o.k_bits_processed;
        self.cascade_tokens_kept += o.cascade_tokens_kept;
        self.cascade_head_pruned += o.cascade_head_pruned;
        self.requant_rows += o.requant_rows;
        self.candidate_iterations += o.candidate_iterations;
        for (a, b) in self.filter_kept.iter_mut().zip(o.filter_kept) {
            *a += b;
        }
    }
}

/// Locality-engine counts of one query, in keys (not bytes).
///
/// Invariants: `k_fetched + k_reused == kept`, `v_fetched + v_reused == kept`,
/// `k_streamed <= k_fetched`, `v_streamed <= v_fetched`, `softmax_kept <= kept`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct QueryRecord {
    /// Keys moved on chip for this query: the size of the in-memory kept set `P_i`
    /// (equals the number of set bits in the query's mask row).
    pub kept: u32,
    /// Keys that entered the softmax (after the optional exact-score threshold).
    pub softmax_kept: u32,
    /// Keys fetched from main memory into (or through) the key buffer.
    pub k_fetched: u32,
    /// Keys found already resident in the key buffer.
    pub k_reused: u32,
    /// Fetched keys that did not fit in the key buffer and streamed through.
    pub k_streamed: u32,
    /// Values fetched from main memory.
    pub v_fetched: u32,
    /// Values found resident in the value buffer.
    pub v_reused: u32,
    /// Fetched values that streamed through the value buffer.
    pub v_streamed: u32,
}

/// The trace of one (layer, query head): one mask row and one record per query.
#[derive(Clone, Debug, PartialEq)]
pub struct HeadTrace {
    /// Layer index.
    pub layer: u32,
    /// Query head index.
    pub head: u32,
    /// Key/value head this query head reads (differs from `head` under GQA).
    pub kv_head: u32,
    /// Which queries are real tokens (padding rows are skipped: their record is all zero).
    pub query_valid: BitVec,
    /// Which keys are real tokens.
    pub key_valid: BitVec,
    /// `n_queries x n_keys`; row `i` is the set of keys moved on chip for query `i`.
    pub masks: BitMatrix,
    /// One record per query.
    pub records: Vec<QueryRecord>,
    /// Datapath statistics of the head.
    pub stats: HeadStats,
}
