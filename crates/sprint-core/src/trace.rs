//! The attention trace: for every (layer, query head, query), which keys were moved on chip
//! and how the locality engine served them. It is the only contract between the functional
//! model and the simulator; its on-disk format is documented in `docs/trace-format.md`.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::bits::{BitMatrix, BitVec, words_for};
use crate::config::LocalityPolicy;
use crate::error::{CoreError, Result};

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
}

impl HeadStats {
    /// The statistics in their on-disk order: the first six always, `k_bits_processed`
    /// only when it is not 0 (so traces of the variants without it keep their bytes).
    pub fn to_vec(&self) -> Vec<u64> {
        let mut v = vec![
            self.audited,
            self.exact_kept,
            self.false_pruned,
            self.false_kept,
            self.score_saturated,
            self.output_saturated,
        ];
        if self.k_bits_processed != 0 {
            v.push(self.k_bits_processed);
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

// ---------------------------------------------------------------------------------------------
// On-disk format (version 1). See `docs/trace-format.md` for the byte-level description.
// ---------------------------------------------------------------------------------------------

/// The eight bytes every trace file starts with.
pub const MAGIC: [u8; 8] = *b"SPRTRACE";

/// Largest accepted header JSON, in bytes.
pub const MAX_HEADER_JSON_BYTES: u32 = 1 << 20;

/// Largest accepted `n_queries` and `n_keys`.
pub const MAX_TOKENS: u32 = 1 << 20;

/// Largest accepted `head_dim`.
pub const MAX_HEAD_DIM: u32 = 1 << 16;

/// Largest accepted `layers` and `heads`.
pub const MAX_LAYERS_OR_HEADS: u32 = 1 << 16;

/// Largest accepted mask size `n_queries * n_keys`, in bits (512 MiB per decoded head).
///
/// This bounds the memory a reader allocates for one head, whatever the file claims, and keeps
/// the worst-case head payload well below the 4 GiB a `u32` block length can describe.
pub const MAX_MASK_BITS: u64 = 1 << 32;

/// Tag byte of a head block (`'H'`).
pub const TAG_HEAD: u8 = b'H';

/// Tag byte of the end marker (`'E'`).
pub const TAG_END: u8 = b'E';

/// Mask row encoding: the raw bitmap, `ceil(n_keys / 8)` bytes.
pub const ROW_RAW: u8 = 0;

/// Mask row encoding: the XOR with the previous row, as a count and gaps of flipped bits.
pub const ROW_XOR: u8 = 1;

/// Name used in [`CoreError::Io`] for streams that have no path.
const STREAM: &str = "<stream>";

fn trace_err(offset: u64, message: impl Into<String>) -> CoreError {
    CoreError::Trace {
        message: message.into(),
        offset,
    }
}

fn stream_io(source: std::io::Error) -> CoreError {
    CoreError::Io {
        path: PathBuf::from(STREAM),
        source,
    }
}

/// Replaces the offset of a [`CoreError::Trace`]; other errors pass through.
fn at_offset(e: CoreError, offset: u64) -> CoreError {
    match e {
        CoreError::Trace { message, .. } => CoreError::Trace { message, offset },
        other => other,
    }
}

/// Gives [`CoreError::Io`] errors of a path-less stream the real path.
fn with_path(e: CoreError, path: &Path) -> CoreError {
    match e {
        CoreError::Io { path: p, source } if p.as_os_str() == STREAM => CoreError::Io {
            path: path.to_path_buf(),
            source,
        },
        other => other,
    }
}

fn check(ok: bool, message: impl FnOnce() -> String) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(trace_err(0, message()))
    }
}

impl TraceHeader {
    /// Checks that the header describes a shape this crate can read and write: non-zero
    /// `layers`, `heads`, `kv_heads` and `head_dim`; `heads % kv_heads == 0`; and every size
    /// within the `MAX_*` limits of this module.
    ///
    /// Errors are [`CoreError::Trace`] with offset 0.
    pub fn validate(&self) -> Result<()> {
        check((1..=MAX_LAYERS_OR_HEADS).contains(&self.layers), || {
            format!(
                "header: layers = {} must be in 1..={MAX_LAYERS_OR_HEADS}",
                self.layers
            )
        })?;
        check((1..=MAX_LAYERS_OR_HEADS).contains(&self.heads), || {
            format!(
                "header: heads = {} must be in 1..={MAX_LAYERS_OR_HEADS}",
                self.heads
            )
        })?;
        check(
            self.kv_heads > 0 && self.heads.is_multiple_of(self.kv_heads),
            || {
                format!(
                    "header: kv_heads = {} must be non-zero and divide heads = {}",
                    self.kv_heads, self.heads
                )
            },
        )?;
        check((1..=MAX_HEAD_DIM).contains(&self.head_dim), || {
            format!(
                "header: head_dim = {} must be in 1..={MAX_HEAD_DIM}",
                self.head_dim
            )
        })?;
        check(self.n_queries <= MAX_TOKENS, || {
            format!(
                "header: n_queries = {} exceeds {MAX_TOKENS}",
                self.n_queries
            )
        })?;
        check(self.n_keys <= MAX_TOKENS, || {
            format!("header: n_keys = {} exceeds {MAX_TOKENS}", self.n_keys)
        })?;
        check(
            u64::from(self.n_queries) * u64::from(self.n_keys) <= MAX_MASK_BITS,
            || {
                format!(
                    "header: n_queries x n_keys = {} x {} exceeds {MAX_MASK_BITS} mask bits",
                    self.n_queries, self.n_keys
                )
            },
        )
    }

    /// Largest head payload a valid writer can produce for this shape, bytes.
    fn max_payload_len(&self) -> u64 {
        let nq = u64::from(self.n_queries);
        let nk = u64::from(self.n_keys);
        let row = nk.div_ceil(8);
        3 * 5 + row + nq.div_ceil(8) + nq * (8 * 5 + 1 + row) + 5 + 10 * u64::from(MAX_HEAD_STATS)
    }

    /// Smallest head payload any encoder of format `version` can produce for this shape,
    /// bytes (version 2 adds at least the one-byte statistics count).
    fn min_payload_len(&self, version: u16) -> u64 {
        let nq = u64::from(self.n_queries);
        let nk = u64::from(self.n_keys);
        let row = nk.div_ceil(8);
        3 + row + nq.div_ceil(8) + nq * (8 + 1 + row.min(1)) + u64::from(version >= 2)
    }
}

/// Checks one query's record and mask-row popcount; `Err` carries the problem in words.
fn check_query(valid: bool, r: &QueryRecord, ones: usize) -> std::result::Result<(), String> {
    if !valid {
        if *r != QueryRecord::default() {
            return Err("padding query has a non-zero record".into());
        }
        if ones != 0 {
            return Err(format!("padding query has {ones} keys in its mask row"));
        }
        return Ok(());
    }
    if r.kept as usize != ones {
        return Err(format!(
            "kept = {} but the mask row has {ones} keys",
            r.kept
        ));
    }
    if u64::from(r.k_fetched) + u64::from(r.k_reused) != u64::from(r.kept) {
        return Err(format!(
            "k_fetched + k_reused = {} + {} != kept = {}",
            r.k_fetched, r.k_reused, r.kept
        ));
    }
    if u64::from(r.v_fetched) + u64::from(r.v_reused) != u64::from(r.kept) {
        return Err(format!(
            "v_fetched + v_reused = {} + {} != kept = {}",
            r.v_fetched, r.v_reused, r.kept
        ));
    }
    if r.k_streamed > r.k_fetched {
        return Err(format!(
            "k_streamed = {} > k_fetched = {}",
            r.k_streamed, r.k_fetched
        ));
    }
    if r.v_streamed > r.v_fetched {
        return Err(format!(
            "v_streamed = {} > v_fetched = {}",
            r.v_streamed, r.v_fetched
        ));
    }
    if r.softmax_kept > r.kept {
        return Err(format!(
            "softmax_kept = {} > kept = {}",
            r.softmax_kept, r.kept
        ));
    }
    Ok(())
}

/// Bytes of each kind for one head (or a sum over heads); see [`HeadTrace::bytes_by_kind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct KindTotals {
    /// Bytes of key high halves (`K_MSB`).
    pub k_msb: u64,
    /// Bytes of key low halves (`K_LSB`).
    pub k_lsb: u64,
    /// Bytes of value vectors.
    pub v: u64,
    /// Bytes of query vectors.
    pub q: u64,
    /// Bytes of key indices.
    pub index: u64,
}

impl KindTotals {
    /// Sum over all kinds.
    pub fn total(&self) -> u64 {
        self.k_msb + self.k_lsb + self.v + self.q + self.index
    }
}

impl std::ops::AddAssign for KindTotals {
    fn add_assign(&mut self, o: Self) {
        self.k_msb += o.k_msb;
        self.k_lsb += o.k_lsb;
        self.v += o.v;
        self.q += o.q;
        self.index += o.index;
    }
}

impl std::ops::Add for KindTotals {
    type Output = Self;
    fn add(mut self, o: Self) -> Self {
        self += o;
        self
    }
}

impl HeadTrace {
    /// Checks the head against `header` (which is validated too): mask is
    /// `n_queries x n_keys`, `query_valid`/`key_valid`/`records` have matching lengths,
    /// `layer < layers`, `head < heads`, `kv_head < kv_heads`; for every valid query the
    /// [`QueryRecord`] invariants hold and `kept` equals the popcount of its mask row; every
    /// padding query (`query_valid` bit clear) has an all-zero record and an empty mask row.
    ///
    /// Errors are [`CoreError::Trace`] with offset 0 ([`TraceWriter`] and [`TraceReader`]
    /// replace it with the stream position of the block).
    pub fn validate(&self, header: &TraceHeader) -> Result<()> {
        header.validate()?;
        let (nq, nk) = (header.n_queries as usize, header.n_keys as usize);
        let who = || format!("layer {} head {}", self.layer, self.head);
        check(self.layer < header.layers, || {
            format!("{}: layer out of range 0..{}", who(), header.layers)
        })?;
        check(self.head < header.heads, || {
            format!("{}: head out of range 0..{}", who(), header.heads)
        })?;
        check(self.kv_head < header.kv_heads, || {
            format!(
                "{}: kv_head {} out of range 0..{}",
                who(),
                self.kv_head,
                header.kv_heads
            )
        })?;
        check(self.masks.rows() == nq && self.masks.cols() == nk, || {
            format!(
                "{}: mask is {} x {}, header says {nq} x {nk}",
                who(),
                self.masks.rows(),
                self.masks.cols()
            )
        })?;
        check(self.records.len() == nq, || {
            format!("{}: {} records for {nq} queries", who(), self.records.len())
        })?;
        check(self.query_valid.len() == nq, || {
            format!(
                "{}: query_valid has {} bits for {nq} queries",
                who(),
                self.query_valid.len()
            )
        })?;
        check(self.key_valid.len() == nk, || {
            format!(
                "{}: key_valid has {} bits for {nk} keys",
                who(),
                self.key_valid.len()
            )
        })?;
        for (i, r) in self.records.iter().enumerate() {
            check_query(self.query_valid.get(i), r, self.masks.row_count_ones(i))
                .map_err(|m| trace_err(0, format!("{} query {i}: {m}", who())))?;
        }
        Ok(())
    }

    /// Bytes fetched from main memory for this head, by kind: `K_MSB`, `K_LSB` and index
    /// bytes are `sum(k_fetched) x` the per-key bytes, `V` is `sum(v_fetched) x bytes.v`, and
    /// `Q` is the number of valid queries `x bytes.q`.
    pub fn bytes_by_kind(&self, bytes: &KindBytes) -> KindTotals {
        let k: u64 = self.records.iter().map(|r| u64::from(r.k_fetched)).sum();
        let v: u64 = self.records.iter().map(|r| u64::from(r.v_fetched)).sum();
        let q = self.query_valid.count_ones() as u64;
        KindTotals {
            k_msb: k * u64::from(bytes.k_msb),
            k_lsb: k * u64::from(bytes.k_lsb),
            v: v * u64::from(bytes.v),
            q: q * u64::from(bytes.q),
            index: k * u64::from(bytes.index),
        }
    }

    /// Bytes served from the on-chip buffers instead of main memory, by kind: `K_MSB`,
    /// `K_LSB` and index bytes are `sum(k_reused) x` the per-key bytes, `V` is
    /// `sum(v_reused) x bytes.v`; `Q` is always 0 (queries are never reused).
    pub fn reused_bytes_by_kind(&self, bytes: &KindBytes) -> KindTotals {
        let k: u64 = self.records.iter().map(|r| u64::from(r.k_reused)).sum();
        let v: u64 = self.records.iter().map(|r| u64::from(r.v_reused)).sum();
        KindTotals {
            k_msb: k * u64::from(bytes.k_msb),
            k_lsb: k * u64::from(bytes.k_lsb),
            v: v * u64::from(bytes.v),
            q: 0,
            index: k * u64::from(bytes.index),
        }
    }
}

// ----------------------------------- encoding --------------------------------------------------

fn put_varint64(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_varint(out: &mut Vec<u8>, mut v: u32) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends the first `nbytes` little-endian bytes of `words`.
fn put_row_bytes(out: &mut Vec<u8>, words: &[u64], nbytes: usize) {
    out.extend((0..nbytes).map(|i| (words[i / 8] >> (8 * (i % 8))) as u8));
}

/// Encodes a validated head into `out` (cleared first). `scratch` is reused between rows.
fn encode_head(h: &HeadTrace, out: &mut Vec<u8>, scratch: &mut Vec<u8>) {
    out.clear();
    put_varint(out, h.layer);
    put_varint(out, h.head);
    put_varint(out, h.kv_head);
    out.extend_from_slice(&h.key_valid.to_bytes());
    out.extend_from_slice(&h.query_valid.to_bytes());
    let nk = h.masks.cols();
    let raw_len = nk.div_ceil(8);
    let zero_row = vec![0u64; words_for(nk)];
    for (i, r) in h.records.iter().enumerate() {
        for f in [
            r.kept,
            r.softmax_kept,
            r.k_fetched,
            r.k_reused,
            r.k_streamed,
            r.v_fetched,
            r.v_reused,
            r.v_streamed,
        ] {
            put_varint(out, f);
        }
        let row = h.masks.row_words(i);
        let prev = if i == 0 {
            &zero_row[..]
        } else {
            h.masks.row_words(i - 1)
        };
        // Try the XOR encoding; give up as soon as it is no smaller than the raw bitmap.
        scratch.clear();
        let flips: u32 = row
            .iter()
            .zip(prev)
            .map(|(a, b)| (a ^ b).count_ones())
            .sum();
        put_varint(scratch, flips);
        let mut next = 0usize;
        for (wi, (a, b)) in row.iter().zip(prev).enumerate() {
            let mut w = a ^ b;
            while w != 0 {
                let j = wi * 64 + w.trailing_zeros() as usize;
                put_varint(scratch, (j - next) as u32);
                next = j + 1;
                w &= w - 1;
            }
            if scratch.len() >= raw_len {
                break;
            }
        }
        if scratch.len() < raw_len {
            out.push(ROW_XOR);
            out.extend_from_slice(scratch);
        } else {
            out.push(ROW_RAW);
            put_row_bytes(out, row, raw_len);
        }
    }
    let stats = h.stats.to_vec();
    put_varint(out, stats.len() as u32);
    for v in stats {
        put_varint64(out, v);
    }
}

/// Streams a trace: the file header, then one block per [`TraceWriter::write_head`], then the
/// end marker written by [`TraceWriter::finish`]. Holds at most one encoded head in memory.
///
/// A writer dropped without `finish` leaves a stream that readers reject as truncated.
/// A rejected head writes nothing and the writer stays usable; after an I/O error
/// ([`CoreError::Io`] with the path `<stream>`) it refuses further writes.
#[derive(Debug)]
pub struct TraceWriter<W: Write> {
    inner: W,
    header: TraceHeader,
    offset: u64,
    blocks: u32,
    seen: HashSet<(u32, u32)>,
    payload: Vec<u8>,
    scratch: Vec<u8>,
    failed: bool,
}

impl<W: Write> TraceWriter<W> {
    /// Validates `header` (see [`TraceHeader::validate`]) and writes the file header to `w`.
    /// Wrap files in a [`std::io::BufWriter`].
    pub fn new(w: W, header: &TraceHeader) -> Result<Self> {
        header.validate()?;
        let json = serde_json::to_vec(header)
            .map_err(|e| trace_err(0, format!("header does not serialize: {e}")))?;
        let len = u32::try_from(json.len())
            .ok()
            .filter(|&l| l <= MAX_HEADER_JSON_BYTES)
            .ok_or_else(|| {
                trace_err(
                    0,
                    format!(
                        "header JSON is {} bytes, limit {MAX_HEADER_JSON_BYTES}",
                        json.len()
                    ),
                )
            })?;
        let mut buf = Vec::with_capacity(json.len() + 20);
        buf.extend_from_slice(&MAGIC);
        buf.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        buf.extend_from_slice(&0u16.to_le_bytes());
        buf.extend_from_slice(&len.to_le_bytes());
        buf.extend_from_slice(&json);
        buf.extend_from_slice(&crc32fast::hash(&json).to_le_bytes());
        let mut this = Self {
            inner: w,
            header: header.clone(),
            offset: 0,
            blocks: 0,
            seen: HashSet::new(),
            payload: Vec::new(),
            scratch: Vec::new(),
            failed: false,
        };
        this.put(&buf)?;
        Ok(this)
    }

    /// The header this writer was created with.
    pub fn header(&self) -> &TraceHeader {
        &self.header
    }

    /// Head blocks written so far.
    pub fn blocks_written(&self) -> u32 {
        self.blocks
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.offset
    }

    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        if let Err(e) = self.inner.write_all(bytes) {
            self.failed = true;
            return Err(stream_io(e));
        }
        self.offset += bytes.len() as u64;
        Ok(())
    }

    fn check_usable(&self) -> Result<()> {
        check(!self.failed, || {
            "writer stopped after an earlier error".to_string()
        })
        .map_err(|e| at_offset(e, self.offset))
    }

    /// Validates `head` (see [`HeadTrace::validate`]; a (layer, head) pair may appear only
    /// once per trace) and appends its block. Errors are [`CoreError::Trace`] at the offset
    /// where the block would have started; nothing is written for a rejected head.
    pub fn write_head(&mut self, head: &HeadTrace) -> Result<()> {
        self.check_usable()?;
        head.validate(&self.header)
            .map_err(|e| at_offset(e, self.offset))?;
        if self.seen.contains(&(head.layer, head.head)) {
            return Err(trace_err(
                self.offset,
                format!("layer {} head {} written twice", head.layer, head.head),
            ));
        }
        let blocks = self
            .blocks
            .checked_add(1)
            .ok_or_else(|| trace_err(self.offset, "too many head blocks for a u32 count"))?;
        let mut payload = std::mem::take(&mut self.payload);
        let mut scratch = std::mem::take(&mut self.scratch);
        encode_head(head, &mut payload, &mut scratch);
        debug_assert!(payload.len() as u64 <= self.header.max_payload_len());
        let len = payload.len() as u32;
        let crc = crc32fast::hash(&payload);
        let mut r = self.put(&[TAG_HEAD]);
        if r.is_ok() {
            r = self.put(&len.to_le_bytes());
        }
        if r.is_ok() {
            r = self.put(&payload);
        }
        if r.is_ok() {
            r = self.put(&crc.to_le_bytes());
        }
        self.payload = payload;
        self.scratch = scratch;
        r?;
        self.seen.insert((head.layer, head.head));
        self.blocks = blocks;
        Ok(())
    }

    /// Writes the end marker (with the block count), flushes, and returns the inner writer.
    pub fn finish(mut self) -> Result<W> {
        self.check_usable()?;
        let count = self.blocks.to_le_bytes();
        let mut end = [0u8; 9];
        end[0] = TAG_END;
        end[1..5].copy_from_slice(&count);
        end[5..].copy_from_slice(&crc32fast::hash(&count).to_le_bytes());
        self.put(&end)?;
        self.inner.flush().map_err(stream_io)?;
        Ok(self.inner)
    }
}

// ----------------------------------- decoding --------------------------------------------------

/// Reads a payload held in memory; errors carry absolute stream offsets.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    base: u64,
}

impl<'a> Cursor<'a> {
    fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    fn err(&self, message: impl Into<String>) -> CoreError {
        trace_err(self.offset(), message)
    }

    fn bytes(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        if self.buf.len() - self.pos < n {
            return Err(self.err(format!("head payload ends inside {what}")));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn byte(&mut self, what: &str) -> Result<u8> {
        Ok(self.bytes(1, what)?[0])
    }

    /// A canonical LEB128 `u32`: at most 5 bytes, no overflow, no redundant trailing zero byte.
    fn varint(&mut self, what: &str) -> Result<u32> {
        let start = self.offset();
        let mut v = 0u32;
        for i in 0..5 {
            let b = self.byte(what)?;
            if i == 4 && b > 0x0f {
                return Err(trace_err(start, format!("varint {what} overflows u32")));
            }
            v |= u32::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                if b == 0 && i > 0 {
                    return Err(trace_err(start, format!("varint {what} is overlong")));
                }
                return Ok(v);
            }
        }
        Err(trace_err(start, format!("varint {what} is too long")))
    }

    /// A canonical LEB128 `u64`: at most 10 bytes, no overflow, no redundant trailing zero.
    fn varint64(&mut self, what: &str) -> Result<u64> {
        let start = self.offset();
        let mut v = 0u64;
        for i in 0..10 {
            let b = self.byte(what)?;
            if i == 9 && b > 0x01 {
                return Err(trace_err(start, format!("varint {what} overflows u64")));
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                if b == 0 && i > 0 {
                    return Err(trace_err(start, format!("varint {what} is overlong")));
                }
                return Ok(v);
            }
        }
        Err(trace_err(start, format!("varint {what} is too long")))
    }

    /// A bitmap of `len` bits, `ceil(len / 8)` bytes, with the padding bits clear.
    fn bitmap(&mut self, len: usize, what: &str) -> Result<&'a [u8]> {
        let start = self.offset();
        let b = self.bytes(len.div_ceil(8), what)?;
        if !len.is_multiple_of(8) && b[b.len() - 1] >> (len % 8) != 0 {
            return Err(trace_err(
                start,
                format!("{what} has bits set past its length {len}"),
            ));
        }
        Ok(b)
    }
}

/// Decodes and validates one head payload that starts at stream offset `base`.
fn decode_head(payload: &[u8], base: u64, header: &TraceHeader, version: u16) -> Result<HeadTrace> {
    let nq = header.n_queries as usize;
    let nk = header.n_keys as usize;
    let mut c = Cursor {
        buf: payload,
        pos: 0,
        base,
    };
    let index = |c: &mut Cursor, what: &str, limit: u32| -> Result<u32> {
        let off = c.offset();
        let v = c.varint(what)?;
        if v >= limit {
            return Err(trace_err(
                off,
                format!("{what} {v} out of range 0..{limit}"),
            ));
        }
        Ok(v)
    };
    let layer = index(&mut c, "layer", header.layers)?;
    let head = index(&mut c, "head", header.heads)?;
    let kv_head = index(&mut c, "kv_head", header.kv_heads)?;
    let key_valid = BitVec::from_bytes(nk, c.bitmap(nk, "key_valid")?).expect("length checked");
    let query_valid = BitVec::from_bytes(nq, c.bitmap(nq, "query_valid")?).expect("length checked");
    let mut masks = BitMatrix::zeros(nq, nk);
    let mut records = Vec::with_capacity(nq);
    let mut cur = vec![0u64; words_for(nk)];
    for i in 0..nq {
        let rec_off = c.offset();
        let mut f = [0u32; 8];
        for x in &mut f {
            *x = c.varint("query record")?;
        }
        let rec = QueryRecord {
            kept: f[0],
            softmax_kept: f[1],
            k_fetched: f[2],
            k_reused: f[3],
            k_streamed: f[4],
            v_fetched: f[5],
            v_reused: f[6],
            v_streamed: f[7],
        };
        let tag_off = c.offset();
        match c.byte("mask row tag")? {
            ROW_RAW => {
                let b = c.bitmap(nk, "mask row")?;
                cur.fill(0);
                for (k, &byte) in b.iter().enumerate() {
                    cur[k / 8] |= u64::from(byte) << (8 * (k % 8));
                }
            }
            ROW_XOR => {
                let count_off = c.offset();
                let n = c.varint("mask flip count")? as usize;
                if n > nk {
                    return Err(trace_err(
                        count_off,
                        format!("query {i}: {n} flipped bits in a row of {nk} keys"),
                    ));
                }
                let mut next = 0u64;
                for _ in 0..n {
                    let gap_off = c.offset();
                    let j = next + u64::from(c.varint("mask flip gap")?);
                    if j >= nk as u64 {
                        return Err(trace_err(
                            gap_off,
                            format!("query {i}: flipped key {j} out of range 0..{nk}"),
                        ));
                    }
                    let j = j as usize;
                    cur[j / 64] ^= 1u64 << (j % 64);
                    next = j as u64 + 1;
                }
            }
            t => {
                return Err(trace_err(
                    tag_off,
                    format!("query {i}: unknown mask row encoding {t}"),
                ));
            }
        }
        masks.row_words_mut(i).copy_from_slice(&cur);
        let ones = cur.iter().map(|w| w.count_ones() as usize).sum();
        check_query(query_valid.get(i), &rec, ones)
            .map_err(|m| trace_err(rec_off, format!("layer {layer} head {head} query {i}: {m}")))?;
        records.push(rec);
    }
    let mut stats = HeadStats::default();
    if version >= 2 {
        let off = c.offset();
        let n = c.varint("head statistics count")?;
        if n > MAX_HEAD_STATS {
            return Err(trace_err(
                off,
                format!("{n} head statistics, at most {MAX_HEAD_STATS}"),
            ));
        }
        let mut v = Vec::with_capacity(n as usize);
        for _ in 0..n {
            v.push(c.varint64("head statistic")?);
        }
        stats = HeadStats::from_slice(&v);
    }
    if c.pos != payload.len() {
        return Err(c.err(format!(
            "{} unused bytes at the end of the head payload",
            payload.len() - c.pos
        )));
    }
    let h = HeadTrace {
        layer,
        head,
        kv_head,
        query_valid,
        key_valid,
        masks,
        records,
        stats,
    };
    h.validate(header).map_err(|e| at_offset(e, base))?;
    Ok(h)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReadState {
    Blocks,
    Done,
    Failed,
}

/// Reads a trace: [`TraceReader::new`] checks the file header, then
/// [`TraceReader::next_head`] (or the [`Iterator`] impl) yields one validated
/// [`HeadTrace`] per block until the end marker.
///
/// Format problems are [`CoreError::Trace`] with the byte offset where they were found;
/// I/O errors are [`CoreError::Io`] with the path `<stream>` ([`read_trace`] puts the real
/// path in). Every error is final: after one, `next_head` keeps failing and the iterator
/// ends. The reader issues many small reads; wrap files in a [`std::io::BufReader`].
///
/// ```no_run
/// use std::{fs::File, io::BufReader};
/// use sprint_core::trace::TraceReader;
///
/// # fn main() -> sprint_core::Result<()> {
/// let file = File::open("run.trace").expect("open");
/// let mut reader = TraceReader::new(BufReader::new(file))?;
/// let bytes = reader.header().bytes;
/// let mut fetched = 0u64;
/// for head in &mut reader {
///     fetched += head?.bytes_by_kind(&bytes).total();
/// }
/// println!("{fetched} bytes fetched");
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct TraceReader<R: Read> {
    inner: R,
    header: TraceHeader,
    offset: u64,
    blocks: u32,
    max_blocks: u64,
    seen: HashSet<(u32, u32)>,
    state: ReadState,
    version: u16,
}

/// Reads exactly `buf.len()` bytes at `*offset`; EOF becomes a "truncated" trace error.
fn read_field<R: Read>(r: &mut R, offset: &mut u64, buf: &mut [u8], what: &str) -> Result<()> {
    match r.read_exact(buf) {
        Ok(()) => {
            *offset += buf.len() as u64;
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(trace_err(
            *offset,
            format!("truncated: stream ends inside {what}"),
        )),
        Err(e) => Err(stream_io(e)),
    }
}

/// Reads exactly `len` bytes without reserving `len` up front.
fn read_blob<R: Read>(r: &mut R, offset: &mut u64, len: u32, what: &str) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    r.take(u64::from(len))
        .read_to_end(&mut out)
        .map_err(stream_io)?;
    if out.len() != len as usize {
        return Err(trace_err(
            *offset + out.len() as u64,
            format!(
                "truncated: stream ends inside {what} ({} of {len} bytes)",
                out.len()
            ),
        ));
    }
    *offset += u64::from(len);
    Ok(out)
}

fn read_u32<R: Read>(r: &mut R, offset: &mut u64, what: &str) -> Result<u32> {
    let mut b = [0u8; 4];
    read_field(r, offset, &mut b, what)?;
    Ok(u32::from_le_bytes(b))
}

impl<R: Read> TraceReader<R> {
    /// Reads and validates the file header: magic, version (only [`FORMAT_VERSION`] is
    /// accepted), reserved field, JSON length, CRC, and the header fields
    /// ([`TraceHeader::validate`]).
    pub fn new(mut r: R) -> Result<Self> {
        let mut off = 0u64;
        let mut magic = [0u8; 8];
        read_field(&mut r, &mut off, &mut magic, "the magic")?;
        if magic != MAGIC {
            return Err(trace_err(0, "not a sprint trace (bad magic)"));
        }
        let mut v = [0u8; 2];
        read_field(&mut r, &mut off, &mut v, "the version")?;
        let version = u16::from_le_bytes(v);
        if !(OLDEST_READABLE_VERSION..=FORMAT_VERSION).contains(&version) {
            return Err(trace_err(
                8,
                format!(
                    "unsupported trace format version {version} (this reader supports versions {OLDEST_READABLE_VERSION} to {FORMAT_VERSION})"
                ),
            ));
        }
        read_field(&mut r, &mut off, &mut v, "the reserved field")?;
        if v != [0, 0] {
            return Err(trace_err(10, "reserved header field is not zero"));
        }
        let len = read_u32(&mut r, &mut off, "the header length")?;
        if len > MAX_HEADER_JSON_BYTES {
            return Err(trace_err(
                12,
                format!("header JSON length {len} exceeds {MAX_HEADER_JSON_BYTES}"),
            ));
        }
        let json_off = off;
        let json = read_blob(&mut r, &mut off, len, "the header JSON")?;
        let crc_off = off;
        let crc = read_u32(&mut r, &mut off, "the header checksum")?;
        if crc != crc32fast::hash(&json) {
            return Err(trace_err(crc_off, "header checksum mismatch"));
        }
        let header: TraceHeader = serde_json::from_slice(&json).map_err(|e| {
            trace_err(
                json_off,
                format!(
                    "header JSON: {}",
                    e.to_string()
                        .split_whitespace()
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
            )
        })?;
        header.validate().map_err(|e| at_offset(e, json_off))?;
        let max_blocks = u64::from(header.layers) * u64::from(header.heads);
        Ok(Self {
            inner: r,
            header,
            offset: off,
            blocks: 0,
            max_blocks,
            seen: HashSet::new(),
            state: ReadState::Blocks,
            version,
        })
    }

    /// The validated file header.
    pub fn header(&self) -> &TraceHeader {
        &self.header
    }

    /// Format version of the stream.
    pub fn version(&self) -> u16 {
        self.version
    }

    /// Head blocks read so far.
    pub fn blocks_read(&self) -> u32 {
        self.blocks
    }

    /// Bytes consumed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The next head, `Ok(None)` after a well-formed end marker with nothing after it.
    pub fn next_head(&mut self) -> Result<Option<HeadTrace>> {
        match self.state {
            ReadState::Done => Ok(None),
            ReadState::Failed => Err(trace_err(
                self.offset,
                "reader stopped after an earlier error",
            )),
            ReadState::Blocks => {
                let r = self.read_block();
                match &r {
                    Ok(None) => self.state = ReadState::Done,
                    Err(_) => self.state = ReadState::Failed,
                    Ok(Some(_)) => {}
                }
                r
            }
        }
    }

    fn read_block(&mut self) -> Result<Option<HeadTrace>> {
        let block_off = self.offset;
        let mut tag = [0u8; 1];
        if let Err(e) = read_field(&mut self.inner, &mut self.offset, &mut tag, "a block tag") {
            return Err(match e {
                CoreError::Trace { offset, .. } => trace_err(
                    offset,
                    format!(
                        "truncated: stream ends after {} head blocks without an end marker",
                        self.blocks
                    ),
                ),
                other => other,
            });
        }
        match tag[0] {
            TAG_HEAD => self.read_head_block(block_off).map(Some),
            TAG_END => {
                self.read_end(block_off)?;
                Ok(None)
            }
            t => Err(trace_err(block_off, format!("unknown block tag 0x{t:02x}"))),
        }
    }

    fn read_head_block(&mut self, block_off: u64) -> Result<HeadTrace> {
        if u64::from(self.blocks) >= self.max_blocks {
            return Err(trace_err(
                block_off,
                format!("more head blocks than layers x heads = {}", self.max_blocks),
            ));
        }
        let len_off = self.offset;
        let len = read_u32(&mut self.inner, &mut self.offset, "a head block length")?;
        let (min, max) = (
            self.header.min_payload_len(self.version),
            self.header.max_payload_len(),
        );
        if u64::from(len) < min || u64::from(len) > max {
            return Err(trace_err(
                len_off,
                format!("head payload length {len} outside {min}..={max} allowed by the header"),
            ));
        }
        let payload_off = self.offset;
        let payload = read_blob(&mut self.inner, &mut self.offset, len, "a head payload")?;
        let crc_off = self.offset;
        let crc = read_u32(&mut self.inner, &mut self.offset, "a head block checksum")?;
        if crc != crc32fast::hash(&payload) {
            return Err(trace_err(crc_off, "head block checksum mismatch"));
        }
        let head = decode_head(&payload, payload_off, &self.header, self.version)?;
        if !self.seen.insert((head.layer, head.head)) {
            return Err(trace_err(
                payload_off,
                format!("layer {} head {} appears twice", head.layer, head.head),
            ));
        }
        self.blocks += 1;
        Ok(head)
    }

    fn read_end(&mut self, block_off: u64) -> Result<()> {
        let mut count = [0u8; 4];
        read_field(
            &mut self.inner,
            &mut self.offset,
            &mut count,
            "the end marker",
        )?;
        let crc_off = self.offset;
        let crc = read_u32(&mut self.inner, &mut self.offset, "the end marker checksum")?;
        if crc != crc32fast::hash(&count) {
            return Err(trace_err(crc_off, "end marker checksum mismatch"));
        }
        let count = u32::from_le_bytes(count);
        if count != self.blocks {
            return Err(trace_err(
                block_off,
                format!(
                    "end marker counts {count} head blocks but {} were read",
                    self.blocks
                ),
            ));
        }
        let mut probe = [0u8; 1];
        loop {
            match self.inner.read(&mut probe) {
                Ok(0) => return Ok(()),
                Ok(_) => {
                    return Err(trace_err(
                        self.offset,
                        "trailing bytes after the end marker",
                    ));
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(stream_io(e)),
            }
        }
    }
}

impl<R: Read> Iterator for TraceReader<R> {
    type Item = Result<HeadTrace>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.state != ReadState::Blocks {
            return None;
        }
        self.next_head().transpose()
    }
}

impl<R: Read> std::iter::FusedIterator for TraceReader<R> {}

// ----------------------------------- files -----------------------------------------------------

/// Writes a whole trace to `path` atomically: the blocks stream into a temporary file in the
/// same directory, which is synced and then renamed over `path`. On error or signal the temporary
/// file is removed and `path` is left untouched ([`crate::outfile::write_atomic`]).
pub fn write_trace<'a>(
    path: &Path,
    header: &TraceHeader,
    heads: impl IntoIterator<Item = &'a HeadTrace>,
) -> Result<()> {
    crate::outfile::write_atomic(path, |file| {
        let mut w = TraceWriter::new(file, header)?;
        for h in heads {
            w.write_head(h)?;
        }
        w.finish()?;
        Ok(())
    })
    .map_err(|e| with_path(e, path))
}

/// Reads and validates a whole trace file.
pub fn read_trace(path: &Path) -> Result<(TraceHeader, Vec<HeadTrace>)> {
    let file = File::open(path).map_err(|source| CoreError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let run = || {
        let mut r = TraceReader::new(BufReader::new(file))?;
        let heads = r.by_ref().collect::<Result<Vec<_>>>()?;
        Ok((r.header().clone(), heads))
    };
    run().map_err(|e| with_path(e, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_are_canonical_leb128() {
        for (v, len) in [
            (0u32, 1usize),
            (1, 1),
            (127, 1),
            (128, 2),
            (16_383, 2),
            (16_384, 3),
            (1 << 21, 4),
            (1 << 28, 5),
            (u32::MAX, 5),
        ] {
            let mut buf = Vec::new();
            put_varint(&mut buf, v);
            assert_eq!(buf.len(), len, "{v}");
            let mut c = Cursor {
                buf: &buf,
                pos: 0,
                base: 100,
            };
            assert_eq!(c.varint("x").unwrap(), v);
            assert_eq!(c.pos, len);
        }
        let bad: [&[u8]; 5] = [
            &[0x80, 0x00],
            &[0xff, 0x80, 0x00],
            &[0xff, 0xff, 0xff, 0xff, 0x10],
            &[0xff, 0xff, 0xff, 0xff, 0x8f],
            &[0x80],
        ];
        for b in bad {
            let mut c = Cursor {
                buf: b,
                pos: 0,
                base: 100,
            };
            match c.varint("x") {
                Err(CoreError::Trace { offset, .. }) => assert!(offset >= 100),
                other => panic!("{b:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn payload_bounds_bracket_real_encodings() {
        let h = TraceHeader {
            producer: String::new(),
            workload: String::new(),
            variant: String::new(),
            layers: 1,
            heads: 1,
            kv_heads: 1,
            head_dim: 8,
            n_queries: 3,
            n_keys: 20,
            causal: true,
            bytes: KindBytes::default(),
            k_buffer_bytes: 0,
            v_buffer_bytes: 0,
            locality_policy: crate::config::LocalityPolicy::SldStrict,
            provenance: None,
        };
        let mut empty = HeadTrace {
            layer: 0,
            head: 0,
            kv_head: 0,
            query_valid: BitVec::ones(3),
            key_valid: BitVec::ones(20),
            masks: BitMatrix::zeros(3, 20),
            records: vec![QueryRecord::default(); 3],
            stats: Default::default(),
        };
        let (mut out, mut scratch) = (Vec::new(), Vec::new());
        encode_head(&empty, &mut out, &mut scratch);
        // The writer appends six zero statistics (one byte each) after the count.
        assert_eq!(out.len() as u64, h.min_payload_len(2) + 6);
        let big = u32::MAX / 2;
        for i in 0..3 {
            for k in 0..20 {
                empty.masks.set(i, k, (i + k) % 2 == 0);
            }
            empty.records[i] = QueryRecord {
                kept: big,
                softmax_kept: big,
                k_fetched: big,
                k_reused: big,
                k_streamed: big,
                v_fetched: big,
                v_reused: big,
                v_streamed: big,
            };
        }
        encode_head(&empty, &mut out, &mut scratch);
        assert!(out.len() as u64 <= h.max_payload_len());
    }
}
