//! The on-disk format's constants (docs/trace-format.md), the error helpers of the
//! encoder and decoder, and the checks of a header and of a head against it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};

use super::records::*;

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
pub(super) const STREAM: &str = "<stream>";

pub(super) fn trace_err(offset: u64, message: impl Into<String>) -> CoreError {
    CoreError::Trace {
        message: message.into(),
        offset,
    }
}

pub(super) fn stream_io(source: std::io::Error) -> CoreError {
    CoreError::Io {
        path: PathBuf::from(STREAM),
        source,
    }
}

/// Replaces the offset of a [`CoreError::Trace`]; other errors pass through.
pub(super) fn at_offset(e: CoreError, offset: u64) -> CoreError {
    match e {
        CoreError::Trace { message, .. } => CoreError::Trace { message, offset },
        other => other,
    }
}

/// Gives [`CoreError::Io`] errors of a path-less stream the real path.
pub(super) fn with_path(e: CoreError, path: &Path) -> CoreError {
    match e {
        CoreError::Io { path: p, source } if p.as_os_str() == STREAM => CoreError::Io {
            path: path.to_path_buf(),
            source,
        },
        other => other,
    }
}

pub(super) fn check(ok: bool, message: impl FnOnce() -> String) -> Result<()> {
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
    pub(super) fn max_payload_len(&self) -> u64 {
        let nq = u64::from(self.n_queries);
        let nk = u64::from(self.n_keys);
        let row = nk.div_ceil(8);
        3 * 5 + row + nq.div_ceil(8) + nq * (8 * 5 + 1 + row) + 5 + 10 * u64::from(MAX_HEAD_STATS)
    }

    /// Smallest head payload any encoder of format `version` can produce for this shape,
    /// bytes (version 2 adds at least the one-byte statistics count).
    pub(super) fn min_payload_len(&self, version: u16) -> u64 {
        let nq = u64::from(self.n_queries);
        let nk = u64::from(self.n_keys);
        let row = nk.div_ceil(8);
        3 + row + nq.div_ceil(8) + nq * (8 + 1 + row.min(1)) + u64::from(version >= 2)
    }
}

/// Checks one query's record and mask-row popcount; `Err` carries the problem in words.
pub(super) fn check_query(
    valid: bool,
    r: &QueryRecord,
    ones: usize,
) -> std::result::Result<(), String> {
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
