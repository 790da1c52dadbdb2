//! The trace writer: a header, then one block per head, then the end marker.

use std::collections::HashSet;
use std::io::Write;

use crate::bits::words_for;
use crate::error::Result;

use super::format::*;
use super::records::*;

pub(super) fn put_varint64(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(super) fn put_varint(out: &mut Vec<u8>, mut v: u32) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends the first `nbytes` little-endian bytes of `words`.
pub(super) fn put_row_bytes(out: &mut Vec<u8>, words: &[u64], nbytes: usize) {
    out.extend((0..nbytes).map(|i| (words[i / 8] >> (8 * (i % 8))) as u8));
}

/// Encodes a validated head into `out` (cleared first). `scratch` is reused between rows.
pub(super) fn encode_head(h: &HeadTrace, out: &mut Vec<u8>, scratch: &mut Vec<u8>) {
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
