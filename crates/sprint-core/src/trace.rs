//! The attention trace: for every (layer, query head, query), which keys were moved on chip
//! and how the locality engine served them. It is the only contract between the functional
//! model and the simulator; its on-disk format is documented in `docs/trace-format.md`.

use serde::{Deserialize, Serialize};

use crate::bits::{BitMatrix, BitVec};

/// Version of the on-disk format written by this crate.
pub const FORMAT_VERSION: u16 = 1;

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
}
