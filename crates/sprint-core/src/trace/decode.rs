//! The trace reader: validates the header and every block as it streams them.

use std::collections::HashSet;
use std::io::Read;

use crate::bits::{BitMatrix, BitVec, words_for};
use crate::error::{CoreError, Result};

use super::format::*;
use super::records::*;

/// Reads a payload held in memory; errors carry absolute stream offsets.
pub(super) struct Cursor<'a> {
    pub(super) buf: &'a [u8],
    pub(super) pos: usize,
    pub(super) base: u64,
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
    pub(super) fn varint(&mut self, what: &str) -> Result<u32> {
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

    /// One query's record: eight varints in [`QueryRecord`]'s field order.
    fn query_record(&mut self) -> Result<QueryRecord> {
        let mut f = [0u32; 8];
        for x in &mut f {
            *x = self.varint("query record")?;
        }
        Ok(QueryRecord {
            kept: f[0],
            softmax_kept: f[1],
            k_fetched: f[2],
            k_reused: f[3],
            k_streamed: f[4],
            v_fetched: f[5],
            v_reused: f[6],
            v_streamed: f[7],
        })
    }

    /// Query `i`'s mask row into `cur` (`nk` keys): a raw bitmap, or the bits flipped from
    /// the previous row.
    fn mask_row(&mut self, i: usize, nk: usize, cur: &mut [u64]) -> Result<()> {
        let tag_off = self.offset();
        match self.byte("mask row tag")? {
            ROW_RAW => {
                let b = self.bitmap(nk, "mask row")?;
                cur.fill(0);
                for (k, &byte) in b.iter().enumerate() {
                    cur[k / 8] |= u64::from(byte) << (8 * (k % 8));
                }
            }
            ROW_XOR => {
                let count_off = self.offset();
                let n = self.varint("mask flip count")? as usize;
                if n > nk {
                    return Err(trace_err(
                        count_off,
                        format!("query {i}: {n} flipped bits in a row of {nk} keys"),
                    ));
                }
                let mut next = 0u64;
                for _ in 0..n {
                    let gap_off = self.offset();
                    let j = next + u64::from(self.varint("mask flip gap")?);
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
        Ok(())
    }

    /// The head statistics (format version 2 on): a count, then that many varints.
    fn head_stats(&mut self) -> Result<HeadStats> {
        let off = self.offset();
        let n = self.varint("head statistics count")?;
        if n > MAX_HEAD_STATS {
            return Err(trace_err(
                off,
                format!("{n} head statistics, at most {MAX_HEAD_STATS}"),
            ));
        }
        let mut v = Vec::with_capacity(n as usize);
        for _ in 0..n {
            v.push(self.varint64("head statistic")?);
        }
        Ok(HeadStats::from_slice(&v))
    }
}

/// Decodes and validates one head payload that starts at stream offset `base`.
pub(super) fn decode_head(
    payload: &[u8],
    base: u64,
    header: &TraceHeader,
    version: u16,
) -> Result<HeadTrace> {
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
        let rec = c.query_record()?;
        c.mask_row(i, nk, &mut cur)?;
        masks.row_words_mut(i).copy_from_slice(&cur);
        let ones = cur.iter().map(|w| w.count_ones() as usize).sum();
        check_query(query_valid.get(i), &rec, ones)
            .map_err(|m| trace_err(rec_off, format!("layer {layer} head {head} query {i}: {m}")))?;
        records.push(rec);
    }
    let stats = if version >= 2 {
        c.head_stats()?
    } else {
        HeadStats::default()
    };
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
pub(super) fn read_field<R: Read>(
    r: &mut R,
    offset: &mut u64,
    buf: &mut [u8],
    what: &str,
) -> Result<()> {
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
pub(super) fn read_blob<R: Read>(
    r: &mut R,
    offset: &mut u64,
    len: u32,
    what: &str,
) -> Result<Vec<u8>> {
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

pub(super) fn read_u32<R: Read>(r: &mut R, offset: &mut u64, what: &str) -> Result<u32> {
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
